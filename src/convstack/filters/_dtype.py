"""Shared plumbing for the filters: input checks, padding, OpenCV-style rounding.

dtype policy: integer images come back in their own dtype, rounded to nearest
(ties to even, as OpenCV's ``cvRound``/``saturate_cast``) and clipped to the
dtype's range; floats keep their precision.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _validate as v
from .._modes import MODES
from ..padding import pad

__all__ = ["check_image", "check_mode", "check_odd", "pad_image", "saturate", "strips"]

SUPPORTED = (np.uint8, np.uint16, np.float32, np.float64)


def check_image(image: ArrayLike, name: str = "image") -> NDArray[Any]:
    """Return ``image`` as a (rows, cols) or (rows, cols, channels) array of a supported dtype."""
    array = v.as_real_array(image, name)
    if array.ndim not in (2, 3):
        raise ValueError(
            f"`{name}` must be 2-D (rows, cols) or 3-D (rows, cols, channels); "
            f"got shape {array.shape}."
        )
    if array.dtype not in SUPPORTED:
        raise TypeError(
            f"`{name}` must have dtype uint8, uint16, float32 or float64; got {array.dtype}."
        )
    return array


def check_mode(mode: Any) -> str:
    """Border mode for a filter: one of the engine's modes (no ``cval``: constant means 0)."""
    return v.choice(mode, "mode", MODES)


def check_odd(size: Any, name: str = "size", *, minimum: int = 1) -> int:
    """A single odd int >= ``minimum``."""
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool):
        raise v.fail(name, "be an odd int", size, kind=TypeError)
    if size < minimum or size % 2 == 0:
        raise v.fail(name, f"be an odd int >= {minimum}", size)
    return int(size)


_NUMPY_MODES = {
    "constant": "constant",
    "nearest": "edge",
    "reflect": "symmetric",
    "mirror": "reflect",
    "wrap": "wrap",
}


def pad_image(
    image: NDArray[Any], before: tuple[int, int], after: tuple[int, int], mode: str
) -> NDArray[Any]:
    """Pad the two spatial axes of a channel-last image (rows, cols[, channels]).

    ``numpy.pad`` (slice copies, ~30x faster than gathering by index) serves
    every mode whose pads are narrower than the image; wider pads and 'mean'
    go through ``convstack.pad``, which reflects and wraps as often as needed.
    """
    padding = ((before[0], after[0]), (before[1], after[1]))
    if all(p == 0 for p in before + after):
        return image
    narrow = all(max(b, a) <= n - 1 for n, (b, a) in zip(image.shape[:2], padding, strict=True))
    if mode in _NUMPY_MODES and (narrow or mode in ("constant", "nearest")):
        widths = padding + (((0, 0),) if image.ndim == 3 else ())
        return np.pad(image, widths, mode=_NUMPY_MODES[mode])  # type: ignore[call-overload]
    channel_axis = 2 if image.ndim == 3 else None
    return pad(image, padding, mode=mode, channel_axis=channel_axis)


def saturate(values: NDArray[Any], dtype: np.dtype[Any]) -> NDArray[Any]:
    """Round half to even and clip into ``dtype`` (OpenCV's ``saturate_cast``) for integers."""
    if np.dtype(dtype).kind == "f":
        return values.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    out = np.rint(values)
    np.clip(out, info.min, info.max, out=out)
    return out.astype(dtype)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()

#: Threads of the strip pool.
POOL_THREADS = max(1, min(4, os.cpu_count() or 1))


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:  # callers on several threads (the pyramid's strips) make one pool
        if _POOL is None:
            _POOL = ThreadPoolExecutor(
                max_workers=POOL_THREADS, thread_name_prefix="convstack-filters"
            )
        return _POOL


def _forget_pool() -> None:
    """In a forked child: the pool's threads stayed in the parent, a new pool is needed."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def strips(
    rows: int,
    row_bytes: int,
    work: Callable[[int, int], None],
    *,
    target: int = 512 * 1024,
    balanced: bool = False,
) -> None:
    """Run ``work(start, stop)`` over row strips of about ``target`` bytes on a thread pool.

    ``row_bytes`` is the working memory one output row needs. NumPy releases the
    GIL inside its loops, so strips of one image run in parallel; images of one
    or two strips run in the calling thread. ``balanced``: strips of one height,
    at least one per pool thread, on the pool whenever there are two or more (for
    work whose strips all cost the same, so that the threads finish together).
    """
    if balanced:
        count = max(POOL_THREADS, -(-rows * row_bytes // target))
        step = max(16, -(-rows // count))
    else:
        step = max(16, target // max(row_bytes, 1))
    bounds = [(s, min(s + step, rows)) for s in range(0, rows, step)]
    if len(bounds) == 1 or (len(bounds) == 2 and not balanced):
        for start, stop in bounds:
            work(start, stop)
        return
    for future in [_pool().submit(work, a, b) for a, b in bounds]:
        future.result()
