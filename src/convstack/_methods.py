"""The three ways to compute a correlation: direct, separable and FFT.

Every method takes the *unpadded* work array of shape (batch, *spatial) in the
working float dtype, a :class:`Border` that says how to pad it, a kernel already
oriented for correlation, per-axis ``dilation`` and ``stride`` and the output
spatial shape; it returns (batch, *out_shape). No validation happens here.

For 1-D and 2-D images direct and separable run compiled loops
(``convstack._k_correlate``) that read the unpadded image and take the border from
index maps, so nothing image-sized is built besides the output: interior output
columns run in tight vectorised loops, border columns and rows through the maps.
Separable makes, per output row, a column pass into one padded row buffer and a row
pass out of it. A channel-last image runs with its channels interleaved (no
transposes). Output rows are split over ``THREADS`` threads (the calling thread and a
module-level pool take the tasks from one queue; the kernels release the GIL), as are
FFT tiles (``scipy.fft`` releases it too). Outputs are placed away from their input
modulo 1 MiB (:func:`empty_apart`). Memo caches are bounded by count and bytes
(:class:`BoundedCache`).

N-D images (3 or more spatial axes) take a simple whole-array path.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import math
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

from .padding import Border, dilated_span, fill_block


def _scipy_fft() -> Any:
    """``scipy.fft``, imported on first use: it adds ~0.15 s to every start-up
    (``convstack fuse`` never needs it with its small kernels)."""
    import scipy.fft

    return scipy.fft


@functools.lru_cache(maxsize=4096)
def next_fast_len(n: int) -> int:
    """Smallest 5-smooth number (2**a 3**b 5**c) >= ``n``: a fast real FFT length.

    The lengths ``scipy.fft.next_fast_len(n, real=True)`` returns, without importing
    SciPy (the cost model asks for them on every call).
    """
    if n <= 6:
        return max(int(n), 1)
    best = 1 << (int(n) - 1).bit_length()  # the next power of two always qualifies
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            quotient = -(-n // p35)  # the power of two that lifts p35 to >= n
            candidate = p35 << (quotient - 1).bit_length()
            best = min(best, candidate)
            p35 *= 3
        p5 *= 5
    return best


Shape = tuple[int, ...]
Pads = tuple[tuple[int, int], ...]
T = TypeVar("T")

#: Bytes that each of the engine's memo caches (:class:`BoundedCache`) may hold.
MEMO_BYTES = 16 * 1024 * 1024


class BoundedCache(Generic[T]):
    """A thread-safe memo of ``function`` by its (hashable) arguments that keeps the
    most recently used results within ``max_entries`` and ``max_bytes``.

    ``size(args, result)`` is what an entry holds in bytes (its key's kernel bytes, its
    arrays); a result larger than ``max_bytes`` is returned without being kept.
    ``functools.lru_cache`` bounds only the count: 256 cost-model entries keyed by
    300x300 float64 kernels hold 184 MB.
    """

    def __init__(
        self,
        function: Callable[..., T],
        max_entries: int,
        max_bytes: int,
        size: Callable[[tuple[Any, ...], T], int],
    ) -> None:
        self._function = function
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._size = size
        self._entries: OrderedDict[tuple[Any, ...], tuple[T, int]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        functools.update_wrapper(self, function)
        if hasattr(os, "register_at_fork"):  # a fork while another thread held the lock
            os.register_at_fork(after_in_child=functools.partial(_new_lock, weakref.ref(self)))

    def __call__(self, *args: Any) -> T:
        with self._lock:
            entry = self._entries.get(args)
            if entry is not None:
                self._entries.move_to_end(args)
                return entry[0]
        result = self._function(*args)
        nbytes = self._size(args, result)
        if nbytes > self._max_bytes:
            return result
        with self._lock:
            if args not in self._entries:
                self._entries[args] = (result, nbytes)
                self._held += nbytes
            while len(self._entries) > self._max_entries or self._held > self._max_bytes:
                self._held -= self._entries.popitem(last=False)[1][1]
        return result

    def held_bytes(self) -> int:
        """Bytes the kept entries hold, by ``size``."""
        return self._held

    def __len__(self) -> int:
        return len(self._entries)

    def cache_clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._held = 0


def _new_lock(cache: weakref.ref[BoundedCache[Any]]) -> None:
    """In a forked child: a free lock for ``cache`` (the parent's may have been held by
    a thread the child does not have, and the child's first call would wait forever)."""
    alive = cache()
    if alive is not None:
        alive._lock = threading.Lock()


def bounded_cache(
    max_entries: int, size: Callable[[tuple[Any, ...], Any], int], max_bytes: int = MEMO_BYTES
) -> Callable[[Callable[..., T]], BoundedCache[T]]:
    """Decorator: :class:`BoundedCache` of the function."""
    return lambda function: BoundedCache(function, max_entries, max_bytes, size)


#: Threads used over row ranges and FFT tiles: one per core by default (the compiled
#: kernels release the GIL and get a row range each, so hand-offs are few).
#: Set CONVSTACK_THREADS to change it.
def _threads_from_env() -> int:
    try:
        return max(1, int(os.environ.get("CONVSTACK_THREADS", "0")) or (os.cpu_count() or 1))
    except ValueError:
        return os.cpu_count() or 1


THREADS = _threads_from_env()
#: Cost model of the compiled methods (see convolve.choose_method), measured with
#: ``python bench/conv.py --calibrate``: CPU ns of one thread per tap and output
#: sample of direct (each tap a load and a fused multiply-add), per tap and sample of
#: a separable pass (one contiguous row each) and per output sample and rank term of
#: separable beyond its taps (the padded row between the passes, the row set-up:
#: 3x3 rank-1 kernels ran 1.9-2.8x slower separable than direct, whose one pass
#: does all nine taps; even at 5x5, separable ahead from 7x7, measured alternated),
#: and wall ns per output sample (allocation, first touch, row set-up).
TAP_NS = 0.032
SEP_TAP_NS = 0.044
SEP_OUT_NS = 0.3
OUT_NS = 0.14
#: Below this many multiply-adds a call runs on the calling thread only: a hand-off
#: to the pool costs tens of microseconds on an idle machine and 100-200 us on a
#: loaded one, four million compiled taps about 0.3 ms.
THREAD_MIN_WORK = 4_000_000

#: Scratch buffers up to this size stay allocated per thread between calls.
KEEP_BUFFER_BYTES = 8 * 1024 * 1024

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_local = threading.local()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="convstack")
        return _pool


