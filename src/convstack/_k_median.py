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

__all__ = ["histogram_rows", "network_rows", "sorted_rows"]

#: Outputs one pass of the selection network advances together. Smaller chunks that
#: keep every wire in the L1 cache measured slower (k=9 float32 512x512: 11.7 ms with
#: 96, 8.5 ms with 256; k=17 uint8: 62 ms with 96, 20 ms with 256): long loops win.
_CHUNK = 256


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
    loop along ``_CHUNK`` outputs of the row, which the compiler vectorises.
    """
    width = out.shape[1]
    full = padded.shape[1]
    ranks = np.empty((k, full), dtype=padded.dtype)
    wires = np.empty((k * k, _CHUNK), dtype=padded.dtype)
    target = steps[steps.shape[0] - 1, 0]
    n_steps = steps.shape[0] - 1
    for i in range(start, stop):
        for r in range(k):
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
