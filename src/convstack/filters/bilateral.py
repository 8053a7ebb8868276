"""Bilateral filter, OpenCV's ``bilateralFilter``, its weights computed in compiled loops."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _lazy
from .. import _validate as v
from .._modes import border_indices
from ..limits import check_memory
from ._dtype import check_image, check_mode, pad_image, saturate, strips

__all__ = ["MAX_TAP_PIXELS", "MAX_TAP_PIXELS_WIDE", "bilateral"]

_BINS_PER_CHANNEL = 1 << 12  # OpenCV's float colour-weight table resolution
#: Bytes of work (row width x taps) per strip: at least one strip per pool thread.
_STRIP_BYTES = 1 << 20

#: Most (window taps x pixels) one call may ask for: about 2.7e11, minutes of work; and
#: the most for a window wider than the image (whose border modes then repeat the image
#: over and over): about 1.1e9, a few seconds.
MAX_TAP_PIXELS = 1 << 38
MAX_TAP_PIXELS_WIDE = 1 << 30

#: A float32 space weight ``exp(-r**2 / (2 sigma_space**2))`` is exactly 0 once the
#: exponent is below ``-150 ln 2`` (under half the smallest subnormal, 2**-150): from
#: there on taps add nothing, so the radius stops where the weight is still above 0.
_UNDERFLOW = 150 * math.log(2)


def _offsets(
    radius: int, gauss_space: float, *, centre: bool
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float32]]:
    """Rows, columns and float32 space weights of the offsets inside the circle of ``radius``.

    OpenCV's order (row by row) and values: ``r = sqrt(i**2 + j**2)`` in float64, offsets
    with ``r > radius`` dropped, weight ``float32(exp(r * r * gauss_space))``.
    """
    i, j = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    r = np.sqrt((i * i + j * j).astype(np.float64))
    keep = r <= radius
    if not centre:
        keep &= (i != 0) | (j != 0)
    weights = np.exp(r[keep] * r[keep] * gauss_space).astype(np.float32)
    return i[keep].astype(np.intp), j[keep].astype(np.intp), weights


def _radius(diameter: int, ss: float, gauss_space: float) -> int:
    """OpenCV's radius, cut where the float32 space weight has underflowed to 0."""
    radius = diameter // 2 if diameter > 0 else int(np.rint(ss * 1.5))
    radius = max(radius, 1)
    reach = math.sqrt(_UNDERFLOW / -gauss_space)  # weights beyond are exactly 0
    if radius > reach + 1:
        radius = int(reach) + 1
        while radius > 1 and np.float32(math.exp(radius * radius * gauss_space)) == 0:
            radius -= 1
    return radius


