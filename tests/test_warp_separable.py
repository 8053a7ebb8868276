"""warp(order=5, separable=True): the two-pass quintic spline.

Oracles: SciPy's quintic spline (``map_coordinates(order=5)``) for matrices without
rotation, where the two passes equal the 2-D spline; a band-limited pattern's analytic
values for rotations; SciPy's B-spline basis for the weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from scipy.interpolate import BSpline

from convstack import _k_warp
from convstack.stack._frames import warped
from convstack.warp import warp

RNG = np.random.default_rng(20261207)


def _scipy_spline(image: np.ndarray, m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """SciPy's quintic spline of ``image`` (edges repeated 40 px, beyond its own border
    rule's reach) at the positions of ``m`` clamped to the image ('nearest')."""
    pad = 40
    h, w = image.shape[:2]
    grid = np.pad(
        image.astype(np.float64).reshape(h, w, -1), ((pad, pad), (pad, pad), (0, 0)), "edge"
    )
    r, c = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    y = np.clip(m[0, 0] * r + m[0, 1] * c + m[0, 2], 0, h - 1) + pad
    x = np.clip(m[1, 0] * r + m[1, 1] * c + m[1, 2], 0, w - 1) + pad
    planes = [
        ndi.map_coordinates(grid[..., k], [y, x], order=5, mode="mirror")
        for k in range(grid.shape[2])
    ]
    out = np.stack(planes, axis=-1)
    return out if image.ndim == 3 else out[..., 0]


def _rotation(degrees: float, scale: float, shape: tuple[int, int]) -> np.ndarray:
    """Output -> input: a rotation by ``degrees`` and a zoom about the centre, plus a
    fractional shift."""
    a = np.radians(degrees)
    m = np.eye(3)
    m[:2, :2] = scale * np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    centre = (np.array(shape, np.float64) - 1.0) / 2.0
    m[:2, 2] = centre - m[:2, :2] @ centre + (0.37, -0.61)
    return m


@pytest.mark.parametrize(
    "matrix",
    [
        [[1.0, 0.0, 2.3], [0.0, 1.0, -1.7], [0.0, 0.0, 1.0]],  # a shift
        [[1.004, 0.0, -0.4], [0.0, 0.996, 0.8], [0.0, 0.0, 1.0]],  # breathing
        [[0.6, 0.0, 3.0], [0.0, 1.7, -5.0], [0.0, 0.0, 1.0]],  # a strong zoom each way
    ],
)
@pytest.mark.parametrize(
    ("dtype", "channels"), [(np.uint8, None), (np.float32, 3), (np.float64, 2), (np.uint16, 1)]
)
def test_without_rotation_it_is_the_2d_spline(
    matrix: list, dtype: type, channels: int | None
) -> None:
    # no rotation: the row pass is the same on every row and commutes with the column
    # prefilter, so the two passes are SciPy's 2-D spline, to the row prefilter's FIR
    m = np.array(matrix)
    shape = (37, 45) if channels is None else (37, 45, channels)
    top = 1.0 if np.dtype(dtype).kind == "f" else float(np.iinfo(dtype).max)
    image = (RNG.random(shape) * top).astype(dtype)
    before = image.copy()
    got = warp(image, m, output_shape=(33, 50), order=5, separable=True)
    assert got.dtype == (np.float64 if dtype == np.float64 else np.float32)
    assert got.shape == (33, 50) + shape[2:]
    # white noise is the worst case of the FIR (0.22 % off at the highest frequencies)
    np.testing.assert_allclose(got, _scipy_spline(image, m, (33, 50)), rtol=0, atol=2e-3 * top)
    np.testing.assert_array_equal(image, before)


