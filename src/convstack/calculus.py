"""Calculus on sampled data: derivatives by convolution, extrema, 2-D gradients.

1-D: :func:`derivative` differentiates samples ``y`` of a function taken at ``x``
(evenly spaced: a correlation with a finite-difference kernel on the engine; unevenly
spaced: the non-uniform finite-difference weights of the same stencils), and
:func:`extrema` finds the local minima and maxima of the samples to better than the
sampling step.

2-D: :func:`gradient`, :func:`gradient_magnitude`, :func:`gradient_direction`,
:func:`second_derivatives` and :func:`laplace` take central differences along rows and
columns. These are the plain difference quotients of calculus; the smoothed
derivative *filters* that match OpenCV (``cv2.Laplacian``, ``cv2.Sobel``) live in
:mod:`convstack.filters` as ``laplacian``, ``sobel`` and ``scharr``.

Finite-difference weights for any stencil come from the moment conditions
``sum_j w_j (x_j - x_0)**k = k! [k == order]`` for ``k < len(stencil)`` (the
derivative of the interpolating polynomial; Fornberg, Math. Comp. 51, 1988).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validate as v
from ._modes import MODES
from .convolve import correlate

__all__ = [
    "Extremum",
    "derivative",
    "extrema",
    "gradient",
    "gradient_direction",
    "gradient_magnitude",
    "laplace",
    "second_derivatives",
]

SCHEMES = ("central", "forward", "backward")

F = TypeVar("F", bound=Callable[..., Any])


def _ieee(function: F) -> F:
    """Run ``function`` with NumPy's floating-point warnings off: NaN and infinities in
    the data (or a step so small that its reciprocal overflows) give their IEEE results
    (README, "Non-finite values") without a RuntimeWarning."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(divide="ignore", over="ignore", invalid="ignore", under="ignore"):
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


#: Border modes of the 2-D functions: ours first, then the engine's padding modes.
MODES_2D = ("one-sided", *MODES)

# Interior stencil of each (scheme, order) on unit spacing: (first offset, kernel).
# The kernel is correlated with the samples, so value i uses y[i + first + j] * kernel[j].
_INTERIOR: dict[tuple[str, int], tuple[int, tuple[float, ...]]] = {
    ("central", 1): (-1, (-0.5, 0.0, 0.5)),
    ("central", 2): (-1, (1.0, -2.0, 1.0)),
    ("forward", 1): (0, (-1.0, 1.0)),
    ("forward", 2): (0, (1.0, -2.0, 1.0)),
    ("backward", 1): (-1, (-1.0, 1.0)),
    ("backward", 2): (-2, (1.0, -2.0, 1.0)),
}


class Extremum(NamedTuple):
    """One local extremum of sampled data, as found by :func:`extrema`."""

    x: float
    """Abscissa of the extremum (interpolated between samples)."""
    y: float
    """Value at the extremum (the vertex of the fitted parabola)."""
    kind: str
    """``"min"`` or ``"max"``."""


# ----------------------------------------------------------------------------- 1-D helpers


def _fd_weights(z: NDArray[np.float64], order: int) -> NDArray[np.float64]:
    """Finite-difference weights for nodes at offsets ``z`` (points, nodes) from each point."""
    points, nodes = z.shape
    scale = np.max(np.abs(z), axis=1, keepdims=True)
    zs = z / scale
    powers = np.arange(nodes)
    vander = zs[:, None, :] ** powers[None, :, None]  # vander[p, k, j] = zs[p, j] ** k
    rhs = np.zeros((points, nodes, 1))
    rhs[:, order, 0] = math.factorial(order)
    weights: NDArray[np.float64] = np.linalg.solve(vander, rhs)[..., 0]
    return weights / scale**order


def _samples_1d(value: ArrayLike, name: str) -> NDArray[Any]:
    array = v.as_real_array(value, name)
    if array.ndim != 1:
        raise v.fail(name, "be 1-D", array)
    return array