def bilateral(
    image: ArrayLike,
    diameter: int,
    sigma_color: float,
    sigma_space: float,
    *,
    mode: str = "mirror",
) -> NDArray[Any]:
    """Edge-preserving smoothing, ``cv2.bilateralFilter(image, diameter, sc, ss)``.

    Each output pixel is the average of the pixels within a circle of radius
    ``diameter // 2``, weighted by ``exp(-d**2 / (2 sigma_space**2))`` for the
    distance ``d`` and ``exp(-c**2 / (2 sigma_color**2))`` for the colour
    difference ``c`` (for colour images the sum of the absolute channel
    differences, the L1 distance).

    Parameters
    ----------
    image : array_like
        (rows, cols) or (rows, cols, channels); uint8, uint16, float32 or float64.
    diameter : int
        Window diameter; <= 0 derives the radius from ``sigma_space``
        (``round(1.5 * sigma_space)``). The radius is at least 1.
    sigma_color, sigma_space : float
        Standard deviations of the colour and space weights. Either <= 1e-6
        returns a copy of the image, as OpenCV does.
    mode : str
        Border mode; default 'mirror' = OpenCV's BORDER_REFLECT_101.

    Returns
    -------
    ndarray
        Same shape and dtype; uint8 results rounded to nearest.

    Raises
    ------
    ValueError
        A window so large that the call would need more than ``MAX_TAP_PIXELS`` tap
        evaluations (``MAX_TAP_PIXELS_WIDE`` when the window is wider than the image),
        or more memory than :func:`convstack.limits.get_memory_limit`.

    Notes
    -----
    uint8 images follow OpenCV's 8-bit method: weight ``space * color[c]`` with the
    colour table ``float32(exp(c**2 coeff))`` over the integer L1 distance ``c``, sums in
    float32, the centre included with weight 1, one rounding at the end. Float and
    uint16 images use OpenCV's float method: a 4096-bins-per-channel table over the
    image's value range (and 0, for the 'constant' border), linearly interpolated; the
    centre pixel has weight 1. OpenCV accepts only uint8 and float32; uint16 and float64
    follow the float method. The table's entries are computed where they are used, within
    1e-7 of OpenCV's (a lookup, a gather, keeps a compiled loop scalar).

    The window: float32 space weights are exactly 0 beyond ``r = sqrt(150 ln 2 * 2)
    * sigma_space`` (about ``14.4 sigma_space``; ``exp(-r**2 / (2 sigma_space**2))``
    under ``2**-150`` rounds to 0), so the radius is cut there, with the same result:
    ``bilateral(image, 4001, 10, 10)`` uses a radius of 144.

    Non-finite values (float images): an output whose window holds a NaN or an
    infinity is NaN (next to an infinite sample the colour weight is ``exp(-inf) = 0``
    and its term ``0 * inf``); every other output is computed as usual, with the
    value range of the table taken over the finite samples. Values near the float range
    (``1e308``, whose differences overflow) are filtered after an exact power-of-two
    scaling of the image and of ``sigma_color``, under which the weights do not change.

    Examples
    --------
    >>> import numpy as np
    >>> step = np.array([[10, 10, 10, 200, 200, 200]] * 3, dtype=np.uint8)
    >>> bilateral(step, 5, 20, 5)[1].tolist()
    [10, 10, 10, 200, 200, 200]
    """
    if _lazy.is_dask(image):  # larger than memory: a lazy dask array
        return _lazy.run(bilateral, image, diameter, sigma_color, sigma_space, mode=mode)
    array = check_image(image)
    mode = check_mode(mode)
    if not isinstance(diameter, (int, np.integer)) or isinstance(diameter, bool):
        raise v.fail("diameter", "be an int", diameter, kind=TypeError)
    sc = v.finite_float(sigma_color, "sigma_color")
    ss = v.finite_float(sigma_space, "sigma_space")
    if sc <= 1e-6 or ss <= 1e-6:
        return array.copy()
    is_u8 = array.dtype == np.uint8
    # uint8: OpenCV's float32 coefficient; the float method keeps float64
    gauss_space = float(np.float32(-0.5 / (ss * ss))) if is_u8 else -0.5 / (ss * ss)
    radius = _radius(int(diameter), ss, gauss_space)
    taps = sum(2 * math.isqrt(radius * radius - i * i) + 1 for i in range(-radius, radius + 1))
    channels = array.shape[2] if array.ndim == 3 else 1
    what = (
        f"bilateral of an image of shape {array.shape} with diameter {diameter} and "
        f"sigma_space {ss:g} (a window of radius {radius}, {taps} taps)"
    )
    work = taps * array.shape[0] * array.shape[1]
    wide = radius > max(array.shape[0], array.shape[1])
    limit = MAX_TAP_PIXELS_WIDE if wide else MAX_TAP_PIXELS
    if work > limit:
        why = "with a window wider than the image, " if wide else ""
        raise ValueError(
            f"{what} asks for {work:.3g} tap evaluations, {why}more than {limit:.3g}; use a "
            "smaller `diameter` or `sigma_space`."
        )
    padded_bytes = (array.shape[0] + 2 * radius) * (array.shape[1] + 2 * radius) * channels
    check_memory(padded_bytes * 8.0 * 2 + array.nbytes * 2 + 24.0 * taps, what)
    if is_u8:
        return _bilateral_u8(array, radius, sc, gauss_space, mode)
    return _bilateral_float(array, radius, sc, gauss_space, mode)


