"""warp(): hand-computed cases, SciPy's affine_transform / map_coordinates as oracles."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

from convstack import warp as warp_module
from convstack.warp import transform_points, warp

RNG = np.random.default_rng(20261125)


def _random_affine(rng: np.random.Generator) -> np.ndarray:
    m = np.eye(3)
    m[:2, :2] += rng.normal(0.0, 0.15, (2, 2))
    m[:2, 2] = rng.normal(0.0, 4.0, 2)
    return m


@pytest.mark.parametrize("order", [0, 1, 3])
@pytest.mark.parametrize("channels", [None, 3])
def test_integer_shift_equals_a_slice(order: int, channels: int | None) -> None:
    shape = (20, 30) if channels is None else (20, 30, channels)
    image = RNG.random(shape)
    m = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, 5.0], [0.0, 0.0, 1.0]])
    out = warp(image, m, output_shape=(17, 25), order=order)
    np.testing.assert_allclose(out, image[3:, 5:], rtol=0, atol=1e-12)


def test_rotation_by_90_degrees_matches_rot90() -> None:
    image = np.arange(12.0).reshape(3, 4)
    rows, cols = image.shape
    # output (r, c) <- input (c, cols - 1 - r): numpy's counter-clockwise rot90.
    m = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, cols - 1.0], [0.0, 0.0, 1.0]])
    out = warp(image, m, output_shape=(cols, rows), mode="constant", cval=-1.0)
    np.testing.assert_allclose(out, np.rot90(image), atol=1e-12)


def test_hand_computed_half_pixel_shift() -> None:
    image = np.array([[0.0, 2.0, 4.0], [10.0, 12.0, 14.0]])
    m = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.25], [0.0, 0.0, 1.0]])
    out = warp(image, m, mode="constant", cval=-7.0)
    # (0, 0) samples (0.5, 0.25): mean of rows 0 and 1 at column 0.25 -> (0.5 + 10.5) / 2.
    assert out[0, 0] == pytest.approx(5.5)
    assert out[0, 1] == pytest.approx(7.5)
    assert out[0, 2] == -7.0  # column 2.25 is outside
    assert np.all(out[1] == -7.0)  # row 1.5 is outside


@pytest.mark.parametrize("mode", ["nearest", "constant"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8])
def test_bilinear_matches_scipy_affine_transform(mode: str, dtype: type) -> None:
    rng = np.random.default_rng(7)
    image = (rng.random((31, 43)) * 200).astype(dtype)
    for _ in range(4):
        m = _random_affine(rng)
        ours = warp(image, m, output_shape=(35, 40), mode=mode, cval=3.5)
        oracle = ndi.affine_transform(
            image.astype(np.float64),
            m[:2, :2],
            m[:2, 2],
            output_shape=(35, 40),
            order=1,
            mode=mode,
            cval=3.5,
        )
        tol = 1e-10 if dtype == np.float64 else 2e-4 * 200
        np.testing.assert_allclose(ours, oracle, rtol=0, atol=tol)


def test_colour_is_warped_per_channel() -> None:
    rng = np.random.default_rng(3)
    image = rng.random((25, 33, 3))
    m = _random_affine(rng)
    out = warp(image, m, mode="constant", cval=-1.0)
    assert out.shape == image.shape
    for ch in range(3):
        oracle = ndi.affine_transform(
            image[..., ch], m[:2, :2], m[:2, 2], order=1, mode="constant", cval=-1.0
        )
        np.testing.assert_allclose(out[..., ch], oracle, atol=1e-12)


def test_homography_matches_map_coordinates() -> None:
    rng = np.random.default_rng(11)
    image = rng.random((40, 50))
    m = np.array([[1.02, 0.03, 2.0], [-0.02, 0.98, -1.5], [4e-4, -3e-4, 1.0]])
    rows, cols = np.mgrid[0:40, 0:50].astype(np.float64)
    w = m[2, 0] * rows + m[2, 1] * cols + m[2, 2]
    src_r = (m[0, 0] * rows + m[0, 1] * cols + m[0, 2]) / w
    src_c = (m[1, 0] * rows + m[1, 1] * cols + m[1, 2]) / w
    oracle = ndi.map_coordinates(image, [src_r, src_c], order=1, mode="nearest")
    np.testing.assert_allclose(warp(image, m), oracle, atol=1e-12)


def test_strips_give_the_same_result_as_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    image = rng.random((37, 29, 2))
    m = _random_affine(rng)
    whole = warp(image, m, order=3)
    monkeypatch.setattr(warp_module, "_STRIP_PIXELS", 50)  # 1 row per strip
    np.testing.assert_array_equal(warp(image, m, order=3), whole)


def test_cubic_reproduces_a_quadratic_inside() -> None:
    rows, cols = np.mgrid[0:30, 0:30].astype(np.float64)
    image = 0.5 * rows**2 - 0.25 * rows * cols + 2.0 * cols + 1.0
    m = np.array([[0.9, 0.05, 3.3], [-0.04, 0.95, 2.7], [0.0, 0.0, 1.0]])
    out = warp(image, m, order=3, mode="constant", cval=np.nan)
    src_r = m[0, 0] * rows + m[0, 1] * cols + m[0, 2]
    src_c = m[1, 0] * rows + m[1, 1] * cols + m[1, 2]
    expected = 0.5 * src_r**2 - 0.25 * src_r * src_c + 2.0 * src_c + 1.0
    inner = (src_r >= 1) & (src_r <= 27) & (src_c >= 1) & (src_c <= 27)
    np.testing.assert_allclose(out[inner], expected[inner], atol=1e-9)


def _keys(t: float) -> float:
    """Keys (1981) cubic-convolution kernel, a = -0.5."""
    t = abs(t)
    if t < 1:
        return 1.5 * t**3 - 2.5 * t**2 + 1
    if t < 2:
        return -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2
    return 0.0


@pytest.mark.parametrize("channels", [None, 2])
def test_cubic_matches_a_loop_over_the_taps(channels: int | None) -> None:
    rng = np.random.default_rng(9)
    shape = (9, 11) if channels is None else (9, 11, channels)
    image = (rng.random(shape) * 255).astype(np.uint8)
    m = np.array([[0.93, 0.12, 0.4], [-0.1, 1.05, -0.7], [0.004, -0.003, 1.0]])
    out = warp(image, m, order=3)
    grid = image.astype(np.float64).reshape(9, 11, -1)
    for r in range(9):
        for c in range(11):
            w = m[2, 0] * r + m[2, 1] * c + m[2, 2]
            y = min(max((m[0, 0] * r + m[0, 1] * c + m[0, 2]) / w, 0.0), 8.0)
            x = min(max((m[1, 0] * r + m[1, 1] * c + m[1, 2]) / w, 0.0), 10.0)
            expected = np.zeros(grid.shape[2])
            for i in range(int(y) - 1, int(y) + 3):
                for j in range(int(x) - 1, int(x) + 3):
                    pixel = grid[min(max(i, 0), 8), min(max(j, 0), 10)]
                    expected += _keys(y - i) * _keys(x - j) * pixel
            got = out[r, c] if channels is None else out[r, c, :]
            np.testing.assert_allclose(got, expected.squeeze(), atol=1e-3)


def test_nearest_neighbour_order_zero() -> None:
    image = np.arange(9.0).reshape(3, 3)
    m = np.array([[1.0, 0.0, 0.4], [0.0, 1.0, 0.6], [0.0, 0.0, 1.0]])
    out = warp(image, m, order=0)
    # (r, c) samples (r + 0.4, c + 0.6) -> nearest pixel (r, c + 1), clamped at the edge.
    np.testing.assert_array_equal(out, [[1, 2, 2], [4, 5, 5], [7, 8, 8]])


def test_dtype_policy_and_input_unchanged() -> None:
    image8 = (RNG.random((10, 12, 3)) * 255).astype(np.uint8)
    copy8 = image8.copy()
    m = _random_affine(np.random.default_rng(1))
    out8 = warp(image8, m)
    assert out8.dtype == np.float32
    assert float(out8.max()) <= 255.0  # values are not rescaled
    np.testing.assert_array_equal(image8, copy8)
    assert warp(image8.astype(np.float64), m).dtype == np.float64
    assert warp(image8.astype(np.uint16), m).dtype == np.float32
    assert warp(image8 > 100, m).dtype == np.float32


def test_nan_cval_marks_the_outside() -> None:
    image = np.ones((8, 8))
    m = np.array([[1.0, 0.0, 4.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    out = warp(image, m, mode="constant", cval=np.nan)
    assert np.isnan(out[4:]).all()
    assert np.isfinite(out[:4]).all()


def test_points_behind_a_projective_centre_are_outside() -> None:
    m = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-0.5, 0.0, 1.0]])  # w <= 0 from row 2 on
    out = warp(np.ones((5, 5)), m, mode="constant", cval=-1.0)
    assert np.all(out[2:] == -1.0)


def test_transform_points() -> None:
    m = np.array([[2.0, 0.0, 1.0], [0.0, 1.0, -1.0], [0.0, 0.0, 2.0]])
    np.testing.assert_allclose(transform_points(m, [[1.0, 4.0]]), [[1.5, 1.5]])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"matrix": np.eye(2)}, ValueError, r"`matrix` must have shape \(3, 3\)"),
        ({"matrix": np.full((3, 3), np.nan)}, ValueError, "`matrix` must contain only finite"),
        ({"order": 2}, ValueError, "`order` must be 0, 1 or 3; got 2"),
        ({"mode": "wrap"}, ValueError, "`mode` must be one of 'nearest', 'constant'; got 'wrap'"),
        ({"output_shape": (0, 3)}, ValueError, "`output_shape` must be >= 1"),
        ({"cval": "x"}, TypeError, "`cval` must be a real number"),
        ({"tolerance": -0.1}, ValueError, "`tolerance` must be a finite number >= 0"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    args = {"matrix": np.eye(3)}
    args.update(kwargs)
    matrix = args.pop("matrix")
    with pytest.raises(error, match=match):
        warp(np.zeros((4, 4)), matrix, **args)


def test_bad_image() -> None:
    with pytest.raises(ValueError, match="`image` must be 2-D"):
        warp(np.zeros((2, 3, 4, 5)), np.eye(3))
    with pytest.raises(TypeError, match="`image` must be an array of real numbers"):
        warp(np.zeros((3, 3), dtype=complex), np.eye(3))


def _keys_oracle(image: np.ndarray, m: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """2-D Keys cubic interpolation by a loop over the 16 taps (affine, edges repeated)."""
    h, w = image.shape[:2]
    grid = image.astype(np.float64).reshape(h, w, -1)
    out = np.zeros(out_shape + (grid.shape[2],))
    for r in range(out_shape[0]):
        for c in range(out_shape[1]):
            y = min(max(m[0, 0] * r + m[0, 1] * c + m[0, 2], 0.0), h - 1.0)
            x = min(max(m[1, 0] * r + m[1, 1] * c + m[1, 2], 0.0), w - 1.0)
            for i in range(int(y) - 1, int(y) + 3):
                for j in range(int(x) - 1, int(x) + 3):
                    pixel = grid[min(max(i, 0), h - 1), min(max(j, 0), w - 1)]
                    out[r, c] += _keys(y - i) * _keys(x - j) * pixel
    return out if image.ndim == 3 else out[..., 0]


@pytest.mark.parametrize("channels", [None, 3])
@pytest.mark.parametrize("scale", [(1.0, 1.0), (0.97, 1.04), (1.6, 0.55)])
def test_cubic_scale_and_shift_matches_the_loop(
    channels: int | None, scale: tuple[float, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    # no rotation: the separable two-pass path, which must equal the 2-D kernel
    rng = np.random.default_rng(11)
    shape = (13, 17) if channels is None else (13, 17, channels)
    image = (rng.random(shape) * 255).astype(np.uint8)
    m = np.array([[scale[0], 0.0, -1.3], [0.0, scale[1], 2.6], [0.0, 0.0, 1.0]])
    monkeypatch.setattr(warp_module, "_STRIP_PIXELS", 40)  # several strips
    out = warp(image, m, output_shape=(15, 12), order=3)
    np.testing.assert_allclose(out, _keys_oracle(image, m, (15, 12)), atol=2e-3)
    outside = warp(image, m, output_shape=(15, 12), order=3, mode="constant", cval=np.nan)
    rows, cols = np.mgrid[0:15, 0:12]
    src_r, src_c = m[0, 0] * rows + m[0, 2], m[1, 1] * cols + m[1, 2]
    inside = (src_r >= 0) & (src_r <= 12) & (src_c >= 0) & (src_c <= 16)
    assert np.array_equal(np.isnan(outside if channels is None else outside[..., 0]), ~inside)


def test_tolerance_bounds_the_error_of_the_fast_path_for_small_rotations() -> None:
    # a smooth image, so that a position error of t pixels moves values by <= t * |gradient|
    rows, cols = np.mgrid[0:60, 0:300].astype(np.float64)
    image = np.sin(rows / 5.0) + np.cos(cols / 7.0)
    angle = 2e-4
    m = np.array(
        [[np.cos(angle), np.sin(angle), 0.7], [-np.sin(angle), np.cos(angle), -1.9], [0, 0, 1]]
    )
    exact = warp(image, m, order=3)
    fast = warp(image, m, order=3, tolerance=1 / 256)
    assert not np.array_equal(fast, exact)  # the banded path did run
    gradient = 1 / 5.0 + 1 / 7.0
    assert np.abs(fast - exact).max() <= (1 / 256 + 2 * angle) * gradient * 1.5
    # a large rotation stays on the exact path whatever the tolerance
    big = np.array([[0.9, 0.3, 0.0], [-0.3, 0.9, 0.0], [0, 0, 1]])
    np.testing.assert_array_equal(
        warp(image, big, order=3, tolerance=1 / 256), warp(image, big, order=3)
    )


@pytest.mark.parametrize("channels", [None, 3])
@pytest.mark.parametrize("angle", [0.0, 1e-5])
@pytest.mark.parametrize("scale", [1.004, 0.993])
def test_sliced_taps_equal_gathered_taps(
    channels: int | None, angle: float, scale: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # near unit scale the separable path reads runs of taps as slices; forcing it to
    # gather every tap instead must give the same numbers
    rng = np.random.default_rng(3)
    shape = (90, 400) if channels is None else (90, 400, channels)
    image = (rng.random(shape) * 255).astype(np.uint8)
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    m = np.array([[c, s, -1.3], [-s, c, 2.6], [0.0, 0.0, 1.0]])
    sliced = warp(image, m, order=3, tolerance=1 / 256)
    calls = []
    original = warp_module._runs
    monkeypatch.setattr(warp_module, "_runs", lambda first: calls.append(1) or original(first))
    assert np.array_equal(warp(image, m, order=3, tolerance=1 / 256), sliced)
    assert calls  # the sliced path was taken
    monkeypatch.setattr(warp_module, "_MIN_RUN", 10**9)  # every run too short: gather
    np.testing.assert_allclose(warp(image, m, order=3, tolerance=1 / 256), sliced, atol=1e-3)
    if angle == 0.0:  # and both equal the 2-D cubic kernel
        oracle = _keys_oracle(image, m, (30, 60))  # the output's top-left corner
        np.testing.assert_allclose(sliced[:30, :60], oracle, atol=2e-3)


@pytest.mark.parametrize("channels", [None, 3])
@pytest.mark.parametrize(
    ("angle", "tolerance"),
    [(0.0, 0.0), (0.3, 0.0), (0.01, 1 / 256)],  # separable; gathered; separable in bands
)
def test_out_receives_the_same_result(channels: int | None, angle: float, tolerance: float) -> None:
    shape = (40, 52) if channels is None else (40, 52, channels)
    image = (RNG.random(shape) * 255).astype(np.uint8)
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    m = np.array([[1.01 * c, s, 1.5], [-s, 1.01 * c, -2.25], [0.0, 0.0, 1.0]])
    expected = warp(image, m, order=3, tolerance=tolerance)
    out = np.full(expected.shape, np.nan, np.float32)
    got = warp(image, m, order=3, tolerance=tolerance, out=out)
    assert got is out
    np.testing.assert_array_equal(out, expected)


def test_bad_out() -> None:
    image = np.zeros((6, 7), np.float32)
    for out in (
        np.zeros((6, 8), np.float32),  # wrong shape
        np.zeros((6, 7), np.float64),  # wrong dtype
        np.zeros((7, 6), np.float32).T,  # not C-contiguous
        np.zeros((6, 7), np.float32)[::1].view(),
        image,  # the image itself
        [[0.0] * 7] * 6,  # not an array
    ):
        if isinstance(out, np.ndarray) and out.flags.c_contiguous and out is not image:
            out.flags.writeable = False  # read-only
        with pytest.raises(ValueError, match="`out` must be a writeable C-contiguous float32"):
            warp(image, np.eye(3), out=out)


@pytest.mark.parametrize(
    "matrix",
    [
        [[1.0, 0.0, 2.5], [0.0, 1.0, -1.5], [0, 0, 1]],  # a thin outside frame
        [[1.0, 0.0, 30.0], [0.0, 1.0, 0.0], [0, 0, 1]],  # whole rows outside
        [[0.9, 0.3, -5.0], [-0.3, 0.9, 12.0], [0, 0, 1]],  # rotated: slanted edges
        [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0, 0, 1]],  # transposed (no column slope)
    ],
)
def test_constant_fill_marks_exactly_the_outside(matrix: list) -> None:
    image = RNG.random((40, 52)).astype(np.float32)
    m = np.array(matrix, dtype=np.float64)
    got = warp(image, m, order=1, mode="constant", cval=np.nan, output_shape=(44, 50))
    rows, cols = np.mgrid[0:44, 0:50].astype(np.float64)
    src_r = m[0, 0] * rows + m[0, 1] * cols + m[0, 2]
    src_c = m[1, 0] * rows + m[1, 1] * cols + m[1, 2]
    eps = warp_module._EDGE_TOLERANCE
    inside = (src_r >= -eps) & (src_r <= 39 + eps) & (src_c >= -eps) & (src_c <= 51 + eps)
    np.testing.assert_array_equal(np.isnan(got), ~inside)


# ------------------------------------------------- the banded matrix-product path
def _smooth(shape: tuple[int, ...]) -> np.ndarray:
    """sin(r / 5) + cos(c / 7), repeated over the channels: |gradient| <= 1/5 + 1/7."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    image = np.sin(rows / 5.0) + np.cos(cols / 7.0)
    return image if len(shape) == 2 else np.repeat(image[..., None], shape[2], axis=2)