def _forget_pool() -> None:
    """In a forked child: the pool's threads stayed in the parent, a new pool is needed,
    of the child's share of threads (a batch worker's environment sets it)."""
    global _pool, _pool_lock, THREADS
    _pool, _pool_lock = None, threading.Lock()
    THREADS = _threads_from_env()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _run(tasks: Sequence[Callable[[], None]], work: float) -> None:
    """Run ``tasks`` (independent closures) on ``THREADS`` threads, or inline when small.

    The calling thread and ``THREADS - 1`` pool threads take the tasks in order from
    one queue (one hand-off fewer than waiting idle, and never more threads than
    ``THREADS``: handing each task to the pool ran the caller's task beside two pool
    threads on two cores, and six FFT tiles ended with one thread alone for a tile).
    """
    if THREADS == 1 or len(tasks) == 1 or work < THREAD_MIN_WORK:
        for task in tasks:
            task()
        return
    queue = iter(tasks)  # (next() on a list iterator is atomic under the GIL)

    def drain() -> None:
        for task in queue:
            task()

    futures = [_executor().submit(drain) for _ in range(min(THREADS, len(tasks)) - 1)]
    try:
        drain()
    finally:
        for future in futures:
            future.exception()  # wait for every thread, whatever failed
    for future in futures:
        future.result()


def wall_ns(cpu_ns: float, work: float, parts: int) -> float:
    """Wall time of ``cpu_ns`` of work split in ``parts`` equal tasks, as :func:`_run`
    runs them: on the calling thread below ``THREAD_MIN_WORK``, else in rounds of
    ``THREADS`` tasks (a last, partial round costs a whole one)."""
    if THREADS == 1 or parts <= 1 or work < THREAD_MIN_WORK:
        return cpu_ns
    return cpu_ns * -(-parts // THREADS) / parts


def _buffer(name: str, size: int, dtype: np.dtype[Any]) -> NDArray[Any]:
    """A per-thread scratch vector of ``size`` elements, reused across calls up to 8 MiB."""
    if size * dtype.itemsize > KEEP_BUFFER_BYTES:
        return np.empty(size, dtype=dtype)
    key = (name, dtype.str)
    cache: dict[tuple[str, str], NDArray[Any]] = getattr(_local, "buffers", None) or {}
    _local.buffers = cache
    buf = cache.get(key)
    if buf is None or buf.size < size:
        buf = np.empty(max(size, 1), dtype=dtype)
        cache[key] = buf
    return buf[:size]


def _as_2d(
    image: NDArray[Any], kernel_shape: Shape, dilation: Shape, stride: Shape, out_shape: Shape
) -> tuple[NDArray[Any], Shape, Shape, Shape, Shape]:
    """View 1-D problems as 2-D ones with a single row."""
    if image.ndim == 2:
        return (
            image[:, None, :],
            (1,) + kernel_shape,
            (1,) + dilation,
            (1,) + stride,
            (1,) + out_shape,
        )
    return image, kernel_shape, dilation, stride, out_shape


def _border_2d(border: Border) -> Border:
    if len(border.pads) == 1:
        return Border(((0, 0),) + border.pads, border.mode, border.fill)
    return border


_KERNELS: Any = None


def _compiled() -> Any:
    """The compiled loops (numba loads on the first call that needs them)."""
    global _KERNELS
    if _KERNELS is None:
        from . import _k_correlate

        _KERNELS = _k_correlate
    return _KERNELS


#: Image dtypes the kernels read as they are; others are cast to the working dtype
#: first (each dtype the kernels read is one more compilation, 1-3 s on first use).
KERNEL_DTYPES = frozenset(
    np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64)
)


