"""Dask arrays in, lazy dask arrays out: the engine and the filters on images larger than memory.

Every public filtering function calls :func:`run` first when its image is a dask array
(:func:`is_dask`, which never imports dask). The result is exact, the same as the
in-memory call on the whole image, because

1. the whole array is padded first, lazily, by the operation's halo ``r`` per spatial
   axis with the function's own border rule (the index modes gather through
   :func:`convstack.pad` applied to ``arange(n)``, so wide pads reflect and wrap as the
   in-memory call does; 'constant' adds the fill; 'mean' adds the image's mean, of each
   channel, computed eagerly in one streaming pass when the call is made, so that the
   returned graph holds a constant and not a reduction over every chunk);
2. ``dask.array.map_overlap`` with ``depth = r`` and ``boundary='none'`` calls the
   in-memory function on each chunk with its halo; every output kept depends only on
   samples within ``r``, all of them real (image or exact padding), so the mode used
   inside a chunk never matters;
3. the padding is cropped off again.

Only ``padding='same'`` with ``stride=1`` is supported for the engine (other paddings or
strides raise ``ValueError``). The float bilateral filter quantises colour distances
over the image's range: the global finite minimum and maximum are computed eagerly and
appended to each chunk as one row out of every kept output's reach, so that each chunk
builds the same table as the whole image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Radius = tuple[int, ...]


def is_dask(x: object) -> bool:
    """Whether ``x`` is a dask array (or other dask collection), without importing dask."""
    return type(x).__module__.startswith("dask.")


# ------------------------------------------------------------------------- radii
# An upper bound of each operation's reach per spatial axis: any bound is exact (the
# padding by more than the reach holds what the in-memory call pads with).


def _pair(size: Any) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    rows, cols = size
    return int(rows), int(cols)


def _box(shape: tuple[int, ...], size: Any, **_: Any) -> Radius:
    rows, cols = _pair(size)
    return rows // 2, cols // 2


def _gaussian_auto(sigma: float) -> int:
    return int(round(sigma * 4 * 2 + 1)) | 1  # uint8 uses 3 sigma: 4 is the bound


def _gaussian(
    shape: tuple[int, ...],
    size: Any,
    sigma: float = 0.0,
    *,
    sigma_y: float | None = None,
    mode: str = "mirror",
) -> Radius:
    sx = float(sigma)
    sy = sx if sigma_y is None or sigma_y <= 0 else float(sigma_y)
    rows, cols = _pair(size)
    rows = _gaussian_auto(sy) if rows == 0 and sy > 0 else rows
    cols = _gaussian_auto(sx) if cols == 0 and sx > 0 else cols
    radius = [rows // 2, cols // 2]
    if mode != "constant":  # OpenCV drops the kernel along an axis of length 1: keep it 1
        radius = [0 if shape[i] == 1 else r for i, r in enumerate(radius)]
    return radius[0], radius[1]


def _unsharp(
    shape: tuple[int, ...], sigma: float = 1.0, *_: Any, mode: str = "mirror", **__: Any
) -> Radius:
    r = (int(round(8 * float(sigma) + 1)) | 1) // 2
    return _gaussian(shape, (2 * r + 1, 2 * r + 1), mode=mode)  # its blur's rule too


def _median(shape: tuple[int, ...], size: int, **_: Any) -> Radius:
    return int(size) // 2, int(size) // 2


def _bilateral(
    shape: tuple[int, ...], diameter: int, sigma_color: float, sigma_space: float, **_: Any
) -> Radius:
    r = int(diameter) // 2 if diameter > 0 else int(np.rint(float(sigma_space) * 1.5))
    r = max(r, 1)
    return r, r


def _derivative(shape: tuple[int, ...], *args: Any, **kwargs: Any) -> Radius:
    size = kwargs.get("size", args[2] if len(args) > 2 else 3)
    r = max(int(size) // 2, 1)
    return r, r


def _laplacian(shape: tuple[int, ...], size: int = 1, **_: Any) -> Radius:
    r = max(int(size) // 2, 1)
    return r, r


def _scharr(shape: tuple[int, ...], *_: Any, **__: Any) -> Radius:
    return 1, 1


_FILTER_RADII: dict[str, Callable[..., Radius]] = {
    "box_blur": _box,
    "gaussian_blur": _gaussian,
    "unsharp_mask": _unsharp,
    "median_blur": _median,
    "bilateral": _bilateral,
    "sobel": _derivative,
    "scharr": _scharr,
    "laplacian": _laplacian,
}


# ------------------------------------------------------------------------- padding


def _pad_axis(x: Any, axis: int, before: int, after: int, mode: str, fill: Any) -> Any:
    """Pad one axis of the dask array ``x`` lazily, as :func:`convstack.pad` would."""
    import dask.array as da

    from .padding import pad

    if before == 0 and after == 0:
        return x
    if mode in ("constant", "mean"):
        parts = []
        for width in (before, after):
            shape = list(x.shape)
            shape[axis] = width
            parts.append(da.broadcast_to(da.from_array(fill), tuple(shape)).astype(x.dtype))
        return da.concatenate([parts[0], x, parts[1]], axis=axis)
    n = x.shape[axis]
    index = pad(np.arange(n), [(before, after)], mode=mode)
    # only the pads are gathered (a gather of the whole axis would split its chunks)
    parts = [da.take(x, index[:before], axis=axis), x, da.take(x, index[before + n :], axis=axis)]
    return da.concatenate(parts, axis=axis)


def _pad(x: Any, pads: dict[int, tuple[int, int]], mode: str, fill: Any) -> Any:
    """Pad ``x`` lazily and rechunk it to its own chunks, the pads added to the outer ones."""
    chunks = []
    for axis, sizes in enumerate(x.chunks):
        before, after = pads.get(axis, (0, 0))
        grown = list(sizes)
        grown[0] += before
        grown[-1] += after
        chunks.append(tuple(grown))
        x = _pad_axis(x, axis, before, after, mode, fill)
    return x.rechunk(tuple(chunks))


def _spread(
    x: Any,
    radius: dict[int, int],
    mode: str,
    fill: Any,
    block: Callable[[Any], Any],
    dtype: np.dtype[Any],
) -> Any:
    """Pad, run ``block`` on every chunk with its halo, crop: the lazy result."""
    import dask.array as da

    pads = {axis: (r, r) for axis, r in radius.items()}
    padded = _pad(x, pads, mode, fill)
    depth = {axis: radius.get(axis, 0) for axis in range(x.ndim)}
    out = da.map_overlap(
        block,
        padded,
        depth=depth,
        boundary="none",
        dtype=dtype,
        meta=np.empty((0,) * x.ndim, dtype=dtype),
    )
    crop = tuple(slice(radius.get(i, 0), radius.get(i, 0) + n) for i, n in enumerate(x.shape))
    return out[crop]


def _small(x: Any, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    """A zero image of ``x``'s dtype and ``shape``, for checking the arguments eagerly."""
    return np.zeros(shape, dtype=x.dtype)


