"""Derivative filters: Laplacian, Sobel and Scharr, as OpenCV with a float32 output."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _lazy, kernels
from .. import _validate as v
from .._nonfinite import run_filter
from ._dtype import check_image, check_mode
from ._separable import direct_filter, separable_filter

__all__ = ["laplacian", "scharr", "sobel"]


def _apply(
    array: NDArray[Any], kx: NDArray[Any], ky: NDArray[Any], mode: str
) -> NDArray[np.floating[Any]]:
    # straight from the image's dtype: 3x3 kernels on integer images in one direct
    # pass (6 taps beat two passes and their row buffer; integer sums are exact in
    # any order), floats and larger kernels as one separable term (the rounding of
    # OpenCV's and SciPy's separable passes: a flat region gives exact zeros)
    kernel = np.outer(ky, kx)
    if kernel.size <= 9 and array.dtype.kind == "u":
        dtype = np.float64 if array.dtype == np.float64 else np.float32
        return run_filter(array, kernel, mode, lambda a: direct_filter(a, kernel, mode, dtype))
    return run_filter(array, kernel, mode, lambda a: _strips(a, [(kx, ky)], mode))


def _strips(
    array: NDArray[Any], terms: list[tuple[NDArray[Any], NDArray[Any]]], mode: str
) -> NDArray[np.floating[Any]]:
    """The engine's compiled separable rows on the interleaved channels, reading
    integer images as they are (no converted copy)."""
    dtype = np.float64 if array.dtype == np.float64 else np.float32
    return separable_filter(array, terms, mode, dtype)


def sobel(
    image: ArrayLike, dx: int, dy: int, size: int = 3, *, mode: str = "mirror"
) -> NDArray[np.floating[Any]]:
    """Sobel derivative: ``cv2.Sobel(image, cv2.CV_32F, dx, dy, ksize=size)``.

    Parameters
    ----------
    image : array_like
        (rows, cols) or (rows, cols, channels); uint8, uint16, float32 or float64.
    dx, dy : int
        Derivative orders along the columns (x) and the rows (y), ``dx + dy >= 1``.
    size : {1, 3, 5, 7}
        Kernel size (see ``kernels.sobel``).
    mode : str
        Border mode; default 'mirror' = OpenCV's BORDER_REFLECT_101.

    Returns
    -------
    ndarray
        float32 (float64 for float64 input), same shape. Not normalised:
        ``sobel(x, 1, 0)`` of a unit ramp along x is 8.

    Examples
    --------
    >>> import numpy as np
    >>> ramp = np.tile(np.arange(5, dtype=np.uint8), (3, 1))
    >>> sobel(ramp, 1, 0)[1].tolist()
    [0.0, 8.0, 8.0, 8.0, 0.0]
    """
    if _lazy.is_dask(image):  # larger than memory: a lazy dask array
        return _lazy.run(sobel, image, dx, dy, size, mode=mode)
    array = check_image(image)
    mode = check_mode(mode)
    kernels.sobel(dx, dy, size)  # validates dx, dy and size
    return _apply(array, kernels.derivative_1d(dx, size), kernels.derivative_1d(dy, size), mode)


def scharr(
    image: ArrayLike, dx: int, dy: int, *, mode: str = "mirror"
) -> NDArray[np.floating[Any]]:
    """Scharr derivative: ``cv2.Scharr(image, cv2.CV_32F, dx, dy)``, ``dx + dy == 1``.

    Returns float32 (float64 for float64 input).

    Examples
    --------
    >>> import numpy as np
    >>> ramp = np.tile(np.arange(4, dtype=np.float32), (3, 1))
    >>> scharr(ramp, 1, 0)[1].tolist()
    [0.0, 32.0, 32.0, 0.0]
    """
    if _lazy.is_dask(image):  # larger than memory: a lazy dask array
        return _lazy.run(scharr, image, dx, dy, mode=mode)
    array = check_image(image)
    mode = check_mode(mode)
    kernels.scharr(dx, dy)  # validates the orders
    if dx:
        kx, ky = np.array([-1.0, 0.0, 1.0]), np.array([3.0, 10.0, 3.0])
    else:
        kx, ky = np.array([3.0, 10.0, 3.0]), np.array([-1.0, 0.0, 1.0])
    return _apply(array, kx, ky, mode)


def laplacian(
    image: ArrayLike, size: int = 1, *, mode: str = "mirror"
) -> NDArray[np.floating[Any]]:
    """Laplacian: ``cv2.Laplacian(image, cv2.CV_32F, ksize=size)``.

    ``size=1`` correlates with ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``; larger
    sizes (3, 5, 7) add the second-order Sobel derivatives along x and y
    (for 3: ``[[2, 0, 2], [0, -8, 0], [2, 0, 2]]``).

    Returns float32 (float64 for float64 input).

    Examples
    --------
    >>> import numpy as np
    >>> spike = np.zeros((5, 5), dtype=np.uint8); spike[2, 2] = 1
    >>> laplacian(spike)[1:4, 1:4].tolist()
    [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]
    """
    if _lazy.is_dask(image):  # larger than memory: a lazy dask array
        return _lazy.run(laplacian, image, size, mode=mode)
    array = check_image(image)
    mode = check_mode(mode)
    if size not in (1, 3, 5, 7) or isinstance(size, bool):
        raise v.fail("size", "be 1, 3, 5 or 7", size)
    if size == 1:
        smooth, d2 = np.ones(1), np.array([1.0, -2.0, 1.0])
        kernel = kernels.laplacian(4)
    else:
        smooth = kernels.derivative_1d(0, size)
        d2 = kernels.derivative_1d(2, size)
        kernel = np.outer(smooth, d2) + np.outer(d2, smooth)
    if size <= 3:  # 5 taps: one direct pass beats two separable terms
        dtype = np.float64 if array.dtype == np.float64 else np.float32
        return run_filter(array, kernel, mode, lambda a: direct_filter(a, kernel, mode, dtype))
    return run_filter(array, kernel, mode, lambda a: _strips(a, [(d2, smooth), (smooth, d2)], mode))
