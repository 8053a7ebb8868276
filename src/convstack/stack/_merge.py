"""The merge of :func:`convstack.stack.fuse`: frames on the reference grid in, the
depth map and the fused image out.

Each frame's focus measure votes for the depth map (a running argmax,
:class:`~convstack.stack.depth.FocusAccumulator`); the single-pass methods
(``'pyramid'``, ``'maxabs'``, ``'weighted'``) add the frame to their running
selection or sums. Once every frame is in, the depth map is regularised and the
result made: ``'pyramid'`` blends its low-pass bases with the depth map, and only
``'depthmap'`` reads again the frames the depth map uses (:func:`second_pass`).
The accumulators are used only through their ``add`` and ``result``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..progress import ProgressCallback, report
from ._frames import Frame, is_identity, measure_focus, warped
from ._registrar import Registrar
from ._source import FrameSource
from ._strip_major import FrameCache, release_freed_memory, same_bits
from .align import estimate_gain
from .depth import FocusAccumulator, regularize_depth, zoom_bilinear
from .fusion import (
    DepthAccumulator,
    PyramidAccumulator,
    WeightedAccumulator,
    apply_gamma,
    from_unit_float,
    lab_gamma,
)
from .height import FocusCurve, subframe_height
from .sharpness import sharpness_mask

__all__ = ["Merger", "StepCallback", "block_means", "in_frames_dtype", "second_pass"]

#: ``on_step(name, array)``: what :func:`convstack.stack.fuse` shows of its steps.
StepCallback = Callable[[str, NDArray[Any]], None]


def block_means(gray: NDArray[np.float32], block: int = 8) -> NDArray[np.float32]:
    """Means of ``block`` x ``block`` tiles (a low-pass thumbnail for photometric fits)."""
    rows, cols = (max(n // block, 1) for n in gray.shape[:2])
    size_r, size_c = min(block, gray.shape[0]), min(block, gray.shape[1])
    tiles = gray[: rows * size_r, : cols * size_c].reshape(rows, size_r, cols, size_c)
    return tiles.mean(axis=(1, 3), dtype=np.float32)


def _depth_and_base(
    raw: NDArray[Any],
    confidence: NDArray[np.float32],
    count: int,
    shape: tuple[int, int],
    pyramid: PyramidAccumulator | None,
) -> tuple[NDArray[np.float32], NDArray[np.float32] | None, NDArray[np.float32] | None]:
    """The regularised depth map, for ``pyramid`` the depth on its bases' grid, and the
    confidence on the frames' grid where it was measured on a decimated one (else None).

    One after the other: run side by side (they were), the regularisation's
    temporaries (32 B a pixel at 6 MP) and the confidence's upsampling (14) both fell
    on the last frame's merge, the peak of a fuse in one process."""
    depth = regularize_depth(raw, confidence, count=count, shape=shape)
    base = None if pyramid is None else pyramid.base_depth(depth)
    full = zoom_bilinear(confidence, 2) if confidence.shape != shape else None
    return depth, base, full


