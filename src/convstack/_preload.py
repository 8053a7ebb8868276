"""Start numba before ``fuse`` forks, so that its reader child inherits a ready compiler.

The first call of any compiled kernel in a process costs far more than loading that
kernel from the disk cache: numba is imported and its compiler set up (the typing and
lowering registries, among them an import of ``scipy.linalg`` that numba makes to find
BLAS), most of a second of CPU (the command sets it up lean: :func:`lean_numba_start`).
:func:`convstack.stack.fuse` forks a child that reads and registers frames; left alone,
both processes would pay that set-up, each on its own first kernel call. Done once in
the parent before the fork, the child gets it as a copy of the parent's memory: nothing
to import or build.

The same holds for the kernels that fuse calls (the float32 correlation of registration
and of the sharpness measure, the warps, the pyramid merge's, the PNG reader's): loaded,
or on a cold cache compiled, once in the parent rather than in one or both processes at
their first call, in the middle of the fuse. There, each first call cost 2-20 ms: the
load, plus the pool's other threads waiting on numba's compiler lock for it; before the
fork the frames decode meanwhile (the command's read-ahead). A second thread would not
load faster: numba's compiler lock lets one load run at a time, and the Python half of
each load holds the GIL.

After a fresh install the cache is cold, and every kernel compiles (0.1-4 s each, 10-11 s
in a demo) under numba's compiler lock, one at a time whatever the threads. A second
process compiles beside the first (:func:`compile_aside`): ``convstack demo`` has its
warps compiled there while it compiles the rest.

Called by the command line (``convstack fuse``; ``convstack demo`` in a thread while it
renders, see :func:`in_background`), never at ``import convstack``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

__all__ = [
    "cold_cache",
    "compile_aside",
    "fuse_kernels",
    "in_background",
    "lean_numba_start",
    "load_fuse_kernels",
    "load_warp_kernels",
    "start_compiler",
    "warps_aside",
]

#: Whether :func:`start_compiler` sets numba up lean (see :func:`lean_numba_start`).
_LEAN = False

#: numba's own configuration file, read with PyYAML from the working folder.
_NUMBA_CONFIG_FILE = ".numba_config.yaml"


def lean_numba_start() -> None:
    """Have :func:`start_compiler` set numba up lean: for the ``convstack`` command's own
    process only, never a caller's (it changes what numba does in the whole process).

    numba's set-up does work that convstack's cached kernels never use, about a
    third of a command's start (0.1-0.3 s):

    - it imports ``scipy.linalg`` to find a BLAS for ``np.dot`` and the like in
      compiled code (0.13-0.15 s); none of our kernels calls it. Skipped, ``np.dot``
      is unavailable to numba kernels in this process; ``scipy.linalg`` itself still
      imports as usual afterwards.
    - its import imports SciPy only to check its version, and PyYAML to read a
      ``.numba_config.yaml`` (kept where that file is in the working folder).
    - before it loads a kernel from its disk cache, numba imports and installs every
      typing and lowering registry that compiling needs (``refresh``, 60-110 ms);
      a cached kernel needs only numba's runtime. Loaded lean, a kernel whose cache
      misses is compiled as ever: numba's compiler refreshes the registries itself.

    The imports are skipped only where :func:`start_compiler` runs in the main thread
    (elsewhere another thread could meet them blocked).
    """
    global _LEAN
    _LEAN = True


@contextlib.contextmanager
def _blocked(names: list[str]) -> Iterator[None]:
    """Inside, ``import NAME`` fails for each of ``names`` not imported already."""
    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def _import_numba_lean() -> None:
    """Import numba (if not yet) without the imports it makes for what we never use:
    SciPy, PyYAML (unless its configuration file is here), ``scipy.linalg``."""
    if "numba" in sys.modules:
        return
    names = ["scipy", "scipy.linalg"]
    if not os.path.isfile(_NUMBA_CONFIG_FILE):
        names.append("yaml")
    with _blocked(names):
        import numba  # noqa: F401


def _load_cached_kernels_lean() -> None:
    """From now on, numba loads a cached kernel after starting only its runtime, not
    after installing every typing and lowering registry (see :func:`lean_numba_start`).

    Left as it is where numba's cache does not look as this expects (another numba).
    """
    from numba.core import caching
    from numba.core.runtime import rtsys

    cache: Any = caching.Cache
    needs = ("load_overload", "_load_overload", "_guard_against_spurious_io_errors")
    if getattr(cache, "_convstack_lean", False) or not all(hasattr(cache, n) for n in needs):
        return

    def load_overload(self: Any, sig: Any, target_context: Any) -> Any:
        rtsys.initialize(target_context)  # (what the kernels link against)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    cache.load_overload = load_overload
    cache._convstack_lean = True


def _set_up_numba() -> bool:
    """Import numba, lean where the command asked (:func:`lean_numba_start`); whether
    imports were blocked for it (then also for a compile that follows)."""
    # imports are blocked in sys.modules, the whole process's: only from the main
    # thread, so that no thread of the caller's (the demo renders meanwhile) sees them
    block = _LEAN and threading.current_thread() is threading.main_thread()
    if block:
        _import_numba_lean()
    if _LEAN:
        _load_cached_kernels_lean()
    return block


def start_compiler() -> None:
    """Import numba and set up its compiler in this process (idempotent: 0.2 ms after
    the first time).

    One tiny call of the kernel that every focus stack calls first, in both processes
    (the float32 row correlation of the registration's smoothing and gradients and of
    the sharpness measure), does it: that kernel is loaded from the disk cache, or on
    a cold cache compiled, as the stack would anyway.
    """
    from .convolve import correlate

    block = _set_up_numba()
    tiny = np.zeros((16, 16), dtype=np.float32)
    # (a cold cache compiles here: numba's look-up of BLAS blocked as in its import)
    block = block and "numba.np.arraymath" not in sys.modules
    with _blocked(["scipy.linalg"]) if block else contextlib.nullcontext():
        correlate(tiny, np.ones((3, 1), dtype=np.float32), mode="nearest")


def load_fuse_kernels(
    *,
    warp: bool = True,
    frame: tuple[tuple[int, ...], np.dtype[Any]] | None = None,
    pyramid: bool = False,
    classic: bool = False,
    png: bool = False,
) -> None:
    """Start the compiler and load the kernels that a forked :func:`convstack.stack.fuse`
    calls, with the argument types it calls them with.

    Loaded here, before the fork, a kernel is loaded once for both processes, and never
    in the middle of the fuse, where the first call of each cost 2-20 ms (its load, and
    the pool's other threads waiting on numba's compiler lock for it).

    Parameters
    ----------
    warp : bool, optional
        Also the kernels of alignment: the registration's (bilinear) warp and halving,
        and the (quintic, two-pass) warp of the frames into float32 planes; False for a
        stack fused without alignment, which never warps.
    frame : (shape, dtype), optional
        The frames' shape and dtype (:func:`convstack.stack.io.read_header`): with
        ``warp``, the warp reads uint8 and uint16 frames through a kernel of their
        dtype; with ``pyramid``, grey frames skip the colour kernels.
    pyramid : bool, optional
        Also the pyramid merge's kernels (``method='pyramid'`` on the luma).
    classic : bool, optional
        With ``pyramid``: those of the classic rule instead (``method='maxabs'``: no
        soft weights, no envelope check).
    png : bool, optional
        Also the PNG reader's (frames that are PNG files).

    Notes
    -----
    Tiny calls of the library's functions load them (16 x 16 images), so they stay the
    signatures that the library itself uses; ``tests/test_startup.py`` checks that a
    fuse calls every signature loaded here. On a cold cache the warps compile in a
    second process (:func:`compile_aside`) while this one compiles the others.
    """
    aside = _warps_aside(frame) if warp else None
    try:
        start_compiler()
        if png:  # first: the read-ahead decodes through it from then on
            from .stack.io import read_image

            read_image(io.BytesIO(_tiny_png()))
        if pyramid:
            _load_pyramid_kernels(frame, classic)
    finally:
        if aside is not None:
            aside()
    if warp:
        load_warp_kernels(frame)  # (on a cold cache, from what the other process filled)


def fuse_kernels(
    frames: Sequence[Any], *, align: str, method: str, focus_channel: Any = None
) -> dict[str, Any]:
    """:func:`load_fuse_kernels`'s arguments for fusing ``frames``: the warps unless
    ``align`` is 'none', the pyramid merge's on the luma for ``method`` 'pyramid' or
    'maxabs' (the classic rule's), the frames' dtype and channels from the first one's
    header where they are two paths or more (a file alone is a z-stack: its planes'
    header is not the file's), the PNG reader's for PNG files. Frames that are not
    paths (a z-stack's planes) give neither header nor PNG reader."""
    from pathlib import Path

    paths = all(isinstance(f, (str, os.PathLike)) for f in frames)
    if paths and len(frames) > 1:
        from .stack.io import read_header

        header = read_header(frames[0])
    else:
        header = None
    return {
        "warp": align != "none",
        "frame": header,
        "pyramid": method in ("pyramid", "maxabs") and focus_channel is None,
        "classic": method == "maxabs",
        "png": paths and all(Path(f).suffix.lower() == ".png" for f in frames),
    }


def _load_pyramid_kernels(
    frame: tuple[tuple[int, ...], np.dtype[Any]] | None, classic: bool = False
) -> None:
    """The pyramid merge's kernels of :func:`load_fuse_kernels` (``pyramid``; the classic
    rule's with ``classic``)."""
    from .stack.fusion import pyramid_merge

    colour = frame is None or (len(frame[0]) == 3 and frame[0][2] >= 3)
    tiny = np.zeros((16, 16, 3) if colour else (16, 16), dtype=np.float32)
    if classic:
        pyramid_merge([tiny, tiny], levels=2, soft_levels=0, envelope=False)
    else:
        pyramid_merge([tiny, tiny], levels=2)


def warps_aside(module: str, function: str, *args: str) -> Callable[[], Any] | None:
    """On a cold cache of the warp kernels, ``module.function(*args)`` (loads of warps
    only) started in a second process by :func:`compile_aside` (the function that
    waits for it); else None. The warp module's kernels call no other module's
    (``tests/test_cold_start.py``), so this process may compile all the others."""
    _set_up_numba()
    from . import _k_warp

    if not cold_cache(_k_warp.two_pass_columns):
        return None
    return compile_aside(module, function, *args)


def _warps_aside(frame: tuple[tuple[int, ...], np.dtype[Any]] | None) -> Callable[[], Any] | None:
    """:func:`warps_aside` of :func:`load_warp_kernels` for ``frame``."""
    dtype = "" if frame is None else frame[1].str
    return warps_aside(__name__, _load_warps_of.__name__, dtype)


def _load_warps_of(dtype: str) -> None:
    """:func:`load_warp_kernels` for frames of ``dtype`` (NumPy's ``dtype.str``; ''
    none given): what the process of :func:`_warps_aside` runs."""
    load_warp_kernels(((), np.dtype(dtype)) if dtype else None)


def load_warp_kernels(frame: tuple[tuple[int, ...], np.dtype[Any]] | None = None) -> None:
    """The warps of :func:`load_fuse_kernels` (``warp``): the registration's and the
    frames' (into planar float32, from ``frame``'s dtype where uint8 or uint16)."""
    from .warp import warp as warp_image

    moved = np.array([[1.0, 0.01, 0.5], [-0.01, 1.0, 0.25], [0.0, 0.0, 1.0]])
    tiny = np.zeros((16, 16), dtype=np.float32)
    warp_image(tiny, moved, mode="constant", cval=np.nan)  # the registration's
    # the frames', into planar float32 frames: uint8 and uint16 frames are read as they
    # are, others as float32
    dtype = np.float32
    if frame is not None and frame[1] in (np.uint8, np.uint16):
        dtype = frame[1].type
    planar = np.moveaxis(np.empty((3, 16, 16), dtype=np.float32), 0, -1)
    image = np.zeros((16, 16, 3), dtype=dtype)
    warp_image(image, moved, order=5, mode="nearest", separable=True, out=planar)


def _tiny_png() -> bytes:
    """A 1 x 1 grey 8-bit PNG file's bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x80")  # filter type 0, one sample
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


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


#: Seconds the wait of :func:`compile_aside` lasts at most before it ends the process.
ASIDE_TIMEOUT = 300.0

#: What the process of :func:`compile_aside` runs: ``argv[1]`` the caller's ``sys.path``,
#: ``argv[2]`` a module, ``argv[3]`` a function of it, called with ``argv[4:]``.
_ASIDE_CODE = (
    "import importlib, json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "getattr(importlib.import_module(sys.argv[2]), sys.argv[3])(*sys.argv[4:])"
)


def cold_cache(kernel: Any) -> bool:
    """Whether numba's disk cache holds no compiled version of ``kernel`` (a kernel of
    a ``_k_*`` module) for its module's source as it is now: after a fresh install, in
    a new ``NUMBA_CACHE_DIR``, after an edit of the module. False where it cannot tell
    (another numba's cache layout)."""
    try:
        return not kernel._cache._cache_file._load_index()
    except Exception:  # as if warm: the caller then does what it did before
        return False


def compile_aside(module: str, function: str, *args: str) -> Callable[[], int | None]:
    """Call ``module.function(*args)`` in a second Python process (this one's
    interpreter and ``sys.path``, no input, output discarded); return the function that
    waits for it to end and returns its exit status (None: it could not start).

    For a cold cache: the other process compiles kernels into the disk cache on the
    other core while this one compiles others; after the wait this one loads them from
    the cache. Give the two processes kernels of different ``_k_*`` modules: numba files
    a kernel's compiled versions under numbers it takes from that kernel's index, so
    two processes compiling versions of one kernel at once could each file theirs under
    the same number. Whatever the other process did not compile (it failed, or was ended
    after :data:`ASIDE_TIMEOUT` seconds) compiles in this one at first use, as without it.
    """
    if getattr(sys, "frozen", False) or not sys.executable:  # no interpreter to run
        return lambda: None
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", _ASIDE_CODE, json.dumps(sys.path), module, function, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError:  # no process: everything compiles here
        return lambda: None

    def wait() -> int | None:
        try:
            return child.wait(ASIDE_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
            return child.wait()

    return wait
