"""Compiled loops of :func:`convstack.warp.warp`: the exact 2-D warp, row by row.

:func:`planes_rows` copies the rows of the image that a strip of the output reads into
edge-padded planes of the working dtype (one plane per channel, padded by one sample
before and two after on both axes, so no tap needs clamping); :func:`cubic_rows`,
:func:`linear_rows` and :func:`nearest_rows` fill the output rows ``start:stop`` from
them, so the caller can split the rows between threads. Each output pixel maps through
the 3x3 matrix to its input position, is tested against the image (mode 'constant'),
clamped to it ('nearest' extension) and interpolated from its 1, 4 or 16 taps. Along a
run of output pixels whose taps sit on the same input rows, one column further each
time (a row of a slightly rotated or scaled frame, for a hundred pixels or more), the
taps are consecutive samples and the loop runs several pixels per instruction;
elsewhere the same arithmetic runs a pixel at a time. A NaN or infinity in the image
reaches only the output pixels whose taps include it (orders 0-3).

The quintic B-spline (order 5) interpolates coefficients prefiltered over the whole
image (:func:`spline_rows`, :func:`spline_columns`, :func:`quintic_rows`: SciPy's
``order=5``), or, for ``warp(separable=True)``, in two 1-D passes per strip of output
rows: :func:`two_pass_rows` resamples each input row of the strip's band along the row
(a FIR prefilter, then 6 taps), :func:`two_pass_columns` prefilters the band down its
columns and resamples each column (6 taps).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._jit import kernel

__all__ = [
    "BAND_MARGIN",
    "CUBIC_A",
    "PREFILTER_REACH",
    "SPLINE_PAD",
    "cubic_rows",
    "linear_rows",
    "nearest_rows",
    "planes_rows",
    "prefilter_taps",
    "quintic_rows",
    "spline_columns",
    "spline_gain",
    "spline_polynomials",
    "spline_rows",
    "two_pass_band",
    "two_pass_columns",
    "two_pass_rows",
]

#: Keys' cubic-convolution parameter (Keys 1981); reproduces quadratics exactly.
CUBIC_A = -0.5

#: Edge samples added each side before the spline prefilter: the quintic's taps reach
#: three samples beyond a position clamped to the image, and each recursion, started
#: at a padded end, has settled to float32's precision 13 samples later.
SPLINE_PAD = 16
#: The poles of the quintic B-spline's interpolation prefilter (Unser 1999).
_QUINTIC_POLES = (-0.4305753470999738, -0.04309628820326465)


@kernel
def planes_rows(image: Any, first: int, planes: Any, start: int, stop: int) -> None:
    """Rows ``start:stop`` of ``planes``: ``planes[ch, p, q] = image[i, j, ch]`` with
    ``i = clip(first + p - 1, 0, rows - 1)`` and ``j = clip(q - 1, 0, cols - 1)``
    (the image padded by one sample before and two after, edges repeated), converted
    to ``planes``' dtype."""
    h, w, channels = image.shape
    for p in range(start, stop):
        i = min(max(first + p - 1, 0), h - 1)
        for ch in range(channels):
            dst = planes[ch, p]
            dst[0] = image[i, 0, ch]
            for j in range(w):
                dst[j + 1] = image[i, j, ch]
            dst[w + 1] = image[i, w - 1, ch]
            dst[w + 2] = image[i, w - 1, ch]


@kernel
def _cubic_run(
    p0: Any,
    p1: Any,
    p2: Any,
    p3: Any,
    wr: Any,
    wc: Any,
    dst: Any,
    start: int,
    stop: int,
    shift: int,
) -> None:
    """``dst[p]``, ``start <= p < stop``: Keys cubic from the taps ``p + shift + l``,
    ``l < 4``, of the rows ``p0..p3`` (rows first, then the columns).

    Unsigned indices: numba then leaves out its test for negative ones, which would
    keep the loop from reading consecutive taps as vectors.
    """
    wr0, wr1, wr2, wr3 = wr[0], wr[1], wr[2], wr[3]
    wc0, wc1, wc2, wc3 = wc[0], wc[1], wc[2], wc[3]
    one, two, three = np.uint64(1), np.uint64(2), np.uint64(3)
    offset = np.uint64(shift + start)
    for p in range(np.uint64(start), np.uint64(stop)):
        q = p - np.uint64(start) + offset
        c0 = wr0[p] * p0[q] + wr1[p] * p1[q] + wr2[p] * p2[q] + wr3[p] * p3[q]
        q1 = q + one
        c1 = wr0[p] * p0[q1] + wr1[p] * p1[q1] + wr2[p] * p2[q1] + wr3[p] * p3[q1]
        q2 = q + two
        c2 = wr0[p] * p0[q2] + wr1[p] * p1[q2] + wr2[p] * p2[q2] + wr3[p] * p3[q2]
        q3 = q + three
        c3 = wr0[p] * p0[q3] + wr1[p] * p1[q3] + wr2[p] * p2[q3] + wr3[p] * p3[q3]
        dst[p] = wc0[p] * c0 + wc1[p] * c1 + wc2[p] * c2 + wc3[p] * c3


