"""Pure kernel builders: small NumPy arrays, no image in sight.

Every kernel is oriented for *correlation* (``convstack.correlate``, OpenCV's
``filter2D``): the anchor is the centre element, index ``k // 2`` on each axis,
and a derivative kernel such as ``[-1, 0, 1]`` gives ``f(x + 1) - f(x - 1)``.
Sizes, values and sign conventions follow OpenCV (``getGaussianKernel``,
``getDerivKernels``) so that the filters built on them reproduce OpenCV.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _validate as v
from .limits import check_memory

__all__ = [
    "box",
    "derivative",
    "derivative_1d",
    "disk",
    "gaussian",
    "gaussian_sigma",
    "laplacian",
    "scharr",
    "second_derivative",
    "sobel",
]

# OpenCV's fixed tables for sigma <= 0 (getGaussianKernel): binomial-like, exact in binary.
_SMALL_GAUSSIANS: dict[int, tuple[float, ...]] = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
    9: (4 / 256, 13 / 256, 30 / 256, 51 / 256, 60 / 256, 51 / 256, 30 / 256, 13 / 256, 4 / 256),
}


def _check_taps(taps: float, what: str, bytes_per_tap: float = 8.0) -> None:
    """Refuse a kernel whose construction would exceed the memory limit (before building)."""
    check_memory(bytes_per_tap * taps, f"{what} (a kernel of {taps:.6g} taps)")


def _size_pair(size: Any, name: str = "size") -> tuple[int, int]:
    return v.per_axis_ints(size, name, 2, minimum=1)  # type: ignore[return-value]


def gaussian_sigma(size: int) -> float:
    """OpenCV's sigma for a Gaussian of ``size`` taps when none is given.

    ``0.3 * ((size - 1) * 0.5 - 1) + 0.8``, i.e. ``0.15 * size + 0.35``.

    Examples
    --------
    >>> round(gaussian_sigma(5), 6)
    1.1
    """
    return 0.15 * size + 0.35


def _gaussian_1d(size: int, sigma: float) -> NDArray[np.float64]:
    if sigma <= 0 and size in _SMALL_GAUSSIANS:
        return np.array(_SMALL_GAUSSIANS[size])
    s = sigma if sigma > 0 else gaussian_sigma(size)
    scale = -0.125 / (s * s)
    half = (size - 1) // 2
    # x runs over 2 * (i - (size - 1) / 2) so that x * x * scale = -(i - c)^2 / (2 s^2).
    values = [math.exp(float(x * x) * scale) for x in range(1 - size, 1 - size + 2 * half, 2)]
    total = 0.0
    for t in values:
        total += t
    total = total * 2 + 1.0 + (1.0 if size % 2 == 0 else 0.0)
    inv = 1.0 / total
    side = [t * inv for t in values]
    centre = [inv] * (2 if size % 2 == 0 else 1)
    return np.array(side + centre + side[::-1])


def gaussian(size: int, sigma: float = 0.0, *, ndim: int = 2) -> NDArray[np.float64]:
    """Sampled Gaussian that sums to 1, as OpenCV's ``getGaussianKernel``.

    Parameters
    ----------
    size : int
        Number of taps per axis, >= 1 (odd for a centred kernel).
    sigma : float
        Standard deviation in samples. ``sigma <= 0`` uses OpenCV's rule
        ``0.3 * ((size - 1) * 0.5 - 1) + 0.8`` and, for sizes 1, 3, 5, 7 and 9,
        OpenCV's fixed binomial-like tables.
    ndim : {1, 2}
        1 gives the 1-D kernel, 2 its outer product with itself.

    Returns
    -------
    ndarray of float64
        Shape ``(size,)`` or ``(size, size)``; sums to 1.

    Notes
    -----
    The kernel sums to 1 so that a flat image stays flat. The lab's
    ``gaussian_kernel`` divided by the *maximum* instead, so its weights summed
    to far more than 1 and brightened (and, for uint8, saturated) the image;
    it then needed ``rescale_intensity`` to look right.

    Examples
    --------
    >>> gaussian(5, ndim=1).tolist()
    [0.0625, 0.25, 0.375, 0.25, 0.0625]
    >>> round(float(gaussian(7, 2.0).sum()), 12)
    1.0
    """
    n = v.per_axis_ints(size, "size", 1, minimum=1)[0]
    s = v.finite_float(sigma, "sigma")
    if ndim not in (1, 2):
        raise v.fail("ndim", "be 1 or 2", ndim)
    # the 1-D taps are built as Python floats (~40 bytes each), the 2-D kernel twice
    _check_taps(float(n), f"kernels.gaussian(size={n})", 40.0)
    if ndim == 2:
        _check_taps(float(n) * n, f"kernels.gaussian(size={n}, ndim=2)", 16.0)
    k = _gaussian_1d(n, s)
    if ndim == 1:
        return k
    out = np.outer(k, k)
    return out / out.sum()


def box(size: int | tuple[int, int]) -> NDArray[np.float64]:
    """Mean filter kernel: ``ones(size) / (rows * cols)``.

    Examples
    --------
    >>> box(2).tolist()
    [[0.25, 0.25], [0.25, 0.25]]
    >>> box((1, 3)).shape
    (1, 3)
    """
    rows, cols = _size_pair(size)
    _check_taps(float(rows) * cols, f"kernels.box(size={(rows, cols)})")
    return np.full((rows, cols), 1.0 / (rows * cols))


def derivative() -> NDArray[np.float64]:
    """Forward difference ``[-1, 1]``: ``f(x + 1) - f(x)`` when correlated.

    Its anchor (index 1) sits on ``x + 1``, so with ``correlate`` the result at
    ``i`` is ``f[i] - f[i - 1]``; the lab's forward difference is the same
    numbers one sample earlier.

    Examples
    --------
    >>> derivative().tolist()
    [-1.0, 1.0]
    """
    return np.array([-1.0, 1.0])


def second_derivative() -> NDArray[np.float64]:
    """Central second difference ``[1, -2, 1]``.

    Examples
    --------
    >>> second_derivative().tolist()
    [1.0, -2.0, 1.0]
    """
    return np.array([1.0, -2.0, 1.0])


def laplacian(neighbours: int = 4) -> NDArray[np.float64]:
    """3x3 discrete Laplacian (sum of second differences), OpenCV's sign.

    ``neighbours=4`` gives ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` (OpenCV's
    ``Laplacian`` with ``ksize=1``); ``8`` adds the diagonals,
    ``[[1, 1, 1], [1, -8, 1], [1, 1, 1]]``. The lab's edge kernel is the
    negative of the 4-neighbour one; edge maps take the absolute value.

    Examples
    --------
    >>> laplacian().tolist()
    [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]
    """
    if neighbours == 4:
        return np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    if neighbours == 8:
        return np.array([[1.0, 1.0, 1.0], [1.0, -8.0, 1.0], [1.0, 1.0, 1.0]])
    raise v.fail("neighbours", "be 4 or 8", neighbours)


#: Largest ``derivative_1d`` size: C(1024, 512) is about 2**1018, the next rows overflow.
MAX_DERIVATIVE_SIZE = 1025


def derivative_1d(order: int, size: int) -> NDArray[np.float64]:
    """One factor of a Sobel kernel: binomial smoothing times ``order`` differences.

    As OpenCV's ``getDerivKernels`` for one axis: ``size`` 1 means ``[1]`` for
    order 0 and the 3-tap ``[-1, 0, 1]`` / ``[1, -2, 1]`` otherwise; for
    ``size`` >= 3 the binomial of ``size - order`` taps convolved ``order``
    times with ``[-1, 1]``.

    Examples
    --------
    >>> derivative_1d(1, 5).tolist()
    [-1.0, -2.0, 0.0, 2.0, 1.0]
    """
    for name, value, low in (("order", order, 0), ("size", size, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise v.fail(name, "be an int", value, kind=TypeError)
        if value < low:
            raise v.fail(name, f"be >= {low}", value)
    if size > MAX_DERIVATIVE_SIZE:
        raise v.fail(
            "size",
            f"be <= {MAX_DERIVATIVE_SIZE} (larger binomial coefficients overflow float64)",
            size,
        )
    if size == 1:
        if order == 0:
            return np.array([1.0])
        size = 3
    if order >= size:
        raise ValueError(
            f"`size` must be larger than the derivative order; got size={size}, order={order}."
        )
    k = np.array([1.0])
    for _ in range(size - order - 1):
        k = np.convolve(k, [1.0, 1.0])
    for _ in range(order):
        k = np.convolve(k, [1.0, -1.0])
    # np.convolve flips: convolving with [1, -1] gives the correlation kernel [-1, 1] pattern
    return k * (-1.0) ** order + 0.0  # + 0.0 turns -0.0 into 0.0


def _check_orders(dx: Any, dy: Any) -> tuple[int, int]:
    for name, value in (("dx", dx), ("dy", dy)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise v.fail(name, "be an int", value, kind=TypeError)
        if value < 0:
            raise v.fail(name, "be >= 0", value)
    if dx + dy == 0:
        raise v.fail("dx + dy", "be >= 1 (a derivative of some order)", (dx, dy))
    return int(dx), int(dy)


def sobel(dx: int, dy: int, size: int = 3) -> NDArray[np.float64]:
    """2-D Sobel kernel of derivative orders ``dx`` (along columns) and ``dy`` (rows).

    Equals ``np.outer(ky, kx)`` for ``kx, ky = cv2.getDerivKernels(dx, dy, size)``.
    ``size`` is 1, 3, 5 or 7; 1 means no smoothing across the derivative and the
    3-tap difference along it.

    Examples
    --------
    >>> sobel(1, 0).tolist()
    [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]
    """
    dx, dy = _check_orders(dx, dy)
    if size not in (1, 3, 5, 7) or isinstance(size, bool):
        raise v.fail("size", "be 1, 3, 5 or 7", size)
    for name, order in (("dx", dx), ("dy", dy)):
        if order >= max(size, 3):
            raise ValueError(
                f"`{name}` must be smaller than the kernel size {max(size, 3)}; got {order}."
            )
    return np.outer(derivative_1d(dy, size), derivative_1d(dx, size))


def scharr(dx: int, dy: int) -> NDArray[np.float64]:
    """3x3 Scharr kernel, ``dx + dy == 1``: ``[-1, 0, 1]`` by ``[3, 10, 3]``.

    Examples
    --------
    >>> scharr(0, 1).tolist()
    [[-3.0, -10.0, -3.0], [0.0, 0.0, 0.0], [3.0, 10.0, 3.0]]
    """
    dx, dy = _check_orders(dx, dy)
    if dx + dy != 1:
        raise v.fail("dx + dy", "be 1 for a Scharr kernel", (dx, dy))
    diff = np.array([-1.0, 0.0, 1.0])
    smooth = np.array([3.0, 10.0, 3.0])
    return np.outer(smooth, diff) if dx else np.outer(diff, smooth)


def disk(radius: float) -> NDArray[np.float64]:
    """Pillbox: ones inside the circle ``r <= radius`` (sample centres), sums to 1.

    Shape ``(2 * floor(radius) + 1,) * 2``.

    Examples
    --------
    >>> (disk(1) * 5).round(12).tolist()
    [[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]]
    """
    r = v.positive_float(radius, "radius", allow_zero=True)
    _check_taps((2.0 * r + 1) * (2.0 * r + 1), f"kernels.disk(radius={r!r})", 32.0)
    half = int(math.floor(r))
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    inside = (offsets[:, None] ** 2 + offsets[None, :] ** 2) <= r * r + 1e-12
    mask = inside.astype(np.float64)
    return mask / mask.sum()