def kernel_source(array: NDArray[Any], dtype: np.dtype[Any]) -> NDArray[Any]:
    """``array`` as the kernels read it: C-contiguous, native byte order, bool viewed as
    uint8, dtypes outside ``KERNEL_DTYPES`` cast to ``dtype`` (no copy when it already is)."""
    if array.dtype in KERNEL_DTYPES and array.flags.c_contiguous:  # the usual case
        return array
    if array.dtype == np.bool_:
        array = array.view(np.uint8)
    elif array.dtype.newbyteorder("=") not in KERNEL_DTYPES:
        array = array.astype(dtype)
    elif not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return np.ascontiguousarray(array)


def _channel_last(work: NDArray[Any]) -> bool:
    """Whether the batch items of ``work`` are its fastest-varying axis (the channels of
    a channel-last image, moved to the front by ``convolve``)."""
    if work.shape[0] == 1:
        return False
    strides = work.strides
    return abs(strides[0]) < min(abs(s) for s in strides[1:])


def _channel_sources(
    work: NDArray[Any], out: NDArray[Any], dtype: np.dtype[Any]
) -> list[tuple[NDArray[Any], NDArray[Any], slice]]:
    """(image, output, batch items) triples of (rows, cols, channels) arrays for the kernels.

    A channel-last batch (:func:`_channel_last`) runs as one interleaved image, with no
    transposes; otherwise each item runs alone.
    """
    if work.shape[0] == 1:  # (the usual case, a few microseconds sooner)
        return [(kernel_source(work[0], dtype)[:, :, None], out[0][:, :, None], slice(0, 1))]
    if _channel_last(work):
        src = kernel_source(np.moveaxis(work, 0, -1), dtype)
        return [(src, np.moveaxis(out, 0, -1), slice(None))]
    return [
        (kernel_source(work[item], dtype)[:, :, None], out[item][:, :, None], slice(item, item + 1))
        for item in range(work.shape[0])
    ]


#: An output whose address equals its input's modulo ``ALIAS_BYTES``, give or take
#: ``ALIAS_GAP`` bytes, makes the compiled rows run 2.2-2.9x slower on this machine's
#: CPU when both lie in transparent huge pages (physical addresses then agree too): a
#: 512^2 float32 3x3 correlation 84 -> 241 us, looped on the same arrays. The heap puts
#: an output right after an input of the same size (``out - in = size + 16``: 1 MiB +
#: 16 at 512^2 float32, 16 MiB + 16 at 2048^2), which is such a case.
ALIAS_BYTES = 1 << 20
ALIAS_GAP = 8 << 10
#: Only outputs up to this size are placed (larger ones leave the CPU's caches between
#: rows anyway: a 2048^2 float32 Gaussian took the same time placed either way), as
#: finding two addresses costs ~3 us a call (~15 us after ``gc.collect()``).
ALIAS_MAX_BYTES = 4 << 20


def _address(array: NDArray[Any]) -> int:
    """Address of ``array``'s first element (a writable C-contiguous array through
    ctypes: 2x quicker than ``__array_interface__``, which builds a dict)."""
    if array.flags.writeable and array.flags.c_contiguous and array.size:
        return ctypes.addressof(ctypes.c_char.from_buffer(array))  # type: ignore[arg-type]
    return int(array.__array_interface__["data"][0])


def empty_apart(shape: Shape, dtype: Any, source: NDArray[Any]) -> NDArray[Any]:
    """``np.empty(shape, dtype)`` (C order) placed at least ``ALIAS_GAP`` bytes from
    ``source``'s address modulo ``ALIAS_BYTES`` (see there) when it holds
    ``ALIAS_GAP`` to ``ALIAS_MAX_BYTES`` bytes: when the allocator's block lies too
    near, the array is a view into a block 2 ``ALIAS_GAP`` + 64 bytes longer."""
    out = np.empty(shape, dtype)
    if not ALIAS_GAP <= out.nbytes <= ALIAS_MAX_BYTES:
        return out
    delta = (_address(out) - _address(source)) % ALIAS_BYTES
    if ALIAS_GAP <= delta <= ALIAS_BYTES - ALIAS_GAP:
        return out
    del out
    block = np.empty(math.prod(shape) * np.dtype(dtype).itemsize + 2 * ALIAS_GAP + 64, np.uint8)
    delta = (_address(block) - _address(source)) % ALIAS_BYTES
    shift = ALIAS_GAP - delta if delta < ALIAS_GAP else 0
    if delta > ALIAS_BYTES - ALIAS_GAP:
        shift = ALIAS_BYTES - delta + ALIAS_GAP
    shift += -(_address(block) + shift) % 64  # (cache-line aligned)
    size = math.prod(shape) * np.dtype(dtype).itemsize
    return block[shift : shift + size].view(dtype).reshape(shape)