def _pattern(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """A band-limited pattern (frequencies up to 0.3 cycles a pixel on each axis)."""
    rng = np.random.default_rng(1)
    fr, fc, phase = rng.uniform(-0.3, 0.3, 30), rng.uniform(-0.3, 0.3, 30), rng.uniform(0, 6.3, 30)
    waves = [np.cos(2 * np.pi * (a * r + b * c) + p) for a, b, p in zip(fr, fc, phase, strict=True)]
    return 0.5 + np.sum(waves, axis=0) / 30


@pytest.mark.parametrize(("degrees", "floor_db"), [(0.3, 58.0), (5.0, 58.0), (20.0, 48.0)])
def test_rotated_band_limited_pattern_against_its_analytic_values(
    degrees: float, floor_db: float
) -> None:
    # measured: 62.5, 62.3, 52.3 dB (2-D quintic 62.9-63.5, Keys cubic 33.8-34.2)
    shape = (160, 200)
    r, c = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    image = _pattern(r, c).astype(np.float32)
    m = _rotation(degrees, 1.004, shape)
    truth = _pattern(m[0, 0] * r + m[0, 1] * c + m[0, 2], m[1, 0] * r + m[1, 1] * c + m[1, 2])
    inner = (slice(30, -30), slice(30, -30))

    def psnr(result: np.ndarray) -> float:
        return float(10 * np.log10(1.0 / np.mean((result[inner] - truth[inner]) ** 2)))

    two_pass = psnr(warp(image, m, order=5, separable=True))
    assert two_pass > floor_db
    assert two_pass > psnr(warp(image, m, order=3)) + 10.0


@pytest.mark.parametrize("degrees", [0.3, 20.0])
def test_constant_marks_exactly_the_outside_of_the_2d_warp(degrees: float) -> None:
    image = RNG.random((60, 70, 3)).astype(np.float32)
    m = _rotation(degrees, 0.9, (60, 70))
    m[:2, 2] += (6.0, -9.0)
    got = warp(image, m, order=5, separable=True, mode="constant", cval=np.nan)
    exact = warp(image, m, order=5, mode="constant", cval=np.nan)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(exact))
    assert np.isnan(got).any() and not np.isnan(got).all()


@pytest.mark.parametrize(
    "matrix",
    [
        [[1.0, 0.001, 0.0], [0.0, 1.0, 0.0], [1e-4, 0.0, 1.0]],  # projective
        [[0.0, 1.0, 0.0], [-1.0, 0.0, 5.0], [0.0, 0.0, 1.0]],  # 90 degrees
        [[0.1, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],  # a zoom over 4x on rows
    ],
)
def test_other_matrices_take_the_2d_path(matrix: list) -> None:
    image = RNG.random((20, 24))
    m = np.array(matrix)
    np.testing.assert_array_equal(warp(image, m, order=5, separable=True), warp(image, m, order=5))


def test_strips_agree_with_one_block() -> None:
    # each strip of output rows has its own band of input rows: the column recursion,
    # started a margin away from the strip, agrees with one block to float32's precision
    image = (RNG.random((300, 90, 3)) * 255).astype(np.uint8)
    m = _rotation(1.5, 1.01, (300, 90))
    taps = _k_warp.prefilter_taps().astype(np.float32)
    poly = _k_warp.spline_polynomials().astype(np.float32)
    fill = np.zeros(1, np.float32)

    def rows(bounds: list[int]) -> np.ndarray:
        out = np.empty((3, 300, 90), np.float32)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            first, last = _k_warp.two_pass_band(m, a, b, 90, 300)
            planes = np.empty((3, last - first, 93), np.float32)
            _k_warp.planes_rows(image, first + 1, planes, 0, last - first)
            band = np.empty((3, last - first, 90), np.float32)
            _k_warp.two_pass_rows(planes, last - first, first, 300, 90, m, taps, poly, band, first)
            _k_warp.two_pass_columns(band, first, 300, 90, m, poly, False, fill, 1e-9, out, a, b)
        return out

    one = rows([0, 300])
    np.testing.assert_allclose(rows([0, 1, 37, 150, 299, 300]), one, rtol=0, atol=3e-3)
    np.testing.assert_allclose(
        warp(image, m, order=5, separable=True), np.moveaxis(one, 0, -1), rtol=0, atol=3e-3
    )


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 3, 3)])
def test_tiny_images(shape: tuple[int, ...]) -> None:
    image = RNG.random(shape)
    m = np.array([[1.0, 0.0, 0.3], [0.0, 1.0, -0.2], [0.0, 0.0, 1.0]])
    got = warp(image, m, order=5, separable=True)
    np.testing.assert_allclose(got, _scipy_spline(image, m, shape[:2]), rtol=0, atol=2e-3)


