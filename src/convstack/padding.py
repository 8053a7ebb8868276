"""Border padding: how much to pad (PyTorch's ``padding``) and with what (SciPy's ``mode``)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validate as v
from ._modes import IGNORES_CVAL, MODES, border_indices
from .limits import check_memory

__all__ = ["Border", "fill_block", "pad", "resolve_padding"]

Pads = tuple[tuple[int, int], ...]
Shape = tuple[int, ...]


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
        """Source index of every padded position per axis (-1: the fill value).

        Read-only arrays, cached per (length, pads, mode) up to
        ``CACHED_MAP_POSITIONS`` positions.
        """
        return [
            _index_map(int(n), int(b), int(a), self.mode)
            for n, (b, a) in zip(spatial, self.pads, strict=True)
        ]


#: Index maps up to this many positions are cached (64 of them: at most 16 MiB); longer
#: ones, of images at least that wide, are built for each call (O(positions), nothing
#: beside the image's own work).
CACHED_MAP_POSITIONS = 1 << 15


def _index_map(n: int, before: int, after: int, mode: str) -> NDArray[np.intp]:
    """Source index of each position of an axis of ``n`` padded by (before, after)."""
    if n + before + after <= CACHED_MAP_POSITIONS:
        return _cached_index_map(n, before, after, mode)
    return _build_index_map(n, before, after, mode)


@functools.lru_cache(maxsize=64)
def _cached_index_map(n: int, before: int, after: int, mode: str) -> NDArray[np.intp]:
    return _build_index_map(n, before, after, mode)


def _build_index_map(n: int, before: int, after: int, mode: str) -> NDArray[np.intp]:
    if mode == "constant":
        p = np.arange(-before, n + after, dtype=np.intp)
        index = np.where((p >= 0) & (p < n), p, -1)
    else:
        index = border_indices(n, before, after, mode)
    index.setflags(write=False)
    return index


def _interior(lo: int, hi: int, before: int, n: int) -> tuple[int, int]:
    """Positions [i0, i1) of ``lo:hi`` that lie inside the image (identity map)."""
    i0 = min(max(before - lo, 0), hi - lo)
    i1 = max(min(before + n - lo, hi - lo), i0)
    return i0, i1


def fill_block(
    image: NDArray[Any],
    maps: list[NDArray[np.intp]],
    border: Border,
    item: int,
    rows: tuple[int, int],
    cols: tuple[int, int],
    out: NDArray[Any],
) -> None:
    """Write padded[rows[0]:rows[1], cols[0]:cols[1]] of a 2-D ``image`` into ``out``.

    ``maps`` are ``border.index_maps(image.shape)``; ``item`` picks the constant fill
    value of ``border``. Used by :func:`pad` and by the engine's FFT tiles.
    """
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


def dilated_span(kernel_shape: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[int, ...]:
    """Samples a dilated kernel covers along each axis, ``dilation * (k - 1) + 1``.

    Examples
    --------
    >>> dilated_span((3, 4), (2, 1))
    (5, 4)
    """
    return _spans(tuple(kernel_shape), tuple(dilation))


@functools.lru_cache(maxsize=256)  # every correlate call asks a few times
def _spans(kernel_shape: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d * (k - 1) + 1 for k, d in zip(kernel_shape, dilation, strict=True))


def resolve_padding(
    padding: Any,
    kernel_shape: tuple[int, ...],
    dilation: tuple[int, ...],
    *,
    flipped: bool = False,
) -> Pads:
    """Turn a ``padding`` argument into (before, after) per spatial axis.

    Parameters
    ----------
    padding : {"same", "valid", "full"}, int, sequence of int, or sequence of (int, int)
        "same" keeps the anchor (index ``k // 2`` of the kernel) over each input
        sample, "valid" pads nothing, "full" pads ``dilation * (k - 1)`` on both sides.
    kernel_shape, dilation : tuple of int
        One entry per spatial axis.
    flipped : bool
        True for convolution: the anchor ``k // 2`` of the original kernel sits at
        index ``k - 1 - k // 2`` of the flipped kernel that is correlated.

    Returns
    -------
    tuple of (int, int)
        Padding before and after along each spatial axis.
    """
    ndim = len(kernel_shape)
    if isinstance(padding, str):
        v.choice(padding, "padding", ("same", "valid", "full"))
        pads = []
        for k, d in zip(kernel_shape, dilation, strict=True):
            span = d * (k - 1)
            if padding == "valid":
                pads.append((0, 0))
            elif padding == "full":
                pads.append((span, span))
            else:
                anchor = k - 1 - k // 2 if flipped else k // 2
                pads.append((d * anchor, span - d * anchor))
        return tuple(pads)
    rule = (
        f"be 'same', 'valid', 'full', an int >= 0, one int >= 0 per spatial axis ({ndim}), "
        "or one (before, after) pair of ints >= 0 per spatial axis"
    )

    def is_int(x: Any) -> bool:
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    if is_int(padding):
        items: list[Any] = [padding] * ndim
    elif (
        ndim == 1
        and isinstance(padding, (list, tuple))
        and len(padding) == 2
        and all(is_int(x) for x in padding)
    ):
        items = [tuple(padding)]  # one axis: (before, after), as numpy.pad reads it
    elif isinstance(padding, (list, tuple)) and len(padding) == ndim:
        items = list(padding)
    else:
        raise v.fail("padding", rule, padding, kind=TypeError)
    pairs = []
    for item in items:
        if is_int(item):
            pairs.append((int(item), int(item)))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and all(is_int(x) for x in item):
            pairs.append((int(item[0]), int(item[1])))
        else:
            raise v.fail("padding", rule, padding, kind=TypeError)
    if any(b < 0 or a < 0 for b, a in pairs):
        raise v.fail("padding", rule, padding)
    return tuple(pairs)


def check_mode(mode: Any, cval: Any) -> float:
    """Validate ``mode`` and ``cval`` together; return ``cval`` as a float."""
    v.choice(mode, "mode", MODES)
    value = v.real_number(cval, "cval")
    if mode in IGNORES_CVAL and value != 0.0:
        raise v.fail("cval", f"be 0 with mode={mode!r}, which ignores it", cval)
    return value


def pad_spatial(array: NDArray[Any], pads: Pads, mode: str, cval: float) -> NDArray[Any]:
    """Pad the trailing ``len(pads)`` axes of ``array`` (leading axes are batch/channel).

    No validation: ``mode`` and ``pads`` must already be checked.
    """
    lead = array.ndim - len(pads)
    if all(b == 0 and a == 0 for b, a in pads):
        return array
    if lead <= 1 and len(pads) <= 2:
        return _pad_rows(array, pads, mode, cval)
    if mode in ("constant", "mean"):
        out_shape = array.shape[:lead] + tuple(
            n + b + a for n, (b, a) in zip(array.shape[lead:], pads, strict=True)
        )
        out = np.empty(out_shape, dtype=array.dtype)
        if mode == "constant":
            out.fill(cval)
        else:
            spatial = tuple(range(lead, array.ndim))
            out[...] = array.mean(axis=spatial, keepdims=True, dtype=np.float64).astype(array.dtype)
        inner = (slice(None),) * lead + tuple(
            slice(b, b + n) for n, (b, _) in zip(array.shape[lead:], pads, strict=True)
        )
        out[inner] = array
        return out
    result = array
    for axis, (n, (b, a)) in enumerate(zip(array.shape[lead:], pads, strict=True)):
        if b or a:
            result = np.take(result, border_indices(n, b, a, mode), axis=lead + axis)
    return result


def _pad_rows(array: NDArray[Any], pads: Pads, mode: str, cval: float) -> NDArray[Any]:
    """1-D and 2-D (with at most one leading batch axis) through the engine's block filler."""
    lead = array.ndim - len(pads)
    work = array if lead else array[None]
    if len(pads) == 1:
        work = work[:, None, :]
        pads = ((0, 0),) + pads
    batch, n_r, n_c = work.shape
    fill = np.empty(batch, dtype=array.dtype)
    if mode == "mean":
        means = work.reshape(batch, -1).mean(axis=1, dtype=np.float64)
        fill[...] = means.astype(array.dtype)
        mode = "constant"
    else:
        fill.fill(cval)
    border = Border(pads, mode, fill)
    maps = border.index_maps((n_r, n_c))
    rows, cols = len(maps[0]), len(maps[1])
    out = np.empty((batch, rows, cols), dtype=array.dtype)
    for item in range(batch):
        fill_block(work[item], maps, border, item, (0, rows), (0, cols), out[item])
    shape = array.shape[:lead] + tuple(
        n + b + a for n, (b, a) in zip(array.shape[lead:], pads[-array.ndim + lead :], strict=True)
    )
    return out.reshape(shape)


def pad(
    image: ArrayLike,
    padding: Any,
    *,
    mode: str = "constant",
    cval: float = 0.0,
    channel_axis: int | None = None,
) -> NDArray[Any]:
    """Pad an image as OpenCV's ``copyMakeBorder`` or ``numpy.pad`` would.

    Parameters
    ----------
    image : array_like
        1-D, 2-D or N-D array of real numbers.
    padding : int, sequence of int, or sequence of (int, int)
        Amount before and after each spatial axis.
    mode : str
        'constant', 'nearest', 'reflect', 'mirror', 'wrap' or 'mean'.
    cval : float
        Fill value for mode='constant'.
    channel_axis : int, optional
        Axis of colour channels, which is not padded.

    Returns
    -------
    ndarray
        The padded array, same dtype as ``image``.

    Examples
    --------
    >>> pad([1, 2, 3], 2, mode="reflect").tolist()
    [2, 1, 1, 2, 3, 3, 2]
    """
    array = v.as_real_array(image, "image")
    cval = check_mode(mode, cval)
    axis = v.channel_axis_index(channel_axis, array.ndim)
    work = array if axis is None else np.moveaxis(array, axis, 0)
    spatial = work.ndim - (axis is not None)
    if isinstance(padding, str):
        raise v.fail("padding", "be an int, one int per axis or (before, after) pairs", padding)
    pads = resolve_padding(padding, (1,) * spatial, (1,) * spatial)
    lead = work.shape[: work.ndim - spatial]
    padded = [float(n + b + a) for n, (b, a) in zip(work.shape[-spatial:], pads, strict=True)]
    check_memory(
        work.dtype.itemsize * float(np.prod(lead, dtype=float)) * float(np.prod(padded)),
        f"pad of an image of shape {array.shape} by {pads}",
    )
    out = pad_spatial(work, pads, mode, cval)
    if out is work:
        out = work.copy()
    return out if axis is None else np.moveaxis(out, 0, axis)
