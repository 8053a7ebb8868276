"""1-D resampling taps, and the separable warp of slightly rotated frames as matrix products.

A 1-D resampling pass is a band matrix: output sample ``i`` is ``sum_k w_k[i] *
x[first[i] + k]`` (2 taps linear, 4 Keys cubic). :func:`banded_warp` applies the two
passes of :func:`convstack.warp.warp`'s separable path (rows, then columns) as
small dense matrix products, many to a call of ``np.matmul``: a slight rotation
splits each pass into bands with their own weights (rows in the first pass,
columns in the second), which sliced NumPy passes pay for in calls or gathers,
while a batch of products costs the same whatever the number of bands (on the
PCB set, 3 MP colour frames rotated by 0.01 degrees: 0.07 s into a planar frame,
0.09 s into an interleaved one, instead of 0.13 s).
The products stay small (a few tens of rows and columns) so that OpenBLAS runs
each on the calling thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["PAD", "banded_warp", "cubic_weights", "taps"]

#: Keys' cubic-convolution parameter (Keys 1981); reproduces quadratics exactly.
CUBIC_A = -0.5

#: Edge padding (before, after) of an axis for the taps of :func:`taps`, by order.
PAD = {1: (0, 1), 3: (1, 2)}

#: Rows of a band of the first pass and of a block of the second (at most).
_BLOCK_ROWS = 32
#: Output columns of a block of the first pass.
_BLOCK_COLS = 32
#: Columns of a band of the second pass (at most).
_BAND_COLS = 64
#: Output rows computed per strip (bounds the temporaries to a few megabytes).
_STRIP_ROWS = 256


def cubic_weights(t: NDArray[Any]) -> list[NDArray[Any]]:
    """Keys' cubic-convolution weights of the taps at offsets -1, 0, 1, 2 for fraction ``t``."""
    a = CUBIC_A
    t2 = t * t
    t3 = t2 * t
    return [
        a * (t3 - 2 * t2 + t),
        (a + 2) * t3 - (a + 3) * t2 + 1,
        -(a + 2) * t3 + (2 * a + 3) * t2 - a * t,
        a * (t2 - t3),
    ]


def taps(
    pos: NDArray[np.float64], n: int, order: int, work: np.dtype[Any]
) -> tuple[NDArray[np.intp], list[NDArray[Any]]]:
    """First tap and the weights (2 linear, 4 Keys) of 1-D positions clamped to ``[0, n - 1]``.

    The taps of ``pos`` are ``first + k`` in an axis padded by ``PAD[order]``, so no
    index needs clamping.
    """
    pos = np.clip(pos, 0.0, n - 1)
    first = pos.astype(np.intp)  # floor: pos >= 0
    frac = (pos - first).astype(work)
    if order == 1:
        return first, [1 - frac, frac]
    return first, cubic_weights(frac)


def _band(slope: float, tolerance: float, widest: int) -> int:
    """Samples over which ``slope * i`` varies by at most ``2 * tolerance`` (<= ``widest``)."""
    if slope == 0.0:
        return widest
    return max(1, min(widest, int(2.0 * tolerance / abs(slope))))


def _band_matrices(
    pos: NDArray[np.float64], n: int, order: int, work: np.dtype[Any], width: int
) -> tuple[NDArray[np.intp], NDArray[Any]]:
    """The band matrices of positions ``pos`` (groups, blocks * ``width``), block by block.

    Returns ``start`` (blocks,) and ``matrix`` (blocks, groups, span, width): output
    ``i`` of block ``j`` in group ``g`` is ``sum_s matrix[j, g, s, i] * x[start[j] + s]``
    (padded indices, see :func:`taps`); ``span`` is the same for every block.
    """
    groups, total = pos.shape
    blocks = total // width
    first, weights = taps(pos.ravel(), n, order, work)
    first = first.reshape(groups, blocks, width)
    start = first.min(axis=(0, 2))
    offset = first - start[None, :, None]
    span = int(offset.max()) + len(weights)
    matrix = np.zeros((blocks, groups, span, width), work)
    # flat index of (block, group, offset + k, output)
    block = np.arange(blocks)[None, :, None] * groups + np.arange(groups)[:, None, None]
    index = (block * span + offset) * width + np.arange(width)
    flat = matrix.reshape(-1)
    for k, weight in enumerate(weights):
        flat[(index + k * width).ravel()] = weight
    return start, matrix


def _planar_block(
    array: NDArray[Any], rows: range, cols: range, before: int, work: np.dtype[Any]
) -> NDArray[Any]:
    """Padded rows ``rows`` and columns ``cols`` of ``array`` (rows, cols, channels),
    edges repeated, as a (channels, rows, cols) array of ``work``."""
    h, w, channels = array.shape
    block = np.empty((channels, len(rows), len(cols)), work)
    source_rows = np.clip(np.arange(rows.start, rows.stop) - before, 0, h - 1)
    lo, hi = int(source_rows[0]), int(source_rows[-1]) + 1
    # a view where no edge row repeats, else a gathered copy
    picked = array[lo:hi] if hi - lo == len(rows) else array[source_rows]
    # columns: repeated first column, the inside, repeated last column
    inside_lo = min(max(cols.start, before), cols.stop)
    inside_hi = max(min(cols.stop, before + w), inside_lo)
    left, right = inside_lo - cols.start, inside_hi - cols.start
    block[:, :, left:right] = np.moveaxis(picked[:, inside_lo - before : inside_hi - before], 2, 0)
    if left > 0:
        block[:, :, :left] = np.moveaxis(picked[:, :1], 2, 0)
    if right < len(cols):
        block[:, :, right:] = np.moveaxis(picked[:, -1:], 2, 0)
    return block