@kernel
def _linear_run(
    p0: Any, p1: Any, t: Any, u: Any, dst: Any, start: int, stop: int, shift: int
) -> None:
    """``dst[p]``, ``start <= p < stop``: bilinear from the taps ``p + shift`` and
    ``p + shift + 1`` of the rows ``p0`` and ``p1`` (fractions ``t`` down, ``u`` across)."""
    one = np.uint64(1)
    offset = np.uint64(shift + start)
    for p in range(np.uint64(start), np.uint64(stop)):
        q = p - np.uint64(start) + offset
        v00 = p0[q]
        v10 = p1[q]
        upper = v00 + (p0[q + one] - v00) * u[p]
        lower = v10 + (p1[q + one] - v10) * u[p]
        dst[p] = upper + (lower - upper) * t[p]


@kernel
def _positions(
    m: Any,
    y: float,
    h: int,
    w: int,
    projective: bool,
    constant: bool,
    edge: float,
    sr: Any,
    sc: Any,
    inside: Any,
) -> None:
    """Input positions ``(sr[c], sc[c])`` of output row ``y``, clamped to the image, and
    ``inside[c]``: whether they lie on it (set only when ``constant``). Where a projective
    matrix leaves one undefined (behind the projection centre, or not finite): ``(0, 0)``,
    outside. Simple loops, each of which the compiler vectorises."""
    width = sr.shape[0]
    for c in range(width):
        x = float(c)
        sr[c] = m[0, 0] * y + m[0, 1] * x + m[0, 2]
        sc[c] = m[1, 0] * y + m[1, 1] * x + m[1, 2]
    if projective:
        for c in range(width):
            d = m[2, 0] * y + m[2, 1] * float(c) + m[2, 2]
            valid = False
            if d > 0.0:
                sr[c] = sr[c] / d
                sc[c] = sc[c] / d
                valid = math.isfinite(sr[c]) and math.isfinite(sc[c])
            if not valid:
                sr[c] = math.nan  # outside, then sampled at (0, 0)
                sc[c] = math.nan
    bottom = h - 1.0
    right = w - 1.0
    if constant:  # (False for NaN)
        for c in range(width):
            inside[c] = (
                (sr[c] >= -edge)
                & (sr[c] <= bottom + edge)
                & (sc[c] >= -edge)
                & (sc[c] <= right + edge)
            )
    if projective:
        for c in range(width):
            if math.isnan(sr[c]):
                sr[c] = 0.0
                sc[c] = 0.0
    for c in range(width):
        sr[c] = min(max(sr[c], 0.0), bottom)
        sc[c] = min(max(sc[c], 0.0), right)


@kernel
def _keys(t: float) -> tuple[float, float, float, float]:
    """Keys' weights of the taps at offsets -1, 0, 1, 2 for the fraction ``t``."""
    a = CUBIC_A
    t2 = t * t
    t3 = t2 * t
    return (
        a * (t3 - 2.0 * t2 + t),
        (a + 2.0) * t3 - (a + 3.0) * t2 + 1.0,
        -(a + 2.0) * t3 + (2.0 * a + 3.0) * t2 - a * t,
        a * (t2 - t3),
    )


@kernel
def _run(rows: Any, cols: Any, a: int) -> tuple[int, int]:
    """The end of the run of output columns from ``a`` whose taps lie on the same input
    rows, one column apart (``rows[q]``, ``cols[q] == shift + q``), and its ``shift``:
    such a run is interpolated with one set of row pointers, consecutively."""
    shift = cols[a] - a
    b = a + 1
    while b < rows.size and rows[b] == rows[a] and cols[b] == shift + b:
        b += 1
    return b, shift


@kernel
def _finish(line: Any, inside: Any, fill: Any, constant: bool, out: Any, r: int) -> None:
    """``fill`` where the row's positions lie outside, then the row into ``out[:, r]``."""
    channels, width = line.shape
    if constant:
        for c in range(width):
            if not inside[c]:
                for ch in range(channels):
                    line[ch, c] = fill[0]
    for ch in range(channels):
        for c in range(width):
            out[ch, r, c] = line[ch, c]


