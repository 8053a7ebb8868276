"""Median filter: sorting networks of element-wise min/max, OpenCV's ``medianBlur``.

For a k x k window the k samples of every column are sorted once (a sorting
network, shared by the k windows that contain that column); the k sorted
columns of a window then go through a selection network built from Batcher's
odd-even merges and pruned to the comparisons the median depends on. Every step is one
``np.minimum``/``np.maximum`` over a row strip, in the image's own dtype.
Sizes above :data:`NETWORK_MAX` use a partial sort of each window instead.
"""

from __future__ import annotations

import itertools
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._dtype import check_image, check_mode, check_odd, pad_image, strips

__all__ = ["NETWORK_MAX", "median_blur", "merge_network", "sort_network"]

#: Largest window size served by the min/max networks.
NETWORK_MAX = 15

#: Largest size whose network is also checked on every 0-1 input ((k+1)**k of them).
_SIMPLIFY_MAX = 5

#: Bytes of one wire (one strip of the image) in the networks.
_STRIP_BYTES = 128 * 1024

Op = tuple[int, int]  # compare-exchange: wire a gets the min, wire b the max


def _merge(a: list[int], b: list[int], ops: list[Op]) -> list[int]:
    """Batcher's odd-even merge of two sorted wire lists (any lengths)."""
    if not a:
        return b
    if not b:
        return a
    if len(a) == 1 and len(b) == 1:
        ops.append((a[0], b[0]))
        return [a[0], b[0]]
    evens = _merge(a[0::2], b[0::2], ops)
    odds = _merge(a[1::2], b[1::2], ops)
    out = [evens[0]]
    for i, w in enumerate(odds):
        if i + 1 < len(evens):
            ops.append((w, evens[i + 1]))
            out += [w, evens[i + 1]]
        else:
            out.append(w)
    out += evens[len(odds) + 1 :]
    return out


def _merge_all(groups: list[list[int]], ops: list[Op]) -> list[int]:
    while len(groups) > 1:
        merged = [
            _merge(groups[i], groups[i + 1], ops) if i + 1 < len(groups) else groups[i]
            for i in range(0, len(groups), 2)
        ]
        groups = merged
    return groups[0]


@cache
def sort_network(n: int) -> tuple[tuple[Op, ...], tuple[int, ...]]:
    """Compare-exchanges that sort wires 0..n-1, and the wire holding each rank."""
    ops: list[Op] = []
    order = _merge_all([[i] for i in range(n)], ops)
    return tuple(ops), tuple(order)


@cache
def merge_network(k: int) -> tuple[tuple[tuple[int, int, bool, bool], ...], int]:
    """Selection network for the median of ``k`` sorted columns of ``k`` wires.

    Wire ``c * k + r`` is rank ``r`` of column ``c``. The rank rows are sorted
    across the columns; then only the ``(r, c)`` cells that can still be the
    median remain (at most ``m`` cells are <= them and at most ``m`` >= them,
    ``m`` the median's rank) and their middle one is selected. For small
    ``k`` comparators whose order is already implied by the sorted columns are
    dropped (checked on every 0-1 input, which by the 0-1 principle covers all
    inputs); then everything the median does not depend on is pruned. Returns the steps
    ``(a, b, need_min, need_max)`` and the wire that ends with the median.
    """
    ops: list[Op] = []
    rows = [_merge_all([[c * k + r] for c in range(k)], ops) for r in range(k)]
    m = (k * k) // 2
    below = 0
    candidates = []
    for r in range(k):
        for c in range(k):
            at_most = (r + 1) * (c + 1)  # cells known to be <= cell (r, c)
            at_least = (k - r) * (k - c)  # cells known to be >= it
            if at_least >= k * k - m + 1:
                below += 1
            elif at_most < m + 2:
                candidates.append(rows[r][c])
    order = _merge_all([[w] for w in candidates], ops)
    target = order[m - below]
    kept: list[Op] = ops
    if k <= _SIMPLIFY_MAX:
        # 0-1 inputs with sorted columns: column c holds counts[c] ones at the top.
        counts = np.array(list(itertools.product(range(k + 1), repeat=k)), dtype=np.int16)
        bits = {c * k + r: r >= k - counts[:, c] for c in range(k) for r in range(k)}
        kept = []
        for a, b in ops:
            x, y = bits[a], bits[b]
            if np.any(x & ~y):
                kept.append((a, b))
                bits[a], bits[b] = x & y, x | y
    needed = {target}
    steps: list[tuple[int, int, bool, bool]] = []
    for a, b in reversed(kept):
        need_min, need_max = a in needed, b in needed
        if need_min or need_max:
            steps.append((a, b, need_min, need_max))
            needed.update((a, b))
    steps.reverse()
    return tuple(steps), target


