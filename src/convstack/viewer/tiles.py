"""The viewer's tile pyramid: levels made on demand by a 2x2 mean, kept in a byte-bounded LRU.

Level 0 is the image in 8 bits for display (16-bit by ``rint(x / 257)``, floats clipped
to [0, 1]); level ``k + 1`` is level ``k`` reduced by :func:`reduce2`. A tile is the
``TILE`` x ``TILE`` block ``(row, col)`` of a level (smaller at the right and bottom
edges), encoded as PNG by imagecodecs (the project's PNG encoder). Levels and encoded
tiles share one :class:`ByteCache`, so the server's memory stays bounded however far
the page pans and zooms.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["TILE", "ByteCache", "Pyramid", "encode_png", "heat", "level_count", "reduce2"]

#: Tile size in pixels.
TILE = 256


class ByteCache:
    """A least-recently-used cache bounded by the bytes of what it holds (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self.used = 0
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        """The value under ``key`` (now the most recent), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        """Keep ``value`` (of ``size`` bytes), dropping the least recent to fit."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.used -= old[1]
            if size > self.limit:
                return
            self._items[key] = (value, size)
            self.used += size
            while self.used > self.limit:
                _, (_, dropped) = self._items.popitem(last=False)
                self.used -= dropped

    def __len__(self) -> int:
        return len(self._items)


def reduce2(image: NDArray[Any]) -> NDArray[Any]:
    """Halve an image by the mean of each 2x2 block (an odd last row or column is
    repeated); integers are rounded half up.

    >>> import numpy as np
    >>> reduce2(np.array([[0, 1, 9], [2, 2, 9]], dtype=np.uint8))
    array([[1, 9]], dtype=uint8)
    """
    array = np.asarray(image)
    rows, cols = array.shape[:2]
    if rows % 2 or cols % 2:
        pad = [(0, rows % 2), (0, cols % 2)] + [(0, 0)] * (array.ndim - 2)
        array = np.pad(array, pad, mode="edge")
    if array.dtype.kind in "ui" and array.dtype.itemsize <= 2:
        # row pairs summed first, as whole contiguous rows, then column pairs: the
        # image viewed as (rows/2, 2, cols/2, 2 * channels) needs no strided gather
        half_rows, half_cols = array.shape[0] // 2, array.shape[1] // 2
        channels = 1 if array.ndim == 2 else array.shape[2]
        wide = np.uint16 if array.dtype == np.uint8 else np.uint32
        pairs = array.reshape(half_rows, 2, half_cols, 2 * channels)
        rows_sum: NDArray[Any] = pairs[:, 0].astype(wide)
        rows_sum += pairs[:, 1]
        quads = rows_sum.reshape(half_rows, half_cols, 2, channels)
        total: NDArray[Any] = quads[:, :, 0] + quads[:, :, 1]
        total += 2
        total >>= 2
        return total.reshape(half_rows, half_cols, *array.shape[2:]).astype(array.dtype)
    total64 = array[0::2, 0::2].astype(np.float64) + array[1::2, 0::2]
    total64 += array[0::2, 1::2]
    total64 += array[1::2, 1::2]
    return (total64 / 4.0).astype(array.dtype)


def level_count(shape: tuple[int, ...], tile: int = TILE) -> int:
    """How many levels, the last one fitting one tile: ``1 + ceil(log2(side / tile))``."""
    side = max(int(shape[0]), int(shape[1]))
    count = 1
    while side > tile:
        side = (side + 1) // 2
        count += 1
    return count


def to_display(image: NDArray[Any]) -> NDArray[np.uint8]:
    """An image in 8 bits for the screen."""
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    unit = np.clip(np.nan_to_num(array.astype(np.float32)), 0.0, 1.0)
    return np.rint(unit * 255.0).astype(np.uint8)


def encode_png(array: NDArray[Any]) -> bytes:
    """PNG bytes of an 8-bit grey or RGB array, fast settings (zlib level 1)."""
    import imagecodecs

    return bytes(imagecodecs.png_encode(np.ascontiguousarray(array), level=1))


def heat(values: NDArray[Any]) -> NDArray[np.uint8]:
    """A colour map of values in [0, 1]: black, blue, red, yellow, white."""
    t = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float32)), 0.0, 1.0)
    stops = np.array([0.0, 0.25, 0.55, 0.8, 1.0], dtype=np.float32)
    colours = np.array(
        [[0, 0, 0], [40, 40, 220], [220, 40, 40], [250, 220, 30], [255, 255, 255]],
        dtype=np.float32,
    )
    out = np.empty((*t.shape, 3), dtype=np.uint8)
    for channel in range(3):
        out[..., channel] = np.rint(np.interp(t, stops, colours[:, channel]))
    return out


class Pyramid:
    """The levels and tiles of one image, made when first asked for.

    Parameters
    ----------
    key : hashable
        This image's name in ``cache``.
    shape : tuple of int
        The image's shape (level 0).
    load : callable
        ``load()`` gives the image (any dtype the viewer reads); called again if the
        cache has dropped level 0.
    cache : ByteCache
        Where levels and tiles are kept.
    """

    def __init__(
        self,
        key: Hashable,
        shape: tuple[int, ...],
        load: Callable[[], NDArray[Any]],
        cache: ByteCache,
    ) -> None:
        self.key = key
        self.shape = tuple(int(n) for n in shape)
        self.levels = level_count(self.shape)
        self._load = load
        self._cache = cache
        self._lock = threading.Lock()

    def level_shape(self, level: int) -> tuple[int, int]:
        """(rows, cols) of a level."""
        rows, cols = self.shape[0], self.shape[1]
        for _ in range(level):
            rows, cols = (rows + 1) // 2, (cols + 1) // 2
        return rows, cols

    def tiles(self, level: int) -> tuple[int, int]:
        """How many tiles (down, across) a level has."""
        rows, cols = self.level_shape(level)
        return -(-rows // TILE), -(-cols // TILE)

    def level(self, level: int) -> NDArray[np.uint8]:
        """The 8-bit array of a level (from the cache, or made from the level below)."""
        if not 0 <= level < self.levels:
            raise ValueError(f"`level` must lie in [0, {self.levels - 1}]; got {level}.")
        with self._lock:
            return self._level(level)

    def _level(self, level: int) -> NDArray[np.uint8]:
        found = self._cache.get((self.key, "level", level))
        if found is not None:
            return found
        array = to_display(self._load()) if level == 0 else reduce2(self._level(level - 1))
        array.flags.writeable = False
        self._cache.put((self.key, "level", level), array, array.nbytes)
        return array

    def tile(self, level: int, row: int, col: int) -> bytes:
        """The PNG of one tile; ValueError for a tile outside the level."""
        down, across = self.tiles(level) if 0 <= level < self.levels else (0, 0)
        if not (0 <= level < self.levels and 0 <= row < down and 0 <= col < across):
            raise ValueError(
                f"`tile` must lie in level [0, {self.levels - 1}] and its grid; "
                f"got level {level}, row {row}, col {col}."
            )
        key = (self.key, "tile", level, row, col)
        found = self._cache.get(key)
        if found is not None:
            return found
        array = self.level(level)
        block = array[row * TILE : (row + 1) * TILE, col * TILE : (col + 1) * TILE]
        data = encode_png(block)
        self._cache.put(key, data, len(data))
        return data

    def smallest(self, side: int) -> NDArray[np.uint8]:
        """The finest level whose longer side is at most ``side`` (the last one else)."""
        for level in range(self.levels):
            if max(self.level_shape(level)) <= side:
                return self.level(level)
        return self.level(self.levels - 1)
