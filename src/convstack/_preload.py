"""Start numba before ``fuse`` forks, so that its reader child inherits a ready compiler.

The first call of any compiled kernel in a process costs far more than loading that
kernel from the disk cache: numba is imported and its compiler set up (the typing and
lowering registries, among them an import of ``scipy.linalg`` that numba makes to find
BLAS), most of a second of CPU. :func:`convstack.stack.fuse` forks a child that reads
and registers frames; left alone, both processes would pay that set-up, each on its own
first kernel call. Done once in the parent before the fork, the child gets it as a copy
of the parent's memory: nothing to import or build.

The same holds for the kernels that both processes call (the float32 correlation of
registration and of the sharpness measure, the cubic warp): loaded, or on a cold cache
compiled, once in the parent rather than once in each process at the same time.
Kernels only one of the two processes calls are left to it: loading them before the
fork would only put them on the parent's path.

Called by the command line (``convstack fuse``; ``convstack demo`` in a thread while it
renders, see :func:`in_background`), never at ``import convstack``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator

import numpy as np

__all__ = ["in_background", "load_fuse_kernels", "skip_numba_blas", "start_compiler"]

#: Whether :func:`start_compiler` lets numba look for BLAS (see :func:`skip_numba_blas`).
_NUMBA_BLAS = True


def skip_numba_blas() -> None:
    """Have :func:`start_compiler` set numba up without its BLAS: for the ``convstack``
    command's own process only, never a caller's.

    numba's set-up imports ``scipy.linalg`` to find a BLAS for ``np.dot`` and the like in
    compiled code (0.13-0.15 s of every command's start, a third of numba's start);
    convstack's kernels call none of it. Skipped, ``np.dot`` is unavailable to numba
    kernels in this process; ``scipy.linalg`` itself still imports as usual.
    """
    global _NUMBA_BLAS
    _NUMBA_BLAS = False


@contextlib.contextmanager
def _without_scipy_linalg() -> Iterator[None]:
    """``import scipy.linalg`` fails while inside (numba then finds no BLAS), unless
    it is imported already or numba's set-up has run."""
    blocked = "scipy.linalg" not in sys.modules and "numba.np.arraymath" not in sys.modules
    if blocked:
        sys.modules["scipy.linalg"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if blocked and sys.modules.get("scipy.linalg", 0) is None:
            del sys.modules["scipy.linalg"]


def start_compiler() -> None:
    """Import numba and set up its compiler in this process (idempotent: 0.2 ms after
    the first time).

    One tiny call of the kernel that every focus stack calls first, in both processes
    (the float32 row correlation of the registration's smoothing and gradients and of
    the sharpness measure), does it: that kernel is loaded from the disk cache, or on
    a cold cache compiled, as the stack would anyway.
    """
    from .convolve import correlate

    tiny = np.zeros((16, 16), dtype=np.float32)
    with contextlib.nullcontext() if _NUMBA_BLAS else _without_scipy_linalg():
        correlate(tiny, np.ones((3, 1), dtype=np.float32), mode="nearest")


def load_fuse_kernels(*, warp: bool = True) -> None:
    """Start the compiler and load the kernels that both processes of a forked
    :func:`convstack.stack.fuse` call, with the argument types they call them with.

    Parameters
    ----------
    warp : bool, optional
        Also the cubic warp of float32 planes (frames that move); False for a stack
        fused without alignment, which never warps.

    Notes
    -----
    Tiny calls of the public functions load them (a 16 x 16 image), so they stay the
    signatures that the library itself uses; ``tests/test_startup.py`` checks that a
    fuse calls every signature loaded here.
    """
    start_compiler()
    if warp:
        from .warp import warp as warp_image

        planar = np.moveaxis(np.empty((3, 16, 16), dtype=np.float32), 0, -1)
        moved = np.array([[1.0, 0.01, 0.5], [-0.01, 1.0, 0.25], [0.0, 0.0, 1.0]])
        tiny = np.zeros((16, 16, 3), dtype=np.float32)
        warp_image(tiny, moved, order=3, mode="nearest", out=planar)


def in_background(function: Callable[[], None]) -> Callable[[], None]:
    """Run ``function`` in a thread of its own; return the function that waits for it
    and raises again what it raised.

    For kernels loaded or compiled while the caller does other work (numba releases
    the GIL in LLVM's passes, NumPy in its loops). Wait before anything forks: a
    child forked while a compile runs would inherit numba's compiler lock held.
    """
    failed: list[BaseException] = []

    def target() -> None:
        try:
            function()
        except BaseException as exc:  # raised again in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=target, name="convstack-preload", daemon=True)
    thread.start()

    def wait() -> None:
        thread.join()
        if failed:
            raise failed[0]

    return wait
