"""The filters' entry to the engine's compiled rows: separable and direct passes.

A colour image (rows, cols, C) runs with its channels interleaved: no per-channel
split, no transposes, no padded copy (the border comes from index maps), and integer
images are read in their own dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._methods import direct_image, empty_apart, run_row_ranges, separable_rows
from ..padding import Border

__all__ = ["direct_filter", "separable_filter"]


def _centred(taps: NDArray[Any], size: int) -> NDArray[np.float64]:
    """``taps`` (odd length) with zeros on both sides up to ``size`` taps."""
    taps = np.asarray(taps, dtype=np.float64)
    if taps.size == size:  # (the usual case; numpy.pad costs ~20 us a call)
        return taps
    centred = np.zeros(size)
    pad = (size - taps.size) // 2
    centred[pad : pad + taps.size] = taps
    return centred


def _fill(array: NDArray[Any], mode: str, dtype: Any) -> tuple[str, NDArray[Any]]:
    """The engine's border mode and per-channel fill: 'mean' is 'constant' with each
    channel's mean (in the image's dtype for integers, as ``pad_image`` pads it)."""
    channels = array.shape[2] if array.ndim == 3 else 1
    if mode != "mean":
        return mode, np.zeros(channels, dtype=dtype)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf: the caller's rule
        means = array.reshape(-1, channels).mean(axis=0, dtype=np.float64)
    if array.dtype.kind in "ui":
        means = means.astype(array.dtype)
    return "constant", means.astype(dtype)


def separable_filter(
    array: NDArray[Any],
    terms: list[tuple[NDArray[Any], NDArray[Any]]],
    mode: str,
    dtype: Any,
    *,
    out: NDArray[Any] | None = None,
    bias: float = 0.0,
    scale: float = 1.0,
    found: list[bool] | None = None,
) -> NDArray[Any]:
    """``sum(correlate(array, outer(ky, kx)) for kx, ky in terms)``, same shape.

    Every 1-D kernel has odd length and its anchor in the middle; ``kx`` runs along
    each row (across columns), ``ky`` down each column. ``dtype`` is the accumulator
    (and, without ``out``, the result's dtype); with ``out``, each result is
    ``(sum + bias) * scale`` cast to ``out``'s dtype (see
    :func:`convstack._methods.separable_rows`). Rows are split over the engine's
    threads. With a ``found`` list, float rows are tested for NaN/inf as they are
    read and each strip appends whether it met one.
    """
    dtype = np.dtype(dtype)
    rows, cols = array.shape[0], array.shape[1]
    image = array.reshape(rows, cols, -1)
    nx = max(kx.size for kx, _ in terms)
    ny = max(ky.size for _, ky in terms)
    pairs = [(_centred(ky, ny), _centred(kx, nx)) for kx, ky in terms]
    engine_mode, fill = _fill(array, mode, dtype)
    border = Border(((ny // 2, ny // 2), (nx // 2, nx // 2)), engine_mode, fill)
    result = empty_apart(image.shape, dtype, array) if out is None else out.reshape(image.shape)
    run_rows = separable_rows(
        image, border, pairs, (1, 1), (1, 1), result, bias=bias, scale=scale, found=found
    )
    # one row range per engine thread, the calling thread running the first (one
    # hand-off fewer than strips on the filters' pool: 0.92x the time of a 2048^2 5x5
    # float32 Gaussian); all on the calling thread when the taps are few
    run_row_ranges(run_rows, rows, float(result.size) * len(terms) * (nx + ny))
    return result.reshape(array.shape)


def direct_filter(array: NDArray[Any], kernel: NDArray[Any], mode: str, dtype: Any) -> NDArray[Any]:
    """``correlate(array, kernel)`` per channel in ``dtype`` through the engine's compiled
    direct rows, reading ``array`` in its own dtype (no converted copy), same shape.

    The anchor is ``k // 2`` on each axis, as OpenCV's; rows run over the engine's pool.
    """
    dtype = np.dtype(dtype)
    work = array[None] if array.ndim == 2 else np.moveaxis(array, 2, 0)
    engine_mode, fill = _fill(array, mode, dtype)
    pads = tuple((k // 2, k - 1 - k // 2) for k in kernel.shape)
    border = Border(pads, engine_mode, fill)
    out = direct_image(work, border, kernel.astype(dtype), (1, 1), (1, 1), array.shape[:2])
    return out[0] if array.ndim == 2 else np.moveaxis(out, 0, 2)
