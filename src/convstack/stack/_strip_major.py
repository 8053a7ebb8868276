"""The disk cache of the strip-major merge of :func:`convstack.stack.fuse` (issue 14).

Frames too large for the frame-major merge's running state are merged in two passes
(:meth:`convstack.stack.fusion.PyramidAccumulator.add_coarse`, then
:meth:`~convstack.stack.fusion.PyramidAccumulator.merge_strips`): the first puts each
frame on the reference grid, votes its focus and merges its coarse levels, the second
merges the fine levels one strip of output rows at a time, every frame's rows read
back from here. The frames are kept exactly as the merge takes them (float32 on the
reference grid, photometric correction applied, planar), so both passes see the same
bits and the result is the frame-major merge's to the bit.

The cache is one file in the system's temporary folder (``tempfile.gettempdir()``,
``TMPDIR``; ``/var/tmp`` where that folder is in memory and ``TMPDIR`` is not set: see
:func:`cache_folder`), unlinked as soon as it is made: nothing is left on disk once it is
closed, whether the fuse ends, fails or the process is killed. Rows are read with
``pread`` into arrays of their own (not mapped: mapped pages would count in the
process's resident size until unmapped).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import weakref
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _libc
from ..limits import format_size
from .errors import StackError

__all__ = [
    "FrameCache",
    "cache_folder",
    "filesystem_type",
    "release_freed_memory",
    "same_bits",
    "unit_bits",
]

#: Bytes a system call writes or reads at most (Linux stops at about 2 GiB).
_CHUNK = 1 << 28

logger = logging.getLogger(__name__)

#: File systems that keep their files in memory (a cache there saves none).
_IN_MEMORY = ("tmpfs", "ramfs")
#: Where large temporary files go when the temporary folder is in memory (as /tmp is on
#: many Linux systems): the file-system hierarchy's folder for them, on disk.
_DISK_TEMP = "/var/tmp"


def filesystem_type(folder: str) -> str | None:
    """The type of the file system holding ``folder`` (Linux's mount table: the mount
    point that is the longest prefix of its real path), or None where unknown."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
            table = [line.split()[1:3] for line in mounts if len(line.split()) >= 3]
    except OSError:
        return None
    path = os.path.realpath(folder)
    best, kind = -1, None
    for point, fstype in table:
        point = point.replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, kind = len(point), fstype
    return kind


def cache_folder() -> str:
    """The folder for the frame cache: the temporary folder (``TMPDIR``), unless it
    keeps its files in memory (a tmpfs ``/tmp``) and ``TMPDIR`` was not set, then
    ``/var/tmp`` where it is a writable folder on disk. A cache left in memory is
    logged: it would take the memory the strip-major merge is there to save."""
    folder = tempfile.gettempdir()
    if filesystem_type(folder) not in _IN_MEMORY:
        return folder
    on_disk = filesystem_type(_DISK_TEMP) not in (*_IN_MEMORY, None)
    if "TMPDIR" not in os.environ and on_disk and os.access(_DISK_TEMP, os.W_OK | os.X_OK):
        return _DISK_TEMP
    logger.warning(
        "the strip-major merge's frame cache is in %s, a file system in memory: it takes "
        "the memory the merge saves; set TMPDIR to a folder on disk",
        folder,
    )
    return folder


def release_freed_memory() -> None:
    """Hand the memory this process freed back to the system (glibc's ``malloc_trim``;
    elsewhere nothing): the strip-major merge frees a frame-sized array per frame, which
    an allocator that keeps freed memory (the ``convstack`` command's, see
    :mod:`convstack.cli._allocator`) would otherwise hold, fragmented, beside the next
    one. Only free pages go. Where the command had tuned its allocator to keep freed
    memory (:data:`convstack._libc.bounded_heap`), large blocks get mappings of their own
    again first: a heap that serves every frame-sized temporary fragments over the first
    frames (200 MP grey 16-bit x 20 under 4 GiB: 4.02-4.08 GiB, 3.75-3.89 with it)."""
    if _libc.bounded_heap is not None:
        _libc.bounded_heap()
    _libc.release_free_pages()


#: Rows :func:`same_bits` and :func:`unit_bits` compare at once.
_COMPARE_ROWS = 256


def same_bits(a: NDArray[Any], b: NDArray[Any], rows: int = _COMPARE_ROWS) -> bool:
    """Whether two arrays hold the same bits (NaN included, -0.0 not 0.0), compared a
    block of ``rows`` rows at a time (no temporary the size of either)."""
    if (
        a.shape != b.shape
        or a.dtype != b.dtype
        or a.ndim == 0
        or a.dtype.itemsize not in (1, 2, 4, 8)
    ):
        return False
    kind = np.dtype(f"u{a.dtype.itemsize}")
    return all(
        np.array_equal(a[r : r + rows].view(kind), b[r : r + rows].view(kind))
        for r in range(0, a.shape[0], rows)
    )


def unit_bits(raw: NDArray[Any], gray: NDArray[Any], rows: int = _COMPARE_ROWS) -> bool:
    """Whether ``gray`` is the integer frame ``raw`` divided by its dtype's maximum in
    float32 to the bit (what :func:`convstack.stack._frames.to_reference_grid` makes of
    a frame that did not move), compared a block of ``rows`` rows at a time: a grey
    frame's luma then is the frame on the reference grid, and one copy is enough."""
    if raw.dtype.kind not in "ui" or raw.shape != gray.shape or gray.dtype != np.float32:
        return False
    top = np.float32(np.iinfo(raw.dtype).max)
    return all(
        same_bits(np.divide(raw[r : r + rows], top, dtype=np.float32), gray[r : r + rows])
        for r in range(0, raw.shape[0], rows)
    )


