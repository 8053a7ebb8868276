"""The three ways to compute a correlation: direct, separable and FFT.

Every method takes the *unpadded* work array of shape (batch, *spatial) in the
working float dtype, a :class:`Border` that says how to pad it, a kernel already
oriented for correlation, per-axis ``dilation`` and ``stride`` and the output
spatial shape; it returns (batch, *out_shape). No validation happens here.

For 1-D and 2-D images the work is split into row strips (about ``STRIP_BYTES``
each) that are padded on the fly into small per-thread buffers, so that no
temporary is ever image-sized: every pass of a kernel tap runs over a strip that
stays in the L2 cache. Within a strip a stride-1 tap is a single flat, contiguous
slice ("wide rows": the row pitch of the padded strip is kept, the ``span - 1``
extra columns per row are computed and dropped), so each pass is one long
vectorised loop. Taps with equal weights are summed first and multiplied once
(symmetric and box kernels need about half the passes). Where the output is as
wide as the image, direct skips the padding for interior rows and accumulates
straight into the output (:func:`_direct_in_place`). Strips and FFT tiles can run
on a small module-level thread pool (NumPy and ``scipy.fft`` release the GIL); it
is off by default (``THREADS``).

N-D images (3 or more spatial axes) take a simple whole-array path.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import NDArray

from ._modes import border_indices
from .padding import dilated_span


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

#: Bytes of one strip buffer (padded strip, accumulator, temporary and, for
#: separable, the column-pass result): together they stay inside a 2 MiB L2 cache.
#: 256 KiB measured best of 32 KiB-1 MiB (bench/README.md).
STRIP_BYTES = 256 * 1024


#: Threads used over strips and FFT tiles. One by default: on the 2-vCPU development
#: machine two threads (or two processes) get no more throughput than one, and under
#: load the hand-offs made strips up to 2x slower. Set CONVSTACK_THREADS to change it.
def _threads_from_env() -> int:
    try:
        return max(1, int(os.environ.get("CONVSTACK_THREADS", "1")))
    except ValueError:
        return 1


THREADS = _threads_from_env()
#: Cost model of the strip methods (see convolve.choose_method): ns per element of
#: the strip grid for one ufunc pass, and ns per ufunc call on a strip.
PASS_NS = 0.1
CALL_NS = 1000.0
#: Below this many multiply-adds a call runs on the calling thread only.
THREAD_MIN_WORK = 8_000_000

#: Whether direct may accumulate straight into the output (no padded strips) where
#: the layout allows it (stride 1, output as wide as the image, contiguous rows).
IN_PLACE = True
#: Fewest output samples per image for which it does: below, its separate border
#: passes cost more calls than the padded strips save (measured, 1-D binomial
#: kernels: even at 512 x 512 down the columns, at 720 x 720 along the rows, where
#: every row has border columns to redo).
IN_PLACE_MIN_OUTPUTS = (1 << 18, 1 << 19)
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
    """In a forked child: the pool's threads stayed in the parent, a new pool is needed."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _run(tasks: Sequence[Callable[[], None]], work: float) -> None:
    """Run ``tasks`` (independent closures) on the pool, or inline when small."""
    if THREADS == 1 or len(tasks) == 1 or work < THREAD_MIN_WORK:
        for task in tasks:
            task()
        return
    for future in [_executor().submit(task) for task in tasks]:
        future.result()


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


@dataclass(frozen=True)
class Border:
    """How the virtual padded array is made from the work array.

    ``pads`` per spatial axis; ``mode`` an index mode ('nearest', 'reflect',
    'mirror', 'wrap') or 'constant' with one fill value per batch item in ``fill``.
    """

    pads: Pads
    mode: str
    fill: NDArray[Any]

    def index_maps(self, spatial: Shape) -> list[NDArray[np.intp]]:
        """Source index of every padded position per axis (-1: the fill value)."""
        maps = []
        for n, (b, a) in zip(spatial, self.pads, strict=True):
            if self.mode == "constant":
                p = np.arange(-b, n + a, dtype=np.intp)
                maps.append(np.where((p >= 0) & (p < n), p, -1))
            else:
                maps.append(border_indices(n, b, a, self.mode))
        return maps


def _interior(lo: int, hi: int, before: int, n: int) -> tuple[int, int]:
    """Positions [i0, i1) of ``lo:hi`` that lie inside the image (identity map)."""
    i0 = min(max(before - lo, 0), hi - lo)
    i1 = max(min(before + n - lo, hi - lo), i0)
    return i0, i1


