"""Correlation and convolution of 1-D, 2-D and N-D arrays (per channel for colour).

``correlate`` slides the kernel as it is (OpenCV ``filter2D``, torch ``conv2d``);
``convolve`` flips it first (``scipy.ndimage.convolve``). The kernel's anchor is its
centre element, index ``k // 2`` on each axis.
"""

from __future__ import annotations

import math
import os
import threading
from typing import Any, NamedTuple

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
      ``SEP_OUT_NS * outputs`` per term and ``OUT_NS * outputs``;
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


def _key_bytes(args: tuple[Any, ...], costs: dict[str, float]) -> int:
    """What a cost-model entry holds: its key's kernel bytes, and about 1 KiB more."""
    return len(args[1][2]) + 1024


@_methods.bounded_cache(256, _key_bytes)
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
        taps, cpu = 0.0, 0.0
        for col, row in m.rank_terms(kernel):
            taps += column_grid * np.count_nonzero(col) + outputs * np.count_nonzero(row)
            cpu += m.SEP_OUT_NS * outputs
        cpu += m.SEP_TAP_NS * taps
        costs["separable"] = m.wall_ns(cpu, taps, out_shape[0]) + fixed
    if kernel.ndim == 2:
        full = (padded[0] - span[0] + 1, padded[1] - span[1] + 1)
        (_, t_r), (_, t_c), ns = m.fft_plan((span[0], span[1]), full, m.THREADS)
    else:
        full = (1, padded[0] - span[0] + 1)
        (_, t_r), (_, t_c), ns = m.fft_plan((1, span[0]), full, m.THREADS)
    tiles = -(-full[0] // t_r) * -(-full[1] // t_c)
    costs["fft"] = m.wall_ns(ns, 50.0 * full[0] * full[1], tiles) + m.FFT_OUT_NS * outputs
    return costs


class _Plan(NamedTuple):
    """What a call's arguments decide before its image's values are read (cached)."""

    axis: int | None  # channel axis, moved to the front of the work array
    dtype: np.dtype[Any]  # working float dtype
    taps: NDArray[Any]  # the kernel oriented for correlation, in ``dtype``; never written
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    out_shape: tuple[int, ...]
    need: float  # working bytes (:func:`_working_bytes`)
    border: Border | None  # None for 'mean' (its fill is each image's mean)
    finite: bool  # whether every weight is finite
    bad_fill: bool  # whether the border's fill holds a NaN or an infinity
    method: str  # the method, 'auto' resolved (finite kernels)


#: Plans of recent calls by their arguments (:func:`_plan`); kernels up to this many
#: bytes as float64 are keyed by their values, larger ones are planned on every call.
_PLANS: dict[tuple[Any, ...], _Plan] = {}
_PLANS_MAX = 128
_PLANS_LOCK = threading.Lock()
PLAN_KERNEL_BYTES = 1 << 16
_PLAIN = frozenset({int, float, str, bool, type(None)})
_KEYED = (int, float, str, bool, type(None), np.number, np.bool_)


def _new_plans_lock() -> None:
    """In a forked child: a free lock (a thread the child does not have may have held
    the parent's when it forked; the child's first new plan would wait forever)."""
    global _PLANS_LOCK
    _PLANS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_plans_lock)


class _NoKey(Exception):
    """An argument that :func:`_key` does not key (the call is planned uncached)."""


def _key(value: Any) -> Any:
    """A hashable stand-in for an argument that keeps its type (``1``, ``1.0``, ``True``
    and ``(1,)`` plan differently: some are errors).

    A NaN is keyed by its bits: NaN equals nothing, itself included, and hashes by
    identity, so a ``cval=float("nan")`` made anew for each call never found its plan
    and filled the cache with copies, evicting the others."""
    if isinstance(value, _KEYED):
        if value != value:  # (NaN)
            return (type(value), "nan", np.asarray(value).tobytes())
        return (type(value), value)
    if type(value) in (tuple, list):
        types = tuple(map(type, value))
        if _PLAIN.issuperset(types) and (
            float not in types or all(x == x for x in value)  # (no NaN)
        ):
            return (type(value), tuple(value), types)
        return (type(value),) + tuple(_key(x) for x in value)
    raise _NoKey