class Merger:
    """The running merge of a stack's frames (see the module's notes).

    Parameters
    ----------
    method : str
        'pyramid', 'depthmap', 'weighted' or 'maxabs'.
    count : int
        The number of frames.
    measure : str
        The focus measure (for frames not measured by the scheduler).
    gray_of : callable
        ``gray_of(frame)``: the float32 luma (or focus channel) that is measured.
    photometric, gamma_correction, levels, focus_channel, noise_floor, height
        As in :func:`convstack.stack.fuse`.
    strip_rows : int or 'auto'
        The pyramid merge's rows a strip (the memory plan's; the same bits whatever).
    cache : FrameCache, optional
        'pyramid' and 'maxabs': merge strip-major (issue 14, the memory plan's choice
        for frames too large for the frame-major state): each frame's coarse levels
        now, its finer ones strip by strip in :meth:`result` from the frames kept in
        ``cache`` (closed there); the same bits.
    """

    def __init__(
        self,
        method: str,
        count: int,
        *,
        measure: str,
        gray_of: Callable[[NDArray[Any]], NDArray[np.float32]],
        photometric: bool,
        gamma_correction: bool,
        levels: int | None,
        focus_channel: int | Sequence[float] | None,
        noise_floor: float | None,
        height: bool,
        strip_rows: int | str = "auto",
        cache: FrameCache | None = None,
    ) -> None:
        self.method = method
        self.count = count
        self.measure = measure
        self.gray_of = gray_of
        self.photometric = photometric
        self.gamma_correction = gamma_correction
        self.focus_channel = focus_channel
        self.focus = FocusAccumulator()
        self.curve = FocusCurve() if height else None  # the sub-frame peak, for height maps
        self.weighted = WeightedAccumulator() if method == "weighted" else None
        self.pyramid: PyramidAccumulator | None = None
        rows: int | Literal["auto"] = "auto" if strip_rows == "auto" else int(strip_rows)
        if method == "pyramid":
            self.pyramid = PyramidAccumulator(
                levels, focus=focus_channel, noise=noise_floor, strip_rows=rows
            )
        elif method == "maxabs":  # the classic rule: hard max at every level, mean base
            self.pyramid = PyramidAccumulator(
                levels, soft_levels=0, envelope=False, focus=focus_channel, strip_rows=rows
            )
        self.cache = cache if self.pyramid is not None and levels != 1 else None
        if cache is not None:  # an error ends the fuse: its disk space goes with the merge
            weakref.finalize(self, cache.close)
        self._order: list[int] = []  # the frames in the order merged (strip-major)
        self._reference_means: NDArray[np.float32] | None = None
        self._raw_depth: NDArray[Any] | None = None
        self._confidence: NDArray[np.float32] | None = None
        self._regularized: Future[Any] | None = None

    def vote(
        self, item: Frame
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
        """Add a warped frame's focus measure to the depth vote (the reference first).

        Returns the frame, its luma and its measure, brightness-matched to the
        reference with ``photometric``."""
        assert item.frame is not None
        frame, gray, _ = self._matched(item.frame, item.gray)
        measured = item.measured
        if measured is None:
            measured = measure_focus(gray, self.measure)
        self._vote(item.index, measured)
        return frame, gray, measured

    def take(
        self, item: Frame, *, keep: bool = False
    ) -> tuple[NDArray[np.float32] | None, NDArray[np.float32], NDArray[np.float32]]:
        """The strip-major merge's first pass over a warped frame: cached and its coarse
        levels merged (:meth:`add`), then dropped (``item.frame`` too) before its focus
        is measured and voted, so that one frame-sized float array is held at a time.

        Returns as :meth:`vote` does, the frame only with ``keep`` (else None)."""
        assert item.frame is not None and self.cache is not None
        # the last frame's arrays, freed since its merge, go back before this one's work
        # (the command's allocator keeps freed memory, and the next frame, read in
        # another thread, cannot reuse it: 200 MP grey x 20 peaked 0.3 GiB higher)
        release_freed_memory()
        # (the frame is this merge's own: brightness-matched in place)
        frame, gray, gain = self._matched(item.frame, item.gray, in_place=True)
        raw, item.frame, item.gray, item.raw = item.raw, None, None, None
        if gray is not frame and same_bits(gray, frame):
            gray = frame  # (a grey frame that did not move is its own luma: one kept)
        # cached first, so that the frame as read goes before the coarse merge
        self.cache.put(item.index, frame, raw=raw, gain=gain)
        self._order.append(item.index)
        del raw
        assert self.pyramid is not None
        self.pyramid.add_coarse(item.index, frame)
        shown = frame if keep else None
        del frame
        release_freed_memory()  # the frame's pages, before the measure's temporaries
        measured = measure_focus(gray, self.measure)
        self._vote(item.index, measured)
        release_freed_memory()
        return shown, gray, measured

    def _matched(
        self,
        frame: NDArray[np.float32],
        gray: NDArray[np.float32] | None,
        *,
        in_place: bool = False,
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], tuple[float, float] | None]:
        """The frame and its luma (made here if None), brightness-matched to the
        reference with ``photometric`` (the reference comes first), and the (gain,
        offset) applied (None: none); ``in_place``: the frame corrected in place (the
        same two roundings, so the same numbers)."""
        gray = self.gray_of(frame) if gray is None else gray
        matched = None
        if self.photometric:
            means = block_means(gray)
            if self._reference_means is None:
                self._reference_means = means
            else:
                gain, offset = estimate_gain(self._reference_means, means)
                matched = (gain, offset)
                if in_place:
                    frame *= np.float32(gain)
                    frame += np.float32(offset)
                else:
                    frame = frame * np.float32(gain) + np.float32(offset)
                # (a copy: the registrar's pyramid may hold the luma of a small frame)
                gray = gray * np.float32(gain) + np.float32(offset)
        return frame, gray, matched

    def _vote(self, index: int, measured: NDArray[np.float32]) -> None:
        """Frame ``index``'s focus measure into the depth vote (and the focus curve)."""
        self.focus.add(index, measured)
        if self.curve is not None:
            self.curve.add(index, measured)

    def start_depth(self, pool: ThreadPoolExecutor, shape: tuple[int, int]) -> None:
        """Regularise the depth map in ``pool`` once every frame has voted (while the
        last one is merged); ``shape``: the frames' (rows, cols)."""
        self._confidence = confidence = self.focus.confidence()
        self._raw_depth = raw = self.focus.raw_depth()
        self.focus = FocusAccumulator()  # the votes are spent: their memory goes
        if self.cache is not None:
            release_freed_memory()
        self._regularized = pool.submit(
            _depth_and_base, raw, confidence, self.count, shape, self.pyramid
        )

    def add(
        self,
        index: int,
        frame: NDArray[np.float32],
        gray: NDArray[np.float32],
        *,
        raw: NDArray[Any] | None = None,
        gain: tuple[float, float] | None = None,
    ) -> None:
        """Add a warped frame to the single-pass merges (``gray``: its focus image;
        strip-major: ``raw``, the integer frame as read where ``frame`` is it scaled,
        and ``gain``, the photometric (gain, offset) applied, let the cache keep it as
        read; see :meth:`FrameCache.put`)."""
        if self.weighted is not None:
            mask = sharpness_mask(frame if self.focus_channel is None else gray)
            self.weighted.add(frame, mask)
        if self.pyramid is not None and self.cache is not None:
            self.pyramid.add_coarse(index, frame)
            self.cache.put(index, frame, raw=raw, gain=gain)
            self._order.append(index)
        elif self.pyramid is not None:
            self.pyramid.add(index, frame)

    def depth(
        self, on_step: StepCallback | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.float32] | None, NDArray[np.float32]]:
        """(depth, the depth on the pyramid bases' grid or None, confidence), the
        depth map and confidence on the frames' grid."""
        raw, confidence = self._raw_depth, self._confidence
        assert raw is not None and confidence is not None and self._regularized is not None
        if on_step is not None:
            on_step("depth_raw", raw.astype(np.float32))
            on_step("confidence", confidence)
        depth, base_depth, full = self._regularized.result()
        self._raw_depth = self._regularized = None
        if full is not None:  # measured on the decimated grid (1 MP and more)
            confidence = full[: depth.shape[0], : depth.shape[1]]
        if self.cache is not None:
            release_freed_memory()  # the regularisation's temporaries
        return depth, base_depth, confidence

    def result(
        self,
        base_depth: NDArray[np.float32] | None,
        dtype: np.dtype[Any],
        progress: ProgressCallback | None = None,
    ) -> NDArray[Any]:
        """The single-pass merge's image (integers in ``dtype`` for the pyramids)."""
        report(progress, "fuse", 0, 1)
        if self.weighted is not None:
            image = self.weighted.result()
            if self.gamma_correction:
                image = apply_gamma(image, lab_gamma(image))
        else:
            assert self.pyramid is not None
            # integers converted to the frames' dtype channel by channel, as collapsed
            as_dtype = dtype if dtype.kind in "ui" else None
            depth = base_depth if self.method == "pyramid" else None
            if self.cache is None:
                image = self.pyramid.result(depth, as_dtype)
            else:
                with self.cache:
                    image = self.pyramid.merge_strips(self.cache.rows, self._order, depth, as_dtype)
        report(progress, "fuse", 1, 1)
        return image

    def height(
        self, depth: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]] | tuple[None, None]:
        """The sub-frame height (frames) and its confidence on the depth map's grid, or
        (None, None) without ``height``."""
        if self.curve is None:
            return None, None
        peak, confidence = self.curve.peak(self.count)
        if peak.shape != depth.shape:  # measured on a grid decimated by two
            peak = zoom_bilinear(peak, 2)[: depth.shape[0], : depth.shape[1]]
            confidence = zoom_bilinear(confidence, 2)[: depth.shape[0], : depth.shape[1]]
        return subframe_height(peak, depth), confidence


