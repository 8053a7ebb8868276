"""Correlation and convolution of 1-D, 2-D and N-D arrays (per channel for colour).

``correlate`` slides the kernel as it is (OpenCV ``filter2D``, torch ``conv2d``);
``convolve`` flips it first (``scipy.ndimage.convolve``). The kernel's anchor is its
centre element, index ``k // 2`` on each axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _methods
from . import _validate as v
from .padding import check_mode, pad_spatial, resolve_padding

__all__ = ["choose_method", "convolve", "correlate", "output_shape"]

METHOD_NAMES = ("auto", "direct", "separable", "fft")


def output_shape(
    shape: tuple[int, ...],
    kernel_shape: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[int, ...]:
    """PyTorch's rule: ``floor((n + before + after - dilation*(k-1) - 1) / stride) + 1``."""
    return tuple(
        (n + b + a - d * (k - 1) - 1) // s + 1
        for n, k, (b, a), s, d in zip(shape, kernel_shape, pads, stride, dilation, strict=True)
    )


def choose_method(
    padded_shape: tuple[int, ...],
    kernel: NDArray[Any],
    out_shape: tuple[int, ...],
) -> str:
    """Pick the cheapest method by a cost model (see bench/README.md for its constants)."""
    out_size = float(np.prod(out_shape))
    taps = float(np.count_nonzero(kernel))
    direct_cost = taps * out_size
    costs = {"direct": direct_cost}
    if kernel.ndim == 2 and min(kernel.shape) > 1:
        rank = len(_methods.rank_terms(kernel))
        costs["separable"] = rank * (kernel.shape[0] + kernel.shape[1]) * out_size * 1.3
    padded_size = float(np.prod(padded_shape))
    costs["fft"] = 12.0 * padded_size * max(np.log2(padded_size), 1.0) + out_size
    return min(costs, key=costs.__getitem__)


def _filter(
    image: ArrayLike,
    kernel: ArrayLike,
    *,
    flip: bool,
    padding: Any,
    mode: str,
    cval: float,
    stride: Any,
    dilation: Any,
    channel_axis: int | None,
    method: str,
) -> NDArray[Any]:
    array = v.as_real_array(image, "image")
    weights = v.as_real_array(kernel, "kernel")
    cval = check_mode(mode, cval)
    v.choice(method, "method", METHOD_NAMES)
    axis = v.channel_axis_index(channel_axis, array.ndim)
    spatial_ndim = array.ndim - (axis is not None)
    if spatial_ndim == 0:
        raise v.fail("image", "have at least one spatial axis besides `channel_axis`", array)
    if weights.ndim != spatial_ndim:
        raise ValueError(
            f"`kernel` must have one axis per spatial axis of `image` ({spatial_ndim}); "
            f"got a {weights.ndim}-D kernel of shape {weights.shape}."
        )
    stride_t = v.per_axis_ints(stride, "stride", spatial_ndim, minimum=1)
    dilation_t = v.per_axis_ints(dilation, "dilation", spatial_ndim, minimum=1)

    dtype = v.float_dtype(array)
    work = array if axis is None else np.moveaxis(array, axis, 0)
    work = work.reshape((1,) + work.shape) if axis is None else work
    work = work.astype(dtype, copy=False)
    taps = weights.astype(dtype)
    if flip:
        taps = taps[(slice(None, None, -1),) * taps.ndim]

    pads = resolve_padding(padding, taps.shape, dilation_t, flipped=flip)
    spatial = work.shape[1:]
    for i, (n, (b, a), k, d) in enumerate(zip(spatial, pads, taps.shape, dilation_t, strict=True)):
        if n + b + a < d * (k - 1) + 1:
            raise ValueError(
                f"`kernel` must fit inside the padded image: along spatial axis {i} the "
                f"dilated kernel spans {d * (k - 1) + 1} samples but the padded image has "
                f"{n + b + a} (size {n}, padding {(b, a)})."
            )
    out_shape = output_shape(spatial, taps.shape, pads, stride_t, dilation_t)
    padded = np.ascontiguousarray(pad_spatial(work, pads, mode, cval))
    if method == "auto":
        method = choose_method(padded.shape[1:], taps, out_shape)
    result = _methods.METHODS[method](padded, taps, dilation_t, stride_t, out_shape)
    result = result[0] if axis is None else np.moveaxis(result, 0, axis)
    return np.ascontiguousarray(result)


_DOC = """{summary}

Parameters
----------
image : array_like
    Real array: 1-D, 2-D or N-D, optionally with a channel axis.
kernel : array_like
    Real array with one axis per spatial axis of ``image``.
padding : {{"same", "valid", "full"}}, int, sequence of int or of (before, after)
    How much to pad. "same" gives ``ceil(n / stride)`` samples per axis.
mode : {{"constant", "nearest", "reflect", "mirror", "wrap", "mean"}}
    What the padding holds (see the mode table in the README).
cval : float
    Fill value for ``mode="constant"``; must stay 0 for other modes.
stride, dilation : int or sequence of int
    Step between output samples and between kernel taps, >= 1.
channel_axis : int, optional
    Axis of colour channels; each channel is filtered alone.
method : {{"auto", "direct", "separable", "fft"}}
    Algorithm. All give the same result to float rounding.

Returns
-------
ndarray
    float32 for float32 (and float16) input, float64 otherwise. Spatial shape
    ``floor((n + before + after - dilation*(k-1) - 1) / stride) + 1``.

Raises
------
ValueError
    Bad values: empty arrays, wrong kernel rank, unknown mode or method,
    stride or dilation < 1, a kernel larger than the padded image, ``cval``
    with a mode that ignores it.
TypeError
    Complex, object or string arrays; non-integer stride or dilation.

Examples
--------
{example}
"""


def correlate(
    image: ArrayLike,
    kernel: ArrayLike,
    *,
    padding: Any = "same",
    mode: str = "constant",
    cval: float = 0.0,
    stride: int | tuple[int, ...] = 1,
    dilation: int | tuple[int, ...] = 1,
    channel_axis: int | None = None,
    method: str = "auto",
) -> NDArray[np.floating[Any]]:
    return _filter(
        image,
        kernel,
        flip=False,
        padding=padding,
        mode=mode,
        cval=cval,
        stride=stride,
        dilation=dilation,
        channel_axis=channel_axis,
        method=method,
    )


def convolve(
    image: ArrayLike,
    kernel: ArrayLike,
    *,
    padding: Any = "same",
    mode: str = "constant",
    cval: float = 0.0,
    stride: int | tuple[int, ...] = 1,
    dilation: int | tuple[int, ...] = 1,
    channel_axis: int | None = None,
    method: str = "auto",
) -> NDArray[np.floating[Any]]:
    return _filter(
        image,
        kernel,
        flip=True,
        padding=padding,
        mode=mode,
        cval=cval,
        stride=stride,
        dilation=dilation,
        channel_axis=channel_axis,
        method=method,
    )


correlate.__doc__ = _DOC.format(
    summary="Correlate ``image`` with ``kernel`` (no flip: OpenCV filter2D, torch conv2d).",
    example=">>> correlate([1, 2, 3], [1, 0, 1]).tolist()\n[2.0, 4.0, 2.0]",
)
convolve.__doc__ = _DOC.format(
    summary="Convolve ``image`` with ``kernel`` (flipped: scipy.ndimage.convolve).",
    example=">>> convolve([1, 2, 3], [1, 2, 0]).tolist()\n[4.0, 7.0, 6.0]",
)