def _check_call(
    func: Callable[..., Any],
    x: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    radius_of: Callable[[], Radius],
    spatial: tuple[int, ...],
) -> tuple[Radius, np.dtype[Any]]:
    """Call ``func`` on a small image (its own checks raise here, at call time); the reach."""
    try:
        guess: Radius | None = radius_of()
    except Exception:  # bad arguments: the call below raises the function's own error
        guess = None
    shape = list(x.shape)
    for i, axis in enumerate(spatial):
        reach = 1 if guess is None else guess[i]
        shape[axis] = min(x.shape[axis], 2 * reach + 3)
    result = np.asarray(func(_small(x, tuple(shape)), *args, **kwargs))
    return (radius_of() if guess is None else guess), result.dtype


# ------------------------------------------------------------------------- entries


def run(func: Callable[..., Any], image: Any, *args: Any, **kwargs: Any) -> Any:
    """Apply the public function ``func`` lazily to the dask array ``image``.

    ``args`` and ``kwargs`` are the call's other arguments, ``mode=`` among them.
    Returns a dask array equal to ``func(image.compute(), *args, **kwargs)``.
    """
    if not hasattr(image, "map_overlap"):
        raise TypeError(
            f"`image` must be a dask array (or a NumPy array_like); got {type(image).__name__}."
        )
    if any(np.isnan(size) for sizes in image.chunks for size in sizes):
        raise ValueError(
            "`image` must have known chunk sizes (dask's `compute_chunk_sizes()` finds "
            f"them); got chunks {image.chunks}."
        )
    name = func.__name__
    if name in ("correlate", "convolve"):
        return _run_engine(func, image, *args, **kwargs)
    return _run_filter(func, image, *args, **kwargs)


def _filter_fill(x: Any, mode: str) -> Any:
    """The fill of 'constant' (0) and 'mean' (each channel's mean in ``x``'s dtype)."""
    if mode != "mean":
        return np.zeros((), dtype=x.dtype)
    means = np.asarray(x.mean(axis=(0, 1), dtype=np.float64).compute())
    return means.astype(x.dtype)