@kernel
def nearest_rows(
    planes: Any,
    first: int,
    h: int,
    w: int,
    m: Any,
    projective: bool,
    constant: bool,
    fill: Any,
    edge: float,
    out: Any,
    start: int,
    stop: int,
) -> None:
    """Nearest-neighbour warp of the image held by ``planes`` (see :func:`planes_rows`;
    ``first``: the padded input row of ``planes[:, 0]``; ``h, w``: the image's shape)
    through ``m`` into the rows ``start:stop`` of ``out`` (channels, rows, cols).

    ``constant``: pixels whose input position lies outside ``[-edge, h - 1 + edge] x
    [-edge, w - 1 + edge]`` (or is undefined) get ``fill[0]``.
    """
    channels = planes.shape[0]
    width = out.shape[2]
    sr = np.empty(width)
    sc = np.empty(width)
    inside = np.ones(width, np.bool_)
    line = np.empty((channels, width), planes.dtype)
    for r in range(start, stop):
        _positions(m, float(r), h, w, projective, constant, edge, sr, sc, inside)
        for c in range(width):
            i = int(math.floor(sr[c] + 0.5)) + 1 - first
            j = int(math.floor(sc[c] + 0.5)) + 1
            for ch in range(channels):
                line[ch, c] = planes[ch, i, j]
        _finish(line, inside, fill, constant, out, r)


@kernel
def linear_rows(
    planes: Any,
    first: int,
    h: int,
    w: int,
    m: Any,
    projective: bool,
    constant: bool,
    fill: Any,
    edge: float,
    out: Any,
    start: int,
    stop: int,
) -> None:
    """Bilinear warp: :func:`nearest_rows`'s arguments, the result interpolated from the
    4 taps around each position (arithmetic in ``planes``' dtype)."""
    channels = planes.shape[0]
    width = out.shape[2]
    sr = np.empty(width)
    sc = np.empty(width)
    rows = np.empty(width, np.intp)
    cols = np.empty(width, np.intp)
    inside = np.ones(width, np.bool_)
    t = np.empty(width, planes.dtype)
    u = np.empty(width, planes.dtype)
    line = np.empty((channels, width), planes.dtype)
    for r in range(start, stop):
        _positions(m, float(r), h, w, projective, constant, edge, sr, sc, inside)
        for c in range(width):
            i = int(sr[c])  # the floor: sr >= 0
            j = int(sc[c])
            rows[c] = i + 1 - first
            cols[c] = j + 1
            t[c] = sr[c] - i
            u[c] = sc[c] - j
        a = 0
        while a < width:  # runs of taps one column apart on the same rows
            i = rows[a]
            b, shift = _run(rows, cols, a)
            for ch in range(channels):
                plane = planes[ch]
                _linear_run(plane[i], plane[i + 1], t, u, line[ch], a, b, shift)
            a = b
        _finish(line, inside, fill, constant, out, r)


@kernel
def cubic_rows(
    planes: Any,
    first: int,
    h: int,
    w: int,
    m: Any,
    projective: bool,
    constant: bool,
    fill: Any,
    edge: float,
    out: Any,
    start: int,
    stop: int,
) -> None:
    """Keys cubic warp: :func:`nearest_rows`'s arguments, the result interpolated from
    the 16 taps around each position (weights in float64, rounded to ``planes``' dtype
    for the arithmetic)."""
    channels = planes.shape[0]
    width = out.shape[2]
    sr = np.empty(width)
    sc = np.empty(width)
    rows = np.empty(width, np.intp)
    cols = np.empty(width, np.intp)
    inside = np.ones(width, np.bool_)
    weights = np.empty((8, width), planes.dtype)  # rows' 0-3, columns' 4-7
    line = np.empty((channels, width), planes.dtype)
    for r in range(start, stop):
        _positions(m, float(r), h, w, projective, constant, edge, sr, sc, inside)
        for c in range(width):
            i = int(sr[c])  # the floor: sr >= 0
            j = int(sc[c])
            rows[c] = i - first  # the tap above: padded row i
            cols[c] = j
            weights[0, c], weights[1, c], weights[2, c], weights[3, c] = _keys(sr[c] - i)
            weights[4, c], weights[5, c], weights[6, c], weights[7, c] = _keys(sc[c] - j)
        a = np.intp(0)  # not a literal 0: _cubic_run compiles once
        while a < width:  # runs of taps one column apart on the same rows
            i = rows[a]
            b, shift = _run(rows, cols, a)
            if b - a < 4:  # a short run (a large rotation): a pixel at a time, same sums
                for q in range(a, b):
                    j = cols[q]
                    wr0, wr1, wr2, wr3 = weights[0, q], weights[1, q], weights[2, q], weights[3, q]
                    wc0, wc1, wc2, wc3 = weights[4, q], weights[5, q], weights[6, q], weights[7, q]
                    for ch in range(channels):
                        p0, p1, p2, p3 = (
                            planes[ch, i],
                            planes[ch, i + 1],
                            planes[ch, i + 2],
                            planes[ch, i + 3],
                        )
                        c0 = wr0 * p0[j] + wr1 * p1[j] + wr2 * p2[j] + wr3 * p3[j]
                        c1 = wr0 * p0[j + 1] + wr1 * p1[j + 1] + wr2 * p2[j + 1] + wr3 * p3[j + 1]
                        c2 = wr0 * p0[j + 2] + wr1 * p1[j + 2] + wr2 * p2[j + 2] + wr3 * p3[j + 2]
                        c3 = wr0 * p0[j + 3] + wr1 * p1[j + 3] + wr2 * p2[j + 3] + wr3 * p3[j + 3]
                        line[ch, q] = wc0 * c0 + wc1 * c1 + wc2 * c2 + wc3 * c3
                a = b
                continue
            for ch in range(channels):
                plane = planes[ch]
                _cubic_run(
                    plane[i],
                    plane[i + 1],
                    plane[i + 2],
                    plane[i + 3],
                    weights[0:4],
                    weights[4:8],
                    line[ch],
                    a,
                    b,
                    shift,
                )
            a = b
        _finish(line, inside, fill, constant, out, r)