def _plan(array: NDArray[Any], weights: NDArray[Any], *options: Any) -> _Plan:
    """:func:`_make_plan` for these arguments, from the cache when the same shapes,
    dtypes, kernel values and options were planned before (a 512^2 3x3 call spends
    ~30 us planning: a sixth of its time)."""
    if weights.size * 8 > PLAN_KERNEL_BYTES:  # (a plan holds it as float, up to 8 B a weight)
        return _make_plan(array.shape, array.dtype, weights, *options)
    try:
        key = (
            array.shape, array.dtype, weights.shape, weights.dtype, weights.tobytes(),
            _methods.THREADS, _key(options),
        )  # fmt: skip
    except _NoKey:
        return _make_plan(array.shape, array.dtype, weights, *options)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _make_plan(array.shape, array.dtype, weights, *options)
        with _PLANS_LOCK:
            if len(_PLANS) >= _PLANS_MAX:
                _PLANS.pop(next(iter(_PLANS)))
            _PLANS[key] = plan
    return plan


def _make_plan(
    shape: tuple[int, ...],
    image_dtype: np.dtype[Any],
    weights: NDArray[Any],
    flip: bool,
    padding: Any,
    mode: str,
    cval: float,
    stride: Any,
    dilation: Any,
    channel_axis: int | None,
    method: str,
) -> _Plan:
    """Validate every argument but the image's values and derive what they decide."""
    cval = check_mode(mode, cval)
    v.choice(method, "method", METHOD_NAMES)
    ndim = len(shape)
    axis = v.channel_axis_index(channel_axis, ndim)
    spatial_ndim = ndim - (axis is not None)
    if spatial_ndim == 0:
        raise v.fail(
            "image",
            "have at least one spatial axis besides `channel_axis`",
            np.broadcast_to(np.zeros((), image_dtype), shape),
        )
    if weights.ndim != spatial_ndim:
        raise ValueError(
            f"`kernel` must have one axis per spatial axis of `image` ({spatial_ndim}); "
            f"got a {weights.ndim}-D kernel of shape {weights.shape}."
        )
    stride_t = v.per_axis_ints(stride, "stride", spatial_ndim, minimum=1)
    dilation_t = v.per_axis_ints(dilation, "dilation", spatial_ndim, minimum=1)

    dtype = v.float_dtype(np.empty(0, image_dtype))
    with np.errstate(over="ignore"):  # a weight beyond float32 becomes inf: the rule
        taps = weights.astype(dtype)  # a copy: the caller's kernel is never modified
    if flip:
        taps = taps[(slice(None, None, -1),) * taps.ndim]
    taps = np.ascontiguousarray(taps)

    pads = resolve_padding(padding, taps.shape, dilation_t, flipped=flip)
    work_shape = (
        (shape[axis],) + shape[:axis] + shape[axis + 1 :] if axis is not None else (1,) + shape
    )
    spatial = work_shape[1:]
    spans = dilated_span(taps.shape, dilation_t)
    for i, (n, (b, a), w) in enumerate(zip(spatial, pads, spans, strict=True)):
        if n + b + a < w:
            raise ValueError(
                f"`kernel` must fit inside the padded image: along spatial axis {i} the "
                f"dilated kernel spans {w} samples but the padded image has "
                f"{n + b + a} (size {n}, padding {(b, a)})."
            )
    out_shape = output_shape(spatial, taps.shape, pads, stride_t, dilation_t)
    need = _working_bytes(work_shape, image_dtype, taps, pads, dilation_t, out_shape, dtype)
    border = None
    if mode != "mean":
        border = Border(pads, mode, np.full(work_shape[0], cval, dtype=dtype))
    finite = bool(np.isfinite(taps).all())
    bad_fill = border is not None and not bool(np.isfinite(border.fill).all())
    if method == "auto" and finite:
        method = choose_method(spatial, taps, out_shape, pads, stride_t, dilation_t)
    return _Plan(
        axis,
        dtype,
        taps,
        stride_t,
        dilation_t,
        pads,
        out_shape,
        need,
        border,
        finite,
        bad_fill,
        method,
    )


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
    plan = _plan(array, weights, flip, padding, mode, cval, stride, dilation, channel_axis, method)
    if plan.need > get_memory_limit():  # (the message is built only for a refusal)
        check_memory(
            plan.need,
            f"{name} of an image of shape {array.shape} with a kernel of shape "
            f"{plan.taps.shape} (dilation {plan.dilation}, padding {plan.pads})",
        )
    axis = plan.axis
    work = array[None] if axis is None else np.moveaxis(array, axis, 0)
    border, bad_fill = plan.border, plan.bad_fill
    if border is None:
        border = _mean_border(work, plan.pads, plan.dtype)
        bad_fill = not bool(np.isfinite(border.fill).all())
    if not plan.finite:
        # no SVD, FFT or grouping of equal weights: every output has a non-finite term,
        # whose IEEE outcome the footprint rule gives directly
        result = np.zeros((work.shape[0],) + plan.out_shape, dtype=plan.dtype)
        _nonfinite.overwrite(result, work, border, plan.taps, plan.dilation, plan.stride)
    else:
        result = _finite_kernel(
            work, border, plan.taps, plan.dilation, plan.stride, plan.out_shape, plan.method,
            bad_fill,
        )  # fmt: skip
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
    bad_fill: bool,
) -> NDArray[Any]:
    """Run ``method`` (not 'auto') on a finite kernel; non-finite samples follow the
    footprint rule.

    Direct and separable on 1-D and 2-D images run on the image as it is, their
    kernels testing each image row for NaN and infinities as they first read it, or
    each output row as they write it where every tap is added (a finite image pays no
    separate scan). Each of their outputs depends only on the
    samples of its footprint, so when one was met, the outputs whose footprint holds
    none are already right and :func:`convstack._nonfinite.overwrite` gives the others
    their direct IEEE value. FFT (and the N-D paths, and a non-finite border fill)
    would spread such samples: there the image is scanned first and, if needed, the
    method runs on a copy with those samples set to 0 before the overwrite.
    """
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


