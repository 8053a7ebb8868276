"""Stage 2 of focus stacking: register one frame to another.

:func:`estimate_transform` finds the 3x3 matrix that maps reference pixel
coordinates ``(row, col, 1)`` to moving-frame coordinates, so that
``convstack.warp.warp(moving, matrix)`` lies on the reference grid.
:func:`register_checked` does the same on pyramids built once per frame
(:func:`gray_pyramid`) and decides whether to trust the estimate; the stack's
one chaining path (each frame to its neighbour, composed to the reference) is
:class:`convstack.stack._registrar.Registrar`.

Method
------
Inverse-compositional Gauss-Newton (Baker & Matthews 2004) on a Gaussian
pyramid, coarse to fine, with the error normalised as in the enhanced
correlation coefficient (ECC, Evangelidis & Psarakis 2008): at every iteration
the warped frame is brought to the reference's mean and standard deviation over
the overlap, so brightness and contrast changes between frames do not bias the
result. Every level is smoothed with a binomial filter (sigma one level pixel),
which widens the basin of convergence; pixels whose smoothing or gradient
reached past the image edge are left out. Frames focused at different depths
differ in blur; a symmetric blur leaves a translation unbiased, but a blurred
feature looks larger, which biases scale and perspective. So before the finest
level the sharper frame is smoothed to the other's blur, with a Gaussian whose
sigma a 1-D search picks (blur matching; on rendered frames with a blur
difference of sigma 2 it cuts the homography corner error from about 0.05 px to
0.01 px). The coarsest level starts from the better of the identity and a
phase-correlation translation. Iterations stop when the update moves no image
corner by more than ``tolerance`` level pixels; a step that lowers the
correlation is halved. Parameters are expressed in centred coordinates
normalised by half the image's larger side, which keeps the normal equations
well conditioned and makes them the same at every level.

By default the finest level used is the first with at most half a million pixels
(:func:`work_level`): on blurred, noisy frames finer levels add work (four times a
level) but hardly any accuracy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _validate as v
from ..color import BT601_F32
from ..convolve import correlate
from ..warp import as_matrix, warp
from .errors import AlignmentError
from .fusion import decimate
from .sharpness import to_gray

__all__ = [
    "MODELS",
    "WORK_PIXELS",
    "Pyramid",
    "estimate_gain",
    "estimate_transform",
    "gray_pyramid",
    "jumps_beyond",
    "register_checked",
    "to_gray",
    "work_level",
]

#: Motion models, from the fewest parameters to the most.
MODELS = ("none", "translation", "similarity", "affine", "homography")
_N_PARAMS = {"none": 0, "translation": 2, "similarity": 4, "affine": 6, "homography": 8}

#: ITU-R BT.601 luma weights for R, G, B.
_LUMA = BT601_F32
#: Binomial smoothing (sigma = 1) used both as the pyramid's anti-alias filter and
#: as the pre-smoothing of each level.
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0
_DIFF = np.array([-0.5, 0.0, 0.5], dtype=np.float32)
#: The coarsest automatic level keeps at least this many pixels on its shorter side.
_MIN_COARSE_SIDE = 32
#: Automatic finest level: the first level with at most this many pixels (about half a
#: megapixel is plenty for sub-pixel accuracy; see :func:`work_level`).
WORK_PIXELS = 500_000
#: The overlap of the warped frame and the reference must keep this fraction of pixels.
_MIN_OVERLAP = 0.2
#: Pixels at the edge of a level (its smoothing and gradient saw the border rule).
_EDGE_BAND = 3
#: A step is halved only when it lowers the correlation by more than this: near the
#: optimum the correlation is flat and changes of the overlap move it slightly.
_CC_SLACK = 5e-4
#: Tolerance (level pixels) of the levels coarser than the finest one.
_COARSE_TOLERANCE = 0.05


def _checked_gray(image: ArrayLike, name: str) -> NDArray[np.float32]:
    """:func:`to_gray` of a frame to register, which must be finite everywhere."""
    gray = to_gray(image, name)
    if not np.all(np.isfinite(gray)):
        raise v.fail(name, "contain only finite values", image)
    return gray


def _smooth(image: NDArray[np.float32]) -> NDArray[np.float32]:
    """Separable binomial [1 4 6 4 1]/16 smoothing with edge repetition."""
    out = image
    if image.shape[0] > 1:
        out = correlate(out, _BINOMIAL[:, None], mode="nearest")
    if image.shape[1] > 1:
        out = correlate(out, _BINOMIAL[None, :], mode="nearest")
    return np.asarray(out, dtype=np.float32)


def _gaussian(image: NDArray[np.float32], sigma: float) -> NDArray[np.float32]:
    """Separable Gaussian smoothing (truncated at 3 sigma) with edge repetition."""
    radius = max(1, int(np.ceil(3.0 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    out = correlate(image, kernel[:, None], mode="nearest")
    return np.asarray(correlate(out, kernel[None, :], mode="nearest"), dtype=np.float32)


#: Relative blurs tried by the blur matching, in level pixels: > 0 blurs the
#: reference, < 0 the moving frame.
_BLUR_GRID = (-4.0, -2.5, -1.5, -0.75, 0.0, 0.75, 1.5, 2.5, 4.0)
#: The blur matching looks at a central crop of at most this many pixels per side.
#: Frames focused at different depths can differ in blur one way at the centre and
#: the other way further out; a wider crop weighs more of the frame (on 480 x 640
#: breathing stacks, 384 instead of 256 cut the chained scale error by a third and
#: the Gauss-Newton steps that follow by as much time as the search gained).
_BLUR_CROP = 384


def _nan_border(image: NDArray[np.float32], band: int) -> NDArray[np.float32]:
    """Copy with a NaN frame of ``band`` pixels: samples the edge smoothing made up are invalid."""
    h, w = image.shape
    band = min(band, min(h, w) // 8)
    out = image.copy()
    if band > 0:
        out[:band] = np.nan
        out[h - band :] = np.nan
        out[:, :band] = np.nan
        out[:, w - band :] = np.nan
    return out


def _pearson(a: NDArray[np.float32], b: NDArray[np.float32], weight: NDArray[np.float32]) -> float:
    """Correlation coefficient of ``a`` and ``b`` over the pixels where ``weight`` is 1."""
    count = float(weight.sum())
    ac = (a - np.float32(np.vdot(a, weight) / count)) * weight
    bc = (b - np.float32(np.vdot(b, weight) / count)) * weight
    denom = float(np.sqrt(float(np.vdot(ac, ac)) * float(np.vdot(bc, bc))))
    return float(np.vdot(ac, bc)) / denom if denom > 0 else -1.0


def _match_blur(
    template: NDArray[np.float32],
    usable: NDArray[np.bool_],
    moving: NDArray[np.float32],
    pixel_matrix: NDArray[np.float64],
) -> float:
    """Relative blur (level pixels; > 0: the reference is sharper) that best equalises the frames.

    Frames focused at different depths differ in blur, and a blurred feature looks
    larger: left alone, that biases the scale of the registration. Smoothing the
    sharper frame to the other's blur removes the bias. The search runs on a
    central crop of the current registration.
    """
    h, w = template.shape
    r0 = max(0, (h - _BLUR_CROP) // 2)
    c0 = max(0, (w - _BLUR_CROP) // 2)
    crop = (slice(r0, r0 + _BLUR_CROP), slice(c0, c0 + _BLUR_CROP))
    t = np.ascontiguousarray(template[crop])
    # only the crop is warped: output (r, c) of the crop is (r0 + r, c0 + c) of the level
    offset = np.array([[1.0, 0.0, r0], [0.0, 1.0, c0], [0.0, 0.0, 1.0]])
    warped = warp(
        moving,
        pixel_matrix @ offset,
        output_shape=t.shape,
        mode="constant",
        cval=np.nan,
    )
    valid = usable[crop] & np.isfinite(warped)
    m = np.where(valid, warped, t)
    ok = valid.astype(np.float32)
    if float(ok.sum()) < 64:
        return 0.0

    def score(delta: float) -> float:
        if delta > 0:
            return _pearson(_gaussian(t, delta), m, ok)
        if delta < 0:
            return _pearson(t, _gaussian(m, -delta), ok)
        return _pearson(t, m, ok)

    # climb from no blur to the best grid point: neighbouring frames differ little in
    # blur, so the large (costly) blurs are rarely tried; the same point as a full
    # scan of the grid whenever the scores have a single peak
    scores: dict[int, float] = {}
    best = _BLUR_GRID.index(0.0)
    while True:
        for k in (best - 1, best, best + 1):
            if 0 <= k < len(_BLUR_GRID) and k not in scores:
                scores[k] = score(_BLUR_GRID[k])
        step = max((best - 1, best, best + 1), key=lambda k: scores.get(k, -np.inf))
        if step == best:
            break
        best = step
    if 0 < best < len(_BLUR_GRID) - 1:
        # Parabola through the best grid point and its neighbours (uneven spacing).
        x0, x1, x2 = _BLUR_GRID[best - 1 : best + 2]
        y0, y1, y2 = scores[best - 1], scores[best], scores[best + 1]
        denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
        a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
        b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / denom
        if a < 0:
            return float(np.clip(-b / (2 * a), x0, x2))
    return float(_BLUR_GRID[best])


def _model_matrix(model: str, p: NDArray[np.float64]) -> NDArray[np.float64]:
    """The warp D(p) in normalised (y, x) coordinates; D(0) is the identity."""
    d = np.eye(3)
    if model == "translation":
        d[0, 2], d[1, 2] = p
    elif model == "similarity":
        d[0, 0] = d[1, 1] = 1.0 + p[0]
        d[0, 1], d[1, 0] = p[1], -p[1]
        d[0, 2], d[1, 2] = p[2], p[3]
    elif model == "affine":
        d[:2, :] += p.reshape(2, 3)
    elif model == "homography":
        d.ravel()[:8] += p
    return d


def _steepest_descent(
    model: str, gy: NDArray[np.float32], gx: NDArray[np.float32], y: Any, x: Any
) -> NDArray[np.float32]:
    """Rows ``grad T . dW/dp_k`` at p = 0, one per parameter, each flattened.

    Each row is written straight into the result (no stacked copy of the rows).
    """
    count = {"translation": 2, "similarity": 4, "affine": 6}.get(model, 8)
    out = np.empty((count, *gy.shape), dtype=np.float32)
    if model == "translation":
        out[0], out[1] = gy, gx
    elif model == "similarity":
        np.multiply(gy, y, out=out[0])
        out[0] += gx * x
        np.multiply(gy, x, out=out[1])
        out[1] -= gx * y
        out[2], out[3] = gy, gx
    else:  # affine, and the homography's first six
        np.multiply(gy, y, out=out[0])
        np.multiply(gy, x, out=out[1])
        out[2] = gy
        np.multiply(gx, y, out=out[3])
        np.multiply(gx, x, out=out[4])
        out[5] = gx
        if model == "homography":
            radial = gy * y + gx * x
            np.multiply(radial, -y, out=out[6])
            np.multiply(radial, -x, out=out[7])
    return out.reshape(count, -1)


def _halved(image: NDArray[np.float32]) -> NDArray[np.float32]:
    """``decimate(decimate(image, 0, "edge"), 1, "edge")``: the 5-tap binomial blur kept
    at even rows and columns, edges repeated; float32 in one compiled pass
    (:func:`convstack._k_pyramid.reduce_rows`: the same numbers, about 4x faster)."""
    if image.dtype != np.float32 or image.ndim != 2:
        return decimate(decimate(image, 0, "edge"), 1, "edge")
    from .. import _k_pyramid

    rows, cols = image.shape
    out = np.empty((1, (rows + 1) // 2, (cols + 1) // 2), np.float32)
    _k_pyramid.reduce_rows(np.ascontiguousarray(image)[None], out, 0, out.shape[1], True)
    return out[0]


class Pyramid:
    """Gray, smoothed pyramid of one frame plus its cached template data."""

    def __init__(self, gray: NDArray[np.float32], levels: int, finest: int) -> None:
        self.shape = gray.shape
        self.finest = finest
        self.levels: list[NDArray[np.float32] | None] = [None] * levels
        current = gray
        for k in range(levels):
            if k < finest:  # only its decimation is needed: compute just that
                current = _halved(current)
                continue
            smooth = _smooth(current)
            self.levels[k] = smooth
            if k + 1 < levels:
                current = np.ascontiguousarray(smooth[::2, ::2])
        self._templates: dict[tuple[int, str], tuple[Any, ...]] = {}

    def release_templates(self) -> None:
        """Drop the cached gradients and steepest-descent images."""
        self._templates.clear()

    def template(
        self,
        level: int,
        model: str,
        mask: NDArray[np.bool_] | None,
        scale: float,
        blur: float = 0.0,
        gradients: bool = True,
    ) -> tuple[Any, ...]:
        """(image, steepest-descent rows, full Hessian, usable-pixel mask) at ``level``.

        ``blur`` > 0 smooths the level further (Gaussian sigma in level pixels) first.
        ``gradients=False`` leaves out the steepest-descent rows and the Hessian (None),
        for a look at the image that may be followed by a blurred template.
        """
        key = (level, model)
        cacheable = mask is None and blur == 0.0
        if cacheable and key in self._templates:
            return self._templates[key]
        image = self.levels[level]
        assert image is not None
        if blur > 0:
            image = _gaussian(image, blur)
        h, w = image.shape
        usable = np.zeros((h, w), dtype=bool)
        # Pixels whose smoothing or gradient reached past the edge are left out.
        border = min(_EDGE_BAND + int(np.ceil(3.0 * blur)), min(h, w) // 8)
        usable[border : h - border or None, border : w - border or None] = True
        f = float(2**level)
        if mask is not None:
            usable &= mask[:: int(f), :: int(f)][:h, :w]
        if not gradients:
            return image, None, None, usable
        gy = correlate(image, _DIFF[:, None], mode="nearest") * np.float32(1.0 / (scale * f))
        gx = correlate(image, _DIFF[None, :], mode="nearest") * np.float32(1.0 / (scale * f))
        cy, cx = (self.shape[0] - 1) / 2.0, (self.shape[1] - 1) / 2.0
        y = ((np.arange(h) * f - cy) * scale).astype(np.float32)[:, None]
        x = ((np.arange(w) * f - cx) * scale).astype(np.float32)[None, :]
        sd = _steepest_descent(model, gy, gx, y, x)
        sd *= usable.ravel()[None, :]
        # float32 products are enough: the Hessian sets the step, not the fixed point.
        hessian = (sd @ sd.T).astype(np.float64) if sd.shape[0] else None
        data = (image, sd, hessian, usable)
        if cacheable:
            self._templates[key] = data
        return data


def _auto_levels(shape: tuple[int, ...]) -> int:
    levels = 1
    while min(shape[0], shape[1]) / 2**levels >= _MIN_COARSE_SIDE:
        levels += 1
    return levels


def work_level(shape: tuple[int, ...]) -> int:
    """The finest pyramid level registered by default: the first with at most
    ``WORK_PIXELS`` pixels (0, full resolution, for frames that small).

    Finer levels make the transform hardly more accurate (the frames' blur and noise
    bound it), and each one costs four times the work of the level above.
    """
    pixels = float(shape[0]) * float(shape[1])
    return max(0, math.ceil(math.log(pixels / WORK_PIXELS, 4))) if pixels > WORK_PIXELS else 0


def _auto_finest(shape: tuple[int, ...], levels: int) -> int:
    return min(work_level(shape), levels - 1)


def _normaliser(shape: tuple[int, ...]) -> tuple[NDArray[np.float64], float]:
    """Q: full-resolution pixel (row, col) -> centred coordinates scaled by half the larger side."""
    scale = 2.0 / max(shape[0], shape[1])
    q = np.array(
        [
            [scale, 0.0, -scale * (shape[0] - 1) / 2.0],
            [0.0, scale, -scale * (shape[1] - 1) / 2.0],
            [0.0, 0.0, 1.0],
        ]
    )
    return q, scale


def _level_matrix(q: NDArray[np.float64], level: int) -> NDArray[np.float64]:
    """Level pixel -> normalised coordinates (level pixel * 2**level = full-resolution pixel)."""
    f = float(2**level)
    return q @ np.diag([f, f, 1.0])


#: Gauss-Newton steps in a row without a better correlation that end a level.
_STALE_STEPS = 4


class _Diverged(Exception):
    pass


def _evaluate(
    template: NDArray[np.float32],
    usable: NDArray[np.bool_],
    moving: NDArray[np.float32],
    pixel_matrix: NDArray[np.float64],
) -> tuple[float, NDArray[np.float32], NDArray[np.bool_]]:
    """Correlation coefficient, normalised error image and valid mask of one warp."""
    warped = warp(moving, pixel_matrix, mode="constant", cval=np.nan)
    valid = usable & np.isfinite(warped)
    count = int(np.count_nonzero(valid))
    if count < _MIN_OVERLAP * max(1, int(np.count_nonzero(usable))) or count < 8:
        raise _Diverged("the overlap with the reference became too small")
    w = np.where(valid, warped, np.float32(0.0))
    t = np.where(valid, template, np.float32(0.0))
    mean_w = float(w.sum(dtype=np.float64)) / count
    mean_t = float(t.sum(dtype=np.float64)) / count
    wc = np.where(valid, w - np.float32(mean_w), np.float32(0.0))
    tc = np.where(valid, t - np.float32(mean_t), np.float32(0.0))
    var_w = float(np.vdot(wc, wc))
    var_t = float(np.vdot(tc, tc))
    if var_w <= 0.0 or var_t <= 0.0:
        raise _Diverged("the overlap has no texture (constant intensity)")
    cc = float(np.vdot(wc, tc)) / np.sqrt(var_w * var_t)
    error = wc * np.float32(np.sqrt(var_t / var_w)) - tc
    return cc, error, valid


def _phase_translation(template: NDArray[np.float32], moving: NDArray[np.float32]) -> NDArray[Any]:
    """Shift d (level pixels, (row, col)) with moving(p + d) ~ template(p), by phase correlation."""
    h, w = template.shape
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    fft = np.fft  # small arrays (the coarsest level): NumPy's is enough, no SciPy import
    a = fft.rfft2((template - template.mean()) * window)
    b = fft.rfft2((moving - moving.mean()) * window)
    cross = b * np.conj(a)
    magnitude = np.abs(cross)
    cross /= np.maximum(magnitude, 1e-9 * float(magnitude.max()) or 1.0)
    surface = fft.irfft2(cross, s=(h, w))
    peak = np.unravel_index(int(np.argmax(surface)), surface.shape)
    shift = []
    for axis, (index, n) in enumerate(zip(peak, (h, w), strict=True)):
        before = list(peak)
        after = list(peak)
        before[axis] = (index - 1) % n
        after[axis] = (index + 1) % n
        lo, mid, hi = surface[tuple(before)], surface[peak], surface[tuple(after)]
        denom = lo - 2 * mid + hi
        sub = 0.5 * (lo - hi) / denom if denom < 0 else 0.0
        signed = index if index <= n // 2 else index - n
        shift.append(signed + float(np.clip(sub, -0.5, 0.5)))
    return np.array(shift)


def _check_sane(a: NDArray[np.float64], corners: NDArray[np.float64], limit: float) -> None:
    if not np.all(np.isfinite(a)):
        raise _Diverged("the transform has non-finite entries")
    det = float(np.linalg.det(a[:2, :2]))
    if not 0.25 < det < 4.0:
        raise _Diverged(f"the transform's scale factor exploded (area ratio {det:.3g})")
    homog = corners @ a.T
    if np.any(homog[:, 2] <= 0):
        raise _Diverged("the transform folds the image (projective horizon crossed)")
    moved = homog[:, :2] / homog[:, 2:]
    if float(np.abs(moved - corners[:, :2]).max()) > limit:
        raise _Diverged("the transform moves the image corners by more than half its size")


def _register(
    template: Pyramid,
    moving: Pyramid,
    model: str,
    start: NDArray[np.float64] | None,
    *,
    coarsest: int,
    finest: int,
    iterations: int,
    tolerance: float,
    mask: NDArray[np.bool_] | None,
    match_blur: bool = True,
    info: dict[str, float] | None = None,
) -> tuple[NDArray[np.float64], float]:
    """Coarse-to-fine inverse-compositional Gauss-Newton; returns (A normalised, correlation).

    ``info``, if given, receives ``identity``: the correlation of the identity on the
    finest level's (blur-matched) images, the baseline a transform must beat.
    """
    q, scale = _normaliser(template.shape)
    a = np.eye(3) if start is None else q @ start @ np.linalg.inv(q)
    h, w = template.shape[:2]
    # Corners of the image in normalised coordinates, for the step size and sanity checks.
    corners_px = np.array([[0, 0, 1], [0, w - 1, 1], [h - 1, 0, 1], [h - 1, w - 1, 1]], float)
    corners = corners_px @ q.T
    limit = 0.5 * np.hypot(h, w) * scale
    cc = float("nan")
    for level in range(coarsest, finest - 1, -1):
        blur_check = match_blur and level == finest  # its template may come blurred
        image, sd, hessian_full, usable = template.template(
            level, model, mask, scale, gradients=not blur_check
        )
        mov = moving.levels[level]
        assert mov is not None
        lq = _level_matrix(q, level)
        lq_inv = np.linalg.inv(lq)
        px_per_unit = 1.0 / (scale * 2**level)
        tol = tolerance if level == finest else max(tolerance, _COARSE_TOLERANCE)
        if level == coarsest and (float(np.ptp(image)) == 0.0 or float(np.ptp(mov)) == 0.0):
            raise _Diverged("a frame has no texture (constant intensity)")
        if level == coarsest and start is None:
            shift = _phase_translation(image, mov)
            shifted = np.eye(3)
            shifted[:2, 2] = shift / px_per_unit
            try:
                cc_id = _evaluate(image, usable, mov, lq_inv @ a @ lq)[0]
                cc_pc = _evaluate(image, usable, mov, lq_inv @ shifted @ lq)[0]
                if cc_pc > cc_id:
                    a = shifted
            except _Diverged:
                a = shifted
        blur = 0.0
        if blur_check:
            blur = _match_blur(image, usable, mov, lq_inv @ a @ lq)
            if blur < -0.05:
                mov = _gaussian(mov, -blur)
            image, sd, hessian_full, usable = template.template(
                level, model, mask, scale, blur=blur if blur > 0.05 else 0.0
            )
        mov = _nan_border(mov, _EDGE_BAND + int(np.ceil(3.0 * max(0.0, -blur))))
        if info is not None and level == finest:
            try:
                info["identity"] = _evaluate(image, usable, mov, np.eye(3))[0]
            except _Diverged:
                info["identity"] = -1.0
        cc, error, valid = _evaluate(image, usable, mov, lq_inv @ a @ lq)
        flat_valid = valid.ravel()
        best_cc, best_a, stale = cc, a, 0
        for _ in range(iterations):
            b = sd @ error.ravel()
            missing = np.flatnonzero(usable.ravel() & ~flat_valid)
            hessian = hessian_full
            if missing.size:
                part = sd[:, missing].astype(np.float64)
                hessian = hessian_full - part @ part.T
            try:
                dp = np.linalg.solve(hessian, b.astype(np.float64))
            except np.linalg.LinAlgError as exc:
                raise _Diverged("the normal equations became singular") from exc
            if not np.all(np.isfinite(dp)):
                raise _Diverged("the update became non-finite")
            d = _model_matrix(model, dp)
            homog = corners @ d.T
            if (
                float(np.abs(homog[:, :2] / homog[:, 2:] - corners[:, :2]).max()) * px_per_unit
                < tol
            ):
                a = a @ np.linalg.inv(d)  # converged: a step this small needs no check
                break
            step = 1.0
            while True:
                d = _model_matrix(model, step * dp)
                candidate = a @ np.linalg.inv(d)
                try:
                    _check_sane(candidate, corners, limit)
                    new = _evaluate(image, usable, mov, lq_inv @ candidate @ lq)
                except _Diverged:
                    if step < 0.1:
                        raise
                    step *= 0.5
                    continue
                if new[0] >= cc - _CC_SLACK or step < 0.1:
                    break
                step *= 0.5
            a = candidate
            cc, error, valid = new
            flat_valid = valid.ravel()
            homog = corners @ d.T
            moved = homog[:, :2] / homog[:, 2:] - corners[:, :2]
            if float(np.abs(moved).max()) * px_per_unit < tol:
                break
            # Steps that the slack accepts without improving can bounce between two
            # nearby states (pixels entering and leaving the valid area change the
            # normal equations): after _STALE_STEPS of them, keep the best state.
            if cc > best_cc:
                best_cc, best_a, stale = cc, a, 0
            else:
                stale += 1
                if stale >= _STALE_STEPS:
                    a, cc = best_a, best_cc
                    break
    return a, cc


def _check_model(model: Any) -> str:
    return v.choice(model, "model", MODELS)


def _resolve_levels(
    shape: tuple[int, ...], levels: int | None, finest_level: int | None
) -> tuple[int, int]:
    possible = 1
    while min(shape[0], shape[1]) / 2**possible >= 8:
        possible += 1
    if levels is None:
        n_levels = _auto_levels(shape)
    else:
        if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
            raise v.fail("levels", "be an int >= 1 or None", levels)
        n_levels = min(int(levels), possible)
    if finest_level is None:
        finest = _auto_finest(shape, n_levels)
    else:
        if (
            isinstance(finest_level, bool)
            or not isinstance(finest_level, (int, np.integer))
            or finest_level < 0
        ):
            raise v.fail("finest_level", "be an int >= 0 or None", finest_level)
        finest = min(int(finest_level), n_levels - 1)
    return n_levels, finest


def _check_options(
    iterations: Any, tolerance: Any, min_correlation: Any
) -> tuple[int, float, float]:
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)):
        raise v.fail("iterations", "be an int >= 1", iterations, kind=TypeError)
    if iterations < 1:
        raise v.fail("iterations", "be an int >= 1", iterations)
    tol = v.positive_float(tolerance, "tolerance")
    floor = v.real_number(min_correlation, "min_correlation")
    if not -1.0 <= floor <= 1.0:
        raise v.fail("min_correlation", "lie in [-1, 1]", min_correlation)
    return int(iterations), tol, floor


def _label(name: str | None) -> str:
    return "the moving frame" if name is None else f"frame {name!r}"


def _finish(
    a: NDArray[np.float64], cc: float, shape: tuple[int, ...], floor: float, name: str | None
) -> NDArray[np.float64]:
    if not cc >= floor:
        raise AlignmentError(
            f"alignment of {_label(name)} failed: correlation with the reference is "
            f"{cc:.3f} after registration (below {floor}); the frames may not overlap."
        )
    q, _ = _normaliser(shape)
    m = np.linalg.inv(q) @ a @ q
    return np.asarray(m / m[2, 2], dtype=np.float64)


def estimate_transform(
    reference: ArrayLike,
    moving: ArrayLike,
    *,
    model: str = "similarity",
    levels: int | None = None,
    finest_level: int | None = None,
    iterations: int = 50,
    tolerance: float = 0.005,
    initial: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    min_correlation: float = 0.2,
    match_blur: bool = True,
    name: str | None = None,
) -> NDArray[np.float64]:
    """Estimate the transform that maps reference pixel coordinates to ``moving``'s.

    Parameters
    ----------
    reference, moving : array_like, shape (rows, cols) or (rows, cols, channels)
        Frames of the same size; colour is reduced to BT.601 luma. Not modified.
    model : {'similarity', 'none', 'translation', 'affine', 'homography'}
        Motion model. 'similarity' (scale, rotation, shift) covers focus
        breathing; 'none' returns the identity.
    levels : int, optional
        Pyramid levels; default: halve until the shorter side would drop below 32.
    finest_level : int, optional
        Finest level refined (0 = full resolution); default: the first level with
        at most half a million pixels (:func:`work_level`).
    iterations : int
        Most Gauss-Newton iterations per level.
    tolerance : float
        Stop a level's iterations when an update moves no image corner by more than
        this many pixels of the finest level used (coarser levels use 0.05).
    initial : array_like (3, 3), optional
        Starting transform (reference -> moving, full-resolution pixels). Default:
        the identity or a phase-correlation translation, whichever correlates better.
    mask : array_like of bool, shape (rows, cols), optional
        Reference pixels to use (True); default all.
    min_correlation : float
        Smallest acceptable correlation coefficient of the smoothed frames after
        registration; below it the registration is reported as failed.
    match_blur : bool
        Before the finest level, smooth the sharper frame to the blur of the other
        (a Gaussian whose sigma is found by a 1-D search on a central crop). Frames
        focused at different depths otherwise bias scale and perspective slightly.
    name : str, optional
        Name of the moving frame in error messages.

    Returns
    -------
    ndarray, shape (3, 3), float64
        ``m`` with ``m @ (row, col, 1)`` = moving coordinates (divide by the third
        component); ``convstack.warp.warp(moving, m)`` is aligned to ``reference``.
        ``m[2, 2] == 1``.

    Raises
    ------
    AlignmentError
        The registration diverged (non-finite or exploding parameters, overlap
        below 20 %) or ended with a correlation below ``min_correlation``.
    ValueError, TypeError
        Bad arguments.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> texture = _smooth(_smooth(rng.random((96, 128)).astype(np.float32)))
    >>> m = estimate_transform(texture[4:, 4:], texture[2:-2, 1:-3], model="translation")
    >>> np.round(m[:2, 2], 2).tolist()  # reference (r, c) is moving (r + 2, c + 3)
    [2.0, 3.0]
    """
    model = _check_model(model)
    ref = _checked_gray(reference, "reference")
    mov = _checked_gray(moving, "moving")
    if ref.shape != mov.shape:
        raise ValueError(
            f"`moving` must have the size of `reference` ({ref.shape[0]} x {ref.shape[1]}); "
            f"got {mov.shape[0]} x {mov.shape[1]}."
        )
    n_iter, tol, floor = _check_options(iterations, tolerance, min_correlation)
    n_levels, finest = _resolve_levels(ref.shape, levels, finest_level)
    start = None if initial is None else as_matrix(initial, "initial")
    if start is not None:
        start = start / start[2, 2] if start[2, 2] != 0 else start
    mask_arr = None
    if mask is not None:
        mask_arr = np.asarray(mask)
        if mask_arr.shape != ref.shape or mask_arr.dtype != np.bool_:
            raise v.fail("mask", f"be a bool array of shape {ref.shape}", mask_arr)
        if not mask_arr.any():
            raise v.fail("mask", "select at least one pixel", mask_arr)
    if model == "none":
        return np.eye(3)
    return _register_pyramids(
        Pyramid(ref, n_levels, finest),
        Pyramid(mov, n_levels, finest),
        model=model,
        name=name,
        start=start,
        iterations=n_iter,
        tolerance=tol,
        min_correlation=floor,
        mask=mask_arr,
        match_blur=bool(match_blur),
    )


def gray_pyramid(gray: NDArray[np.float32]) -> Pyramid:
    """The smoothed pyramid that registration works on, for reuse across pairs.

    ``gray`` must be a finite float32 luma; a stack registered frame by frame builds
    each frame's pyramid once with this (finest level :func:`work_level`) and passes
    it to :func:`register_checked` as the moving frame, then as the next frame's
    reference.
    """
    n_levels, finest = _resolve_levels(gray.shape, None, None)
    return Pyramid(gray, n_levels, finest)


def _register_pyramids(
    reference: Pyramid,
    moving: Pyramid,
    *,
    model: str,
    name: str | None = None,
    start: NDArray[np.float64] | None = None,
    iterations: int = 50,
    tolerance: float = 0.005,
    min_correlation: float = 0.2,
    mask: NDArray[np.bool_] | None = None,
    match_blur: bool = True,
) -> NDArray[np.float64]:
    """:func:`estimate_transform` on pyramids from :func:`gray_pyramid` (options checked)."""
    try:
        a, cc = _register(
            reference,
            moving,
            model,
            start,
            coarsest=len(reference.levels) - 1,
            finest=reference.finest,
            iterations=iterations,
            tolerance=tolerance,
            mask=mask,
            match_blur=match_blur,
        )
    except _Diverged as exc:
        raise AlignmentError(f"alignment of {_label(name)} diverged: {exc}.") from None
    return _finish(a, cc, reference.shape, min_correlation, name)


#: A transform is applied only when it removes at least this fraction of the identity's
#: residual (1 - correlation, on the blur-matched finest level): with no motion, a
#: defocus difference read as motion removes next to nothing (within about 2 %), while
#: a third of a pixel of shift or 0.1 % of breathing already removes several percent.
_SIGNIFICANT = 0.05
#: A step whose scale differs from the one predicted (the previous step the same way:
#: breathing changes smoothly) by more than this (in log scale), or whose rotation
#: differs by more than _MAX_ROTATION_JUMP degrees, is implausible. The PCB depthmap
#: stack breathes by 1.4-5 % a frame, its steps differing by at most 0.018.
_MAX_SCALE_JUMP = 0.022
_MAX_ROTATION_JUMP = 1.5
#: With no step to predict from (the first frame after the reference), the step itself
#: is judged, with these wider limits.
_MAX_SCALE_UNPREDICTED = 0.05
_MAX_ROTATION_UNPREDICTED = 3.0
#: A shift between neighbours beyond this fraction of the larger side is implausible.
_MAX_SHIFT_STEP = 0.1
#: A residual over _OUTLIER_FACTOR times the typical one (and over _OUTLIER_FLOOR) is an
#: outlier: another scene can still correlate at ~0.5 with rendered frames.
_OUTLIER_FACTOR = 10.0
_OUTLIER_FLOOR = 0.05
#: Below this correlation after registration, a model's estimate is not accepted.
_MIN_TRUSTED_CORRELATION = 0.5


def _scale_rotation(m: NDArray[np.float64]) -> tuple[float, float]:
    """Linear scale (sqrt of the area ratio) and rotation (degrees) of a pixel matrix."""
    scale = float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))
    angle = np.degrees(np.arctan2(m[0, 1] - m[1, 0], m[0, 0] + m[1, 1]))
    return scale, float(angle)


def jumps_beyond(step: NDArray[np.float64] | None, than: NDArray[np.float64]) -> bool:
    """Whether the registration ``step`` (a pixel matrix, None where it failed) scales
    or rotates by more than ``than`` does, beyond the limits of a jump between
    neighbours (2.2 % in log scale, 1.5 degrees); a failed one counts as a jump.

    Examples
    --------
    >>> zoom = np.diag([1.03, 1.03, 1.0])
    >>> jumps_beyond(zoom, np.eye(3)), jumps_beyond(np.eye(3), zoom), jumps_beyond(None, zoom)
    (True, False, True)
    """
    if step is None:
        return True
    scale, angle = _scale_rotation(step)
    base_scale, base_angle = _scale_rotation(than)
    if abs(np.log(scale)) > abs(np.log(base_scale)) + _MAX_SCALE_JUMP:
        return True
    return abs(angle) > abs(base_angle) + _MAX_ROTATION_JUMP


def register_checked(
    reference: Pyramid,
    moving: Pyramid,
    *,
    model: str,
    min_correlation: float = 0.2,
    typical_residual: float | None = None,
    predicted: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.float64] | None, dict[str, Any]]:
    """Register ``moving`` to ``reference`` and decide whether to trust it.

    Tries ``model``, then each simpler model down to a translation while the
    registration diverges or ends below a correlation of 0.5 (or ``min_correlation``
    if higher). Returns ``(step, outcome)``: ``step`` the pixel matrix to apply (the
    identity when the estimate did not remove 5 % of the identity's residual; None
    when the frame is rejected), ``outcome`` a dict for
    :func:`convstack.stack.registration_report.record` (status, model, correlation,
    identity, step, reason, value, asked). ``typical_residual``: the median residual
    of the pairs registered before; a residual over ten times it (and over 0.05) is an
    outlier, and the frame is rejected. ``predicted``: the step expected (the previous
    one the same way); a scale or rotation far from it is a jump, and the frame is
    rejected (without one, the step itself is judged, with wider limits).
    """
    floor = max(min_correlation, _MIN_TRUSTED_CORRELATION)
    outcome: dict[str, Any] = {"asked": model, "model": model, "status": "rejected"}
    best_cc = -1.0
    for k in range(MODELS.index(model), 0, -1):
        info: dict[str, float] = {}
        try:
            a, cc = _register(
                reference,
                moving,
                MODELS[k],
                None,
                coarsest=len(reference.levels) - 1,
                finest=reference.finest,
                iterations=50,
                tolerance=0.005,
                mask=None,
                info=info,
            )
        except _Diverged:
            continue
        best_cc = max(best_cc, cc)
        if cc >= floor:
            outcome.update(model=MODELS[k], correlation=cc, identity=info.get("identity", -1.0))
            break
    else:
        if best_cc > -1.0:
            outcome.update(reason=2, value=best_cc, correlation=best_cc)
        else:
            outcome.update(reason=1)
        return None, outcome
    q, _ = _normaliser(reference.shape)
    m = np.linalg.inv(q) @ a @ q
    m = m / m[2, 2]
    outcome["step"] = m
    scale, angle = _scale_rotation(m)
    scale_limit, angle_limit = _MAX_SCALE_UNPREDICTED, _MAX_ROTATION_UNPREDICTED
    if predicted is not None:
        expected_scale, expected_angle = _scale_rotation(predicted)
        scale, angle = scale / expected_scale, angle - expected_angle
        scale_limit, angle_limit = _MAX_SCALE_JUMP, _MAX_ROTATION_JUMP
    if abs(np.log(scale)) > scale_limit:
        outcome.update(reason=3, value=scale - 1.0)
        return None, outcome
    if abs(angle) > angle_limit:
        outcome.update(reason=4, value=angle)
        return None, outcome
    h, w = reference.shape[:2]
    centre = m @ np.array([(h - 1) / 2.0, (w - 1) / 2.0, 1.0])
    moved = centre[:2] / centre[2] - np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    shift = float(np.hypot(*moved))
    if shift > _MAX_SHIFT_STEP * max(h, w):
        outcome.update(reason=5, value=shift)
        return None, outcome
    if typical_residual is not None and 1.0 - cc > max(
        _OUTLIER_FACTOR * typical_residual, _OUTLIER_FLOOR
    ):
        outcome.update(reason=6, value=1.0 - cc)
        return None, outcome
    identity_residual = 1.0 - float(outcome["identity"])
    if 1.0 - cc > (1.0 - _SIGNIFICANT) * identity_residual:
        outcome["status"] = "identity"
        return np.eye(3), outcome
    outcome["status"] = "aligned"
    return m, outcome


def _luma_nan(array: NDArray[np.float64]) -> NDArray[np.float64]:
    """Luma of a float64 image that may hold NaN (gray passes through)."""
    if array.ndim == 3 and array.shape[2] >= 3:
        luma = _LUMA.astype(np.float64)
        return np.asarray(
            array[..., 0] * luma[0] + array[..., 1] * luma[1] + array[..., 2] * luma[2]
        )
    return array[..., 0] if array.ndim == 3 else array


def estimate_gain(
    reference: ArrayLike,
    warped: ArrayLike,
    *,
    iterations: int = 10,
) -> tuple[float, float]:
    """Robust (Huber) least-squares fit ``reference ~ gain * warped + offset``.

    NaN pixels (outside a 'constant' warp with ``cval=nan``) are ignored; colour is
    reduced to luma first. Apply as ``gain * warped + offset``.

    Examples
    --------
    >>> ref = np.arange(20.0).reshape(4, 5)
    >>> gain, offset = estimate_gain(ref, (ref - 3.0) / 2.0)
    >>> round(gain, 6), round(offset, 6)
    (2.0, 3.0)
    """
    ref = np.asarray(v.as_real_array(reference, "reference"), dtype=np.float64)
    mov = np.asarray(v.as_real_array(warped, "warped"), dtype=np.float64)
    if ref.shape != mov.shape:
        raise v.fail("warped", f"have the shape of `reference` {ref.shape}", mov)
    ref = _luma_nan(ref)
    mov = _luma_nan(mov)
    ok = np.isfinite(ref) & np.isfinite(mov)
    x = mov[ok]
    y = ref[ok]
    if x.size < 2 or float(np.ptp(x)) == 0.0:
        return 1.0, 0.0
    weights = np.ones_like(x)
    gain, offset = 1.0, 0.0
    for _ in range(max(1, int(iterations))):
        sw = weights.sum()
        mx = float((weights * x).sum() / sw)
        my = float((weights * y).sum() / sw)
        var = float((weights * (x - mx) ** 2).sum())
        if var <= 0:
            break
        gain = float((weights * (x - mx) * (y - my)).sum() / var)
        offset = my - gain * mx
        resid = np.abs(y - gain * x - offset)
        scale = 1.4826 * float(np.median(resid))
        if scale <= 0:
            break
        k = 1.345 * scale
        weights = np.where(resid <= k, 1.0, k / np.maximum(resid, 1e-300))
    return gain, offset