def spline_gain() -> float:
    """The prefilter's gain along one axis: the product of ``(1 - z)(1 - 1/z)`` over
    the poles (a constant signal keeps its value)."""
    gain = 1.0
    for z in _QUINTIC_POLES:
        gain *= (1.0 - z) * (1.0 - 1.0 / z)
    return gain


@kernel
def _spline_down(block: Any, start: int, stop: int) -> None:
    """The quintic prefilter down the columns ``start:stop`` of the 2-D ``block`` (in
    place), the columns side by side (the inner loops run along a row)."""
    height = block.shape[0]
    for z in _QUINTIC_POLES:
        g = 1.0 / (1.0 - z)
        for c in range(start, stop):  # as if the end value went on forever
            block[0, c] = block[0, c] * g
        for r in range(1, height):
            above = block[r - 1]
            row = block[r]
            for c in range(start, stop):
                row[c] = row[c] + z * above[c]
        for c in range(start, stop):
            block[height - 1, c] = -z * g * block[height - 1, c]
        for r in range(height - 2, -1, -1):
            below = block[r + 1]
            row = block[r]
            for c in range(start, stop):
                row[c] = z * (below[c] - row[c])


@kernel
def spline_rows(image: Any, planes: Any, gain: float, start: int, stop: int) -> None:
    """Rows ``start:stop`` of ``planes`` (channels, rows + 2 SPLINE_PAD, cols + 2
    SPLINE_PAD): the image's rows, edge-padded, times ``gain``, filtered along each row
    by the quintic prefilter (:func:`spline_columns` then filters down the columns).

    The strip's rows go through a transposed block, so that the recursions of all its
    rows run side by side."""
    h, w, channels = image.shape
    pad = SPLINE_PAD
    width = planes.shape[2]
    block = np.empty((width, stop - start), planes.dtype)
    for ch in range(channels):
        for q in range(width):
            j = min(max(q - pad, 0), w - 1)
            line = block[q]
            for p in range(start, stop):
                line[p - start] = image[min(max(p - pad, 0), h - 1), j, ch] * gain
        _spline_down(block, 0, stop - start)
        for p in range(start, stop):
            row = planes[ch, p]
            for q in range(width):
                row[q] = block[q, p - start]


@kernel
def spline_columns(planes: Any, start: int, stop: int) -> None:
    """The quintic prefilter down the columns ``start:stop`` of every plane of
    ``planes`` (in place; the rows are filtered first, by :func:`spline_rows`)."""
    for ch in range(planes.shape[0]):
        _spline_down(planes[ch], start, stop)


@kernel
def _fifth(x: float) -> float:
    return x * (x * x) * (x * x)


@kernel
def _quintic(t: float) -> tuple[float, float, float, float, float, float]:
    """The quintic B-spline's weights of the taps at offsets -2 .. 3 for the fraction
    ``t`` in [0, 1): ``beta5(t - offset)``, each piece a polynomial in ``t``."""
    s, u = 1.0 - t, t
    return (
        _fifth(s) / 120.0,
        (_fifth(1.0 + s) - 6.0 * _fifth(s)) / 120.0,
        (_fifth(2.0 + s) - 6.0 * _fifth(1.0 + s) + 15.0 * _fifth(s)) / 120.0,
        (_fifth(2.0 + u) - 6.0 * _fifth(1.0 + u) + 15.0 * _fifth(u)) / 120.0,
        (_fifth(1.0 + u) - 6.0 * _fifth(u)) / 120.0,
        _fifth(u) / 120.0,
    )


@kernel
def _quintic_run(
    plane: Any, i: int, weights: Any, dst: Any, start: int, stop: int, shift: int
) -> None:
    """``dst[p]``, ``start <= p < stop``: the coefficients ``plane[i + k, p + shift + l]``
    (k, l < 6) weighed by ``weights[k, p]`` down and ``weights[6 + l, p]`` across.

    Unsigned indices, as in :func:`_cubic_run`."""
    r0, r1, r2 = plane[i], plane[i + 1], plane[i + 2]
    r3, r4, r5 = plane[i + 3], plane[i + 4], plane[i + 5]
    w0, w1, w2, w3, w4, w5 = weights[0], weights[1], weights[2], weights[3], weights[4], weights[5]
    a0, a1, a2 = weights[6], weights[7], weights[8]
    a3, a4, a5 = weights[9], weights[10], weights[11]
    one = np.uint64(1)
    offset = np.uint64(shift + start)
    for p in range(np.uint64(start), np.uint64(stop)):
        q = p - np.uint64(start) + offset
        k0, k1, k2, k3, k4, k5 = w0[p], w1[p], w2[p], w3[p], w4[p], w5[p]
        c0 = k0 * r0[q] + k1 * r1[q] + k2 * r2[q] + k3 * r3[q] + k4 * r4[q] + k5 * r5[q]
        q += one
        c1 = k0 * r0[q] + k1 * r1[q] + k2 * r2[q] + k3 * r3[q] + k4 * r4[q] + k5 * r5[q]
        q += one
        c2 = k0 * r0[q] + k1 * r1[q] + k2 * r2[q] + k3 * r3[q] + k4 * r4[q] + k5 * r5[q]
        q += one
        c3 = k0 * r0[q] + k1 * r1[q] + k2 * r2[q] + k3 * r3[q] + k4 * r4[q] + k5 * r5[q]
        q += one
        c4 = k0 * r0[q] + k1 * r1[q] + k2 * r2[q] + k3 * r3[q] + k4 * r4[q] + k5 * r5[q]
        q += one
        c5 = k0 * r0[q] + k1 * r1[q] + k2 * r2[q] + k3 * r3[q] + k4 * r4[q] + k5 * r5[q]
        dst[p] = a0[p] * c0 + a1[p] * c1 + a2[p] * c2 + a3[p] * c3 + a4[p] * c4 + a5[p] * c5


@kernel
def quintic_rows(
    planes: Any,
    first: int,
    h: int,
    w: int,
    m: Any,
    projective: bool,
    constant: bool,
    fill: Any,
    edge: float,
    out: Any,
    start: int,
    stop: int,
) -> None:
    """Quintic B-spline warp: :func:`nearest_rows`'s arguments, ``planes`` the whole
    image's spline coefficients from :func:`spline_rows` and :func:`spline_columns`
    (``first`` unused: 0), each result weighing the 6 x 6 coefficients around its
    position (weights in float64, rounded to ``planes``' dtype)."""
    channels = planes.shape[0]
    width = out.shape[2]
    pad = SPLINE_PAD
    sr = np.empty(width)
    sc = np.empty(width)
    rows = np.empty(width, np.intp)
    cols = np.empty(width, np.intp)
    inside = np.ones(width, np.bool_)
    weights = np.empty((12, width), planes.dtype)  # rows' 0-5, columns' 6-11
    line = np.empty((channels, width), planes.dtype)
    for r in range(start, stop):
        _positions(m, float(r), h, w, projective, constant, edge, sr, sc, inside)
        for c in range(width):
            i = int(sr[c])  # the floor: sr >= 0
            j = int(sc[c])
            rows[c] = i - 2 + pad - first  # the top tap's padded row
            cols[c] = j - 2 + pad
            (
                weights[0, c], weights[1, c], weights[2, c],
                weights[3, c], weights[4, c], weights[5, c],
            ) = _quintic(sr[c] - i)  # fmt: skip
            (
                weights[6, c], weights[7, c], weights[8, c],
                weights[9, c], weights[10, c], weights[11, c],
            ) = _quintic(sc[c] - j)  # fmt: skip
        a = 0
        while a < width:  # runs of taps one column apart on the same rows
            i = rows[a]
            b, shift = _run(rows, cols, a)
            for ch in range(channels):
                _quintic_run(planes[ch], i, weights, line[ch], a, b, shift)
            a = b
        _finish(line, inside, fill, constant, out, r)


