"""Stage 4 of focus stacking: merge aligned frames into one sharp image.

Each method is a function on a whole stack and a small streaming accumulator (one
frame at a time, memory independent of the number of frames) that
:func:`convstack.stack.fuse` drives:

- ``'pyramid'`` (the default; :func:`pyramid_merge`): Laplacian-pyramid fusion
  (Burt & Adelson). Every detail level weights the frames' coefficients by
  a power of ``1 + E / tau`` (``E`` local energy, ``tau`` a noise floor; the
  32nd on coarser levels, the eighth on the finest, sharpened on strong edges:
  :data:`EDGE_FLOOR`): nearly a selection of the sharpest frame where one stands
  out, an average (less noise, no blotches) where none does; the low-pass base is
  blended by the depth map.
  Halo-safe: a defocused frame's glow around a bright edge is low-frequency, so it
  loses to the focused frame's edge at every fine level; and the result's local
  means (Gaussian level 2, 4 px; level 1, 2 px, from below only) are pulled back
  into the per-pixel [min, max] of the frames' local means, which removes most of the dark rim
  (undershoot) and glow that mixing levels from different frames leaves beside
  bright edges over a dark background.
- ``'maxabs'``: the classic rule, for comparison: the coefficient of largest local
  energy at every level, the bases averaged evenly (no depth map).
- ``'depthmap'``: per pixel, the frame at the regularised, fractional depth map,
  linearly interpolated between the two nearest frames (:func:`depth_merge`).
  Needs a second read of the frames; softer at depth seams.
- ``'weighted'``: the lab's weighted mean ``sum(w_i f_i) / sum(w_i)`` with the lab's
  sharpness masks as weights (:func:`weighted_merge`), optionally with its automatic
  gamma correction. The floor: it blurs and leaves halos, since every frame leaks in.

bench/fusion.py compares them (and enfuse, focusweave); bench/README.md has the figures.
Frames are float32 on [0, 1] here; integer conversion is the pipeline's job. The pyramid
merge takes each frame in, and makes its result, in strips of rows with their halos
(:mod:`convstack.stack.strips`, issue 14): its temporaries stay a few hundred rows
whatever the frame size, with the same bits as the whole frame at once; strip-major
(``add_coarse`` then ``merge_strips``), its running state does too.
"""

from __future__ import annotations

import contextlib
import copy
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _methods
from .. import _validate as v
from ..color import BT601_F32
from ..convolve import correlate
from .sharpness import to_unit_float
from .strips import (
    STRIP_LEVEL,
    STRIP_WORKERS,
    expand_source,
    level_sizes,
    reduce_source,
    rows_for_budget,
    strip_needs,
    strip_step,
)

__all__ = [
    "METHODS",
    "depth_merge",
    "lab_gamma",
    "pyramid_merge",
    "weighted_merge",
]

#: Names accepted as ``method`` by :func:`convstack.stack.fuse`.
METHODS = ("pyramid", "depthmap", "weighted", "maxabs")

_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / np.float32(16.0)
F32 = NDArray[Any]  # float32 in practice


# ----------------------------------------------------------------------------- helpers
def _blur5(image: F32, gain: float = 1.0) -> F32:
    """Separable 5-tap binomial blur (times ``gain``) of a 2-D or (rows, cols, C) array."""
    taps = _BINOMIAL * np.float32(gain)
    axis = 2 if image.ndim == 3 else None
    out = correlate(image, taps[:, None], mode="mirror", channel_axis=axis)
    out = correlate(out, taps[None, :], mode="mirror", channel_axis=axis)
    return out.astype(np.float32, copy=False)


def _along(axis: int, index: Any) -> tuple[Any, ...]:
    """Index tuple that applies ``index`` to ``axis`` (every axis before it whole)."""
    return (slice(None),) * axis + (index,)


def _binomial_taps(source: F32, axis: int, count: int, out: F32) -> None:
    """``out[j] = (s[2j] + 4 s[2j+1] + 6 s[2j+2] + 4 s[2j+3] + s[2j+4]) / 16``, j < ``count``."""

    def tap(offset: int) -> F32:
        return source[_along(axis, slice(offset, offset + 2 * count - 1, 2))]

    np.add(tap(0), tap(4), out=out)
    inner = tap(1) + tap(3)
    inner *= np.float32(4.0)
    out += inner
    np.multiply(tap(2), np.float32(6.0), out=inner)
    out += inner
    out *= np.float32(1.0 / 16.0)


def decimate(image: F32, axis: int, border: Literal["reflect", "edge"] = "reflect") -> F32:
    """5-tap binomial blur along ``axis``, kept at even positions only.

    ``out[j] = (x[2j-2] + 4 x[2j-1] + 6 x[2j] + 4 x[2j+1] + x[2j+2]) / 16`` with mirrored
    borders (OpenCV's BORDER_REFLECT_101, our 'mirror'), or repeated edge samples with
    ``border='edge'``; only the kept half is computed, and only the first and last few
    samples go through a padded copy.
    """
    n = image.shape[axis]
    m = (n + 1) // 2
    shape = list(image.shape)
    shape[axis] = m
    out = np.empty(shape, np.float32)
    if n < 8:
        pad = [(0, 0)] * image.ndim
        pad[axis] = (2, 2)
        padded = np.pad(image, pad, mode=border if n > 2 else "edge")
        _binomial_taps(padded, axis, m, out)
        return out
    inner = (n - 3) // 2  # outputs 1..inner read x[0..n-1] only
    head = [(0, 0)] * image.ndim
    head[axis] = (2, 0)
    _binomial_taps(
        np.pad(image[_along(axis, slice(0, 3))], head, mode=border),
        axis,
        1,
        out[_along(axis, slice(0, 1))],
    )
    _binomial_taps(image, axis, inner, out[_along(axis, slice(1, inner + 1))])
    tail = [(0, 0)] * image.ndim
    tail[axis] = (0, 2)
    _binomial_taps(
        np.pad(image[_along(axis, slice(2 * inner, None))], tail, mode=border),
        axis,
        m - inner - 1,
        out[_along(axis, slice(inner + 1, None))],
    )
    return out


#: Output bytes of a strip of rows of the compiled pyramid loops (a thread's task).
_STRIP_BYTES = 2 << 20


def _as_planes(image: F32, axes: tuple[int, int]) -> F32 | None:
    """``image`` as C-contiguous float32 planes (planes, rows, cols) for the compiled
    loops (a view where it can be), or None: not float32, or not rows and columns last."""
    if image.dtype != np.float32 or (image.ndim, tuple(axes)) not in ((2, (0, 1)), (3, (1, 2))):
        return None
    planes = np.ascontiguousarray(image)
    return planes[None] if planes.ndim == 2 else planes


def _plane_groups(image: F32, axes: tuple[int, int]) -> list[F32] | None:
    """:func:`_as_planes` as a list of C-contiguous (planes, rows, cols) arrays, in
    order: a strip of rows of a planar array is one view per plane (each plane's rows
    are contiguous), not a copy."""
    split = image.ndim == 3 and tuple(axes) == (1, 2) and image.dtype == np.float32
    if split and not image.flags.c_contiguous and all(p.flags.c_contiguous for p in image):
        return [plane[None] for plane in image]
    planes = _as_planes(image, axes)
    return None if planes is None else [planes]


def _in_strips(out: F32, work: Any, *, balanced: bool = False) -> None:
    """``work(start, stop)`` over strips of the rows of ``out`` (planes, rows, cols), on
    the filters' thread pool when there are several (``balanced``: at least one per
    pool thread, for one plane of several done in turn)."""
    from ..filters._dtype import strips

    planes, rows, cols = out.shape
    strips(rows, planes * cols * 4, work, target=_STRIP_BYTES, balanced=balanced)


