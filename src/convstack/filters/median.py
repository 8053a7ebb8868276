"""Median filter, OpenCV's ``medianBlur`` for every odd size, dtype and border mode.

Three compiled loops (``convstack._k_median``), chosen by dtype and size:

- small windows: min/max networks. The ``k`` samples of every column are sorted once
  (a sorting network, shared by the ``k`` windows that contain that column); the ``k``
  sorted columns of a window then go through a selection network built from Batcher's
  odd-even merges and pruned to the comparisons the median depends on.
- larger uint8 windows: a 256-bin histogram per column, slid down the rows, and the
  window's histogram slid along them (Perreault and Hebert's constant-time median).
- larger uint16 and float windows: a sorted copy of the window, updated by one merge
  pass per step along the row.
"""

from __future__ import annotations

import itertools
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _lazy
from ..limits import check_memory
from ._dtype import POOL_THREADS, check_image, check_mode, check_odd, pad_image, strips

__all__ = ["NETWORK_MAX", "median_blur", "merge_network", "sort_network"]

#: Largest window size served by the min/max networks, for uint8 and for other dtypes.
#: Beyond it uint8 takes column histograms (constant cost in the size: they win from
#: about 15 on), the others the sorted window (level with the networks at about 25).
NETWORK_MAX = {"u8": 13, "other": 23}

#: Largest size whose network is also checked on every 0-1 input ((k+1)**k of them).
_SIMPLIFY_MAX = 5

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


@cache
def _network_tables(k: int) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """The networks of size ``k`` as int arrays for the compiled loop."""
    col_ops, col_order = sort_network(k)
    steps, target = merge_network(k)
    rows = [(a, b, int(lo), int(hi)) for a, b, lo, hi in steps] + [(target, -1, 0, 0)]
    return (
        np.array(col_ops, dtype=np.intp).reshape(-1, 2),
        np.array(col_order, dtype=np.intp),
        np.array(rows, dtype=np.intp),
    )


def _nan_windows(array: NDArray[Any], k: int, mode: str) -> NDArray[np.bool_] | None:
    """Where a ``k x k`` window (after padding) holds a NaN; None if the image has none."""
    nan = np.isnan(array)
    if not nan.any():
        return None
    r = k // 2
    padded = pad_image(nan.astype(np.int32), (r, r), (r, r), mode)
    table = np.zeros((padded.shape[0] + 1, padded.shape[1] + 1) + padded.shape[2:], np.int64)
    np.cumsum(np.cumsum(padded, axis=0), axis=1, out=table[1:, 1:])
    counts = table[k:, k:] - table[:-k, k:] - table[k:, :-k] + table[:-k, :-k]
    return counts > 0


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
    Min/max networks run sizes up to 13 for uint8 and 23 for the other dtypes (3x3:
    18 min/max per pixel after the column sorts; 5x5: about 100; they grow about as
    ``size**2.6``, vectorised over 256 outputs at a time); larger uint8 windows take
    column histograms (about 512 adds per pixel, whatever the size), larger uint16
    and float windows a sorted window updated by one merge pass per pixel
    (``size**2`` steps).

    Raises ``ValueError`` (``convstack.limits.LimitError``) before allocating when the
    padded image and the loops' scratch would exceed the memory limit.

    NaN: every window that holds a NaN gives NaN, for every size and border mode
    (the rule of the convolution engine: a NaN spreads over its footprint). Infinities
    are ordinary values.

    Examples
    --------
    >>> import numpy as np
    >>> median_blur(np.array([[1, 9, 2, 8, 3]], dtype=np.uint8), 3).tolist()
    [[1, 2, 8, 3, 3]]
    """
    if _lazy.is_dask(image):  # larger than memory: a lazy dask array
        return _lazy.run(median_blur, image, size, mode=mode)
    array = check_image(image)
    mode = check_mode(mode)
    k = check_odd(size)
    if k == 1:
        return array.copy()
    from .. import _k_median

    r = k // 2
    channels = array.shape[2] if array.ndim == 3 else 1
    rows, width = array.shape[0], array.shape[1] * channels
    padded_size = (rows + 2 * r) * (width + 2 * r * channels)
    is_u8 = array.dtype == np.uint8
    if k <= NETWORK_MAX["u8" if is_u8 else "other"]:
        scratch = (k * (width + 2 * r * channels) + k * k * 256) * array.itemsize
    elif is_u8:
        scratch = (width + 2 * r * channels) * 272 * 4  # 256 + 16 counts per column
    else:
        scratch = 2 * k * k * array.itemsize
    check_memory(
        padded_size * (array.itemsize + 8.0 * (array.dtype.kind == "f"))
        + array.nbytes
        + scratch * POOL_THREADS,
        f"median_blur of an image of shape {array.shape} with size {k}",
    )
    nan = _nan_windows(array, k, mode) if array.dtype.kind == "f" else None
    source = np.where(np.isnan(array), 0, array) if nan is not None else array
    padded = np.ascontiguousarray(pad_image(source, (r, r), (r, r), mode))
    flat = padded.reshape(padded.shape[0], -1)
    out = np.empty((rows, width), dtype=array.dtype)
    if k <= NETWORK_MAX["u8" if is_u8 else "other"]:
        col_ops, col_order, steps = _network_tables(k)
        unrolled = {3: _k_median.network3_rows, 5: _k_median.network5_rows}.get(k)

        def work(start: int, stop: int) -> None:
            if unrolled is not None:
                unrolled(flat, out, start, stop, channels, col_ops, col_order)
            else:
                _k_median.network_rows(
                    flat, out, start, stop, k, channels, col_ops, col_order, steps
                )

    elif is_u8:

        def work(start: int, stop: int) -> None:
            _k_median.histogram_rows(flat, out, start, stop, k, channels)

    else:

        def work(start: int, stop: int) -> None:
            _k_median.sorted_rows(flat, out, start, stop, k, channels)

    strips(rows, flat.shape[1] * k * padded.itemsize, work, target=1 << 20, balanced=True)
    result = out.reshape(array.shape)
    if nan is not None:
        result[nan] = np.nan
    return result