# ------------------------------------------------------------ the two-pass quintic
#: Rows of margin at each end of a strip's band of intermediate rows, for the column
#: recursion started there (its error then decays by 0.43 ** 12 = 4e-5 of a value).
BAND_MARGIN = 12
#: Taps each side of the two-pass warp's row prefilter (its response within 0.3 % of the
#: exact recursive filter's at every frequency).
PREFILTER_REACH = 8


def prefilter_taps() -> np.ndarray:
    """The one-sided taps ``h[0..PREFILTER_REACH]`` of a symmetric FIR standing in for the quintic
    B-spline's interpolation prefilter (the inverse of the sampled spline ``(1, 26, 66,
    26, 1) / 120``; its taps fall by 0.43 a sample), the last one adjusted so that a
    constant keeps its value: float64."""
    n = 256
    spline = np.zeros(n)
    spline[[0, 1, -1, 2, -2]] = np.array([66.0, 26.0, 26.0, 1.0, 1.0]) / 120.0
    inverse = np.real(np.fft.ifft(1.0 / np.fft.fft(spline)))
    taps = np.array(inverse[: PREFILTER_REACH + 1])
    taps[-1] += (1.0 - taps[0] - 2.0 * taps[1:].sum()) / 2.0
    return taps


@kernel
def _prefilter_row(src: Any, taps: Any, row: Any, pre: Any) -> None:
    """``pre[q]``: the padded row ``src`` (``src[j + 1]``: column ``j``, as
    :func:`planes_rows` writes it) at column ``q - 3`` (``-3 <= q - 3 <= cols + 2``)
    after the FIR prefilter ``taps`` (:data:`PREFILTER_REACH` + 1 of them; edges
    repeated); ``row``: scratch of ``cols + 2 * (PREFILTER_REACH + 3)`` samples."""
    w = src.size - 3
    pad = PREFILTER_REACH + 3
    for q in range(pad):
        row[q] = src[1]
    for j in range(w):
        row[pad + j] = src[j + 1]
    for q in range(pad + w, row.size):
        row[q] = src[w]
    # one pass of 17 taps (PREFILTER_REACH each side), written out: a loop over the
    # taps around the loop over q ran a sample at a time, this runs many at once
    h0, h1, h2, h3, h4 = taps[0], taps[1], taps[2], taps[3], taps[4]
    h5, h6, h7, h8 = taps[5], taps[6], taps[7], taps[8]
    u = np.uint64
    for q in range(u(0), u(pre.size)):
        s = h0 * row[q + u(8)] + h1 * (row[q + u(7)] + row[q + u(9)])
        s += h2 * (row[q + u(6)] + row[q + u(10)]) + h3 * (row[q + u(5)] + row[q + u(11)])
        s += h4 * (row[q + u(4)] + row[q + u(12)]) + h5 * (row[q + u(3)] + row[q + u(13)])
        s += h6 * (row[q + u(2)] + row[q + u(14)]) + h7 * (row[q + u(1)] + row[q + u(15)])
        pre[q] = s + h8 * (row[q] + row[q + u(16)])


@kernel
def _runs(keys: Any, ends: Any) -> int:
    """The runs of equal ``keys``: run ``k`` is ``ends[k]:ends[k + 1]``; their count."""
    count = 0
    ends[0] = 0
    for x in range(1, keys.size):
        if keys[x] != keys[x - 1]:
            count += 1
            ends[count] = x
    count += 1
    ends[count] = keys.size
    return count


@kernel
def _row_run(src: Any, weights: Any, dst: Any, start: int, stop: int, shift: int) -> None:
    """``dst[p] = sum_l weights[l, p] * src[p + shift + l]`` (l < 6), ``start <= p < stop``."""
    a0, a1, a2 = weights[0], weights[1], weights[2]
    a3, a4, a5 = weights[3], weights[4], weights[5]
    one = np.uint64(1)
    offset = np.uint64(shift + start)
    for p in range(np.uint64(start), np.uint64(stop)):
        q = p - np.uint64(start) + offset
        s = a0[p] * src[q] + a1[p] * src[q + one]
        s += a2[p] * src[q + np.uint64(2)] + a3[p] * src[q + np.uint64(3)]
        s += a4[p] * src[q + np.uint64(4)] + a5[p] * src[q + np.uint64(5)]
        dst[p] = s