def _reduce(
    image: F32, axes: tuple[int, int] = (0, 1), border: Literal["reflect", "edge"] = "reflect"
) -> F32:
    """Blur with the 5-tap binomial and keep every other row and column.

    ``axes``: the (row, column) axes; (1, 2) for planar (channels, rows, cols) arrays;
    ``border`` as for :func:`decimate`. float32 rows and columns last go through the
    compiled loop (:func:`convstack._k_pyramid.reduce_rows`), the same numbers as the
    two :func:`decimate` passes that other arrays take.
    """
    groups = _plane_groups(image, axes)
    if groups is None:
        return decimate(decimate(image, axes[0], border), axes[1], border)
    from .. import _k_pyramid

    rows, cols = groups[0].shape[1:]
    edge = border == "edge"
    out = _rows_of_groups(
        groups,
        ((rows + 1) // 2, (cols + 1) // 2),
        lambda src, dst, start, stop: _k_pyramid.reduce_rows(src, dst, start, stop, edge),
    )
    return out if image.ndim == 3 else out[0]


def _rows_of_groups(
    groups: list[F32], shape: tuple[int, int], rows_of: Callable[[F32, F32, int, int], None]
) -> F32:
    """A new float32 (planes, rows, cols) array of ``shape`` (rows, cols) a plane, made
    from the planes of ``groups`` (:func:`_plane_groups`) by ``rows_of(src, dst, start,
    stop)``, which writes rows start..stop of ``dst`` from the group ``src``; each group
    in strips on the filters' pool."""
    count = sum(g.shape[0] for g in groups)
    out = np.empty((count, *shape), np.float32)
    first = 0
    for planes in groups:
        part = out[first : first + planes.shape[0]]
        first += planes.shape[0]
        _in_strips(
            part,
            lambda start, stop, src=planes, dst=part: rows_of(src, dst, start, stop),
            balanced=len(groups) > 1,
        )
    return out


def _upsample(image: F32, size: int, axis: int) -> F32:
    """Polyphase 2x upsampling along ``axis`` to ``size`` samples (borders mirrored).

    Even outputs ``(x[j-1] + 6 x[j] + x[j+1]) / 8``, odd ones ``(x[j] + x[j+1]) / 2``,
    with ``x[-1] = x[1]`` and ``x[n] = x[n-2]``. Both phases are computed straight
    into their interleaved slots of the output, interior and the two border samples
    apart (no padded copy, no temporaries to interleave): 3-4x faster than building
    them separately, and the same arithmetic, so the same bits.
    """
    n = image.shape[axis]
    if n < 2 or size not in (2 * n - 1, 2 * n):
        return _upsample_padded(image, size, axis)
    shape = list(image.shape)
    shape[axis] = size
    out = np.empty(shape, np.float32)
    even = out[_along(axis, slice(0, None, 2))]  # n samples
    odd = out[_along(axis, slice(1, None, 2))]  # n or n - 1 samples

    def x(start: int, stop: int) -> F32:
        return image[_along(axis, slice(start, stop))]

    def part(phase: F32, start: int, stop: int) -> F32:
        return phase[_along(axis, slice(start, stop))]

    six = np.float32(6.0)
    for lo, hi, left, right in ((1, n - 1, 0, 2), (0, 1, 1, 1), (n - 1, n, n - 2, n - 2)):
        span = part(even, lo, hi)
        np.add(x(left, left + hi - lo), x(right, right + hi - lo), out=span)
        span += six * x(lo, hi)
    even *= np.float32(0.125)
    m = odd.shape[axis]
    inner = min(m, n - 1)
    np.add(x(0, inner), x(1, inner + 1), out=part(odd, 0, inner))
    if m == n:  # the last odd sample mirrors: x[n] = x[n - 2]
        np.add(x(n - 1, n), x(n - 2, n - 1), out=part(odd, n - 1, n))
    odd *= np.float32(0.5)
    return out


def _upsample_padded(image: F32, size: int, axis: int) -> F32:
    """:func:`_upsample` through a mirrored copy (single samples and other sizes)."""
    n = image.shape[axis]
    if n > 1:
        edges = (image[_along(axis, slice(1, 2))], image, image[_along(axis, slice(-2, -1))])
    else:
        edges = (image, image, image)
    padded = np.concatenate(edges, axis=axis)
    left = padded[_along(axis, slice(0, -2))]
    mid = padded[_along(axis, slice(1, -1))]
    right = padded[_along(axis, slice(2, None))]
    shape = list(mid.shape)
    shape[axis] *= 2
    out = np.empty(shape, np.float32)
    even = left + right
    even += np.float32(6.0) * mid
    even *= np.float32(0.125)
    odd = mid + right
    odd *= np.float32(0.5)
    out[_along(axis, slice(0, None, 2))] = even
    out[_along(axis, slice(1, None, 2))] = odd
    return out[_along(axis, slice(0, size))]


def _expand(image: F32, shape: tuple[int, ...], axes: tuple[int, int] = (0, 1)) -> F32:
    """Upsample a pyramid level to the size ``shape`` has on ``axes`` (inverse of :func:`_reduce`).

    Equal to inserting zeros between samples and correlating with ``[1, 4, 6, 4, 1] / 8``
    along each axis: even outputs are ``(x[j-1] + 6 x[j] + x[j+1]) / 8``, odd ones
    ``(x[j] + x[j+1]) / 2`` (borders mirrored), without multiplying the zeros. The
    columns are upsampled first, on the half-height array (the interleaving stores
    along a row are the costly part).
    """
    return _expanded(image, shape, axes)


def _expanded(
    image: F32,
    shape: tuple[int, ...],
    axes: tuple[int, int],
    base: F32 | None = None,
    sign: int = 0,
) -> F32:
    """:func:`_expand`, then ``base + it`` (``sign`` 1) or ``base - it`` (-1), with
    ``base`` of the size ``shape``; one compiled loop for float32 rows and columns last
    (:func:`convstack._k_pyramid.expand_rows`), the same numbers as the NumPy passes."""
    groups = _plane_groups(image, axes) if base is None else None
    planes = _as_planes(image, axes) if base is not None else None
    target = None if base is None else _as_planes(base, axes)
    rows, cols = shape[axes[0]], shape[axes[1]]
    n, m = image.shape[axes[0]], image.shape[axes[1]]
    if groups is not None and rows in (2 * n - 1, 2 * n) and cols in (2 * m - 1, 2 * m):
        return _expanded_groups(groups, rows, cols, image.ndim)
    if (
        planes is None
        or rows not in (2 * n - 1, 2 * n)
        or cols not in (2 * m - 1, 2 * m)
        or (base is not None and target is None)
    ):
        wide = _upsample(image, cols, axes[1])
        result = _upsample(wide, rows, axes[0])
        if base is None:
            return result
        return base + result if sign > 0 else base - result
    from .. import _k_pyramid

    out = np.empty((planes.shape[0], rows, cols), np.float32)
    source = out if target is None else target
    _in_strips(
        out, lambda start, stop: _k_pyramid.expand_rows(planes, source, sign, out, start, stop)
    )
    return out if image.ndim == 3 else out[0]


def _expanded_groups(groups: list[F32], rows: int, cols: int, ndim: int) -> F32:
    """:func:`_expand` of the planes of ``groups`` (:func:`_plane_groups`), compiled."""
    from .. import _k_pyramid

    out = _rows_of_groups(
        groups,
        (rows, cols),
        lambda src, dst, start, stop: _k_pyramid.expand_rows(src, dst, 0, dst, start, stop),
    )
    return out if ndim == 3 else out[0]


def _planar_luma(image: F32) -> F32:
    """Luma of a planar (channels, rows, cols) array, as :func:`to_gray` of the interleaved."""
    if image.shape[0] >= 3:
        gray = image[0] * BT601_F32[0]
        gray += image[1] * BT601_F32[1]
        gray += image[2] * BT601_F32[2]
        return gray
    return image[0]


def _luma_squared(band: F32) -> F32:
    """The square of the luma of a pyramid level: ``band`` (rows, cols) or planar
    (channels, rows, cols), as :func:`_planar_luma`; one compiled pass over planar
    float32 colour (:func:`convstack._k_pyramid.luma_squared_rows`), same numbers."""
    if band.ndim == 2 or band.shape[0] < 3 or band.dtype != np.float32:
        gray = _planar_luma(band) if band.ndim == 3 else band
        return gray * gray
    from .. import _k_pyramid

    planes = np.ascontiguousarray(band)
    out = np.empty(planes.shape[1:], np.float32)
    _in_strips(
        out[None],
        lambda start, stop: _k_pyramid.luma_squared_rows(planes, BT601_F32, out, start, stop),
    )
    return out


def _focus_squared(band: F32, focus: Any) -> F32:
    """The square of a pyramid level's focus channel (an index) or weighted sum of its
    channels (weights), as :func:`convstack.stack.depth.focus_gray` of the frame."""
    planes = band if band.ndim == 3 else band[None]
    if isinstance(focus, (int, np.integer)):
        gray = planes[int(focus)]
    else:
        weights = np.asarray(focus, np.float64)
        weights = weights / weights.sum()
        gray = planes[0] * np.float32(weights[0])
        for c in range(1, planes.shape[0]):
            gray = gray + planes[c] * np.float32(weights[c])
    return gray * gray


def _soft_merge(
    energy: F32,
    band: F32,
    top: F32,
    weight: F32,
    total: F32,
    scale: np.float32,
    power: float,
    offset: int = 0,
    rows: tuple[int, int] | None = None,
) -> bool:
    """One soft level of :meth:`PyramidAccumulator.add` in one compiled pass
    (:func:`convstack._k_pyramid.soft_merge_rows`), ``top``, ``weight`` and ``total``
    updated in place; False (nothing done) unless ``power`` is a whole number in
    [1, 64] and every array float32 and C-contiguous. ``energy`` and ``band`` may be
    a strip of the level, starting at its row ``offset``; ``rows``: only their rows
    ``lo:hi`` (default: all)."""
    whole = int(power)
    arrays = (energy, band, top, weight, total)
    if whole != power or not 1 <= whole <= 64:
        return False
    if not all(a.dtype == np.float32 and a.flags.c_contiguous for a in arrays):
        return False
    from .. import _k_pyramid

    planes = band if band.ndim == 3 else band[None]
    sums = total if total.ndim == 3 else total[None]
    lo, hi = (0, planes.shape[1]) if rows is None else rows
    _in_strips(
        planes[:, lo:hi],
        lambda start, stop: _k_pyramid.soft_merge_rows(
            energy, planes, top, weight, sums, scale, whole, start + lo, stop + lo, offset
        ),
    )
    return True


_F32_MAX = float(np.finfo(np.float32).max)

#: ``tau`` is at least this fraction of the level's largest energy in the first frame
#: (where a tenth of it is flat, its quantile is 0): relative, so that frames in any
#: unit merge alike (an absolute 1e-12 turned frames in units of 1e-6 into a blurred
#: mean); and at least float32's smallest normal number where that frame is all flat.
TAU_FLOOR = 1e-12


def _floored_tau(tau: float, peak: float) -> float:
    """``tau`` raised to :data:`TAU_FLOOR` of ``peak`` (the level's largest energy)."""
    return max(tau, TAU_FLOOR * peak, float(np.finfo(np.float32).tiny))


def _to_weight_base(energy: F32, tau: float, edge: float = math.inf) -> None:
    """A soft level's raw energy made its weight base ``1 + E / tau``, in place
    (with a finite ``edge``: ``(1 + E / tau) * (1 + E / (edge * tau))``, as
    :func:`_sharpened` makes it)."""
    _sharpened(energy, tau, edge)
    energy *= np.float32(1.0 / tau)
    energy += np.float32(1.0)


def _sharpened(energy: F32, tau: float, edge: float) -> None:
    """Raw energy ``E`` made ``E * (1 + 1 / edge + E / (edge * tau))`` in place, so that
    the weight base ``1 + E' / tau`` is ``(1 + E / tau) * (1 + E / (edge * tau))``:
    the finest level's second factor (:data:`EDGE_FLOOR`); nothing for an infinite
    ``edge``. The same float32 steps wherever a base is made, so every path (whole
    frames, strips, strip-major, compiled or not) keeps the same bits."""
    if math.isinf(edge):
        return
    with np.errstate(over="ignore"):
        factor = np.multiply(energy, np.float32(1.0 / (edge * tau)), dtype=np.float32)
        factor += np.float32(1.0 + 1.0 / edge)
        energy *= factor
    # at most tau * 2**126, so that the base 1 + E' / tau stays finite: E / tau ~ 1e21
    # (float frames in 16-bit units over a flat first frame at tau's floor) overflowed
    # and made the weights inf / inf = NaN
    np.minimum(energy, np.float32(min(tau * 2.0**126, _F32_MAX)), out=energy)


def _power_in_place(values: F32, power: float) -> None:
    """``values **= power``; whole powers up to 64 by repeated squaring (a few SIMD
    multiplications instead of ``exp(power * log(values))``)."""
    whole = int(power)
    if whole != power or not 1 <= whole <= 64:
        np.power(values, np.float32(power), out=values)
        return
    if whole & (whole - 1) == 0:  # a power of two: square in place
        for _ in range(whole.bit_length() - 1):
            np.multiply(values, values, out=values)
        return
    square = values.copy()
    whole -= 1
    while whole:
        if whole & 1:
            values *= square
        whole >>= 1
        if whole:
            np.multiply(square, square, out=square)


#: The noise floor's variance (issue 16): the ``NOISE_QUANTILE`` of the means of the
#: finest level's squared luma coefficients over ``NOISE_BLOCK``-square blocks, the
#: flattest tenth of the first frame, which holds noise only. The MAD of the whole
#: level counted texture as noise (0.0077 on noise-free rendered stacks, whose only
#: noise is 8-bit rounding), so the floor averaged real detail away: up to 0.46 dB;
#: the blocks measure 0.0065 on stacks with luma noise 0.0067 (bench/README.md).
NOISE_BLOCK = 16
NOISE_QUANTILE = 0.1
#: ``fuse``'s default ``noise_floor`` (z): measured so, against the floor off, it costs
#: the rendered stacks of bench/fusion.py at most 0.014 dB and gains the bug set 0.15 dB
#: (0.56 unaligned) with half the high-pass RMS in its out-of-focus background; z = 4
#: costs 0.05 dB, z = 5 0.13 (bench/README.md, fusion).
DEFAULT_NOISE_FLOOR = 3.0
#: Rows of the halves a block's sum is made of: the strips' row alignment at level 0
#: (``2 ** STRIP_LEVEL``), so a strip's halves are the whole level's, bit for bit.
_NOISE_HALF = 8


_WHITE_GAINS: dict[tuple[int, int, int], list[float]] = {}


def _white_gains(shape: tuple[int, ...], levels: int) -> list[float]:
    """Variance of each band of white noise's Laplacian pyramid over that of band 0
    (measured once per shape, capped at 512 x 512, on seeded Gaussian noise)."""
    rows, cols = min(int(shape[0]), 512), min(int(shape[1]), 512)
    key = (rows, cols, levels)
    if key not in _WHITE_GAINS:
        noise = np.random.default_rng(0).standard_normal((rows, cols)).astype(np.float32)
        bands = laplacian_pyramid(noise, levels)[:-1]
        first = float(np.mean(np.square(bands[0]))) if bands else 1.0
        _WHITE_GAINS[key] = [float(np.mean(np.square(b))) / first for b in bands]
    return _WHITE_GAINS[key]


def _noise_half_sums(squared: NDArray[Any]) -> NDArray[np.float64]:
    """Sums of ``squared`` (rows, cols) over tiles of ``_NOISE_HALF`` rows by
    ``NOISE_BLOCK`` columns (rows and columns left over are left out), one row of tiles
    at a time: the same bits whether ``squared`` is a whole level or a strip of it whose
    first row is a multiple of ``_NOISE_HALF``."""
    rows, cols = squared.shape[-2:]
    across = cols // NOISE_BLOCK
    out = np.zeros((rows // _NOISE_HALF, across), np.float64)
    for g in range(out.shape[0]):
        tiles = squared[g * _NOISE_HALF : (g + 1) * _NOISE_HALF, : across * NOISE_BLOCK]
        out[g] = tiles.reshape(_NOISE_HALF, across, NOISE_BLOCK).sum(axis=(0, 2), dtype=np.float64)
    return out


def _block_noise(halves: NDArray[np.float64]) -> float:
    """The noise variance from :func:`_noise_half_sums` of a whole level: the
    ``NOISE_QUANTILE`` of its ``NOISE_BLOCK``-square blocks' means (0 if it has none)."""
    pairs = halves[: len(halves) // 2 * 2]
    means = (pairs[0::2] + pairs[1::2]) / float(NOISE_BLOCK * NOISE_BLOCK)
    return _quantile(means, NOISE_QUANTILE) if means.size else 0.0


def _quantile(values: F32, q: float, *, in_place: bool = False) -> float:
    """``np.quantile(values, q)`` (its default, linear method; the same value), by one
    partition: NumPy's own first call imports ``numpy.ma`` (~20 ms of every start-up).
    ``in_place``: partition ``values`` itself (C-contiguous, reordered) instead of a copy.
    """
    flat = values.ravel()
    index = q * (flat.size - 1)
    lo = int(math.floor(index))
    hi = min(lo + 1, flat.size - 1)
    if in_place:
        flat.partition([lo, hi])
        part = flat
    else:
        part = np.partition(flat, [lo, hi])
    return _interpolated(part[lo], part[hi], index - lo)


def _interpolated(a: Any, b: Any, t: float) -> float:
    """:func:`_quantile`'s linear interpolation between its two order statistics."""
    return float(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)


class _StreamedQuantile:
    """:func:`_quantile` of non-negative float32 values seen in chunks, exactly, in two
    passes over the same chunks and without keeping them: a float32 >= 0 sorts as its
    bits, so the first pass counts the values by their upper 16 bits, which bins hold
    the two order statistics the quantile interpolates between, and the second counts
    the values of those bins by their lower 16 bits, which gives the statistics' bits.
    Chunks may come from several threads."""

    def __init__(self, q: float) -> None:
        self.q = q
        self.count = 0
        self.high = np.zeros(1 << 16, np.int64)
        self.low: dict[int, NDArray[np.int64]] = {}
        self.ranks: list[tuple[int, int]] = []  # (upper bits, rank among that bin)
        self.peak = 0.0  # the largest value (after the first pass)
        self._lock = threading.Lock()

    def first(self, values: F32) -> None:
        """First pass: count a chunk by its values' upper 16 bits."""
        counts = np.bincount(values.view(np.uint32).ravel() >> 16, minlength=1 << 16)
        peak = float(values.max()) if values.size else 0.0
        with self._lock:
            self.high += counts
            self.count += values.size
            self.peak = max(self.peak, peak)

    def between(self) -> None:
        """Between the passes: find the bins of the two order statistics."""
        index = self.q * (self.count - 1)
        lo = int(math.floor(index))
        below = np.cumsum(self.high)
        for rank in (lo, min(lo + 1, self.count - 1)):
            top = int(np.searchsorted(below, rank, side="right"))
            self.ranks.append((top, rank - (int(below[top - 1]) if top else 0)))
            self.low.setdefault(top, np.zeros(1 << 16, np.int64))

    def second(self, values: F32) -> None:
        """Second pass: count a chunk's values of the chosen bins by their lower bits."""
        bits = values.view(np.uint32).ravel()
        for top in self.low:
            mine = bits[(bits >> 16) == top] & 0xFFFF
            counts = np.bincount(mine, minlength=1 << 16)
            with self._lock:
                self.low[top] += counts

    def value(self) -> float:
        """The quantile, as :func:`_quantile` of all the values."""
        found = []
        for top, rank in self.ranks:
            low = int(np.searchsorted(np.cumsum(self.low[top]), rank, side="right"))
            found.append(np.array([(top << 16) | low], np.uint32).view(np.float32)[0])
        index = self.q * (self.count - 1)
        return _interpolated(found[0], found[1], index - math.floor(index))


def pyramid_levels(shape: tuple[int, ...], levels: int | None = None, min_size: int = 16) -> int:
    """Number of pyramid levels for an image of ``shape`` (coarsest side >= ``min_size``)."""
    if levels is not None:
        return max(1, int(levels))
    side = min(shape[0], shape[1])
    return max(1, int(math.floor(math.log2(max(side, 1) / min_size))) + 1)


def laplacian_pyramid(image: F32, levels: int, axes: tuple[int, int] = (0, 1)) -> list[F32]:
    """Laplacian pyramid: ``levels - 1`` band-pass images, then the low-pass base."""
    return _bands(gaussian_pyramid(image, levels, axes), axes)


def _bands(gauss: Sequence[F32], axes: tuple[int, int] = (0, 1)) -> list[F32]:
    """Laplacian pyramid from a Gaussian one: ``g[k] - expand(g[k + 1])``, then ``g[-1]``."""
    pairs = zip(gauss[:-1], gauss[1:], strict=True)
    return [*(_expanded(smaller, g.shape, axes, g, -1) for g, smaller in pairs), gauss[-1]]


def gaussian_pyramid(image: F32, levels: int, axes: tuple[int, int] = (0, 1)) -> list[F32]:
    """Gaussian pyramid with ``levels`` images, finest first (reduced along ``axes``)."""
    out = [image]
    for _ in range(levels - 1):
        out.append(_reduce(out[-1], axes))
    return out


def collapse(bands: Sequence[F32], axes: tuple[int, int] = (0, 1)) -> F32:
    """Invert :func:`laplacian_pyramid`."""
    current = bands[-1]
    for band in reversed(bands[:-1]):
        current = _expanded(current, band.shape, axes, band, 1)
    return current


def _reduce_rows(level: F32, start: int, rows: int, lo: int, hi: int) -> F32:
    """Rows ``lo:hi`` of the next Gaussian level, exactly as :func:`_reduce` of the
    whole level makes them, from ``level``: rows ``start:`` of a level of ``rows`` rows
    (rows last but one), holding the rows :func:`convstack.stack.strips.reduce_source`
    names (a view of the few rows beyond them is kept: the mirror there is not the
    level's)."""
    a, b = reduce_source(lo, hi, rows)
    source = level[..., a - start : b - start, :]
    axes = (source.ndim - 2, source.ndim - 1)
    return _reduce(source, axes)[..., lo - a // 2 : hi - a // 2, :]


def _expand_rows(
    coarse: F32, start: int, coarse_rows: int, rows: int, lo: int, hi: int, cols: int
) -> tuple[F32, int]:
    """Rows ``lo:hi`` of :func:`_expand` of a whole level to ``rows`` x ``cols``, exactly,
    from ``coarse``: rows ``start:`` of that level (``coarse_rows`` rows), holding the
    rows :func:`convstack.stack.strips.expand_source` names. Returns a new array and
    the row of the whole expansion that is its first: it holds a few rows more on each
    side of ``lo:hi``, which are not the whole expansion's."""
    j0, j1 = expand_source(lo, hi, coarse_rows)
    source = coarse[..., j0 - start : j1 - start, :]
    count = rows - 2 * j0 if j1 == coarse_rows else 2 * (j1 - j0)
    axes = (source.ndim - 2, source.ndim - 1)
    shape = source.shape[:-2] + (count, cols)
    return _expand(source, shape, axes), 2 * j0


def _as_frame(frame: ArrayLike, name: str) -> F32:
    return to_unit_float(frame, name)


def from_unit_float(result: F32, dtype: np.dtype[Any], *, clip: bool = False) -> NDArray[Any]:
    """float32 on [0, 1] back to ``dtype`` (integers rounded and saturated).

    ``clip``: float results are clipped to [0, 1] too (integers always are).
    """
    if dtype.kind in "ui":
        top = float(np.iinfo(dtype).max)
        scaled = np.multiply(result, np.float32(top))
        np.rint(scaled, out=scaled)
        np.clip(scaled, 0, top, out=scaled)
        return scaled.astype(dtype)
    if clip:
        result = np.clip(result, 0.0, 1.0)
    return result.astype(np.float32, copy=False)


# ------------------------------------------------------------------------ the lab's
def lab_gamma(image: ArrayLike) -> float:
    """The lab's automatic gamma: ``log(0.5 * 255) / log(mean(V))``, V = HSV value in 8-bit units.

    V is the per-pixel maximum over the colour channels (the gray value for gray
    frames), measured on the 0..255 scale whatever the bit depth, as in the lab.
    The correction applied is ``out = in ** (1 / gamma)`` on [0, 1].
    """
    unit = to_unit_float(image)
    value = unit.max(axis=2) if unit.ndim == 3 else unit
    mean = float(value.mean()) * 255.0
    if mean <= 1.0:
        return 1.0
    return math.log(0.5 * 255.0) / math.log(mean)


class WeightedAccumulator:
    """Running ``sum(w f)`` and ``sum(w)`` for the weighted mean (one frame at a time)."""

    def __init__(self) -> None:
        self.num: F32 | None = None
        self.den: F32 | None = None
        self.plain: F32 | None = None
        self.count = 0

    def add(self, frame: F32, weight: F32) -> None:
        w = weight[..., None] if frame.ndim == 3 else weight
        if self.num is None:
            self.num = np.zeros(frame.shape, np.float32)
            self.den = np.zeros(weight.shape, np.float32)
            self.plain = np.zeros(frame.shape, np.float32)
        assert self.den is not None and self.plain is not None
        self.num += frame * w
        self.den += weight
        self.plain += frame
        self.count += 1

    def result(self) -> F32:
        assert self.num is not None and self.den is not None and self.plain is not None
        den = self.den[..., None] if self.num.ndim == 3 else self.den
        mean = self.plain / np.float32(self.count)
        safe = np.where(den > 0, den, np.float32(1.0))
        return np.where(den > 0, self.num / safe, mean).astype(np.float32)


def weighted_merge(
    frames: Sequence[ArrayLike] | NDArray[Any],
    masks: Sequence[ArrayLike] | NDArray[Any],
    *,
    gamma_correction: bool = False,
) -> NDArray[Any]:
    """The lab's merge: the per-pixel weighted mean of the frames, weights = masks.

    Parameters
    ----------
    frames : sequence of array_like
        The frames, each (rows, cols) or (rows, cols, channels), same shape and dtype.
    masks : sequence of array_like
        One weight map (rows, cols) per frame, >= 0 (for example :func:`sharpness_mask`).
    gamma_correction : bool
        Apply the lab's automatic gamma correction (:func:`lab_gamma`) to the result.

    Returns
    -------
    ndarray, shape and dtype of one frame (float input gives float32)
        ``sum(m_i f_i) / sum(m_i)``; where every mask is 0 the plain mean of the frames.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[0, 100]], dtype=np.uint8); b = np.array([[200, 100]], dtype=np.uint8)
    >>> weighted_merge([a, b], [np.array([[1.0, 0.0]]), np.array([[3.0, 0.0]])])
    array([[150, 100]], dtype=uint8)
    """
    if len(frames) < 1:
        raise v.fail("frames", "hold at least one frame", frames)
    if len(masks) != len(frames):
        raise ValueError(f"`masks` must hold one mask per frame ({len(frames)}); got {len(masks)}.")
    first = v.as_real_array(frames[0], "frames[0]")
    acc = WeightedAccumulator()
    for index, (frame, mask) in enumerate(zip(frames, masks, strict=True)):
        array = v.as_real_array(frame, f"frames[{index}]")
        if array.shape != first.shape or array.dtype != first.dtype:
            raise ValueError(
                f"`frames[{index}]` must match frames[0] (shape {first.shape}, dtype "
                f"{first.dtype}); got shape {array.shape}, dtype {array.dtype}."
            )
        weight = v.as_real_array(mask, f"masks[{index}]").astype(np.float32)
        if weight.shape != first.shape[:2]:
            raise v.fail(f"masks[{index}]", f"have shape {first.shape[:2]}", weight)
        if np.any(weight < 0):
            raise v.fail(f"masks[{index}]", "be >= 0 everywhere", weight)
        acc.add(_as_frame(array, f"frames[{index}]"), weight)
    result = acc.result()
    if gamma_correction:
        result = apply_gamma(result, lab_gamma(result))
    return from_unit_float(result, first.dtype)


def apply_gamma(image: F32, gamma: float) -> F32:
    """``image ** (1 / gamma)`` on [0, 1] (the lab's correction)."""
    return (np.clip(image, 0.0, 1.0) ** np.float32(1.0 / gamma)).astype(np.float32)


# ------------------------------------------------------------- depth-guided methods
def frame_weight(depth: F32, index: int) -> F32:
    """Linear-interpolation weight of frame ``index`` for a fractional depth map."""
    return np.maximum(np.float32(1.0) - np.abs(depth - np.float32(index)), np.float32(0.0))


class DepthAccumulator:
    """Running ``sum(w_i f_i)`` with ``w_i = frame_weight(depth, i)``."""

    def __init__(self, depth: F32) -> None:
        self.depth = depth
        self.total: F32 | None = None

    def needs(self, index: int) -> bool:
        """Whether frame ``index`` contributes anywhere (others can be skipped)."""
        return bool(np.any(np.abs(self.depth - np.float32(index)) < 1.0))

    def add(self, index: int, frame: F32) -> None:
        w = frame_weight(self.depth, index)
        if frame.ndim == 3:
            w = w[..., None]
        if self.total is None:
            self.total = np.zeros(frame.shape, np.float32)
        self.total += frame * w

    def result(self) -> F32:
        assert self.total is not None
        return self.total


#: The default soft rule (issue 16): the finest level's weights are
#: ``(1 + E / tau) ** 8 * (1 + E / (EDGE_FLOOR * tau)) ** 8`` (the second factor
#: matters only on detail whose amplitude is over 32x the floor's: there the selection
#: is as sharp as a 16th power, while noise near the floor is averaged as before),
#: the coarser levels' ``(1 + E / tau) ** COARSE_POWER``. Against the plain eighth
#: power everywhere: aligned-0 +0.28 dB, aligned-3 +0.20, halo +0.06-0.07, breathing
#: +0.00-0.03; bug unaligned -0.03 with its background as grainy (bench/README.md).
FINE_POWER = 8.0
COARSE_POWER = 32.0
EDGE_FLOOR = 1024.0


#: Bytes of the strips' temporaries for ``strip_rows='auto'``
#: (:func:`convstack.stack.strips.rows_for_budget`), with at least ``STRIP_MIN_ROWS``
#: rows a strip (the halo, about 60 rows, is computed twice: its share stays small).
STRIP_BUDGET = 64 << 20
STRIP_MIN_ROWS = 128


class PyramidAccumulator:
    """Running per-level fusion of the frames' Laplacian-pyramid coefficients.

    The finest ``soft_levels`` detail levels (default: all) keep a running weighted
    sum of the frames' coefficients with weights ``(1 + E / tau) ** power`` (the
    default ``power=None``: the finest level's ``FINE_POWER`` times a second factor
    for strong edges, ``(1 + E / (EDGE_FLOOR * tau)) ** FINE_POWER``, the coarser
    levels' ``COARSE_POWER``; see :data:`EDGE_FLOOR`), ``E`` the
    local energy (luma coefficient squared, 5-tap binomial window), ``tau`` = ``floor``
    times the ``quantile`` (10 %) of that level's energy in the first frame taken in
    (the sensor-noise energy of its flattest areas): where one frame's
    detail stands out this is a selection, where every frame holds only noise it is
    an average, which lowers the noise instead of picking its largest sample. The
    sums are kept relative to the running largest weight (an online softmax), so
    they stay finite whatever the energy ratios. Coarser levels (none by default;
    all with ``soft_levels=0``, the classic rule) keep the coefficient of largest
    energy. Either way two frame-sized arrays per level, whatever the number of frames.
    The low-pass bases (``1 / 4**(levels - 1)`` of a frame each, a few kilobytes)
    are kept per frame and blended at the end, by depth-map weights or evenly.

    ``noise`` (z, off here; ``fuse`` passes ``DEFAULT_NOISE_FLOOR``; issue 16): ``tau``
    is at least z**2 times the first frame's noise variance at that level, measured
    rather than assumed: the mean squared luma coefficient of the finest level's
    flattest blocks (:data:`NOISE_BLOCK`), carried to each level by white noise's gain
    through the pyramid. Where no
    frame's detail stands out of the noise the frames are then averaged, which keeps
    an out-of-focus background as clean as their mean instead of picking the
    strongest grain.

    With ``envelope`` (the default) it also keeps the per-pixel running minimum and
    maximum over the frames of their Gaussian level 2 and the minimum of their
    level 1 (``ENVELOPE_LEVELS``: local means over about 4 and 2 px; three arrays,
    3/8 of a frame together), and :meth:`result` moves the fused image's own level-2
    local mean into that [min, max] envelope, then raises its level-1 local mean to
    that minimum (each correction is expanded back to full size, so finer texture
    is kept). Next to a bright edge over a dark background the fine
    levels come from the far-focused frame, whose blurred glow ends in a sharp
    knee that the pyramid keeps as a dark rim, while the coarse levels come from
    the near-focused frame: the mix is darker than every frame's local mean there,
    which is what the envelope catches. The same check caps a glow: a local mean
    brighter than in every frame.

    ``strip_rows`` (issue 14): frames are taken in and the result made in strips of
    about that many rows (rounded up to a multiple of ``2 ** STRIP_LEVEL``), each with
    the halo that makes it exact: the same bits as the whole frame at once (None),
    with no full-size temporary beyond the running state and the result. ``'auto'``:
    strips of about ``STRIP_BUDGET`` bytes of temporaries
    (:func:`convstack.stack.strips.rows_for_budget` gives them for another budget).

    Strip-major (issue 14, frames larger than the running state allows): every frame
    through :meth:`add_coarse` (its coarse levels), then :meth:`merge_strips` with a
    way to read the frames' rows again makes the result one strip of output rows at a
    time from strip-sized state; the same bits as :meth:`add` and :meth:`result`.
    """

    def __init__(
        self,
        levels: int | None = None,
        *,
        soft_levels: int | None = None,
        power: float | None = None,
        floor: float = 4.0,
        quantile: float = 0.1,
        envelope: bool = True,
        focus: Any = None,
        noise: float | None = None,
        strip_rows: int | Literal["auto"] | None = "auto",
    ) -> None:
        if strip_rows is not None and strip_rows != "auto":
            if isinstance(strip_rows, bool) or not isinstance(strip_rows, (int, np.integer)):
                raise TypeError(
                    f"`strip_rows` must be an int, 'auto' or None; got {type(strip_rows).__name__}."
                )
            if strip_rows < 1:
                raise ValueError(f"`strip_rows` must be >= 1; got {strip_rows}.")
        self.strip_rows = strip_rows
        self.focus = focus  # a channel index or weights: its energy decides (issue 15)
        self.noise = noise  # z: tau from the measured noise floor (issue 16)
        self.sigma2 = 0.0  # the first frame's finest-level noise variance (with noise)
        self.levels_arg = levels
        self.levels = 0
        self.soft_levels = 1 << 30 if soft_levels is None else soft_levels
        self.power = power  # None: the default rule (FINE_POWER, COARSE_POWER, EDGE_FLOOR)
        self.floor = floor
        self.quantile = quantile
        self.bands: list[F32] | None = None
        self.energy: list[NDArray[Any]] | None = None
        self.weight: list[F32] = []  # soft levels: sum of weights / largest weight
        self.tau: list[float] = []
        self.bases: dict[int, F32] = {}
        self.axes = (0, 1)
        self.envelope = envelope
        # running per-pixel min / max of the frames' Gaussian levels ENVELOPE_LEVELS
        self.low: dict[int, F32] = {}
        self.high: dict[int, F32] = {}
        self.frame_shape: tuple[int, ...] = ()  # planar: the strip-major merge's frames

    def _noise_floor(self, k: int, squared: F32, energy: F32) -> float:
        """``tau`` of level ``k`` from the first frame: ``floor`` times the ``quantile`` of
        its energy; with ``noise`` (z, issue 16) at least the measured noise energy
        times z**2: the noise's variance on the finest level from its flattest blocks
        (:func:`_block_noise`), carried to level ``k`` by the gain of white noise
        through the pyramid."""
        tau = _floored_tau(_quantile(energy, self.quantile) * self.floor, float(energy.max()))
        if self.noise is None:
            return tau
        if k == 0:
            self.sigma2 = _block_noise(_noise_half_sums(squared))
        gain = _white_gains(squared.shape[-2:], self.levels)[k]
        return max(tau, self.noise**2 * self.sigma2 * gain)

    def _power(self, k: int) -> float:
        """The power of soft level ``k``'s weights."""
        if self.power is not None:
            return self.power
        return FINE_POWER if k == 0 else COARSE_POWER

    def _edge(self, k: int) -> float:
        """Soft level ``k``'s ``edge`` for :func:`_sharpened` (inf: none)."""
        return EDGE_FLOOR if self.power is None and k == 0 else math.inf

    def _envelope_levels(self) -> tuple[int, ...]:
        """Gaussian levels of the envelope check, coarse first (none for tiny images)."""
        if not self.envelope:
            return ()
        return tuple(k for k in ENVELOPE_LEVELS if 0 < k < self.levels)

    def _squared(self, band: F32) -> F32:
        """The squared luma (or focus channel) of a band, whose window is the energy."""
        return _luma_squared(band) if self.focus is None else _focus_squared(band, self.focus)

    def _step(self, shape: tuple[int, ...]) -> int:
        """Rows of level 0 per strip for frames of ``shape`` (rows, cols[, channels])."""
        rows = int(shape[0])
        if self.strip_rows is None:
            return rows
        asked = self.strip_rows
        if asked == "auto":
            asked = max(STRIP_MIN_ROWS, rows_for_budget(shape, STRIP_BUDGET))
        return strip_step(rows, int(asked), STRIP_LEVEL)

    def add(self, index: int, frame: F32) -> None:
        """Take in frame ``index`` (float32, aligned), strip by strip.

        The finest ``STRIP_LEVEL`` levels are made and merged one strip of rows at a
        time (:mod:`convstack.stack.strips`: each strip computes the rows its halo
        needs, so every coefficient equals the whole frame's); the strips' rows of
        Gaussian level ``STRIP_LEVEL`` gather into one small image, whose coarser
        levels are merged whole. The first frame's ``tau`` of a strip-made level is
        taken once all its strips are in.
        """
        first = self.bands is None or self.energy is None
        if first:
            self.levels = pyramid_levels(frame.shape, self.levels_arg)
            self.bands, self.energy, self.weight, self.tau = [], [], [], []
        step = self._step(frame.shape)
        if frame.ndim == 3:  # planar inside: per-pixel weights broadcast over channels
            frame = np.ascontiguousarray(np.moveaxis(frame, 2, 0))
        self.axes = (1, 2) if frame.ndim == 3 else (0, 1)
        rows, cols = frame.shape[-2:]
        split = 0 if step >= rows else min(STRIP_LEVEL, self.levels - 1)
        if split == 0:
            self._add_levels(index, frame, 0, first)
            return
        sizes = level_sizes(rows, split + 1), level_sizes(cols, split + 1)
        if first:
            self._allocate(frame.shape[:-2], sizes, split)
        coarse = np.empty(frame.shape[:-2] + (sizes[0][split], sizes[1][split]), np.float32)
        starts = range(0, rows, step)
        # CONVSTACK_THREADS=1: one (read now: a forked batch worker re-reads its share)
        workers = min(STRIP_WORKERS, _methods.THREADS, len(starts))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # strips own disjoint rows of every array they write: they run side by side
            tasks = [
                pool.submit(
                    self._add_strip, frame, a, min(rows, a + step), sizes, split, coarse, first
                )
                for a in starts
            ]
            for task in tasks:
                task.result()
        if first:
            self._first_taus(split, step)
        self._add_levels(index, coarse, split, first)

    def _allocate(
        self, planes: tuple[int, ...], sizes: tuple[list[int], list[int]], split: int
    ) -> None:
        """The running state of the strip-made levels ``0 .. split - 1``, filled by the
        first frame's strips (and the envelope's levels below ``split``)."""
        assert self.bands is not None and self.energy is not None
        for k in range(split):
            shape = (sizes[0][k], sizes[1][k])
            self.bands.append(np.empty(planes + shape, np.float32))
            self.energy.append(np.empty(shape, np.float32))
            if k < self.soft_levels:
                self.weight.append(np.empty(shape, np.float32))
        for check in self._envelope_levels():
            if check < split:
                level = planes + (sizes[0][check], sizes[1][check])
                self.low[check] = np.empty(level, np.float32)
                if check not in ENVELOPE_FLOOR_ONLY:
                    self.high[check] = np.empty(level, np.float32)

    def _add_strip(
        self,
        frame: F32,
        start: int,
        stop: int,
        sizes: tuple[list[int], list[int]],
        split: int,
        coarse: F32 | None,
        first: bool,
        *,
        frame_row: int = 0,
        shift: Sequence[int] | None = None,
        merge: bool = True,
        capture: Callable[[int, int, int, F32, F32], None] | None = None,
    ) -> None:
        """Merge rows ``start:stop`` of ``frame`` (planar or grey) on levels below
        ``split``, and write the strip's rows of Gaussian level ``split`` into ``coarse``.

        ``frame_row``: the frame's row that ``frame``'s first is (it holds at least
        the rows the strip reads); ``shift``: per level, the level's row that the
        running state's first is (strip-sized state; default 0, the whole level);
        ``merge=False``: only ``coarse`` is made (and ``capture`` fed); ``capture(k,
        a, b, band, energy)``: the strip's own rows ``a:b`` of detail level ``k`` and
        their raw energy (the strip-major merge's first frame, for ``tau``)."""
        rows, cols = sizes
        needs, owns = strip_needs(rows, start, stop, split)
        lo, hi = needs[0]
        gauss = [frame[..., lo - frame_row : hi - frame_row, :]]
        for k in range(split):
            gauss.append(_reduce_rows(gauss[k], needs[k][0], rows[k], *needs[k + 1]))
        moved = [0] * (split + 1) if shift is None else shift

        def owned(k: int) -> F32:
            """The strip's own rows of Gaussian level ``k``."""
            offset = needs[k][0]
            return gauss[k][..., owns[k][0] - offset : owns[k][1] - offset, :]

        for check in self._envelope_levels() if merge else ():
            if check < split:
                mine, a, b = owned(check), owns[check][0], owns[check][1]
                targets: list[tuple[F32, Any]] = [(self.low[check], np.minimum)]
                if check not in ENVELOPE_FLOOR_ONLY:
                    targets.append((self.high[check], np.maximum))
                for state, pick in targets:
                    part = state[..., a - moved[check] : b - moved[check], :]
                    if first:
                        part[...] = mine
                    else:
                        pick(part, mine, out=part)
        if coarse is not None:
            a, b = owns[split]
            coarse[..., a:b, :] = owned(split)
        if not merge and capture is None:
            return
        for k in range(split if merge else min(split, self.soft_levels)):
            a, b = owns[k]
            band_lo, band_hi = max(0, a - 2), min(rows[k], b + 2)
            # the band on the rows the expansion makes (the few beyond band_lo:band_hi
            # are not the level's): contiguous, so no copy on the way to the merge
            band, row0 = _expand_rows(
                gauss[k + 1], needs[k + 1][0], rows[k + 1], rows[k], band_lo, band_hi, cols[k]
            )
            offset = row0 - needs[k][0]
            level = gauss[k][..., offset : offset + band.shape[-2], :]
            np.subtract(level, band, out=band)
            energy = _blur5(self._squared(band))
            if capture is not None:
                capture(k, a, b, band[..., a - row0 : b - row0, :], energy[a - row0 : b - row0])
            if merge:
                m = moved[k]
                self._merge(k, row0 - m, a - m, b - m, energy, band, first)

    def _merge(
        self, k: int, row0: int, a: int, b: int, energy: F32, band: F32, first: bool
    ) -> None:
        """Merge rows ``a:b`` of level ``k`` from ``band`` and ``energy``, whose first
        row is the level's row ``row0`` (exact on rows ``a:b`` at least)."""
        assert self.bands is not None and self.energy is not None
        total, top = self.bands[k][..., a:b, :], self.energy[k][a:b]
        mine = slice(a - row0, b - row0)
        if first:  # raw energy: the soft levels' tau needs the whole level first
            total[...] = band[..., mine, :]
            top[...] = energy[mine]
            return
        if k >= self.soft_levels:
            better = energy[mine] > top
            np.maximum(top, energy[mine], out=top)
            np.copyto(total, band[..., mine, :], where=better)
            return
        scale = np.float32(1.0 / self.tau[k])
        power = self._power(k)
        _sharpened(energy[mine], self.tau[k], self._edge(k))
        if _soft_merge(
            energy,
            band,
            self.energy[k],
            self.weight[k],
            self.bands[k],
            scale,
            power,
            row0,
            (mine.start, mine.stop),
        ):
            return
        weight = self.weight[k][a:b]
        planes = band[..., mine, :]
        base = energy[mine]
        base *= scale
        base += np.float32(1.0)
        largest = np.maximum(top, base)
        old = np.divide(top, largest, out=top)
        _power_in_place(old, power)
        new = np.divide(base, largest, out=base)
        _power_in_place(new, power)
        weight *= old
        weight += new
        total *= old
        planes *= new
        total += planes
        top[...] = largest

    def _first_taus(self, split: int, step: int) -> None:
        """``tau`` of the strip-made soft levels from the first frame's whole raw
        energies (then turned into weight bases in place), as :meth:`_noise_floor`
        takes it; the weight arrays, all ones after, hold the values to partition."""
        assert self.bands is not None and self.energy is not None
        for k in range(min(split, self.soft_levels)):
            scratch, energy = self.weight[k], self.energy[k]
            if self.noise is not None and k == 0:
                band = self.bands[0]
                for a in range(0, energy.shape[0], step):
                    b = min(energy.shape[0], a + step)
                    scratch[a:b] = self._squared(band[..., a:b, :])
                self.sigma2 = _block_noise(_noise_half_sums(scratch))
            np.copyto(scratch, energy)
            quantile = _quantile(scratch, self.quantile, in_place=True)
            peak = float(energy.max())
            self.tau.append(self._tau_from(k, quantile, peak, energy.shape))
            scratch.fill(1.0)
            _to_weight_base(energy, self.tau[k], self._edge(k))

    def _tau_from(self, k: int, quantile: float, peak: float, shape: tuple[int, ...]) -> float:
        """``tau`` of strip-made level ``k`` (of ``shape``) from the ``quantile`` and the
        ``peak`` of the first frame's raw energies there, as :meth:`_noise_floor` takes
        it (``sigma2`` set already with ``noise``)."""
        tau = _floored_tau(quantile * self.floor, peak)
        if self.noise is not None:
            gain = _white_gains(shape, self.levels)[k]
            tau = max(tau, self.noise**2 * self.sigma2 * gain)
        return tau

    def _add_levels(self, index: int, image: F32, offset: int, first: bool) -> None:
        """Merge levels ``offset ..`` of a frame whole; ``image`` is its Gaussian level
        ``offset`` (the frame itself for 0)."""
        assert self.bands is not None and self.energy is not None
        gauss = gaussian_pyramid(image, self.levels - offset, self.axes)
        for check in self._envelope_levels():
            if check < offset:
                continue
            level = gauss[check - offset]
            if check not in self.low:
                self.low[check] = level.copy()
            else:
                np.minimum(self.low[check], level, out=self.low[check])
            if check not in ENVELOPE_FLOOR_ONLY:
                if check not in self.high:
                    self.high[check] = level.copy()
                else:
                    np.maximum(self.high[check], level, out=self.high[check])
        bands = _bands(gauss, self.axes)
        del gauss
        for j, band in enumerate(bands[:-1]):
            k = offset + j
            squared = self._squared(band)
            energy = _blur5(squared)
            if first:
                # soft levels: the running largest weight base 1 + E / tau, and the sum
                # of weights relative to it (1); the others: the running largest energy
                if k < self.soft_levels:
                    self.tau.append(self._noise_floor(k, squared, energy))
                    _to_weight_base(energy, self.tau[k], self._edge(k))
                    self.weight.append(np.ones(energy.shape, np.float32))
                self.energy.append(energy)
                self.bands.append(band)
                continue
            # soft levels: weights (1 + E/tau)**power, summed relative to the running
            # largest (as an online softmax): (base / top)**power <= 1 stays finite
            # whatever the ratios. Powers of ratios rather than exponentials of
            # log-weights: NumPy's float32 log1p and exp are scalar code on CPUs
            # without AVX-512 (log1p alone took 55 ms on a 3 MP level there)
            self._merge(k, 0, 0, band.shape[-2], energy, band, False)
        base = bands[-1]  # the frame itself when there is one level: keep a copy
        keep = offset == 0 and np.may_share_memory(base, image)
        self.bases[index] = base.copy() if keep else base

    # ---------------------------------------------------------- the strip-major merge
    def add_coarse(self, index: int, frame: F32) -> None:
        """Strip-major merge, pass 1: take in frame ``index`` (float32, aligned) on its
        coarse levels only.

        The frame's strips make its Gaussian level ``STRIP_LEVEL`` (as in :meth:`add`),
        whose levels are merged whole here and its base kept; the finer levels are
        merged by :meth:`merge_strips`, which reads the frames again. The first
        frame's ``tau`` of the finer soft levels is taken here from their whole
        energies, as :meth:`add` takes it.
        """
        first = self.bands is None or self.energy is None
        if frame.ndim == 3:
            frame = np.ascontiguousarray(np.moveaxis(frame, 2, 0))
        rows, cols = frame.shape[-2:]
        if first:
            self.levels = pyramid_levels(frame.shape[-2:], self.levels_arg)
            if self.levels < 2:
                raise ValueError(
                    f"the strip-major merge needs at least 2 pyramid levels; got {self.levels}."
                )
            self.bands, self.energy, self.weight, self.tau = [], [], [], []
            self.frame_shape = frame.shape
        self.axes = (1, 2) if frame.ndim == 3 else (0, 1)
        split = min(STRIP_LEVEL, self.levels - 1)
        sizes = level_sizes(rows, split + 1), level_sizes(cols, split + 1)
        coarse = np.empty(frame.shape[:-2] + (sizes[0][split], sizes[1][split]), np.float32)
        if first:
            self._strip_state(frame.shape[:-2], [(0, 0)] * (split + 1), sizes, split)
        # the first frame's tau (and noise) from its whole levels' energies, streamed:
        # two passes over its strips, nothing frame-sized kept (see _StreamedQuantile)
        taus = {k: _StreamedQuantile(self.quantile) for k in range(min(split, self.soft_levels))}
        # the noise floor's tile sums of level 0, by their first row's tile index
        halves: dict[int, NDArray[np.float64]] | None
        halves = {} if first and self.noise is not None and taus else None
        counters = list(taus.values())

        def counting(second: bool) -> Callable[[int, int, int, F32, F32], None]:
            """A capture for :meth:`_add_strip`: the strip's rows of level ``k`` counted."""

            def capture(k: int, a: int, b: int, band: F32, energy: F32) -> None:
                count = _StreamedQuantile.second if second else _StreamedQuantile.first
                count(taus[k], np.ascontiguousarray(energy))
                if k == 0 and halves is not None and not second:
                    halves[a // _NOISE_HALF] = _noise_half_sums(self._squared(band))

            return capture

        # strips of the default budget at most (the second pass's may be larger)
        shape = (rows, cols, *frame.shape[:-2])
        auto = max(STRIP_MIN_ROWS, rows_for_budget(shape, STRIP_BUDGET))
        step = min(self._step(shape), strip_step(rows, auto, STRIP_LEVEL))
        starts = range(0, rows, step)
        workers = min(STRIP_WORKERS, _methods.THREADS, len(starts))

        def strips(into: F32 | None, capture: Callable[..., None] | None) -> None:
            """Every strip of the frame (side by side): level ``split`` into ``into``."""
            tasks = [
                pool.submit(
                    self._add_strip,
                    frame,
                    a,
                    min(rows, a + step),
                    sizes,
                    split,
                    into,
                    first,
                    merge=False,
                    capture=capture,
                )  # fmt: skip
                for a in starts
            ]
            for task in tasks:
                task.result()

        with ThreadPoolExecutor(max_workers=workers) as pool:
            strips(coarse, counting(False) if first and counters else None)
            if first and counters:
                for counter in counters:
                    counter.between()
                strips(None, counting(True))
        if halves:
            self.sigma2 = _block_noise(np.concatenate([halves[g] for g in sorted(halves)]))
        if first:
            for k in sorted(taus):
                level = (sizes[0][k], sizes[1][k])
                self.tau.append(self._tau_from(k, taus[k].value(), taus[k].peak, level))
        self._add_levels(index, coarse, split, first)

    def _strip_state(
        self,
        planes: tuple[int, ...],
        owns: Sequence[tuple[int, int]],
        sizes: tuple[list[int], list[int]],
        split: int,
    ) -> None:
        """The running state of levels ``0 .. split - 1`` on the rows ``owns`` of each
        (the strip-major merge's strip; empty rows: placeholders)."""
        assert self.bands is not None and self.energy is not None
        for k in range(split):
            shape = (owns[k][1] - owns[k][0], sizes[1][k])
            arrays = (np.empty(planes + shape, np.float32), np.empty(shape, np.float32))
            if len(self.bands) > k:
                self.bands[k], self.energy[k] = arrays
            else:
                self.bands.append(arrays[0])
                self.energy.append(arrays[1])
            if k < self.soft_levels:
                if len(self.weight) > k:
                    self.weight[k] = np.empty(shape, np.float32)
                else:
                    self.weight.append(np.empty(shape, np.float32))
        for check in self._envelope_levels():
            if check < split:
                level = planes + (owns[check][1] - owns[check][0], sizes[1][check])
                self.low[check] = np.empty(level, np.float32)
                if check not in ENVELOPE_FLOOR_ONLY:
                    self.high[check] = np.empty(level, np.float32)

    def merge_strips(
        self,
        rows_of: Callable[[int, int, int], F32],
        order: Sequence[int],
        depth: F32 | None = None,
        dtype: Any = None,
    ) -> NDArray[Any]:
        """Strip-major merge, pass 2: the result (as :meth:`result`), one strip of
        output rows at a time, after :meth:`add_coarse` took every frame.

        ``rows_of(index, lo, hi)``: rows ``lo:hi`` of frame ``index`` as given to
        :meth:`add_coarse` (planar (channels, rows, cols) float32 for colour); the
        frames are merged into each strip in ``order`` (:meth:`add_coarse`'s), on the
        rows the strip's collapse and envelope check read, so the result has the same
        bits as :meth:`add` of every frame and :meth:`result`. Beside the result, only
        one strip's running state, frame rows and temporaries are held; the coarse
        levels (1/64 of a frame) are collapsed whole first.
        """
        assert self.bands is not None and self.energy is not None
        planes, (rows, cols) = self.frame_shape[:-2], self.frame_shape[-2:]
        split = min(STRIP_LEVEL, self.levels - 1)
        sizes = level_sizes(rows, split + 1), level_sizes(cols, split + 1)
        channels = planes[0] if planes else 0
        step = self._collapse_step(rows, cols, channels)
        current = self._collapsed(depth, split, step)
        out = self._output(rows, cols, channels, dtype)
        strips = list(self._output_strips(rows, step))
        workers = min(STRIP_WORKERS, _methods.THREADS, len(strips))
        with (
            _channel_pool(channels) as pool,
            ThreadPoolExecutor(max_workers=workers) as strip_pool,
        ):
            # strips write disjoint rows of ``out``, each from a state of its own
            tasks = [
                strip_pool.submit(
                    self._strip_clone()._merge_strip,
                    rows_of,
                    order,
                    current,
                    sizes,
                    split,
                    strip,
                    out,
                    dtype is not None,
                    pool,
                )  # fmt: skip
                for strip in strips
            ]
            try:
                for task in tasks:
                    task.result()
            finally:
                for task in tasks:
                    task.cancel()
        return out

    def _strip_clone(self) -> PyramidAccumulator:
        """A shallow copy with state lists of its own, for one strip of
        :meth:`merge_strips` (the coarse levels, bases and taus shared, read only)."""
        clone = copy.copy(self)
        assert self.bands is not None and self.energy is not None
        clone.bands, clone.energy, clone.weight = [*self.bands], [*self.energy], [*self.weight]
        clone.low, clone.high = dict(self.low), dict(self.high)
        return clone

    def _merge_strip(
        self,
        rows_of: Callable[[int, int, int], F32],
        order: Sequence[int],
        current: F32,
        sizes: tuple[list[int], list[int]],
        split: int,
        strip: tuple[int, int, int, int],
        out: NDArray[Any],
        convert: bool,
        pool: ThreadPoolExecutor | None,
    ) -> None:
        """One strip of :meth:`merge_strips` (``strip``: ``(a, b, lo, hi)`` as
        :meth:`_output_strips` gives it; ``current``: the fused Gaussian level
        ``split``), merged into this accumulator's (a clone's) state and written."""
        assert self.bands is not None and self.energy is not None
        a, b, lo, hi = strip
        spans, start, stop = self._strip_spans(sizes, split, lo, hi)
        needs, owns = strip_needs(sizes[0], start, stop, split)
        shift = [owns[k][0] for k in range(split)] + [0]  # (level split: whole)
        self._strip_state(self.frame_shape[:-2], owns, sizes, split)
        for position, index in enumerate(order):
            rows_in = rows_of(index, *needs[0])
            self._add_strip(
                rows_in, start, stop, sizes, split, None, position == 0,
                frame_row=needs[0][0], shift=shift,
            )  # fmt: skip
            if position == 0:  # tau is known: weight bases, as _first_taus makes
                for k in range(min(split, self.soft_levels)):
                    _to_weight_base(self.energy[k], self.tau[k], self._edge(k))
                    self.weight[k].fill(1.0)
        image = current
        for k in range(split - 1, -1, -1):
            (c0, c1), coarse0 = spans[k], spans[k + 1][0] if k + 1 < split else 0
            value, row0 = _expand_rows(
                image, coarse0, sizes[0][k + 1], sizes[0][k], c0, c1, sizes[1][k]
            )
            image = value[..., c0 - row0 : c1 - row0, :]
            np.add(self._detail(k, c0 - shift[k], c1 - shift[k]), image, out=image)
        self._write_strip(image, a, b, lo, out, convert, pool, shift)

    def _strip_spans(
        self, sizes: tuple[list[int], list[int]], split: int, lo: int, hi: int
    ) -> tuple[list[tuple[int, int]], int, int]:
        """For the collapse of level-0 rows ``lo:hi``: per level below ``split`` the rows
        it makes (each the rows its finer level's expansion reads), and the level-0
        rows ``start:stop`` (aligned to ``2 ** split``) whose owned rows on every level
        cover them and the envelope's rows of its check."""
        spans = [(lo, hi)]
        for k in range(split - 1):
            spans.append(expand_source(*spans[k], sizes[0][k + 1]))
        low = [span[0] for span in spans]
        high = [span[1] for span in spans]
        for check in self._envelope_levels():
            if check < split:
                first = lo >> check
                low[check] = min(low[check], first)
                high[check] = max(high[check], first + level_sizes(hi - lo, check + 1)[-1])
        unit = 1 << split
        start = min(row << k for k, row in enumerate(low)) // unit * unit
        stop = -(-max(row << k for k, row in enumerate(high)) // unit) * unit
        return spans, start, min(stop, sizes[0][0])

    def base_depth(self, depth: F32) -> F32:
        """``depth`` (rows, cols) reduced to the grid of the low-pass bases, for :meth:`result`."""
        assert self.levels > 0, "add frames first"
        return gaussian_pyramid(depth.astype(np.float32, copy=False), self.levels)[-1]

    def _detail(self, k: int, a: int, b: int) -> F32:
        """Rows ``a:b`` of fused detail level ``k`` (soft levels: the weighted mean)."""
        assert self.bands is not None
        rows = self.bands[k][..., a:b, :]
        return rows / self.weight[k][a:b] if k < len(self.weight) else rows

    def _collapse_level(self, k: int, coarser: F32, step: int) -> F32:
        """Level ``k`` of the collapse: ``coarser`` expanded plus detail ``k``, strip by
        strip (no full-size temporary)."""
        assert self.bands is not None
        shape = self.bands[k].shape
        out = np.empty(shape, np.float32)
        rows = shape[-2]
        for a in range(0, rows, step):
            b = min(rows, a + step)
            value, row0 = _expand_rows(coarser, 0, coarser.shape[-2], rows, a, b, shape[-1])
            mine = value[..., a - row0 : b - row0, :]
            np.add(self._detail(k, a, b), mine, out=out[..., a:b, :])
        return out

    def result(self, depth: F32 | None = None, dtype: Any = None) -> NDArray[Any]:
        """Collapse; the base is blended by ``frame_weight(depth, i)`` or evenly.

        ``depth``: the depth map, or it already reduced by :meth:`base_depth`;
        ``dtype``: the result is converted to it as :func:`from_unit_float` does with
        ``clip=True`` (default: float32 as collapsed). The finest level is collapsed,
        checked against the envelope and converted one strip of rows at a time (with
        the halo the check needs), straight into the result; the coarser levels are
        collapsed level by level in strips too, so beside the running state and the
        result only level 1 of the image (1/4 of it) and one strip's temporaries are
        held. The state is left as it was: ``result`` may be called again.
        """
        assert self.bands is not None and self.energy is not None
        # (channels,) rows, cols
        full = self.bands[0].shape if self.bands else self.bases[min(self.bases)].shape
        rows, cols = full[-2:]
        channels = full[0] if len(full) == 3 else 0
        step = self._collapse_step(rows, cols, channels)
        current = self._collapsed(depth, 1, step)
        out = self._output(rows, cols, channels, dtype)
        with _channel_pool(channels) as pool:
            for a, b, lo, hi in self._output_strips(rows, step):
                if self.bands:
                    value, row0 = _expand_rows(current, 0, current.shape[-2], rows, lo, hi, cols)
                    image = value[..., lo - row0 : hi - row0, :]
                    np.add(self._detail(0, lo, hi), image, out=image)
                else:  # one level: the base is the image
                    image = current[..., lo:hi, :]
                self._write_strip(image, a, b, lo, out, dtype is not None, pool)
        return out

    def _collapsed(self, depth: F32 | None, stop: int, step: int) -> F32:
        """The fused image's Gaussian level ``stop`` (at least 1): the blended base
        collapsed through the detail levels down to ``stop``, in strips of ``step``."""
        current = self._blended_base(depth)
        assert self.bands is not None
        for k in range(len(self.bands) - 1, stop - 1, -1):
            current = self._collapse_level(k, current, step)
        return current

    def _output_strips(self, rows: int, step: int) -> Iterator[tuple[int, int, int, int]]:
        """The collapse's strips of level-0 rows: ``(a, b, lo, hi)``, rows ``a:b``
        made from rows ``lo:hi`` (the envelope check's halo)."""
        halo = _CLAMP_HALO if self._envelope_levels() else 0
        for a in range(0, rows, step):
            b = min(rows, a + step)
            yield a, b, max(0, a - halo), min(rows, b + halo)

    def _blended_base(self, depth: F32 | None) -> F32:
        """The fused low-pass base: the bases blended by ``frame_weight(depth, i)`` (the
        depth map, or it reduced by :meth:`base_depth`), or evenly (None)."""
        order = sorted(self.bases)
        base = np.zeros_like(self.bases[order[0]])
        if depth is None:
            for i in order:
                base += self.bases[i] / np.float32(len(order))
        else:
            grid = base.shape[-2:]
            coarse = depth if depth.shape == grid else self.base_depth(depth)
            for i in order:
                base += self.bases[i] * frame_weight(coarse, i)
        return base

    def _collapse_step(self, rows: int, cols: int, channels: int) -> int:
        """Rows of level 0 a strip of the collapse (a multiple of 8: the envelope's
        level 2 rows stay aligned)."""
        step = max(8, self._step((rows, cols, max(channels, 1))))
        return -(-step // 8) * 8

    @staticmethod
    def _output(rows: int, cols: int, channels: int, dtype: Any) -> NDArray[Any]:
        """The result's array: float32 or ``dtype``, (rows, cols[, channels])."""
        kind = np.dtype(np.float32) if dtype is None else np.dtype(dtype)
        return np.empty((rows, cols, channels) if channels else (rows, cols), kind)

    def _write_strip(
        self,
        image: F32,
        a: int,
        b: int,
        lo: int,
        out: NDArray[Any],
        convert: bool,
        pool: ThreadPoolExecutor | None,
        shift: Sequence[int] | None = None,
    ) -> None:
        """Envelope-check ``image`` (rows ``lo:`` of the collapsed level 0, planar or
        grey, with the halo the check reads) and write its rows ``a:b`` into ``out``,
        converted to ``out``'s dtype where ``convert``; channels side by side on
        ``pool``. ``shift``: per level, the row of the envelope's first (strip-sized
        state)."""
        checks = self._envelope_levels()
        moved = [0] * (max(checks, default=0) + 1) if shift is None else shift
        kind = out.dtype

        def strip(plane: F32, c: Any) -> None:
            """One channel (``c``: an index, or ``...``)."""
            bounds = []
            for check in checks:
                n = level_sizes(plane.shape[-2], check + 1)[-1]
                first = (lo >> check) - moved[check]
                low, high = self.low[check][c], self.high.get(check)
                bounds.append(
                    (
                        check,
                        low[first : first + n],
                        None if high is None else high[c][first : first + n],
                    )
                )
            checked = clamp_local_means(plane, bounds)[a - lo : b - lo]
            target = out[a:b] if c is ... else out[a:b, :, c]
            target[...] = from_unit_float(checked, kind, clip=True) if convert else checked

        if pool is None:
            strip(image, ...)
            return
        tasks = [pool.submit(strip, image[c], c) for c in range(image.shape[0])]
        for task in tasks:
            task.result()


@contextlib.contextmanager
def _channel_pool(channels: int) -> Iterator[ThreadPoolExecutor | None]:
    """A thread per channel for the collapse's last strips (NumPy releases the GIL;
    the channels are independent there), or None for grey."""
    if not channels:
        yield None
        return
    pool = ThreadPoolExecutor(max_workers=channels)
    try:
        yield pool
    finally:
        pool.shutdown()


#: Rows of level 0 beyond a strip that the envelope check of the strip reads (its
#: Gaussian levels 1 and 2 and the corrections expanded back: about 18), a multiple of
#: 8 so that the level-2 rows of every strip start on the level's own grid.
_CLAMP_HALO = 24


#: Gaussian levels whose per-pixel [min, max] over the frames bound the pyramid's
#: local means, applied coarse to fine (2: about 4 px, 1: about 2 px). Level 1 alone,
#: or more passes, cost fine detail elsewhere; level 0, a per-pixel clamp, wipes out
#: texture that the pyramid rightly sharpens.
ENVELOPE_LEVELS = (2, 1)
#: Levels of ``ENVELOPE_LEVELS`` that only raise the local mean to the frames'
#: minimum (the rim), never lower it: capping at level 1 too trimmed real detail
#: (breathing stacks -0.0002 SSIM) for no gain on the halo stacks.
ENVELOPE_FLOOR_ONLY = (1,)


def _to_envelope(mean: F32, low: F32, high: F32 | None) -> F32:
    """What moves ``mean`` into ``[low, high]`` (``high=None``: no upper bound); 0 inside."""
    correction = np.maximum(mean, low) if high is None else np.clip(mean, low, high)
    correction -= mean
    return correction


def clamp_local_mean(
    image: F32, low: F32, high: F32 | None, level: int, axes: tuple[int, int] = (0, 1)
) -> F32:
    """Move ``image``'s local mean into ``[low, high]``, keeping its finer detail.

    ``low`` and ``high`` have the shape of Gaussian level ``level`` of ``image``
    (:func:`gaussian_pyramid` over ``axes``; ``high=None``: no upper bound); where
    that level of ``image`` lies outside them, the difference to the nearest bound is
    expanded back to full size and added, so only the local mean changes. One step,
    not a projection: the expanded correction is smooth, so a narrow excursion is only
    partly removed (iterating removes more of it, but also more real detail).
    """
    gauss = gaussian_pyramid(image, level + 1, axes)
    correction = _to_envelope(gauss[-1], low, high)
    for finer in reversed(gauss[:-1]):
        correction = _expand(correction, finer.shape, axes)
    return image + correction


#: Reduce after expand, as one filter on the coarser grid: inserting zeros, then the
#: expansion's [1, 4, 6, 4, 1] / 8 and the reduction's [1, 4, 6, 4, 1] / 16, then
#: keeping the even samples leaves the even taps of their convolution.
_REDUCE_EXPAND = np.array([1.0, 28.0, 70.0, 28.0, 1.0], np.float32) / np.float32(128.0)


def clamp_local_means(
    image: F32, bounds: Sequence[tuple[int, F32, F32 | None]], axes: tuple[int, int] = (0, 1)
) -> F32:
    """:func:`clamp_local_mean` for each ``(level, low, high)`` of ``bounds`` in turn.

    Two checks, the second at level 1 (the envelope's), take one full-size reduction,
    expansion and addition instead of two each: the first check's correction stays on
    level 1, where the second check sees it through reduce-after-expand as one 5-tap
    filter (exact but for the last two samples of an even-sized axis), and both go
    to full size together.
    """
    if len(bounds) != 2 or bounds[1][0] != 1 or bounds[0][0] <= 1:
        for level, low, high in bounds:
            image = clamp_local_mean(image, low, high, level, axes)
        return image
    (coarse, low, high), (_, low1, high1) = bounds
    gauss = gaussian_pyramid(image, coarse + 1, axes)
    correction = _to_envelope(gauss[coarse], low, high)
    for finer in reversed(gauss[1:coarse]):
        correction = _expand(correction, finer.shape, axes)
    # level 1 of the image once corrected at the coarse level
    seen = correction
    for axis in axes:
        taps = _REDUCE_EXPAND.reshape([-1 if k == axis else 1 for k in range(image.ndim)])
        seen = correlate(seen, taps, mode="mirror")
    correction += _to_envelope(seen + gauss[1], low1, high1)
    return _expanded(correction, image.shape, axes, image, 1)


def _check_stack(frames: Iterable[ArrayLike]) -> tuple[list[F32], np.dtype[Any]]:
    arrays = [v.as_real_array(f, f"frames[{i}]") for i, f in enumerate(frames)]
    if len(arrays) < 1:
        raise v.fail("frames", "hold at least one frame", arrays)
    first = arrays[0]
    for i, a in enumerate(arrays):
        if a.shape != first.shape or a.dtype != first.dtype:
            raise ValueError(
                f"`frames[{i}]` must match frames[0] (shape {first.shape}, dtype "
                f"{first.dtype}); got shape {a.shape}, dtype {a.dtype}."
            )
    return [_as_frame(a, f"frames[{i}]") for i, a in enumerate(arrays)], first.dtype


def _check_depth(depth: ArrayLike, shape: tuple[int, ...], count: int) -> F32:
    d = v.as_real_array(depth, "depth").astype(np.float32)
    if d.shape != shape[:2]:
        raise v.fail("depth", f"have shape {shape[:2]}", d)
    return np.clip(d, 0, count - 1).astype(np.float32)


def depth_merge(frames: Sequence[ArrayLike] | NDArray[Any], depth: ArrayLike) -> NDArray[Any]:
    """Per pixel, the frame at ``depth`` (linear between the two nearest frames).

    Parameters
    ----------
    frames : sequence of array_like
        Aligned frames in focus order, same shape and dtype.
    depth : array_like, shape (rows, cols)
        Fractional frame index per pixel (clipped to [0, n_frames - 1]).

    Returns
    -------
    ndarray, shape and dtype of one frame (float input gives float32)

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((1, 2), np.uint8); b = np.full((1, 2), 200, np.uint8)
    >>> depth_merge([a, b], np.array([[0.0, 0.25]]))
    array([[ 0, 50]], dtype=uint8)
    """
    stack, dtype = _check_stack(frames)
    acc = DepthAccumulator(_check_depth(depth, stack[0].shape, len(stack)))
    for i, f in enumerate(stack):
        acc.add(i, f)
    return from_unit_float(acc.result(), dtype)


def pyramid_merge(
    frames: Sequence[ArrayLike] | NDArray[Any],
    depth: ArrayLike | None = None,
    *,
    levels: int | None = None,
    soft_levels: int | None = None,
    envelope: bool = True,
) -> NDArray[Any]:
    """Laplacian-pyramid fusion: per level, coefficients weighted by their local energy.

    Parameters
    ----------
    frames : sequence of array_like
        Aligned frames in focus order, same shape and dtype.
    depth : array_like, shape (rows, cols), optional
        Fractional frame index per pixel: the low-pass base is blended with weights
        ``max(0, 1 - |d - i|)`` (at the base's scale). None: the plain mean of the
        bases.
    levels : int, optional
        Pyramid levels (default: until the coarsest side is about 16 pixels).
    soft_levels : int, optional
        How many of the finest detail levels use the soft weights (default: all);
        the others keep the coefficient of largest energy. ``soft_levels=0`` with
        ``depth=None`` is the classic rule (``method='maxabs'``, which has
        ``envelope=False``).
    envelope : bool
        Keep the result's local means (Gaussian level 2; level 1 from below)
        within the per-pixel [min, max] of the frames' local means: no dark rim or
        glow beside bright edges (see :class:`PyramidAccumulator`).

    Returns
    -------
    ndarray, shape and dtype of one frame (float input gives float32)

    Notes
    -----
    Detail level ``k`` of the result is ``sum_i w_i L_k(f_i) / sum_i w_i`` with
    ``w_i = (1 + E_i / tau_k) ** 32`` on the coarser levels, ``w_i = (1 + E_i / tau_0)
    ** 8 * (1 + E_i / (1024 tau_0)) ** 8`` on the finest (:data:`EDGE_FLOOR`),
    ``E_i = B * (luma of L_k(f_i))**2`` (``L_k``: the 5-tap binomial Laplacian pyramid
    of Burt & Adelson 1983, ``B``: the same 5-tap window, ``tau_k``: 4x the 10 %
    energy quantile of the first frame, a noise floor). The high powers make it
    nearly a selection wherever one frame's detail stands out, which keeps fine
    detail at full contrast, while near the floor (noise) the finest level
    averages as an eighth power does; since a defocused
    frame's glow around a bright edge is low-frequency, it loses to the focused
    frame's edge at the fine levels. The glow's outer knee is not: there the fine
    levels of the far-focused frame win over the coarse levels of the near-focused
    one and their mix undershoots (a dark rim 6-10 px out). With ``envelope`` the
    result's level-2 Gaussian is clipped per pixel to ``[min_i G_2(f_i),
    max_i G_2(f_i)]`` and the clipping residual expanded back and added
    (:func:`clamp_local_mean`), then level 1 raised to ``min_i G_1(f_i)``.
    Identical frames are returned unchanged. See :class:`PyramidAccumulator`.
    """
    stack, dtype = _check_stack(frames)
    acc = PyramidAccumulator(levels, soft_levels=soft_levels, envelope=envelope)
    for i, f in enumerate(stack):
        acc.add(i, f)
    d = None if depth is None else _check_depth(depth, stack[0].shape, len(stack))
    return from_unit_float(acc.result(d), dtype, clip=True)
