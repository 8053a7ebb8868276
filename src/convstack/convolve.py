"""Correlation and convolution of 1-D, 2-D and N-D arrays (per channel for colour).

``correlate`` slides the kernel as it is (OpenCV ``filter2D``, torch ``conv2d``);
``convolve`` flips it first (``scipy.ndimage.convolve``). The kernel's anchor is its
centre element, index ``k // 2`` on each axis.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _lazy, _methods, _nonfinite
from . import _validate as v
from .limits import check_memory, get_memory_limit
from .padding import Border, check_mode, dilated_span, resolve_padding

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
    spans = dilated_span(kernel_shape, dilation)
    return tuple(
        (n + b + a - w) // s + 1 for n, w, (b, a), s in zip(shape, spans, pads, stride, strict=True)
    )


def choose_method(
    spatial: tuple[int, ...],
    kernel: NDArray[Any],
    out_shape: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> str:
    """Pick the cheapest method for one image (per channel) by a measured cost model.

    Estimated wall times in ns, with the constants of ``convstack._methods`` (CPU time
    of one thread; work of at least ``THREAD_MIN_WORK`` taps is split over ``THREADS``
    threads: rows evenly, FFT tiles in rounds of ``THREADS``):

    - direct: ``TAP_NS * outputs * taps + OUT_NS * outputs``, ``taps`` the non-zero
      taps of the kernel;
    - separable (2-D kernels): per rank term (one for a Gaussian or a box, up to k
      for a dense random kernel) ``SEP_TAP_NS`` per column-pass tap over the output
      rows times the padded width, and per row-pass tap over the outputs, plus
      ``OUT_NS * outputs``;
    - fft: per overlap-save tile of ``n`` samples ``FFT_NS * n * log2(n)`` (1.5 times
      that for tiles over ``FFT_CACHE_SAMPLES``) ``+ FFT_TILE_NS + FFT_FILL_NS * n``,
      for the cheapest tiling (:func:`convstack._methods.fft_plan`), plus
      ``FFT_OUT_NS`` per output sample.

    N-D kernels (3 or more axes) use direct below 64 taps per padded sample, else FFT.
    The constants were measured with ``python bench/conv.py --calibrate`` on the
    development machine (2 shared vCPUs); bench/README.md, section "conv", records
    the figures. The choice is cached per (shapes, kernel bytes).
    """
    key = (kernel.shape, kernel.dtype.str, kernel.tobytes())
    costs = _costs(
        tuple(spatial), key, tuple(out_shape), tuple(pads), tuple(stride), tuple(dilation)
    )
    return min(costs, key=costs.__getitem__)


@functools.lru_cache(maxsize=256)
def _costs(
    spatial: tuple[int, ...],
    key: tuple[tuple[int, ...], str, bytes],
    out_shape: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> dict[str, float]:
    """Estimated ns per method (see :func:`choose_method`)."""
    kernel = np.frombuffer(key[2], dtype=key[1]).reshape(key[0])
    padded = tuple(n + b + a for n, (b, a) in zip(spatial, pads, strict=True))
    if kernel.ndim > 2:
        taps = float(np.count_nonzero(kernel))
        if taps * float(np.prod(out_shape)) < 64 * float(np.prod(padded)):
            return {"direct": 0.0}
        return {"fft": 0.0}
    m = _methods
    span = dilated_span(kernel.shape, dilation)
    outputs = float(np.prod(out_shape))
    fixed = m.OUT_NS * outputs
    work = outputs * float(np.count_nonzero(kernel))
    costs: dict[str, float] = {"direct": m.wall_ns(m.TAP_NS * work, work, out_shape[0]) + fixed}
    if kernel.ndim == 2 and min(kernel.shape) > 1:
        column_grid = float(out_shape[0]) * padded[1]
        taps = 0.0
        for col, row in m.rank_terms(kernel):
            taps += column_grid * np.count_nonzero(col) + outputs * np.count_nonzero(row)
        costs["separable"] = m.wall_ns(m.SEP_TAP_NS * taps, taps, out_shape[0]) + fixed
    if kernel.ndim == 2:
        full = (padded[0] - span[0] + 1, padded[1] - span[1] + 1)
        (_, t_r), (_, t_c), ns = m.fft_plan((span[0], span[1]), full, m.THREADS)
    else:
        full = (1, padded[0] - span[0] + 1)
        (_, t_r), (_, t_c), ns = m.fft_plan((1, span[0]), full, m.THREADS)
    tiles = -(-full[0] // t_r) * -(-full[1] // t_c)
    costs["fft"] = m.wall_ns(ns, 50.0 * full[0] * full[1], tiles) + m.FFT_OUT_NS * outputs
    return costs


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
    name: str,
) -> NDArray[Any]:
    if _lazy.is_dask(image):  # larger than memory: a lazy dask array (convstack._lazy)
        return _lazy.run(
            convolve if flip else correlate,
            image,
            kernel,
            padding=padding,
            mode=mode,
            cval=cval,
            stride=stride,
            dilation=dilation,
            channel_axis=channel_axis,
            method=method,
        )
    array = v.as_real_array(image, "image")
    weights = v.as_real_array(kernel, "kernel")
    if array.dtype.kind == "f" and array.dtype.itemsize > 8:
        # longdouble works in float64: values beyond it become inf here, once, so that
        # every method and the non-finite rule see the same samples
        with np.errstate(over="ignore"):
            array = array.astype(np.float64)
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
    # no cast here: the kernels read the image as it is, FFT tiles are cast as padded
    if weights.dtype == dtype:
        taps = weights.astype(dtype)  # a copy: the caller's kernel is never modified
    else:
        with np.errstate(over="ignore"):  # a weight beyond float32 becomes inf: the rule
            taps = weights.astype(dtype)
    if flip:
        taps = taps[(slice(None, None, -1),) * taps.ndim]

    pads = resolve_padding(padding, taps.shape, dilation_t, flipped=flip)
    spatial = work.shape[1:]
    spans = dilated_span(taps.shape, dilation_t)
    for i, (n, (b, a), w) in enumerate(zip(spatial, pads, spans, strict=True)):
        if n + b + a < w:
            raise ValueError(
                f"`kernel` must fit inside the padded image: along spatial axis {i} the "
                f"dilated kernel spans {w} samples but the padded image has "
                f"{n + b + a} (size {n}, padding {(b, a)})."
            )
    out_shape = output_shape(spatial, taps.shape, pads, stride_t, dilation_t)
    _check_size(name, array.shape, work, taps, pads, dilation_t, out_shape, dtype)
    border = _border(work, pads, mode, cval, dtype)
    if not np.isfinite(taps).all():
        # no SVD, FFT or grouping of equal weights: every output has a non-finite term,
        # whose IEEE outcome the footprint rule gives directly
        result = np.zeros((work.shape[0],) + out_shape, dtype=dtype)
        _nonfinite.overwrite(result, work, border, taps, dilation_t, stride_t)
    else:
        result = _finite_kernel(work, border, taps, dilation_t, stride_t, out_shape, method)
    result = result[0] if axis is None else np.moveaxis(result, 0, axis)
    return np.ascontiguousarray(result)


def _finite_kernel(
    work: NDArray[Any],
    border: Border,
    taps: NDArray[Any],
    dilation: tuple[int, ...],
    stride: tuple[int, ...],
    out_shape: tuple[int, ...],
    method: str,
) -> NDArray[Any]:
    """Run ``method`` on a finite kernel; non-finite samples follow the footprint rule.

    Direct and separable on 1-D and 2-D images run on the image as it is, their
    kernels testing each image row for NaN and infinities as they first read it (a
    finite image pays no separate scan). Each of their outputs depends only on the
    samples of its footprint, so when one was met, the outputs whose footprint holds
    none are already right and :func:`convstack._nonfinite.overwrite` gives the others
    their direct IEEE value. FFT (and the N-D paths, and a non-finite border fill)
    would spread such samples: there the image is scanned first and, if needed, the
    method runs on a copy with those samples set to 0 before the overwrite.
    """
    spatial = work.shape[1:]
    if method == "auto":
        method = choose_method(spatial, taps, out_shape, border.pads, stride, dilation)
    bad_fill = not np.isfinite(border.fill).all()
    if method in ("direct", "separable") and work.ndim <= 3 and not bad_fill:
        found: list[bool] = []
        run = _methods.direct if method == "direct" else _methods.separable
        result = run(work, border, taps, dilation, stride, out_shape, found)
        if any(found):
            _nonfinite.overwrite(result, work, border, taps, dilation, stride)
        return result
    bad = bad_fill or _nonfinite.has_nonfinite(work)
    source, fast_border = work, border
    if bad:
        source = _nonfinite.finite_copy(work, border.fill.dtype)
        if bad_fill:
            fill = np.where(np.isfinite(border.fill), border.fill, 0).astype(border.fill.dtype)
            fast_border = Border(border.pads, border.mode, fill)
    with np.errstate(invalid="ignore", over="ignore"):
        result = _methods.METHODS[method](source, fast_border, taps, dilation, stride, out_shape)
    if bad:
        _nonfinite.overwrite(result, work, border, taps, dilation, stride)
    return result


def _check_size(
    name: str,
    shape: tuple[int, ...],
    work: NDArray[Any],
    taps: NDArray[Any],
    pads: tuple[tuple[int, int], ...],
    dilation: tuple[int, ...],
    out_shape: tuple[int, ...],
    dtype: np.dtype[Any],
) -> None:
    """Refuse, before allocating, a call whose working memory exceeds the limit.

    Counted in the working dtype: the result twice (the methods' output and its
    contiguous copy), a copy of a float image (the non-finite path), and the scratch of
    the methods: for 1-D and 2-D at least the dilated kernel span on both axes three
    times (padded strip or FFT tile, accumulator, temporary or spectrum), for N-D the
    padded image three times (padded copy, accumulator, temporary or spectrum). Every
    path's memory is bounded by this; time is the cost model's business (large kernels
    go to the FFT), so no separate work limit is needed.
    """
    batch = float(work.shape[0])
    span = dilated_span(taps.shape, dilation)
    padded = math.prod(float(n + b + a) for n, (b, a) in zip(work.shape[1:], pads, strict=True))
    outputs = batch * math.prod(float(n) for n in out_shape)
    scratch = 3.0 * math.prod(float(n) for n in span) if taps.ndim <= 2 else 3.0 * batch * padded
    image = batch * math.prod(float(n) for n in work.shape[1:]) * (work.dtype.kind == "f")
    need = dtype.itemsize * (2.0 * outputs + scratch + image)
    if need > get_memory_limit():  # (the message is built only for a refusal)
        check_memory(
            need,
            f"{name} of an image of shape {shape} with a kernel of shape {taps.shape} "
            f"(dilation {dilation}, padding {pads})",
        )


def _border(
    work: NDArray[Any],
    pads: tuple[tuple[int, int], ...],
    mode: str,
    cval: float,
    dtype: np.dtype[Any],
) -> Any:
    """Describe the padding; 'mean' is 'constant' with each batch item's mean.

    The fill values carry the working float dtype.
    """
    if mode == "mean":
        means = work.reshape(work.shape[0], -1).mean(axis=1, dtype=np.float64)
        return Border(pads, "constant", means.astype(dtype))
    return Border(pads, mode, np.full(work.shape[0], cval, dtype=dtype))


_DOC = """{summary}

