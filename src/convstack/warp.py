"""Geometric warps: resample a gray or colour image through a 3x3 projective matrix.

The matrix maps OUTPUT pixel coordinates ``(row, col, 1)`` to INPUT coordinates
(the "pull" convention of ``scipy.ndimage.affine_transform`` and of OpenCV's
``WARP_INVERSE_MAP``), so a transform estimated from a reference frame to a moving
frame (see :func:`convstack.stack.align.estimate_transform`) warps the moving
frame straight onto the reference grid. Pixel centres lie at integer coordinates.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import ArrayLike, NDArray

from . import _resample
from . import _validate as v

__all__ = ["as_matrix", "transform_points", "warp"]

MODES = ("nearest", "constant")
ORDERS = (0, 1, 3)

#: Output pixels computed per strip: keeps the coordinate and weight arrays of a
#: 6 MP colour frame to a few megabytes instead of several hundred.
_STRIP_PIXELS = 1 << 16

#: Coordinates this far outside ``[0, n - 1]`` still count as inside (rounding of
#: the matrix product, for example ``cos(pi / 2)``).
_EDGE_TOLERANCE = 1e-9


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


def _source_coords(
    m: NDArray[np.float64], rows: NDArray[np.float64], cols: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Input (row, col) coordinates of the output grid ``rows x cols``; NaN where undefined."""
    r = rows[:, None]
    c = cols[None, :]
    src_r = m[0, 0] * r + m[0, 1] * c + m[0, 2]
    src_c = m[1, 0] * r + m[1, 1] * c + m[1, 2]
    if m[2, 0] != 0.0 or m[2, 1] != 0.0 or m[2, 2] != 1.0:
        w = m[2, 0] * r + m[2, 1] * c + m[2, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(w > 0, w, np.nan)  # behind the projection centre: no source
            src_r = src_r / w
            src_c = src_c / w
    return src_r, src_c


def _bands(slope: float, count: int, tolerance: float) -> list[tuple[int, int]]:
    """Split ``range(count)`` into runs over which ``slope * i`` varies by <= 2 tolerance."""
    size = count if slope == 0.0 else max(1, int(2.0 * tolerance / abs(slope)))
    return [(start, min(count, start + size)) for start in range(0, count, size)]


#: Shortest mean run of consecutive taps (see :func:`_runs`) worth slicing instead
#: of gathering: a slice is a view with no copy, but costs a few NumPy calls.
_MIN_RUN = 16


#: Taps are sliced only for this many column bands or fewer (each slice is a NumPy
#: call; the narrow bands of a rotated warp are cheaper gathered).
_MAX_SLICED_BANDS = 4


def _runs(first: NDArray[np.intp]) -> list[tuple[int, int]] | None:
    """Split ``first`` into runs ``[lo, hi)`` along which it steps by exactly 1.

    Along a run, tap ``k`` of every sample is one slice of the input. Near unit
    scale (focus breathing) a row has a handful of runs; ``None`` when they are
    too short for slicing to pay (strong zoom, many clamped edge samples).
    """
    breaks = np.flatnonzero(np.diff(first) != 1) + 1
    if first.size < _MIN_RUN * (breaks.size + 1):
        return None
    edges = [0, *breaks.tolist(), int(first.size)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _weigh_taps(
    taps: Iterable[NDArray[Any]],
    weights: Iterable[NDArray[Any]],
    out: NDArray[Any],
    scratch: NDArray[Any] | None = None,
) -> None:
    """``out = sum_k taps[k] * weights[k]``.

    ``scratch`` is a temporary shaped like ``out``; without it the taps (fresh
    gathered copies of ``out``'s dtype) are weighted in place. ``taps`` may be a
    generator, so that only one gathered copy exists at a time.
    """
    for k, (tap, weight) in enumerate(zip(taps, weights, strict=True)):
        if k == 0:
            np.multiply(tap, weight, out=out, casting="unsafe")
        elif scratch is None:
            tap *= weight
            out += tap
        else:
            np.multiply(tap, weight, out=scratch, casting="unsafe")
            out += scratch


def _sliceable(
    m: NDArray[np.float64], out_shape: tuple[int, int], channels: int, tolerance: float
) -> bool:
    """Whether :func:`_separable` reads the taps of affine ``m`` as slices: a handful of
    column bands, and at most two bands of rows in a strip (no or very slight rotation)."""
    out_rows, out_cols = out_shape
    col_bands = _bands(float(m[0, 1]), out_cols, tolerance)
    row_bands = _bands(float(m[1, 0] / m[0, 0]), _strip_rows(out_shape, channels), tolerance)
    return len(col_bands) <= _MAX_SLICED_BANDS and len(row_bands) <= 2


def _strip_rows(out_shape: tuple[int, int], channels: int = 1) -> int:
    """Output rows per strip of :func:`_separable` (before its division by four)."""
    out_rows, out_cols = out_shape
    return max(1, min(out_rows, _STRIP_PIXELS * 16 // max(1, out_cols * channels)))


def _separable(
    array: NDArray[Any],
    m: NDArray[np.float64],
    out_shape: tuple[int, int],
    order: int,
    work: np.dtype[Any],
    tolerance: float,
    out: NDArray[Any],
) -> None:
    """Affine linear or Keys cubic warp into ``out`` in two 1-D passes (rows, then
    columns), 'nearest' edges.

    Output ``(r, c)`` samples the input at ``(A r + B c + C, D r + E c + F)``.
    Pass 1 resamples each input row ``y`` along its columns at ``g(y, c) = s c +
    (D / A) y + o`` (the column where the output line through ``y`` meets it), pass 2
    each column at ``A r + B c + C``. Rows (pass 1) and columns (pass 2) are taken in
    bands over which the offset varies by at most ``2 * tolerance`` pixels, so one
    set of weights serves a whole band. Within a band, runs of samples whose taps
    advance one input pixel per output pixel (all of them at unit scale) read each
    tap as a slice of the input; elsewhere taps are gathered.
    Without rotation or shear (``B = D = 0``) there is one band and the result is the
    2-D interpolation exactly; otherwise sample positions move by at most
    ``tolerance`` (the caller checks the slant of the taps, ``2 |D / A|``).
    """
    h, w, channels = array.shape
    out_rows, out_cols = out_shape
    a, b, c0 = m[0]
    d, e, f0 = m[1, 0], m[1, 1], m[1, 2]
    slope_y = d / a
    scale_c = e - d * b / a
    offset_c = f0 - d * c0 / a
    before, after = _resample.PAD[order]
    padded = np.pad(array, ((before, after), (before, after), (0, 0)), mode="edge")
    padded = padded.reshape(padded.shape[0], padded.shape[1] * channels)
    count = before + after + 1
    lanes = np.arange(channels, dtype=np.intp)
    cols = np.arange(out_cols, dtype=np.float64)
    col_bands = _bands(b, out_cols, tolerance)
    row_step = _strip_rows(out_shape, channels)
    sliced = _sliceable(m, out_shape, channels, tolerance)
    if sliced:  # smaller strips: the sliced passes are many short calls over cached rows
        row_step = max(1, row_step // 4)
    out = out.reshape(out_rows, out_cols * channels)
    for start in range(0, out_rows, row_step):
        stop = min(out_rows, start + row_step)
        rows = np.arange(start, stop, dtype=np.float64)
        # input rows this strip reads (padded indices), then pass 1 over them
        corners = a * rows[[0, -1]][:, None] + b * cols[[0, -1]][None, :] + c0
        low = int(np.clip(corners.min(), 0.0, h - 1))
        high = int(np.clip(corners.max(), 0.0, h - 1)) + count - 1
        block = padded[low : high + 1]
        if sliced:  # sliced taps are read several times: convert once
            block = block.astype(work)
        inter = np.empty(block.shape[:1] + (out_cols * channels,), dtype=work)
        # the sliced passes' temporaries: two of a run in pass 1, one strip in pass 2
        strip = (stop - start) * out_cols * channels
        scratch = np.empty(max(2 * inter.size, strip) if sliced else 0, dtype=work)
        for lo, hi in _bands(slope_y, high - low + 1, tolerance):
            y_mid = np.clip(low + (lo + hi - 1) / 2.0 - before, 0.0, h - 1)
            position = scale_c * cols + (slope_y * y_mid + offset_c)
            first, weights = _resample.taps(position, w, order, work)
            wide = [np.repeat(weight, channels) for weight in weights]
            runs = _runs(first) if sliced else None
            if runs is None:
                index = (first * channels)[:, None] + lanes
                gathered = (
                    np.take(block[lo:hi], (index + k * channels).ravel(), axis=1)
                    for k in range(count)
                )
                _weigh_taps(gathered, wide, inter[lo:hi], np.empty((hi - lo, inter.shape[1]), work))
                continue
            for c_lo, c_hi in runs:
                span = slice(c_lo * channels, c_hi * channels)
                tap0 = int(first[c_lo]) * channels
                width = (c_hi - c_lo) * channels
                taps = [
                    block[lo:hi, tap0 + k * channels : tap0 + k * channels + width]
                    for k in range(count)
                ]
                part = [weight[span] for weight in wide]
                size = (hi - lo) * width
                acc = scratch[:size].reshape(hi - lo, width)
                tmp = scratch[size : 2 * size].reshape(hi - lo, width)
                _weigh_taps(taps, part, acc, tmp)
                inter[lo:hi, span] = acc
        # pass 2: down the columns, one band of columns at a time
        scratch2d = scratch[:strip].reshape(stop - start, -1) if sliced else scratch
        for lo, hi in col_bands:
            c_mid = (lo + hi - 1) / 2.0
            first, weights = _resample.taps(a * rows + (b * c_mid + c0), h, order, work)
            first = first - low
            span = slice(lo * channels, hi * channels)
            runs = _runs(first) if sliced else None
            if runs is None:
                copies = (inter[first + k, span] for k in range(count))  # gathered copies
                part = [weight[:, None] for weight in weights]
                _weigh_taps(copies, part, out[start:stop, span])
                continue
            for r_lo, r_hi in runs:
                tap0 = int(first[r_lo])
                n = r_hi - r_lo
                taps = [inter[tap0 + k : tap0 + k + n, span] for k in range(count)]
                part = [weight[r_lo:r_hi, None] for weight in weights]
                dest = out[start + r_lo : start + r_hi, span]
                _weigh_taps(taps, part, dest, scratch2d[:n, span])


def _is_planar(out: NDArray[Any]) -> bool:
    """Whether ``out`` (rows, cols, channels) views a C-contiguous (channels, rows, cols) array."""
    return out.ndim == 3 and out.shape[2] > 1 and np.moveaxis(out, 2, 0).flags.c_contiguous


def _separable_ok(m: NDArray[np.float64], tolerance: float) -> bool:
    """Whether two 1-D passes serve affine ``m`` within ``tolerance`` pixels."""
    a, b, d = float(m[0, 0]), float(m[0, 1]), float(m[1, 0])
    if b == 0.0 and d == 0.0:
        return a != 0.0
    if tolerance <= 0.0 or abs(a) < 0.25:
        return False
    return 2.0 * abs(d / a) <= tolerance


def _wide_bands(m: NDArray[np.float64], tolerance: float) -> bool:
    """Whether the bands of :func:`_separable` are 16 pixels or wider: narrower ones
    cost it more NumPy calls than the exact 2-D warp (the banded products do not mind)."""
    a, b, d = float(m[0, 0]), float(m[0, 1]), float(m[1, 0])
    return max(abs(d / a), abs(b)) * 16.0 <= 2.0 * tolerance


def _inside(
    src_r: NDArray[np.float64], src_c: NDArray[np.float64], shape: tuple[int, int]
) -> NDArray[np.bool_]:
    """Where the source coordinates lie in ``[0, rows - 1] x [0, cols - 1]`` (False for NaN)."""
    h, w = shape
    return (
        (src_r >= -_EDGE_TOLERANCE)
        & (src_r <= h - 1 + _EDGE_TOLERANCE)
        & (src_c >= -_EDGE_TOLERANCE)
        & (src_c <= w - 1 + _EDGE_TOLERANCE)
    )


def _fill_outside(
    out: NDArray[Any], m: NDArray[np.float64], shape: tuple[int, int], fill: float
) -> None:
    """Set ``fill`` where the affine ``m`` maps output pixels outside the input, in place.

    Each output row's inside part is one interval of columns (the constraints are
    linear in the column), found per row instead of mapping every pixel.
    """
    rows = np.arange(out.shape[0], dtype=np.float64)
    lo = np.full(out.shape[0], -np.inf)
    hi = np.full(out.shape[0], np.inf)
    for axis, size in enumerate(shape):
        start = m[axis, 0] * rows + m[axis, 2]  # source coordinate at column 0
        slope = float(m[axis, 1])
        low, high = -_EDGE_TOLERANCE - start, size - 1 + _EDGE_TOLERANCE - start
        if slope == 0.0:  # all columns or none
            lo = np.where((low <= 0) & (high >= 0), lo, np.inf)
        else:
            a, b = low / slope, high / slope
            lo = np.maximum(lo, np.minimum(a, b))
            hi = np.minimum(hi, np.maximum(a, b))
    width = out.shape[1]
    cols = np.arange(width, dtype=np.float64)
    strip = max(1, _STRIP_PIXELS // width)
    for r0 in range(0, out.shape[0], strip):
        r1 = min(out.shape[0], r0 + strip)
        # columns [left, right) are inside on every row of the strip: only the bands
        # beside them are tested (a thin frame of a few pixels for a small motion)
        with np.errstate(invalid="ignore"):
            left = int(np.clip(np.ceil(lo[r0:r1].max()), 0, width))
            right = int(np.clip(np.floor(hi[r0:r1].min()) + 1, 0, width))
        if right <= left:
            left = right = width  # no common inside: test every column
        for c0, c1 in ((0, left), (right, width)):
            if c1 > c0:
                inside = (cols[c0:c1] >= lo[r0:r1, None]) & (cols[c0:c1] <= hi[r0:r1, None])
                out[r0:r1, c0:c1][~inside] = fill


def _sample_strip(
    flat: NDArray[Any],
    shape: tuple[int, int],
    src_r: NDArray[np.float64],
    src_c: NDArray[np.float64],
    order: int,
    work: np.dtype[Any],
    projective: bool,
) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """Interpolate ``flat`` (H*W, C) at the coordinates; return values (n, C) and inside mask."""
    h, w = shape
    sr = src_r.ravel()
    sc = src_c.ravel()
    inside = _inside(sr, sc, shape)
    if projective:  # NaN where undefined: sample pixel (0, 0), marked outside
        finite = np.isfinite(sr) & np.isfinite(sc)
        sr = np.where(finite, sr, 0.0)
        sc = np.where(finite, sc, 0.0)
    # 'nearest' extension: clamp to the image, so every sample is defined.
    sr = np.clip(sr, 0.0, h - 1)
    sc = np.clip(sc, 0.0, w - 1)
    if order == 0:
        idx = np.floor(sr + 0.5).astype(np.intp) * w + np.floor(sc + 0.5).astype(np.intp)
        return flat[idx].astype(work, copy=False), inside
    if order == 1:
        # ``flat`` has an extra (repeated) last row and column here, so the
        # neighbours at +1 always exist; the coordinates are >= 0, so truncation
        # is the floor.
        ri = sr.astype(np.intp)
        ci = sc.astype(np.intp)
        fr1 = (sr - ri).astype(work)
        fc1 = (sc - ci).astype(work)
        if flat.ndim == 2:
            fr1 = fr1[:, None]
            fc1 = fc1[:, None]
        stride = w + 1
        idx = ri * stride + ci
        v00 = flat[idx].astype(work, copy=False)
        v01 = flat[idx + 1].astype(work, copy=False)
        idx += stride
        v10 = flat[idx].astype(work, copy=False)
        v11 = flat[idx + 1].astype(work, copy=False)
        upper = v00 + (v01 - v00) * fc1
        lower = v10 + (v11 - v10) * fc1
        return upper + (lower - upper) * fr1, inside
    # order 3: Keys cubic convolution on a 4x4 neighbourhood. ``flat`` is here a
    # window view: row p holds the 4 pixels (all channels) from p on, of an image
    # padded by 1 before and 2 after on both axes, so row ri*(w+3)+ci starts the
    # top row of taps of (ri, ci) and no index needs clamping.
    ri = sr.astype(np.intp)
    ci = sc.astype(np.intp)
    wr = _resample.cubic_weights((sr - ri).astype(work))
    wc = np.stack(_resample.cubic_weights((sc - ci).astype(work)), axis=1)
    stride = w + 3
    base = ri * stride + ci
    channels = flat.shape[1] // 4
    # Combine the 4 rows of taps first (vertical weights), then the columns.
    column: NDArray[Any] | None = None
    for k in range(4):
        taps = flat[base + k * stride].astype(work, copy=False).reshape(-1, 4, channels)
        if column is None:
            column = taps * wr[k][:, None, None]
        else:
            column += taps * wr[k][:, None, None]
    assert column is not None
    result = np.einsum("nk,nkc->nc", wc, column)
    return result if channels > 1 else result[:, 0], inside


def warp(
    image: ArrayLike,
    matrix: ArrayLike,
    *,
    output_shape: tuple[int, int] | None = None,
    order: int = 1,
    mode: str = "nearest",
    cval: float = 0.0,
    tolerance: float = 0.0,
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
    order : {0, 1, 3}
        0 nearest neighbour, 1 bilinear (default), 3 Keys cubic convolution
        (a = -0.5; may overshoot the input range slightly).
    mode : {'nearest', 'constant'}
        Samples outside ``[0, rows - 1] x [0, cols - 1]``: 'nearest' repeats the edge
        pixels; 'constant' gives ``cval`` (NaN works, and marks the invalid area).
    cval : float
        Fill value of 'constant' mode.
    tolerance : float
        Largest error in pixels allowed in the sample positions of orders 1 and 3 on a
        slightly rotated or sheared affine matrix, in exchange for a fast separable
        path (default 0: exact). Without rotation or shear the fast path is exact
        and always taken; see Notes.
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
    also interpolates only inside the image). The output is computed in strips of
    rows, so besides the result only one edge-padded copy of the input (orders 1
    and 3) and a few megabytes of coordinates and weights are allocated. Points that a
    projective matrix maps behind its centre (``w <= 0``) count as outside.

    Orders 1 and 3 on an affine matrix without rotation or shear (scale and shift,
    the focus-breathing case) run as two 1-D passes whose weights are shared by whole
    rows and columns (several times faster, same result). With ``tolerance > 0`` a
    small rotation takes that path too: rows and columns are resampled in bands
    that share one offset (each sample moves by at most ``tolerance``), and the
    taps of the column pass lie on the rotated line through the sample (the row
    pass's positions), which moves them by ``2 |D / A|`` pixels at most
    (``D / A`` about the rotation angle); it is taken while that is <= ``tolerance``.
    Many bands (a rotation) make each pass a batch of small band-matrix products
    (:mod:`convstack._resample`), as does a planar ``out`` (a channels-last view of a
    C-contiguous (channels, rows, cols) array, which is written plane by plane); images
    holding NaN or infinity keep the sliced passes, where such a value reaches only the
    samples whose taps include it, while bands stay 16 pixels or wider, and the exact
    2-D warp beyond.

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
        raise v.fail("order", "be 0, 1 or 3", order)
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
    limit = v.positive_float(tolerance, "tolerance", allow_zero=True)
    work = np.dtype(np.float64) if array.dtype == np.float64 else np.dtype(np.float32)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    h, w = int(array.shape[0]), int(array.shape[1])
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
    projective = bool(m[2, 0] != 0.0 or m[2, 1] != 0.0 or m[2, 2] != 1.0)
    if order != 0 and not projective and _separable_ok(m, limit):
        grid = array if array.ndim == 3 else array[:, :, None]
        planar = _is_planar(result)
        planes = np.moveaxis(result, 2, 0)
        wide = _wide_bands(m, limit)
        banded = planar or not wide or not _sliceable(m, (out_rows, out_cols), channels, limit)
        # the band matrices' zeros would spread a NaN or an infinity over whole blocks
        banded = banded and (array.dtype.kind in "ui" or bool(np.isfinite(array).all()))
        if banded or wide:  # (narrow bands over NaN: the exact 2-D warp below)
            if banded:
                target = planes if planes.flags.c_contiguous else np.empty(planes.shape, work)
                _resample.banded_warp(grid, m, target, order, limit)
                if target is not planes:  # interleaved colour: through a planar copy
                    planes[...] = target
            elif planar:  # NaN or infinity in a colour image: interleaved, then copied
                interleaved = np.empty((out_rows, out_cols, channels), work)
                _separable(grid, m, (out_rows, out_cols), order, work, limit, interleaved)
                result[...] = interleaved
            else:
                _separable(grid, m, (out_rows, out_cols), order, work, limit, result)
            if mode == "constant":
                _fill_outside(result, m, grid.shape[:2], fill)
            return out if out is not None else result[:, :, 0] if array.ndim == 2 else result
    if order == 1:  # repeat the last row and column once (see _sample_strip)
        grid = array if array.ndim == 3 else array[:, :, None]
        flat = np.pad(grid, ((0, 1), (0, 1), (0, 0)), mode="edge").reshape(-1, channels)
    elif order == 3:  # window view of a padded copy (see _sample_strip)
        grid = array if array.ndim == 3 else array[:, :, None]
        padded = np.pad(grid, ((1, 2), (1, 2), (0, 0)), mode="edge").reshape(-1)
        size = padded.itemsize
        flat = as_strided(
            padded,
            shape=(padded.size // channels - 3, 4 * channels),
            strides=(channels * size, size),
            writeable=False,
        )
    else:
        flat = np.ascontiguousarray(array).reshape(h * w, channels)
    if channels == 1 and order != 3:
        flat = flat[:, 0]
    strip = max(1, _STRIP_PIXELS // out_cols)
    cols = np.arange(out_cols, dtype=np.float64)
    for start in range(0, out_rows, strip):
        stop = min(out_rows, start + strip)
        rows = np.arange(start, stop, dtype=np.float64)
        src_r, src_c = _source_coords(m, rows, cols)
        values, inside = _sample_strip(flat, (h, w), src_r, src_c, order, work, projective)
        if mode == "constant":
            values[~inside] = fill
        result[start:stop] = values.reshape(stop - start, out_cols, channels)
    return out if out is not None else result[:, :, 0] if array.ndim == 2 else result
