"""Compiled loop of the PNG reader (:mod:`convstack.stack.io`): undoing the rows' filters.

A non-interlaced PNG's image data, once inflated, is one filter-type byte and then
``stride`` bytes per row; each byte was stored as its difference from a prediction
made of the bytes already decoded: none (type 0), the byte ``bpp`` to the left (Sub,
1), the one above (Up, 2), their mean rounded down (Average, 3) or the Paeth
predictor of left, above and upper-left (4), bytes outside the image taken as 0
(PNG specification, section 9). :func:`unfilter_rows` adds the predictions back, row
by row, modulo 256.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._jit import kernel

__all__ = ["unfilter_rows"]


@kernel
def unfilter_rows(data: Any, bpp: int, out: Any) -> int:
    """Fill ``out`` (rows, stride; uint8) from ``data`` (uint8, ``rows * (stride + 1)``
    bytes: each row's filter type, then its filtered bytes), ``bpp`` bytes a pixel
    (at least 1). Returns -1, or the first row whose filter type is not 0-4 (the rows
    from there on are left as they were)."""
    rows, stride = out.shape
    zero = np.zeros(stride, np.uint8)
    for r in range(rows):
        line = data[r * (stride + 1) + 1 : (r + 1) * (stride + 1)]
        kind = data[r * (stride + 1)]
        up = out[r - 1] if r > 0 else zero
        cur = out[r]
        if kind == 0:
            for i in range(stride):
                cur[i] = line[i]
        elif kind == 1:
            for i in range(min(bpp, stride)):
                cur[i] = line[i]
            for i in range(bpp, stride):
                cur[i] = (np.int32(line[i]) + np.int32(cur[i - bpp])) & 255
        elif kind == 2:
            for i in range(stride):
                cur[i] = (np.int32(line[i]) + np.int32(up[i])) & 255
        elif kind == 3:
            for i in range(min(bpp, stride)):
                cur[i] = (np.int32(line[i]) + (np.int32(up[i]) >> 1)) & 255
            for i in range(bpp, stride):
                mean = (np.int32(cur[i - bpp]) + np.int32(up[i])) >> 1
                cur[i] = (np.int32(line[i]) + mean) & 255
        elif kind == 4:
            for i in range(min(bpp, stride)):  # left and upper-left are 0: above wins
                cur[i] = (np.int32(line[i]) + np.int32(up[i])) & 255
            for i in range(bpp, stride):
                a = np.int32(cur[i - bpp])
                b = np.int32(up[i])
                c = np.int32(up[i - bpp])
                pa = abs(b - c)
                pb = abs(a - c)
                pc = abs(a + b - 2 * c)
                if pa <= pb and pa <= pc:
                    guess = a
                elif pb <= pc:
                    guess = b
                else:
                    guess = c
                cur[i] = (np.int32(line[i]) + guess) & 255
        else:
            return r
    return -1
