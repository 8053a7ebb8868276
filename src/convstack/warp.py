"""Geometric warps: resample a gray or colour image through a 3x3 projective matrix.

The matrix maps OUTPUT pixel coordinates ``(row, col, 1)`` to INPUT coordinates
(the "pull" convention of ``scipy.ndimage.affine_transform`` and of OpenCV's
``WARP_INVERSE_MAP``), so a transform estimated from a reference frame to a moving
frame (see :func:`convstack.stack.align.estimate_transform`) warps the moving
frame straight onto the reference grid. Pixel centres lie at integer coordinates.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validate as v

__all__ = ["as_matrix", "transform_points", "warp"]

MODES = ("nearest", "constant")
ORDERS = (0, 1, 3, 5)

#: Output bytes of a strip of rows (a task of the thread pool): a 3 MP colour frame
#: in about ten strips, each of which copies the input rows it reads.
_STRIP_BYTES = 4 << 20

#: The two-pass quintic (``separable``) takes affine matrices whose off-diagonal terms are
#: at most this fraction of the row scale ``m[0, 0]`` (rotations up to about 26 degrees).
_SHEAR_LIMIT = 0.5

#: Input rows converted at a time by the two-pass quintic (its band holds the rest).
_TWO_PASS_CHUNK = 16

#: Coordinates this far outside ``[0, n - 1]`` still count as inside (rounding of
#: the matrix product, for example ``cos(pi / 2)``).
_EDGE_TOLERANCE = 1e-9

#: Image dtypes the compiled loops read as they are (others are converted first).
_KERNEL_DTYPES = (
    np.dtype(np.uint8),
    np.dtype(np.uint16),
    np.dtype(np.float32),
    np.dtype(np.float64),
)


def as_matrix(matrix: ArrayLike, name: str = "matrix") -> NDArray[np.float64]:
    """Return ``matrix`` as a finite float64 (3, 3) array (a copy), or raise ``ValueError``."""
    array = v.as_real_array(matrix, name)
    if array.shape != (3, 3):
        raise v.fail(name, "have shape (3, 3)", array)
    result = np.array(array, dtype=np.float64)
    if not np.all(np.isfinite(result)):
        raise v.fail(name, "contain only finite numbers", result.tolist())
    return result


def transform_points(matrix: ArrayLike, points: ArrayLike) -> NDArray[np.float64]:
    """Map ``(row, col)`` points, shape (N, 2), through a 3x3 matrix (with the division).

    Examples
    --------
    >>> transform_points([[1, 0, 2], [0, 1, -1], [0, 0, 1]], [[0, 0], [3, 4]]).tolist()
    [[2.0, -1.0], [5.0, 3.0]]
    """
    m = as_matrix(matrix)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    homog = pts @ m[:, :2].T + m[:, 2]
    return np.asarray(homog[:, :2] / homog[:, 2:3], dtype=np.float64)


def _is_planar(out: NDArray[Any]) -> bool:
    """Whether ``out`` (rows, cols, channels) views a C-contiguous (channels, rows, cols) array."""
    return out.ndim == 3 and out.shape[2] > 1 and np.moveaxis(out, 2, 0).flags.c_contiguous


def _band(m: NDArray[np.float64], start: int, stop: int, cols: int, rows: int) -> tuple[int, int]:
    """Padded input rows ``[lo, hi)`` that output rows ``start:stop`` of the affine ``m``
    read (one row of margin each side for the rounding of the positions)."""
    corners = [
        m[0, 0] * y + m[0, 1] * x + m[0, 2] for y in (start, stop - 1) for x in (0, cols - 1)
    ]
    low = math.floor(min(max(min(corners), 0.0), rows - 1.0))
    high = math.floor(min(max(max(corners), 0.0), rows - 1.0))
    return max(0, low - 1), min(rows + 3, high + 5)


def _spline_coefficients(grid: NDArray[Any], work: np.dtype[Any]) -> NDArray[Any]:
    """The quintic B-spline coefficients of ``grid`` (rows, cols, channels), edge-padded
    by ``SPLINE_PAD`` each side: (channels, rows + 2 pad, cols + 2 pad) of ``work``;
    rows filtered in strips on the pool, then columns."""
    from . import _k_warp
    from .filters._dtype import strips

    h, w, channels = grid.shape
    pad = _k_warp.SPLINE_PAD
    planes = np.empty((channels, h + 2 * pad, w + 2 * pad), work)
    gain = _k_warp.spline_gain() ** 2  # (both axes' gain, once)
    row_bytes = (w + 2 * pad) * channels * work.itemsize
    strips(h + 2 * pad, row_bytes, lambda a, b: _k_warp.spline_rows(grid, planes, gain, a, b))
    column_bytes = (h + 2 * pad) * channels * work.itemsize
    strips(w + 2 * pad, column_bytes, lambda a, b: _k_warp.spline_columns(planes, a, b))
    return planes


def _two_pass(m: NDArray[np.float64]) -> bool:
    """Whether the two-pass quintic takes the affine matrix ``m``: rows read top to
    bottom at a scale within [1/4, 4] and columns within ``_SHEAR_LIMIT`` of a row's
    reach."""
    return (
        0.25 <= m[0, 0] <= 4.0
        and abs(m[1, 0]) <= _SHEAR_LIMIT * m[0, 0]
        and abs(m[0, 1]) <= _SHEAR_LIMIT * m[0, 0]
    )


@functools.cache
def _two_pass_tables(dtype: np.dtype[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
    """The two-pass warp's row prefilter taps and weight polynomials in ``dtype``
    (computed once; the kernels only read them)."""
    from . import _k_warp

    return _k_warp.prefilter_taps().astype(dtype), _k_warp.spline_polynomials().astype(dtype)


def _two_pass_into(
    grid: NDArray[Any], m: NDArray[np.float64], fill: float | None, out: NDArray[Any]
) -> None:
    """:func:`_warp_into` for ``separable`` order 5 (see :func:`_two_pass`): each strip
    of output rows resamples its band of input rows along the rows, converted
    ``_TWO_PASS_CHUNK`` rows at a time (:func:`convstack._k_warp.two_pass_rows`), then
    along the band's columns (:func:`convstack._k_warp.two_pass_columns`). Strips of one
    height, a multiple of the pool's threads, of ``2 * _STRIP_BYTES`` of output at most:
    each computes a margin of rows that its neighbours compute too, and holds a band of
    about its output's size."""
    from . import _k_warp
    from .filters._dtype import POOL_THREADS, strips

    channels, out_rows, out_cols = out.shape
    h, w = grid.shape[:2]
    taps, poly = _two_pass_tables(out.dtype)
    value = np.array([0.0 if fill is None else fill], out.dtype)
    row_bytes = out_cols * channels * out.dtype.itemsize
    rounds = -(-out_rows * row_bytes // (POOL_THREADS * 2 * _STRIP_BYTES))
    target = out_rows * row_bytes // (rounds * POOL_THREADS) + row_bytes

    def run(start: int, stop: int) -> None:
        first, last = _k_warp.two_pass_band(m, start, stop, out_cols, h)
        band = np.empty((channels, last - first, out_cols), out.dtype)
        chunk = np.empty((channels, _TWO_PASS_CHUNK, w + 3), out.dtype)
        for row0 in range(first, last, _TWO_PASS_CHUNK):
            count = min(_TWO_PASS_CHUNK, last - row0)
            _k_warp.planes_rows(grid, row0 + 1, chunk, 0, count)  # rows row0 .. + count - 1
            _k_warp.two_pass_rows(chunk, count, row0, h, w, m, taps, poly, band, first)
        _k_warp.two_pass_columns(
            band, first, h, w, m, poly, fill is not None, value, _EDGE_TOLERANCE, out, start, stop
        )

    strips(out_rows, row_bytes, run, target=target, balanced=True)


def _warp_into(
    grid: NDArray[Any],
    m: NDArray[np.float64],
    order: int,
    fill: float | None,
    out: NDArray[Any],
    separable: bool = False,
) -> None:
    """Warp ``grid`` (rows, cols, channels; C-contiguous) through ``m`` into ``out``
    (channels, out_rows, out_cols), rows split between threads; ``fill``: mode
    'constant''s value, None for 'nearest'.

    Each strip of output rows copies the input rows it reads into padded planes of
    ``out``'s dtype (:func:`convstack._k_warp.planes_rows`), unless the rows of one
    output row spread over more than an eighth of the input (a large rotation) or the
    matrix is projective: then the whole image is copied once, and shared.
    """
    from . import _k_warp
    from .filters._dtype import strips

    h, w, channels = grid.shape
    _, out_rows, out_cols = out.shape
    work = out.dtype
    projective = bool(m[2, 0] != 0.0 or m[2, 1] != 0.0 or m[2, 2] != 1.0)
    if order == 5 and separable and not projective and _two_pass(m):
        _two_pass_into(grid, m, fill, out)
        return
    rows_kernel = {
        0: _k_warp.nearest_rows,
        1: _k_warp.linear_rows,
        3: _k_warp.cubic_rows,
        5: _k_warp.quintic_rows,
    }[order]
    value = np.array([0.0 if fill is None else fill], work)
    whole: NDArray[Any] | None = None
    if order == 5:  # the spline's coefficients, of the whole image (see _k_warp)
        whole = _spline_coefficients(grid, work)
    elif projective or abs(float(m[0, 1])) * (out_cols - 1) > h / 8:
        whole = np.empty((channels, h + 3, w + 3), work)
        copy = whole
        strips(
            h + 3,
            (w + 3) * channels * work.itemsize,
            lambda a, b: _k_warp.planes_rows(grid, 0, copy, a, b),
            balanced=True,
        )

    def run(start: int, stop: int) -> None:
        if whole is None:
            lo, hi = _band(m, start, stop, out_cols, h)
            planes = np.empty((channels, hi - lo, w + 3), work)
            _k_warp.planes_rows(grid, lo, planes, 0, hi - lo)
        else:
            lo, planes = 0, whole
        rows_kernel(
            planes,
            lo,
            h,
            w,
            m,
            projective,
            fill is not None,
            value,
            _EDGE_TOLERANCE,
            out,
            start,
            stop,
        )

    strips(out_rows, out_cols * channels * work.itemsize, run, target=_STRIP_BYTES, balanced=True)


def warp(
    image: ArrayLike,
    matrix: ArrayLike,
    *,
    output_shape: tuple[int, int] | None = None,
    order: int = 1,
    mode: str = "nearest",
    cval: float = 0.0,
    tolerance: float = 0.0,
    separable: bool = False,
    out: NDArray[np.floating[Any]] | None = None,
) -> NDArray[np.floating[Any]]:
    """Resample ``image`` through a 3x3 projective transform of pixel coordinates.

    Parameters
    ----------
    image : array_like, shape (rows, cols) or (rows, cols, channels)
        Gray or colour image (any real dtype). Not modified.
    matrix : array_like, shape (3, 3)
        Maps output coordinates ``(row, col, 1)`` to input coordinates
        ``(r, c, w)``; the sample is taken at ``(r / w, c / w)``. This is the
        transform returned by :func:`convstack.stack.align.estimate_transform`
        (reference -> moving), so ``warp(moving, m)`` lies on the reference grid.
    output_shape : (int, int), optional
        Rows and columns of the result; default: those of ``image``.
    order : {0, 1, 3, 5}
        0 nearest neighbour, 1 bilinear (default), 3 Keys cubic convolution
        (a = -0.5; may overshoot the input range slightly), 5 quintic B-spline
        interpolation (SciPy's ``order=5``: the sharpest, for little more time: it
        keeps fine detail that the cubic softens by up to a third at half-pixel
        positions; overshoots more).
    mode : {'nearest', 'constant'}
        Samples outside ``[0, rows - 1] x [0, cols - 1]``: 'nearest' repeats the edge
        pixels; 'constant' gives ``cval`` (NaN works, and marks the invalid area).
    cval : float
        Fill value of 'constant' mode.
    tolerance : float
        Accepted (>= 0) and ignored: every warp is exact. It was the position error in
        pixels that slightly rotated frames could trade for a faster separable path,
        which the compiled warp made unnecessary.
    separable : bool
        With ``order=5`` only: resample in two 1-D passes (each row of the input
        along the row, then each column of that along the column), 12 taps a pixel
        instead of 36, with the row prefilter a 17-tap FIR (within 0.3 % of the
        exact filter's response). Not SciPy's 2-D result but close to it (exact for
        shifts, to the FIR); for affine matrices near the identity (see Notes), others
        take the 2-D path.
    out : ndarray, optional
        Array to write the result into, of the result's shape and dtype (returned):
        C-contiguous, or for colour a channels-last view of a C-contiguous
        (channels, rows, cols) array (``np.moveaxis(planes, 0, -1)``).

    Returns
    -------
    ndarray
        float64 for float64 input, float32 for every other dtype (uint8 and uint16
        values are kept as they are, not rescaled); shape ``output_shape`` plus the
        channel axis of ``image``.

    Notes
    -----
    Pixel centres sit at integer coordinates, as in ``scipy.ndimage``;
    ``order=1`` equals ``scipy.ndimage.affine_transform(image, matrix[:2, :2],
    matrix[:2, 2], order=1)`` for 'nearest' and 'constant' (SciPy's ``constant``
    also interpolates only inside the image). Points that a projective matrix maps
    behind its centre (``w <= 0``) count as outside. The order-3 kernel is Keys'
    cubic convolution with ``a = -0.5`` over the 4 x 4 pixels around each position;
    an image holding NaN or infinity spoils only the output pixels whose taps include
    it. Positions are computed in float64, the interpolation in the output's dtype.

    Every transform takes the same compiled loop (:mod:`convstack._k_warp`), one output
    pixel at a time, the rows split between threads. Each strip of rows copies the
    input rows it reads into edge-padded planes of the output's dtype (the whole
    image once, shared, for a large rotation or a projective matrix), so no tap needs
    clamping; along a row of a slightly rotated or scaled frame, the taps of a hundred
    pixels or more in a row are consecutive samples, read several at a time. A planar
    ``out`` (a channels-last view of a C-contiguous (channels, rows, cols) array) is
    written plane by plane.

    ``separable=True`` (order 5) writes ``c = P r + Q x + S`` (``r``: the input row read
    by output ``(y, x)``; ``y`` eliminated from the matrix) and samples the spline
    along each input row at those columns, then down each column of the result at
    ``r`` (Catmull and Smith's two-pass decomposition; Unser, Thevenaz and Yaroslavsky
    1995). It takes affine matrices with ``1/4 <= m[0, 0] <= 4`` and ``|m[0, 1]|``,
    ``|m[1, 0]|`` at most half of ``m[0, 0]`` (rotations to about 26 degrees); the
    edges repeat as in 'nearest' (clamped positions) on both passes.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.arange(12.0).reshape(3, 4)
    >>> shift = [[1, 0, 1], [0, 1, 0.5], [0, 0, 1]]  # output (r, c) <- input (r + 1, c + 0.5)
    >>> warp(image, shift, mode="constant", cval=-1).tolist()
    [[4.5, 5.5, 6.5, -1.0], [8.5, 9.5, 10.5, -1.0], [-1.0, -1.0, -1.0, -1.0]]
    """
    array = v.as_real_array(image, "image")
    if array.ndim not in (2, 3):
        raise v.fail("image", "be 2-D (rows, cols) or 3-D (rows, cols, channels)", array)
    m = as_matrix(matrix)
    if isinstance(order, bool) or order not in ORDERS:
        raise v.fail("order", "be 0, 1, 3 or 5", order)
    v.choice(mode, "mode", MODES)
    fill = v.real_number(cval, "cval")
    if output_shape is None:
        out_rows, out_cols = int(array.shape[0]), int(array.shape[1])
    else:
        out_rows, out_cols = v.per_axis_ints(
            tuple(output_shape) if not isinstance(output_shape, int) else output_shape,
            "output_shape",
            2,
            minimum=1,
        )
    v.positive_float(tolerance, "tolerance", allow_zero=True)  # accepted, see Notes
    if not isinstance(separable, (bool, np.bool_)):
        raise v.fail("separable", "be a bool", separable, kind=TypeError)
    if separable and order != 5:
        raise v.fail("separable", "be False unless `order` is 5", f"True with order {order}")
    work = np.dtype(np.float64) if array.dtype == np.float64 else np.dtype(np.float32)
    if array.dtype not in _KERNEL_DTYPES:  # bool, other integers: converted first
        array = array.astype(work)
    channels = 1 if array.ndim == 2 else int(array.shape[2])
    shape = (out_rows, out_cols) + array.shape[2:]
    if out is None:
        result = np.empty((out_rows, out_cols, channels), dtype=work)
    elif (
        not isinstance(out, np.ndarray)
        or out.shape != shape
        or out.dtype != work
        or not (out.flags.c_contiguous or _is_planar(out))
        or not out.flags.writeable
        or np.may_share_memory(out, array)
    ):
        raise v.fail(
            "out",
            f"be a writeable C-contiguous {work} array of shape {shape} (or a channels-last "
            "view of a C-contiguous (channels, rows, cols) one), not the image",
            out,
        )
    else:
        result = out if out.ndim == 3 else out.reshape(out_rows, out_cols, channels)
    grid = np.ascontiguousarray(array if array.ndim == 3 else array[:, :, None])
    planes = np.moveaxis(result, 2, 0)
    _warp_into(grid, m, order, fill if mode == "constant" else None, planes, bool(separable))
    return out if out is not None else result[:, :, 0] if array.ndim == 2 else result