def _abscissae(x: ArrayLike | None, n: int) -> NDArray[np.float64] | None:
    """Validate ``x``: 1-D, length ``n``, finite, strictly increasing (or None)."""
    if x is None:
        return None
    xs = _samples_1d(x, "x").astype(np.float64)
    if xs.shape[0] != n:
        raise ValueError(f"`x` must have the same length as `y` ({n}); got length {xs.shape[0]}.")
    if not np.all(np.isfinite(xs)):
        raise v.fail("x", "be finite", xs)
    steps = np.diff(xs)
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        raise ValueError(
            f"`x` must be strictly increasing; got x[{i}] = {float(xs[i])!r} "
            f"and x[{i + 1}] = {float(xs[i + 1])!r}."
        )
    return xs


def _stencil_sum(
    data: NDArray[np.float64],
    xs: NDArray[np.float64] | None,
    points: NDArray[np.intp],
    offsets: tuple[int, ...],
    order: int,
    step: float,
) -> NDArray[np.float64]:
    """Derivative at ``points`` from the samples at ``points + offsets`` (any spacing)."""
    index = points[:, None] + np.asarray(offsets)[None, :]
    if xs is None:
        z = np.broadcast_to(np.asarray(offsets, dtype=np.float64) * step, index.shape)
    else:
        z = xs[index] - xs[points][:, None]
    weights = _fd_weights(np.array(z, dtype=np.float64), order)
    result: NDArray[np.float64] = np.sum(weights * data[index], axis=1)
    return result


@_ieee
def derivative(
    y: ArrayLike,
    x: ArrayLike | None = None,
    *,
    order: int = 1,
    scheme: str = "central",
) -> NDArray[np.floating[Any]]:
    """Derivative of sampled 1-D data by finite differences.

    Parameters
    ----------
    y : array_like, 1-D
        Samples ``f(x[i])``.
    x : array_like, 1-D, optional
        Strictly increasing abscissae, evenly or unevenly spaced. None means unit
        spacing (``x = 0, 1, 2, ...``).
    order : {1, 2}
        First or second derivative.
    scheme : {"central", "forward", "backward"}
        Which neighbours each value uses (see Notes).

    Returns
    -------
    ndarray
        ``f'`` (or ``f''``) at every ``x[i]``, same length as ``y``; float32 for float32
        input, float64 otherwise.

    Raises
    ------
    ValueError
        If ``y`` is not 1-D or too short for the stencil, ``x`` is not strictly
        increasing or has another length, or ``order``/``scheme`` is unknown.

    Notes
    -----
    Evenly spaced samples (``x`` None, or every step equal to the mean step within
    1e-9 relative) are correlated with a kernel on the engine, divided by ``h**order``:

    - central: ``[-1, 0, 1] / 2`` (order 1), ``[1, -2, 1]`` (order 2) on i-1, i, i+1;
    - forward: ``[-1, 1]`` on i, i+1 (order 1), ``[1, -2, 1]`` on i, i+1, i+2 (order 2);
    - backward: ``[-1, 1]`` on i-1, i (order 1), ``[1, -2, 1]`` on i-2, i-1, i (order 2).

    Unevenly spaced samples use the same stencils with the non-uniform weights (for
    central order 1 with left step ``a`` and right step ``b``:
    ``(-b/(a(a+b)), (b-a)/(ab), a/(b(a+b)))``, as ``numpy.gradient``).

    End points, where a stencil would leave the data, use the nearest stencil that
    fits: central order 1 uses the second-order one-sided three-point formula
    (``[-3, 4, -1] / 2h`` at the start: ``numpy.gradient(..., edge_order=2)``); central
    order 2 the four-point one-sided formula ``[2, -5, 4, -1] / h**2`` (three points
    when only three samples exist); forward takes the backward stencil at the last
    point(s), backward the forward stencil at the first point(s). The lab's
    ``cvconv(y, [[-1, 1]])`` anchored the kernel on its second tap, so its value at
    ``x[i]`` was ``(y[i] - y[i-1]) / h``: ``scheme="backward"`` here.

    Examples
    --------
    The lab's example, ``f(x) = -x + 3``:

    >>> derivative([3, 2, 1, 0], scheme="forward")
    array([-1., -1., -1., -1.])
    >>> derivative([0.0, 1.0, 4.0, 9.0], [0.0, 1.0, 2.0, 3.0])
    array([0., 2., 4., 6.])
    >>> derivative([0.0, 1.0, 4.0, 9.0], order=2)
    array([2., 2., 2., 2.])
    """
    samples = _samples_1d(y, "y")
    if isinstance(order, bool) or order not in (1, 2):
        raise v.fail("order", "be 1 or 2", order)
    v.choice(scheme, "scheme", SCHEMES)
    first, kernel = _INTERIOR[(scheme, order)]
    width = len(kernel)
    n = samples.shape[0]
    if n < width:
        raise ValueError(
            f"`y` must have at least {width} samples for scheme={scheme!r} and "
            f"order={order}; got {n}."
        )
    out_dtype = v.float_dtype(samples)
    data = samples.astype(np.float64)
    xs = _abscissae(x, n)
    step = 1.0
    uniform = True
    if xs is not None:
        step = (xs[-1] - xs[0]) / (n - 1)
        uniform = bool(np.all(np.abs(np.diff(xs) - step) <= 1e-9 * step))
    out = np.empty(n, dtype=np.float64)
    interior = np.arange(-first, n - (width - 1 + first), dtype=np.intp)
    offsets = tuple(range(first, first + width))
    if uniform:
        values = correlate(data, np.asarray(kernel), padding="valid", method="direct")
        out[interior] = values / step**order
        xs = None
    else:
        out[interior] = _stencil_sum(data, xs, interior, offsets, order, step)
    # End points: the nearest stencil that fits inside the data.
    ends = np.setdiff1d(np.arange(n, dtype=np.intp), interior)
    for i in ends:
        if scheme == "central" and order == 2 and n >= 4:
            nodes = range(0, 4) if i == 0 else range(n - 4, n)
        else:
            nodes = range(0, width) if i < -first else range(n - width, n)
        end_offsets = tuple(j - int(i) for j in nodes)
        point = np.array([i], dtype=np.intp)
        out[i] = _stencil_sum(data, xs, point, end_offsets, order, step)[0]
    return out.astype(out_dtype, copy=False)