def _bilateral_u8(
    array: NDArray[np.uint8], radius: int, sc: float, gauss_space: float, mode: str
) -> NDArray[np.uint8]:
    """OpenCV's 8-bit method; the colour weight ``exp(-D**2 / (2 sc**2))`` as a base-2
    exponent joined with the space weight's, evaluated in the compiled loop."""
    from .. import _k_bilateral

    channels = array.shape[2] if array.ndim == 3 else 1
    rows, cols = array.shape[0], array.shape[1]
    wp = cols + 2 * radius
    color_coeff = 0.5 / (sc * sc) * math.log2(math.e)
    rows_off, cols_off, space = _offsets(radius, gauss_space, centre=True)
    half = (rows_off > 0) | ((rows_off == 0) & (cols_off > 0))  # one of each pair +-o
    shifts = rows_off[half] * wp + cols_off[half]
    with np.errstate(divide="ignore"):
        log2_space = np.log2(space[half].astype(np.float64)).astype(np.float32)  # 0: -inf
    order = np.argsort(shifts, kind="stable")  # the longest shift last
    shifts, log2_space = shifts[order], log2_space[order]
    # no padded copy: each strip lays out its padded rows through the border maps
    rowmap, colmap, fill = _border_maps(array, radius, mode)
    image = np.ascontiguousarray(array).reshape(rows, cols * channels)
    out = np.empty((rows, cols * channels), dtype=np.uint8)

    def work(start: int, stop: int) -> None:
        _k_bilateral.bilateral_u8_rows(
            image, out, start, stop, radius, rowmap, colmap, fill, shifts, log2_space,
            color_coeff, _k_bilateral.EXP2_POLY,
        )  # fmt: skip

    # strips of equal height, at least one per pool thread, whose buffers (per pixel
    # float32 sums and two weights, and the samples in uint8 and float32: 12 + 9 bytes
    # a channel) take ~1 MB: tall enough that the ``radius`` rows of weights and
    # samples a strip takes beyond its own cost little
    strips(rows, wp * (12 + 9 * channels), work, target=_STRIP_BYTES, balanced=True)
    return out.reshape(array.shape)


def _border_maps(
    array: NDArray[Any], radius: int, mode: str
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[Any]]:
    """The padding by ``radius`` as maps: the image row and column of every padded row and
    column, -1 where the border is a constant, and that constant for each channel."""
    rows, cols = array.shape[0], array.shape[1]
    channels = array.shape[2] if array.ndim == 3 else 1
    fill = np.zeros(channels, dtype=array.dtype)
    if mode not in ("constant", "mean"):
        rowmap = border_indices(rows, radius, radius, mode)
        return rowmap, border_indices(cols, radius, radius, mode), fill
    maps = []
    for n in (rows, cols):
        index = np.arange(-radius, n + radius, dtype=np.intp)
        index[(index < 0) | (index >= n)] = -1
        maps.append(index)
    if mode == "mean":  # the padding's own rule: the image's mean, per channel
        fill = pad_image(array, (1, 0), (0, 0), mode)[0, 0].reshape(channels)
    return maps[0], maps[1], fill


def _nan_windows(bad: NDArray[np.bool_], radius: int, mode: str) -> NDArray[np.bool_]:
    """Where the circular window of ``radius`` (after padding) holds a True of ``bad``."""
    rows, cols = bad.shape
    padded = pad_image(bad.astype(np.uint8), (radius, radius), (radius, radius), mode) > 0
    hit = np.zeros((rows, cols), dtype=bool)
    rows_off, cols_off, _ = _offsets(radius, -1.0, centre=True)
    for i, j in zip(rows_off.tolist(), cols_off.tolist(), strict=True):
        hit |= padded[radius + i : radius + i + rows, radius + j : radius + j + cols]
    return hit


