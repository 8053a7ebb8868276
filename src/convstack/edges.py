"""Edge maps and a focus (sharpness) map of gray or colour images.

Every function works on the gray level of the image in [0, 1]: integer images are
divided by their dtype's maximum (255 for uint8, 65535 for uint16), floats are taken
as they are, and colour (rows, cols, 3 or 4) is turned to gray with the ITU-R BT.601
weights ``0.299 R + 0.587 G + 0.114 B`` (OpenCV's ``COLOR_RGB2GRAY``; our arrays are
RGB, OpenCV's ``imread`` gives BGR). A fourth (alpha) channel is ignored.

- :func:`laplacian_edges`: the lab's edge map, ``|4-neighbour Laplacian|`` rescaled
  to [0, 1] per image.
- :func:`sobel_magnitude`: the length of the 3x3 Sobel gradient.
- :func:`focus_measure`: windowed energy of the Laplacian, comparable between the
  frames of a focus stack (not rescaled per image, unlike the lab's mask).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validate as v
from . import kernels
from .color import to_gray
from .convolve import correlate
from .padding import check_mode

__all__ = ["focus_measure", "laplacian_edges", "sobel_magnitude", "to_gray"]

#: The lab's edge kernel (the negative of the 4-neighbour Laplacian); ``0.0 -`` rather than
#: unary minus keeps its zero corners +0.0, the literal it replaced, signs of zeros included.
LAB_LAPLACIAN = 0.0 - kernels.laplacian(4)

_SOBEL_COLS = kernels.sobel(1, 0)
_SOBEL_ROWS = kernels.sobel(0, 1)


def _rescale(
    values: NDArray[np.floating[Any]], gray: NDArray[np.floating[Any]]
) -> NDArray[np.floating[Any]]:
    """Map [min, max] linearly onto [0, 1] (skimage's ``rescale_intensity``).

    A map whose range is within rounding error of the gray image (a flat image's
    Laplacian is 0 up to a few ulps) gives zeros instead of stretched rounding noise.
    NaN and infinities (README, "Non-finite values") stay as they are; the range is
    that of the finite values.
    """
    finite = np.isfinite(values)
    if not finite.all():
        if not finite.any():
            return values.copy()
        kept = values[finite]
        low, high = kept.min(), kept.max()
        scale = float(np.max(np.abs(gray[np.isfinite(gray)]), initial=0.0))
    else:
        low, high = values.min(), values.max()
        scale = float(np.max(np.abs(gray)))
    tolerance = 64 * np.finfo(values.dtype).eps * max(1.0, scale)
    with np.errstate(invalid="ignore", over="ignore"):
        if high - low <= tolerance:
            return np.where(finite, 0, values).astype(values.dtype)
        result: NDArray[np.floating[Any]] = np.where(finite, (values - low) / (high - low), values)
    return result.astype(values.dtype, copy=False)


def laplacian_edges(
    image: ArrayLike, *, mode: str = "mirror", rescale: bool = True
) -> NDArray[np.floating[Any]]:
    """The lab's edge map: absolute 4-neighbour Laplacian of the gray image.

    Parameters
    ----------
    image : array_like
        Gray or colour image (see the module notes for the gray conversion).
    mode : str
        Border, as in :func:`convstack.correlate`; "mirror" is OpenCV's default
        (``BORDER_REFLECT_101``), which the lab's ``cv2.filter2D`` used.
    rescale : bool
        Rescale to [0, 1] by the map's minimum and maximum, as the lab's
        ``rescale_intensity`` (a map flat to within rounding error gives zeros).
        False returns the plain ``|Laplacian|`` of the [0, 1] gray image (0 to 4).

    Returns
    -------
    ndarray, shape (rows, cols)
        float32 for float32 input, float64 otherwise.

    Examples
    --------
    >>> laplacian_edges(np.array([[0, 0, 0], [0, 255, 0], [0, 0, 0]], dtype=np.uint8))
    array([[0. , 0.5, 0. ],
           [0.5, 1. , 0.5],
           [0. , 0.5, 0. ]])
    """
    check_mode(mode, 0.0)
    gray = to_gray(image)
    edges = np.abs(correlate(gray, LAB_LAPLACIAN, mode=mode, method="direct"))
    return _rescale(edges, gray) if rescale else edges


def sobel_magnitude(
    image: ArrayLike, *, mode: str = "mirror", rescale: bool = False
) -> NDArray[np.floating[Any]]:
    """Length of the 3x3 Sobel gradient of the gray image, ``hypot(S_rows, S_cols)``.

    Parameters
    ----------
    image : array_like
        Gray or colour image (see the module notes).
    mode : str
        Border, as in :func:`convstack.correlate`; default "mirror" as ``cv2.Sobel``.
    rescale : bool
        Rescale to [0, 1] by the map's minimum and maximum. False (default) keeps the
        magnitude in gray units per pixel (between 0 and ``4 * sqrt(2)``), equal to
        ``numpy.hypot(cv2.Sobel(g, cv2.CV_64F, 1, 0), cv2.Sobel(g, cv2.CV_64F, 0, 1))``.

    Returns
    -------
    ndarray, shape (rows, cols)
        float32 for float32 input, float64 otherwise.

    Examples
    --------
    >>> sobel_magnitude(np.array([[0, 0, 1, 1]] * 3, dtype=float))
    array([[0., 4., 4., 0.],
           [0., 4., 4., 0.],
           [0., 4., 4., 0.]])
    """
    check_mode(mode, 0.0)
    gray = to_gray(image)
    d_cols = correlate(gray, _SOBEL_COLS, mode=mode, method="direct")
    d_rows = correlate(gray, _SOBEL_ROWS, mode=mode, method="direct")
    magnitude: NDArray[np.floating[Any]] = np.hypot(d_rows, d_cols)
    return _rescale(magnitude, gray) if rescale else magnitude


def focus_measure(
    image: ArrayLike, *, size: int = 9, mode: str = "mirror"
) -> NDArray[np.floating[Any]]:
    """Sharpness map: mean of the squared 4-neighbour Laplacian over a window.

    Parameters
    ----------
    image : array_like
        Gray or colour image (see the module notes).
    size : int
        Side of the square averaging window, odd, >= 1 (1: no averaging).
    mode : str
        Border for both the Laplacian and the window, as in :func:`convstack.correlate`.

    Returns
    -------
    ndarray, shape (rows, cols), >= 0
        float32 for float32 input, float64 otherwise. Larger is sharper. Not rescaled:
        figures are comparable between frames of the same scene, which is what a
        focus stacker needs to pick, per pixel, the frame in focus. Equals
        ``cv2.blur(cv2.Laplacian(g, cv2.CV_64F) ** 2, (size, size))`` for the default
        border.

    Notes
    -----
    The lab's mask (``laplacian_edges``, rescaled per frame) cannot be compared
    between frames: a blurred frame's weak edges are stretched to 1 like a sharp
    frame's. Squaring favours strong local contrast; the window spreads the measure
    over the flat insides of textures.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sharp = rng.random((16, 16))
    >>> soft = (sharp + np.roll(sharp, 1, 0) + np.roll(sharp, 1, 1)) / 3
    >>> bool(focus_measure(sharp).mean() > focus_measure(soft).mean())
    True
    """
    check_mode(mode, 0.0)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise v.fail("size", "be an odd int >= 1", size, kind=TypeError)
    if size < 1 or size % 2 == 0:
        raise v.fail("size", "be an odd int >= 1", size)
    gray = to_gray(image)
    laplacian = correlate(gray, LAB_LAPLACIAN, mode=mode, method="direct")
    with np.errstate(over="ignore"):  # squares beyond the float range are inf
        energy = laplacian * laplacian
    if size == 1:
        return energy
    window = np.full((size, size), 1.0 / (size * size))
    result: NDArray[np.floating[Any]] = correlate(energy, window, mode=mode)
    return result