def _network_median(padded: NDArray[Any], k: int, shape: tuple[int, ...]) -> NDArray[Any]:
    channels = shape[2] if len(shape) == 3 else 1
    rows, width = shape[0], shape[1] * channels
    flat = padded.reshape(padded.shape[0], -1)
    out = np.empty((rows, width), dtype=padded.dtype)
    col_ops, col_order = sort_network(k)
    steps, target = merge_network(k)

    def column_ranks(start: int, stop: int) -> list[NDArray[Any]]:
        wires = [flat[start + r : stop + r] for r in range(k)]  # views; CEs make new arrays
        for a, b in col_ops:  # sort every column of k samples
            wires[a], wires[b] = np.minimum(wires[a], wires[b]), np.maximum(wires[a], wires[b])
        return [wires[i] for i in col_order]

    def med3(x: NDArray[Any], y: NDArray[Any], z: NDArray[Any], dst: NDArray[Any]) -> None:
        low = np.minimum(x, y)
        high = np.maximum(x, y)
        np.minimum(high, z, out=high)
        np.maximum(low, high, out=dst)

    def work3(start: int, stop: int) -> None:
        # The classic 3x3 form: median = med3(max of column minima, med3 of column
        # medians, min of column maxima) -- 12 min/max after the column sorts.
        lo, mid, hi = column_ranks(start, stop)

        def col(arr: NDArray[Any], c: int) -> NDArray[Any]:
            return arr[:, c * channels : c * channels + width]

        top = np.maximum(col(lo, 0), col(lo, 1))
        np.maximum(top, col(lo, 2), out=top)
        bottom = np.minimum(col(hi, 0), col(hi, 1))
        np.minimum(bottom, col(hi, 2), out=bottom)
        middle = np.empty_like(top)
        med3(col(mid, 0), col(mid, 1), col(mid, 2), middle)
        med3(top, middle, bottom, out[start:stop])

    def work(start: int, stop: int) -> None:
        ranks = column_ranks(start, stop)
        values: dict[int, NDArray[Any]] = {}
        for c in range(k):
            for r in range(k):
                values[c * k + r] = ranks[r][:, c * channels : c * channels + width]
        for a, b, need_min, need_max in steps:
            x, y = values[a], values[b]
            if need_min and need_max:
                values[a], values[b] = np.minimum(x, y), np.maximum(x, y)
            elif need_min:
                values[a] = np.minimum(x, y)
            else:
                values[b] = np.maximum(x, y)
        out[start:stop] = values[target]

    strips(rows, width * padded.itemsize, work3 if k == 3 else work, target=_STRIP_BYTES)
    return out.reshape(shape)


def _sorted_median(padded: NDArray[Any], k: int, shape: tuple[int, ...]) -> NDArray[Any]:
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(0, 1))
    out = np.empty(shape, dtype=padded.dtype)
    mid = (k * k) // 2
    per_row = max(1, (8 << 20) // max(1, windows[0].size * padded.itemsize))
    for start in range(0, shape[0], per_row):
        block = windows[start : start + per_row]
        flat = block.reshape(block.shape[: block.ndim - 2] + (k * k,))
        out[start : start + per_row] = np.partition(flat, mid, axis=-1)[..., mid]
    return out


def median_blur(image: ArrayLike, size: int, *, mode: str = "nearest") -> NDArray[Any]:
    """Median of the ``size`` x ``size`` window: ``cv2.medianBlur(image, size)``.

    Parameters
    ----------
    image : array_like
        (rows, cols) or (rows, cols, channels); uint8, uint16, float32 or float64.
    size : int
        Odd window size >= 1 (OpenCV accepts 3 and 5 for 16-bit and float
        images and any odd size for uint8; here every odd size works for every
        dtype).
    mode : str
        Border mode; the default 'nearest' is BORDER_REPLICATE, the border
        OpenCV's ``medianBlur`` always uses.

    Returns
    -------
    ndarray
        Same shape and dtype (the median of an odd count is a sample: exact).

    Notes
    -----
    Sizes up to 15 run min/max networks in row strips (3x3: 18 element-wise
    min/max per pixel; 5x5: 132; the count grows about as ``size**3``), larger
    sizes a partial sort of every window. OpenCV switches to histograms for
    large uint8 windows, whose cost does not grow with the size.

    Examples
    --------
    >>> import numpy as np
    >>> median_blur(np.array([[1, 9, 2, 8, 3]], dtype=np.uint8), 3).tolist()
    [[1, 2, 8, 3, 3]]
    """
    array = check_image(image)
    mode = check_mode(mode)
    k = check_odd(size)
    if k == 1:
        return array.copy()
    r = k // 2
    padded = np.ascontiguousarray(pad_image(array, (r, r), (r, r), mode))
    if k <= NETWORK_MAX:
        return _network_median(padded, k, array.shape)
    return _sorted_median(padded, k, array.shape)