def _bilateral_float(
    array: NDArray[Any], radius: int, sc: float, gauss_space: float, mode: str
) -> NDArray[Any]:
    dtype = array.dtype
    ftype = np.float64 if dtype == np.float64 else np.float32
    bad = None
    if dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            if not finite.any():
                return np.full(array.shape, np.nan, dtype=dtype)
            bad = ~finite.all(axis=2) if array.ndim == 3 else ~finite
            # placeholders inside the finite range (the table covers no more); the
            # windows that hold them become NaN below
            array = np.where(finite, array, array[finite].min())
    lo, hi = float(array.min()), float(array.max())
    if mode == "constant":  # the table covers the border's zeros too (else read past it)
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    # an exact power-of-two scaling keeps every difference and range finite (1e308);
    # the weights do not change when the image and sigma_color scale together
    shift = 0
    top = max(abs(lo), abs(hi))
    if top > 2.0**100:
        shift = math.frexp(top)[1]
        array = np.ldexp(array.astype(ftype), -shift)
        lo, hi, sc = math.ldexp(lo, -shift), math.ldexp(hi, -shift), math.ldexp(sc, -shift)
    if abs(hi - lo) < np.finfo(np.float32).eps:
        out = array.astype(ftype, copy=True)
    else:
        out = _float_method(array.astype(ftype, copy=False), radius, sc, gauss_space, mode, lo, hi)
    if shift:
        out = np.ldexp(out, shift)
    if bad is not None:
        out[_nan_windows(bad, radius, mode)] = np.nan
    return saturate(out, dtype)


def _float_method(
    array: NDArray[Any], radius: int, sc: float, gauss_space: float, mode: str, lo: float, hi: float
) -> NDArray[Any]:
    """OpenCV's float bilateral on a finite float32 or float64 image with values in [lo, hi]."""
    from .. import _k_bilateral

    shape = array.shape
    cn = shape[2] if len(shape) == 3 else 1
    rows, width = shape[0], shape[1] * cn
    bins = _BINS_PER_CHANNEL * cn
    scale_index = np.float32(bins / np.float32((hi - lo) * cn))
    # the table's entry i: float32(exp(gauss_color * (i / scale_index)**2)), computed in
    # the loop as 2**(log2_coeff * v**2); a finite coefficient when sc**2 underflows
    # (entry 0 stays exactly 1, the others 0 to float32)
    with np.errstate(divide="ignore", over="ignore"):
        gauss_color = np.float64(-0.5) / np.float64(sc * sc)
    ftype = array.dtype.type
    log2_coeff = ftype(max(float(gauss_color) * math.log2(math.e), -1e30))
    inv_scale = ftype(1.0 / float(scale_index))
    poly = _k_bilateral.EXP2_POLY
    rows, cols = shape[0], shape[1]
    wp = cols + 2 * radius
    rows_off, cols_off, space32 = _offsets(radius, gauss_space, centre=False)
    index_scale = ftype(scale_index)
    magic = ftype(1.5 * 2.0 ** (np.finfo(array.dtype).nmant))
    if 2 * radius > cols:  # the flat layout would spend most of its work on the padding
        padded2 = np.ascontiguousarray(pad_image(array, (radius, radius), (radius, radius), mode))
        flat2 = padded2.reshape(padded2.shape[0], -1)
        out2 = np.empty((rows, width), dtype=array.dtype)
        space_all = space32.astype(array.dtype)

        def offsets_work(start: int, stop: int) -> None:
            _k_bilateral.bilateral_float_offsets(
                flat2, out2, start, stop, radius, cn, rows_off, cols_off, space_all,
                index_scale, inv_scale, log2_coeff, magic, poly,
            )  # fmt: skip

        strips(rows, width * 4 * len(space_all), offsets_work, target=_STRIP_BYTES, balanced=True)
        return out2.reshape(shape)
    half = (rows_off > 0) | ((rows_off == 0) & (cols_off > 0))  # one of each pair +-o
    shifts = rows_off[half] * wp + cols_off[half]
    order = np.argsort(shifts, kind="stable")  # the longest shift last
    shifts, space = shifts[order], space32[half][order].astype(array.dtype)
    rowmap, colmap, fill = _border_maps(array, radius, mode)  # as _bilateral_u8
    image = np.ascontiguousarray(array).reshape(rows, width)
    out = np.empty((rows, width), dtype=array.dtype)

    def work(start: int, stop: int) -> None:
        _k_bilateral.bilateral_float_rows(
            image, out, start, stop, radius, rowmap, colmap, fill, shifts, space,
            index_scale, inv_scale, log2_coeff, magic, poly,
        )  # fmt: skip

    # as _bilateral_u8: buffers of ~1 MB a strip (sums, weights and samples)
    itemsize = array.dtype.itemsize
    strips(rows, wp * itemsize * (2 * cn + 2), work, target=_STRIP_BYTES, balanced=True)
    return out.reshape(shape)
