"""Compiled loops of ``median_blur``: min/max networks, column histograms, sorted windows.

Every kernel fills the output rows ``start:stop`` of ``out`` from ``padded`` (the image
padded by ``k // 2`` on every side, rows by flat ``cols * channels`` samples), so the
caller can split the rows between threads. Float images reach these loops without NaN
(the caller replaces them and marks their windows afterwards).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._jit import kernel

__all__ = [
    "histogram_rows",
    "network3_rows",
    "network5_rows",
    "network_rows",
    "sorted_rows",
]

#: Outputs one pass of the selection network advances together. Long vector loops
#: beat smaller chunks that would keep every wire in the L1 cache.
_CHUNK = 256


@kernel
def _select3(ranks: Any, out_row: Any, col_order: Any, channels: int) -> None:
    """Median of every 3x3 window from its sorted columns, the pruned network unrolled.

    Generated from ``merge_network(3)`` (``median.py``): wire ``c * 3 + r`` is rank ``r``
    of column ``c``; ``lo``/``hi`` of a comparator are computed only where used. All
    wires live in registers, and the loop along the row is vectorised.
    """
    width = out_row.shape[0]
    s0 = ranks[col_order[0], 0 * channels :]
    s1 = ranks[col_order[1], 0 * channels :]
    s2 = ranks[col_order[2], 0 * channels :]
    s3 = ranks[col_order[0], 1 * channels :]
    s4 = ranks[col_order[1], 1 * channels :]
    s5 = ranks[col_order[2], 1 * channels :]
    s6 = ranks[col_order[0], 2 * channels :]
    s7 = ranks[col_order[1], 2 * channels :]
    s8 = ranks[col_order[2], 2 * channels :]
    for j in range(width):
        v0 = s0[j]
        v1 = s1[j]
        v2 = s2[j]
        v3 = s3[j]
        v4 = s4[j]
        v5 = s5[j]
        v6 = s6[j]
        v7 = s7[j]
        v8 = s8[j]
        v0, v3 = (v0 if v0 < v3 else v3), (v3 if v0 < v3 else v0)
        v6 = v6 if v0 < v6 else v0
        v6 = v6 if v3 < v6 else v3
        v1, v4 = (v1 if v1 < v4 else v4), (v4 if v1 < v4 else v1)
        v7 = v7 if v1 < v7 else v1
        v4 = v4 if v4 < v7 else v7
        v2 = v2 if v2 < v5 else v5
        v2 = v2 if v2 < v8 else v8
        v6, v4 = (v6 if v6 < v4 else v4), (v4 if v6 < v4 else v6)
        v2 = v2 if v6 < v2 else v6
        v4 = v4 if v4 < v2 else v2
        out_row[j] = v4


@kernel
def _select5(ranks: Any, out_row: Any, col_order: Any, channels: int) -> None:
    """Median of every 5x5 window from its sorted columns, the pruned network unrolled.

    Generated from ``merge_network(5)`` (``median.py``): wire ``c * 5 + r`` is rank ``r``
    of column ``c``; ``lo``/``hi`` of a comparator are computed only where used. All
    wires live in registers, and the loop along the row is vectorised.
    """
    width = out_row.shape[0]
    s0 = ranks[col_order[0], 0 * channels :]
    s1 = ranks[col_order[1], 0 * channels :]
    s2 = ranks[col_order[2], 0 * channels :]
    s3 = ranks[col_order[3], 0 * channels :]
    s4 = ranks[col_order[4], 0 * channels :]
    s5 = ranks[col_order[0], 1 * channels :]
    s6 = ranks[col_order[1], 1 * channels :]
    s7 = ranks[col_order[2], 1 * channels :]
    s8 = ranks[col_order[3], 1 * channels :]
    s9 = ranks[col_order[4], 1 * channels :]
    s10 = ranks[col_order[0], 2 * channels :]
    s11 = ranks[col_order[1], 2 * channels :]
    s12 = ranks[col_order[2], 2 * channels :]
    s13 = ranks[col_order[3], 2 * channels :]
    s14 = ranks[col_order[4], 2 * channels :]
    s15 = ranks[col_order[0], 3 * channels :]
    s16 = ranks[col_order[1], 3 * channels :]
    s17 = ranks[col_order[2], 3 * channels :]
    s18 = ranks[col_order[3], 3 * channels :]
    s19 = ranks[col_order[4], 3 * channels :]
    s20 = ranks[col_order[0], 4 * channels :]
    s21 = ranks[col_order[1], 4 * channels :]
    s22 = ranks[col_order[2], 4 * channels :]
    s23 = ranks[col_order[3], 4 * channels :]
    s24 = ranks[col_order[4], 4 * channels :]
    for j in range(width):
        v0 = s0[j]
        v1 = s1[j]
        v2 = s2[j]
        v3 = s3[j]
        v4 = s4[j]
        v5 = s5[j]
        v6 = s6[j]
        v7 = s7[j]
        v8 = s8[j]
        v9 = s9[j]
        v10 = s10[j]
        v11 = s11[j]
        v12 = s12[j]
        v13 = s13[j]
        v14 = s14[j]
        v15 = s15[j]
        v16 = s16[j]
        v17 = s17[j]
        v18 = s18[j]
        v19 = s19[j]
        v20 = s20[j]
        v21 = s21[j]
        v22 = s22[j]
        v23 = s23[j]
        v24 = s24[j]
        v0, v5 = (v0 if v0 < v5 else v5), (v5 if v0 < v5 else v0)
        v10, v15 = (v10 if v10 < v15 else v15), (v15 if v10 < v15 else v10)
        v0, v10 = (v0 if v0 < v10 else v10), (v10 if v0 < v10 else v0)
        v5, v15 = (v5 if v5 < v15 else v15), (v15 if v5 < v15 else v5)
        v10 = v10 if v5 < v10 else v5
        v20 = v20 if v0 < v20 else v0
        v20 = v20 if v10 < v20 else v10
        v15, v20 = (v15 if v15 < v20 else v20), (v20 if v15 < v20 else v15)
        v1, v6 = (v1 if v1 < v6 else v6), (v6 if v1 < v6 else v1)
        v11, v16 = (v11 if v11 < v16 else v16), (v16 if v11 < v16 else v11)
        v1, v11 = (v1 if v1 < v11 else v11), (v11 if v1 < v11 else v1)
        v6, v16 = (v6 if v6 < v16 else v16), (v16 if v6 < v16 else v6)
        v6, v11 = (v6 if v6 < v11 else v11), (v11 if v6 < v11 else v6)
        v21 = v21 if v1 < v21 else v1
        v11, v21 = (v11 if v11 < v21 else v21), (v21 if v11 < v21 else v11)
        v11 = v11 if v6 < v11 else v6
        v16, v21 = (v16 if v16 < v21 else v21), (v21 if v16 < v21 else v16)
        v2, v7 = (v2 if v2 < v7 else v7), (v7 if v2 < v7 else v2)
        v12, v17 = (v12 if v12 < v17 else v17), (v17 if v12 < v17 else v12)
        v2, v12 = (v2 if v2 < v12 else v12), (v12 if v2 < v12 else v2)
        v7, v17 = (v7 if v7 < v17 else v17), (v17 if v7 < v17 else v7)
        v7, v12 = (v7 if v7 < v12 else v12), (v12 if v7 < v12 else v7)
        v22 = v22 if v2 < v22 else v2
        v12, v22 = (v12 if v12 < v22 else v22), (v22 if v12 < v22 else v12)
        v7, v12 = (v7 if v7 < v12 else v12), (v12 if v7 < v12 else v7)
        v17 = v17 if v17 < v22 else v22
        v3, v8 = (v3 if v3 < v8 else v8), (v8 if v3 < v8 else v3)
        v13, v18 = (v13 if v13 < v18 else v18), (v18 if v13 < v18 else v13)
        v3, v13 = (v3 if v3 < v13 else v13), (v13 if v3 < v13 else v3)
        v8 = v8 if v8 < v18 else v18
        v8, v13 = (v8 if v8 < v13 else v13), (v13 if v8 < v13 else v8)
        v3, v23 = (v3 if v3 < v23 else v23), (v23 if v3 < v23 else v3)
        v13 = v13 if v13 < v23 else v23
        v8, v13 = (v8 if v8 < v13 else v13), (v13 if v8 < v13 else v8)
        v4, v9 = (v4 if v4 < v9 else v9), (v9 if v4 < v9 else v4)
        v14, v19 = (v14 if v14 < v19 else v19), (v19 if v14 < v19 else v14)
        v4, v14 = (v4 if v4 < v14 else v14), (v14 if v4 < v14 else v4)
        v9 = v9 if v9 < v19 else v19
        v9, v14 = (v9 if v9 < v14 else v14), (v14 if v9 < v14 else v9)
        v4, v24 = (v4 if v4 < v24 else v24), (v24 if v4 < v24 else v4)
        v14 = v14 if v14 < v24 else v24
        v9 = v9 if v9 < v14 else v14
        v21, v7 = (v21 if v21 < v7 else v7), (v7 if v21 < v7 else v21)
        v13, v4 = (v13 if v13 < v4 else v4), (v4 if v13 < v4 else v13)
        v15, v11 = (v15 if v15 < v11 else v11), (v11 if v15 < v11 else v15)
        v20, v16 = (v20 if v20 < v16 else v16), (v16 if v20 < v16 else v20)
        v20, v11 = (v20 if v20 < v11 else v11), (v11 if v20 < v11 else v20)
        v7 = v7 if v7 < v17 else v17
        v7, v12 = (v7 if v7 < v12 else v12), (v12 if v7 < v12 else v7)
        v8, v13 = (v8 if v8 < v13 else v13), (v13 if v8 < v13 else v8)
        v15, v21 = (v15 if v15 < v21 else v21), (v21 if v15 < v21 else v15)
        v11, v21 = (v11 if v11 < v21 else v21), (v21 if v11 < v21 else v11)
        v20, v7 = (v20 if v20 < v7 else v7), (v7 if v20 < v7 else v20)
        v16, v7 = (v16 if v16 < v7 else v7), (v7 if v16 < v7 else v16)
        v20, v11 = (v20 if v20 < v11 else v11), (v11 if v20 < v11 else v20)
        v16, v21 = (v16 if v16 < v21 else v21), (v21 if v16 < v21 else v16)
        v7, v12 = (v7 if v7 < v12 else v12), (v12 if v7 < v12 else v7)
        v4, v9 = (v4 if v4 < v9 else v9), (v9 if v4 < v9 else v4)
        v3 = v3 if v15 < v3 else v15
        v21 = v21 if v21 < v9 else v9
        v3 = v3 if v21 < v3 else v21
        v13 = v13 if v11 < v13 else v11
        v12 = v12 if v12 < v13 else v13
        v12 = v12 if v12 < v3 else v3
        v8 = v8 if v20 < v8 else v20
        v7 = v7 if v7 < v8 else v8
        v16 = v16 if v16 < v4 else v4
        v7 = v7 if v16 < v7 else v16
        v12 = v12 if v7 < v12 else v7
        out_row[j] = v12


@kernel
def _sort_columns(padded: Any, ranks: Any, i: int, col_ops: Any) -> None:
    """``ranks[r]`` = padded row ``i + r``, then every column of ``ranks`` sorted."""
    full = padded.shape[1]
    for r in range(ranks.shape[0]):
        src = padded[i + r]
        dst = ranks[r]
        for j in range(full):
            dst[j] = src[j]
    for s in range(col_ops.shape[0]):
        a = ranks[col_ops[s, 0]]
        b = ranks[col_ops[s, 1]]
        for j in range(full):
            x = a[j]
            y = b[j]
            a[j] = x if x < y else y
            b[j] = y if x < y else x


@kernel
def network3_rows(
    padded: Any, out: Any, start: int, stop: int, channels: int, col_ops: Any, col_order: Any
) -> None:
    """``network_rows`` for 3x3 windows, the selection network unrolled (``_select3``).

    Its wires stay in registers; a kernel of its own, so that other sizes do not compile
    it (the unrolled networks take seconds to compile on a cold cache).
    """
    ranks = np.empty((3, padded.shape[1]), dtype=padded.dtype)
    for i in range(start, stop):
        _sort_columns(padded, ranks, i, col_ops)
        _select3(ranks, out[i], col_order, channels)


@kernel
def network5_rows(
    padded: Any, out: Any, start: int, stop: int, channels: int, col_ops: Any, col_order: Any
) -> None:
    """``network_rows`` for 5x5 windows, the selection network unrolled (``_select5``):
    about 3x faster than the wires in an L1 scratch."""
    ranks = np.empty((5, padded.shape[1]), dtype=padded.dtype)
    for i in range(start, stop):
        _sort_columns(padded, ranks, i, col_ops)
        _select5(ranks, out[i], col_order, channels)


@kernel
def network_rows(
    padded: Any,
    out: Any,
    start: int,
    stop: int,
    k: int,
    channels: int,
    col_ops: Any,
    col_order: Any,
    steps: Any,
) -> None:
    """Median by min/max networks: sort every column of ``k`` samples, then select.

    ``col_ops`` (pairs ``a, b``: wire ``a`` gets the min, ``b`` the max) sort the ``k``
    rows of a padded row band column by column; ``col_order[r]`` is the wire that holds
    rank ``r``. ``steps`` (``a, b, need_min, need_max``) then select the median of the
    ``k x k`` window from its ``k`` sorted columns; it ends on wire ``steps[-1]``'s
    target, passed as the last row of ``steps`` (``target, -1, 0, 0``). Every step is a
    loop along ``_CHUNK`` outputs of the row, which the compiler vectorises. Sizes 3 and
    5 take ``network3_rows`` / ``network5_rows``, the same networks unrolled.
    """
    width = out.shape[1]
    ranks = np.empty((k, padded.shape[1]), dtype=padded.dtype)
    wires = np.empty((k * k, _CHUNK), dtype=padded.dtype)
    target = steps[steps.shape[0] - 1, 0]
    n_steps = steps.shape[0] - 1
    for i in range(start, stop):
        _sort_columns(padded, ranks, i, col_ops)
        for x0 in range(0, width, _CHUNK):
            n = min(_CHUNK, width - x0)
            # (indices computed inside a loop defeat the vectoriser: slice first)
            for c in range(k):
                for r in range(k):
                    src = ranks[col_order[r], x0 + c * channels :]
                    dst = wires[c * k + r]
                    for j in range(n):
                        dst[j] = src[j]
            for s in range(n_steps):
                a = wires[steps[s, 0]]
                b = wires[steps[s, 1]]
                if steps[s, 2] and steps[s, 3]:
                    for j in range(n):
                        x = a[j]
                        y = b[j]
                        a[j] = x if x < y else y
                        b[j] = y if x < y else x
                elif steps[s, 2]:
                    for j in range(n):
                        x = a[j]
                        y = b[j]
                        a[j] = x if x < y else y
                else:
                    for j in range(n):
                        x = a[j]
                        y = b[j]
                        b[j] = y if x < y else x
            result = wires[target]
            row = out[i, x0:]
            for j in range(n):
                row[j] = result[j]


@kernel
def histogram_rows(padded: Any, out: Any, start: int, stop: int, k: int, channels: int) -> None:
    """uint8 median by column histograms (Perreault and Hebert's constant-time median).

    Each padded column keeps a 256-bin histogram of its ``k`` samples in the current
    row band; moving down a row adds one sample and removes one per column. Along the
    row the window's histogram gains the column entering and loses the one leaving
    (256 adds each, whatever ``k``), and the median is found through 16 coarse bins
    of 16 levels each.
    """
    width = out.shape[1]
    cols = width // channels
    full_cols = padded.shape[1] // channels
    half = (k * k) // 2
    hist = np.zeros((channels, full_cols, 256), dtype=np.int32)
    coarse = np.zeros((channels, full_cols, 16), dtype=np.int32)
    for r in range(k):
        for x in range(full_cols):
            for ch in range(channels):
                v = padded[start + r, x * channels + ch]
                hist[ch, x, v] += 1
                coarse[ch, x, v >> 4] += 1
    window = np.zeros(256, dtype=np.int32)
    window_coarse = np.zeros(16, dtype=np.int32)
    for i in range(start, stop):
        if i > start:
            for x in range(full_cols):
                for ch in range(channels):
                    v = padded[i - 1, x * channels + ch]
                    hist[ch, x, v] -= 1
                    coarse[ch, x, v >> 4] -= 1
                    v = padded[i + k - 1, x * channels + ch]
                    hist[ch, x, v] += 1
                    coarse[ch, x, v >> 4] += 1
        for ch in range(channels):
            window[:] = 0
            window_coarse[:] = 0
            for x in range(k):
                column = hist[ch, x]
                for b in range(256):
                    window[b] += column[b]
                column_coarse = coarse[ch, x]
                for b in range(16):
                    window_coarse[b] += column_coarse[b]
            for x in range(cols):
                if x > 0:
                    entering = hist[ch, x + k - 1]
                    leaving = hist[ch, x - 1]
                    for b in range(256):
                        window[b] += entering[b] - leaving[b]
                    entering_coarse = coarse[ch, x + k - 1]
                    leaving_coarse = coarse[ch, x - 1]
                    for b in range(16):
                        window_coarse[b] += entering_coarse[b] - leaving_coarse[b]
                below = 0
                g = 0
                while below + window_coarse[g] <= half:
                    below += window_coarse[g]
                    g += 1
                v = g * 16
                while below + window[v] <= half:
                    below += window[v]
                    v += 1
                out[i, x * channels + ch] = v


@kernel
def _insertion_sort(values: Any) -> None:
    for p in range(1, values.shape[0]):
        v = values[p]
        q = p - 1
        while q >= 0 and values[q] > v:
            values[q + 1] = values[q]
            q -= 1
        values[q + 1] = v


@kernel
def sorted_rows(padded: Any, out: Any, start: int, stop: int, k: int, channels: int) -> None:
    """Median from a sorted copy of the window, slid along the row.

    Moving one column right, the ``k`` samples leaving and the ``k`` entering are
    sorted, and one merge pass over the sorted window drops the first and inserts the
    second: about ``k * k`` steps per output, with no search. Samples are compared by
    value only (no NaN reaches this loop), so a leaving sample is found by equality.
    """
    width = out.shape[1]
    cols = width // channels
    n = k * k
    mid = n // 2
    window = np.empty(n, dtype=padded.dtype)
    merged = np.empty(n, dtype=padded.dtype)
    leaving = np.empty(k, dtype=padded.dtype)
    entering = np.empty(k, dtype=padded.dtype)
    for i in range(start, stop):
        for ch in range(channels):
            for c in range(k):
                for r in range(k):
                    window[c * k + r] = padded[i + r, c * channels + ch]
            window.sort()
            out[i, ch] = window[mid]
            for x in range(1, cols):
                for r in range(k):
                    leaving[r] = padded[i + r, (x - 1) * channels + ch]
                    entering[r] = padded[i + r, (x + k - 1) * channels + ch]
                _insertion_sort(leaving)
                _insertion_sort(entering)
                q = 0  # next sample of ``leaving`` to drop
                t = 0  # next sample of ``entering`` to insert
                m = 0
                for p in range(n):
                    s = window[p]
                    if q < k and s == leaving[q]:
                        q += 1
                        continue
                    while t < k and entering[t] < s:
                        merged[m] = entering[t]
                        m += 1
                        t += 1
                    merged[m] = s
                    m += 1
                while t < k:
                    merged[m] = entering[t]
                    m += 1
                    t += 1
                window, merged = merged, window
                out[i, x * channels + ch] = window[mid]