def _planes(frame: NDArray[Any]) -> NDArray[np.float32]:
    """A frame as C-contiguous float32 (planes, rows, cols), or (rows, cols) for grey
    (a view where the frame is planar already, else a copy)."""
    if frame.ndim == 3:
        frame = np.moveaxis(frame, 2, 0)
    return np.ascontiguousarray(frame, dtype=np.float32)


class FrameCache:
    """Frames (float32, on the reference grid) in an unlinked temporary file.

    ``put(index, frame)`` appends a frame (rows, cols[, channels]); ``rows(index, lo,
    hi)`` reads its rows ``lo:hi`` back as the strip-major merge takes them (planar
    (channels, rows, cols) for colour). ``close()`` (or the end of a ``with`` block, or
    the cache being collected) frees the disk space. ``frames``: how many will be put;
    the first checks that the folder has room for them all, and a full disk is a
    :class:`~convstack.stack.errors.StackError` that says where and how much.
    """

    def __init__(self, frames: int = 0) -> None:
        self.folder = cache_folder()
        self.frames = frames  # (how many will come: the room is checked at the first)
        fd, path = tempfile.mkstemp(prefix="convstack-frames-", suffix=".f32", dir=self.folder)
        os.unlink(path)  # (the space stays until the descriptor is closed)
        self._fd = fd
        self._close = weakref.finalize(self, os.close, fd)
        self._end = 0
        # index -> (offset, planar shape, the raw dtype kept or None, photometric gain)
        self._where: dict[int, tuple[int, tuple[int, ...], Any, Any]] = {}

    @property
    def closed(self) -> bool:
        """Whether the cache's file is closed (its disk space freed)."""
        return not self._close.alive

    def put(
        self,
        index: int,
        frame: NDArray[Any],
        *,
        raw: NDArray[Any] | None = None,
        gain: tuple[float, float] | None = None,
    ) -> None:
        """Store frame ``index`` (float32, rows x cols[ x channels]; each index once).

        ``raw``: the integer frame as read where ``frame`` is it divided by its dtype's
        maximum (a frame that did not move), then times ``gain[0]`` plus ``gain[1]``
        (photometric): that frame is kept as read (a quarter of the bytes for 8-bit)
        and :meth:`rows` redoes the same float32 operations on its rows, so the same
        bits come back."""
        keep_raw = raw is not None and raw.dtype.kind in "ui" and raw.shape == frame.shape
        planes = _planes(frame) if raw is None or not keep_raw else np.ascontiguousarray(raw)
        if not self._where and self.frames:  # (room for all as float32: on the safe side)
            self._check_room(frame.size * 4 * self.frames)
        data = planes.reshape(-1).data.cast("B")
        offset, done = self._end, 0
        try:
            while done < len(data):
                done += os.pwrite(self._fd, data[done : done + _CHUNK], offset + done)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._check_room(planes.nbytes * max(self.frames - len(self._where), 1), exc)
            raise
        shape = ((frame.shape[2],) if frame.ndim == 3 else ()) + frame.shape[:2]  # planar
        self._where[index] = (offset, shape, planes.dtype if keep_raw else None, gain)
        self._end = offset + planes.nbytes

    def _check_room(self, needed: int, cause: OSError | None = None) -> None:
        """Raise :class:`StackError` saying where and how much, unless the cache's
        folder has ``needed`` bytes free (always, with ``cause``: the disk is full)."""
        free = shutil.disk_usage(self.folder).free
        if needed <= free and cause is None:
            return
        raise StackError(
            f"the strip-major merge keeps the registered frames on disk while it works: "
            f"about {format_size(needed)} more in {self.folder}, which has "
            f"{format_size(free)} free; point TMPDIR at a larger disk, or raise the memory "
            "limit (fuse(memory_limit=...), --memory-limit) so that the frames are merged "
            "in memory."
        ) from cause

    def rows(self, index: int, lo: int, hi: int) -> NDArray[np.float32]:
        """Rows ``lo:hi`` of frame ``index``: a new float32 (rows, cols) array for grey,
        (planes, rows, cols) for colour."""
        offset, shape, raw, gain = self._where[index]
        rows, cols = shape[-2:]
        planes = shape[0] if len(shape) == 3 else 1
        out = np.empty((planes, hi - lo, cols), np.float32)
        if raw is None:
            for p in range(planes):
                start = offset + ((p * rows) + lo) * cols * 4
                self._read(out[p].reshape(-1).data.cast("B"), start)
        else:  # as read, interleaved: scaled (and matched) as the frame was
            kept = np.empty((hi - lo, cols, planes), raw)
            self._read(kept.reshape(-1).data.cast("B"), offset + lo * cols * planes * raw.itemsize)
            top = np.float32(np.iinfo(raw).max)
            np.divide(kept, top, out=np.moveaxis(out, 0, -1), dtype=np.float32)
            if gain is not None:
                out *= np.float32(gain[0])
                out += np.float32(gain[1])
        return out if len(shape) == 3 else out[0]

    def _read(self, buffer: memoryview, offset: int) -> None:
        """Fill ``buffer`` from the file at ``offset``."""
        done = 0
        while done < len(buffer):
            got = os.preadv(self._fd, [buffer[done : done + _CHUNK]], offset + done)
            if got <= 0:
                raise OSError(f"the frame cache ended at byte {offset + done}")
            done += got

    def close(self) -> None:
        """Free the cache's disk space (again: nothing)."""
        self._close()

    def __enter__(self) -> FrameCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