def extrema(
    y: ArrayLike,
    x: ArrayLike | None = None,
    *,
    include_ends: bool = False,
) -> list[Extremum]:
    """Local minima and maxima of sampled 1-D data, each reported once.

    Parameters
    ----------
    y : array_like, 1-D
        Finite samples ``f(x[i])``.
    x : array_like, 1-D, optional
        Strictly increasing abscissae (any spacing); None means ``0, 1, 2, ...``.
    include_ends : bool
        Also report the first and last sample (or end plateau) when it is higher or
        lower than its neighbour: the end points of the interval are then boundary
        extrema. Off by default: only turning points inside the data are reported.

    Returns
    -------
    list of Extremum
        Named tuples ``(x, y, kind)`` in increasing ``x``; ``kind`` is "min" or "max".

    Raises
    ------
    ValueError
        If ``y`` is not 1-D or holds NaN/inf, or ``x`` is invalid.

    Notes
    -----
    A turning point is a sample (or a run of equal samples) whose neighbours are both
    lower (a max) or both higher (a min): the places where the forward difference
    ``y[i+1] - y[i]`` changes sign. For a single sample ``i`` the extremum is the
    vertex of the parabola through samples ``i-1, i, i+1``, which places it to a
    small fraction of the step (the error is O(h**2) for smooth data). A plateau,
    a run of exactly equal samples, is reported once, at the centre of the run, with
    its value. Constant data have no extrema. Noise makes spurious turning points: smooth
    noisy data first.

    Examples
    --------
    >>> [(e.kind, e.x, e.y) for e in extrema([0.0, 3.0, 4.0, 3.0, 0.0])]
    [('max', 2.0, 4.0)]
    >>> [(e.kind, e.x) for e in extrema([2, 1, 1, 1, 2, 2])]
    [('min', 2.0)]
    >>> [(e.kind, e.x) for e in extrema([2, 1, 1, 1, 2, 2], include_ends=True)]
    [('max', 0.0), ('min', 2.0), ('max', 4.5)]
    """
    samples = np.asarray(_samples_1d(y, "y"), dtype=np.float64)
    n = samples.shape[0]
    for lo in range(0, n, _CHUNK):
        part = samples[lo : lo + _CHUNK]
        if not np.isfinite(part).all():
            bad = lo + int(np.flatnonzero(~np.isfinite(part))[0])
            raise ValueError(f"`y` must be finite; got {float(samples[bad])!r} at index {bad}.")
    xs = _abscissae(x, n)

    def at(index: NDArray[np.intp]) -> NDArray[np.float64]:
        return index.astype(np.float64) if xs is None else xs[index]

    # Runs of equal samples, streamed in chunks of samples so that memory stays
    # O(_CHUNK) for any length: ``starts`` holds the starts of consecutive runs, the
    # last one only as the end of the run before it.
    found: list[Extremum] = []
    carry = np.zeros(1, dtype=np.intp)
    for lo in range(1, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        new = np.flatnonzero(samples[lo:hi] != samples[lo - 1 : hi - 1]) + lo
        starts = np.concatenate((carry, new))
        found.extend(_turning_points(samples, at, starts))
        carry = starts[-3:]
    found.extend(_turning_points(samples, at, np.concatenate((carry, [n]))))
    if include_ends and _first_change(samples) < n:  # constant data: no extrema at all
        first_stop = _first_change(samples) - 1
        last_start = _first_change(samples[::-1])
        last_start = n - last_start
        kind = "max" if samples[0] > samples[first_stop + 1] else "min"
        head = Extremum(
            float((at(np.array([0]))[0] + at(np.array([first_stop]))[0]) / 2),
            float(samples[0]),
            kind,
        )
        kind = "max" if samples[-1] > samples[last_start - 1] else "min"
        tail = Extremum(
            float((at(np.array([last_start]))[0] + at(np.array([n - 1]))[0]) / 2),
            float(samples[-1]),
            kind,
        )
        found = [head, *found, tail]
    return found


#: Samples per step of :func:`extrema`'s streamed pass (and of its finiteness check).
_CHUNK = 1 << 20


def _first_change(samples: NDArray[np.float64]) -> int:
    """Index of the first sample that differs from ``samples[0]`` (``len`` if none)."""
    for lo in range(0, samples.shape[0], _CHUNK):
        hit = np.flatnonzero(samples[lo : lo + _CHUNK] != samples[0])
        if hit.size:
            return lo + int(hit[0])
    return int(samples.shape[0])


@_ieee
def _turning_points(
    samples: NDArray[np.float64],
    at: Any,
    starts: NDArray[np.intp],
) -> list[Extremum]:
    """Extrema among the runs ``1 .. len(starts) - 3`` of ``starts`` (see :func:`extrema`).

    Run ``j`` covers ``starts[j] .. starts[j + 1] - 1``; runs 0 and ``len - 2`` are only
    the neighbours of the others, and ``starts[-1]`` only ends run ``len - 2``.
    """
    if starts.shape[0] < 4:
        return []
    stops = starts[1:] - 1
    values = samples[starts[:-1]]
    middle = np.arange(1, starts.shape[0] - 2)
    higher = values[middle] > values[middle - 1]
    is_max = higher & (values[middle] > values[middle + 1])
    is_min = ~higher & (values[middle] < values[middle + 1])
    turning = middle[is_max | is_min]
    kinds = np.where(is_max[is_max | is_min], "max", "min")
    single = starts[turning] == stops[turning]
    # Parabola vertex through i-1, i, i+1 for single-sample turning points.
    i = starts[turning[single]]
    xi = at(i)
    d0, d2 = at(i - 1) - xi, at(i + 1) - xi
    u0, u2 = samples[i - 1] - samples[i], samples[i + 1] - samples[i]
    s0, s2 = u0 / d0, u2 / d2
    curvature = (s0 - s2) / (d0 - d2)
    slope = s0 - curvature * d0
    shift = np.clip(-slope / (2 * curvature), d0, d2)
    vertex_x = xi + shift
    vertex_y = samples[i] + slope * shift + curvature * shift**2
    px = np.empty(turning.shape[0])
    py = np.empty(turning.shape[0])
    px[single], py[single] = vertex_x, vertex_y
    flat = turning[~single]
    px[~single] = (at(starts[flat]) + at(stops[flat])) / 2
    py[~single] = values[flat]
    return [Extremum(float(a), float(b), str(k)) for a, b, k in zip(px, py, kinds, strict=True)]


# ----------------------------------------------------------------------------- 2-D


def _prepare_2d(
    image: ArrayLike, mode: Any, cval: Any, channel_axis: int | None, spacing: Any
) -> tuple[NDArray[np.floating[Any]], int | None, tuple[float, float]]:
    """Validate the 2-D arguments; return a float image with channels last (if any)."""
    array = v.as_real_array(image, "image")
    v.choice(mode, "mode", MODES_2D)
    if mode == "one-sided" and float(cval) != 0.0:
        raise v.fail("cval", "be 0 with mode='one-sided', which ignores it", cval)
    axis = v.channel_axis_index(channel_axis, array.ndim)
    spatial = array.ndim - (axis is not None)
    if spatial != 2:
        raise ValueError(
            f"`image` must be 2-D (rows, cols), plus a channel axis if `channel_axis` is "
            f"given; got shape {array.shape} with channel_axis={channel_axis!r}."
        )
    if isinstance(spacing, (int, float, np.integer, np.floating)) and not isinstance(spacing, bool):
        steps = (float(spacing), float(spacing))
    elif isinstance(spacing, (tuple, list)) and len(spacing) == 2:
        steps = (float(spacing[0]), float(spacing[1]))
    else:
        raise v.fail(
            "spacing", "be a number or a (row, col) pair of numbers", spacing, kind=TypeError
        )
    if not all(np.isfinite(s) and s > 0 for s in steps):
        raise v.fail("spacing", "be > 0 and finite for every axis", steps)
    work = array.astype(v.float_dtype(array), copy=False)
    if axis is not None:
        work = np.moveaxis(work, axis, -1)
    return work, axis, steps


def _restore(result: NDArray[Any], axis: int | None) -> NDArray[Any]:
    return result if axis is None else np.moveaxis(result, -1, axis)


def _correlate_2d(
    work: NDArray[np.floating[Any]],
    kernel: NDArray[np.float64],
    mode: str,
    cval: float,
    channels: bool,
) -> NDArray[np.floating[Any]]:
    """``work`` (channels last when ``channels``) correlated with a small 2-D kernel."""
    out: NDArray[np.floating[Any]] = correlate(
        work, kernel, mode=mode, cval=cval, channel_axis=-1 if channels else None, method="direct"
    )
    return out


def _diff(
    work: NDArray[np.floating[Any]],
    axis: int,
    order: int,
    mode: str,
    cval: float,
    step: float,
    channels: bool,
) -> NDArray[np.floating[Any]]:
    """Central difference of ``order`` along spatial ``axis`` (0 rows, 1 cols)."""
    taps = np.array([-0.5, 0.0, 0.5]) if order == 1 else np.array([1.0, -2.0, 1.0])
    kernel = taps[:, None] if axis == 0 else taps[None, :]
    if mode != "one-sided":
        return _correlate_2d(work, kernel, mode, cval, channels) / step**order
    length = work.shape[axis]
    if length < order + 1:
        name = "rows" if axis == 0 else "cols"
        raise ValueError(
            f"`image` must have at least {order + 1} {name} for order-{order} differences "
            f"with mode='one-sided'; got shape {work.shape}."
        )
    out = _correlate_2d(work, kernel, "nearest", 0.0, channels)
    moved = np.moveaxis(out, axis, 0)  # a view: edits land in ``out``
    source = np.moveaxis(work, axis, 0)
    if order == 1:
        moved[0] = source[1] - source[0]
        moved[-1] = source[-1] - source[-2]
    elif length >= 3:  # the three-point one-sided formula equals the neighbour's value
        moved[0] = moved[1]
        moved[-1] = moved[-2]
    return out / step**order


@_ieee
def gradient(
    image: ArrayLike,
    *,
    spacing: float | tuple[float, float] = 1.0,
    mode: str = "one-sided",
    cval: float = 0.0,
    channel_axis: int | None = None,
) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]]]:
    """First derivatives along rows and columns by central differences.

    Parameters
    ----------
    image : array_like
        2-D (rows, cols), or with a channel axis named by ``channel_axis``.
    spacing : float or (float, float)
        Sample step along rows and along columns.
    mode : {"one-sided", "constant", "nearest", "reflect", "mirror", "wrap", "mean"}
        Border rule. "one-sided" (default) uses ``f[1] - f[0]`` and ``f[-1] - f[-2]``
        on the first and last row/column, as ``numpy.gradient`` (``edge_order=1``);
        the others pad the image as in :func:`convstack.correlate`.
    cval : float
        Padding value for ``mode="constant"``.
    channel_axis : int, optional
        Axis of colour channels, differentiated independently.

    Returns
    -------
    (d_rows, d_cols) : tuple of ndarray
        ``(f[r+1, c] - f[r-1, c]) / 2`` and ``(f[r, c+1] - f[r, c-1]) / 2`` divided by
        the spacing; shape of ``image``; float32 for float32 input, float64 otherwise.

    Examples
    --------
    >>> d_rows, d_cols = gradient([[0, 1, 4], [2, 3, 6]])
    >>> d_rows
    array([[2., 2., 2.],
           [2., 2., 2.]])
    >>> d_cols
    array([[1., 2., 3.],
           [1., 2., 3.]])
    """
    work, axis, steps = _prepare_2d(image, mode, cval, channel_axis, spacing)
    channels = axis is not None
    d_rows = _diff(work, 0, 1, mode, float(cval), steps[0], channels)
    d_cols = _diff(work, 1, 1, mode, float(cval), steps[1], channels)
    return _restore(d_rows, axis), _restore(d_cols, axis)