def second_pass(
    source: FrameSource,
    registrar: Registrar,
    depth: NDArray[np.float32],
    progress: ProgressCallback | None = None,
) -> NDArray[np.float32]:
    """``'depthmap'``: read again the frames the depth map uses, put them on the
    reference grid and blend them by depth."""
    count = len(source)
    acc = DepthAccumulator(depth)
    report(progress, "fuse", 0, count)
    for index in range(count):
        if acc.needs(index):
            kept = registrar.stand_in(index)
            frame = source.unit(index if kept is None else kept)
            matrix = registrar.transforms[index]
            if not is_identity(matrix, frame.shape):
                frame = warped(frame, matrix, order=registrar.warp_order)
            acc.add(index, frame)
            del frame
        report(progress, "fuse", index + 1, count)
    return acc.result()


def in_frames_dtype(image: NDArray[Any], source: FrameSource) -> NDArray[Any]:
    """The fused image in the frames' dtype: integers rounded and saturated; float
    frames give float32 clipped to their range widened to [0, 1] (as integers
    saturate), back on their own scale."""
    assert source.dtype is not None
    if source.dtype.kind == "f":
        image = np.clip(image, *source.float_range())
        if source.scale != 1.0:
            image = np.multiply(image, np.float32(source.scale), dtype=np.float32)
        return image.astype(np.float32, copy=False)
    if image.dtype != source.dtype:
        return from_unit_float(image, source.dtype, clip=True)
    return image
