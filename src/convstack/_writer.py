"""The one writer of every file convstack writes: images, depth maps, steps, figures, reports.

The rules, stated once and kept here only:

- **No clobber.** An existing file is never replaced unless ``overwrite=True``
  (``--force`` on the command line).
- **Inputs are never written.** A target that is one of ``inputs`` (the same path once
  resolved, or the same file through a hard or symbolic link) is refused, whatever
  ``overwrite`` says.
- **Atomic and exclusive.** The data go to a temporary file in the target's folder
  (``.NAME.XXXXXXXX.tmp``), are flushed to disk, and only then take the target's name:
  with ``overwrite`` by ``os.replace``; without it by ``os.link``, which fails if the
  name exists, so that two writers racing to one new name cannot both succeed (the
  loser gets :class:`TargetExistsError`, its data are dropped, nothing is replaced).
  On file systems without hard links an exclusive ``O_EXCL`` create reserves the name
  instead. A reader sees the old file or the new one, never half of one.
- **Nothing left behind.** The temporary file is removed on every way out: an error,
  ``KeyboardInterrupt``, or a signal that the command line turns into an exception
  (SIGTERM, SIGHUP).
- :func:`check_target` makes the same checks before any work is done (folder exists
  and is writable, target free or ``overwrite``, not an input), so that a command can
  refuse in a second rather than after minutes of computing.

The refusals are :class:`OutputRefusedError` subclasses that are also the built-in
exception a caller would expect (``FileExistsError``, ``PermissionError``, ...); their
message names the path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeAlias

__all__ = [
    "FolderMissingError",
    "FolderNotWritableError",
    "InputTargetError",
    "Inputs",
    "OutputRefusedError",
    "TargetExistsError",
    "TargetIsFolderError",
    "check_folder",
    "check_target",
    "write_bytes",
    "write_stream",
    "write_via_path",
]

PathLike: TypeAlias = str | os.PathLike[str]


class OutputRefusedError(Exception):
    """An output that the writer refuses to write; the message names the path."""


class TargetExistsError(OutputRefusedError, FileExistsError):
    """The target exists and ``overwrite`` was not asked (or it appeared meanwhile)."""


class TargetIsFolderError(OutputRefusedError, IsADirectoryError):
    """The target is a folder."""


class FolderMissingError(OutputRefusedError, FileNotFoundError):
    """The target's folder does not exist."""


class FolderNotWritableError(OutputRefusedError, PermissionError):
    """The target's folder cannot be written to by this process."""


class InputTargetError(OutputRefusedError, ValueError):
    """The target is one of the inputs: never written, ``overwrite`` or not."""


class Inputs:
    """The files an output may never replace, indexed for fast lookups.

    Holds each input's resolved path and, for the inputs that exist, its device and
    inode, so that a target reached through a symbolic or hard link is found too.
    """

    def __init__(self, paths: Iterable[PathLike] = ()) -> None:
        self._paths: dict[str, str] = {}
        self._inodes: dict[tuple[int, int], str] = {}
        for path in paths:
            text = os.fspath(path)
            self._paths.setdefault(os.path.normcase(os.path.realpath(text)), text)
            with contextlib.suppress(OSError):
                stat = os.stat(text)
                self._inodes.setdefault((stat.st_dev, stat.st_ino), text)

    def __bool__(self) -> bool:
        return bool(self._paths)

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths.values())

    def match(self, target: PathLike) -> str | None:
        """The input that ``target`` is (as given by the caller), or None."""
        found = self._paths.get(os.path.normcase(os.path.realpath(target)))
        if found is not None or not self._inodes:
            return found
        try:
            stat = os.stat(target)
        except OSError:
            return None
        return self._inodes.get((stat.st_dev, stat.st_ino))


def _as_inputs(inputs: Inputs | Iterable[PathLike]) -> Inputs:
    return inputs if isinstance(inputs, Inputs) else Inputs(inputs)


def check_folder(folder: PathLike, *, what: str | None = None) -> Path:
    """Refuse a folder that does not exist or that this process cannot write to.

    ``what`` names the file to be written there in the message (default: the folder).
    """
    path = Path(folder)
    name = path if what is None else what
    if not path.is_dir():
        if path.exists():
            raise FolderMissingError(f"{name}: {path} is not a folder.")
        raise FolderMissingError(f"{name}: the output folder {path} does not exist.")
    if not os.access(path, os.W_OK | os.X_OK):
        raise FolderNotWritableError(
            f"{name}: the output folder {path} is not writable (permission denied)."
        )
    # os.access trusts permission bits: for root it says yes on /proc and the like, where
    # creating a file still fails, so a real (removed) file settles it before the work
    try:
        handle, probe = tempfile.mkstemp(dir=path, prefix=".convstack-probe-", suffix=".tmp")
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise FolderNotWritableError(
            f"{name}: cannot create a file in the output folder {path} ({reason})."
        ) from exc
    os.close(handle)
    os.unlink(probe)
    return path