def _fill_block(
    image: NDArray[Any],
    maps: list[NDArray[np.intp]],
    border: Border,
    item: int,
    rows: tuple[int, int],
    cols: tuple[int, int],
    out: NDArray[Any],
) -> None:
    """Write padded[rows[0]:rows[1], cols[0]:cols[1]] of a 2-D ``image`` into ``out``."""
    (r_lo, r_hi), (c_lo, c_hi) = rows, cols
    (rb, _), (cb, _) = border.pads
    n_r, n_c = image.shape
    i0, i1 = _interior(r_lo, r_hi, rb, n_r)
    j0, j1 = _interior(c_lo, c_hi, cb, n_c)
    if i1 > i0 and j1 > j0:
        src_r, src_c = r_lo + i0 - rb, c_lo + j0 - cb
        out[i0:i1, j0:j1] = image[src_r : src_r + i1 - i0, src_c : src_c + j1 - j0]
    if border.mode == "constant":
        value = border.fill[item]
        out[:i0] = value
        out[i1:] = value
        out[i0:i1, :j0] = value
        out[i0:i1, j1:] = value
        return
    rmap, cmap = maps[0][r_lo:r_hi], maps[1][c_lo:c_hi]
    src_c = c_lo + j0 - cb
    for lo, hi in ((0, i0), (i1, r_hi - r_lo)):
        if hi > lo and j1 > j0:
            out[lo:hi, j0:j1] = image[rmap[lo:hi], src_c : src_c + j1 - j0]
    whole_width = j0 <= cb - c_lo and j1 >= cb - c_lo + n_c  # all source columns are in out
    for lo, hi in ((0, j0), (j1, c_hi - c_lo)):
        if hi <= lo:
            continue
        if whole_width:
            out[:, lo:hi] = out[:, cmap[lo:hi] + (cb - c_lo)]
        else:
            out[:, lo:hi] = image[np.ix_(rmap, cmap[lo:hi])]


