"""Compiled loop of ``box_blur``: running sums down the columns and along the rows.

The window sums cost the same for every window size: down the columns a running sum
(add the row entering the window, subtract the one leaving), along each row a running
sum of those column sums. Borders come from index tables (no padded copy of the image).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._jit import kernel

__all__ = ["box_rows"]

#: Windows up to this width are summed along the rows by shifted adds (one vectorised
#: pass each), wider ones by a running sum (a chain of dependent adds): uint8 2048x2048,
#: CPU ms: shifted adds k=3 2.8 (the running sum 3.7), k=7 3.3, k=11 4.6; the running
#: sum k=9 4.8, k=13 4.4, k=31 4.4 (OpenCV 0.8-3.0, same runs).
DIRECT_MAX = 9

#: How ``box_rows`` turns a window sum ``s`` into an output sample.
FLOAT, RECIPROCAL_U8, ROUND_F32, ROUND_F64 = 0, 1, 2, 3


@kernel
def _add_row(sums: Any, values: Any, sign: int) -> None:
    if sign > 0:
        for j in range(values.shape[0]):
            sums[j] += values[j]
    else:
        for j in range(values.shape[0]):
            sums[j] -= values[j]


@kernel
def _move_row(sums: Any, entering: Any, leaving: Any) -> None:
    # (not ``entering - leaving`` first: for float32 samples that difference is rounded
    # in float32, and a window leaving 1e4 for 1e-2 came out 1.6 % off)
    for j in range(entering.shape[0]):
        sums[j] = (sums[j] + entering[j]) - leaving[j]


@kernel
def box_rows(
    src: Any,
    out: Any,
    start: int,
    stop: int,
    row_index: Any,
    col_index: Any,
    cb: int,
    kr: int,
    kc: int,
    cn: int,
    sums: Any,
    row: Any,
    kind: int,
    scale: float,
    mult: int,
    delta: int,
) -> None:
    """Output rows ``start:stop`` of the ``kr x kc`` box mean of ``src``.

    ``src`` is (rows, cols * cn); ``row_index[i]`` is the source row of padded row
    ``i`` (-1: zeros); padded columns ``cb ..`` are the source's, the others copy the
    column ``col_index[p]`` (-1: zeros). ``sums`` (one per padded column and channel:
    the sums of ``kr`` rows, kept by a running sum down the strip) and ``row`` (the
    window sums of one output row) have the accumulator dtype: exact integers, or
    float64. ``kind`` picks the division (``FLOAT``: ``s * scale``; ``RECIPROCAL_U8``:
    OpenCV's ``(s + delta) * mult >> 16``; ``ROUND_F32`` / ``ROUND_F64``: ``s * scale`` in
    float32 / float64, rounded to nearest, ties to even).
    """
    width = out.shape[1]
    inner = sums[cb * cn : cb * cn + src.shape[1]]
    for j in range(sums.shape[0]):
        sums[j] = 0
    for t in range(kr):
        if row_index[start + t] >= 0:
            _add_row(inner, src[row_index[start + t]], 1)
    n_cols = src.shape[1] // cn
    for i in range(start, stop):
        if i > start:
            # padded row i - 1 leaves the window, row i + kr - 1 enters it
            leaving, entering = row_index[i - 1], row_index[i + kr - 1]
            if leaving != entering:
                if leaving >= 0 and entering >= 0:
                    _move_row(inner, src[entering], src[leaving])
                elif leaving >= 0:
                    _add_row(inner, src[leaving], -1)
                else:
                    _add_row(inner, src[entering], 1)
        # the border columns: a column sum commutes with picking columns
        for p in range(col_index.shape[0] - n_cols):
            if p >= cb:
                p += n_cols
            c = col_index[p]
            for ch in range(cn):
                sums[p * cn + ch] = sums[(cb + c) * cn + ch] if c >= 0 else 0
        if kc <= DIRECT_MAX:
            # short windows: kc - 1 shifted adds, each a vectorised pass (a running sum is
            # a chain of dependent adds, one sample at a time)
            for j in range(width):
                row[j] = sums[j]
            for p in range(1, kc):
                shifted = sums[p * cn :]
                for j in range(width):
                    row[j] += shifted[j]
        else:
            # the differences (column entering - column leaving, vectorised), then their
            # running sum, one chain per channel
            for ch in range(cn):
                total = sums[ch] * 0
                for p in range(kc):
                    total += sums[p * cn + ch]
                row[ch] = total
            entering = sums[kc * cn :]
            rest = row[cn:]
            for j in range(width - cn):
                rest[j] = entering[j] - sums[j]
            for ch in range(cn):  # the running sums, in registers
                total = row[ch]
                for j in range(ch + cn, width, cn):
                    total += row[j]
                    row[j] = total
        dst = out[i]
        if kind == FLOAT:
            for j in range(width):
                dst[j] = row[j] * scale
        elif kind == RECIPROCAL_U8:
            for j in range(width):
                dst[j] = ((int(row[j]) + delta) * mult) >> 16
        elif kind == ROUND_F32:
            # x + 1.5 * 2**23 - 1.5 * 2**23 rounds x (0 <= x < 2**22) to an integer, ties to
            # even, as np.rint does; and vectorises, which the call to rint does not
            s32 = np.float32(scale)
            magic32 = np.float32(12582912.0)
            for j in range(width):
                dst[j] = (np.float32(row[j]) * s32 + magic32) - magic32
        else:
            magic64 = 6755399441055744.0  # 1.5 * 2**52
            for j in range(width):
                dst[j] = (row[j] * scale + magic64) - magic64