@_ieee
def gradient_magnitude(
    image: ArrayLike,
    *,
    spacing: float | tuple[float, float] = 1.0,
    mode: str = "one-sided",
    cval: float = 0.0,
    channel_axis: int | None = None,
) -> NDArray[np.floating[Any]]:
    """Length of the :func:`gradient`, ``hypot(d_rows, d_cols)``; same arguments.

    Examples
    --------
    >>> gradient_magnitude([[0, 3], [4, 7]])
    array([[5., 5.],
           [5., 5.]])
    """
    d_rows, d_cols = gradient(
        image, spacing=spacing, mode=mode, cval=cval, channel_axis=channel_axis
    )
    result: NDArray[np.floating[Any]] = np.hypot(d_rows, d_cols)
    return result


@_ieee
def gradient_direction(
    image: ArrayLike,
    *,
    spacing: float | tuple[float, float] = 1.0,
    mode: str = "one-sided",
    cval: float = 0.0,
    channel_axis: int | None = None,
) -> NDArray[np.floating[Any]]:
    """Direction of the :func:`gradient` in radians, ``arctan2(d_rows, d_cols)``.

    The angle lies in (-pi, pi]; 0 points along increasing columns and pi/2 along
    increasing rows (down the image). Where the gradient is zero the angle is 0.

    Examples
    --------
    >>> gradient_direction([[0, 0], [1, 1]])
    array([[1.57079633, 1.57079633],
           [1.57079633, 1.57079633]])
    """
    d_rows, d_cols = gradient(
        image, spacing=spacing, mode=mode, cval=cval, channel_axis=channel_axis
    )
    # + 0.0 turns -0.0 into +0.0, so that a leftward gradient gives pi, not -pi
    result: NDArray[np.floating[Any]] = np.arctan2(d_rows + 0.0, d_cols + 0.0)
    return result