def _run_filter(func: Callable[..., Any], image: Any, *args: Any, **kwargs: Any) -> Any:
    from .filters._dtype import check_image, check_mode, saturate

    if image.ndim not in (2, 3):
        check_image(np.zeros((1,) * image.ndim, dtype=image.dtype))  # raises the shape error
    mode = check_mode(kwargs.get("mode", _default_mode(func)))
    radius_fn = _FILTER_RADII[func.__name__]
    rest = {k: w for k, w in kwargs.items() if k != "mode"}
    (rr, rc), dtype = _check_call(
        func,
        image,
        args,
        kwargs,
        lambda: radius_fn(tuple(image.shape), *args, mode=mode, **rest),
        (0, 1),
    )
    if image.ndim == 3 and len(image.chunks[2]) > 1:  # bilateral weighs all channels at once
        image = image.rechunk({2: -1})
    inner = "constant" if mode == "mean" else mode
    extremes = None
    if func.__name__ == "bilateral" and image.dtype.kind == "f":
        extremes = _finite_range(image)
    x, final = image, None
    if func.__name__ == "unsharp_mask" and image.dtype.kind != "f":
        # it works in float64 (its 'mean' fill is the float mean): so do the chunks,
        # rounded and saturated as it does at the end
        x, final = image.astype(np.float64), image.dtype

    def block(chunk: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if final is not None:
            return saturate(np.asarray(func(chunk, *args, **rest, mode=inner)), final)
        if extremes is None:
            return np.asarray(func(chunk, *args, **rest, mode=inner))
        # one row more, beyond the halo (out of reach of every kept output), holding the
        # image's finite range: the chunk then builds the whole image's colour table
        extra = np.full((1,) + chunk.shape[1:], extremes[0], dtype=chunk.dtype)
        extra[0, -1] = extremes[1]
        grown = np.concatenate([chunk, extra], axis=0)
        return np.asarray(func(grown, *args, **rest, mode=inner))[:-1]

    return _spread(x, {0: rr, 1: rc}, mode, _filter_fill(x, mode), block, dtype)


def _finite_range(image: Any) -> tuple[float, float]:
    import dask.array as da

    finite = da.isfinite(image)
    lo = da.where(finite, image, np.inf).min()
    hi = da.where(finite, image, -np.inf).max()
    low, high = da.compute(lo, hi)
    if not np.isfinite(low):  # no finite sample: nothing to keep in range
        return 0.0, 0.0
    return float(low), float(high)


def _default_mode(func: Callable[..., Any]) -> str:
    import inspect

    return str(inspect.signature(func).parameters["mode"].default)


def _run_engine(
    func: Callable[..., Any],
    image: Any,
    kernel: Any,
    *,
    padding: Any = "same",
    mode: str = "constant",
    cval: float = 0.0,
    stride: Any = 1,
    dilation: Any = 1,
    channel_axis: int | None = None,
    method: str = "auto",
) -> Any:
    from . import _validate as v

    kwargs = {
        "padding": padding,
        "mode": mode,
        "cval": cval,
        "stride": stride,
        "dilation": dilation,
        "channel_axis": channel_axis,
        "method": method,
    }
    weights = v.as_real_array(kernel, "kernel")
    axis = v.channel_axis_index(channel_axis, image.ndim)
    spatial = tuple(i for i in range(image.ndim) if i != axis)
    if weights.ndim == len(spatial) and len(spatial) > 0:
        dil = v.per_axis_ints(dilation, "dilation", len(spatial), minimum=1)
        reach = tuple(d * (k // 2) for d, k in zip(dil, weights.shape, strict=True))
    else:
        reach = (0,) * len(spatial)
    radius, dtype = _check_call(func, image, (weights,), kwargs, lambda: reach, spatial)
    strides = v.per_axis_ints(stride, "stride", len(spatial), minimum=1)
    if not (isinstance(padding, str) and padding == "same"):
        raise v.fail("padding", "be 'same' for a dask `image`", padding)
    if any(s != 1 for s in strides):
        raise v.fail("stride", "be 1 for a dask `image`", stride)
    x = image.astype(dtype) if mode in ("constant", "mean") else image
    if mode == "mean":
        means = image.mean(axis=spatial, dtype=np.float64, keepdims=True).compute()
        fill = np.asarray(means).astype(dtype)
    else:
        fill = np.asarray(cval, dtype=np.float64).astype(dtype)
    inner = {**kwargs, "mode": "constant", "cval": 0.0}

    def block(chunk: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(func(chunk, weights, **inner))

    return _spread(x, dict(zip(spatial, radius, strict=True)), mode, fill, block, dtype)
