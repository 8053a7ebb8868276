"""The scheduler of :func:`convstack.stack.fuse`: who reads, registers, warps and
measures each frame, so that the merge never waits long.

One frame is read and registered by a worker (a forked child process, see
:mod:`convstack.stack.forked`, or a worker thread where forking is not safe) while
the previous one is merged in this thread: two frames in flight. Warping and
measuring go to the worker or stay here, whichever balances the two by the
measured step times (registration costs more than merging for small frames, less
for large ones). A child process that has more to do than this one also gets some
of its frames read here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._libc import release_free_pages
from ..limits import LimitError, format_size
from . import registration_report as _report
from ._frames import Frame, is_identity, measure_focus, planar, to_reference_grid
from ._registrar import Registrar
from ._source import FrameSource
from ._strip_major import unit_bits
from .errors import StackError
from .forked import Channel, ForkedWorker, can_fork, fork_forced, shared_array
from .io import drop_read_ahead
from .strips import STRIP_LEVEL, STRIP_WORKERS, rows_for_budget, strip_bytes

__all__ = [
    "FORK_MIN_PIXELS",
    "STEPS",
    "MemoryPlan",
    "Scheduler",
    "balanced_share",
    "estimate_peak",
    "estimate_strip_major",
    "loads",
    "mean_costs",
    "plan_memory",
    "read_credit",
]

#: The peak of a fuse, all processes (the sum of their VmRSS, sampled: bench/memory.py),
#: as (fixed bytes, bytes a pixel, bytes a pixel and channel) of one frame, the merge
#: strips' temporaries not included: fitted to bench/README.md's "## Memory" runs of
#: the pyramid merge (8-bit colour 6, 12 and 45 MP; 16-bit grey 6 and 24 MP) and set
#: 6-12 % above every one of them (sampling misses short peaks; the load and the
#: allocator's reuse move a run by a few %); ``_FORKED`` includes the reader's process
#: and its copies.
_ONE_PROCESS = (300 << 20, 85, 10)
_FORKED = (500 << 20, 60, 30)

#: Bytes a channel sample costs per byte of the frames' samples over one (raw frames
#: in flight, in slots, in the reader and their float copies: about six copies; a
#: guess on the safe side, uint16 measured within it, floats not measured).
_PER_SAMPLE_BYTE = 6

#: The strip-major merge's peak (:mod:`convstack.stack._strip_major`, one process):
#: the larger of its first pass with the depth regularisation (fixed bytes, bytes a
#: pixel, bytes a pixel and channel: the frame on the grid, the next one read and
#: registered, the measure (in strips) and the votes, and the regularisation's maps on
#: the voting grid) and its second pass (bytes a pixel beside each channel's result
#: sample: the depth map and confidence at full size; plus the strips, below).
#: Fitted to bench/memory.py's runs and set at or above them: 45 MP colour 8-bit
#: under --memory-limit 2GiB, 1.80-1.94 GiB (5 to 50 frames; estimate 1.96); 200 MP
#: grey 16-bit, 3.80 GiB (3 frames), 3.85 (20 frames, once the command's allocator
#: maps large blocks again under this merge: ``_libc.bounded_heap``); estimate 3.94,
#: within 4 GiB. The top is the middle frames' measure while the next frame
#: registers, or the regularisation.
_STRIP_MAJOR = (320 << 20, 9.5, 8.5)

#: Bytes a pixel of the luma that colour frames measure, an array of its own (a grey
#: frame is its own luma: float32 already where it moved, checked to the bit where it
#: did not; see ``Scheduler.finish``).
_STRIP_MAJOR_LUMA = 4

#: Bytes a channel sample costs the strip-major merge per byte of integer samples over
#: one (the frame as read, and the next one: cached as read; 16-bit measured), and of
#: float samples (not measured: ``_PER_SAMPLE_BYTE``'s guess).
_STRIP_MAJOR_SAMPLE_BYTE = 1.5

_STRIP_MAJOR_SECOND = 10

#: Rows a strip of the strip-major merge where the budget allows (its second pass
#: merges every frame into each strip's rows plus about 150 of halo: 12 MP colour x 5,
#: strips of 160 / 512 / 1024 rows took 2.1 / 1.9 / 1.1-1.3 s in that pass).
STRIP_MAJOR_ROWS = 1024

#: Methods whose peak was measured; the others ('weighted': whole-frame masks and
#: sums, 'depthmap': a second pass) are given half as much again a pixel.
_MEASURED_METHODS = ("pyramid", "maxabs")


def estimate_strip_major(shape: tuple[int, ...], dtype: np.dtype[Any], strip_rows: int) -> int:
    """The expected peak bytes of :func:`convstack.stack.fuse`'s strip-major merge
    ('pyramid', 'maxabs'; one process) on frames of ``shape`` and ``dtype``, with strips
    of ``strip_rows`` rows; flat in the number of frames."""
    fixed, per_pixel, per_channel = _STRIP_MAJOR
    channels = shape[2] if len(shape) == 3 else 1
    itemsize = np.dtype(dtype).itemsize
    pixels = int(shape[0]) * int(shape[1])
    extra = _STRIP_MAJOR_SAMPLE_BYTE if np.dtype(dtype).kind in "ui" else _PER_SAMPLE_BYTE
    luma = _STRIP_MAJOR_LUMA if channels > 1 else 0
    first = per_pixel + luma + channels * (per_channel + extra * (itemsize - 1))
    # the second pass: two strips in work (their state, frame rows and temporaries)
    second = pixels * (_STRIP_MAJOR_SECOND + channels * itemsize)
    second += STRIP_WORKERS * strip_bytes(shape, strip_rows)
    return fixed + max(int(pixels * first), second)


def estimate_peak(
    shape: tuple[int, ...], dtype: np.dtype[Any], method: str, *, forked: bool
) -> int:
    """The expected peak bytes of :func:`convstack.stack.fuse` (all processes) on frames
    of ``shape`` and ``dtype``, without the merge strips' temporaries
    (:func:`convstack.stack.strips.strip_bytes`, added by :func:`plan_memory`).

    Flat in the number of frames (two in flight, whatever their number)."""
    fixed, per_pixel, per_channel = _FORKED if forked else _ONE_PROCESS
    channels = shape[2] if len(shape) == 3 else 1
    itemsize = np.dtype(dtype).itemsize
    pixel = per_pixel + channels * (per_channel + _PER_SAMPLE_BYTE * (itemsize - 1))
    if method not in _MEASURED_METHODS:
        pixel = pixel * 3 // 2
    # the measured constants include the default strips (64 MiB): taken out here
    return fixed - (64 << 20) + int(shape[0]) * int(shape[1]) * pixel


@dataclass(frozen=True)
class MemoryPlan:
    """How :func:`convstack.stack.fuse` keeps under its memory limit.

    Attributes
    ----------
    forked : bool
        Whether the reader may run as a forked child process (else a thread here).
    strip_rows : int or 'auto'
        The pyramid merge's rows a strip (``PyramidAccumulator(strip_rows=...)``).
    estimate : int
        The expected peak bytes, all processes.
    strip_major : bool
        Whether the pyramid merge runs strip-major (two passes, frames cached on
        disk: see :mod:`convstack.stack._strip_major`), for frames whose frame-major
        state does not fit.
    """

    forked: bool
    strip_rows: int | str
    estimate: int
    strip_major: bool = False


def plan_memory(
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    method: str,
    limit: int,
    *,
    default_rows: int,
    held: int = 0,
) -> MemoryPlan:
    """The schedule that fits ``limit`` bytes: the reader forked with the merge's
    default strips (``default_rows``) where that fits, else in a thread with strips as
    large as fit (down to ``2 ** STRIP_LEVEL`` rows), else ('pyramid' and 'maxabs')
    the strip-major merge with strips as large as fit.

    ``held``: bytes already in memory that the run keeps until it reads them (frames
    decoded ahead: :func:`convstack.stack.io.read_ahead_bytes`), counted within
    ``limit`` and in the plan's estimate: the estimates were measured without them.

    Raises
    ------
    LimitError
        If even the leanest schedule's estimate exceeds ``limit``.
    """
    pyramid = method in _MEASURED_METHODS
    asked, limit = limit, limit - held
    strips = strip_bytes(shape, default_rows) if pyramid else 0
    forked = estimate_peak(shape, dtype, method, forked=True)
    if forked + strips <= limit:
        return MemoryPlan(True, default_rows if pyramid else "auto", forked + strips + held)
    alone = estimate_peak(shape, dtype, method, forked=False)
    if alone + strips <= limit:
        return MemoryPlan(False, default_rows if pyramid else "auto", alone + strips + held)
    least = 1 << STRIP_LEVEL
    if pyramid and alone + strip_bytes(shape, least) <= limit:
        rows = max(least, min(default_rows, rows_for_budget(shape, limit - alone)))
        while rows > least and alone + strip_bytes(shape, rows) > limit:
            rows -= least
        return MemoryPlan(False, rows, alone + strip_bytes(shape, rows) + held)
    if pyramid and min(shape[0], shape[1]) >= 64:
        rows = max(default_rows, STRIP_MAJOR_ROWS)
        while rows > least and estimate_strip_major(shape, dtype, rows) > limit:
            rows = max(least, rows // 2 // least * least)
        estimate = estimate_strip_major(shape, dtype, rows)
        if estimate <= limit:
            return MemoryPlan(False, rows, estimate + held, strip_major=True)
        alone = estimate - strip_bytes(shape, least)  # (the leanest said below)
    lean = alone + (strip_bytes(shape, least) if pyramid else 0) + held
    limit = asked
    channels = shape[2] if len(shape) == 3 else 1
    needs, has = format_size(lean), format_size(limit)
    if needs == has:  # (the same to one decimal: say the bytes)
        needs, has = f"{needs} ({lean} bytes)", f"{has} ({limit} bytes)"
    raise LimitError(
        f"fusing frames of {shape[0]} x {shape[1]} pixels x {channels} channels of {dtype} "
        f"(method {method!r}) needs about {needs} even in one process with the "
        f"smallest merge strips{' (strip-major)' if pyramid else ''}, more than the "
        f"memory limit of {has}; raise "
        "it with fuse(memory_limit=...), `convstack fuse --memory-limit SIZE` (e.g. "
        f"{format_size(lean * 1.25).replace(' ', '')}), or the environment variable "
        "CONVSTACK_MEMORY_LIMIT."
    )


#: The steps whose seconds per frame are measured.
STEPS = ("read", "register", "warp", "measure", "merge")

#: Frames of fewer pixels are read and registered in a thread of this process, not a
#: forked child (unless ``CONVSTACK_FORK=1``): a second process costs its own working
#: set of pages and copies of the shared ones (0.3 MP frames: 14 000 more page faults
#: and about 15 % more CPU a fuse), which small frames' work does not repay
#: (breathing-1, 0.3 MP x 9, alternated: the thread as fast at load 1-2, 8 % faster
#: and 14 % leaner at load 3.6; 1.4 MP frames keep the child).
FORK_MIN_PIXELS = 1 << 20

#: On machines of fewer cores, frames of every size are read in a thread (unless
#: ``CONVSTACK_FORK=1``). On 2 cores, alternated (load 1.5-2.3, medians of 3-5 warm
#: fuses): the thread as fast as the forked child on the bug (1.4 MP) and on 12 MP
#: frames, 7.5 % faster on PCB (3 MP), with ~15 % less CPU and one process's memory
#: (no second working set). Where more cores can run the child's work beside the
#: parent's Python, the child is kept (not measured here).
FORK_MIN_CORES = 3


def _cores() -> int:
    """The cores this process may run on."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