@_ieee
def second_derivatives(
    image: ArrayLike,
    *,
    spacing: float | tuple[float, float] = 1.0,
    mode: str = "one-sided",
    cval: float = 0.0,
    channel_axis: int | None = None,
) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]], NDArray[np.floating[Any]]]:
    """Second derivatives ``(d_rr, d_cc, d_rc)``: the entries of the Hessian.

    Parameters are those of :func:`gradient`.

    Returns
    -------
    (d_rr, d_cc, d_rc) : tuple of ndarray
        ``d_rr`` is the correlation with ``[1, -2, 1]`` down the rows, ``d_cc`` across
        the columns (the lab's kernel), ``d_rc`` with ``[[1, 0, -1], [0, 0, 0],
        [-1, 0, 1]] / 4``; each divided by the spacings. With ``mode="one-sided"`` the
        first and last row (column) of ``d_rr`` (``d_cc``) take the three-point
        one-sided value (equal to their neighbour's) and ``d_rc`` is
        ``gradient`` along rows of ``gradient`` along columns; the result is then exact
        for quadratic images everywhere, borders included.

    Examples
    --------
    >>> d_rr, d_cc, d_rc = second_derivatives([[0, 1, 4], [0, 1, 4], [0, 1, 4]])
    >>> d_cc
    array([[2., 2., 2.],
           [2., 2., 2.],
           [2., 2., 2.]])
    >>> float(abs(d_rr).max()), float(abs(d_rc).max())
    (0.0, 0.0)
    """
    work, axis, steps = _prepare_2d(image, mode, cval, channel_axis, spacing)
    channels = axis is not None
    value = float(cval)
    d_rr = _diff(work, 0, 2, mode, value, steps[0], channels)
    d_cc = _diff(work, 1, 2, mode, value, steps[1], channels)
    if mode == "one-sided":
        across = _diff(work, 1, 1, mode, value, steps[1], channels)
        d_rc = _diff(across, 0, 1, mode, value, steps[0], channels)
    else:
        cross = np.array([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 1.0]]) / 4.0
        d_rc = _correlate_2d(work, cross, mode, value, channels) / (steps[0] * steps[1])
    return _restore(d_rr, axis), _restore(d_cc, axis), _restore(d_rc, axis)


