"""Stage 5 of focus stacking: the depth map (which frame is sharpest where).

The raw depth is the index of the sharpest frame per pixel, found with a running
argmax over the frames' focus measures (one frame in memory at a time). It is
noisy where nothing is in focus (flat areas), so it is regularised:

1. confidence ``c = max_i s_i - mean_i s_i`` (a pixel whose sharpest frame stands
   out is trusted; a flat pixel, where every frame looks alike, is not);
2. confidence-weighted normalised convolution at three scales,
   ``d = sum_k a^k G_k*(c idx) / sum_k a^k G_k*(c)``: the finest scale wins
   where it has support, coarser scales fill flat areas from trusted neighbours;
3. speckle removal: a winning frame that few neighbours share (pixel counts
   over the coarse windows, not confidence) gives way to the frame most of them
   hold;
4. optionally, an edge-aware guided filter (He et al. 2010) steered by the luma of the
   sharpest pixels, so that depth steps follow the image's edges.

The result is a fractional frame index in [0, n_frames - 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _validate as v
from ..convolve import correlate
from .sharpness import gaussian_window, sharpness, to_gray, to_unit_float

__all__ = [
    "FocusAccumulator",
    "focus_gray",
    "depth_map",
    "depth_to_image",
    "guided_filter",
    "regularize_depth",
    "snap_depth_steps",
    "voting_measure",
]

F32 = NDArray[Any]  # float32 in practice


class FocusAccumulator:
    """Running argmax of the focus measure, its maximum, sum and the sharpest luma."""

    def __init__(self) -> None:
        self.index: NDArray[np.int32] | None = None
        self.best: F32 | None = None
        self.total: F32 | None = None
        self.guide: F32 | None = None
        self.count = 0

    def add(self, index: int, measure: F32, gray: F32 | None = None) -> None:
        """Take in frame ``index``'s focus measure (and its luma, the filter's guide)."""
        if self.best is None:
            self.index = np.full(measure.shape, index, np.int32)
            self.best = measure.astype(np.float32, copy=True)
            self.total = measure.astype(np.float32, copy=True)
            self.guide = None if gray is None else gray.astype(np.float32, copy=True)
        else:
            assert self.index is not None and self.total is not None
            better = measure > self.best
            self.index[better] = index
            np.maximum(self.best, measure, out=self.best)
            self.total += measure
            if gray is not None and self.guide is not None:
                self.guide[better] = gray[better]
        self.count += 1

    def raw_depth(self) -> NDArray[np.int32]:
        assert self.index is not None
        return self.index

    def confidence(self) -> F32:
        assert self.best is not None and self.total is not None
        return np.maximum(self.best - self.total / np.float32(self.count), np.float32(0.0))


def focus_gray(focus_channel: Any = None) -> Any:
    """The function that makes a frame's focus image (what is measured and registered).

    Parameters
    ----------
    focus_channel : int, sequence of float or None
        None: the luma (:func:`convstack.stack.sharpness.to_gray`) of 1 to 4 channels,
        the mean of more; an int: that channel alone (fluorescence: the channel that
        shows the structure, DAPI say); weights: their normalised weighted sum of the
        channels, one weight a channel. Each channel is scaled to [0, 1] as
        :func:`to_gray` scales.

    Returns
    -------
    callable
        ``gray(frame) -> float32 (rows, cols)``; it raises ValueError for a channel
        index out of range or weights of another count than the frame's channels.
    """
    if focus_channel is None:

        def default(frame: ArrayLike, name: str = "image") -> F32:
            array = np.asarray(frame)
            if array.ndim == 3 and array.shape[2] > 4:
                return to_unit_float(array, name).mean(axis=2, dtype=np.float32)
            return to_gray(array, name)

        return default
    if isinstance(focus_channel, (int, np.integer)) and not isinstance(focus_channel, bool):
        channel = int(focus_channel)

        def single(frame: ArrayLike, name: str = "image") -> F32:
            array = np.asarray(frame)
            count = 1 if array.ndim == 2 else array.shape[2]
            if not 0 <= channel < count:
                raise v.fail("focus_channel", f"be a channel index in [0, {count - 1}]", channel)
            plane = array if array.ndim == 2 else array[..., channel]
            return np.ascontiguousarray(to_unit_float(plane, name))

        return single
    try:
        weights = np.asarray(focus_channel, dtype=np.float64)
    except (TypeError, ValueError):
        raise v.fail(
            "focus_channel", "be a channel index or weights", focus_channel, kind=TypeError
        ) from None
    if (
        weights.ndim != 1
        or weights.size == 0
        or not np.all(np.isfinite(weights))
        or np.any(weights < 0)
        or weights.sum() <= 0
    ):
        raise v.fail("focus_channel", "be weights >= 0 with a sum > 0", focus_channel)
    weights = weights / weights.sum()

    def weighted(frame: ArrayLike, name: str = "image") -> F32:
        array = np.asarray(frame)
        count = 1 if array.ndim == 2 else array.shape[2]
        if weights.size != count:
            raise v.fail(
                "focus_channel", f"give one weight for each of the {count} channels", focus_channel
            )
        unit = to_unit_float(array.reshape(*array.shape[:2], count), name)
        gray = unit[..., 0] * np.float32(weights[0])
        for c in range(1, count):
            gray += unit[..., c] * np.float32(weights[c])
        return gray

    return weighted


def _box(image: F32, radius: int) -> F32:
    taps = np.full(2 * radius + 1, 1.0 / (2 * radius + 1), dtype=np.float32)
    out = correlate(image, taps[:, None], mode="reflect")
    return correlate(out, taps[None, :], mode="reflect").astype(np.float32, copy=False)


def _resize_bilinear(image: F32, shape: tuple[int, int]) -> F32:
    """Bilinear resize of a 2-D map to ``shape`` (pixel centres aligned)."""

    def axis_weights(n_in: int, n_out: int) -> tuple[NDArray[Any], NDArray[Any], F32]:
        pos = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    r0, r1, fr = axis_weights(image.shape[0], shape[0])
    c0, c1, fc = axis_weights(image.shape[1], shape[1])
    rows = image[r0] * (1 - fr[:, None]) + image[r1] * fr[:, None]
    return (rows[:, c0] * (1 - fc[None, :]) + rows[:, c1] * fc[None, :]).astype(np.float32)


def smooth(image: F32, sigma: float) -> F32:
    """Gaussian blur of a 2-D map; large ``sigma`` is done on a decimated grid (fast)."""
    if sigma <= 4.0:
        return gaussian_window(image, sigma)
    factor = 2 ** int(np.floor(np.log2(sigma / 2.0)))
    rows, cols = image.shape
    pr, pc = (-rows) % factor, (-cols) % factor
    padded = np.pad(image, ((0, pr), (0, pc)), mode="edge") if pr or pc else image
    small = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    small = small.mean(axis=(1, 3), dtype=np.float32)
    small = gaussian_window(small, sigma / factor)
    big = _resize_bilinear(small, (padded.shape[0], padded.shape[1]))
    return np.ascontiguousarray(big[:rows, :cols])


#: Maps at least this large vote on a grid decimated by two, in about a third of the
#: time; on smaller maps the half grid's depth edges would show as steps.
_HALF_VOTE_PIXELS = 1_000_000


def _block_mean(image: F32, factor: int) -> F32:
    """Mean over ``factor x factor`` blocks (edge-padded to a multiple of ``factor``)."""
    rows, cols = image.shape
    pr, pc = (-rows) % factor, (-cols) % factor
    padded = np.pad(image, ((0, pr), (0, pc)), mode="edge") if pr or pc else image
    summed = padded[0::factor].copy()
    for i in range(1, factor):
        summed += padded[i::factor]
    out = summed[:, 0::factor].copy()
    for i in range(1, factor):
        out += summed[:, i::factor]
    out *= np.float32(1.0 / (factor * factor))
    return out


def _phases(image: NDArray[Any], factor: int) -> list[NDArray[Any]]:
    """The ``factor**2`` phases ``image[i::factor, j::factor]`` (edge-padded to a multiple
    of ``factor``, as :func:`_block_mean`), each contiguous, in the order (j, i)."""
    rows, cols = image.shape
    pr, pc = (-rows) % factor, (-cols) % factor
    padded = np.pad(image, ((0, pr), (0, pc)), mode="edge") if pr or pc else image
    return [
        np.ascontiguousarray(padded[i::factor, j::factor])
        for j in range(factor)
        for i in range(factor)
    ]


def _phase_mean(hits: list[NDArray[np.bool_]], values: list[F32], factor: int) -> F32:
    """:func:`_block_mean` of ``where(hit, value, 0)`` from per-phase hits and values.

    Sums in :func:`_block_mean`'s order (down each block column, then across), so the
    result is the same to the bit.
    """
    out: F32 | None = None
    for j in range(factor):
        column: F32 | None = None
        for i in range(factor):
            n = j * factor + i
            term = np.where(hits[n], values[n], np.float32(0.0))
            column = term if column is None else np.add(column, term, out=column)
        assert column is not None
        out = column if out is None else np.add(out, column, out=out)
    assert out is not None
    if factor > 1:
        out *= np.float32(1.0 / (factor * factor))
    return out


#: Standard deviation (pixels) of the focus measure's averaging window
#: (:func:`convstack.stack.sharpness.sharpness`'s default).
_WINDOW = 2.0


def voting_measure(gray: F32, measure: str = "log_energy") -> F32:
    """The focus measure on the grid the depth votes use (what ``fuse`` accumulates).

    Frames under 1 MP: :func:`sharpness` as it is. Larger ones, whose votes run on a
    grid decimated by two anyway: the energy's 2 x 2 block means, averaged over the
    same window (in image pixels) on that grid, a quarter of the work; pass the
    frame's size as ``regularize_depth(..., shape=)``.
    """
    if gray.size < _HALF_VOTE_PIXELS:
        return sharpness(gray, measure=measure)
    rows = max(_MEASURE_PIXELS // max(gray.shape[1], 1), 16)
    return _half_measure(gray, measure, rows)


#: Pixels of the frame a strip of :func:`voting_measure` takes (its temporaries, a
#: few times this in float32, stay a few tens of MB however large the frame).
_MEASURE_PIXELS = 8_000_000

#: Rows of the frame a strip of :func:`_half_measure` reads beyond those it measures:
#: the energy's filters (log_energy: the Gaussian's radius 4 and the Laplacian's 1;
#: the others 1).
_ENERGY_HALO = 5


def _half_measure(gray: F32, measure: str, rows: int) -> F32:
    """:func:`voting_measure` on the half grid, ``rows`` rows of the frame at a time.

    Rows ``[p, q)`` of the half grid are the window's (radius 4 on the half grid)
    Gaussian of the energy's block means on rows ``[p - 4, q + 4)``, which read the
    frame's rows ``[2p - 8 - 5, 2q + 8 + 5)``: each strip is computed from those rows
    alone, with the mirrored borders only at the frame's real first and last rows, so
    every value equals the whole frame's to the bit (tests/test_stack_depth.py), and
    the temporaries are a strip's, not the frame's (31 B a pixel at 200 MP before).
    """
    total = gray.shape[0]
    half_rows = -(-total // 2)
    step = max(1, -(-int(rows) // 2))  # half-grid rows a strip
    window = 0.0 if measure == "laplacian" else _WINDOW / 2.0
    reach = 0 if window == 0.0 else int(4 * window + 0.5)  # gaussian_taps' radius
    out = np.empty((half_rows, -(-gray.shape[1] // 2)), np.float32)
    for p in range(0, half_rows, step):
        q = min(half_rows, p + step)
        h0, h1 = max(0, p - reach), min(half_rows, q + reach)  # half rows to blur
        e0, e1 = 2 * h0, min(total, 2 * h1)  # energy rows (an even start)
        g0, g1 = max(0, e0 - _ENERGY_HALO), min(total, e1 + _ENERGY_HALO)
        energy = sharpness(gray[g0:g1], measure=measure, window=0.0)
        half = _block_mean(energy[e0 - g0 : e1 - g0], 2)
        del energy
        out[p:q] = gaussian_window(half, window)[p - h0 : q - h0]
    return out


def zoom_bilinear(small: F32, factor: int) -> F32:
    """Bilinear upsampling by an integer ``factor`` (pixel centres aligned, edges clamped).

    The same as :func:`_resize_bilinear` to ``factor`` times the shape, written per
    output phase with shifted views instead of a gather (several times faster), a
    block of rows at a time through both axes (the temporaries stay a few blocks, not
    the map zoomed along one axis).
    """
    rows, cols = small.shape
    up = np.empty((rows * factor, cols * factor), np.float32)
    for r0 in range(0, rows, _ZOOM_ROWS):
        r1 = min(rows, r0 + _ZOOM_ROWS)
        up[r0 * factor : r1 * factor] = _zoom_axis(_zoom_rows(small, factor, r0, r1), factor, 1)
    return up


#: Rows of the input that :func:`zoom_bilinear` takes at once.
_ZOOM_ROWS = 256


def _zoom_rows(image: F32, factor: int, r0: int, r1: int) -> F32:
    """Rows ``r0 * factor : r1 * factor`` of ``image`` zoomed along axis 0 (float32):
    each output phase above a sample's centre mixes it with the row before, below it
    with the row after (edges repeated)."""
    rows = image.shape[0]
    up = np.empty(((r1 - r0) * factor, image.shape[1]), np.float32)
    block = image[r0:r1]
    before, after = image[max(r0 - 1, 0) : r1 - 1], image[r0 + 1 : r1 + 1]
    prev = before if r0 else np.concatenate([image[:1], before])
    nxt = after if r1 < rows else np.concatenate([after, image[-1:]])
    for phase in range(factor):
        pos = (phase + 0.5) / factor - 0.5
        target = up[phase::factor]
        if pos < 0:
            target[...] = prev * np.float32(-pos) + block * np.float32(1 + pos)
        else:
            target[...] = block * np.float32(1 - pos) + nxt * np.float32(pos)
    return up


def _zoom_axis(image: F32, factor: int, axis: int) -> F32:
    """:func:`zoom_bilinear` along ``axis`` (0 or 1) alone, in blocks of
    ``_ZOOM_ROWS`` rows (see :func:`_zoom_rows`; along axis 1 each phase left of a
    sample's centre mixes it with the sample before, right of it with the one after)."""
    rows = image.shape[0]
    if axis == 0:
        return _zoom_rows(image, factor, 0, rows)
    up = np.empty((rows, image.shape[1] * factor), np.float32)
    for r0 in range(0, rows, _ZOOM_ROWS):
        r1 = min(rows, r0 + _ZOOM_ROWS)
        block = image[r0:r1]
        prev = np.concatenate([block[:, :1], block[:, :-1]], axis=1)
        nxt = np.concatenate([block[:, 1:], block[:, -1:]], axis=1)
        for phase in range(factor):
            pos = (phase + 0.5) / factor - 0.5
            target = up[r0:r1, phase::factor]
            if pos < 0:
                target[...] = prev * np.float32(-pos) + block * np.float32(1 + pos)
            else:
                target[...] = block * np.float32(1 - pos) + nxt * np.float32(pos)
    return up


def _votes(mask: F32, sigma: float, fill: float, fine_scale: bool = True) -> tuple[F32, F32]:
    """``G_s * mask + fill G_4s * mask + fill**2 G_16s * mask`` (coarse scales decimated).

    Also returns the coarse part alone (the last two terms), the support that a
    pixel's neighbourhood gives to the frame; ``fine_scale=False`` skips the first
    term (the first array is then the coarse part too).
    """
    fine = gaussian_window(mask, sigma) if fine_scale else None
    if min(mask.shape) < 64:
        coarse = fill * gaussian_window(mask, 4 * sigma) + fill**2 * gaussian_window(
            mask, 16 * sigma
        )
        coarse = coarse.astype(np.float32)
        if fine is None:
            return coarse, coarse
        return (fine + coarse).astype(np.float32), coarse
    quarter = _block_mean(mask, 4)
    sixteenth = _block_mean(quarter, 4)
    coarse = np.float32(fill) * gaussian_window(quarter, sigma)
    far = np.float32(fill * fill) * gaussian_window(sixteenth, sigma)
    coarse += zoom_bilinear(far, 4)[: coarse.shape[0], : coarse.shape[1]]
    support = zoom_bilinear(coarse, 4)[: mask.shape[0], : mask.shape[1]]
    if fine is None:
        return support, support
    fine += support
    return fine, support


def guided_filter(guide: F32, source: F32, radius: int, eps: float) -> F32:
    """He, Sun & Tang's guided filter of ``source`` steered by the gray ``guide``.

    Output ``q = mean(a) * I + mean(b)`` with ``a = cov(I, p) / (var(I) + eps)``,
    ``b = mean(p) - a mean(I)`` over boxes of side ``2 * radius + 1``.
    """
    mean_i = _box(guide, radius)
    mean_p = _box(source, radius)
    cov_ip = _box(guide * source, radius) - mean_i * mean_p
    var_i = _box(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + np.float32(eps))
    b = mean_p - a * mean_i
    return (_box(a, radius) * guide + _box(b, radius)).astype(np.float32)


def regularize_depth(
    index: ArrayLike,
    confidence: ArrayLike,
    *,
    count: int,
    guide: ArrayLike | None = None,
    sigma: float = 2.0,
    fill: float = 0.05,
    radius: int = 4,
    eps: float = 1e-3,
    outlier: float = 0.65,
    shape: tuple[int, int] | None = None,
) -> F32:
    """Smooth a raw argmax depth map by a confidence-weighted vote, keeping depth steps.

    Parameters
    ----------
    index : array_like, shape (rows, cols)
        Raw depth: index of the sharpest frame per pixel.
    confidence : array_like, shape (rows, cols)
        Trust in each pixel's index (>= 0), e.g. ``max - mean`` of the focus measures.
    count : int
        Number of frames; the result lies in [0, count - 1].
    guide : array_like, optional
        Luma image, the size of ``index``, for a final guided filter (off by default:
        it would blur depth steps into intermediate frames).
    sigma : float
        Finest voting scale in pixels; the coarser ones are 4x and 16x.
    fill : float
        Weight ``a`` of each coarser scale (small: coarse scales only fill gaps).
    radius, eps : int, float
        Guided-filter box radius and regularisation (on luma in [0, 1]).
    shape : (int, int), optional
        The image's size when ``index`` and ``confidence`` come on a grid decimated
        by two (as :func:`convstack.stack.fuse` measures maps of 1 MP and more):
        ``sigma`` and ``radius`` are then in image pixels, the votes (and the guided
        filter, whose ``guide`` has the maps' size) run on the maps' grid and the depth
        is upsampled to ``shape``. Default: the maps' own size.
    outlier : float
        Speckle removal: where the winning frame is held by fewer neighbours than
        ``outlier`` times the frame most neighbours hold (pixel counts over the two
        coarser windows, confidence left out), that frame is taken instead; 0 turns
        it off. The default 0.65 (0.5 before) leaves about a quarter fewer islands
        (connected areas of one frame under 64 px) in the PCB ``depthmap`` stack's
        map, and makes no fused stack of bench/fusion.py worse by more than 0.1 dB.

    Returns
    -------
    ndarray of float32, shape (rows, cols)

    Notes
    -----
    Frame ``k`` collects the votes ``V_k = sum_l a^l G_l * (c [index == k])`` over
    Gaussian windows ``G_l`` of ``sigma * 4**l``; the depth is the frame with most
    votes, refined to a fraction by a parabola through ``V_{k-1}, V_k, V_{k+1}``.
    Unlike a weighted mean, a jump from frame 0 to frame 9 stays a jump (no ring of
    the blurred frames in between), and flat, untrusted areas take the depth of
    the trusted pixels around them. Confidence alone would let a small blob of
    wrong but confident labels (blurred edges of out-of-focus frames spread into a
    flat area) win; counting the neighbours that share each label removes such
    speckles (on the demo scenes it also lowers the mean error). Frames are voted
    one at a time, so memory does not grow with ``count``. Maps of 1 MP and more
    vote on a grid decimated by two (block means of the masks, ``sigma`` halved)
    and the depth is upsampled bilinearly.
    """
    idx = v.as_real_array(index, "index")
    conf = v.as_real_array(confidence, "confidence").astype(np.float32)
    if conf.shape != idx.shape or idx.ndim != 2:
        raise v.fail("confidence", f"be 2-D with the shape of `index` {idx.shape}", conf)
    scale = float(conf.max())
    if scale <= 0:
        return np.full(idx.shape, (count - 1) / 2.0, np.float32)
    conf /= np.float32(scale)  # (a copy of its own already)
    # integer labels as they are (no rounding: no float64 copy, and int32 no copy)
    if idx.dtype.kind in "iu":
        labels = idx.astype(np.int32, copy=False)
    else:
        labels = np.rint(idx).astype(np.int32)
    # large maps vote on a 2x coarser grid (4x less work; the votes are smooth anyway)
    factor = 2 if idx.size >= _HALF_VOTE_PIXELS else 1
    out_shape = idx.shape
    if shape is not None and tuple(shape) != idx.shape:  # the maps come decimated by two
        if -(-shape[0] // 2) != idx.shape[0] or -(-shape[1] // 2) != idx.shape[1]:
            raise v.fail("shape", f"be the size of `index` {idx.shape} times two", shape)
        factor, sigma, out_shape = 1, sigma / 2.0, (int(shape[0]), int(shape[1]))
        radius = max(1, radius // 2)  # the guided filter's box, too, in image pixels
    grid = (-(-idx.shape[0] // factor), -(-idx.shape[1] // factor))
    zeros = np.zeros(grid, np.float32)
    best = np.full(grid, -1.0, np.float32)
    best_k = np.zeros(grid, np.int32)
    lower = zeros.copy()
    upper = zeros.copy()
    previous = zeros
    # neighbours are counted, not weighted by confidence (a confident blob of blurred
    # edges must not outweigh many ordinary pixels); untrusted (zero) pixels not at all
    trust = conf > 0  # (bool: np.where makes it float32 1.0 / 0.0 in _phase_mean)
    support = zeros.copy()  # neighbourhood support of the winner so far
    top_support = zeros.copy()  # largest neighbourhood support of any frame
    top_k = np.zeros(grid, np.int32)
    # the labels, confidences and trust split by phase on the voting grid, so each
    # frame's masks are taken and block-averaged without a full-size temporary
    label_phases = _phases(labels, factor)
    conf_phases = _phases(conf, factor)
    trust_phases = _phases(trust, factor)

    def frame_votes(k: int) -> tuple[F32, F32]:
        """Frame ``k``'s votes and the support of its neighbourhood."""
        hits = [phase == k for phase in label_phases]
        if not any(hit.any() for hit in hits):
            return zeros, zeros
        mask = _phase_mean(hits, conf_phases, factor)
        if outlier <= 0:
            return _votes(mask, sigma / factor, fill)
        votes = _votes(mask, sigma / factor, fill)[0]  # (its support goes at once)
        del mask
        share = _phase_mean(hits, trust_phases, factor)
        del hits
        return votes, _votes(share, sigma / factor, fill, fine_scale=False)[1]

    # frame k + 1's votes are counted in a second thread while frame k's are tallied
    # here (the votes are most of the work; one frame ahead keeps memory flat)
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(frame_votes, 0)
        for k in range(count):
            votes, near = ahead.result()
            if k + 1 < count:
                ahead = pool.submit(frame_votes, k + 1)
            # (in place: no map-sized temporaries beside the votes in flight)
            np.copyto(upper, votes, where=best_k == k - 1)
            better = votes > best
            np.copyto(lower, previous, where=better)
            np.copyto(upper, np.float32(0.0), where=better)
            best_k[better] = k
            np.maximum(best, votes, out=best)
            if outlier > 0:
                np.copyto(support, near, where=better)
                wider = near > top_support
                top_k[wider] = k
                np.maximum(top_support, near, out=top_support)
            previous = votes
    # the parabola's vertex, 0.5 (upper - lower) / (2 best - lower - upper) where the
    # curvature is > 0, else 0; each map freed once used (the same operations in the
    # same order, in place)
    del previous, labels, conf, trust
    curvature = 2.0 * best
    del best
    curvature -= lower
    curvature -= upper
    offset = upper - lower
    del upper, lower
    offset *= 0.5
    offset /= np.maximum(curvature, np.float32(1e-12))
    np.copyto(offset, np.float32(0.0), where=np.logical_not(curvature > 0))
    del curvature
    np.clip(offset, -0.5, 0.5, out=offset)
    depth = best_k + offset  # (float64, as int32 + float32 gives; zoomed from it)
    del best_k, offset
    if outlier > 0:
        # a winner that its neighbourhood hardly supports is a speckle: take the
        # frame the neighbourhood supports most
        speckle = support < np.float32(outlier) * top_support
        np.copyto(depth, top_k, where=speckle)
        del speckle
    # the votes' state goes before the map is zoomed (fuse's peak on big frames)
    del support, top_support, top_k
    for phases in (label_phases, conf_phases, trust_phases):
        phases.clear()
    if factor > 1:
        depth = zoom_bilinear(depth, factor)[: idx.shape[0], : idx.shape[1]]
    if guide is not None:  # on the maps' own grid
        g = v.as_real_array(guide, "guide").astype(np.float32)
        depth = guided_filter(g, depth, radius, eps)
    if out_shape != idx.shape:
        depth = zoom_bilinear(depth, 2)[: out_shape[0], : out_shape[1]]
    if depth.dtype == np.float32 and depth.flags.c_contiguous:  # in place: no copy
        return np.clip(depth, 0, count - 1, out=depth)
    # (clipped in float32 where it is float32 already: no second full-size copy)
    return np.clip(depth, 0, count - 1).astype(np.float32, copy=False)


def snap_depth_steps(
    depth: ArrayLike,
    image: ArrayLike,
    *,
    count: int,
    step: float = 1.5,
    reach: float = 5.0,
    radius: int = 10,
    sigma: float = 0.05,
    smooth: float = 1.0,
    stride: int = 1,
) -> F32:
    """Move the depth map's steps onto the image's edges (undo the near side's growth).

    A focus measure averages over a window, so an in-focus edge wins the pixels within
    about the window's reach on both of its sides. At an occlusion the outline belongs
    to the nearer surface (sharp in its frame, blurred in the others'), so the near
    side of each depth step grows by that reach: the demo's stick is twice its width
    in the depth map. Each pixel within ``reach`` (plus a 3 px margin) of a step takes
    the depth of the side whose colours it resembles most, judged on the pixels farther
    than ``reach`` from every step.

    Parameters
    ----------
    depth : array_like, shape (rows, cols)
        Fractional frame indices in [0, count - 1] (e.g. from :func:`regularize_depth`).
    image : array_like, shape (rows, cols) or (rows, cols, channels)
        The all-in-focus image (the fused result), integer or float in [0, 1].
    count : int
        Number of frames.
    step : float
        A depth step: neighbouring pixels (3 x 3) that differ by this many frames or
        more (smaller changes, as on a tilted plane, are left alone).
    reach : float
        How far (pixels) a step's near side may have grown: what is re-decided, and
        how far from the steps the pixels that decide lie.
    radius : int
        Half-width (pixels) of the window of deciding pixels.
    sigma : float
        Colour distance scale (on [0, 1] values) of the resemblance ``exp(-d^2 / 2
        sigma^2)``; each side scores the mean over its pixels (not the sum, so that a
        thin structure is not outvoted by the wide region around it).
    smooth : float
        Standard deviation (pixels) of the Gaussian that averages each pixel's margin
        (own side's score minus the best other side's) over its neighbours in the band
        before the sign decides (0: each pixel alone, noisier on texture).
    stride : int
        Sample the window every ``stride`` pixels (2: a quarter of the work; the demo's
        stick as close, a 5 px stick 2-4 px wider).

    Returns
    -------
    ndarray of float32, shape (rows, cols)
        The depth, changed only within ``reach + 3`` pixels of a step. A pixel whose
        own side has no deciding pixel in its window (a structure thinner than the
        band) keeps its depth. Maps of 1 MP and more are decided on a grid decimated
        by two (as the depth votes are), the decision upsampled.

    Raises
    ------
    ValueError
        A ``depth`` that is not 2-D or not finite, an ``image`` of another size, ``count`` < 1,
        ``step``, ``reach`` or ``sigma`` <= 0, ``smooth`` < 0, ``radius`` or ``stride`` < 1.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((20, 40), np.float32)
    >>> image[:, 20:] = 1.0  # the true edge at column 20
    >>> depth = np.full((20, 40), 4.0, np.float32)
    >>> depth[:, 15:] = 0.0  # the near side (frame 0) has grown by 5 px
    >>> snapped = snap_depth_steps(depth, image, count=5)
    >>> snapped[10, 13:23].round(1).tolist()
    [4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 0.0, 0.0, 0.0]
    """
    d = v.as_real_array(depth, "depth")
    if d.ndim != 2:
        raise v.fail("depth", "be 2-D (rows, cols)", d.shape)
    if not np.all(np.isfinite(d)):  # (a NaN label would index out of the kernel's tables)
        raise v.fail("depth", "be finite", "NaN or inf")
    unit = to_unit_float(image, "image")
    if unit.shape[:2] != d.shape or unit.ndim not in (2, 3):
        raise v.fail(
            "image", f"be (rows, cols[, channels]) with rows, cols = {d.shape}", unit.shape
        )
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise v.fail("count", "be an int >= 1", count)
    for name, value in (("step", step), ("reach", reach), ("sigma", sigma)):
        if not (isinstance(value, (int, float, np.number)) and np.isfinite(value) and value > 0):
            raise v.fail(name, "be > 0", value)
    if not (isinstance(smooth, (int, float, np.number)) and np.isfinite(smooth) and smooth >= 0):
        raise v.fail("smooth", "be >= 0", smooth)
    for name, value in (("radius", radius), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise v.fail(name, "be an int >= 1", value)
    source = np.ascontiguousarray(d, dtype=np.float32)
    colours = unit.reshape(*d.shape, -1)
    rows, cols = d.shape
    if d.size < _HALF_VOTE_PIXELS:
        margin, other, inside = _snap_margins(
            source, colours, count, step, reach, radius, stride, sigma, smooth
        )
    else:  # on a grid decimated by two (a quarter of the pixels, a quarter of the window)
        small = np.ascontiguousarray(source[::2, ::2])
        means = np.stack([_block_mean(colours[..., k], 2) for k in range(colours.shape[2])], -1)
        margin, other, inside = _snap_margins(
            small, means, count, step, reach / 2, max(1, radius // 2), max(1, stride // 2),
            sigma, smooth / 2,
        )  # fmt: skip
        margin = zoom_bilinear(margin, 2)[:rows, :cols]
        other = np.repeat(np.repeat(other, 2, axis=0), 2, axis=1)[:rows, :cols]
        inside = np.repeat(np.repeat(inside, 2, axis=0), 2, axis=1)[:rows, :cols]
    return np.where((margin < 0) & inside, other, source).astype(np.float32)


def _snap_margins(
    source: F32,
    colours: F32,
    count: int,
    step: float,
    reach: float,
    radius: int,
    stride: int,
    sigma: float,
    smooth: float,
) -> tuple[F32, F32, NDArray[np.bool_]]:
    """:func:`snap_depth_steps` on one grid: each band pixel's margin (own side's score
    minus the best other side's, averaged over ``smooth``), that side's depth, and the
    band."""
    from .. import _k_depth
    from ..filters._dtype import strips  # here: `convstack fuse` never loads the filters

    colours = np.ascontiguousarray(colours, dtype=np.float32)
    labels = np.clip(np.rint(source), 0, count - 1).astype(np.int32)
    band = float(reach) + 3.0
    dist = _k_depth.step_distance(source, float(step), band + 1.0)
    margin = np.zeros_like(source)
    other = source.copy()

    def work(start: int, stop: int) -> None:
        _k_depth.snap_rows(
            source, labels, dist, colours, margin, other, start, stop, band, float(reach),
            int(radius), int(stride), 1.0 / (2.0 * float(sigma) ** 2), int(count),
        )  # fmt: skip

    strips(source.shape[0], source.shape[1] * 64, work, balanced=True)
    inside = dist < band
    if smooth > 0:  # one decision per neighbourhood, not per textured pixel
        weight = np.maximum(gaussian_window(inside.astype(np.float32), smooth), np.float32(1e-6))
        margin = (gaussian_window(margin, smooth) / weight).astype(np.float32)
    return margin, other, inside


def depth_map(
    frames: Sequence[ArrayLike] | NDArray[Any],
    *,
    measure: str = "log_energy",
    smooth_depth: bool = True,
    guided: bool = False,
) -> F32:
    """Depth from focus of an aligned stack: fractional index of the sharpest frame.

    Parameters
    ----------
    frames : sequence of array_like
        Aligned frames in focus order, (rows, cols) or (rows, cols, channels).
    measure : str
        Focus measure (see :func:`convstack.stack.sharpness.sharpness`).
    smooth_depth : bool
        Regularise (:func:`regularize_depth`); ``False`` returns the raw argmax.
    guided : bool
        Also run the edge-aware guided filter steered by the sharpest pixels' luma
        (off by default, as in :func:`convstack.stack.fuse`, whose depth map this
        then equals for aligned frames: it blurs depth steps into intermediate frames).

    Returns
    -------
    ndarray of float32, shape (rows, cols), values in [0, n_frames - 1]

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> sharp = rng.random((16, 16)).astype(np.float32)
    >>> soft = np.full_like(sharp, sharp.mean())
    >>> left = np.hstack([sharp[:, :8], soft[:, 8:]])
    >>> right = np.hstack([soft[:, :8], sharp[:, 8:]])
    >>> d = depth_map([left, right], smooth_depth=False)
    >>> float(d[:, :6].mean()), float(d[:, 10:].mean())
    (0.0, 1.0)
    """
    if len(frames) < 1:
        raise v.fail("frames", "hold at least one frame", frames)
    acc = FocusAccumulator()
    shape: tuple[int, int] = (0, 0)
    for i, frame in enumerate(frames):
        gray = to_gray(frame)
        shape = gray.shape[:2]
        measured = voting_measure(gray, measure)
        luma = gray if measured.shape == shape else _block_mean(gray, 2)
        acc.add(i, measured, luma if guided else None)
    if not smooth_depth:
        raw = acc.raw_depth().astype(np.float32)
        return raw if raw.shape == shape else zoom_bilinear(raw, 2)[: shape[0], : shape[1]]
    return regularize_depth(
        acc.raw_depth(), acc.confidence(), count=acc.count, guide=acc.guide, shape=shape
    )


def depth_to_image(depth: ArrayLike, count: int, dtype: Any = np.uint8) -> NDArray[Any]:
    """Scale a depth map of frame indices [0, count - 1] to the full range of ``dtype``.

    Examples
    --------
    >>> import numpy as np
    >>> depth_to_image(np.array([[0.0, 1.0, 2.0]]), 3)
    array([[  0, 128, 255]], dtype=uint8)
    """
    d = v.as_real_array(depth, "depth").astype(np.float64)
    kind = np.dtype(dtype)
    if kind not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise v.fail("dtype", "be uint8 or uint16", kind, kind=TypeError)
    top = float(np.iinfo(kind).max)
    scaled = d / max(count - 1, 1) * top
    return np.clip(np.rint(scaled), 0, top).astype(kind)