def _strips(n_out: int, row_bytes: int) -> Iterator[tuple[int, int]]:
    rows = max(1, STRIP_BYTES // max(row_bytes, 1))
    for start in range(0, n_out, rows):
        yield start, min(start + rows, n_out)


def _groups(weights: NDArray[Any], offsets: list[Any]) -> list[tuple[float, list[Any]]]:
    """Group tap offsets by exactly equal non-zero weight, in first-seen order."""
    table: dict[float, list[Any]] = {}
    for w, off in zip(weights.ravel().tolist(), offsets, strict=True):
        if w != 0:
            table.setdefault(w, []).append(off)
    return list(table.items())


def _accumulate(
    groups: list[tuple[float, list[Any]]],
    view: Callable[[Any], NDArray[Any]],
    acc: NDArray[Any],
    tmp: NDArray[Any],
    started: bool,
) -> bool:
    """acc (+)= sum over groups of weight * (sum of the group's tap views)."""
    for w, offs in groups:
        if len(offs) == 1:
            src = view(offs[0])
        else:
            np.add(view(offs[0]), view(offs[1]), out=tmp)
            for off in offs[2:]:
                np.add(tmp, view(off), out=tmp)
            src = tmp
        if not started:
            if w == 1.0:
                np.copyto(acc, src)
            else:
                np.multiply(src, w, out=acc)
            started = True
        elif w == 1.0:
            np.add(acc, src, out=acc)
        elif w == -1.0:
            np.subtract(acc, src, out=acc)
        else:
            np.multiply(src, w, out=tmp)
            np.add(acc, tmp, out=acc)
    return started


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


def _block(
    image: NDArray[Any],
    maps: list[NDArray[np.intp]],
    border: Border,
    item: int,
    passes: Callable[[NDArray[Any], int, int, NDArray[Any], NDArray[Any]], None],
    span: Shape,
    stride: Shape,
    rows: tuple[int, int],
    cols: tuple[int, int],
    dest: NDArray[Any],
) -> None:
    """Output rows and columns [r0, r1) x [c0, c1) of one image, into ``dest``.

    The padded block they need is filled into a scratch buffer whose row pitch ``wb``
    is the block's padded width; ``passes(strip, nr, wb, acc, tmp)`` then fills the
    flat accumulator ``acc`` (output rows at that pitch, ``span - 1`` unused columns
    per row) and the wanted columns are copied out.
    """
    (r0, r1), (c0, c1) = rows, cols
    nr, nc = r1 - r0, c1 - c0
    dtype = border.fill.dtype
    n_in = (nr - 1) * stride[0] + span[0]
    wb = (nc - 1) * stride[1] + span[1]
    strip = _buffer("strip", n_in * wb, dtype).reshape(n_in, wb)
    top, left = r0 * stride[0], c0 * stride[1]
    _fill_block(image[item], maps, border, item, (top, top + n_in), (left, left + wb), strip)
    acc = _buffer("acc", nr * wb, dtype)
    tmp = _buffer("tmp", nr * wb, dtype)
    passes(strip, nr, wb, acc, tmp)
    dest[...] = acc.reshape(nr, wb)[:, : wb - span[1] + 1 : stride[1]]


def _block_tasks(
    image: NDArray[Any],
    maps: list[NDArray[np.intp]],
    border: Border,
    passes: Callable[[NDArray[Any], int, int, NDArray[Any], NDArray[Any]], None],
    span: Shape,
    stride: Shape,
    out: NDArray[Any],
    blocks: list[tuple[int, tuple[int, int], tuple[int, int]]],
) -> list[Callable[[], None]]:
    """One :func:`_block` task per ``(item, (r0, r1), (c0, c1))``, writing that part of ``out``."""
    return [
        functools.partial(
            _block,
            image,
            maps,
            border,
            item,
            passes,
            span,
            stride,
            rows,
            cols,
            out[item, rows[0] : rows[1], cols[0] : cols[1]],
        )
        for item, rows, cols in blocks
    ]


def _strip_engine(
    image: NDArray[Any],
    border: Border,
    passes: Callable[[NDArray[Any], int, int, NDArray[Any], NDArray[Any]], None],
    span: Shape,
    stride: Shape,
    out_shape: Shape,
    cost: float,
) -> NDArray[Any]:
    """Shared strip loop for direct and separable on 2-D work arrays.

    Computes every output row of every image, full width, in strips of about
    ``STRIP_BYTES`` (see :func:`_block`).
    """
    batch, n_r, n_c = image.shape
    dtype = border.fill.dtype
    maps = border.index_maps((n_r, n_c))
    out = np.empty((batch,) + out_shape, dtype=dtype)
    n_out = out_shape[1]
    # rows longer than a strip (long 1-D signals) are cut into column chunks too
    chunk = max(1, min(n_out, STRIP_BYTES // (dtype.itemsize * stride[1])))
    wb = (chunk - 1) * stride[1] + span[1]
    blocks = [
        (item, (r0, r1), (c0, min(c0 + chunk, n_out)))
        for item in range(batch)
        for r0, r1 in _strips(out_shape[0], wb * dtype.itemsize * stride[0])
        for c0 in range(0, n_out, chunk)
    ]
    _run(_block_tasks(image, maps, border, passes, span, stride, out, blocks), cost)
    return out


def _direct_in_place(
    image: NDArray[Any],
    border: Border,
    groups: list[tuple[float, list[Any]]],
    passes: Callable[[NDArray[Any], int, int, NDArray[Any], NDArray[Any]], None],
    span: Shape,
    out_shape: Shape,
    cost: float,
) -> NDArray[Any] | None:
    """Stride-1 correlation whose output rows have the image's width, without padding.

    Interior output rows are accumulated straight into the output from flat views of
    the (C-contiguous, working-dtype) image; a view that runs past a row's end reads
    the next row, which only spoils the ``before`` and ``after`` border columns, and
    those, with the top and bottom rows, are recomputed from padded blocks. Returns
    None when the layout does not allow it.
    """
    batch, n_r, n_c = image.shape
    dtype = border.fill.dtype
    (rb, _), (cb, ca) = border.pads
    item_size = image.itemsize
    if (
        image.dtype != dtype
        or out_shape[1] != n_c
        or image.strides[1:] != (n_c * item_size, item_size)
        or max(cb, ca) >= n_c
    ):
        return None
    r_lo = rb + (1 if cb else 0)
    r_hi = min(out_shape[0], n_r + rb - span[0] + 1 - (1 if ca else 0))
    if r_hi - r_lo < 8:
        return None
    out = np.empty((batch,) + out_shape, dtype=dtype)
    maps = border.index_maps((n_r, n_c))

    def interior(item: int, r0: int, r1: int) -> None:
        flat = image[item].reshape(-1)
        length = (r1 - r0) * n_c
        base = (r0 - rb) * n_c - cb
        acc = out[item, r0:r1].reshape(-1)
        tmp = _buffer("tmp", length, dtype)
        view = lambda off: flat[base + off : base + off + length]  # noqa: E731
        if not _accumulate(groups, view, acc, tmp, False):
            acc[...] = 0

    rows = list(_strips(r_hi - r_lo, n_c * item_size))
    _run(
        [functools.partial(interior, i, r_lo + a, r_lo + b) for i in range(batch) for a, b in rows],
        cost,
    )
    # (first row, rows, first column, last column) of every region left to recompute:
    # the top and bottom rows at full width, the border columns of the interior rows
    regions = [(lo, hi - lo, 0, n_c) for lo, hi in ((0, r_lo), (r_hi, out_shape[0]))]
    regions += [(r_lo, r_hi - r_lo, c0, c1) for c0, c1 in ((0, cb), (n_c - ca, n_c)) if c1 > c0]
    blocks = [
        (item, (top + a, top + b), (c0, c1))
        for item in range(batch)
        for top, n_rows, c0, c1 in regions
        for a, b in _strips(n_rows, (c1 - c0 + span[1]) * item_size)
    ]
    _run(_block_tasks(image, maps, border, passes, span, (1, 1), out, blocks), cost * 0.1)
    return out


def _flat_views(
    strip: NDArray[Any], nr: int, wp: int, length: int, row_step: int
) -> Callable[[int], NDArray[Any]]:
    """A view of ``length`` elements per output row block starting at flat offset ``off``."""
    flat = strip.reshape(-1)
    if row_step == 1:
        return lambda off: flat[off : off + length]
    item = flat.itemsize
    width = length - (nr - 1) * wp  # elements per row that are needed

    def view(off: int) -> NDArray[Any]:
        return as_strided(flat[off:], shape=(nr, width), strides=(row_step * wp * item, item))

    return view


def _acc_view(acc: NDArray[Any], nr: int, wp: int, length: int, row_step: int) -> NDArray[Any]:
    if row_step == 1:
        return acc[:length]
    return acc.reshape(nr, wp)[:, : length - (nr - 1) * wp]


def _tap_offsets(kernel_shape: Shape, dilation: Shape, pitch: int) -> list[int]:
    """Flat offset of every tap of a 2-D kernel, row by row, in rows ``pitch`` long."""
    rows, cols = kernel_shape
    return [a * dilation[0] * pitch + b * dilation[1] for a in range(rows) for b in range(cols)]


def direct(
    image: NDArray[Any],
    border: Border,
    kernel: NDArray[Any],
    dilation: Shape,
    stride: Shape,
    out_shape: Shape,
) -> NDArray[Any]:
    """Shifted-slice accumulation: one multiply-add per distinct non-zero tap weight."""
    if image.ndim > 3:
        return _direct_nd(image, border, kernel, dilation, stride, out_shape)
    work, kshape, dil, st, oshape = _as_2d(image, kernel.shape, dilation, stride, out_shape)
    border = _border_2d(border)
    span = dilated_span(kshape, dil)
    taps2d = kernel.reshape(kshape)

    def passes(strip: NDArray[Any], nr: int, wp: int, acc: NDArray[Any], tmp: NDArray[Any]) -> None:
        length = nr * wp - span[1] + 1
        offsets = _tap_offsets(kshape, dil, wp)
        view = _flat_views(strip, nr, wp, length, st[0])
        a_v = _acc_view(acc, nr, wp, length, st[0])
        t_v = _acc_view(tmp, nr, wp, length, st[0])
        if not _accumulate(_groups(taps2d, offsets), view, a_v, t_v, False):
            a_v[...] = 0

    cost = float(np.prod(oshape)) * work.shape[0] * np.count_nonzero(kernel) * st[1]
    out = None
    column_pads = any(border.pads[-1])
    if st == (1, 1) and IN_PLACE and math.prod(oshape) >= IN_PLACE_MIN_OUTPUTS[column_pads]:
        groups = _groups(taps2d, _tap_offsets(kshape, dil, work.shape[2]))
        out = _direct_in_place(work, border, groups, passes, span, oshape, cost)
    if out is None:
        out = _strip_engine(work, border, passes, span, st, oshape, cost)
    return out.reshape((image.shape[0],) + out_shape)


def rank_terms(kernel: NDArray[Any], rtol: float | None = None) -> list[tuple[NDArray[Any], ...]]:
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
    terms: list[tuple[NDArray[Any], ...]] = []
    for t in np.flatnonzero(s > rtol * s[0]):
        root = np.sqrt(s[t])
        terms.append((u[:, t] * root, vt[t] * root))
    return terms


def separable(
    image: NDArray[Any],
    border: Border,
    kernel: NDArray[Any],
    dilation: Shape,
    stride: Shape,
    out_shape: Shape,
) -> NDArray[Any]:
    """Sum over the rank terms of a 2-D kernel of a column pass then a row pass."""
    if kernel.ndim != 2:
        return direct(image, border, kernel, dilation, stride, out_shape)
    dtype = border.fill.dtype
    terms = [(c.astype(dtype), r.astype(dtype)) for c, r in rank_terms(kernel)]
    kh, kw = kernel.shape
    span = dilated_span((kh, kw), dilation)

    def passes(strip: NDArray[Any], nr: int, wp: int, acc: NDArray[Any], tmp: NDArray[Any]) -> None:
        mid = _buffer("mid", nr * wp, dtype)
        vert = _flat_views(strip, nr, wp, nr * wp, stride[0])
        mid_v = _acc_view(mid, nr, wp, nr * wp, stride[0])
        tmp_v = _acc_view(tmp, nr, wp, nr * wp, stride[0])
        length = nr * wp - span[1] + 1
        started = False
        for col, row in terms:
            v_groups = _groups(col, [a * dilation[0] * wp for a in range(kh)])
            if not _accumulate(v_groups, vert, mid_v, tmp_v, False):
                continue
            h_groups = _groups(row, [b * dilation[1] for b in range(kw)])
            started = _accumulate(
                h_groups, lambda off: mid[off : off + length], acc[:length], tmp[:length], started
            )
        if not started:
            acc[...] = 0

    taps = sum(np.count_nonzero(c) + np.count_nonzero(r) for c, r in terms)
    cost = float(np.prod(out_shape)) * image.shape[0] * taps * stride[1]
    return _strip_engine(image, border, passes, span, stride, out_shape, cost)


def _kernel_spectrum(
    kernel: NDArray[Any], dilation: Shape, lengths: Shape, dtype: np.dtype[Any]
) -> NDArray[Any]:
    """rfftn of the flipped, dilated kernel at ``lengths`` (cached: read-only result)."""
    key = (kernel.shape, kernel.tobytes(), tuple(dilation), tuple(lengths), np.dtype(dtype).str)
    return _spectrum_cached(*key)


@functools.lru_cache(maxsize=16)
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
#: Per output sample of an FFT call (output allocation, strided copy-out): whole-image
#: FFTs at 512^2 took about 0.8 ms more than the tile model, 2048^2 ones 3-5 ms more.
FFT_OUT_NS = 1.5


def _sides(span: int, n_full: int) -> list[tuple[int, int]]:
    """(FFT length, outputs per tile) candidates along one axis.

    The whole axis is a candidate up to 1024 samples (or when no tile fits): longer
    whole-axis transforms were slower than square tiles in measurements.
    """
    whole = next_fast_len(n_full + span - 1)
    options = []
    for side in TILE_SIDES:
        valid = side - span + 1
        if valid >= max(span, 16) and side < whole:
            options.append((side, valid))
    if whole <= 1024 or not options:
        options.append((whole, n_full))
    return options


@functools.lru_cache(maxsize=256)
def fft_plan(span: Shape, full: Shape) -> tuple[tuple[int, int], tuple[int, int], float]:
    """Cheapest overlap-save tiling for a 2-D correlation of ``full`` stride-1 outputs.

    Returns (FFT length, outputs) per tile along rows and along columns, and the
    estimated time in ns for one image.
    """
    best: tuple[tuple[int, int], tuple[int, int], float] | None = None
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
            if best is None or cost < best[2]:
                best = (rows, cols, float(cost))
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
    (len_r, t_r), (len_c, t_c), _ = fft_plan(span, full)
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
        _fill_block(work[item], maps, border, item, (r0, r0 + hr), (c0, c0 + hc), block[:hr, :hc])
        block[hr:, :] = 0
        block[:hr, hc:] = 0
        spec = _scipy_fft().rfft2(block, workers=1)
        spec *= spectrum
        res = _scipy_fft().irfft2(spec, s=(len_r, len_c), workers=1)
        rows = slice(span[0] - 1 + o_r0 * st[0] - r0, span[0] - 1 + nr, st[0])
        cols = slice(span[1] - 1 + o_c0 * st[1] - c0, span[1] - 1 + nc, st[1])
        out[item, o_r0:o_r1, o_c0:o_c1] = res[rows, cols]

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
