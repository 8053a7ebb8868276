"""Stage 3 of focus stacking: how sharp each pixel of a frame is.

Every measure works on the luma of the frame (ITU-R BT.601 weights for colour), in
float32, through :func:`convstack.correlate`. Integer frames are scaled to [0, 1] by
their dtype's maximum first, so the figures do not depend on the bit depth.

- ``sharpness_mask`` is the lab's measure (task 4): the absolute 4-neighbour
  Laplacian, rescaled to [0, 1] per frame, optionally raised to a power ``gamma``.
- ``sharpness`` offers better measures: windowed Laplacian energy, LoG energy
  (Laplacian of a Gaussian-smoothed frame, robust to sensor noise) and Tenengrad
  (Sobel gradient energy), each averaged over a Gaussian window.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _validate as v
from .. import kernels
from ..color import BT601_F32
from ..convolve import correlate

__all__ = ["MEASURES", "sharpness", "sharpness_mask", "to_gray", "to_unit_float"]

#: Names accepted by :func:`sharpness`.
MEASURES = ("laplacian", "laplacian_energy", "log_energy", "tenengrad")

# The lab's sign (negative Laplacian; zeros kept +0.0) and Sobel's two factors, in float32
# (small integers, so the casts are exact).
_LAPLACE4 = (0.0 - kernels.laplacian(4)).astype(np.float32)
_SOBEL_SMOOTH = kernels.derivative_1d(0, 3).astype(np.float32)
_SOBEL_DIFF = kernels.derivative_1d(1, 3).astype(np.float32)


def to_unit_float(image: ArrayLike, name: str = "image") -> NDArray[np.float32]:
    """Return ``image`` as float32, integer dtypes scaled by their maximum to [0, 1].

    Floats are taken as already in [0, 1] (not clipped); bool maps to 0 and 1.
    """
    array = v.as_real_array(image, name)
    if array.dtype.kind in "ui":
        return (array.astype(np.float32) / np.float32(np.iinfo(array.dtype).max)).astype(
            np.float32, copy=False
        )
    return array.astype(np.float32, copy=False)


def to_gray(image: ArrayLike, name: str = "image") -> NDArray[np.float32]:
    """Luma of a (rows, cols) or (rows, cols, channels) frame in float32 on [0, 1].

    Colour uses the BT.601 weights 0.299 R + 0.587 G + 0.114 B (as OpenCV's
    ``COLOR_RGB2GRAY``); a fourth (alpha) channel is ignored, one or two channels
    (gray, gray + alpha) take the first. Integer frames are scaled by their dtype's
    maximum, floats are kept as they are (see :func:`to_unit_float`). The one gray
    conversion of the stacking pipeline (registration uses it too).

    Examples
    --------
    >>> import numpy as np
    >>> to_gray(np.array([[[255, 255, 255]]], dtype=np.uint8))
    array([[1.]], dtype=float32)
    """
    array = v.as_real_array(image, name)
    if array.ndim == 3 and 3 <= array.shape[2] <= 4 and array.dtype.kind in "ui":
        # integers straight to luma, the scale folded into the weights (no float copy)
        weights = BT601_F32 / np.float32(np.iinfo(array.dtype).max)
        gray = np.multiply(array[..., 0], weights[0], dtype=np.float32)
        gray += np.multiply(array[..., 1], weights[1], dtype=np.float32)
        gray += np.multiply(array[..., 2], weights[2], dtype=np.float32)
        return gray
    array = to_unit_float(array, name)
    if array.ndim == 2:
        return array
    if array.ndim != 3 or not 1 <= array.shape[2] <= 4:
        raise v.fail(name, "be 2-D (rows, cols) or (rows, cols, 1..4 channels)", array)
    if array.shape[2] >= 3:
        gray = array[..., 0] * BT601_F32[0]
        gray += array[..., 1] * BT601_F32[1]
        gray += array[..., 2] * BT601_F32[2]
        return gray
    return np.ascontiguousarray(array[..., 0])


def gaussian_taps(sigma: float, truncate: float = 4.0) -> NDArray[np.float32]:
    """Normalised 1-D Gaussian kernel of radius ``round(truncate * sigma)``."""
    radius = max(1, int(truncate * sigma + 0.5))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def separable(
    image: NDArray[np.float32], rows: NDArray[np.float32], cols: NDArray[np.float32]
) -> NDArray[np.float32]:
    """Correlate a 2-D float32 image with ``rows`` down the columns and ``cols`` along rows."""
    out = correlate(image, rows[:, None], mode="mirror")
    return correlate(out, cols[None, :], mode="mirror")


def gaussian_window(image: NDArray[np.float32], sigma: float) -> NDArray[np.float32]:
    """Gaussian blur of a 2-D float32 map (border: mirror); identity for ``sigma == 0``."""
    if sigma <= 0:
        return image
    taps = gaussian_taps(sigma)
    return separable(image, taps, taps)


def sharpness_mask(image: ArrayLike, *, gamma: float = 1.0) -> NDArray[np.float32]:
    """The lab's sharpness mask: |4-neighbour Laplacian| of the gray frame, on [0, 1].

    Parameters
    ----------
    image : array_like
        One frame, (rows, cols) or (rows, cols, channels); integer or float in [0, 1].
    gamma : float, optional
        The mask is raised to this power after rescaling (> 1 favours the sharpest
        pixels more, < 1 less). Default 1, the lab's plain mask.

    Returns
    -------
    ndarray of float32, shape (rows, cols)
        ``(|L| - min|L|) / (max|L| - min|L|)`` raised to ``gamma``, where ``L`` is the
        correlation with ``[[0,-1,0],[-1,4,-1],[0,-1,0]]`` under OpenCV's default
        border (BORDER_REFLECT_101, our ``'mirror'``); all zeros for a flat frame.

    Examples
    --------
    >>> import numpy as np
    >>> frame = np.zeros((3, 3), dtype=np.uint8); frame[1, 1] = 255
    >>> sharpness_mask(frame)
    array([[0. , 0.5, 0. ],
           [0.5, 1. , 0.5],
           [0. , 0.5, 0. ]], dtype=float32)
    """
    gamma = v.positive_float(gamma, "gamma")
    gray = to_gray(image)
    edges = np.abs(correlate(gray, _LAPLACE4, mode="mirror", method="direct"))
    low, high = float(edges.min()), float(edges.max())
    if high <= low:
        return np.zeros_like(edges)
    mask = (edges - np.float32(low)) / np.float32(high - low)
    if gamma != 1.0:
        mask = mask ** np.float32(gamma)
    return mask.astype(np.float32, copy=False)


def sharpness(
    image: ArrayLike,
    *,
    measure: str = "log_energy",
    sigma: float = 1.0,
    window: float = 2.0,
) -> NDArray[np.float32]:
    """Per-pixel focus measure of one frame (larger = sharper).

    Parameters
    ----------
    image : array_like
        One frame, (rows, cols) or (rows, cols, channels); integer or float in [0, 1].
    measure : {'log_energy', 'laplacian_energy', 'tenengrad', 'laplacian'}
        ``'laplacian'``: |4-neighbour Laplacian| (the lab's, not rescaled);
        ``'laplacian_energy'``: squared 4-neighbour Laplacian;
        ``'log_energy'``: squared Laplacian of the frame blurred with a Gaussian of
        ``sigma`` (less sensitive to noise); ``'tenengrad'``: squared Sobel gradient
        magnitude ``gx**2 + gy**2``. All but ``'laplacian'`` are then averaged over a
        Gaussian window of standard deviation ``window``.
    sigma : float
        Pre-smoothing of ``'log_energy'`` in pixels (> 0).
    window : float
        Standard deviation of the averaging window in pixels (>= 0; 0 = none).

    Returns
    -------
    ndarray of float32, shape (rows, cols), >= 0

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> sharp = rng.random((32, 32)).astype(np.float32)
    >>> soft = (sharp + np.roll(sharp, 1, 0) + np.roll(sharp, 1, 1)) / 3
    >>> bool(sharpness(sharp).mean() > sharpness(soft).mean())
    True
    """
    v.choice(measure, "measure", MEASURES)
    sigma = v.positive_float(sigma, "sigma")
    window = v.positive_float(window, "window", allow_zero=True)
    gray = to_gray(image)
    if measure == "laplacian":
        return np.abs(correlate(gray, _LAPLACE4, mode="mirror", method="direct"))
    if measure == "laplacian_energy":
        lap = correlate(gray, _LAPLACE4, mode="mirror", method="direct")
        energy = lap * lap
    elif measure == "log_energy":
        lap = correlate(gaussian_window(gray, sigma), _LAPLACE4, mode="mirror", method="direct")
        energy = lap * lap
    else:  # tenengrad
        gy = separable(gray, _SOBEL_DIFF, _SOBEL_SMOOTH)
        gx = separable(gray, _SOBEL_SMOOTH, _SOBEL_DIFF)
        energy = gx * gx + gy * gy
    return gaussian_window(energy.astype(np.float32, copy=False), window)