@_ieee
def laplace(
    image: ArrayLike,
    *,
    spacing: float | tuple[float, float] = 1.0,
    mode: str = "one-sided",
    cval: float = 0.0,
    channel_axis: int | None = None,
) -> NDArray[np.floating[Any]]:
    """Laplacian ``d_rr + d_cc`` by central differences (the 4-neighbour operator).

    Parameters are those of :func:`gradient`. With unit spacing this is the correlation
    with ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``, as ``scipy.ndimage.laplace`` (whose
    default border is ``mode="reflect"``) and ``cv2.Laplacian(..., ksize=1)`` (whose
    default border is ``mode="mirror"``; see also ``convstack.filters.laplacian``).
    The lab's edge kernel ``[[0, -1, 0], [-1, 4, -1], [0, -1, 0]]`` is its negative.

    Examples
    --------
    >>> laplace([[0, 0, 0], [0, 1, 0], [0, 0, 0]], mode="constant")
    array([[ 0.,  1.,  0.],
           [ 1., -4.,  1.],
           [ 0.,  1.,  0.]])
    """
    work, axis, steps = _prepare_2d(image, mode, cval, channel_axis, spacing)
    channels = axis is not None
    if mode == "one-sided":
        d_rr = _diff(work, 0, 2, mode, 0.0, steps[0], channels)
        d_cc = _diff(work, 1, 2, mode, 0.0, steps[1], channels)
        return _restore(d_rr + d_cc, axis)
    wr, wc = 1.0 / steps[0] ** 2, 1.0 / steps[1] ** 2
    kernel = np.array([[0.0, wr, 0.0], [wc, -2 * (wr + wc), wc], [0.0, wr, 0.0]])
    return _restore(_correlate_2d(work, kernel, mode, float(cval), channels), axis)
