"""Limits on what one call may allocate or decode, checked before the work starts.

A request that would need more memory than the limit (an enormous kernel, padding or
dilation, a sigma of 1e9, a PNG that claims 50000 x 50000 pixels) is refused with a
:class:`LimitError` saying what was asked, what it needs and how to raise the limit,
instead of a ``MemoryError`` from deep inside NumPy or a machine brought to its knees.

The default memory limit is half of this machine's physical memory. Raise or lower it
with :func:`set_memory_limit` (or the ``memory_limit`` context manager), or with the
environment variable ``CONVSTACK_MEMORY_LIMIT`` (``"8GiB"``, ``"512MB"``, bytes).
Decoders also refuse images of more than :func:`max_image_pixels` pixels (default
2**30, about a gigapixel; ``CONVSTACK_MAX_PIXELS``).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator

__all__ = [
    "LimitError",
    "check_memory",
    "check_pixels",
    "format_size",
    "get_memory_limit",
    "max_image_pixels",
    "memory_limit",
    "parse_size",
    "set_memory_limit",
]


class LimitError(ValueError):
    """A request would exceed the memory or pixel limit; nothing was allocated."""


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(text: str | int, name: str = "size") -> int:
    """Parse a byte count such as ``"2GiB"``, ``"512 MB"`` or ``1000000`` to an int.

    Examples
    --------
    >>> parse_size("2GiB")
    2147483648
    >>> parse_size("1.5k")
    1500
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise ValueError(f"`{name}` must be a size > 0; got {text!r}.")
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(
            f"`{name}` must be a size such as 2GiB, 512MB or a number of bytes; got {text!r}."
        )
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"`{name}` must be a size > 0; got {text!r}.")
    return size


def format_size(nbytes: float) -> str:
    """Write a byte count for people: ``1536`` -> ``'1.5 KiB'``."""
    value = float(nbytes)
    if not math.isfinite(value):
        return f"{value} B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            if unit == "B":
                return f"{value:.0f} {unit}"
            return f"{value:.1f} {unit}" if abs(value) < 1e6 else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 8 * 1024**3


def _default_limit() -> int:
    env = os.environ.get("CONVSTACK_MEMORY_LIMIT")
    if env:
        return parse_size(env, "CONVSTACK_MEMORY_LIMIT")
    return _physical_memory() // 2


def _default_pixels() -> int:
    env = os.environ.get("CONVSTACK_MAX_PIXELS")
    if env:
        return parse_size(env, "CONVSTACK_MAX_PIXELS")
    return 2**30


_limit: int | None = None


def get_memory_limit() -> int:
    """The memory limit in bytes now in force."""
    global _limit
    if _limit is None:
        _limit = _default_limit()
    return _limit


def set_memory_limit(limit: str | int | None) -> None:
    """Set the memory limit (bytes or a size string); ``None`` restores the default."""
    global _limit
    _limit = None if limit is None else parse_size(limit, "limit")


@contextlib.contextmanager
def memory_limit(limit: str | int) -> Iterator[None]:
    """Use ``limit`` inside a ``with`` block, then restore the previous one."""
    previous = get_memory_limit()
    set_memory_limit(limit)
    try:
        yield
    finally:
        set_memory_limit(previous)


def check_memory(nbytes: float, what: str) -> None:
    """Refuse ``what`` if it needs more than the memory limit.

    ``what`` says what was asked, e.g. ``"gaussian_blur with sigma=1e9 (a kernel of
    12000000001 taps)"``; the message adds what it needs and how to raise the limit.
    """
    limit = get_memory_limit()
    if nbytes > limit:
        raise LimitError(
            f"{what} needs about {format_size(nbytes)}, more than the memory limit of "
            f"{format_size(limit)}; raise it with convstack.limits.set_memory_limit(...) or "
            "the environment variable CONVSTACK_MEMORY_LIMIT (e.g. 32GiB)."
        )


def max_image_pixels() -> int:
    """The most pixels (rows x cols) a decoder accepts in one image."""
    return _default_pixels()


def check_pixels(rows: int, cols: int, what: str) -> None:
    """Refuse to decode an image of ``rows x cols`` pixels over :func:`max_image_pixels`."""
    limit = max_image_pixels()
    if rows * cols > limit:
        raise LimitError(
            f"{what} is {rows} x {cols} = {rows * cols} pixels, more than the limit of "
            f"{limit}; raise it with the environment variable CONVSTACK_MAX_PIXELS if the "
            "image is genuine."
        )
