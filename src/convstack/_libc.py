"""The C library this process runs on, where it is glibc (for its allocator's calls)."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["bounded_heap", "glibc_function", "release_free_pages"]

#: Set by a process that tuned its allocator for speed (the ``convstack`` command, see
#: :mod:`convstack.cli._allocator`) to a call that undoes the part that grows the heap;
#: called where a run must keep within a tight memory budget (the strip-major merge).
#: None: the allocator is the process's own, and the library leaves it alone.
bounded_heap: Callable[[], object] | None = None


def glibc_function(name: str) -> Any | None:
    """glibc's function ``name`` (a ctypes function, its types still to set), or None
    off Linux, on another C library, or where it is missing."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return None
        return getattr(ctypes.CDLL(None), name)  # the library this process already runs on
    except (OSError, ValueError, AttributeError):
        return None


def release_free_pages() -> None:
    """Hand the free pages of this process's heaps back to the system (glibc's
    ``malloc_trim(0)``, every arena; elsewhere nothing), the allocator's settings left
    as they are. After a fork, pages freed here that the child still holds (copy-on-write)
    are then the child's alone, not kept here as well for this process to reuse."""
    trim = glibc_function("malloc_trim")
    if trim is None:
        return
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    trim(0)