def mean_costs(costs: dict[str, list[float]]) -> dict[str, float]:
    """The mean of the last four measured seconds of each step."""
    return {step: sum(times[-4:]) / len(times[-4:]) for step, times in costs.items() if times}


def loads(mean: dict[str, float], share: int) -> tuple[float, float]:
    """Seconds per frame of (the worker, this side) when the worker reads, registers
    and takes the first ``share`` of the steps warp and measure; this side merges."""
    steps = (mean["warp"], mean["measure"])
    worker = mean.get("read", 0.0) + mean["register"] + sum(steps[:share])
    return worker, mean["merge"] + sum(steps[share:])


def balanced_share(costs: dict[str, list[float]]) -> int:
    """How many steps after registration the worker thread takes (0, 1 warp, 2 warp and
    measure) so that the busier of the two threads has the least to do.

    ``costs`` holds the measured seconds per frame of 'read' (when measured apart),
    'register', 'warp', 'measure' (wherever they ran) and 'merge' (this thread's own
    work); the last four of each are averaged. 1 until every step has been measured.
    """
    if not all(costs.get(step) for step in ("register", "warp", "measure", "merge")):
        return 1
    mean = mean_costs(costs)
    return min(range(3), key=lambda share: max(loads(mean, share)))


def read_credit(costs: dict[str, list[float]], share: int) -> float:
    """The share of a frame that this process should read for the child process.

    When the child (reading, registering and the first ``share`` steps) is busier than
    this process (the other steps and the merge), reading a fraction ``f`` of the frames
    here moves ``f`` reads across: ``f = (child - parent) / (2 read)`` balances the two
    (0 when this process is the busier). Summed over frames, each whole unit is a frame
    to read here.
    """
    if not all(costs.get(step) for step in STEPS):
        return 0.0
    mean = mean_costs(costs)
    child, parent = loads(mean, share)
    return min(1.0, max(0.0, (child - parent) / (2.0 * mean["read"])))


