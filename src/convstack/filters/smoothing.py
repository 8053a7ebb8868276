"""Linear smoothing: box (mean) blur, Gaussian blur and unsharp masking, as OpenCV."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _validate as v
from .. import kernels
from ._dtype import check_image, check_mode, pad_image, saturate, strips
from ._separable import separable_valid

__all__ = ["box_blur", "gaussian_blur", "unsharp_mask"]


# ----------------------------------------------------------------------------- box


def _window_sum(a: NDArray[Any], k: int, axis: int) -> NDArray[Any]:
    """Sums of ``k`` consecutive samples along ``axis`` (valid part), cost independent of k.

    Small windows add shifted slices; larger ones take differences of a running
    sum, which is exact for integer dtypes and, in float64, far below float32's
    resolution for any image size.
    """
    n = a.shape[axis] - k + 1

    def take(start: int, stop: int) -> NDArray[Any]:
        index: list[Any] = [slice(None)] * a.ndim
        index[axis] = slice(start, stop)
        return a[tuple(index)]

    if k == 1:
        return a.copy()
    if k <= 5:
        out = take(0, n) + take(1, n + 1)
        for t in range(2, k):
            out += take(t, t + n)
        return out
    c = np.cumsum(a, axis=axis, dtype=a.dtype)
    index: list[Any] = [slice(None)] * a.ndim
    index[axis] = slice(k - 1, None)
    out = c[tuple(index)].copy()
    index[axis] = slice(1, None)
    tail = out[tuple(index)]
    index[axis] = slice(0, n - 1)
    tail -= c[tuple(index)]
    return out


def _box_divide_u8(sums: NDArray[Any], area: int) -> NDArray[np.uint8]:
    """OpenCV's 8-bit mean for windows of <= 256 samples: a 16-bit reciprocal multiply.

    ``(s + delta) * m >> 16`` with ``m`` close to ``2**16 / area``: exact rounding
    for odd areas, OpenCV's own rounding (neither ties-to-even nor ties-up) for even ones.
    """
    scale = 65536.0 / area
    mult = math.floor(scale)
    delta = area // 2
    if scale - mult < 0.5:
        delta += 1
    else:
        mult += 1
    work = sums.astype(np.uint32)
    work += delta
    work *= mult
    work >>= 16
    return work.astype(np.uint8)


def box_blur(
    image: ArrayLike, size: int | tuple[int, int], *, mode: str = "mirror"
) -> NDArray[Any]:
    """Mean of the ``size`` window around each pixel: ``cv2.blur(image, (cols, rows))``.

    Parameters
    ----------
    image : array_like
        (rows, cols) or (rows, cols, channels); uint8, uint16, float32 or float64.
    size : int or (int, int)
        Window size, one int or (rows, cols), each >= 1. Even sizes put the
        anchor at ``k // 2`` as OpenCV does.
    mode : str
        Border mode; the default 'mirror' is OpenCV's BORDER_REFLECT_101.

    Returns
    -------
    ndarray
        Same shape and dtype; integers rounded as OpenCV rounds them.

    Notes
    -----
    Window sums use running sums (or a few shifted adds for windows of up to 5),
    so the cost does not grow with ``size``; integer sums are exact, float sums
    run in float64. uint8 means are the exact sums rounded to nearest, except
    even windows of <= 256 samples, which use OpenCV's 16-bit reciprocal
    multiply. OpenCV itself (through its IPP back end) rounds some window
    shapes differently, so a few pixels may differ by one grey level; odd
    square windows match it exactly.

    Examples
    --------
    >>> import numpy as np
    >>> box_blur(np.array([[0, 0, 9, 0, 0]], dtype=np.uint8), (1, 3)).tolist()
    [[0, 3, 3, 3, 0]]
    """
    array = check_image(image)
    mode = check_mode(mode)
    kr, kc = v.per_axis_ints(size, "size", 2, minimum=1)
    area = kr * kc
    padded = pad_image(array, (kr // 2, kc // 2), (kr - 1 - kr // 2, kc - 1 - kc // 2), mode)
    if array.dtype.kind == "u":
        acc = np.int32 if array.dtype == np.uint8 or area < 32768 else np.int64
        work = padded.astype(acc)
    else:
        work = padded.astype(np.float64)
    sums = _window_sum(_window_sum(work, kr, 0), kc, 1)
    if area == 1:
        return array.copy()
    if array.dtype == np.uint8 and area <= 256 and area % 2 == 0:
        return _box_divide_u8(sums, area)
    if array.dtype == np.uint16 and area <= 32768:
        # OpenCV scales 32-bit sums in float32 for 16-bit images.
        return saturate(sums.astype(np.float32) * np.float32(1.0 / area), array.dtype)
    return saturate(sums * (1.0 / area), array.dtype)


# ------------------------------------------------------------------------ gaussian


def _fixed_point(kernel: NDArray[np.float64], bits: int) -> list[int]:
    """OpenCV's integer version of a symmetric kernel: ``bits`` fraction bits, exact sum.

    Side taps are rounded (ties to even) with the rounding error carried to the
    next tap; the centre tap takes what is left so that the taps sum to ``2**bits``.
    """
    n = kernel.size
    one = 1 << bits
    taps = [0] * n
    err = 0.0
    total = 0
    for i in range(n // 2):
        adjusted = float(kernel[i]) * one + err
        q = round(adjusted)
        err = adjusted - q
        taps[i] = taps[n - 1 - i] = q
        total += q
    taps[n // 2] = one - 2 * total
    return taps


def _gaussian_u8_uint16(
    padded: NDArray[np.uint8],
    bx: list[int],
    by: list[int],
    shift: int,
    shape: tuple[int, ...],
) -> NDArray[np.uint8]:
    """All-integer Gaussian in uint16 row strips (kernels divided by their power of 2)."""
    channels = shape[2] if len(shape) == 3 else 1
    rows, width = shape[0], shape[1] * channels
    flat = padded.reshape(padded.shape[0], -1)
    out = np.empty((rows, width), dtype=np.uint8)
    ny = len(by)
    offset = 1 << (shift - 1)

    def sym_sum(get: Any, taps: list[int], dst: NDArray[np.uint16], tmp: NDArray[Any]) -> None:
        n = len(taps)
        c = n // 2
        np.copyto(dst, get(c), casting="unsafe")
        if taps[c] != 1:
            dst *= taps[c]
        for i in range(c):
            np.add(get(i), get(n - 1 - i), out=tmp, dtype=np.uint16)
            if taps[i] != 1:
                tmp *= taps[i]
            dst += tmp

    def work(start: int, stop: int) -> None:
        src = flat[start : stop + ny - 1]
        h = src.shape[0]
        row = np.empty((h, width), dtype=np.uint16)
        tmp = np.empty((h, width), dtype=np.uint16)
        sym_sum(lambda i: src[:, i * channels : i * channels + width], bx, row, tmp)
        col = np.empty((stop - start, width), dtype=np.uint16)
        sym_sum(lambda j: row[j : j + stop - start], by, col, tmp[: stop - start])
        col += offset
        col >>= shift
        np.copyto(out[start:stop], col, casting="unsafe")

    strips(rows, width * 8, work)
    return out.reshape(shape)


def _power_of_two(taps: list[int]) -> int:
    """Largest a with every tap divisible by 2**a."""
    g = 0
    for t in taps:
        g = math.gcd(g, t)
    return (g & -g).bit_length() - 1


def _auto_size(sigma: float, dtype: np.dtype[Any]) -> int:
    return int(round(sigma * (3 if dtype == np.uint8 else 4) * 2 + 1)) | 1


def gaussian_blur(
    image: ArrayLike,
    size: int | tuple[int, int],
    sigma: float = 0.0,
    *,
    sigma_y: float | None = None,
    mode: str = "mirror",
) -> NDArray[Any]:
    """Gaussian blur: ``cv2.GaussianBlur(image, (cols, rows), sigma, sigmaY=sigma_y)``.

    Parameters
    ----------
    image : array_like
        (rows, cols) or (rows, cols, channels); uint8, uint16, float32 or float64.
    size : int or (int, int)
        Odd kernel size, one int or (rows, cols). 0 derives it from the sigma as
        OpenCV does (``round(sigma * (3 for uint8 else 4) * 2 + 1) | 1``).
    sigma : float
        Standard deviation along the columns (x). 0 or less: OpenCV's rule
        ``0.3 * ((size - 1) * 0.5 - 1) + 0.8`` (see ``kernels.gaussian``).
    sigma_y : float, optional
        Standard deviation along the rows; None (or <= 0) means ``sigma``.
    mode : str
        Border mode; default 'mirror' = OpenCV's BORDER_REFLECT_101.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``.

    Notes
    -----
    uint8 and uint16 images are filtered in integers exactly as OpenCV's
    bit-exact path: the 1-D kernels become integers with 8 (uint8) or 16
    (uint16) fraction bits, both passes are exact, and the result is rounded
    once (``(v + 2**(b-1)) >> b``), so the output is identical to OpenCV's.
    Kernels whose integer taps share a factor of 16 (sizes 3 and 5 with
    ``sigma=0``) run entirely in uint16.

    Examples
    --------
    >>> import numpy as np
    >>> gaussian_blur(np.array([[0, 0, 16, 0, 0]], dtype=np.uint8), (1, 3)).tolist()
    [[0, 4, 8, 4, 0]]
    """
    array = check_image(image)
    mode = check_mode(mode)
    sx = _real(sigma, "sigma")
    sy = sx if sigma_y is None else _real(sigma_y, "sigma_y")
    if sy <= 0:
        sy = sx
    kr, kc = v.per_axis_ints(size, "size", 2, minimum=0)
    if kc == 0 and sx > 0:
        kc = _auto_size(sx, array.dtype)
    if kr == 0 and sy > 0:
        kr = _auto_size(sy, array.dtype)
    if kr % 2 == 0 or kc % 2 == 0:
        raise v.fail("size", "be odd for every axis (or 0 with a positive sigma)", (kr, kc))
    if mode != "constant":  # OpenCV drops the kernel along an axis of length 1
        kr = 1 if array.shape[0] == 1 else kr
        kc = 1 if array.shape[1] == 1 else kc
    kx = kernels.gaussian(kc, max(sx, 0.0), ndim=1)
    ky = kernels.gaussian(kr, max(sy, 0.0), ndim=1)
    if kr == 1 and kc == 1:
        return array.copy()
    padded = pad_image(array, (kr // 2, kc // 2), (kr // 2, kc // 2), mode)
    if array.dtype == np.uint8:
        fx, fy = _fixed_point(kx, 8), _fixed_point(ky, 8)
        ax, ay = _power_of_two(fx), _power_of_two(fy)
        if ax + ay >= 8:
            bx = [t >> ax for t in fx]
            by = [t >> ay for t in fy]
            return _gaussian_u8_uint16(padded, bx, by, 16 - ax - ay, array.shape)
        # Exact in float32: every partial sum is an integer below 2**24.
        sums = separable_valid(
            padded.astype(np.float32), np.array(fx, np.float32), np.array(fy, np.float32)
        )
        sums += 32768
        sums *= 1.0 / 65536
        return np.floor(sums).astype(np.uint8)
    if array.dtype == np.uint16:
        fx, fy = _fixed_point(kx, 16), _fixed_point(ky, 16)
        # Exact in float64: partial sums stay below 2**48.
        sums = separable_valid(padded.astype(np.float64), np.array(fx, float), np.array(fy, float))
        sums += 2.0**31
        sums *= 2.0**-32
        return np.floor(sums).astype(np.uint16)
    return separable_valid(padded, kx, ky).astype(array.dtype, copy=False)


def _real(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise v.fail(name, "be a real number", value, kind=TypeError) from exc
    if not math.isfinite(number):
        raise v.fail(name, "be finite", value)
    return number


# ------------------------------------------------------------------------- unsharp


def unsharp_mask(
    image: ArrayLike, sigma: float = 1.0, amount: float = 1.0, *, mode: str = "mirror"
) -> NDArray[Any]:
    """Sharpen: ``image + amount * (image - gaussian(image, sigma))``.

    Parameters
    ----------
    image : array_like
        (rows, cols) or (rows, cols, channels); uint8, uint16, float32 or float64.
    sigma : float
        Standard deviation of the blur, > 0. The kernel spans
        ``round(8 * sigma + 1) | 1`` taps, as OpenCV's ``GaussianBlur`` with
        size 0 on float data (and SciPy's ``truncate=4``).
    amount : float
        Strength; 0 returns the image unchanged.
    mode : str
        Border mode for the blur; default 'mirror' (BORDER_REFLECT_101).

    Returns
    -------
    ndarray
        Same shape and dtype; integer results rounded and clipped to the dtype's
        range, float results not clipped.

    Examples
    --------
    >>> import numpy as np
    >>> unsharp_mask(np.full((4, 4), 7, dtype=np.uint8)).tolist()[0]
    [7, 7, 7, 7]
    """
    array = check_image(image)
    mode = check_mode(mode)
    s = v.positive_float(sigma, "sigma")
    k = _real(amount, "amount")
    work = array if array.dtype.kind == "f" else array.astype(np.float64)
    blurred = gaussian_blur(work, 0, s, mode=mode)
    sharp = work + k * (work - blurred)
    return saturate(sharp, array.dtype)
