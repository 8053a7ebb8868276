"""The C library this process runs on, where it is glibc (for its allocator's calls)."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["bounded_heap", "glibc_function"]

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
