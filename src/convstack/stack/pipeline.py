"""The focus-stacking pipeline: load -> align -> sharpness -> depth -> fuse, streaming.

:func:`fuse` orchestrates four stages, each a small private module of
``convstack.stack``:

- the frame source (``_source``) reads the frames one at a time on demand and
  checks them against the reference;
- the registrar (``_registrar``) registers each frame to its neighbour on the
  reference's side, from the reference outwards, and chains the transforms to the
  reference; a frame it does not trust is left out, its neighbour standing in;
- the scheduler (``_schedule``) has a worker (a forked child process, or a thread
  where forking is not safe) read and register the next frame, and warp and measure
  it (``_frames``) as the measured step times balance, while this thread merges;
- the merge (``_merge``) votes each frame's focus measure into the depth map and
  adds the frame to the single-pass merges (``'pyramid'``, ``'maxabs'``,
  ``'weighted'``); then regularises the depth map and makes the image (only
  ``'depthmap'`` reads again the frames that the depth map uses).

At most two frames are in flight, plus two lumas for registration and a fixed
number of frame-sized accumulators, whatever the number of frames; only the
pyramid's low-pass bases (a few kilobytes each) are kept per frame, so peak memory
is flat in the number of frames (bench/README.md, "## fusion"). Before any frame is
decoded, the memory plan (``_schedule.plan_memory``) fits the run to ``memory_limit``
from the reference's size: the reader forked or a thread, and the merge's strip rows;
frames too large for the merge's frame-sized state are merged strip-major (``_strip_major``:
coarse levels and the depth votes frame by frame, then the fine levels strip by strip from
the frames cached on disk; the same bits).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _validate as v
from ..limits import get_memory_limit, parse_size
from ..progress import ProgressCallback, report
from . import registration_report as _report
from . import zstack as _zstack
from ._frames import Frame
from ._merge import Merger, StepCallback, in_frames_dtype, second_pass
from ._registrar import DEFAULT_INTERPOLATION, INTERPOLATIONS, ReferenceBroken, Registrar
from ._schedule import MemoryPlan, Scheduler, plan_memory
from ._source import FrameSource
from ._strip_major import FrameCache
from .align import MODELS
from .depth import focus_gray, snap_depth_steps
from .fusion import DEFAULT_NOISE_FLOOR, METHODS, STRIP_BUDGET, STRIP_MIN_ROWS
from .io import read_ahead_bytes
from .occlusion import PREFER, prefer_layer
from .sharpness import MEASURES
from .strips import rows_for_budget

__all__ = ["DEFAULT_METHOD", "FuseResult", "fuse"]

#: The method :func:`fuse` uses unless told otherwise (chosen by bench/fusion.py).
DEFAULT_METHOD = "pyramid"


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


def _merge_frame(
    merger: Merger, item: Frame, last: ThreadPoolExecutor | None, on_step: StepCallback | None
) -> None:
    """Vote and merge one frame; after the last one's vote (``last``: the pool, free
    now), the depth map is regularised there while the frame is merged here (the
    strip-major merge's first pass merges first, then votes: see ``Merger.take``)."""
    strip_major = merger.cache is not None
    if strip_major:
        frame, gray, measured = merger.take(item, keep=on_step is not None)
    else:
        frame, gray, measured = merger.vote(item)
    if last is not None:
        merger.start_depth(last, (gray.shape[0], gray.shape[1]))
    if not strip_major:
        assert frame is not None
        merger.add(item.index, frame, gray)
    if on_step is not None:
        assert frame is not None
        on_step(f"aligned_{item.index:03d}", frame)
        on_step(f"sharpness_{item.index:03d}", measured)


def _plan(source: FrameSource, registrar: Registrar, method: str, limit: int) -> MemoryPlan:
    """The memory plan for ``limit`` bytes, from the reference's header (nothing
    decoded), or from the reference itself, read first, where its header does not tell."""
    ref = registrar.reference
    probed = source.probe(ref)
    if probed is None:
        registrar.preread[ref] = source.raw(ref)
        assert source.shape is not None and source.dtype is not None
        probed = source.shape, source.dtype
    shape, dtype = probed
    default_rows = max(STRIP_MIN_ROWS, rows_for_budget(shape, STRIP_BUDGET))
    held = read_ahead_bytes()  # (frames the command decoded ahead, not read yet)
    return plan_memory(shape, dtype, method, limit, default_rows=default_rows, held=held)


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
    noise_floor: float | None = DEFAULT_NOISE_FLOOR,
    snap_depth: bool = False,
    memory_limit: int | str | None = None,
    interpolation: str = DEFAULT_INTERPOLATION,
    prefer: str = "none",
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
        A default reference that looks broken (its two neighbours register to each
        other but not to it: another scene, a black frame, a jump) is replaced by the
        nearest of them, and fuse runs again (twice the time) with the broken frame left
        out; a warning says so, and ``result.reference`` is the new one. A reference
        given here is never replaced: if it looks broken, ``AlignmentError``.
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
    noise_floor : float or None
        With ``method='pyramid'``: z > 0, where no frame's detail stands more than
        about z sigmas of the measured sensor noise above it, the frames are averaged
        rather than one picked (quieter out-of-focus backgrounds; see
        :class:`convstack.stack.fusion.PyramidAccumulator`'s ``noise``); None: off.
        Default ``DEFAULT_NOISE_FLOOR`` (3): the bug set gains 0.15 dB against its
        reference composite (0.56 dB unaligned) with half its background's high-pass
        RMS; rendered stacks move by 0.02 dB at most (bench/README.md, fusion).
    snap_depth : bool
        Move the returned depth map's steps onto the fused image's edges
        (:func:`convstack.stack.depth.snap_depth_steps`): a focus window makes the near
        side of every occlusion grow by its reach (the demo's stick, twice its width).
        Only the returned ``depth`` (and ``height``) change, never the merge; off by
        default, as it costs 7-10 % of a fuse on 1 MP frames and more on small ones.
    memory_limit : int or str, optional
        Bytes (or a size such as ``"2GiB"``) the whole fuse may take, all processes;
        default :func:`convstack.limits.get_memory_limit` (half of the memory). From
        the frames' size (read from the reference's header, before any frame is
        decoded) and measured bytes a pixel, it chooses whether the reader runs as a
        forked child (a process of its own) or a thread here, and the pyramid
        merge's strip rows; where even that does not fit ('pyramid', 'maxabs'), the
        strip-major merge: two passes, the registered frames cached on disk in the
        system's temporary folder (``TMPDIR``, or ``/var/tmp`` where ``/tmp`` is in
        memory; 4 bytes a sample a frame, freed at the end). The output is the same
        whatever it chooses.
    interpolation : {'cubic', 'quintic'}
        How aligned frames are resampled onto the reference grid: the quintic
        B-spline (default; ``convstack.warp.warp(order=5, separable=True)``, in two 1-D
        passes), which keeps the fine detail that Keys cubic softens (breathing stacks
        +0.7-0.8 dB) at about the cubic's wall time (bench/README.md, fusion), or Keys
        cubic. A frame that its transform moves by less than 0.01 px everywhere is
        merged as read, not resampled (the warp would blur it more than it moves it).
    prefer : {'none', 'near', 'far'}
        At occlusion boundaries found in the depth map (a step of 3 frames or more),
        keep the near (or far) layer whole: on that side, blend towards its own frames
        where they hold as much fine detail as the merge (which end of the stack is near
        is read from the depth map; :func:`convstack.stack.occlusion.prefer_layer`).
        Reads those frames again, and costs 1.3-2x the time of a fuse. 'near': +0.24 to
        +0.38 dB on a near stick's edge, none lost around it; 'far' costs up to 0.18 dB
        around it (the far frames carry the near object's glow) (bench/README.md, fusion).

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
    LimitError
        Even the leanest schedule's estimated peak exceeds ``memory_limit`` (said
        before any frame is decoded, where the reference's header gives its size).
    AlignmentError
        Registration failed for every frame but the reference (named). A frame whose
        registration fails or is implausible (a scale, rotation or shift jump, a
        residual outlier) is otherwise left out, its neighbour merged in its place, and
        a warning naming it is logged (``result.frames`` says why). Also a ``reference``
        given here that looks broken (see ``reference``).

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
    options = dict(locals())  # (to fuse again from another reference: see below)
    del options["frames"]
    v.choice(method, "method", METHODS)
    v.choice(align, "align", MODELS)
    v.choice(measure, "measure", MEASURES)
    v.choice(interpolation, "interpolation", tuple(INTERPOLATIONS))
    v.choice(prefer, "prefer", PREFER)
    if noise_floor is not None:
        noise_floor = v.positive_float(noise_floor, "noise_floor")
    if memory_limit is None:
        limit = get_memory_limit()
    elif isinstance(memory_limit, (int, str)) and not isinstance(memory_limit, bool):
        limit = parse_size(memory_limit, "memory_limit")
    else:
        raise v.fail("memory_limit", "be a size in bytes or a string such as '2GiB'",
                     memory_limit, kind=TypeError)  # fmt: skip
    source = FrameSource(frames)
    count = len(source)
    ref = count // 2 if reference is None else reference
    if isinstance(ref, bool) or not isinstance(ref, (int, np.integer)) or not 0 <= ref < count:
        raise v.fail("reference", f"be a frame index in [0, {count - 1}]", reference)
    gray_of = focus_gray(focus_channel)  # (the luma unless a focus channel is chosen)
    registrar = Registrar(
        source, int(ref), align, gray_of, chosen=reference is not None,
        interpolation=interpolation,
    )  # fmt: skip
    plan = _plan(source, registrar, method, limit)
    scheduler = Scheduler(
        source, registrar, gray_of=gray_of, measure=measure, photometric=photometric,
        keep_frames=on_step is not None, fork=plan.forked, lean=plan.strip_major,
    )  # fmt: skip
    merger = Merger(
        method, count, measure=measure, gray_of=gray_of, photometric=photometric,
        gamma_correction=gamma_correction, levels=levels, focus_channel=focus_channel,
        noise_floor=noise_floor, height=height, strip_rows=plan.strip_rows,
        cache=FrameCache(count) if plan.strip_major else None,
    )  # fmt: skip

    report(progress, "align", 0, count)
    # one thread prepares frames, both finish them; closing: an error here stops the
    # child process at once, not when collected
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        contextlib.closing(scheduler.frames(pool)) as frames_in_order,
    ):
        for done, item in enumerate(frames_in_order, start=1):
            scheduler.finish(item, 1 if plan.strip_major else 2)
            started = time.perf_counter()
            _merge_frame(merger, item, pool if done == count else None, on_step)
            scheduler.timed("merge", started, item.index)
            del item
            report(progress, "align", done, count)
    try:
        frame_reports = registrar.reports()
    except ReferenceBroken as broken:  # the default reference: again from its neighbour
        del merger, scheduler, registrar  # (before the second run's)
        return broken.again(fuse, source, options)

    report(progress, "depth", 0, 1)
    depth, base_depth, confidence = merger.depth(on_step)
    if on_step is not None:
        on_step("depth", depth / np.float32(max(count - 1, 1)))
    report(progress, "depth", 1, 1)

    assert source.dtype is not None
    if method == "depthmap":
        image = second_pass(source, registrar, depth, progress)
    else:
        image = merger.result(base_depth, source.dtype, progress)
    if prefer != "none":  # the preferred layer whole at occlusions (its frames read again)
        image = prefer_layer(
            image, depth, registrar.on_grid, prefer=prefer, count=count, confidence=confidence
        )
    if snap_depth:
        depth = snap_depth_steps(depth, image, count=count)
    heights = merger.height(depth)
    return FuseResult(
        height=heights[0],
        height_confidence=heights[1],
        image=in_frames_dtype(image, source),
        depth=depth,
        transforms=list(registrar.transforms),
        reference=registrar.reference,
        method=method,
        confidence=confidence,
        frames=frame_reports,
    )