def _rotation(angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, s, shift[0]], [-s, c, shift[1]], [0.0, 0.0, 1.0]])


def _count_banded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = warp_module._resample.banded_warp
    monkeypatch.setattr(
        warp_module._resample,
        "banded_warp",
        lambda *args: calls.append(1) or original(*args),
    )
    return calls


@pytest.mark.parametrize("channels", [None, 3])
@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize("mode", ["nearest", "constant"])
@pytest.mark.parametrize(
    ("shape", "output_shape", "shift"),
    [
        ((300, 410), None, (0.7, -1.9)),  # several strips, bands and blocks
        ((70, 90), (150, 40), (-3.2, 2.4)),  # output taller, narrower, past the edges
        ((41, 530), (12, 500), (5.5, 7.25)),  # a crop, one short strip
    ],
)
def test_banded_path_stays_within_the_tolerance_of_the_exact_warp(
    channels: int | None,
    order: int,
    mode: str,
    shape: tuple[int, int],
    output_shape: tuple[int, int] | None,
    shift: tuple[float, float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = _smooth(shape if channels is None else (*shape, channels)).astype(np.float32)
    angle, tolerance = 2e-4, 1 / 256
    m = _rotation(angle, 0.993, shift)
    exact = warp(image, m, output_shape=output_shape, order=order, mode=mode, cval=np.nan)
    calls = _count_banded(monkeypatch)
    fast = warp(
        image,
        m,
        output_shape=output_shape,
        order=order,
        mode=mode,
        cval=np.nan,
        tolerance=tolerance,
    )
    assert calls  # the banded path ran
    assert fast.shape == exact.shape
    assert np.array_equal(np.isnan(fast), np.isnan(exact))  # the same samples are outside
    inside = ~np.isnan(exact)
    assert np.abs(fast - exact)[inside].max() <= (tolerance + 2 * angle) * (1 / 5 + 1 / 7) * 1.5


@pytest.mark.parametrize("angle", [0.0, 3e-4])
def test_planar_out_holds_the_same_frame(angle: float, monkeypatch: pytest.MonkeyPatch) -> None:
    image = (RNG.random((120, 170, 3)) * 255).astype(np.uint8)
    m = _rotation(angle, 1.004, (1.5, -2.25))
    expected = warp(image, m, order=3, tolerance=1 / 256)
    planes = np.full((3, 120, 170), np.nan, np.float32)
    calls = _count_banded(monkeypatch)
    got = warp(image, m, order=3, tolerance=1 / 256, out=np.moveaxis(planes, 0, -1))
    assert calls  # planar outputs always take the banded path
    assert np.shares_memory(got, planes)
    # the same sample positions (up to the band edges), summed in another order
    np.testing.assert_allclose(np.moveaxis(planes, 0, -1), expected, rtol=0, atol=2e-3)
    if angle == 0.0:  # without rotation both are the 2-D cubic kernel
        oracle = _keys_oracle(image, m, (30, 40))
        np.testing.assert_allclose(planes[:, :30, :40], np.moveaxis(oracle, 2, 0), atol=2e-3)


def test_a_nan_pixel_spoils_only_its_own_taps(monkeypatch: pytest.MonkeyPatch) -> None:
    # the band matrices hold zeros that would carry a NaN across a whole block: such
    # inputs take the gathered path, where a NaN reaches only the samples that use it
    image = _smooth((80, 300)).astype(np.float32)
    image[40, 150] = np.nan
    m = _rotation(2e-4, 1.0, (0.3, 0.6))
    calls = _count_banded(monkeypatch)
    fast = warp(image, m, order=3, tolerance=1 / 256)
    assert not calls
    exact = warp(image, m, order=3)
    assert np.array_equal(np.isnan(fast), np.isnan(exact))
    assert 0 < np.count_nonzero(np.isnan(fast)) <= 16
    # colour into a planar out: the same path, then copied plane by plane
    colour = np.repeat(image[..., None], 3, axis=2)
    planes = np.zeros((3, 80, 300), np.float32)
    warp(colour, m, order=3, tolerance=1 / 256, out=np.moveaxis(planes, 0, -1))
    assert not calls
    for plane in planes:
        np.testing.assert_array_equal(plane, fast)


def test_out_may_view_a_planar_array_but_not_any_strided_one() -> None:
    image = np.zeros((6, 7, 3), np.uint8)
    planar = np.zeros((3, 6, 7), np.float32)
    assert warp(image, np.eye(3), out=np.moveaxis(planar, 0, -1)).base is not None
    for out in (
        np.zeros((6, 7, 6), np.float32)[:, :, ::2],  # every other channel
        np.zeros((7, 6, 3), np.float32).transpose(1, 0, 2),  # rows and columns swapped
    ):
        with pytest.raises(ValueError, match="or a channels-last view of a C-contiguous"):
            warp(image, np.eye(3), out=out)


def test_narrow_bands_take_the_products_or_the_exact_warp(monkeypatch: pytest.MonkeyPatch) -> None:
    # a rotation whose bands are under 16 px (1e-3 rad at 1/256 px: ~8 px) but whose
    # taps stay within the tolerance: banded products for a finite image, the exact
    # 2-D warp for one holding NaN (the sliced passes would cost more than it)
    image = _smooth((90, 260, 3)).astype(np.float32)
    angle, tolerance = 1e-3, 1 / 256
    m = _rotation(angle, 1.002, (0.4, -0.8))
    exact = warp(image, m, order=3)
    calls = _count_banded(monkeypatch)
    fast = warp(image, m, order=3, tolerance=tolerance)
    assert calls
    assert np.abs(fast - exact).max() <= (tolerance + 2 * angle) * (1 / 5 + 1 / 7) * 1.5
    image[45, 130] = np.nan
    calls.clear()
    with_nan = warp(image, m, order=3, tolerance=tolerance)
    assert not calls
    np.testing.assert_array_equal(with_nan, warp(image, m, order=3))