def _working_bytes(
    work_shape: tuple[int, ...],
    image_dtype: np.dtype[Any],
    taps: NDArray[Any],
    pads: tuple[tuple[int, int], ...],
    dilation: tuple[int, ...],
    out_shape: tuple[int, ...],
    dtype: np.dtype[Any],
) -> float:
    """Bytes of working memory of a call, which is refused beyond the memory limit.

    Counted in the working dtype: the result twice (the methods' output and its
    contiguous copy), a copy of a float image (the non-finite path), and the scratch of
    the methods: for 1-D and 2-D at least the dilated kernel span on both axes three
    times (padded strip or FFT tile, accumulator, temporary or spectrum), for N-D the
    padded image three times (padded copy, accumulator, temporary or spectrum). Every
    path's memory is bounded by this; time is the cost model's business (large kernels
    go to the FFT), so no separate work limit is needed.
    """
    batch = float(work_shape[0])
    span = dilated_span(taps.shape, dilation)
    padded = math.prod(float(n + b + a) for n, (b, a) in zip(work_shape[1:], pads, strict=True))
    outputs = batch * math.prod(float(n) for n in out_shape)
    scratch = 3.0 * math.prod(float(n) for n in span) if taps.ndim <= 2 else 3.0 * batch * padded
    image = batch * math.prod(float(n) for n in work_shape[1:]) * (image_dtype.kind == "f")
    return dtype.itemsize * (2.0 * outputs + scratch + image)


def _mean_border(
    work: NDArray[Any], pads: tuple[tuple[int, int], ...], dtype: np.dtype[Any]
) -> Border:
    """'mean' is 'constant' with each batch item's mean, in the working float dtype."""
    means = work.reshape(work.shape[0], -1).mean(axis=1, dtype=np.float64)
    return Border(pads, "constant", means.astype(dtype))


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
