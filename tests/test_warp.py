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


@pytest.mark.parametrize("order", [0, 1, 3, 5])
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


@pytest.mark.parametrize("order", [0, 1, 3])
def test_strips_give_the_same_result_as_one_block(
    order: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each strip copies only the input rows it reads: the same numbers as one strip
    # reading a copy of the whole image
    rng = np.random.default_rng(5)
    image = rng.random((97, 29, 2))
    m = _rotation(0.02, 1.1, (3.5, -2.0))
    monkeypatch.setattr(warp_module, "_STRIP_BYTES", 1 << 30)  # one strip
    monkeypatch.setattr(warp_module, "_band", lambda m, start, stop, cols, rows: (0, rows + 3))
    whole = warp(image, m, order=order, output_shape=(90, 40))
    monkeypatch.undo()
    monkeypatch.setattr(warp_module, "_STRIP_BYTES", 40 * 2 * 8)  # a row a strip: 16 rows
    np.testing.assert_array_equal(warp(image, m, order=order, output_shape=(90, 40)), whole)


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
        ({"order": 2}, ValueError, "`order` must be 0, 1, 3 or 5; got 2"),
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
    # no rotation: long runs of taps one column apart
    rng = np.random.default_rng(11)
    shape = (13, 17) if channels is None else (13, 17, channels)
    image = (rng.random(shape) * 255).astype(np.uint8)
    m = np.array([[scale[0], 0.0, -1.3], [0.0, scale[1], 2.6], [0.0, 0.0, 1.0]])
    monkeypatch.setattr(warp_module, "_STRIP_BYTES", 40)  # several strips
    out = warp(image, m, output_shape=(15, 12), order=3)
    np.testing.assert_allclose(out, _keys_oracle(image, m, (15, 12)), atol=2e-3)
    outside = warp(image, m, output_shape=(15, 12), order=3, mode="constant", cval=np.nan)
    rows, cols = np.mgrid[0:15, 0:12]
    src_r, src_c = m[0, 0] * rows + m[0, 2], m[1, 1] * cols + m[1, 2]
    inside = (src_r >= 0) & (src_r <= 12) & (src_c >= 0) & (src_c <= 16)
    assert np.array_equal(np.isnan(outside if channels is None else outside[..., 0]), ~inside)


@pytest.mark.parametrize("channels", [None, 3])
@pytest.mark.parametrize(("angle", "tolerance"), [(0.0, 0.0), (0.3, 0.0), (0.01, 1 / 256)])
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


# ------------------------------------------- the compiled warp against a slow loop
def _rotation(angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, s, shift[0]], [-s, c, shift[1]], [0.0, 0.0, 1.0]])


def _loop_warp(
    image: np.ndarray,
    m: np.ndarray,
    out_shape: tuple[int, int],
    order: int,
    mode: str = "nearest",
    cval: float = 0.0,
) -> np.ndarray:
    """The warp by its definition, one output pixel at a time, in float64: the input
    position ``m @ (r, c, 1)`` (divided by its third coordinate; none where that is
    <= 0), ``cval`` outside the image for 'constant', else the position clamped to the
    image and interpolated from the edge-repeated pixels around it."""
    h, w = image.shape[:2]
    grid = image.astype(np.float64).reshape(h, w, -1)
    out = np.zeros((*out_shape, grid.shape[2]))

    def pixel(i: int, j: int) -> np.ndarray:
        return grid[min(max(i, 0), h - 1), min(max(j, 0), w - 1)]

    for r in range(out_shape[0]):
        for c in range(out_shape[1]):
            y, x, z = m @ np.array([r, c, 1.0])
            defined = z > 0
            y, x = (y / z, x / z) if defined else (0.0, 0.0)
            eps = 1e-9
            if mode == "constant" and not (
                defined and -eps <= y <= h - 1 + eps and -eps <= x <= w - 1 + eps
            ):
                out[r, c] = cval
                continue
            y = min(max(y, 0.0), h - 1.0)
            x = min(max(x, 0.0), w - 1.0)
            i, j = int(np.floor(y)), int(np.floor(x))
            if order == 0:
                out[r, c] = pixel(int(np.floor(y + 0.5)), int(np.floor(x + 0.5)))
            elif order == 1:
                t, u = y - i, x - j
                out[r, c] = (
                    (1 - t) * (1 - u) * pixel(i, j)
                    + (1 - t) * u * pixel(i, j + 1)
                    + t * (1 - u) * pixel(i + 1, j)
                    + t * u * pixel(i + 1, j + 1)
                )
            else:
                for a in range(i - 1, i + 3):
                    for b in range(j - 1, j + 3):
                        out[r, c] += _keys(y - a) * _keys(x - b) * pixel(a, b)
    return out if image.ndim == 3 else out[..., 0]