def check_target(
    path: PathLike,
    *,
    overwrite: bool = False,
    inputs: Inputs | Iterable[PathLike] = (),
) -> Path:
    """Refuse a target that :func:`write_bytes` would refuse; return it as a Path.

    Parameters
    ----------
    path : str or path-like
        The file to be written.
    overwrite : bool
        Whether an existing file may be replaced.
    inputs : Inputs or iterable of paths
        Files that ``path`` may never be, ``overwrite`` or not.

    Raises
    ------
    InputTargetError
        ``path`` is one of ``inputs`` (also through a link).
    TargetIsFolderError, TargetExistsError
        ``path`` is a folder, or exists and ``overwrite`` is False.
    FolderMissingError, FolderNotWritableError
        Its folder is missing or not writable.
    """
    file = Path(path)
    source = _as_inputs(inputs).match(file)
    if source is not None:
        raise InputTargetError(
            f"{file}: is one of the inputs ({source}); an input is never written, "
            "--force (overwrite=True) or not."
        )
    if file.is_dir():
        raise TargetIsFolderError(f"{file}: is a folder.")
    if not overwrite and os.path.lexists(file):
        raise TargetExistsError(
            f"{file}: already exists (use --force, or overwrite=True in Python, to replace it)."
        )
    check_folder(file.parent, what=str(file))
    return file


def write_bytes(
    path: PathLike,
    data: bytes,
    *,
    overwrite: bool = False,
    inputs: Inputs | Iterable[PathLike] = (),
) -> Path:
    """Write ``data`` to ``path`` by the module's rules (atomic, no clobber, inputs safe).

    Returns the path written; raises what :func:`check_target` raises, and
    :class:`TargetExistsError` if another writer created ``path`` meanwhile.
    """
    return write_stream(path, lambda stream: stream.write(data), overwrite=overwrite, inputs=inputs)


def write_stream(
    path: PathLike,
    fill: Callable[[BinaryIO], object],
    *,
    overwrite: bool = False,
    inputs: Inputs | Iterable[PathLike] = (),
) -> Path:
    """Write what ``fill(stream)`` writes to a binary stream, by the module's rules."""

    def fill_path(temp: str, fd: int) -> None:
        with os.fdopen(os.dup(fd), "wb") as stream:
            fill(stream)

    return _write(path, fill_path, overwrite, inputs, ".tmp")


def write_via_path(
    path: PathLike,
    fill: Callable[[str], object],
    *,
    overwrite: bool = False,
    inputs: Inputs | Iterable[PathLike] = (),
) -> Path:
    """Write the file that ``fill(temp_path)`` creates at a temporary path, by the rules.

    For writers that want a file name (matplotlib's ``savefig``, its GIF writer): the
    temporary name ends in ``.tmp`` plus the target's own extension, so that a writer
    that picks its format from the extension picks the right one.
    """
    file = Path(path)
    return _write(file, lambda temp, fd: fill(temp), overwrite, inputs, ".tmp" + file.suffix)


def _write(
    path: PathLike,
    fill: Callable[[str, int], object],
    overwrite: bool,
    inputs: Inputs | Iterable[PathLike],
    suffix: str,
) -> Path:
    file = check_target(path, overwrite=overwrite, inputs=inputs)
    # The temporary name is noted before the file is made, so that however this is
    # left (an exception, or a signal's handler raising one between any two
    # instructions) the ``finally`` below knows what to remove. A name already taken
    # belongs to someone else: it is forgotten before the next try.
    temp: str | None = None
    name = ""
    fd = -1
    placed = False
    try:
        while fd < 0:
            name = os.path.join(file.parent, f".{file.name}.{os.urandom(4).hex()}{suffix}")
            temp = name
            try:
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                temp = None
            except OSError as exc:  # (a folder that passed the checks, such as /proc)
                temp = None
                reason = (exc.strerror or str(exc)).lower()
                raise OSError(
                    exc.errno, f"cannot create a file in {file.parent} ({reason})", str(file)
                ) from None
        fill(name, fd)
        _fsync(fd)
        os.close(fd)
        fd = -1
        os.chmod(name, 0o666 & ~_umask())  # made 0600 above: the usual file mode now
        if overwrite:
            os.replace(name, file)
            placed = True
        else:
            _place_new(name, file)
        _sync_folder(file.parent)
    finally:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
        if temp is not None and not placed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
    return file


def _place_new(temp: str, file: Path) -> None:
    """Give ``temp``'s data the name ``file`` only if no file has that name: one atomic
    step (a hard link), so that of two writers racing for the name exactly one wins."""
    try:
        os.link(temp, file)
    except FileExistsError:
        raise TargetExistsError(_raced(file)) from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        _place_new_without_links(temp, file)


#: What ``link`` fails with where the file system has no hard links (FAT, some
#: network and FUSE file systems).
_NO_LINKS = frozenset(
    code
    for code in (
        errno.EPERM,
        getattr(errno, "ENOTSUP", None),
        getattr(errno, "EOPNOTSUPP", None),
        getattr(errno, "ENOSYS", None),
        errno.EMLINK,
        errno.EXDEV,
    )
    if code is not None
)


def _place_new_without_links(temp: str, file: Path) -> None:
    """The name reserved by an exclusive create, then the data renamed over the
    (empty, own) reservation; the reservation is removed if that fails."""
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise TargetExistsError(_raced(file)) from None
    os.close(fd)
    try:
        os.replace(temp, file)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(file)
        raise


def _raced(file: Path) -> str:
    return (
        f"{file}: already exists: another program created it while this one was writing; "
        "nothing was replaced (use --force, or overwrite=True in Python, to replace it)."
    )


def _fsync(fd: int) -> None:
    """Flush the temporary file's data to the disk before it takes the target's name."""
    os.fsync(fd)


def _sync_folder(folder: Path) -> None:
    """Flush the folder's new entry, so that the new name survives a power cut."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # (a folder cannot be opened on every system)
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """This process's umask (read by setting it, so one thread at a time)."""
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask
