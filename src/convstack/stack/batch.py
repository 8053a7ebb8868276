"""Many focus stacks: find them under a folder, fuse each one, and report.

The schedule, one small function per step:

1. :func:`find_stacks` walks a folder and returns its stacks: every folder holding two
   or more frames (natural name order), or, with a :class:`Grouping`, the runs of
   frames of one folder that share a file-name prefix or that were taken without a
   pause longer than a number of seconds (EXIF ``DateTimeOriginal``, else the file's
   modification time, with a note).
2. A *work* object (:class:`FuseWork` here; the command line passes its own, which
   runs ``convstack fuse`` itself) names each stack's outputs
   (``work.outputs(stack, outdir)``, mirroring the tree under the folder) and makes
   them (``work(stack, outputs, overwrite)``).
3. :func:`run_batch` skips the stacks whose outputs all exist (unless ``force``) and
   runs the others one by one or in ``jobs`` worker processes (or, through
   :mod:`convstack.stack.cluster`, on a Dask cluster). :func:`run_stack` runs one stack
   and turns any failure into a :class:`Record`: one bad stack never stops the others.
4. :func:`write_report` writes the records as JSON lines through the one writer.

Nothing is left half-written: every file goes through :mod:`convstack._writer` (a
temporary file that takes its name when complete); a stack that fails after writing
some of its outputs removes them; a worker killed outright (``kill -9``, a lost
cluster node) leaves the writer's temporary file behind, which the retry of that
stack and the end of the batch remove (:func:`remove_stale_temps`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import resource
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from .. import _validate as v
from .. import _writer
from ..progress import ProgressCallback, report
from . import io as _io
from . import zstack as _zstack
from .errors import FrameReadError

__all__ = [
    "REPORT_NAME",
    "FuseWork",
    "Grouping",
    "Outputs",
    "Record",
    "Stack",
    "Work",
    "capture_time",
    "find_stacks",
    "load_ahead",
    "parse_group",
    "preload_for_workers",
    "remove_stale_temps",
    "run_batch",
    "run_stack",
    "temporary_environment",
    "unset_worker_environment",
    "worker_environment",
    "worker_memory_limit",
    "worker_start_method",
    "write_report",
]

logger = logging.getLogger(__name__)

#: The report's file name in the output folder (JSON lines, one record per stack).
REPORT_NAME = "batch-report.jsonl"

_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 36867
_SUBSEC_ORIGINAL = 37521


# ------------------------------------------------------------------ what a batch is made of


@dataclass(frozen=True)
class Stack:
    """One focus stack found under the batch's folder.

    Attributes
    ----------
    name : str
        Its place in the tree, '/'-separated: the folder relative to the root (the
        root's own name for frames directly in it), plus ``/LABEL`` for a group.
    frames : tuple of Path
        The frames, in focus order.
    note : str or None
        Anything worth saying about how it was found (capture times from file times).
    """

    name: str
    frames: tuple[Path, ...]
    note: str | None = None


@dataclass(frozen=True)
class Outputs:
    """The files one stack makes: the fused image, and the depth map if asked for;
    ``extra`` are further files or folders of its own that it may write (the steps
    folder: not needed for completeness, kept when the stack fails)."""

    image: Path
    depth: Path | None = None
    extra: tuple[Path, ...] = ()

    def files(self) -> list[Path]:
        """The files that must all exist for the stack to be done."""
        return [self.image] if self.depth is None else [self.image, self.depth]

    def complete(self) -> bool:
        """Whether every file of :meth:`files` exists (each is written atomically, so an
        existing one is whole)."""
        return all(path.is_file() for path in self.files())


@dataclass
class Record:
    """What happened to one stack: a line of the report.

    ``status`` is 'done', 'skipped' (its outputs exist), 'failed' (``error`` says
    why) or 'interrupted' (the batch was stopped before the stack ended: it left no
    output). ``peak_rss`` is the largest resident size in bytes of the process that ran
    it, during this stack where the system allows measuring so (Linux), else during
    the process's life; ``peak_rss_children`` the largest of its finished child
    processes (the frame reader that ``fuse`` forks), over the process's life.
    ``residual`` is the alignment residual, None: ``fuse`` does not expose one.
    """

    stack: str
    frames: int
    status: str
    error: str | None = None
    seconds: float = 0.0
    peak_rss: int | None = None
    peak_rss_children: int | None = None
    residual: float | None = None
    outputs: list[str] = field(default_factory=list)
    note: str | None = None
    worker: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        return asdict(self)


class Work(Protocol):
    """What :func:`run_batch` does with each stack (picklable: it may run elsewhere)."""

    def outputs(self, stack: Stack, outdir: Path) -> Outputs:
        """The files ``stack`` makes under ``outdir``."""
        ...

    def __call__(self, stack: Stack, outputs: Outputs, overwrite: bool) -> None:
        """Make ``outputs`` from ``stack``; raise on failure."""
        ...


# ------------------------------------------------------------------ finding the stacks


@dataclass(frozen=True)
class Grouping:
    """How the frames of one folder make stacks.

    ``kind`` is 'folder' (all of them, one stack), 'prefix' (one stack per file-name
    prefix: the name less its extension and its trailing digits and separators) or
    'gap' (a new stack where consecutive frames were taken more than ``gap`` seconds
    apart).
    """

    kind: str = "folder"
    gap: float = 0.0


def parse_group(text: str) -> Grouping:
    """A :class:`Grouping` from its command-line form: 'folder', 'prefix' or 'gap=SECONDS'.

    >>> parse_group("gap=2.5")
    Grouping(kind='gap', gap=2.5)
    """
    if not isinstance(text, str):
        raise v.fail("group", "be a string", text, kind=TypeError)
    if text in ("folder", "prefix"):
        return Grouping(text)
    if text.startswith("gap="):
        try:
            seconds = float(text[4:])
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"`group` gap must be a number of seconds > 0; got {text[4:]!r}.")
        return Grouping("gap", seconds)
    raise ValueError(f"`group` must be 'folder', 'prefix' or 'gap=SECONDS'; got {text!r}.")


def _walk(root: Path, exclude: list[str]) -> Iterator[Path]:
    """``root`` and the folders below it, depth first in natural order, skipping hidden
    folders, the ``exclude`` folders and (so that no loop is followed) linked ones."""
    yield root
    try:
        children = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError as exc:
        logger.warning("cannot list %s (%s); skipped", root, exc.strerror or exc)
        return
    for child in sorted(children, key=lambda p: _io.natural_key(p.name)):
        if child.name.startswith(".") or os.path.realpath(child) in exclude:
            continue
        yield from _walk(child, exclude)


_PREFIX = re.compile(r"[\s_.-]*\d+[\s_.-]*$")


def _prefix(path: Path) -> str:
    """A frame's stack prefix: its stem less trailing digits and separators.

    >>> _prefix(Path("beetle_0012.jpg")), _prefix(Path("0003.png"))
    ('beetle', '')
    """
    return _PREFIX.sub("", path.stem)


def capture_time(path: Path) -> tuple[float, bool]:
    """When a frame was taken, in seconds, and whether that is its EXIF capture time
    (``DateTimeOriginal``, with ``SubSecTimeOriginal`` if present) or, failing that,
    the file's modification time (False)."""
    exif = _io.read_metadata(path).exif
    if exif:
        from PIL import Image

        try:
            tags = Image.Exif()
            tags.load(exif)
            sub = tags.get_ifd(_EXIF_IFD)
            stamp = sub.get(_DATETIME_ORIGINAL)
            if isinstance(stamp, str):
                seconds = datetime.strptime(stamp.strip("\x00 "), "%Y:%m:%d %H:%M:%S").timestamp()
                fraction = str(sub.get(_SUBSEC_ORIGINAL, "")).strip("\x00 ")
                if fraction.isdigit():
                    seconds += int(fraction) / 10 ** len(fraction)
                return seconds, True
        except Exception:  # a malformed EXIF block is as good as none
            pass
    return path.stat().st_mtime, False


def _by_gap(frames: list[Path], gap: float) -> tuple[list[list[Path]], str | None]:
    """Runs of ``frames`` (in order) with no pause over ``gap`` seconds between two."""
    times = [capture_time(frame) for frame in frames]
    missing = [frame.name for frame, (_, exif) in zip(frames, times, strict=True) if not exif]
    note = None
    if missing:
        some = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        note = f"no EXIF DateTimeOriginal in {some}: used the file modification time"
    runs: list[list[Path]] = [[frames[0]]]
    for (before, _), (after, _), frame in zip(times, times[1:], frames[1:], strict=False):
        if abs(after - before) > gap:
            runs.append([])
        runs[-1].append(frame)
    return runs, note


def _groups(frames: list[Path], grouping: Grouping) -> list[tuple[str, list[Path], str | None]]:
    """The stacks of one folder's frames: (label or '', frames, note)."""
    if grouping.kind == "folder":
        return [("", frames, None)]
    if grouping.kind == "prefix":
        by_prefix: dict[str, list[Path]] = {}
        for frame in frames:
            by_prefix.setdefault(_prefix(frame), []).append(frame)
        return [(label or "stack", run, None) for label, run in by_prefix.items()]
    runs, note = _by_gap(frames, grouping.gap)
    return [(run[0].stem, run, note) for run in runs]


def find_stacks(
    root: str | os.PathLike[str],
    *,
    group: Grouping | str = "folder",
    exclude: Iterable[str | os.PathLike[str]] = (),
) -> list[Stack]:
    """Find the focus stacks under ``root``.

    Parameters
    ----------
    root : str or path-like
        The folder to search, with the folders below it (hidden and linked folders
        are not entered).
    group : Grouping or str
        'folder' (each folder is one stack), 'prefix' or 'gap=SECONDS' (see
        :class:`Grouping`).
    exclude : iterable of paths
        Folders not to search (the batch's output folder, when it lies inside ``root``).

    Returns
    -------
    list of Stack
        Every group of two or more frames, folders in natural order; a lone frame
        makes no stack (logged).

    Raises
    ------
    ValueError
        ``root`` is not a folder, or ``group`` is not understood.
    """
    grouping = parse_group(group) if isinstance(group, str) else group
    if not isinstance(grouping, Grouping):
        raise v.fail("group", "be a Grouping or a string", group, kind=TypeError)
    top = Path(root)
    if not top.is_dir():
        raise ValueError(f"`root` must be a folder; got {os.fspath(root)!r}.")
    skip = [os.path.realpath(p) for p in exclude]
    stacks: list[Stack] = []
    for folder in _walk(top, skip):
        try:
            frames = _io.list_frames([folder])
        except FrameReadError:  # holds no image
            continue
        relative = folder.relative_to(top).as_posix()
        base = top.resolve().name if relative == "." else relative
        # a z-stack file (multi-page, ImageJ or OME-TIFF) is a stack of its own (issue 15)
        zstacks = [f for f in frames if _zstack.is_zstack(f)]
        for path in zstacks:
            stacks.append(Stack(f"{base}/{path.name.split('.')[0]}", (path,), "a z-stack file"))
        frames = [f for f in frames if f not in zstacks]
        if not frames:
            continue
        for label, run, note in _groups(frames, grouping):
            name = f"{base}/{label}" if label else base
            if len(run) < 2:
                logger.info("%s: one frame (%s), not a stack; skipped", name, run[0])
                continue
            stacks.append(Stack(name, tuple(run), note))
    return stacks


# ------------------------------------------------------------------ fusing one stack


@dataclass(frozen=True)
class FuseWork:
    """Fuse a stack with :func:`convstack.stack.fuse` and write the result (and the
    depth map) as ``convstack fuse`` does: the reference frame's EXIF and ICC kept,
    the depth map as 16-bit (8-bit for JPEG) frame indices scaled to the full range.

    Attributes
    ----------
    method, align, reference, photometric
        Passed to ``fuse``.
    depth_map : bool
        Also write ``NAME.depth.png`` beside ``NAME.EXT``.
    format : str or None
        The result's extension ('png', 'tif', 'jpg'); default the first frame's.
    """

    method: str | None = None
    align: str = "similarity"
    reference: int | None = None
    photometric: bool = False
    depth_map: bool = False
    format: str | None = None

    def outputs(self, stack: Stack, outdir: Path) -> Outputs:
        """``OUTDIR/NAME.EXT`` (and ``OUTDIR/NAME.depth.png``)."""
        ext = "." + self.format.lstrip(".") if self.format else stack.frames[0].suffix.lower()
        base = outdir.joinpath(*stack.name.split("/"))
        depth = base.with_name(base.name + ".depth.png") if self.depth_map else None
        return Outputs(base.with_name(base.name + ext), depth)

    def kernels(self, stack: Stack) -> dict[str, Any]:
        """The kernels fusing ``stack`` calls (for :func:`load_ahead`)."""
        from .._preload import fuse_kernels
        from .pipeline import DEFAULT_METHOD

        method = self.method or DEFAULT_METHOD
        return fuse_kernels(stack.frames, align=self.align, method=method)

    def __call__(self, stack: Stack, outputs: Outputs, overwrite: bool) -> None:
        """Fuse ``stack`` and write ``outputs``."""
        import numpy as np

        from .depth import depth_to_image
        from .pipeline import DEFAULT_METHOD, fuse

        inputs = _writer.Inputs(stack.frames)
        for path in outputs.files():  # refused before the work, as `fuse` does
            _io.check_output(path, overwrite=overwrite, inputs=inputs)
        result = fuse(
            list(stack.frames),
            method=self.method or DEFAULT_METHOD,
            align=self.align,
            reference=self.reference,
            photometric=self.photometric,
        )
        metadata = _io.read_metadata(stack.frames[result.reference])
        _io.write_image(
            outputs.image, result.image, overwrite=overwrite, metadata=metadata, inputs=inputs
        )
        if outputs.depth is not None:
            jpeg = outputs.depth.suffix.lower() in (".jpg", ".jpeg")
            count = len(result.transforms)  # (a z-stack file: its planes)
            depth = depth_to_image(result.depth, count, np.uint8 if jpeg else np.uint16)
            _io.write_image(outputs.depth, depth, overwrite=overwrite, inputs=inputs)


def remove_stale_temps(outputs: Outputs) -> list[Path]:
    """Remove the writer's temporary files of ``outputs`` (``.NAME.XXXXXXXX.tmp...``)
    left by a process killed while writing; return those removed.

    Only call it where no live process is writing these outputs: before a stack is
    (re)run, and when the batch has ended.
    """
    places = [(path.parent, re.escape(f".{path.name}.")) for path in outputs.files()]
    for extra in outputs.extra:  # a folder of the stack's own (steps): any file's
        places.append(
            (extra, r"\..+\.") if extra.is_dir() else (extra.parent, re.escape(f".{extra.name}."))
        )
    removed = []
    for folder, name in places:
        pattern = re.compile(name + r"[0-9a-f]{8}\.tmp.*")
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                if pattern.fullmatch(entry.name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed.append(Path(entry.path))
    return removed


def _reset_peak() -> bool:
    """Reset this process's peak resident size (Linux); whether it could."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _peak_rss() -> int:
    """This process's peak resident size in bytes (since the last reset, on Linux)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns


def _describe(exc: BaseException) -> str:
    """One line for a stack's failure (an ``OSError``'s path and reason)."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{os.fsdecode(exc.filename)}: {exc.strerror}."
    return str(exc) or type(exc).__name__


#: Whether this process is running a stack (a worker's SIGTERM handler asks), and
#: the exit status a worker told to stop ends with once its stack has unwound.
_busy = False
_stopping = 0


def run_stack(work: Work, stack: Stack, outputs: Outputs, overwrite: bool) -> Record:
    """Run ``work`` on one stack and return its :class:`Record`; never raises for a
    failure of the stack (only ``KeyboardInterrupt`` and the like pass).

    First removes temporary files a killed earlier try left (:func:`remove_stale_temps`);
    if the work fails or is interrupted, removes the outputs it had written.
    """
    remove_stale_temps(outputs)
    before = {path: _stat(path) for path in outputs.files()}
    record = Record(stack.name, len(stack.frames), "done", note=stack.note)
    record.worker = f"{socket.gethostname()}:{os.getpid()}"
    record.outputs = [str(path) for path in outputs.files()]
    if not overwrite and outputs.complete():
        # the batch skips stacks whose outputs exist before it starts: these were
        # written by an earlier try of this task, whose record was lost with its worker
        record.note = _join(record.note, "outputs written by an earlier try")
        return record
    exact = _reset_peak()
    started = time.perf_counter()
    global _busy
    try:
        _busy = True
        work(stack, outputs, overwrite)
    except Exception as exc:
        record.status, record.error = "failed", _describe(exc)
        logger.debug("stack %s failed", stack.name, exc_info=True)
    finally:
        _busy = False
        record.seconds = round(time.perf_counter() - started, 3)
        if record.status != "done" or not _done(outputs):
            _remove_written(before)
        if _stopping:  # a worker process told to stop takes no further stack
            os._exit(_stopping)
    if record.status == "done" and not _done(outputs):
        record.status, record.error = "failed", "the work ended without writing every output."
    record.peak_rss = _peak_rss()
    if not exact:
        record.note = _join(record.note, "peak_rss is the worker's peak over its life")
    record.peak_rss_children = int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) * 1024
    return record


def _done(outputs: Outputs) -> bool:
    return outputs.complete()


def _join(a: str | None, b: str) -> str:
    return b if not a else f"{a}; {b}"


def _remove_written(before: dict[Path, tuple[int, int] | None]) -> None:
    """Remove the outputs made or replaced since ``before`` (a stack's outputs come
    whole, all of them, or not at all)."""
    for path, stat in before.items():
        if _stat(path) != stat:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


# ------------------------------------------------------------------ the batch


def worker_environment(jobs: int, cpus: int | None = None) -> dict[str, str]:
    """Environment for ``jobs`` worker processes on ``cpus`` cores: each gets an equal
    share of threads (``CONVSTACK_THREADS``), and when there are at least as many jobs
    as cores, ``fuse`` keeps its work in one process (``CONVSTACK_FORK=0``): the jobs
    already fill the cores.

    >>> worker_environment(2, cpus=2)
    {'CONVSTACK_THREADS': '1', 'CONVSTACK_FORK': '0'}
    """
    cores = cpus or os.cpu_count() or 1
    env = {"CONVSTACK_THREADS": str(max(1, cores // max(1, jobs)))}
    if jobs >= cores:
        env["CONVSTACK_FORK"] = "0"
    return env


def unset_worker_environment(jobs: int) -> dict[str, str]:
    """:func:`worker_environment` less the variables this process's environment sets
    already (the user's choice wins)."""
    return {key: value for key, value in worker_environment(jobs).items() if key not in os.environ}


@contextlib.contextmanager
def temporary_environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables (inherited by processes started meanwhile), then
    restore them."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


Task = tuple[Stack, Outputs]
Runner = Callable[[Work, Sequence[Task], bool, Callable[[Record], None]], None]


def _plan(
    stacks: Sequence[Stack], outdir: Path, work: Work, force: bool
) -> tuple[list[Task], list[Record]]:
    """The stacks to run and the records of those skipped (outputs there) or refused
    (some outputs there, some not: redone only with ``force``)."""
    tasks: list[Task] = []
    settled: list[Record] = []
    for stack in stacks:
        outputs = work.outputs(stack, outdir)
        present = [path for path in outputs.files() if os.path.lexists(path)]
        if force or not present:
            tasks.append((stack, outputs))
            continue
        record = Record(stack.name, len(stack.frames), "skipped", note=stack.note)
        record.outputs = [str(path) for path in outputs.files()]
        if len(present) < len(outputs.files()):
            missing = [str(p) for p in outputs.files() if p not in present]
            record.status = "failed"
            record.error = (
                f"{', '.join(map(str, present))} exists but not {', '.join(missing)}; "
                "use --force (force=True) to redo the stack."
            )
        settled.append(record)
    return tasks, settled


def _run_here(
    work: Work, tasks: Sequence[Task], force: bool, done: Callable[[Record], None]
) -> None:
    for stack, outputs in tasks:
        done(run_stack(work, stack, outputs, force))


def worker_start_method() -> str:
    """How the workers start: forked from this process where that is safe (Linux, no
    other thread running), else spawned.

    A forked worker starts with this process's modules loaded (the pipeline, numba),
    where a spawned one starts an interpreter and imports them again: about 0.3 s of CPU
    a worker, plus numba's 0.2 s (:func:`preload_for_workers`). Fork is unsafe with other threads
    (a lock one held stays held in the child); macOS's frameworks forbid it.
    """
    import multiprocessing
    import sys
    import threading

    methods = multiprocessing.get_all_start_methods()
    if sys.platform == "linux" and "fork" in methods and threading.active_count() == 1:
        return "fork"
    # spawn: a fresh interpreter with this process's environment (the thread share);
    # forkserver keeps the environment it started with
    return "spawn" if "spawn" in methods else "fork"


def load_ahead(work: Work, tasks: Sequence[Task]) -> None:
    """Load the kernels the stacks call here, before the workers fork: they inherit them.
    On a cold cache (a fresh install) left to themselves every worker compiled the same
    kernels at once beside the others (numba compiles one at a time per process), and two
    processes filing different signatures of one kernel at the same moment can mix up
    its cache index; warm, each worker loaded them on its own. ``work`` says which with a
    ``kernels(stack)`` method (keyword arguments of
    :func:`convstack._preload.load_fuse_kernels`); each different set (frames' dtype,
    grey or colour, options) is loaded once. Without such a method, nothing."""
    kernels = getattr(work, "kernels", None)
    if kernels is None or not tasks:
        return
    from .. import _preload

    seen = set()
    for stack, _ in tasks:
        try:
            chosen = kernels(stack)
        except (OSError, ValueError):  # unreadable: that stack's own run will say so
            continue
        frame = chosen["frame"]  # (shape, dtype): the kernels follow channels and dtype
        kind = None if frame is None else (frame[0][2:], frame[1].str)
        key = (chosen["warp"], chosen["pyramid"], chosen["classic"], chosen["png"], kind)
        if key not in seen:
            seen.add(key)
            _preload.load_fuse_kernels(**chosen)


def preload_for_workers() -> None:
    """Before forking the workers: load what every stack needs (the pipeline and numba,
    0.5 s of imports) once here, not once in each worker. Loads no kernel and starts no
    thread. (A setting read at import follows the worker's environment all the same:
    the modules that read one re-read it in a forked child.)"""
    from .. import _jit  # noqa: F401 (numba: the kernels' compiler, loaded once)
    from . import pipeline  # noqa: F401


def worker_memory_limit(jobs: int) -> int:
    """Each of ``jobs`` workers' share of the memory limit in force here (bytes): the
    batch's budget is split between the stacks that run at once.

    The limit is :func:`convstack.limits.get_memory_limit` (``CONVSTACK_MEMORY_LIMIT``,
    else half of this machine's memory); ``fuse`` plans each stack within its share.
    """
    from ..limits import get_memory_limit

    return max(1, get_memory_limit() // max(1, jobs))


def _worker_started(memory_limit: int) -> None:
    """In a worker process: its share of the memory limit; Ctrl-C is the batch's to
    handle (it stops the workers); SIGTERM unwinds a running stack like Ctrl-C (its
    temporary and written files removed), and ends an idle worker at once."""
    import signal

    from ..limits import set_memory_limit

    set_memory_limit(memory_limit)

    def stop(signum: int, frame: Any) -> None:
        global _stopping
        if _busy:
            _stopping = 128 + signum  # the stack unwinds, then the process ends
            raise KeyboardInterrupt(f"signal {signum}")
        os._exit(128 + signum)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)


def _run_in_processes(jobs: int) -> Runner:
    def runner(
        work: Work, tasks: Sequence[Task], force: bool, done: Callable[[Record], None]
    ) -> None:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        method = worker_start_method()
        if method == "fork":
            preload_for_workers()
            load_ahead(work, tasks)
        with temporary_environment(unset_worker_environment(jobs)):
            pool = ProcessPoolExecutor(  # (a forked worker inherits the environment here)
                max_workers=min(jobs, len(tasks)),
                mp_context=multiprocessing.get_context(method),
                initializer=_worker_started,
                initargs=(worker_memory_limit(jobs),),
            )
            try:
                pending = {
                    pool.submit(run_stack, work, stack, outputs, force) for stack, outputs in tasks
                }
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        done(future.result())
            except BaseException:
                _stop_workers(pool)
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

    return runner


def _stop_workers(pool: Any) -> None:
    """End the pool's worker processes: SIGTERM (they unwind, removing their temporary
    files), then SIGKILL for any still there after 5 s."""
    processes = list(getattr(pool, "_processes", {}).values())
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    deadline = time.monotonic() + 5.0
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)


def run_batch(
    stacks: Sequence[Stack],
    outdir: str | os.PathLike[str],
    work: Work | None = None,
    *,
    jobs: int = 1,
    force: bool = False,
    runner: Runner | None = None,
    progress: ProgressCallback | None = None,
    on_record: Callable[[Record], None] | None = None,
) -> list[Record]:
    """Fuse every stack, ``jobs`` at a time; return one :class:`Record` per stack, in
    the order of ``stacks``.

    Parameters
    ----------
    stacks : sequence of Stack
        From :func:`find_stacks`.
    outdir : str or path-like
        Where the outputs go (``work.outputs`` names them; folders are made).
    work : Work, optional
        What to do with each stack; default :class:`FuseWork` ().
    jobs : int
        Stacks run at once, each in a worker process (1: one by one, in this process).
    force : bool
        Redo stacks whose outputs exist (replacing them); by default they are skipped.
    runner : callable, optional
        Runs the tasks elsewhere (see :func:`convstack.stack.cluster.dask_runner`).
    progress : callable, optional
        ``progress('stacks', done, total)`` as stacks end, over the stacks to run (not
        those skipped, which would make a rerun's time left look short).
    on_record : callable, optional
        Called with each record as its stack ends.

    Raises
    ------
    ValueError
        ``jobs`` is not a positive integer.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise v.fail("jobs", "be an integer >= 1", jobs)
    chosen: Work = FuseWork() if work is None else work
    root = Path(outdir)
    tasks, settled = _plan(stacks, root, chosen, force)
    records: dict[str, Record] = {}
    announced: set[str] = set()  # passed to on_record

    def announce(record: Record) -> None:
        if on_record is not None:
            on_record(record)
        announced.add(record.stack)

    def done(record: Record) -> None:
        records[record.stack] = record
        announce(record)
        report(progress, "stacks", len(records) - len(settled), len(tasks))

    for record in settled:  # (not in the progress: its time left is the stacks to run's)
        records[record.stack] = record
        announce(record)
    report(progress, "stacks", 0, len(tasks))
    for _, outputs in tasks:
        for path in [*outputs.files(), *outputs.extra]:
            path.parent.mkdir(parents=True, exist_ok=True)
    if runner is None:
        runner = _run_here if jobs == 1 or len(tasks) < 2 else _run_in_processes(jobs)
    before = {path: _stat(path) for _, outputs in tasks for path in outputs.files()}
    try:
        if tasks:
            runner(chosen, tasks if runner is _run_here else _longest_first(tasks), force, done)
    except KeyboardInterrupt:  # Ctrl-C, or the CLI's SIGTERM: the runner stopped its workers
        for record in _settle_interrupted(tasks, records, before):
            records[record.stack] = record
        for name, record in records.items():  # (the signal may have come between the two)
            if name not in announced:
                announce(record)
        raise
    finally:  # killed workers' leftovers (a run that ended, or was interrupted)
        for _, outputs in tasks:
            remove_stale_temps(outputs)
    return [records[stack.name] for stack in stacks if stack.name in records]


def _longest_first(tasks: Sequence[Task]) -> list[Task]:
    """The tasks, the biggest stacks first (bytes of frames): parallel workers then end
    together rather than one of them fusing a big stack alone at the end."""

    def size(task: Task) -> int:
        total = 0
        for frame in task[0].frames:
            with contextlib.suppress(OSError):
                total += frame.stat().st_size
        return total

    return sorted(tasks, key=size, reverse=True)  # stable: equal sizes keep their order


def _settle_interrupted(
    tasks: Sequence[Task], records: dict[str, Record], before: dict[Path, tuple[int, int] | None]
) -> list[Record]:
    """Records for the stacks an interrupted batch did not report: 'done' for one whose
    outputs were all written (its record was lost with its stopped worker), else
    'interrupted', its outputs written since ``before`` removed (none is left half done).
    """
    settled = []
    for stack, outputs in tasks:
        if stack.name in records:
            continue
        record = Record(stack.name, len(stack.frames), "interrupted", note=stack.note)
        record.outputs = [str(path) for path in outputs.files()]
        changed = {path: before[path] for path in outputs.files() if _stat(path) != before[path]}
        if len(changed) == len(outputs.files()) and outputs.complete():
            record.status = "done"
            record.note = _join(record.note, "ended as the batch was interrupted: no timing")
        else:
            _remove_written(changed)
            record.error = "the batch was interrupted before this stack ended."
        settled.append(record)
    return settled


def write_report(
    records: Iterable[Record],
    path: str | os.PathLike[str],
    *,
    overwrite: bool = True,
    inputs: _writer.Inputs | Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Write the records as JSON lines, atomically, by the one writer's rules.

    The report of a batch run replaces that of the run before (``overwrite``); it is
    never one of ``inputs`` (the frames).
    """
    import json

    text = "".join(json.dumps(record.to_json(), sort_keys=True) + "\n" for record in records)
    return _writer.write_bytes(path, text.encode(), overwrite=overwrite, inputs=inputs)
