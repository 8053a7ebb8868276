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
reaches only the output pixels whose taps include it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._jit import kernel

__all__ = [
    "CUBIC_A",
    "SPLINE_PAD",
    "cubic_rows",
    "linear_rows",
    "nearest_rows",
    "planes_rows",
    "quintic_rows",
    "spline_columns",
    "spline_gain",
    "spline_rows",
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
        a = 0
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
