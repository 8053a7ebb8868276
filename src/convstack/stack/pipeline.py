"""The focus-stacking pipeline: load -> align -> sharpness -> depth -> fuse, streaming.

Frames are read one at a time, in two passes:

1. from the reference frame outwards (``ref, ref+1, ..., n-1, ref-1, ..., 0``), each
   frame is registered to its neighbour on the reference's side and the transforms
   are chained to the reference; the aligned frame's focus measure updates a
   running argmax (the raw depth map) and the single-pass merges (``'pyramid'``,
   ``'maxabs'``, ``'weighted'``) update their running selections or sums;
2. the depth map is regularised; ``'pyramid'`` blends its tiny low-pass bases with
   it; only ``'depthmap'`` reads again the frames that the depth map uses, warps
   them with the stored transforms and blends them.

At most two frames are in flight (one read, registered and, as the measured step
times decide, warped and measured in a forked child process, see
:mod:`convstack.stack.forked`, or in a worker thread where forking is not safe,
while the previous one is merged), plus two lumas for registration and a fixed
number of frame-sized accumulators, whatever the number of frames; only the
pyramid's low-pass bases (a few kilobytes each) are kept per frame. Peak RSS for
2000 x 3000 RGB frames: see bench/README.md ("## fusion"), flat in the number of
frames.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import time
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _validate as v
from ..progress import ProgressCallback, report
from ..warp import warp
from . import align as _align
from . import io as _io
from . import raw as _raw
from . import registration_report as _report
from . import zstack as _zstack
from .depth import FocusAccumulator, focus_gray, regularize_depth, voting_measure, zoom_bilinear
from .errors import AlignmentError, FrameMismatchError, FrameReadError, StackError
from .forked import Channel, ForkedWorker, can_fork, shared_array
from .fusion import (
    METHODS,
    DepthAccumulator,
    PyramidAccumulator,
    WeightedAccumulator,
    apply_gamma,
    from_unit_float,
    lab_gamma,
)
from .height import FocusCurve, subframe_height
from .sharpness import MEASURES, sharpness_mask, to_unit_float

__all__ = ["DEFAULT_METHOD", "FuseResult", "fuse"]

logger = logging.getLogger(__name__)

#: The method :func:`fuse` uses unless told otherwise (chosen by bench/fusion.py).
DEFAULT_METHOD = "pyramid"

StepCallback = Callable[[str, NDArray[Any]], None]
_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class FuseResult:
    """What :func:`fuse` returns.

    Attributes
    ----------
    image : ndarray
        The fused image, shape and dtype of the input frames (float input gives float32).
    depth : ndarray of float32, shape (rows, cols)
        Smoothed depth map: fractional index of the sharpest frame, in [0, n - 1].
    transforms : list of ndarray (3, 3)
        Per frame, the matrix mapping reference pixel coordinates to that frame's.
    reference : int
        Index of the reference frame.
    method : str
        The merge method used.
    confidence : ndarray of float32, shape (rows, cols)
        How clearly one frame was the sharpest (0 = flat, ambiguous).
    frames : tuple of FrameReport
        Per frame, its registration: transform, residual, confidence, status
        ('reference', 'aligned', 'identity': the estimate explained the pair no better
        than no motion, 'rejected': left out of the merge) and flags (see
        :mod:`convstack.stack.registration_report`).
    """

    image: NDArray[Any]
    depth: NDArray[np.float32]
    transforms: list[NDArray[np.float64]]
    reference: int
    method: str
    confidence: NDArray[np.float32] = field(repr=False)
    height: NDArray[np.float32] | None = field(default=None, repr=False)
    height_confidence: NDArray[np.float32] | None = field(default=None, repr=False)
    #: Per frame, how it was registered and whether it is trusted (issue 16; see
    #: :mod:`convstack.stack.registration_report`); rejected frames were left out.
    frames: tuple[_report.FrameReport, ...] = field(default=(), repr=False)


def _is_file_object(item: Any) -> bool:
    return not isinstance(item, np.ndarray) and callable(getattr(item, "read", None))


def _frame_name(item: Any, index: int) -> str:
    """How messages name frame ``index``: its path, a file object's name, or its index."""
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    if isinstance(item, _zstack.ZPlane):
        return item.name
    if _is_file_object(item):
        own = getattr(item, "name", None)
        if isinstance(own, (str, os.PathLike)):
            return f"frames[{index}] ({os.fspath(own)})"
        return f"frames[{index}] (in-memory bytes)"
    return f"frames[{index}]"


def _finite_range(array: NDArray[Any]) -> tuple[float, float]:
    """The least and the largest finite value in ``array`` ((0, 0) if none)."""
    low, high = float(np.min(array)), float(np.max(array))
    if not (np.isfinite(low) and np.isfinite(high)):
        finite = array[np.isfinite(array)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    return low, high


class _Source:
    """Frames from arrays, paths or file objects, loaded on demand and checked against
    the first (the reference), whose range also sets the scale of float frames."""

    def __init__(self, frames: Any) -> None:
        if isinstance(frames, (str, os.PathLike)):  # one file: a z-stack
            if not os.path.isfile(frames):
                raise v.fail(
                    "frames",
                    "be a sequence of arrays or paths, or one z-stack file",
                    frames,
                    kind=TypeError,
                )
            frames = _zstack.open_zstack(frames)
        elif _zstack.is_lone_zstack(frames):  # [one file], as a folder or glob lists it
            frames = _zstack.open_zstack(frames[0])
        if isinstance(frames, _zstack.ZStack):
            frames = frames.frames()
        if isinstance(frames, np.ndarray):
            if frames.ndim not in (3, 4):
                raise v.fail(
                    "frames",
                    "be a (frames, rows, cols[, channels]) array or a sequence of frames",
                    frames,
                )
            items: list[Any] = list(frames)
        elif isinstance(frames, Sequence):
            items = list(frames)
        else:
            raise v.fail("frames", "be a sequence of arrays or paths", frames, kind=TypeError)
        self.items = items
        self.names = [_frame_name(item, i) for i, item in enumerate(items)]
        # camera RAW: LibRaw's OpenMP threads, started in this process, would leave a
        # forked child's decoder deadlocked; such stacks are read in a worker thread
        self.raw_files = any(
            isinstance(item, (str, os.PathLike)) and _raw.is_raw(item) for item in items
        )
        # file objects are read once, here: a frame may be read twice, and in a child
        # process that shares an open file's position
        self.content: dict[int, bytes] = {}
        for i, item in enumerate(items):
            if _is_file_object(item):
                data = item.read()
                if not isinstance(data, bytes):
                    raise v.fail(self.names[i], "be a binary file object", data, kind=TypeError)
                self.content[i] = data
        self.shape: tuple[int, ...] | None = None
        self.dtype: np.dtype[Any] | None = None
        self.first = ""  # the frame read first (the reference) sets shape and dtype
        # float frames: divided by the reference's largest magnitude where over 1 (the
        # steps assume about [0, 1]); each one's range as read, scaled, in memory that a
        # child process forked later (after the reference is read) writes into too
        self.scale = 1.0
        self.ranges: NDArray[np.float64] | None = None
        if len(items) < 2:
            if len(items) == 1 and (isinstance(items[0], (str, os.PathLike)) or self.content):
                self.raw(0)  # a lone file may say why (a multi-page TIFF, unreadable)
            raise FrameMismatchError(f"focus stacking needs at least two frames; got {len(items)}.")

    def __len__(self) -> int:
        return len(self.items)

    def raw(self, index: int) -> NDArray[Any]:
        item = self.items[index]
        name = self.names[index]
        if isinstance(item, _zstack.ZPlane):
            array = item.load()
        elif isinstance(item, (str, os.PathLike)) or index in self.content:
            try:
                if index in self.content:
                    array = _io.read_image(io.BytesIO(self.content[index]), name=name)
                else:
                    array = _io.read_image(item)
            except FrameReadError:
                raise
            except Exception as exc:  # codec errors of every kind
                raise FrameReadError(f"{name}: cannot read the image ({exc}).") from exc
        else:
            array = v.as_real_array(item, name)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3) or array.dtype not in _DTYPES:
            raise FrameMismatchError(
                f"{name}: frames must be (rows, cols) or (rows, cols, channels) arrays of "
                f"uint8, uint16 or float; got shape {array.shape}, dtype {array.dtype}."
            )
        if self.shape is None:
            self.shape, self.dtype, self.first = array.shape, array.dtype, name
            if array.dtype.kind == "f":
                low, high = _finite_range(array)
                self.scale = max(1.0, high, -low)
                self.ranges = shared_array((len(self.items), 2), np.float64)
        elif array.shape != self.shape or array.dtype != self.dtype:
            raise FrameMismatchError(
                f"{name}: shape {array.shape} and dtype {array.dtype} differ from those of "
                f"the reference frame {self.first} ({self.shape}, {self.dtype}); "
                "all frames must have the same size, channels and bit depth."
            )
        if self.scale != 1.0:
            array = array / array.dtype.type(self.scale)
        if self.ranges is not None:
            self.ranges[index] = _finite_range(array)
        return array

    def float_range(self) -> tuple[float, float]:
        """The range of the float frames read, scaled, widened to [0, 1]."""
        assert self.ranges is not None
        return min(0.0, float(self.ranges[:, 0].min())), max(1.0, float(self.ranges[:, 1].max()))

    def unit(self, index: int) -> NDArray[np.float32]:
        return to_unit_float(self.raw(index), self.names[index])