@kernel
def _column_run(band: Any, i: int, weights: Any, dst: Any, start: int, stop: int) -> None:
    """``dst[p] = sum_k weights[k, p] * band[i + k, p]`` (k < 6), ``start <= p < stop``."""
    r0, r1, r2 = band[i], band[i + 1], band[i + 2]
    r3, r4, r5 = band[i + 3], band[i + 4], band[i + 5]
    a0, a1, a2 = weights[0], weights[1], weights[2]
    a3, a4, a5 = weights[3], weights[4], weights[5]
    for p in range(np.uint64(start), np.uint64(stop)):
        s = a0[p] * r0[p] + a1[p] * r1[p] + a2[p] * r2[p]
        dst[p] = s + a3[p] * r3[p] + a4[p] * r4[p] + a5[p] * r5[p]


def spline_polynomials() -> np.ndarray:
    """``(6, 6)`` float64: row ``l`` holds the coefficients (constant term first) of the
    quintic B-spline's weight of tap ``l - 2`` as a polynomial in the fraction ``t``
    (the pieces of :func:`_quintic`)."""
    from numpy.polynomial import Polynomial

    s, u = Polynomial([1.0, -1.0]), Polynomial([0.0, 1.0])
    pieces = (
        s**5,
        (1 + s) ** 5 - 6 * s**5,
        (2 + s) ** 5 - 6 * (1 + s) ** 5 + 15 * s**5,
        (2 + u) ** 5 - 6 * (1 + u) ** 5 + 15 * u**5,
        (1 + u) ** 5 - 6 * u**5,
        u**5,
    )
    table = np.zeros((6, 6))
    for row, piece in zip(table, pieces, strict=True):
        coef = np.asarray(piece.coef, np.float64) / 120.0
        row[: coef.size] = coef
    return table


@kernel
def _spline_weights(positions: Any, top: float, taps: Any, poly: Any, weights: Any) -> None:
    """Per position ``x = positions[p]`` (clamped to ``[0, top]``): ``taps[p]`` its floor
    and ``weights[0..5, p]`` the quintic B-spline's weights of the samples ``floor - 2 ..
    floor + 3`` (``poly``: :func:`spline_polynomials` in ``weights``' dtype)."""
    frac = weights[5]  # the fraction first, then its weight
    for p in range(positions.size):
        x = min(max(positions[p], 0.0), top)
        j = int(x)
        taps[p] = j
        frac[p] = x - j
    for k in range(6):
        c0, c1, c2, c3, c4, c5 = (
            poly[k, 0],
            poly[k, 1],
            poly[k, 2],
            poly[k, 3],
            poly[k, 4],
            poly[k, 5],
        )
        dst = weights[k]
        for p in range(positions.size):
            t = frac[p]
            dst[p] = c0 + t * (c1 + t * (c2 + t * (c3 + t * (c4 + t * c5))))


@kernel
def _columns_prefilter(band: Any) -> None:
    """The quintic prefilter down the columns of the 2-D ``band`` (in place): both
    poles' causal recursions in one sweep, then both anticausal ones, each end taken
    as if its value went on forever."""
    height, width = band.shape
    state = np.empty(width, band.dtype)
    za, zb = _QUINTIC_POLES
    constants = np.empty(7, band.dtype)  # the arithmetic in the band's dtype
    constants[0], constants[1] = za, zb
    constants[2], constants[3] = za / (za - 1.0), zb / (zb - 1.0)
    constants[4] = (1.0 - za) * (1.0 - 1.0 / za) * (1.0 - zb) * (1.0 - 1.0 / zb)
    constants[5], constants[6] = 1.0 / (1.0 - za), 1.0 / (1.0 - zb)
    z1, z2, e1, e2, gain, g1, g2 = (
        constants[0], constants[1], constants[2], constants[3],
        constants[4], constants[5], constants[6],
    )  # fmt: skip
    first = band[0]
    for c in range(width):
        state[c] = first[c] * gain * g1
        first[c] = state[c] * g2
    for r in range(1, height):
        above = band[r - 1]
        row = band[r]
        for c in range(width):
            state[c] = gain * row[c] + z1 * state[c]
            row[c] = state[c] + z2 * above[c]
    last = band[height - 1]
    for c in range(width):
        state[c] = e1 * last[c]
        last[c] = e2 * state[c]
    for r in range(height - 2, -1, -1):
        below = band[r + 1]
        row = band[r]
        for c in range(width):
            state[c] = z1 * (state[c] - row[c])
            row[c] = z2 * (below[c] - state[c])


