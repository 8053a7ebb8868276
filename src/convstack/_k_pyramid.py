"""Compiled loops of the Laplacian pyramid (:mod:`convstack.stack.fusion`).

Arrays are float32 planes (planes, rows, cols), C-contiguous. :func:`reduce_rows`
fills the rows ``start:stop`` of the next Gaussian level (the 5-tap binomial blur
``[1, 4, 6, 4, 1] / 16`` down the rows, then along them, kept at even positions);
:func:`expand_rows` fills the rows ``start:stop`` of a level upsampled to the finer
size, alone, added to or subtracted from a level of that size (a Laplacian band,
a collapse step). The caller splits the rows between threads. Each sample is
computed with the same float32 operations, in the same order, as the NumPy passes
they replace (one axis at a time, the intermediate row kept here in a buffer):
bit-identical results.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._jit import kernel

__all__ = ["expand_rows", "luma_squared_rows", "reduce_rows", "soft_merge_rows"]


@kernel
def _index(i: int, n: int, edge: bool) -> int:
    """Sample ``i`` (at most 2 outside ``[0, n)``) of an axis of ``n``: mirrored about
    the end samples (OpenCV's BORDER_REFLECT_101), or the end sample repeated with
    ``edge`` or for ``n <= 2``."""
    if i < 0:
        return 0 if edge or n <= 2 else -i
    if i >= n:
        return n - 1 if edge or n <= 2 else 2 * (n - 1) - i
    return i


@kernel
def _taps(x0: Any, x1: Any, x2: Any, x3: Any, x4: Any) -> Any:
    """``((x0 + x4) + 4 (x1 + x3) + 6 x2) / 16`` in float32, in that order."""
    total = x0 + x4
    total = total + (x1 + x3) * np.float32(4.0)
    total = total + x2 * np.float32(6.0)
    return total * np.float32(0.0625)


@kernel
def reduce_rows(src: Any, out: Any, start: int, stop: int, edge: bool) -> None:
    """Rows ``start:stop`` of ``out`` (planes, (rows + 1) // 2, (cols + 1) // 2): the
    5-tap binomial blur of ``src`` (planes, rows, cols) kept at even rows and columns,
    borders mirrored (repeated with ``edge``)."""
    planes, rows, cols = src.shape
    width = out.shape[2]
    line = np.empty(cols, np.float32)
    inner = max(0, min(width, (cols - 3) // 2 + 1))  # outputs 1..inner-1 read no border
    for p in range(planes):
        for i in range(start, stop):
            a = src[p, _index(2 * i - 2, rows, edge)]
            b = src[p, _index(2 * i - 1, rows, edge)]
            c = src[p, _index(2 * i, rows, edge)]
            d = src[p, _index(2 * i + 1, rows, edge)]
            e = src[p, _index(2 * i + 2, rows, edge)]
            for j in range(cols):
                line[j] = _taps(a[j], b[j], c[j], d[j], e[j])
            dst = out[p, i]
            for j in range(width):
                if 1 <= j < inner:
                    k = 2 * j
                    dst[j] = _taps(line[k - 2], line[k - 1], line[k], line[k + 1], line[k + 2])
                else:
                    dst[j] = _taps(
                        line[_index(2 * j - 2, cols, edge)],
                        line[_index(2 * j - 1, cols, edge)],
                        line[_index(2 * j, cols, edge)],
                        line[_index(2 * j + 1, cols, edge)],
                        line[_index(2 * j + 2, cols, edge)],
                    )


@kernel
def _upsample_line(x: Any, out: Any) -> None:
    """``out`` (``2 n - 1`` or ``2 n`` samples): ``x`` (``n``) upsampled 2x, borders
    mirrored: even samples ``((x[j-1] + x[j+1]) + 6 x[j]) / 8``, odd ones ``(x[j] +
    x[j+1]) / 2`` (every neighbour ``x[0]`` for a single sample)."""
    n = x.shape[0]
    size = out.shape[0]
    six = np.float32(6.0)
    eighth = np.float32(0.125)
    half = np.float32(0.5)
    for k in range(size):
        j = k >> 1
        if k & 1:
            right = x[j + 1] if j + 1 < n else x[max(n - 2, 0)]
            out[k] = (x[j] + right) * half
        else:
            left = x[j - 1] if j > 0 else x[min(1, n - 1)]
            right = x[j + 1] if j + 1 < n else x[max(n - 2, 0)]
            out[k] = ((left + right) + six * x[j]) * eighth


@kernel
def expand_rows(src: Any, base: Any, sign: int, out: Any, start: int, stop: int) -> None:
    """Rows ``start:stop`` of ``out`` (planes, rows, cols): ``src`` (planes, n, m)
    upsampled 2x along its columns, then its rows (``rows`` is ``2 n - 1`` or ``2 n``,
    ``cols`` is ``2 m - 1`` or ``2 m``), borders mirrored; ``sign`` 0: that alone,
    1: ``base + it``, -1: ``base - it`` (``base`` shaped like ``out``)."""
    planes, n, _ = src.shape
    width = out.shape[2]
    wide = np.empty((3, width), np.float32)  # upsampled source rows, by row % 3
    held = np.full(3, -1, np.intp)
    six = np.float32(6.0)
    eighth = np.float32(0.125)
    half = np.float32(0.5)
    for p in range(planes):
        held[:] = -1
        for r in range(start, stop):
            j = r >> 1
            # the source rows this output row reads, mirrored at the ends
            if r & 1:
                picks = (j, j + 1 if j + 1 < n else max(n - 2, 0), -1)
            else:
                picks = (
                    j - 1 if j > 0 else min(1, n - 1),
                    j,
                    j + 1 if j + 1 < n else max(n - 2, 0),
                )
            for s in picks:
                if s >= 0 and held[s % 3] != s:
                    _upsample_line(src[p, s], wide[s % 3])
                    held[s % 3] = s
            dst = out[p, r]
            if r & 1:
                a = wide[picks[0] % 3]
                b = wide[picks[1] % 3]
                for c in range(width):
                    value = (a[c] + b[c]) * half
                    if sign == 0:
                        dst[c] = value
                    elif sign > 0:
                        dst[c] = base[p, r, c] + value
                    else:
                        dst[c] = base[p, r, c] - value
            else:
                a = wide[picks[0] % 3]
                b = wide[picks[1] % 3]
                d = wide[picks[2] % 3]
                for c in range(width):
                    value = ((a[c] + d[c]) + six * b[c]) * eighth
                    if sign == 0:
                        dst[c] = value
                    elif sign > 0:
                        dst[c] = base[p, r, c] + value
                    else:
                        dst[c] = base[p, r, c] - value


@kernel
def luma_squared_rows(band: Any, luma: Any, out: Any, start: int, stop: int) -> None:
    """Rows ``start:stop`` of ``out`` (rows, cols): the square of the luma of the first
    three planes of ``band`` (planes, rows, cols), ``((b0 x0 + b1 x1) + b2 x2) ** 2``
    with ``luma = (b0, b1, b2)``, in float32."""
    width = out.shape[1]
    b0, b1, b2 = luma[0], luma[1], luma[2]
    for r in range(start, stop):
        x0, x1, x2 = band[0, r], band[1, r], band[2, r]
        dst = out[r]
        for c in range(width):
            gray = x0[c] * b0 + x1[c] * b1
            gray = gray + x2[c] * b2
            dst[c] = gray * gray


@kernel
def _power_row(values: Any, square: Any, whole: int) -> None:
    """``values **= whole`` (1 <= ``whole`` <= 64) in place, sample by sample, by
    repeated squaring: the products in the order of
    ``convstack.stack.fusion._power_in_place`` (``square``: scratch of the same size).
    One pass over the row a product, so each pass runs many samples at once."""
    n = values.size
    if whole & (whole - 1) == 0:
        while whole > 1:
            for c in range(n):
                values[c] = values[c] * values[c]
            whole >>= 1
        return
    for c in range(n):
        square[c] = values[c]
    whole -= 1
    while whole:
        if whole & 1:
            for c in range(n):
                values[c] = values[c] * square[c]
        whole >>= 1
        if whole:
            for c in range(n):
                square[c] = square[c] * square[c]


@kernel
def soft_merge_rows(
    energy: Any,
    band: Any,
    top: Any,
    weight: Any,
    total: Any,
    scale: Any,
    whole: int,
    start: int,
    stop: int,
    offset: int = 0,
) -> None:
    """Rows ``start:stop`` of one soft pyramid level taking in a frame, in place.

    The frame's weight base is ``b = energy * scale + 1``; against the running largest
    ``t = max(top, b)`` the old sums are scaled by ``(top / t) ** whole`` and the frame
    added with weight ``(b / t) ** whole``: ``weight = weight * old + new``,
    ``total = total * old + band * new`` (every plane), then ``top = t``. ``energy``,
    ``top``, ``weight``: (rows, cols); ``band``, ``total``: (planes, rows, cols);
    float32, ``scale`` a float32 scalar. ``energy`` and ``band`` may be a strip of the
    level: their row ``r`` is row ``r + offset`` of ``top``, ``weight`` and ``total``.

    Row by row, each step a pass over the row (the ratios, their powers, the sums of
    each plane), so that every pass runs several samples per instruction; each
    sample's arithmetic is the same, in the same order, as one sample at a time.
    """
    planes = band.shape[0]
    width = energy.shape[1]
    one = np.float32(1.0)
    old = np.empty(width, np.float32)
    new = np.empty(width, np.float32)
    square = np.empty(width, np.float32)
    for r in range(start, stop):
        s = r + offset
        e, t_row, w_row = energy[r], top[s], weight[s]
        for c in range(width):
            base = e[c] * scale
            base = base + one
            largest = t_row[c] if t_row[c] >= base else base
            old[c] = t_row[c] / largest
            new[c] = base / largest
            t_row[c] = largest
        _power_row(old, square, whole)
        _power_row(new, square, whole)
        for c in range(width):
            w_row[c] = w_row[c] * old[c] + new[c]
        for p in range(planes):
            t_plane, b_plane = total[p, s], band[p, r]
            for c in range(width):
                t_plane[c] = t_plane[c] * old[c] + b_plane[c] * new[c]
