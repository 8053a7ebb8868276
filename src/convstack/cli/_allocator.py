"""The command's own process keeps the memory it frees (glibc's allocator, tuned once).

glibc gives large blocks (from 32 MiB at the latest, its highest mmap threshold) a
mapping of their own and unmaps them when they are freed, so each new frame-sized NumPy
temporary comes back as fresh pages that the kernel must fault in and zero, for every
frame again. Served from a heap that keeps what is freed, the temporaries land in pages
already touched, for a slightly higher peak of resident memory. The library does not
touch the allocator of a process it is imported into; only the ``convstack`` command
does, for itself.
"""

from __future__ import annotations

import ctypes

from .._libc import glibc_function

__all__ = ["keep_freed_memory"]

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Ask glibc to serve large blocks from the heap and keep freed memory for reuse.

    Returns whether it was applied (glibc only; elsewhere nothing happens).
    """
    mallopt = glibc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0)  # no block gets its own mapping: all come from the heap
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)  # freed memory is kept, not returned
    ok &= mallopt(_M_TOP_PAD, 64 << 20)  # and the heap grows in 64 MiB steps
    return bool(ok)