def test_planar_out_and_views() -> None:
    image = (RNG.random((50, 80, 3)) * 255).astype(np.uint8)[::-1, 5:75]
    m = _rotation(0.8, 1.004, image.shape[:2])
    planes = np.empty((3, *image.shape[:2]), np.float32)
    out = np.moveaxis(planes, 0, -1)
    result = warp(image, m, order=5, separable=True, out=out)
    assert result is out
    np.testing.assert_array_equal(out, warp(image.copy(), m, order=5, separable=True))


def test_fuse_frames_take_the_two_pass_quintic() -> None:
    frame = (RNG.random((40, 50, 3)) * 255).astype(np.uint8)
    m = _rotation(0.5, 1.004, (40, 50))
    expected = warp(frame, m, order=5, separable=True)
    np.testing.assert_array_equal(warped(frame, m, order=5), expected)
    np.testing.assert_array_equal(warped(frame, m, order=3), warp(frame, m, order=3))


def test_the_weights_are_the_quintic_b_spline() -> None:
    basis = BSpline.basis_element(np.arange(-3.0, 4.0), extrapolate=False)
    table = _k_warp.spline_polynomials()
    for t in (0.0, 0.25, 0.5, 0.999):
        expected = [basis(t - offset) for offset in range(-2, 4)]
        got = [np.polynomial.polynomial.polyval(t, table[k]) for k in range(6)]
        np.testing.assert_allclose(got, np.nan_to_num(expected), rtol=0, atol=1e-12)


def test_the_row_prefilter_inverts_the_sampled_spline() -> None:
    taps = _k_warp.prefilter_taps()
    fir = np.concatenate([taps[:0:-1], taps])
    assert fir.sum() == pytest.approx(1.0, abs=1e-12)  # a constant keeps its value
    product = np.convolve(fir, np.array([1.0, 26.0, 66.0, 26.0, 1.0]) / 120.0)
    delta = np.zeros_like(product)
    delta[product.size // 2] = 1.0
    np.testing.assert_allclose(product, delta, rtol=0, atol=3e-3)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            dict(order=3, separable=True),
            ValueError,
            r"`separable` must be False unless `order` is 5; got",
        ),
        (dict(order=5, separable=1), TypeError, r"`separable` must be a bool; got 1"),
    ],
)
def test_bad_separable(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        warp(np.zeros((4, 4)), np.eye(3), **kwargs)


def test_big_frames_go_in_strips_of_bounded_size(monkeypatch: pytest.MonkeyPatch) -> None:
    # each strip holds a band of about its own output: strips of a quarter of a 45 MP
    # frame held 0.5 GiB; at most 2 * _STRIP_BYTES of output each, a multiple of the pool
    from convstack import warp as warp_module
    from convstack.filters import _dtype

    seen: list[tuple[int, int, int, int]] = []
    original = _dtype.strips

    def spy(rows: int, row_bytes: int, work: object, **kwargs: int) -> None:
        seen.append((rows, row_bytes, kwargs["target"], _dtype.POOL_THREADS))
        original(rows, row_bytes, work, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_dtype, "strips", spy)
    monkeypatch.setattr(warp_module, "_STRIP_BYTES", 1 << 14)  # a small frame stands in
    image = (RNG.random((200, 64, 3)) * 255).astype(np.uint8)
    m = _rotation(0.4, 1.002, (200, 64))
    got = warp(image, m, order=5, separable=True)
    ((rows, row_bytes, target, threads),) = seen
    count = -(-rows * row_bytes // target)
    assert target <= 2 * (1 << 14) + row_bytes and count % threads == 0
    monkeypatch.undo()
    np.testing.assert_allclose(got, warp(image, m, order=5, separable=True), rtol=0, atol=3e-3)
