"""The C library this process runs on, where it is glibc (for its allocator's calls)."""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

__all__ = ["glibc_function"]


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