def banded_warp(
    array: NDArray[Any],
    m: NDArray[np.float64],
    out: NDArray[Any],
    order: int,
    tolerance: float,
) -> None:
    """Resample ``array`` (rows, cols, channels) through the affine ``m`` into ``out``
    (channels, out_rows, out_cols), 'nearest' edges, in two 1-D passes.

    Output ``(r, c)`` samples the input at ``(A r + B c + C, D r + E c + F)``. Pass 1
    resamples input row ``y`` along its columns at ``s c + (D / A) y + o``, in bands
    of rows that share one ``y``; pass 2 resamples those rows at ``A r + B c + C``, in
    bands of columns that share one ``c`` (each band moves samples by at most
    ``tolerance`` pixels; without rotation there is one band of each). The same
    sample positions as the sliced path of :func:`convstack.warp.warp`, up to where
    the bands begin and end.
    """
    h, w, channels = array.shape
    _, out_rows, out_cols = out.shape
    work = out.dtype
    a, b, c0 = m[0]
    d, e, f0 = m[1, 0], m[1, 1], m[1, 2]
    slope_y = d / a
    scale_c = e - d * b / a
    offset_c = f0 - d * c0 / a
    before = PAD[order][0]
    band_rows = _band(slope_y, tolerance, _BLOCK_ROWS)
    band_cols = _band(b, tolerance, _BAND_COLS)
    tile = _BLOCK_COLS
    cols = np.arange(-(-out_cols // tile) * tile, dtype=np.float64)
    whole, rest = divmod(out_cols, band_cols)  # pass 2's full bands, and the last one's width
    centres = np.arange(whole + (rest > 0)) * band_cols + (band_cols - 1) / 2.0
    if rest:
        centres[-1] = whole * band_cols + (rest - 1) / 2.0
    wide = whole * band_cols
    for start in range(0, out_rows, _STRIP_ROWS):
        stop = min(out_rows, start + _STRIP_ROWS)
        blocks = -(-(stop - start) // _BLOCK_ROWS)
        rows = np.minimum(np.arange(start, start + blocks * _BLOCK_ROWS), stop - 1)
        # pass 2's taps: the input rows (padded) this strip reads
        starts2, matrix2 = _band_matrices(
            a * rows[None, :] + (b * centres + c0)[:, None], h, order, work, _BLOCK_ROWS
        )
        low = int(starts2.min())
        high = int(starts2.max()) + matrix2.shape[2]
        groups = -(-(high - low) // band_rows)
        # pass 1 over those rows, in bands of band_rows rows with one set of weights each
        mids = low + np.arange(groups) * band_rows + (band_rows - 1) / 2.0 - before
        if slope_y == 0.0:
            mids = mids[:1]  # the same weights for every band
        positions = (
            scale_c * cols[None, :] + (slope_y * np.clip(mids, 0.0, h - 1) + offset_c)[:, None]
        )
        starts1, matrix1 = _band_matrices(positions, w, order, work, tile)
        span = matrix1.shape[2]
        left = int(starts1.min())
        source = _planar_block(
            array,
            range(low, low + groups * band_rows),
            range(left, int(starts1.max()) + span),
            before,
            work,
        )
        inter = np.empty((channels, groups * band_rows, len(cols)), work)
        for j, begin in enumerate(starts1 - left):
            np.matmul(
                source[:, :, begin : begin + span].reshape(channels, groups, band_rows, span),
                matrix1[j],
                out=inter[:, :, j * tile : (j + 1) * tile].reshape(
                    channels, groups, band_rows, tile
                ),
            )
        # pass 2, a block of output rows at a time: the full bands in one batch, then the last
        span2 = matrix2.shape[2]
        for j, begin in enumerate(starts2 - low):
            r0 = start + j * _BLOCK_ROWS
            r1 = min(stop, r0 + _BLOCK_ROWS)
            weights = matrix2[j, :, :, : r1 - r0].transpose(0, 2, 1)  # (bands, rows, span)
            rows_in = inter[:, begin : begin + span2]
            if whole:
                np.matmul(
                    weights[:whole],
                    rows_in[:, :, :wide]
                    .reshape(channels, span2, whole, band_cols)
                    .transpose(0, 2, 1, 3),
                    out=out[:, r0:r1, :wide]
                    .reshape(channels, r1 - r0, whole, band_cols)
                    .transpose(0, 2, 1, 3),
                )
            if rest:
                np.matmul(weights[whole], rows_in[:, :, wide:out_cols], out=out[:, r0:r1, wide:])