class Scheduler:
    """Hands the frames to the merge in the registrar's order, each read, registered
    and (as balanced) warped and measured by a worker while the one before is merged.

    Parameters
    ----------
    source : FrameSource
        Where the frames are read.
    registrar : Registrar
        Registers them (in the worker) and holds their transforms.
    gray_of : callable
        ``gray_of(frame)``: the float32 luma (or focus channel) that is measured.
    measure : str
        The focus measure.
    photometric : bool
        The merge corrects each frame's brightness first, so it measures them itself.
    keep_frames : bool
        The merge keeps the frames it is given (``on_step``): frames from a child
        process are copied out of their shared slot.
    fork : bool
        Whether the worker may be a forked child process (the memory plan's choice:
        the child costs a process of its own).
    lean : bool
        The worker only reads and registers, and ``finish`` puts frames into planar
        arrays of their own: one frame on the reference grid at a time (the
        strip-major merge's schedule).
    """

    def __init__(
        self,
        source: FrameSource,
        registrar: Registrar,
        *,
        gray_of: Callable[[NDArray[Any]], NDArray[np.float32]],
        measure: str,
        photometric: bool,
        keep_frames: bool,
        fork: bool = True,
        lean: bool = False,
    ) -> None:
        self.source = source
        self.lean = lean
        self.fork = fork
        self.registrar = registrar
        self.gray_of = gray_of
        self.measure = measure
        self.photometric = photometric
        self.keep_frames = keep_frames
        # seconds per frame of each step, as measured (running means): they decide
        # which steps the worker takes so that neither side waits for the other
        self.costs: dict[str, list[float]] = {step: [] for step in STEPS}
        self._slots: list[NDArray[np.float32]] = []
        self._raw_slots: NDArray[Any] | None = None
        self._ahead: set[int] = set()  # frames decoded ahead when the child forked

    def frames(self, pool: ThreadPoolExecutor) -> Generator[Frame, None, None]:
        """The frames in the registrar's order, from a forked child process where that
        is safe (before any thread of ours starts), from a thread of ``pool`` otherwise.

        Close the generator when done (an error stops the child process at once)."""
        count = len(self.registrar.order)
        if self.fork and count > 2 and not self.source.raw_files and self._large() and can_fork():
            return self.forked()
        return self.threaded(pool)

    def _large(self) -> bool:
        """Whether the frames are large enough, and the cores many enough, to repay a
        forked reader (see :data:`FORK_MIN_PIXELS`, :data:`FORK_MIN_CORES`; their size
        unknown: yes)."""
        if fork_forced():
            return True
        if _cores() < FORK_MIN_CORES:
            return False
        shape = self.source.shape
        if shape is None:
            probed = self.source.probe(self.registrar.reference)
            shape = probed[0] if probed is not None else None
        return shape is None or shape[0] * shape[1] >= FORK_MIN_PIXELS

    def timed(
        self, step: str, started: float, index: int, spent: dict[str, float] | None = None
    ) -> None:
        """Record a step's seconds in ``costs``, or in ``spent`` (a child process's)."""
        if spent is not None:
            spent[step] = time.perf_counter() - started
        elif index != self.registrar.reference:  # not registered, and merged first
            self.costs[step].append(time.perf_counter() - started)

    def finish(
        self,
        item: Frame,
        upto: int,
        spent: dict[str, float] | None = None,
        into: NDArray[np.float32] | None = None,
    ) -> Frame:
        """Take ``item`` through the steps after registration, up to step ``upto``
        (0 none, 1 warp, 2 warp and measure; the photometric correction measures later);
        ``spent``: a child process's step times, ``into``: where its frame goes."""
        if upto >= 1 and item.frame is None:
            started = time.perf_counter()
            raw, item.raw = item.raw, None
            assert raw is not None
            matrix = self.registrar.transforms[item.index]
            if into is None and self.lean:  # planar, as the strip-major merge keeps it
                into = planar(raw.shape)
            still = is_identity(matrix, raw.shape)
            if not still:
                item.gray = None  # the luma of the raw frame is stale (dropped first)
            gray = item.gray
            if (  # a grey frame that did not move is its own luma (the same bits): one copy
                self.lean
                and not self.photometric  # (which corrects the frame in place)
                and gray is not None
                and raw.ndim == 2
                and still
                and unit_bits(raw, gray)
            ):
                item.frame = gray
            else:
                item.frame = to_reference_grid(raw, matrix, into, self.registrar.warp_order)
            del gray
            if self.lean and raw.dtype.kind in "ui" and still:
                item.raw = raw  # (cached as read: a quarter of its float32 bytes)
            self.timed("warp", started, item.index, spent)
        if upto >= 2 and item.measured is None and not self.photometric:
            assert item.frame is not None
            started = time.perf_counter()
            if item.gray is None:
                item.gray = self.gray_of(item.frame)
            item.measured = measure_focus(item.gray, self.measure)
            self.timed("measure", started, item.index, spent)
        return item

    def prepare(self, index: int, neighbour: int | None, share: int) -> Frame:
        """The worker's part of one frame: read, register, then ``finish`` to ``share``."""
        started = time.perf_counter()
        raw, gray = self.registrar.register(index, neighbour)
        self.timed("register", started, index)
        if self.lean and not is_identity(self.registrar.transforms[index], raw.shape):
            del gray  # stale once warped: not held while the frame waits
            return self.finish(Frame(index, raw, None), share)
        return self.finish(Frame(index, raw, gray), share)

    def threaded(self, pool: ThreadPoolExecutor) -> Generator[Frame, None, None]:
        """The frames in order, each prepared in a thread of ``pool`` while the one
        before it is merged here."""
        order = self.registrar.order
        count = len(order)
        pending = pool.submit(self.prepare, *order[0], 0 if self.lean else 1)
        for done in range(1, count + 1):
            item = pending.result()
            if done < count:
                share = 0 if self.lean else balanced_share(self.costs)
                pending = pool.submit(self.prepare, *order[done], share)
            yield item

    def forked(self) -> Generator[Frame, None, None]:
        """The frames in order, each prepared in a child process while the one before
        it is merged here; frames (warped or as read) come through memory the two share."""
        registrar, source = self.registrar, self.source
        order = registrar.order
        count = len(order)
        ref = registrar.reference
        if ref not in registrar.preread:  # (read already where no header gave its size)
            registrar.preread[ref] = source.raw(ref)
        reference = registrar.preread[ref]  # sets the slots' shape
        self._slots = [planar(reference.shape, shared_array) for _ in range(2)]
        # frames as read go through two more slots: those this process reads for the
        # child when it has time to spare (see read_credit; a pipe both ways could
        # deadlock), and those the child hands back to be warped here
        self._raw_slots = raw_slots = shared_array((2, *reference.shape), reference.dtype)
        read_here: set[int] = set()
        # frames decoded ahead (the command's read-ahead) cost the child nothing to
        # read: this process never reads them again for it
        self._ahead = ahead = {i for i in range(len(source)) if source.decoded_ahead(i)}
        credit = 0.0
        try:
            with ForkedWorker(self._child) as worker:
                registrar.preread.clear()  # the child has its copy
                drop_read_ahead()  # (frames the command decoded ahead: the child's too)
                if ahead:  # their pages the child's alone, not this process's too
                    release_free_pages()  # (an allocator that keeps freed memory, the
                    # command's, held them here, copy-on-write, for its next arrays)
                for _ in range(2):  # the second and third frames may go to the slots
                    self._send(worker, (1, False), order[1][0])
                # the reference needs no registration: merged here while the child registers
                yield Frame(ref, reference, self.gray_of(reference))
                del reference
                for position, (index, _) in enumerate(order[1:], start=1):
                    item = self._received(worker, position, index, position in read_here)
                    yield item
                    del item
                    if position + 2 < count:
                        share = balanced_share(self.costs)
                        credit += read_credit(self.costs, share)
                        given = credit >= 1.0  # this process has time to spare: it reads
                        if given and order[position + 2][0] in ahead:  # (the child has
                            given, credit = False, 1.0  # it decoded: for the next one)
                        if given:
                            credit -= 1.0
                            started = time.perf_counter()
                            raw_slots[position % 2] = source.raw(order[position + 2][0])
                            self.costs["read"].append(time.perf_counter() - started)
                            read_here.add(position + 2)
                        self._send(worker, (share, given), order[position + 1][0])
        finally:  # the shared slots go with the run, not with the scheduler
            self._slots, self._raw_slots, self._ahead = [], None, set()

    def _failed(self, index: int, exc: ChildProcessError) -> StackError:
        """The error of a child process that ended while it read and registered frame
        ``index`` (killed, or out of memory)."""
        return StackError(
            f"reading and registering {self.source.names[index]} failed: {exc} "
            "(killed, or out of memory?)"
        )

    def _send(self, worker: ForkedWorker, message: tuple[int, bool], index: int) -> None:
        """Send ``message`` to the child, which works on frame ``index`` meanwhile: a
        child that ended is said as :meth:`_received` says it (the send finds the pipe
        broken when the child ended first)."""
        try:
            worker.send(message)
        except ChildProcessError as exc:
            raise self._failed(index, exc) from exc

    def _received(self, worker: ForkedWorker, position: int, index: int, read_here: bool) -> Frame:
        """The child process's result for the frame at ``position``, as a Frame."""
        registrar = self.registrar
        try:
            message = worker.receive()
        except ChildProcessError as exc:
            raise self._failed(index, exc) from exc
        registrar.transforms[index], raw, in_slot, warped, measured, spent = message
        for step, seconds in spent.items():
            if step != "read" or seconds > 0:  # (0: the parent read it)
                self.costs[step].append(seconds)
        if in_slot or read_here:  # the child put it in its slot, or it was read here
            assert self._raw_slots is not None
            raw = self._raw_slots[position % 2]
            kept = _report.stand_in(registrar.rows, index)
            if read_here and kept is not None:  # rejected there: its stand-in is merged
                raw = self.source.raw(kept)
        assert self.source.shape is not None  # (the reference is read first)
        identity = is_identity(registrar.transforms[index], self.source.shape)
        item = Frame(index, raw, self.gray_of(raw) if identity and raw is not None else None)
        item.measured = measured
        if warped:  # into the slot
            item.raw = None
            item.frame = self._slots[position % 2]
            if self.keep_frames:  # the slot is reused: a copy to keep
                item.frame = item.frame.copy()
        return item

    def _child(self, inbox: Channel, outbox: Channel) -> None:
        """The child process's work: read, register and finish each frame in order."""
        registrar = self.registrar
        assert self._raw_slots is not None
        for position, (index, neighbour) in enumerate(registrar.order):
            if position == 0:  # the reference: the parent has it, its pyramid is here
                registrar.register(index, neighbour)
                continue
            # the slot is free (the frame before last was merged), and the parent may
            # have read this frame itself, when it has time to spare
            share, given = inbox.recv()
            started = time.perf_counter()
            if given:
                registrar.preread[index] = self._raw_slots[position % 2]
            else:
                registrar.preread[index] = self.source.raw(index)
            # (0: not measured; a frame decoded ahead took no reading here)
            decoded = not given and index not in self._ahead
            spent = {"read": time.perf_counter() - started if decoded else 0.0}
            started = time.perf_counter()
            raw, gray = registrar.register(index, neighbour)
            spent["register"] = time.perf_counter() - started
            slot = self._slots[position % 2]
            item = self.finish(Frame(index, raw, gray), share, spent, slot)
            warped = item.frame is not None
            if warped and item.frame is not slot:  # the frame did not move: a copy
                slot[...] = item.frame
            # the frame goes back if it is to be warped there (through its raw slot,
            # free: the frame before last was merged; not pickled down the pipe), or if
            # its luma (the raw frame's, when it did not move) is to be measured there
            identity = is_identity(registrar.transforms[index], raw.shape)
            send_raw = (not warped or (identity and item.measured is None)) and not given
            in_slot = send_raw and not warped  # (the slot's pages touched only then)
            if in_slot:
                self._raw_slots[position % 2] = raw  # (a stand-in's, if rejected)
            message = (
                registrar.transforms[index],
                raw if send_raw and not in_slot else None,
                in_slot,
                warped,
                item.measured,
            )
            outbox.send(("ok", (*message, spent)))