_MATRICES = {
    "identity": np.eye(3),
    "shift": np.array([[1.0, 0.0, 1.25], [0.0, 1.0, -2.6], [0.0, 0.0, 1.0]]),
    "slight rotation": _rotation(np.radians(0.3), 1.004, (0.6, -1.3)),
    "rotation": _rotation(np.radians(30.0), 0.9, (-2.0, 5.5)),
    "homography": np.array([[1.03, 0.04, -1.0], [-0.05, 0.97, 2.0], [0.006, -0.004, 1.0]]),
}


@pytest.mark.parametrize("order", [0, 1, 3])
@pytest.mark.parametrize("mode", ["nearest", "constant"])
@pytest.mark.parametrize("name", list(_MATRICES))
@pytest.mark.parametrize(
    ("dtype", "channels"), [(np.uint8, None), (np.float32, 3), (np.float64, 2), (np.uint16, 4)]
)
def test_matches_the_loop(
    order: int, mode: str, name: str, dtype: type, channels: int | None
) -> None:
    rng = np.random.default_rng(17)
    shape = (13, 17) if channels is None else (13, 17, channels)
    top = 1.0 if np.dtype(dtype).kind == "f" else float(np.iinfo(dtype).max)
    image = (rng.random(shape) * top).astype(dtype)
    m = _MATRICES[name]
    got = warp(image, m, output_shape=(11, 19), order=order, mode=mode, cval=-0.5)
    expected = _loop_warp(image, m, (11, 19), order, mode, -0.5)
    assert got.dtype == (np.float64 if dtype == np.float64 else np.float32)
    atol = 1e-12 * top if dtype == np.float64 else 2e-6 * top
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol)


@pytest.mark.parametrize("order", [0, 1, 3])
@pytest.mark.parametrize("shift", [(0, 0), (3, -5), (-7, 2)])
def test_integer_shifts_equal_np_roll_inside(order: int, shift: tuple[int, int]) -> None:
    image = (RNG.random((24, 31, 3)) * 255).astype(np.uint8)
    m = np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]], [0.0, 0.0, 1.0]])
    got = warp(image, m, order=order)
    rolled = np.roll(image, (-shift[0], -shift[1]), axis=(0, 1))
    # rows and columns that np.roll did not wrap round
    rows = slice(max(0, -shift[0]), 24 - max(0, shift[0]))
    cols = slice(max(0, -shift[1]), 31 - max(0, shift[1]))
    np.testing.assert_array_equal(got[rows, cols], rolled[rows, cols])
    # outside them, the nearest edge pixel
    np.testing.assert_array_equal(got, _loop_warp(image, m, (24, 31), 0))


@pytest.mark.parametrize("order", [0, 1, 3])
def test_a_one_pixel_image(order: int) -> None:
    image = np.array([[[5.0, -2.0]]])
    m = _rotation(0.4, 1.3, (0.5, -0.25))
    np.testing.assert_array_equal(
        warp(image, m, order=order, output_shape=(3, 4)), [[[5.0, -2.0]] * 4] * 3
    )
    got = warp(image, np.eye(3), order=order, output_shape=(2, 2), mode="constant", cval=9.0)
    np.testing.assert_array_equal(got, [[[5.0, -2.0], [9.0, 9.0]], [[9.0, 9.0], [9.0, 9.0]]])


@pytest.mark.parametrize("order", [1, 3])
def test_views_give_the_result_of_their_copies(order: int) -> None:
    base = RNG.random((40, 50, 4)).astype(np.float32)
    m = _MATRICES["slight rotation"]
    for view in (base[::2, ::-1, 1], base[3:30, 5:45, ::2], np.moveaxis(base, 0, 1)[:, :, 2]):
        assert not view.flags.c_contiguous
        np.testing.assert_array_equal(warp(view, m, order=order), warp(view.copy(), m, order=order))
    np.testing.assert_allclose(
        warp(base[::2, ::-1, 1], m, order=order),
        _loop_warp(base[::2, ::-1, 1], m, (20, 50), order),
        atol=2e-6,
    )


@pytest.mark.parametrize("order", [1, 3])
def test_long_rows_of_a_slightly_rotated_frame(order: int) -> None:
    # a few hundred output pixels a row: runs of taps one column apart, read as
    # vectors, broken where the rotation moves them to the next row or column
    image = (RNG.random((40, 420, 3)) * 255).astype(np.uint8)
    m = _rotation(np.radians(0.5), 0.998, (3.3, -1.7))
    got = warp(image, m, order=order, output_shape=(6, 420))
    np.testing.assert_allclose(got, _loop_warp(image, m, (6, 420), order), rtol=0, atol=5e-4)