def two_pass_band(m: Any, start: int, stop: int, cols: int, rows: int) -> tuple[int, int]:
    """Input rows ``[first, last)`` whose resampled rows the output rows ``start:stop``
    (``cols`` wide) of the two-pass warp through the affine ``m`` of an image of
    ``rows`` rows read: the taps of their positions clamped to the image, and
    :data:`BAND_MARGIN` more each side (rows outside the image stand for its edge rows)."""
    corners = [
        min(max(m[0, 0] * y + m[0, 1] * x + m[0, 2], 0.0), rows - 1.0)
        for y in (start, stop - 1)
        for x in (0, cols - 1)
    ]
    return (
        math.floor(min(corners)) - 2 - BAND_MARGIN,
        math.floor(max(corners)) + 4 + BAND_MARGIN,
    )


@kernel
def two_pass_rows(
    planes: Any,
    count: int,
    row0: int,
    h: int,
    w: int,
    m: Any,
    taps: Any,
    poly: Any,
    band: Any,
    first: int,
) -> None:
    """Pass 1 of the two-pass quintic: the image's rows ``row0 .. row0 + count - 1``
    (``planes[:, :count]``, edge-padded as :func:`planes_rows` writes them; rows outside
    the image stand for its edge rows) resampled along the row into ``band[:, row0 -
    first + n]`` (channels, band rows, output columns).

    With ``r = m00 y + m01 x + m02`` and ``c = m10 y + m11 x + m12``, the column read
    along input row ``i`` is ``c = P i + Q x + S`` (``y`` eliminated); each row is
    prefiltered by the FIR ``taps`` (see :func:`prefilter_taps`) and sampled there by
    the quintic B-spline (``poly``: :func:`spline_polynomials`; both in ``band``'s
    dtype), the positions clamped to ``[0, w - 1]``.
    """
    channels = planes.shape[0]
    width = band.shape[2]
    dtype = band.dtype
    p_ = m[1, 0] / m[0, 0]
    q_ = m[1, 1] - m[1, 0] * m[0, 1] / m[0, 0]
    s_ = m[1, 2] - m[1, 0] * m[0, 2] / m[0, 0]
    row = np.empty(w + 2 * (PREFILTER_REACH + 3), dtype)
    pre = np.empty(w + 6, dtype)
    positions = np.empty(width)
    taps_at = np.empty(width, np.intp)
    ends = np.empty(width + 1, np.intp)
    weights = np.empty((6, width), dtype)
    for n in range(count):
        i = min(max(row0 + n, 0), h - 1)  # (the edge row's positions beyond the edge)
        for x in range(width):
            positions[x] = p_ * i + q_ * x + s_
        _spline_weights(positions, w - 1.0, taps_at, poly, weights)
        for x in range(width):
            taps_at[x] += 1 - x  # pre's sample of column j - 2, less x
        runs = _runs(taps_at, ends)
        for ch in range(channels):
            _prefilter_row(planes[ch, n], taps, row, pre)
            dst = band[ch, row0 - first + n]
            for k in range(runs):
                _row_run(pre, weights, dst, ends[k], ends[k + 1], taps_at[ends[k]])


@kernel
def two_pass_columns(
    band: Any,
    first: int,
    h: int,
    w: int,
    m: Any,
    poly: Any,
    constant: bool,
    fill: Any,
    edge: float,
    out: Any,
    start: int,
    stop: int,
) -> None:
    """Pass 2 of the two-pass quintic: ``band`` (from :func:`two_pass_rows`, its row
    ``k`` the image's row ``first + k``; overwritten) prefiltered down its columns
    (recursive, both poles) and resampled at the rows ``r = m00 y + m01 x + m02``
    (clamped to ``[0, h - 1]``) into the rows ``start:stop`` of ``out`` (channels, rows,
    cols); ``constant``: outside ``[-edge, h - 1 + edge] x [-edge, w - 1 + edge]`` the
    pixel is ``fill[0]``."""
    channels = band.shape[0]
    width = out.shape[2]
    positions = np.empty(width)
    columns = np.empty(width)
    inside = np.ones(width, np.bool_)
    taps_at = np.empty(width, np.intp)
    ends = np.empty(width + 1, np.intp)
    weights = np.empty((6, width), band.dtype)
    for ch in range(channels):
        _columns_prefilter(band[ch])
    for y in range(start, stop):
        _positions(m, float(y), h, w, np.bool_(False), constant, edge, positions, columns, inside)
        _spline_weights(positions, h - 1.0, taps_at, poly, weights)
        for x in range(width):
            taps_at[x] -= 2 + first  # the band's row of the top tap
        runs = _runs(taps_at, ends)
        for ch in range(channels):
            dst = out[ch, y]
            for k in range(runs):
                _column_run(band[ch], taps_at[ends[k]], weights, dst, ends[k], ends[k + 1])
        if constant:
            for x in range(width):
                if not inside[x]:
                    for ch in range(channels):
                        out[ch, y, x] = fill[0]
