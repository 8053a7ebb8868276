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

from .. import _libc
from .._libc import glibc_function

__all__ = ["hand_back_large_blocks", "keep_freed_memory"]

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4

#: glibc's default count of mappings (``M_MMAP_MAX``).
_GLIBC_MMAP_MAX = 65536


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
    if ok:
        _libc.bounded_heap = hand_back_large_blocks
    return bool(ok)


def hand_back_large_blocks() -> bool:
    """Undo the heap-only part of :func:`keep_freed_memory` for a run under a tight budget.

    Blocks of 4 MiB and more get mappings of their own again, unmapped when freed (a
    fixed threshold: glibc's own would climb to 32 MiB), and the heap's free top goes
    back from 64 MiB on. The strip-major merge calls it (through
    :data:`convstack._libc.bounded_heap`): its frame-sized temporaries, served from one
    heap, fragmented it by ~0.3 GiB over the first frames. Returns whether it applied.
    """
    mallopt = glibc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, 4 << 20)
    ok &= mallopt(_M_MMAP_MAX, _GLIBC_MMAP_MAX)
    ok &= mallopt(_M_TRIM_THRESHOLD, 64 << 20)
    return bool(ok)