@pytest.mark.parametrize("channels", [None, 3])
def test_a_nan_pixel_spoils_only_its_own_taps(channels: int | None) -> None:
    image = RNG.random((30, 40)).astype(np.float32)
    image[12, 20] = np.nan
    if channels:
        image = np.repeat(image[..., None], channels, axis=2)
    m = _MATRICES["slight rotation"]
    got = warp(image, m, order=3)
    expected = _loop_warp(image, m, (30, 40), 3)  # NaN times a weight, even 0, is NaN
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert 0 < np.count_nonzero(np.isnan(got if channels is None else got[..., 0])) <= 16
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_tolerance_changes_nothing() -> None:
    image = RNG.random((20, 30, 3)).astype(np.float32)
    m = _rotation(2e-4, 0.993, (0.7, -1.9))
    np.testing.assert_array_equal(warp(image, m, order=3, tolerance=0.01), warp(image, m, order=3))


def test_the_compiled_warp_works_in_a_forked_child() -> None:
    from convstack.stack import forked

    if not forked.can_fork():
        pytest.skip("no fork here")
    image = RNG.random((300, 200, 3)).astype(np.float32)  # several strips: the pool runs
    m = _MATRICES["rotation"]
    parent = warp(image, m, order=3)
    shared = forked.shared_array(parent.shape, np.float32)

    def child(inbox: forked.Channel, outbox: forked.Channel) -> None:
        shared[...] = warp(image, m, order=3)
        outbox.send(("ok", None))

    with forked.ForkedWorker(child) as worker:
        worker.receive()
    np.testing.assert_array_equal(shared, parent)


def _spline_oracle(
    image: np.ndarray, m: np.ndarray, out_shape: tuple[int, int], mode: str, cval: float
) -> np.ndarray:
    """SciPy's quintic B-spline (``map_coordinates(order=5)``) of the image with its edge
    pixels repeated far enough (40) that SciPy's own border rule never reaches it, at
    the positions clamped to the image ('nearest'), ``cval`` outside for 'constant'."""
    pad = 40
    h, w = image.shape[:2]
    grid = image.astype(np.float64).reshape(h, w, -1)
    padded = np.pad(grid, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    r, c = np.mgrid[0 : out_shape[0], 0 : out_shape[1]].astype(np.float64)
    y, x, z = (m[k, 0] * r + m[k, 1] * c + m[k, 2] for k in range(3))
    defined = z > 0
    y, x = np.where(defined, y / np.where(defined, z, 1), 0), np.where(defined, x / z, 0)
    inside = defined & (y >= -1e-9) & (y <= h - 1 + 1e-9) & (x >= -1e-9) & (x <= w - 1 + 1e-9)
    coords = [np.clip(y, 0, h - 1) + pad, np.clip(x, 0, w - 1) + pad]
    out = np.stack(
        [ndi.map_coordinates(padded[..., k], coords, order=5, mode="mirror") for k in
         range(grid.shape[2])],
        axis=-1,
    )  # fmt: skip
    if mode == "constant":
        out[~inside] = cval
    return out if image.ndim == 3 else out[..., 0]


@pytest.mark.parametrize("mode", ["nearest", "constant"])
@pytest.mark.parametrize("name", list(_MATRICES))
@pytest.mark.parametrize(
    ("dtype", "channels"), [(np.uint8, None), (np.float32, 3), (np.float64, 2), (np.uint16, 4)]
)
def test_quintic_matches_scipy_spline(
    mode: str, name: str, dtype: type, channels: int | None
) -> None:
    rng = np.random.default_rng(5)
    shape = (23, 29) if channels is None else (23, 29, channels)
    top = 1.0 if np.dtype(dtype).kind == "f" else float(np.iinfo(dtype).max)
    image = (rng.random(shape) * top).astype(dtype)
    before = image.copy()
    m = _MATRICES[name]
    got = warp(image, m, output_shape=(21, 31), order=5, mode=mode, cval=-0.5)
    expected = _spline_oracle(image, m, (21, 31), mode, -0.5)
    atol = 1e-9 * top if dtype == np.float64 else 2e-5 * top
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol)
    np.testing.assert_array_equal(image, before)


def test_quintic_on_a_frame_split_in_strips() -> None:
    # a colour frame large enough for two strips of rows and two of columns
    image = (RNG.random((150, 260, 3)) * 255).astype(np.uint8)
    m = _MATRICES["slight rotation"]
    expected = _spline_oracle(image, m, (150, 260), "nearest", 0.0)
    np.testing.assert_allclose(warp(image, m, order=5), expected, rtol=0, atol=5e-3)


def test_quintic_keeps_fine_detail_that_the_cubic_softens() -> None:
    # the reason for order 5: a pattern of period 3 px shifted by half a pixel keeps
    # 97 % of its amplitude (the cubic: 69 %; the exact shift keeps all of it)
    cols = np.arange(200.0)
    image = np.tile(np.cos(2 * np.pi * cols / 3.0), (8, 1))
    half = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    truth = np.cos(2 * np.pi * (cols + 0.5) / 3.0)[40:-40]
    kept = {
        order: float(
            np.dot(warp(image, half, order=order)[4, 40:-40], truth) / np.dot(truth, truth)
        )
        for order in (3, 5)
    }
    assert kept[5] > 0.95 and kept[3] < 0.7
