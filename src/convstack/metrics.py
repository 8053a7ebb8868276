"""Full-reference image quality: PSNR and SSIM, computed with convstack's own engine.

Both follow the definitions used by scikit-image (``peak_signal_noise_ratio`` and
``structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)``), so figures are comparable with published numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validate as v
from .convolve import correlate

__all__ = ["psnr", "ssim"]

_K1 = 0.01
_K2 = 0.03
_SIGMA = 1.5
_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5: the 11-tap window of Wang et al.


def _pair(a: ArrayLike, b: ArrayLike) -> tuple[NDArray[Any], NDArray[Any]]:
    first = v.as_real_array(a, "a")
    second = v.as_real_array(b, "b")
    if first.shape != second.shape:
        raise ValueError(
            f"`a` and `b` must have the same shape; got {first.shape} and {second.shape}."
        )
    return first, second


def _data_range(a: NDArray[Any], b: NDArray[Any], data_range: float | None) -> float:
    if data_range is not None:
        return v.positive_float(data_range, "data_range")
    if a.dtype.kind == "b" and b.dtype.kind == "b":
        return 1.0
    if a.dtype.kind in "ui" and b.dtype.kind in "uib":
        info = np.iinfo(a.dtype)
        return float(info.max) - float(info.min)
    low = min(float(a.min()), float(b.min()))
    high = max(float(a.max()), float(b.max()))
    if a.dtype.kind == "f" and low >= 0.0 and high <= 1.0:
        return 1.0
    raise ValueError(
        "`data_range` must be given for float images outside [0, 1] or mixed dtypes; "
        f"got None with values in [{low:g}, {high:g}] and dtypes {a.dtype}, {b.dtype}."
    )


def psnr(a: ArrayLike, b: ArrayLike, *, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio of ``b`` against the reference ``a``, in dB.

    Parameters
    ----------
    a, b : array_like
        Reference and test image, same shape (any number of axes; channels included).
    data_range : float, optional
        Peak-to-peak range of the data. Default: the dtype's full range for integers
        (255 for uint8, 65535 for uint16); 1 for float images in [0, 1]; otherwise it
        must be given.

    Returns
    -------
    float
        ``10 log10(data_range**2 / MSE)``; ``inf`` for identical images.

    Examples
    --------
    >>> round(psnr([0.0, 0.5, 1.0], [0.0, 0.5, 0.9]), 3)
    24.771
    """
    first, second = _pair(a, b)
    peak = _data_range(first, second, data_range)
    diff = first.astype(np.float64) - second.astype(np.float64)
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(peak * peak / mse))


def _gaussian_window() -> NDArray[np.float64]:
    radius = int(_TRUNCATE * _SIGMA + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (x / _SIGMA) ** 2)
    return weights / weights.sum()


def _ssim_2d(x: NDArray[np.float64], y: NDArray[np.float64], peak: float) -> float:
    # the local moments in float32 on the [0, 1] scale (the constants scaled with it):
    # the SSIM within 3e-5 of float64 moments' (measured against scikit-image: the
    # worst, a flat near-white image with 0.1 % noise, whose variances cancel most),
    # through the float32 correlation the rest of the library compiles anyway rather
    # than a float64 one of its own (about 4 s of a first run's compile)
    scale = 1.0 / peak
    xs, ys = (np.multiply(z, scale, dtype=np.float32) for z in (x, y))
    window = _gaussian_window().astype(np.float32)
    maps = np.stack([xs, ys, xs * xs, ys * ys, xs * ys], axis=-1)
    maps = correlate(maps, window[None, :], mode="reflect", channel_axis=-1)
    maps = correlate(maps, window[:, None], mode="reflect", channel_axis=-1)
    ux, uy, uxx, uyy, uxy = np.moveaxis(maps.astype(np.float64), -1, 0)
    peak = 1.0
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    c1 = (_K1 * peak) ** 2
    c2 = (_K2 * peak) ** 2
    index = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = window.size // 2
    return float(index[pad:-pad, pad:-pad].mean())


def ssim(
    a: ArrayLike,
    b: ArrayLike,
    *,
    data_range: float | None = None,
    channel_axis: int | None = None,
) -> float:
    """Mean structural similarity of ``b`` against ``a`` (Wang et al. 2004).

    Parameters
    ----------
    a, b : array_like
        Reference and test image, same 2-D shape (plus a channel axis if given).
    data_range : float, optional
        As in :func:`psnr`.
    channel_axis : int, optional
        Axis of colour channels; SSIM is the mean over channels.

    Returns
    -------
    float
        Mean SSIM, 1 for identical images.

    Raises
    ------
    ValueError
        Shapes differ, the image is not 2-D, or a side is shorter than the 11-pixel window.

    Notes
    -----
    Local statistics use an 11-tap Gaussian window, sigma 1.5, with 'reflect' borders
    and population (not sample) covariance; constants ``K1 = 0.01``, ``K2 = 0.03``:

    ``SSIM = (2 mu_a mu_b + C1)(2 s_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2))``

    averaged over the image less a 5-pixel border, as scikit-image's
    ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``.

    Examples
    --------
    >>> image = np.linspace(0.0, 1.0, 144).reshape(12, 12)
    >>> ssim(image, image)
    1.0
    """
    first, second = _pair(a, b)
    peak = _data_range(first, second, data_range)
    axis = v.channel_axis_index(channel_axis, first.ndim)
    if axis is not None:
        first = np.moveaxis(first, axis, -1)
        second = np.moveaxis(second, axis, -1)
    spatial = first.shape[:-1] if axis is not None else first.shape
    if len(spatial) != 2:
        raise ValueError(
            f"`a` must be 2-D (plus `channel_axis`); got shape {np.shape(a)} "
            f"with channel_axis={channel_axis}."
        )
    size = _gaussian_window().size
    if min(spatial) < size:
        raise ValueError(f"`a` must be at least {size}x{size} pixels; got {spatial}.")
    x = first.astype(np.float64)
    y = second.astype(np.float64)
    if axis is None:
        return _ssim_2d(x, y, peak)
    return float(np.mean([_ssim_2d(x[..., c], y[..., c], peak) for c in range(x.shape[-1])]))