def _empty_out(work: NDArray[Any], out_shape: Shape, dtype: np.dtype[Any]) -> NDArray[Any]:
    """(batch, *out_shape), stored channel-last when ``work`` is channel-last, away from
    ``work`` (:func:`empty_apart`)."""
    if _channel_last(work):
        return np.moveaxis(empty_apart(out_shape + (work.shape[0],), dtype, work), -1, 0)
    return empty_apart((work.shape[0],) + out_shape, dtype, work)


def _interior_columns(n_c: int, n_oc: int, before: int, span: int, stride: int) -> tuple[int, int]:
    """Output columns [j0, j1) whose every tap reads an image column (no border)."""
    j0 = min(-(-before // stride), n_oc)
    last = n_c - 1 + before - (span - 1)  # largest j * stride that stays inside
    j1 = min(last // stride + 1, n_oc) if last >= 0 else 0
    return j0, max(j1, j0)


def _tap_scratch(n: int, dtype: np.dtype[Any]) -> tuple[NDArray[Any], ...]:
    """Scratch vectors for the kernels' tap lists: weights, rows, offsets."""
    return np.empty(n, dtype), np.empty(n, np.intp), np.empty(n, np.intp)


def _row_tasks(
    run_rows: Callable[[int, int], None], n_rows: int, work: float
) -> list[Callable[[], None]]:
    """``run_rows(r0, r1)`` over about ``THREADS`` equal row ranges (one when small)."""
    parts = 1 if THREADS == 1 or work < THREAD_MIN_WORK else min(THREADS, n_rows)
    if parts == 1:
        return [functools.partial(run_rows, 0, n_rows)]
    bounds = [n_rows * p // parts for p in range(parts + 1)]
    return [functools.partial(run_rows, lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]


def run_row_ranges(run_rows: Callable[[int, int], None], n_rows: int, work: float) -> None:
    """``run_rows(r0, r1)`` over about ``THREADS`` equal row ranges (one below
    ``THREAD_MIN_WORK`` multiply-adds), the calling thread running the first."""
    _run(_row_tasks(run_rows, n_rows, work), work)


def _maps_bytes(args: tuple[Any, ...], result: tuple[NDArray[Any], NDArray[Any], int, int]) -> int:
    return int(result[0].nbytes + result[1].nbytes) + 256


@bounded_cache(256, _maps_bytes)
def _row_geometry(
    shape: Shape,
    pads: Pads,
    mode: str,
    kernel_shape: Shape,
    dilation: Shape,
    stride: Shape,
    n_oc: int,
) -> tuple[NDArray[np.intp], NDArray[np.intp], int, int]:
    """The direct rows' border maps and interior output columns (:func:`direct_image`)."""
    rmap, cmap = Border(pads, mode, np.zeros(0)).index_maps(shape)
    span = dilated_span(kernel_shape, dilation)
    j0, j1 = _interior_columns(shape[1], n_oc, pads[1][0], span[1], stride[1])
    return rmap, cmap, j0, j1  # fmt: skip


def direct_image(
    work: NDArray[Any],
    border: Border,
    weights: NDArray[Any],
    dilation: Shape,
    stride: Shape,
    out_shape: Shape,
    found: list[bool] | None = None,
) -> NDArray[Any]:
    """Direct correlation of a (batch, rows, cols) work array (compiled, no padded copy).

    With a ``found`` list, the kernels test the float image rows they read for NaN and
    infinities and append one flag per row range (True: one was met).
    """
    dtype = border.fill.dtype
    batch, n_r, n_c = work.shape
    out = _empty_out(work, out_shape, dtype)
    rmap, cmap, j0, j1 = _row_geometry(
        (n_r, n_c), border.pads, border.mode, weights.shape, dilation, stride, out_shape[1]
    )
    before = border.pads[1][0]
    taps = np.ascontiguousarray(weights, dtype=dtype)
    k = _compiled()
    # every tap, zero weights included (the one-channel passes add them all)
    cost = float(out_shape[0] * out_shape[1]) * batch * taps.size
    tasks: list[Callable[[], None]] = []
    for src, dst, items in _channel_sources(work, out, dtype):
        fill = np.ascontiguousarray(border.fill[items])
        check = found is not None and src.dtype.kind == "f"

        def run_rows(
            r0: int, r1: int, src: Any = src, dst: Any = dst, fill: Any = fill, check: bool = check
        ) -> None:
            ws, rs, offs = _tap_scratch(taps.size, dtype)
            bad = k.correlate_rows(
                src, dst, taps, rmap, cmap, fill, r0, r1, stride, dilation, before, j0, j1,
                ws, rs, offs, check,
            )  # fmt: skip
            if found is not None:
                found.append(bool(bad))

        tasks += _row_tasks(run_rows, out_shape[0], cost)
    _run(tasks, cost)
    return out


def direct(
    image: NDArray[Any],
    border: Border,
    kernel: NDArray[Any],
    dilation: Shape,
    stride: Shape,
    out_shape: Shape,
    found: list[bool] | None = None,
) -> NDArray[Any]:
    """Direct correlation: every output a sum over the kernel's taps (compiled rows).

    ``found``: see :func:`direct_image` (1-D and 2-D images only).
    """
    if image.ndim > 3:
        return _direct_nd(image, border, kernel, dilation, stride, out_shape)
    work, kshape, dil, st, oshape = _as_2d(image, kernel.shape, dilation, stride, out_shape)
    out = direct_image(work, _border_2d(border), kernel.reshape(kshape), dil, st, oshape, found)
    return out.reshape((image.shape[0],) + out_shape)


def rank_terms(
    kernel: NDArray[Any], rtol: float | None = None
) -> list[tuple[NDArray[Any], NDArray[Any]]]:
    """Split a 2-D kernel into outer products of 1-D factors, dropping negligible terms.

    A kernel of rank 1 is factored exactly from its largest entry (column through it,
    row divided by it), which keeps symmetric kernels exactly symmetric. Otherwise the
    SVD gives the terms; a term is dropped only when its singular value is below
    ``rtol`` times the largest (default: a few epsilons of the kernel's float dtype
    per kernel side), so what is dropped stays under the rounding of that dtype.
    """
    if rtol is None:
        eps = np.finfo(kernel.dtype if kernel.dtype.kind == "f" else np.float64).eps
        rtol = 4 * float(eps) * max(kernel.shape)
    k64 = kernel.astype(np.float64)
    if not k64.any():
        return [(np.zeros(kernel.shape[0]), np.zeros(kernel.shape[1]))]
    i, j = np.unravel_index(np.argmax(np.abs(k64)), k64.shape)
    col, row = k64[:, j].copy(), k64[i, :] / k64[i, j]
    if np.allclose(np.outer(col, row), k64, rtol=0, atol=rtol * np.abs(k64[i, j])):
        return [(col, row)]
    u, s, vt = np.linalg.svd(k64)
    terms: list[tuple[NDArray[Any], NDArray[Any]]] = []
    for t in np.flatnonzero(s > rtol * s[0]):
        root = np.sqrt(s[t])
        terms.append((u[:, t] * root, vt[t] * root))
    return terms


def separable_rows(
    image: NDArray[Any],
    border: Border,
    terms: Sequence[tuple[NDArray[Any], NDArray[Any]]],
    dilation: Shape,
    stride: Shape,
    out: NDArray[Any],
    *,
    bias: float = 0.0,
    scale: float = 1.0,
    found: list[bool] | None = None,
) -> Callable[[int, int], None]:
    """A function that fills output rows ``[r0, r1)`` of ``out`` with
    ``sum(correlate(image, outer(col, row)) for col, row in terms)``.

    ``image`` (rows, cols, channels) of any real dtype, ``out`` (out_rows, out_cols,
    channels) C-contiguous, ``border.fill`` one value per channel in the accumulator
    dtype, which is also the dtype of the taps; every ``col`` has one length and
    every ``row`` one length. Each output is ``(sum + bias) * scale`` cast to
    ``out``'s dtype: the exact integer Gaussians use integer taps, an accumulator in
    which every partial sum is an exact integer, a rounding offset and a power of two.
    With a ``found`` list, the float image rows read are tested for NaN and infinities
    and each call appends a flag (True: one was met).
    """
    dtype = border.fill.dtype
    src = kernel_source(image, dtype)
    n_r, n_c, ch = src.shape
    rmap, cmap = border.index_maps((n_r, n_c))
    cols = np.ascontiguousarray([c for c, _ in terms], dtype=dtype)
    rows = np.ascontiguousarray([r for _, r in terms], dtype=dtype)
    before = border.pads[1][0]
    fill = np.ascontiguousarray(border.fill)
    k = _compiled()
    width = out.shape[1] * ch

    # uint8 images under integer column taps whose sums stay below 2**16 (the exact
    # Gaussian's), with a fill of uint8 values: the column pass runs in uint16 lanes,
    # exactly
    narrow = (
        src.dtype == np.uint8
        and bool(np.all((cols >= 0) & (cols == np.round(cols))))
        and float(cols.sum(axis=1).max()) * 255 < 2**16
        and bool(np.all((fill >= 0) & (fill <= 255) & (fill == np.round(fill))))
    )
    col16 = cols.astype(np.uint16) if narrow else np.zeros((1, 1), np.uint16)
    check = found is not None and src.dtype.kind == "f"

    # float outputs of the accumulator dtype: the row pass writes the output rows
    # themselves (no scratch row and copy: 0.73x the time of a 2048^2 5x5 Gaussian)
    into_out = out.dtype == dtype and bias == 0.0 and scale == 1.0 and out.flags.c_contiguous
    # ``(sum + bias) * scale`` in the accumulator dtype when both are exact in it (the
    # exact uint8 Gaussian's 2**15 and 2**-16 in float32: its sums stay below 2**24, so
    # every step is exact): float64 steps per output cost more than the sums of 5 taps
    if float(dtype.type(bias)) == bias and float(dtype.type(scale)) == scale:
        bias, scale = dtype.type(bias), dtype.type(scale)
    out_rows = out.reshape(out.shape[0], width) if into_out else None

    def run_rows(r0: int, r1: int) -> None:
        mid = np.empty(cmap.size * ch, dtype=dtype)
        mid16 = np.empty(n_c * ch if narrow else 0, dtype=np.uint16)
        acc = out_rows if out_rows is not None else np.empty((1, max(width, 1)), dtype=dtype)
        ws, rs, offs = _tap_scratch(max(cols.shape[1], rows.shape[1]), dtype)
        bad = k.separable_rows(
            src, out, cols, rows, rmap, cmap, fill, r0, r1, stride, dilation, before,
            mid, acc, into_out, bias, scale, ws, rs, offs, col16, mid16, check,
        )  # fmt: skip
        if found is not None:
            found.append(bool(bad))

    return run_rows


def separable(
    image: NDArray[Any],
    border: Border,
    kernel: NDArray[Any],
    dilation: Shape,
    stride: Shape,
    out_shape: Shape,
    found: list[bool] | None = None,
) -> NDArray[Any]:
    """Sum over the rank terms of a 2-D kernel of a column pass then a row pass.

    ``found``: see :func:`direct_image`.
    """
    if kernel.ndim != 2:
        return direct(image, border, kernel, dilation, stride, out_shape, found)
    dtype = border.fill.dtype
    terms = rank_terms(kernel)
    out = _empty_out(image, out_shape, dtype)
    cost = float(out.size) * sum(c.size + r.size for c, r in terms)
    tasks: list[Callable[[], None]] = []
    for src, dst, items in _channel_sources(image, out, dtype):
        item_border = Border(border.pads, border.mode, np.ascontiguousarray(border.fill[items]))
        run_rows = separable_rows(src, item_border, terms, dilation, stride, dst, found=found)
        tasks += _row_tasks(run_rows, out_shape[0], cost)
    _run(tasks, cost)
    return out


def _kernel_spectrum(
    kernel: NDArray[Any], dilation: Shape, lengths: Shape, dtype: np.dtype[Any]
) -> NDArray[Any]:
    """rfftn of the flipped, dilated kernel at ``lengths`` (cached: read-only result)."""
    key = (kernel.shape, kernel.tobytes(), tuple(dilation), tuple(lengths), np.dtype(dtype).str)
    return _spectrum_cached(*key)


def _spectrum_bytes(args: tuple[Any, ...], spectrum: NDArray[Any]) -> int:
    return len(args[1]) + int(spectrum.nbytes)


#: Bytes of kernel spectra kept: a 2048^2 image's 51x51 tiles take 3.2 MB (float32),
#: a whole-array (N-D) spectrum is as large as the image, and is then built per call.
SPECTRUM_BYTES = 64 * 1024 * 1024


@bounded_cache(16, _spectrum_bytes, SPECTRUM_BYTES)
def _spectrum_cached(
    shape: Shape, data: bytes, dilation: Shape, lengths: Shape, dtype_str: str
) -> NDArray[Any]:
    dtype = np.dtype(dtype_str)
    kernel = np.frombuffer(data, dtype=dtype).reshape(shape)
    ndim = kernel.ndim
    span = dilated_span(kernel.shape, dilation)
    dilated = np.zeros(span, dtype=dtype)
    dilated[tuple(slice(None, None, d) for d in dilation)] = kernel
    flipped = dilated[(slice(None, None, -1),) * ndim]
    # Pruned transform: the last axis first (only the kernel's rows), then the others
    # at full length, instead of transforming a mostly-zero padded array.
    spectrum = _scipy_fft().rfft(flipped, n=lengths[-1], axis=-1)
    for axis in range(ndim - 1):
        spectrum = _scipy_fft().fft(spectrum, n=lengths[axis], axis=axis)
    spectrum = np.ascontiguousarray(spectrum)
    spectrum.setflags(write=False)
    return spectrum


#: Candidate FFT tile sides (all 2-3-5-smooth) for the tiled 2-D FFT.
TILE_SIDES = (64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
#: Cost of one forward + inverse real FFT tile, ns per ``n * log2(n)`` for ``n``
#: samples (1.5x above ``FFT_CACHE_SAMPLES``, where tiles leave the cache), plus a
#: fixed cost per tile and a padding cost per sample. Measured in bench/README.md.
FFT_NS = 0.3
FFT_CACHE_SAMPLES = 1024 * 1024
FFT_TILE_NS = 50_000.0
FFT_FILL_NS = 0.6
#: Per output sample of an FFT call, wall (output allocation and first touch), as
#: ``OUT_NS``: with the tiles in rounds over the threads, the model is within 5% of
#: ``method="fft"`` at 2048^2 for 11x11 to 51x51 kernels.
FFT_OUT_NS = 0.14


def _sides(span: int, n_full: int) -> list[tuple[int, int]]:
    """(FFT length, outputs per tile) candidates along one axis: ``TILE_SIDES`` and the
    fast lengths that split the axis into 2 to 16 equal tiles (so that tiles can come
    in whole rounds of the threads).

    The whole axis is a candidate up to 1024 samples (or when no tile fits): longer
    whole-axis transforms were slower than square tiles in measurements.
    """
    whole = next_fast_len(n_full + span - 1)
    sides = set(TILE_SIDES)
    sides.update(next_fast_len(-(-n_full // parts) + span - 1) for parts in range(2, 17))
    options = []
    for side in sorted(sides):
        valid = side - span + 1
        if valid >= max(span, 16) and side < whole:
            options.append((side, valid))
    if whole <= 1024 or not options:
        options.append((whole, n_full))
    return options


@functools.lru_cache(maxsize=256)
def fft_plan(
    span: Shape, full: Shape, threads: int = 1
) -> tuple[tuple[int, int], tuple[int, int], float]:
    """Cheapest overlap-save tiling for a 2-D correlation of ``full`` stride-1 outputs.

    Returns (FFT length, outputs) per tile along rows and along columns, and the
    estimated CPU time in ns for one image. The tiling is chosen for its wall time on
    ``threads`` threads (tiles in rounds, as :func:`_run` runs them: at 2048^2 under a
    51x51 kernel, 6 tiles of 768x1080 took 0.79x the time of 9 of 768x768 on 2 threads).
    """
    best: tuple[tuple[int, int], tuple[int, int], float] | None = None
    best_wall = 0.0
    work = 50.0 * full[0] * full[1]  # as fft() hands its tiles to _run
    for rows in _sides(span[0], full[0]):
        for cols in _sides(span[1], full[1]):
            samples = rows[0] * cols[0]
            tiles = -(-full[0] // rows[1]) * -(-full[1] // cols[1])
            per_sample = FFT_NS * (1.5 if samples > FFT_CACHE_SAMPLES else 1.0)
            cost = tiles * (
                per_sample * samples * np.log2(max(samples, 2))
                + FFT_TILE_NS
                + FFT_FILL_NS * samples
            )
            rounds = 1.0
            if threads > 1 and work >= THREAD_MIN_WORK:
                rounds = -(-tiles // threads) / tiles
            if best is None or cost * rounds < best_wall:
                best, best_wall = (rows, cols, float(cost)), cost * rounds
    assert best is not None
    return best


def fft(
    image: NDArray[Any],
    border: Border,
    kernel: NDArray[Any],
    dilation: Shape,
    stride: Shape,
    out_shape: Shape,
) -> NDArray[Any]:
    """Overlap-save FFT correlation in tiles of fast lengths (2-D), whole-array otherwise.

    A circular correlation of length L leaves the last ``L - span + 1`` samples of
    each tile equal to the linear one, so tiles overlap by ``span - 1``.
    """
    if image.ndim > 3:
        return _fft_nd(image, border, kernel, dilation, stride, out_shape)
    work, kshape, dil, st, oshape = _as_2d(image, kernel.shape, dilation, stride, out_shape)
    border = _border_2d(border)
    taps = kernel.reshape(kshape)
    dtype = border.fill.dtype
    batch, n_r, n_c = work.shape
    (rb, ra), (cb, ca) = border.pads
    span = dilated_span(kshape, dil)
    full = (n_r + rb + ra - span[0] + 1, n_c + cb + ca - span[1] + 1)  # stride-1 outputs
    (len_r, t_r), (len_c, t_c), _ = fft_plan(span, full, THREADS)
    spectrum = _kernel_spectrum(taps, dil, (len_r, len_c), dtype)
    maps = border.index_maps((n_r, n_c))
    out = np.empty((batch,) + oshape, dtype=dtype)

    def first(start: int, step: int) -> int:
        return -(-start // step)

    def task(item: int, r0: int, c0: int) -> None:
        nr, nc = min(t_r, full[0] - r0), min(t_c, full[1] - c0)
        o_r0, o_r1 = first(r0, st[0]), first(r0 + nr, st[0])
        o_c0, o_c1 = first(c0, st[1]), first(c0 + nc, st[1])
        if o_r1 <= o_r0 or o_c1 <= o_c0:
            return
        block = _buffer("fftin", len_r * len_c, dtype).reshape(len_r, len_c)
        hr, hc = nr + span[0] - 1, nc + span[1] - 1
        fill_block(work[item], maps, border, item, (r0, r0 + hr), (c0, c0 + hc), block[:hr, :hc])
        block[hr:, :] = 0
        block[:hr, hc:] = 0
        sfft = _scipy_fft()
        spec = sfft.rfft2(block, workers=1)
        spec *= spectrum
        rows = slice(span[0] - 1 + o_r0 * st[0] - r0, span[0] - 1 + nr, st[0])
        cols = slice(span[1] - 1 + o_c0 * st[1] - c0, span[1] - 1 + nc, st[1])
        # the inverse by axes, the real transform only on the rows kept: 0.6x the time
        # of irfft2 on a 768^2 tile (the same values to float rounding)
        spec = sfft.ifft(spec, axis=0, workers=1, overwrite_x=True)
        res = sfft.irfft(spec[rows], n=len_c, axis=1, workers=1)
        out[item, o_r0:o_r1, o_c0:o_c1] = res[:, cols]

    tasks = [
        functools.partial(task, item, r0, c0)
        for item in range(batch)
        for r0 in range(0, full[0], t_r)
        for c0 in range(0, full[1], t_c)
    ]
    _run(tasks, float(batch) * full[0] * full[1] * 50)
    return out.reshape((image.shape[0],) + out_shape)


# --------------------------------------------------------------------------------------------
# N-D (3 or more spatial axes): whole-array paths on an explicitly padded array
# --------------------------------------------------------------------------------------------


def pad_array(image: NDArray[Any], border: Border) -> NDArray[Any]:
    """The padded array itself (batch, *padded spatial), for the N-D paths."""
    image = image.astype(border.fill.dtype, copy=False)
    maps = border.index_maps(image.shape[1:])
    shape = image.shape[:1] + tuple(len(m) for m in maps)
    if border.mode == "constant":
        out = np.empty(shape, dtype=image.dtype)
        out[...] = border.fill.reshape((-1,) + (1,) * (image.ndim - 1))
        inner = (slice(None),) + tuple(
            slice(b, b + n) for n, (b, _) in zip(image.shape[1:], border.pads, strict=True)
        )
        out[inner] = image
        return out
    result = image
    for axis, m in enumerate(maps):
        result = np.take(result, m, axis=axis + 1)
    return np.ascontiguousarray(result)


def _tap_slices(offsets: Shape, dilation: Shape, stride: Shape, out_shape: Shape) -> Any:
    return (slice(None),) + tuple(
        slice(t * d, t * d + (o - 1) * s + 1, s)
        for t, d, s, o in zip(offsets, dilation, stride, out_shape, strict=True)
    )


def _direct_nd(
    image: NDArray[Any],
    border: Border,
    kernel: NDArray[Any],
    dilation: Shape,
    stride: Shape,
    out_shape: Shape,
) -> NDArray[Any]:
    padded = pad_array(image, border)
    out = np.zeros(padded.shape[:1] + out_shape, dtype=padded.dtype)
    tmp = np.empty_like(out)
    for offsets in itertools.product(*(range(k) for k in kernel.shape)):
        weight = kernel[offsets]
        if weight == 0:
            continue
        np.multiply(padded[_tap_slices(offsets, dilation, stride, out_shape)], weight, out=tmp)
        out += tmp
    return out


def _fft_nd(
    image: NDArray[Any],
    border: Border,
    kernel: NDArray[Any],
    dilation: Shape,
    stride: Shape,
    out_shape: Shape,
) -> NDArray[Any]:
    padded = pad_array(image, border)
    ndim = kernel.ndim
    axes = tuple(range(1, ndim + 1))
    span = dilated_span(kernel.shape, dilation)
    lengths = tuple(next_fast_len(n) for n in padded.shape[1:])
    spectrum = _scipy_fft().rfftn(padded, s=lengths, axes=axes, workers=THREADS)
    spectrum *= _kernel_spectrum(kernel, dilation, lengths, padded.dtype)
    res = _scipy_fft().irfftn(spectrum, s=lengths, axes=axes, workers=THREADS)
    valid = tuple(
        slice(e - 1, e - 1 + (o - 1) * s + 1, s)
        for e, s, o in zip(span, stride, out_shape, strict=True)
    )
    return np.ascontiguousarray(res[(slice(None),) + valid], dtype=padded.dtype)


METHODS = {"direct": direct, "fft": fft, "separable": separable}
