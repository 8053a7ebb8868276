"""The three ways to compute a 'valid' correlation of a padded array.

Each function takes ``padded`` of shape (batch, *spatial) in the working float
dtype, a kernel already oriented for correlation, per-axis ``dilation`` and
``stride``, and the output spatial shape; it returns (batch, *out_shape).
No validation happens here.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import scipy.fft
from numpy.typing import NDArray

Shape = tuple[int, ...]


def _tap_slices(
    offsets: Shape, dilation: Shape, stride: Shape, out_shape: Shape
) -> tuple[slice, ...]:
    return tuple(
        slice(t * d, t * d + (o - 1) * s + 1, s)
        for t, d, s, o in zip(offsets, dilation, stride, out_shape, strict=True)
    )


def direct(
    padded: NDArray[Any], kernel: NDArray[Any], dilation: Shape, stride: Shape, out_shape: Shape
) -> NDArray[Any]:
    """Shifted-slice accumulation: one multiply-add pass per non-zero kernel tap."""
    out = np.zeros(padded.shape[:1] + out_shape, dtype=padded.dtype)
    tmp = np.empty_like(out)
    for offsets in itertools.product(*(range(k) for k in kernel.shape)):
        weight = kernel[offsets]
        if weight == 0:
            continue
        view = padded[(slice(None),) + _tap_slices(offsets, dilation, stride, out_shape)]
        np.multiply(view, weight, out=tmp)
        out += tmp
    return out


def fft(
    padded: NDArray[Any], kernel: NDArray[Any], dilation: Shape, stride: Shape, out_shape: Shape
) -> NDArray[Any]:
    """Correlation through real FFTs of (fast) lengths >= the padded size.

    A circular convolution of length L >= P leaves the valid part of a linear
    one untouched, so no extra zero padding is needed.
    """
    ndim = kernel.ndim
    axes = tuple(range(1, ndim + 1))
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel.shape, dilation, strict=True))
    dilated = np.zeros(span, dtype=padded.dtype)
    dilated[tuple(slice(None, None, d) for d in dilation)] = kernel
    flipped = dilated[(slice(None, None, -1),) * ndim]
    lengths = [scipy.fft.next_fast_len(n, real=True) for n in padded.shape[1:]]
    spectrum = scipy.fft.rfftn(padded, s=lengths, axes=axes, workers=-1)
    spectrum *= scipy.fft.rfftn(flipped, s=lengths, axes=tuple(range(ndim)), workers=-1)
    full = scipy.fft.irfftn(spectrum, s=lengths, axes=axes, workers=-1)
    valid = tuple(
        slice(e - 1, e - 1 + (o - 1) * s + 1, s)
        for e, s, o in zip(span, stride, out_shape, strict=True)
    )
    return np.ascontiguousarray(full[(slice(None),) + valid], dtype=padded.dtype)


def rank_terms(kernel: NDArray[Any], rtol: float | None = None) -> list[tuple[NDArray[Any], ...]]:
    """Split a 2-D kernel into outer products of 1-D factors (SVD), dropping tiny terms.

    A term is dropped only when its singular value is below ``rtol`` times the largest
    (default: a few float64 epsilons per kernel side), so that what is dropped stays
    under float rounding.
    """
    if rtol is None:
        rtol = 4 * np.finfo(np.float64).eps * max(kernel.shape)
    u, s, vt = np.linalg.svd(kernel.astype(np.float64))
    keep = s > rtol * s[0] if s[0] > 0 else s > 0
    terms: list[tuple[NDArray[Any], ...]] = []
    for i in np.flatnonzero(keep):
        root = np.sqrt(s[i])
        terms.append((u[:, i] * root, vt[i] * root))
    if not terms:  # all-zero kernel
        terms.append((np.zeros(kernel.shape[0]), np.zeros(kernel.shape[1])))
    return terms


def _along_axis(
    array: NDArray[Any], weights: NDArray[Any], axis: int, dilation: int, stride: int, n_out: int
) -> NDArray[Any]:
    """1-D valid correlation of ``array`` along ``axis`` with ``weights``."""
    shape = list(array.shape)
    shape[axis] = n_out
    out = np.zeros(shape, dtype=array.dtype)
    tmp = np.empty_like(out)
    index: list[Any] = [slice(None)] * array.ndim
    for t, weight in enumerate(weights):
        if weight == 0:
            continue
        index[axis] = slice(t * dilation, t * dilation + (n_out - 1) * stride + 1, stride)
        np.multiply(array[tuple(index)], weight.astype(array.dtype), out=tmp)
        out += tmp
    return out


def separable(
    padded: NDArray[Any], kernel: NDArray[Any], dilation: Shape, stride: Shape, out_shape: Shape
) -> NDArray[Any]:
    """Sum over the SVD rank terms of a 2-D kernel of two 1-D passes (rows, then columns)."""
    if kernel.ndim != 2:
        return direct(padded, kernel, dilation, stride, out_shape)
    out = None
    for col_weights, row_weights in rank_terms(kernel):
        rows = _along_axis(padded, col_weights, 1, dilation[0], stride[0], out_shape[0])
        term = _along_axis(rows, row_weights, 2, dilation[1], stride[1], out_shape[1])
        out = term if out is None else out + term
    assert out is not None
    return out


METHODS = {"direct": direct, "fft": fft, "separable": separable}