@dataclass
class _Frame:
    """One frame on its way through :func:`fuse` (raw until warped)."""

    index: int
    raw: NDArray[Any] | None
    gray: NDArray[np.float32] | None
    frame: NDArray[np.float32] | None = None
    measured: NDArray[np.float32] | None = None


def _order(count: int, reference: int) -> list[tuple[int, int | None]]:
    """(frame, neighbour towards the reference) in processing order."""
    order: list[tuple[int, int | None]] = [(reference, None)]
    order += [(i, i - 1) for i in range(reference + 1, count)]
    order += [(i, i + 1) for i in range(reference - 1, -1, -1)]
    return order


def _float_output(
    image: NDArray[Any], span: tuple[float, float], scale: float
) -> NDArray[np.float32]:
    """A fused float image clipped to its frames' range ``span`` (as integers saturate;
    frames on [0, 1] give what they always gave), back on their scale, as float32."""
    image = np.clip(image, *span)
    if scale != 1.0:
        image = np.multiply(image, np.float32(scale), dtype=np.float32)
    return image.astype(np.float32, copy=False)


def _block_means(gray: NDArray[np.float32], block: int = 8) -> NDArray[np.float32]:
    """Means of ``block`` x ``block`` tiles (a low-pass thumbnail for photometric fits)."""
    rows, cols = (max(n // block, 1) for n in gray.shape[:2])
    size_r, size_c = min(block, gray.shape[0]), min(block, gray.shape[1])
    tiles = gray[: rows * size_r, : cols * size_c].reshape(rows, size_r, cols, size_c)
    return tiles.mean(axis=(1, 3), dtype=np.float32)


def _finest_level(shape: tuple[int, ...]) -> int:
    """Finest pyramid level registered: about half a megapixel is plenty for sub-pixel.

    Finer levels make the transform hardly more accurate (the frames' blur and noise
    bound it), and each one costs four times the work of the level above.
    """
    pixels = float(shape[0]) * float(shape[1])
    return max(0, math.ceil(math.log(pixels / 5e5, 4))) if pixels > 5e5 else 0


def _mean_costs(costs: dict[str, list[float]]) -> dict[str, float]:
    """The mean of the last four measured seconds of each step."""
    return {step: sum(times[-4:]) / len(times[-4:]) for step, times in costs.items() if times}


def _loads(mean: dict[str, float], share: int) -> tuple[float, float]:
    """Seconds per frame of (the worker, this side) when the worker reads, registers
    and takes the first ``share`` of the steps warp and measure; this side merges."""
    steps = (mean["warp"], mean["measure"])
    worker = mean.get("read", 0.0) + mean["register"] + sum(steps[:share])
    return worker, mean["merge"] + sum(steps[share:])


def _balanced_share(costs: dict[str, list[float]]) -> int:
    """How many steps after registration the worker thread takes (0, 1 warp, 2 warp and
    measure) so that the busier of the two threads has the least to do.

    ``costs`` holds the measured seconds per frame of 'read' (when measured apart),
    'register', 'warp', 'measure' (wherever they ran) and 'merge' (this thread's own
    work); the last four of each are averaged. 1 until every step has been measured.
    """
    if not all(costs.get(step) for step in ("register", "warp", "measure", "merge")):
        return 1
    mean = _mean_costs(costs)
    return min(range(3), key=lambda share: max(_loads(mean, share)))


def _read_credit(costs: dict[str, list[float]], share: int) -> float:
    """The share of a frame that this process should read for the child process.

    When the child (reading, registering and the first ``share`` steps) is busier than
    this process (the other steps and the merge), reading a fraction ``f`` of the frames
    here moves ``f`` reads across: ``f = (child - parent) / (2 read)`` balances the two
    (0 when this process is the busier). Summed over frames, each whole unit is a frame
    to read here.
    """
    if not all(costs.get(step) for step in ("read", "register", "warp", "measure", "merge")):
        return 0.0
    mean = _mean_costs(costs)
    child, parent = _loads(mean, share)
    return min(1.0, max(0.0, (child - parent) / (2.0 * mean["read"])))


def _depth_and_base(
    raw: NDArray[Any],
    confidence: NDArray[np.float32],
    count: int,
    shape: tuple[int, int],
    pyramid: PyramidAccumulator | None,
) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
    """The regularised depth map, and for ``pyramid`` the depth on its bases' grid."""
    depth = regularize_depth(raw, confidence, count=count, shape=shape)
    return depth, None if pyramid is None else pyramid.base_depth(depth)


def _planar(shape: tuple[int, ...], empty: Callable[..., NDArray[Any]] = np.empty) -> NDArray[Any]:
    """A float32 frame of ``shape`` (rows, cols[, channels]) stored channel by channel
    (``empty((channels, rows, cols), np.float32)``, viewed channels last): the pyramid
    merges planes, and the warp writes them directly (no interleaving and back)."""
    if len(shape) == 2:
        return empty(shape, np.float32)
    return np.moveaxis(empty((shape[2], *shape[:2]), np.float32), 0, -1)


def _warped(
    frame: NDArray[Any], matrix: NDArray[np.float64], out: NDArray[np.float32] | None = None
) -> NDArray[np.float32]:
    """``frame`` resampled onto the reference grid (cubic; edges repeated, not black),
    into ``out`` if given, else into a new planar frame (see :func:`_planar`); a
    float64 frame is warped apart, then copied in.

    Integer frames keep their scale (float32 out); float frames are made float32.
    """
    if frame.dtype == np.float64:
        result = warp(frame, matrix, order=3, mode="nearest")
        if out is None:
            return result.astype(np.float32)
        out[...] = result
        return out
    out = _planar(frame.shape) if out is None else out
    return warp(frame, matrix, order=3, mode="nearest", out=out)


def _distrust(frames: tuple[_report.FrameReport, ...]) -> None:
    """Log a warning naming the frames not trusted; raise if no frame but the reference
    was kept."""
    rejected = [f for f in frames if f.status == "rejected"]
    if rejected and len(rejected) == len(frames) - 1:
        reasons = "; ".join(f"frame {f.name!r} ({', '.join(f.flags)})" for f in rejected)
        raise AlignmentError(
            f"alignment of every frame but the reference failed: {reasons}; the frames may "
            "not overlap."
        )
    line = _report.summary(frames)
    if line:
        logger.warning("%s", line)


def _height(
    curve: FocusCurve, depth: NDArray[np.float32], count: int
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The sub-frame height (frames) and its confidence, on the depth map's grid."""
    peak, confidence = curve.peak(count)
    if peak.shape != depth.shape:  # measured on a grid decimated by two
        peak = zoom_bilinear(peak, 2)[: depth.shape[0], : depth.shape[1]]
        confidence = zoom_bilinear(confidence, 2)[: depth.shape[0], : depth.shape[1]]
    return subframe_height(peak, depth), confidence


def fuse(
    frames: Sequence[Any] | NDArray[Any] | str | os.PathLike[str] | _zstack.ZStack,
    *,
    method: str = DEFAULT_METHOD,
    align: str = "similarity",
    reference: int | None = None,
    measure: str = "log_energy",
    gamma_correction: bool = False,
    photometric: bool = False,
    levels: int | None = None,
    progress: ProgressCallback | None = None,
    on_step: StepCallback | None = None,
    focus_channel: int | Sequence[float] | None = None,
    height: bool = False,
    noise_floor: float | None = None,
) -> FuseResult:
    """Fuse a focus stack into one image that is sharp everywhere, plus its depth map.

    Parameters
    ----------
    frames : sequence of array_like or paths, or ndarray (frames, rows, cols[, channels])
        The frames in focus order, all the same size, channel count and dtype (uint8,
        uint16, or float of any range, kept in the result), or paths or binary file
        objects of image files. Paths are read lazily, one frame at a time. One path
        (or a :class:`convstack.stack.zstack.ZStack`): a z-stack file, its Z planes
        the frames, read one at a time.
    method : {'pyramid', 'depthmap', 'weighted', 'maxabs'}
        How to merge (see :mod:`convstack.stack.fusion`); default ``DEFAULT_METHOD``.
    align : {'similarity', 'none', 'translation', 'affine', 'homography'}
        Motion model for aligning each frame to the reference (chained through
        neighbours); 'none' skips alignment.
    reference : int, optional
        Index of the reference frame (its geometry is the output's); default the middle.
    measure : str
        Focus measure for the depth map (see :func:`convstack.stack.sharpness.sharpness`).
    gamma_correction : bool
        With ``method='weighted'``: the lab's automatic gamma correction of the result.
    photometric : bool
        Match each aligned frame's brightness and contrast to the reference frame
        (``gain * frame + offset``, a robust fit on 1/8-scale block means of the luma,
        which defocus barely changes) before measuring and merging. Off by default:
        only for stacks whose exposure drifts.
    levels : int, optional
        Pyramid levels for 'pyramid' and 'maxabs' (default: automatic).
    progress : callable, optional
        ``progress(stage, done, total)`` for stages 'align' (first pass: read,
        register, measure and merge, per frame), 'depth' (0 then 1 of 1) and 'fuse'
        (per frame for 'depthmap's second pass, else 0 then 1 of 1).
    on_step : callable, optional
        ``on_step(name, array)`` with intermediate images as they are made:
        ``'aligned_007'`` (float32 frame), ``'sharpness_007'`` (focus measure),
        ``'depth_raw'``, ``'confidence'``, ``'depth'`` (scaled to [0, 1]). Nothing is
        kept for it.
    focus_channel : int or sequence of float, optional
        What focus is decided on, once for every channel: a channel index, or one
        weight a channel (see :func:`convstack.stack.depth.focus_gray`). Default: the
        luma of grey, RGB(A) frames, the mean of 5 to 8 channels.
    height : bool
        Also return ``height``: the sub-frame peak of each pixel's focus curve (a
        fractional frame index; see :mod:`convstack.stack.height`), and its
        ``height_confidence``.
    noise_floor : float, optional
        With ``method='pyramid'``: z > 0, where no frame's detail stands more than
        about z sigmas of the measured sensor noise above it, the frames are averaged
        rather than one picked (quieter out-of-focus backgrounds; see
        :class:`convstack.stack.fusion.PyramidAccumulator`'s ``noise``). Off by
        default: on the bug set z = 3 gains 0.17 dB against its reference composite
        (0.55 dB unaligned) and halves the background's high-pass energy, but costs
        rendered stacks 0.1-0.5 dB (bench/README.md, fusion).

    Returns
    -------
    FuseResult
        ``image`` (dtype of the frames; float32 for float frames, clipped to the
        frames' range widened to [0, 1]), ``depth``, ``transforms``, ...

    Raises
    ------
    FrameMismatchError
        Fewer than two frames, or frames that differ in size, channels or dtype.
    FrameReadError
        A frame that cannot be read (named): missing, truncated, corrupt, a multi-page
        TIFF, or (``FrameTooLargeError``) over the pixel or memory limit.
    AlignmentError
        Registration failed for every frame but the reference (named). A frame whose
        registration fails or is implausible (a scale, rotation or shift jump, a
        residual outlier) is otherwise left out, its neighbour merged in its place, and
        a warning naming it is logged (``result.frames`` says why).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> sharp = rng.random((32, 32)).astype(np.float32)
    >>> soft = np.full_like(sharp, 0.5)
    >>> left = np.hstack([sharp[:, :16], soft[:, 16:]])
    >>> right = np.hstack([soft[:, :16], sharp[:, 16:]])
    >>> result = fuse([left, right], align="none")
    >>> bool(np.abs(result.image - sharp)[:, :6].max() < 0.02)
    True
    """
    v.choice(method, "method", METHODS)
    v.choice(align, "align", _align.MODELS)
    v.choice(measure, "measure", MEASURES)
    if noise_floor is not None:
        noise_floor = v.positive_float(noise_floor, "noise_floor")
    source = _Source(frames)
    count = len(source)
    ref = count // 2 if reference is None else reference
    if isinstance(ref, bool) or not isinstance(ref, (int, np.integer)) or not 0 <= ref < count:
        raise v.fail("reference", f"be a frame index in [0, {count - 1}]", reference)
    ref = int(ref)

    transforms: list[NDArray[np.float64]] = [np.eye(3)] * count
    # per frame: what registration decided (written by a child process, read here)
    frame_rows = _report.new_rows(count, shared_array)
    stand_ins: dict[int, int] = {}  # a rejected frame -> the kept frame merged in its place
    residuals: list[float] = []  # of the frames kept so far (the typical one spots outliers)
    # the last and the first step estimated each way (+1 up, -1 down): breathing changes
    # smoothly, so they predict the next step (a jump from it is implausible)
    steps: dict[int, NDArray[np.float64]] = {}
    first_steps: dict[int, NDArray[np.float64]] = {}
    focus = FocusAccumulator()
    gray_of = focus_gray(focus_channel)  # (the luma unless a focus channel is chosen)
    curve = FocusCurve() if height else None  # the sub-frame peak, for height maps
    weighted = WeightedAccumulator() if method == "weighted" else None
    pyramid = None
    if method == "pyramid":
        pyramid = PyramidAccumulator(levels, focus=focus_channel, noise=noise_floor)
    elif method == "maxabs":  # the classic rule: hard max at every level, mean base
        pyramid = PyramidAccumulator(levels, soft_levels=0, envelope=False, focus=focus_channel)
    # registration pyramids of the frames a later frame registers against (each is
    # built once: as the moving frame, then as its neighbour's reference)
    pyramids: dict[int, Any] = {}
    preread: dict[int, NDArray[Any]] = {}  # frames read before a child process forked

    def register(index: int, neighbour: int | None) -> tuple[NDArray[Any], NDArray[np.float32]]:
        """Read one frame and register it to the neighbour towards the reference."""
        raw = preread.pop(index) if index in preread else source.raw(index)
        gray = gray_of(raw)
        if align == "none" or neighbour is None:
            outcome = {"status": "reference" if neighbour is None else "identity", "model": align}
            _report.record(
                frame_rows, index, outcome, np.eye(3), neighbour, None, _report.tile_energy(gray)
            )
        if align != "none":
            if not np.all(np.isfinite(gray)):
                raise v.fail(source.names[index], "contain only finite values", gray)
            pyramid = _align._gray_pyramid(gray, _finest_level(gray.shape))
            if neighbour is not None:
                raw, gray, pyramid = checked(index, neighbour, raw, gray, pyramid)
            # keep only the pyramids a later frame registers against
            for k in [k for k in pyramids if k != ref]:
                del pyramids[k]
            pyramid.release_templates()  # its gradients were for the previous pair
            pyramids[index] = pyramid
        return raw, gray

    def checked(
        index: int, neighbour: int, raw: NDArray[Any], gray: NDArray[np.float32], pyramid: Any
    ) -> tuple[NDArray[Any], NDArray[np.float32], Any]:
        """Register a frame to its neighbour and decide whether to trust it; a rejected
        frame's neighbour (its raw frame, luma, pyramid and transform) stands in for it."""
        typical = float(np.median(residuals)) if len(residuals) >= 2 else None
        way = 1 if index > neighbour else -1
        predicted = steps.get(way)
        if predicted is None and -way in steps:  # the first step down: the first one up, inverted
            predicted = np.asarray(np.linalg.inv(first_steps[-way]), dtype=np.float64)
        step, outcome = _align._register_checked(
            pyramids[neighbour], pyramid, model=align, typical_residual=typical, predicted=predicted
        )
        if step is not None:
            steps[way] = outcome["step"]
            first_steps.setdefault(way, outcome["step"])
        energy = _report.tile_energy(gray)
        if step is None:
            stand_ins[index] = stand_ins.get(neighbour, neighbour)
            transforms[index] = transforms[neighbour]
            raw = source.raw(stand_ins[index])
            gray = gray_of(raw)
            pyramid = pyramids[neighbour]
        else:
            matrix = step @ transforms[neighbour]
            transforms[index] = matrix / matrix[2, 2]
            residuals.append(1.0 - outcome["correlation"])
        _report.record(
            frame_rows, index, outcome, transforms[index], neighbour, stand_ins.get(index), energy
        )
        return raw, gray, pyramid

    def resample(item: _Frame, into: NDArray[np.float32] | None = None) -> None:
        """Put a registered frame on the reference grid, float32 on [0, 1] (into ``into``
        if given and the frame moves)."""
        raw, item.raw = item.raw, None
        assert raw is not None
        if np.allclose(transforms[item.index], np.eye(3)):
            item.frame = to_unit_float(raw)
            return
        # warp the integers as they are (cheaper), then scale to [0, 1]
        frame = _warped(raw, transforms[item.index], into)
        if raw.dtype.kind in "ui":
            frame *= np.float32(1.0 / np.iinfo(raw.dtype).max)
        item.frame, item.gray = frame, None  # the luma of the raw frame is stale

    # seconds per frame of each step, as measured (running means): they decide which
    # steps the worker takes so that neither thread waits for the other
    costs: dict[str, list[float]] = {
        "read": [],
        "register": [],
        "warp": [],
        "measure": [],
        "merge": [],
    }

    def timed(step: str, started: float, index: int, spent: dict[str, float] | None = None) -> None:
        """Record a step's seconds in ``costs``, or in ``spent`` (a child process's)."""
        if spent is not None:
            spent[step] = time.perf_counter() - started
        elif index != ref:  # the reference is not registered, and merged first (set-up)
            costs[step].append(time.perf_counter() - started)

    def finish(
        item: _Frame,
        upto: int,
        spent: dict[str, float] | None = None,
        into: NDArray[np.float32] | None = None,
    ) -> _Frame:
        """Take ``item`` through the steps after registration, up to step ``upto``
        (0 none, 1 warp, 2 warp and measure; the photometric correction measures later);
        ``spent``: a child process's step times, ``into``: where its frame goes."""
        if upto >= 1 and item.frame is None:
            started = time.perf_counter()
            resample(item, into)
            timed("warp", started, item.index, spent)
        if upto >= 2 and item.measured is None and not photometric:
            assert item.frame is not None
            started = time.perf_counter()
            if item.gray is None:
                item.gray = gray_of(item.frame)
            item.measured = voting_measure(item.gray, measure)
            timed("measure", started, item.index, spent)
        return item

    def prepare(index: int, neighbour: int | None, share: int) -> _Frame:
        """The worker's part of one frame: read, register, then ``finish`` to ``share``."""
        started = time.perf_counter()
        raw, gray = register(index, neighbour)
        timed("register", started, index)
        return finish(_Frame(index, raw, gray), share)

    # One frame is read and registered by the worker (a child process, or a thread)
    # while the previous one is merged here: two frames in flight. Warping and
    # measuring go to the worker or stay here, whichever balances the two by the
    # measured step times (registration costs more than merging for small frames,
    # less for large ones).
    order = _order(count, ref)

    def threaded(pool: ThreadPoolExecutor) -> Generator[_Frame, None, None]:
        """The frames in ``order``, each prepared in the worker thread while the one
        before it is merged here."""
        pending = pool.submit(prepare, *order[0], 1)
        for done in range(1, count + 1):
            item = pending.result()
            if done < count:
                pending = pool.submit(prepare, *order[done], _balanced_share(costs))
            yield item

    def forked() -> Generator[_Frame, None, None]:
        """The frames in ``order``, each prepared in a child process while the one before
        it is merged here; warped frames come through memory the two share."""
        reference = preread[ref] = source.raw(ref)  # sets the frames' shape (the slots')
        slots = [_planar(reference.shape, shared_array) for _ in range(2)]
        # frames this process reads for the child when it has time to spare (see
        # _read_credit) go through two more slots (a pipe both ways could deadlock)
        raw_slots = shared_array((2, *reference.shape), reference.dtype)
        read_here: set[int] = set()
        read_credit = 0.0

        def child(inbox: Channel, outbox: Channel) -> None:
            for position, (index, neighbour) in enumerate(order):
                if position == 0:  # the reference: the parent has it, its pyramid is here
                    register(index, neighbour)
                    continue
                # the slot is free (the frame before last was merged), and the parent
                # may have read this frame itself, when it has time to spare
                share, given = inbox.recv()
                started = time.perf_counter()
                preread[index] = raw_slots[position % 2] if given else source.raw(index)
                spent = {"read": 0.0 if given else time.perf_counter() - started}
                started = time.perf_counter()
                raw, gray = register(index, neighbour)
                spent["register"] = time.perf_counter() - started
                slot = slots[position % 2]
                item = finish(_Frame(index, raw, gray), share, spent, slot)
                warped = item.frame is not None
                if warped and item.frame is not slot:  # the frame did not move: a copy
                    slot[...] = item.frame
                # the frame goes back if it is to be warped there, or if its luma (the
                # raw frame's, when it did not move) is to be measured there
                identity = bool(np.allclose(transforms[index], np.eye(3)))
                send_raw = (not warped or (identity and item.measured is None)) and not given
                message = (transforms[index], raw if send_raw else None, warped, item.measured)
                outbox.send(("ok", (*message, spent)))

        with ForkedWorker(child) as worker:
            preread.clear()  # the child has its copy
            worker.send((1, False))  # the second and third frames may go to the slots
            worker.send((1, False))
            # the reference needs no registration: merged here while the child registers
            yield _Frame(ref, reference, gray_of(reference))
            del reference
            for position, (index, _) in enumerate(order[1:], start=1):
                try:
                    transforms[index], raw, warped, measured, spent = worker.receive()
                except ChildProcessError as exc:
                    raise StackError(
                        f"reading and registering {source.names[index]} failed: {exc} "
                        "(killed, or out of memory?)"
                    ) from exc
                for step, seconds in spent.items():
                    if step != "read" or seconds > 0:  # (0: the parent read it)
                        costs[step].append(seconds)
                if raw is None and position in read_here:  # read here, still in its slot
                    raw = raw_slots[position % 2]
                    kept = _report.stand_in(frame_rows, index)
                    if kept is not None:  # rejected there: its stand-in is merged
                        raw = source.raw(kept)
                identity = bool(np.allclose(transforms[index], np.eye(3)))
                item = _Frame(index, raw, gray_of(raw) if identity and raw is not None else None)
                item.measured = measured
                if warped:  # into the slot
                    item.raw = None
                    item.frame = slots[position % 2]
                    if on_step is not None:  # the slot is reused: a copy to keep
                        item.frame = item.frame.copy()
                yield item
                del item
                if position + 2 < count:
                    share = _balanced_share(costs)
                    read_credit += _read_credit(costs, share)
                    given = read_credit >= 1.0  # this process has time to spare: it reads
                    if given:
                        read_credit -= 1.0
                        started = time.perf_counter()
                        raw_slots[position % 2] = source.raw(order[position + 2][0])
                        costs["read"].append(time.perf_counter() - started)
                        read_here.add(position + 2)
                    worker.send((share, given))

    reference_means: NDArray[np.float32] | None = None
    report(progress, "align", 0, count)
    # frames are read and registered in a forked child process where that is safe
    # (before any thread of ours starts), in a worker thread of this one otherwise
    use_child = can_fork() and count > 2 and not source.raw_files
    with ThreadPoolExecutor(max_workers=2) as pool:  # one prepares frames, both finish
        frames_in_order = forked() if use_child else threaded(pool)
        # closing: an error here stops the child process at once, not when collected
        with contextlib.closing(frames_in_order):
            for done, item in enumerate(frames_in_order, start=1):
                index = item.index
                finish(item, 2)
                started = time.perf_counter()
                frame = item.frame
                assert frame is not None
                gray = gray_of(frame) if item.gray is None else item.gray
                measured = item.measured
                if photometric:  # the reference comes first in ``order``
                    means = _block_means(gray)
                    if reference_means is None:
                        reference_means = means
                    else:
                        gain, offset = _align.estimate_gain(reference_means, means)
                        frame = frame * np.float32(gain) + np.float32(offset)
                        gray = gray * np.float32(gain) + np.float32(offset)
                if measured is None:
                    measured = voting_measure(gray, measure)
                focus.add(index, measured)
                if curve is not None:
                    curve.add(index, measured)
                if done == count:  # the worker is free now: it regularises the depth map
                    confidence = focus.confidence()  # while the last frame is merged here
                    raw = focus.raw_depth()
                    regularized = pool.submit(
                        _depth_and_base, raw, confidence, count, gray.shape, pyramid
                    )
                    if confidence.shape != frame.shape[:2]:  # measured on a decimated grid
                        full_confidence = pool.submit(zoom_bilinear, confidence, 2)
                if weighted is not None:
                    weighted.add(frame, sharpness_mask(frame if focus_channel is None else gray))
                if pyramid is not None:
                    pyramid.add(index, frame)
                if on_step is not None:
                    on_step(f"aligned_{index:03d}", frame)
                    on_step(f"sharpness_{index:03d}", measured)
                timed("merge", started, index)
                del frame, gray, measured, item
                report(progress, "align", done, count)
    pyramids.clear()
    frame_reports = _report.reports(frame_rows, source.names)
    _distrust(frame_reports)

    report(progress, "depth", 0, 1)
    if on_step is not None:
        on_step("depth_raw", raw.astype(np.float32))
        on_step("confidence", confidence)
    depth, base_depth = regularized.result()
    del focus, raw
    if confidence.shape != depth.shape:  # measured on the decimated grid (1 MP and more)
        confidence = full_confidence.result()[: depth.shape[0], : depth.shape[1]]
    if on_step is not None:
        on_step("depth", depth / np.float32(max(count - 1, 1)))
    report(progress, "depth", 1, 1)

    if method == "depthmap":
        acc = DepthAccumulator(depth)
        report(progress, "fuse", 0, count)
        for index in range(count):
            if acc.needs(index):
                kept = _report.stand_in(frame_rows, index)
                frame = source.unit(index if kept is None else kept)
                if not np.allclose(transforms[index], np.eye(3)):
                    frame = _warped(frame, transforms[index])
                acc.add(index, frame)
                del frame
            report(progress, "fuse", index + 1, count)
        image = acc.result()
    else:
        report(progress, "fuse", 0, 1)
        if weighted is not None:
            image = weighted.result()
            if gamma_correction:
                image = apply_gamma(image, lab_gamma(image))
        else:
            assert pyramid is not None and source.dtype is not None
            # integers converted to the frames' dtype channel by channel, as collapsed
            dtype = source.dtype if source.dtype.kind in "ui" else None
            image = pyramid.result(base_depth if method == "pyramid" else None, dtype)
        report(progress, "fuse", 1, 1)
    assert source.dtype is not None
    if source.dtype.kind == "f":  # float in, float out, on the frames' own scale
        image = _float_output(image, source.float_range(), source.scale)
    elif image.dtype != source.dtype:
        image = from_unit_float(image, source.dtype, clip=True)
    heights = _height(curve, depth, count) if curve is not None else (None, None)
    return FuseResult(
        height=heights[0],
        height_confidence=heights[1],
        image=image,
        depth=depth,
        transforms=list(transforms),
        reference=ref,
        method=method,
        confidence=confidence,
        frames=frame_reports,
    )