Parameters
----------
image : array_like
    Real array: 1-D, 2-D or N-D, optionally with a channel axis.
kernel : array_like
    Real array with one axis per spatial axis of ``image``.
padding : {{"same", "valid", "full"}}, int, sequence of int or of (before, after)
    How much to pad. "same" gives ``ceil(n / stride)`` samples per axis; for a
    1-D image a pair of ints is (before, after).
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

Notes
-----
The anchor is the kernel's centre element, index ``k // 2`` per axis: "same" pads
``dilation * (k // 2)`` before and the rest after (for ``convolve``, of the flipped
kernel). ``method="auto"`` picks by a cost model measured on the development machine
(:func:`choose_method`). NaN and infinities follow one rule for every method (README,
"Non-finite values"): an output whose footprint (every tap, zero weights included)
holds one is its direct IEEE value (NaN, +inf or -inf), every other output is finite.
uint8, uint16, int16 and bool images are read as they are by the compiled kernels
(direct, separable); other integer dtypes and float16 are cast first. Sizes
whose working memory exceeds :func:`convstack.limits.get_memory_limit` raise
:class:`convstack.limits.LimitError` before anything is allocated.

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
        name="correlate",
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
        name="convolve",
    )


correlate.__doc__ = _DOC.format(
    summary="Correlate ``image`` with ``kernel`` (no flip: OpenCV filter2D, torch conv2d).",
    example=">>> correlate([1, 2, 3], [1, 0, 1]).tolist()\n[2.0, 4.0, 2.0]",
)
convolve.__doc__ = _DOC.format(
    summary="Convolve ``image`` with ``kernel`` (flipped: scipy.ndimage.convolve).",
    example=">>> convolve([1, 2, 3], [1, 2, 0]).tolist()\n[4.0, 7.0, 6.0]",
)
