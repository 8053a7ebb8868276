"""median_blur and bilateral against OpenCV and SciPy, plus the median networks themselves."""

from __future__ import annotations

import importlib
import itertools
import os
import pickle
import select
import signal

import numpy as np
import pytest

from convstack import filters, limits
from convstack.filters import median as median_module

cv2 = pytest.importorskip("cv2")
ndimage = pytest.importorskip("scipy.ndimage")


def make(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    return rng.random(shape).astype(dtype)


# ------------------------------------------------------------------------ median


@pytest.mark.parametrize("shape", [(23, 29), (18, 21, 3), (3, 40), (2, 2)])
@pytest.mark.parametrize("size", [3, 5, 7, 9, 15, 17])
def test_median_uint8_matches_cv2(shape, size):
    image = make(shape, np.uint8)
    np.testing.assert_array_equal(filters.median_blur(image, size), cv2.medianBlur(image, size))


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(23, 29), (18, 21, 3)])
@pytest.mark.parametrize("size", [3, 5])
def test_median_uint16_float32_match_cv2(dtype, shape, size):
    image = make(shape, dtype, seed=1)
    np.testing.assert_array_equal(filters.median_blur(image, size), cv2.medianBlur(image, size))


@pytest.mark.parametrize("mode", ["nearest", "mirror", "reflect", "wrap", "constant"])
@pytest.mark.parametrize("size", [3, 5, 7])
def test_median_matches_scipy_every_mode(mode, size):
    image = make((20, 26), np.float64, seed=2)
    theirs = ndimage.median_filter(image, size=size, mode=mode)
    np.testing.assert_array_equal(filters.median_blur(image, size, mode=mode), theirs)


def test_median_with_ties_and_plateaus():
    image = np.random.default_rng(3).integers(0, 3, (30, 31)).astype(np.uint8)
    for size in (3, 5):
        np.testing.assert_array_equal(filters.median_blur(image, size), cv2.medianBlur(image, size))


@pytest.mark.parametrize("k", [3, 5, 7])
def test_selection_network_on_every_zero_one_input(k):
    # The 0-1 principle: a min/max network that selects the median of every 0-1
    # input (with sorted columns, as the first stage guarantees) does so for all
    # inputs. All (k + 1)**k such inputs at once, as boolean vectors.
    steps, target = median_module.merge_network(k)
    counts = np.array(list(itertools.product(range(k + 1), repeat=k)), dtype=np.int16)
    wires = {c * k + r: r >= k - counts[:, c] for c in range(k) for r in range(k)}
    for a, b, _, _ in steps:
        wires[a], wires[b] = wires[a] & wires[b], wires[a] | wires[b]
    np.testing.assert_array_equal(wires[target], counts.sum(axis=1) > (k * k) // 2)


def test_sort_network_sorts_every_zero_one_input():
    for n in (3, 5, 7):
        ops, order = median_module.sort_network(n)
        for bits in itertools.product((0, 1), repeat=n):
            wires = list(bits)
            for a, b in ops:
                wires[a], wires[b] = min(wires[a], wires[b]), max(wires[a], wires[b])
            assert [wires[i] for i in order] == sorted(bits)


MODES = ["nearest", "mirror", "reflect", "wrap", "constant"]
NUMPY_PAD = {
    "nearest": "edge",
    "mirror": "reflect",
    "reflect": "symmetric",
    "wrap": "wrap",
    "constant": "constant",
}
DTYPES = [np.uint8, np.uint16, np.float32, np.float64]


def median_oracle(image, k, mode="nearest"):
    """np.median of every k x k window of the padded image (NaN in a window -> NaN)."""
    r = k // 2
    widths = ((r, r), (r, r)) + (((0, 0),) if image.ndim == 3 else ())
    padded = np.pad(image.astype(np.float64), widths, mode=NUMPY_PAD[mode])
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(0, 1))
    return np.median(windows, axis=(-2, -1)).astype(image.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(19, 23), (14, 17, 2)])
@pytest.mark.parametrize("size", [3, 5, 7, 11, 15, 17, 25])
def test_median_every_dtype_size_and_mode_matches_numpy(dtype, mode, shape, size):
    # networks (up to 13 for uint8, 23 otherwise), uint8 histograms, sorted windows
    image = make(shape, dtype, seed=size)
    ours = filters.median_blur(image, size, mode=mode)
    assert ours.dtype == dtype
    np.testing.assert_array_equal(ours, median_oracle(image, size, mode))


@pytest.mark.parametrize("size", [21, 31])
def test_median_uint8_large_windows_match_cv2(size):
    image = make((70, 83, 3), np.uint8, seed=4)
    np.testing.assert_array_equal(filters.median_blur(image, size), cv2.medianBlur(image, size))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 3, 3), (1, 1, 4)])
@pytest.mark.parametrize("size", [3, 5, 15, 27])
@pytest.mark.parametrize("mode", ["nearest", "mirror", "wrap", "constant"])
def test_median_tiny_images_and_windows_larger_than_the_image(dtype, shape, size, mode):
    image = make(shape, dtype, seed=5)
    theirs = ndimage.median_filter(image, size=(size, size, 1)[: image.ndim], mode=mode)
    np.testing.assert_array_equal(filters.median_blur(image, size, mode=mode), theirs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [3, 5, 15, 25])
def test_median_on_views(dtype, size):
    base = make((40, 46, 3), dtype, seed=6)
    before = base.copy()
    for view in (base[::2, 1::3], base[..., ::2], base[:, :, 0].T, base[5:30:3, ::-1, 1]):
        expected = filters.median_blur(np.ascontiguousarray(view), size)
        np.testing.assert_array_equal(filters.median_blur(view, size), expected)
        np.testing.assert_array_equal(expected, median_oracle(np.ascontiguousarray(view), size))
    np.testing.assert_array_equal(base, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [3, 5, 15, 17, 25])
@pytest.mark.parametrize("mode", ["nearest", "wrap", "constant"])
def test_median_nan_spreads_over_every_window_that_holds_it(dtype, size, mode):
    # issue 19: one NaN gave 9 NaN at size 3, 121 at size 15 and none at 17
    image = make((30, 34), dtype, seed=7)
    image[12, 20] = np.nan
    image[0, 33] = np.nan
    before = image.copy()
    ours = filters.median_blur(image, size, mode=mode)
    expected = median_oracle(image, size, mode)  # np.median of a window with NaN is NaN
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(image, before)  # NaN compare unequal: checks the rest
    assert np.isnan(ours[12, 20]) and np.isnan(ours[0, 33])
    if mode != "wrap":  # by hand: the square of side ``size`` around each NaN, clipped
        r = size // 2
        footprint = np.zeros(image.shape, bool)
        for row, col in ((12, 20), (0, 33)):
            footprint[max(0, row - r) : row + r + 1, max(0, col - r) : col + r + 1] = True
        np.testing.assert_array_equal(np.isnan(ours), footprint)


@pytest.mark.parametrize("size", [3, 5, 25])
def test_median_infinities_are_ordinary_values(size):
    image = make((20, 21, 3), np.float32, seed=8)
    image[::3, ::4] = np.inf
    image[1::5, 2::3] = -np.inf
    np.testing.assert_array_equal(filters.median_blur(image, size), median_oracle(image, size))


def test_median_refuses_absurd_sizes_before_allocating():
    # issue 19: enormous sizes are computable before allocating
    image = make((30, 40), np.uint8, seed=9)
    with pytest.raises(ValueError, match=r"median_blur of an image of shape \(30, 40\) with"):
        filters.median_blur(image, 2_000_001)
    with limits.memory_limit("1MiB"), pytest.raises(limits.LimitError, match="size 301 needs"):
        filters.median_blur(image.astype(np.float32), 301)


def test_median_all_nan_image():
    image = np.full((5, 6), np.nan, np.float32)
    assert np.isnan(filters.median_blur(image, 3)).all()


# --------------------------------------------------------------------- bilateral

BILATERAL_CASES = [(5, 30.0, 3.0), (9, 75.0, 75.0), (7, 10.0, 2.0), (0, 20.0, 3.0), (3, 50, 1)]


@pytest.mark.parametrize("shape", [(25, 33), (21, 24, 3)])
@pytest.mark.parametrize(("diameter", "sigma_color", "sigma_space"), BILATERAL_CASES)
@pytest.mark.parametrize("mode", ["mirror", "reflect", "nearest"])
def test_bilateral_uint8_matches_cv2(shape, diameter, sigma_color, sigma_space, mode):
    border = {
        "mirror": cv2.BORDER_REFLECT_101,
        "reflect": cv2.BORDER_REFLECT,
        "nearest": cv2.BORDER_REPLICATE,
    }
    image = make(shape, np.uint8)
    theirs = cv2.bilateralFilter(image, diameter, sigma_color, sigma_space, borderType=border[mode])
    ours = filters.bilateral(image, diameter, sigma_color, sigma_space, mode=mode)
    assert ours.dtype == np.uint8
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    # OpenCV's IPP back end takes over some gray cases and rounds a few pixels differently
    assert diff.max() <= 1
    assert np.mean(diff) < 0.6


@pytest.mark.parametrize("shape", [(25, 33), (21, 24, 3)])
@pytest.mark.parametrize(("diameter", "sigma_color", "sigma_space"), BILATERAL_CASES)
def test_bilateral_uint8_reflect_nearly_exact(shape, diameter, sigma_color, sigma_space):
    image = make(shape, np.uint8, seed=5)
    theirs = cv2.bilateralFilter(
        image, diameter, sigma_color, sigma_space, borderType=cv2.BORDER_REFLECT
    )
    ours = filters.bilateral(image, diameter, sigma_color, sigma_space, mode="reflect")
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    assert np.count_nonzero(ours != theirs) <= ours.size // 200


@pytest.mark.parametrize("shape", [(25, 33), (21, 24, 3)])
@pytest.mark.parametrize(("diameter", "sigma_color", "sigma_space"), BILATERAL_CASES)
@pytest.mark.parametrize("mode", ["mirror", "reflect"])
def test_bilateral_float32_matches_cv2(shape, diameter, sigma_color, sigma_space, mode):
    border = {"mirror": cv2.BORDER_REFLECT_101, "reflect": cv2.BORDER_REFLECT}
    image = make(shape, np.float32, seed=6)
    sc = sigma_color / 255
    theirs = cv2.bilateralFilter(image, diameter, sc, sigma_space, borderType=border[mode])
    ours = filters.bilateral(image, diameter, sc, sigma_space, mode=mode)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_bilateral_limits():
    image = make((20, 20), np.uint8, seed=7)
    # tiny sigmas: a copy, as OpenCV
    np.testing.assert_array_equal(filters.bilateral(image, 5, 0, 3), image)
    # a huge colour sigma turns it into a Gaussian-weighted disk average
    flat = np.full((12, 12, 3), 77, dtype=np.uint8)
    np.testing.assert_array_equal(filters.bilateral(flat, 7, 1e6, 2), flat)
    # float64 and uint16 follow the float method
    f64 = make((15, 16), np.float64, seed=8)
    f32 = filters.bilateral(f64.astype(np.float32), 5, 0.1, 2)
    np.testing.assert_allclose(filters.bilateral(f64, 5, 0.1, 2), f32, atol=1e-5)
    u16 = (f64 * 65535).astype(np.uint16)
    out16 = filters.bilateral(u16, 5, 0.1 * 65535, 2)
    assert out16.dtype == np.uint16


def test_errors_and_input_unchanged():
    image = make((8, 9), np.uint8)
    before = image.copy()
    filters.median_blur(image, 3)
    filters.bilateral(image, 5, 10, 10)
    np.testing.assert_array_equal(image, before)
    with pytest.raises(ValueError, match="`size` must be an odd int >= 1"):
        filters.median_blur(image, 4)
    with pytest.raises(TypeError, match="`size` must be an odd int"):
        filters.median_blur(image, 3.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`diameter` must be an int"):
        filters.bilateral(image, 5.0, 10, 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`sigma_color` must be a real number"):
        filters.bilateral(image, 5, None, 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`mode` must be one of"):
        filters.median_blur(image, 3, mode="replicate")


@pytest.mark.parametrize("shape", [(70, 29), (64, 23, 3)])
def test_bilateral_uint8_on_many_strips(monkeypatch, shape):
    # 16-row strips: every strip's flat slices reach into the rows of its
    # neighbours and into the border rows and columns
    bilateral_module = importlib.import_module("convstack.filters.bilateral")
    monkeypatch.setattr(bilateral_module, "_STRIP_BYTES", 1)
    strip_module = importlib.import_module("convstack.filters._dtype")
    split = []
    real_pool = strip_module._pool

    class Spy:
        def submit(self, work, start, stop):
            split.append((start, stop))
            return real_pool().submit(work, start, stop)

    monkeypatch.setattr(strip_module, "_pool", Spy)
    image = make(shape, np.uint8, seed=9)
    for diameter, sigma_color, sigma_space, mode in ((9, 75, 75, "reflect"), (7, 30, 3, "nearest")):
        border = cv2.BORDER_REFLECT if mode == "reflect" else cv2.BORDER_REPLICATE
        theirs = cv2.bilateralFilter(image, diameter, sigma_color, sigma_space, borderType=border)
        ours = filters.bilateral(image, diameter, sigma_color, sigma_space, mode=mode)
        diff = np.abs(ours.astype(int) - theirs.astype(int))
        assert diff.max() <= 1
        assert np.count_nonzero(diff) <= diff.size // 200
    assert split[:2] == [(0, 16), (16, 32)]


@pytest.mark.parametrize("shape", [(130, 40), (131, 37, 3)])
def test_bilateral_uint8_on_equal_strips(shape):
    # the default split: at least one strip per thread, of equal height (the
    # last one shorter when the rows do not divide), on the thread pool
    image = make(shape, np.uint8, seed=10)
    theirs = cv2.bilateralFilter(image, 9, 40, 5, borderType=cv2.BORDER_REFLECT)
    ours = filters.bilateral(image, 9, 40, 5, mode="reflect")
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    assert diff.max() <= 1
    assert np.count_nonzero(diff) <= diff.size // 200


@pytest.mark.parametrize("shape", [(60, 50), (40, 45, 3)])
@pytest.mark.parametrize("sigma_color", [1.0, 5.0])
def test_bilateral_uint8_small_sigma_color(shape, sigma_color):
    # small colour sigmas drive most weights below 2**-100, where the filter floors
    # them (float32 denormals are slow); the result must still be OpenCV's
    image = make(shape, np.uint8, seed=11)
    theirs = cv2.bilateralFilter(image, 9, sigma_color, 5, borderType=cv2.BORDER_REFLECT_101)
    ours = filters.bilateral(image, 9, sigma_color, 5)
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    assert diff.max() <= 1
    assert np.count_nonzero(diff) <= diff.size // 200


def bilateral_oracle(image, diameter, sigma_color, sigma_space, mode="mirror"):
    """OpenCV's float method as a slow loop over the window of every pixel (float64).
    The table spans the image's values, and 0 for the 'constant' border."""
    numpy_mode = {"mirror": "reflect", "reflect": "symmetric", "nearest": "edge"}.get(mode, mode)
    img = image.astype(np.float64)
    if img.ndim == 2:
        img = img[..., None]
    radius = diameter // 2 if diameter > 0 else int(np.rint(1.5 * sigma_space))
    padded = np.pad(img, ((radius, radius), (radius, radius), (0, 0)), mode=numpy_mode)
    lo, hi = float(img.min()), float(img.max())
    if mode == "constant":
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    bins = 4096 * img.shape[2]
    scale = np.float32(bins / np.float32((hi - lo) * img.shape[2]))
    table = np.exp(-0.5 * (np.arange(bins + 2) / float(scale)) ** 2 / sigma_color**2)
    table = table.astype(np.float32)
    out = np.empty_like(img)
    for y in range(img.shape[0]):
        for x in range(img.shape[1]):
            centre = img[y, x]
            total, wsum = centre.copy(), 1.0
            for i in range(-radius, radius + 1):
                for j in range(-radius, radius + 1):
                    r = np.hypot(i, j)
                    if r > radius or (i == 0 and j == 0):
                        continue
                    q = padded[y + radius + i, x + radius + j]
                    alpha = float(np.abs(q - centre).sum()) * float(scale)
                    k = int(alpha)
                    color = table[k] + (alpha - k) * (table[k + 1] - table[k])
                    w = color * float(np.float32(np.exp(-0.5 * r * r / sigma_space**2)))
                    total += w * q
                    wsum += w
            out[y, x] = total / wsum
    return out.reshape(image.shape)


@pytest.mark.parametrize("shape", [(9, 11), (8, 7, 3), (1, 6), (6, 1), (1, 1), (2, 3, 2)])
@pytest.mark.parametrize("mode", ["mirror", "reflect", "nearest"])
def test_bilateral_float64_matches_a_slow_loop(shape, mode):
    image = make(shape, np.float64, seed=13)
    ours = filters.bilateral(image, 5, 0.3, 2.0, mode=mode)
    if image.max() - image.min() < np.finfo(np.float32).eps:  # (1, 1): flat, a copy
        np.testing.assert_array_equal(ours, image)
        return
    np.testing.assert_allclose(ours, bilateral_oracle(image, 5, 0.3, 2.0, mode), rtol=1e-6)


def bilateral_u8_oracle(image, diameter, sigma_color, sigma_space, mode="mirror"):
    """OpenCV's 8-bit method, one window offset at a time in float64: weight
    float32(exp(r**2 gs)) * float32(exp(D**2 gc)), D the integer L1 distance. The
    border by numpy.pad; 'mean' pads each channel with its mean, truncated to uint8."""
    img = image.astype(np.int64)
    if img.ndim == 2:
        img = img[..., None]
    radius = diameter // 2
    rows, cols = img.shape[:2]
    widths = ((radius, radius), (radius, radius))
    numpy_mode = {"mirror": "reflect", "reflect": "symmetric", "nearest": "edge"}.get(mode, mode)
    if mode == "mean":
        fill = image.reshape(rows, cols, -1).mean(axis=(0, 1)).astype(np.uint8)
        padded = np.stack(
            [np.pad(img[..., c], widths, constant_values=fill[c]) for c in range(img.shape[2])],
            axis=2,
        )
    else:
        padded = np.pad(img, widths + ((0, 0),), mode=numpy_mode)
    gauss_space = np.float32(-0.5 / sigma_space**2)
    total = np.zeros(img.shape)
    wsum = np.zeros((rows, cols, 1))
    for i in range(-radius, radius + 1):
        for j in range(-radius, radius + 1):
            r = np.sqrt(float(i * i + j * j))
            if r > radius:
                continue
            space = np.float32(np.exp(r * r * gauss_space))
            q = padded[radius + i : radius + i + rows, radius + j : radius + j + cols]
            d = np.abs(q - img).sum(axis=2, keepdims=True)
            color = np.exp(d * d * (-0.5 / sigma_color**2)).astype(np.float32)
            w = (space * color).astype(np.float64)
            total += w * q
            wsum += w
    return np.rint(total / wsum).astype(np.uint8).reshape(image.shape)


@pytest.mark.parametrize("shape", [(37, 41), (33, 30, 2), (29, 35, 3), (31, 26, 4)])
@pytest.mark.parametrize(("diameter", "sigma_color"), [(9, 75.0), (5, 20.0), (7, 8.0)])
def test_bilateral_uint8_matches_a_slow_loop_for_any_channel_count(shape, diameter, sigma_color):
    # gray and colour take fused loops (two window offsets a pass), 2 and 4 channels the
    # generic ones; OpenCV takes only 1 or 3 channels, so a slow loop is the reference
    image = make(shape, np.uint8, seed=22)
    ours = filters.bilateral(image, diameter, sigma_color, 3.0)
    diff = np.abs(ours.astype(int) - bilateral_u8_oracle(image, diameter, sigma_color, 3.0))
    assert diff.max() <= 1
    assert np.count_nonzero(diff) <= diff.size // 200


@pytest.mark.parametrize("shape", [(19, 23), (17, 21, 3), (15, 18, 2), (4, 30, 3), (2, 1)])
@pytest.mark.parametrize("mode", ["constant", "wrap", "mean", "reflect", "nearest"])
def test_bilateral_uint8_every_border_matches_a_slow_loop(shape, mode):
    # the strips lay out their padded rows through row / column maps (a constant fill
    # for 'constant' and 'mean'); pads wider than the image (4 and 2 rows) repeat it
    image = make(shape, np.uint8, seed=23)
    image[..., :1] //= 2  # channel means apart: 'mean' pads each with its own
    ours = filters.bilateral(image, 9, 40.0, 3.0, mode=mode)
    diff = np.abs(ours.astype(int) - bilateral_u8_oracle(image, 9, 40.0, 3.0, mode))
    assert diff.max() <= 1
    assert np.count_nonzero(diff) <= max(1, diff.size // 200)


@pytest.mark.parametrize(("sigma_color", "bins"), [(0.3, 3 * 4096), (0.05, 4096), (1e-30, 4096)])
def test_bilateral_float_colour_weights_are_within_1e_7_of_the_table(sigma_color, bins):
    # the float method's table, float32(exp(-v**2 / (2 sc**2))) at v = i / scale, is
    # computed in the loop; against numpy's table, interpolated at whole and half bins
    kernels = importlib.import_module("convstack._k_bilateral")
    scale = np.float32(bins / np.float32(3.0 if bins > 4096 else 1.0))
    with np.errstate(over="ignore", invalid="ignore"):
        gauss = -0.5 / sigma_color**2
        table = np.exp((np.arange(bins + 2) / float(scale)) ** 2 * gauss).astype(np.float32)
    table[0] = 1
    log2_coeff = np.float32(max(gauss * np.log2(np.e), -1e30))
    magic = np.float32(1.5 * 2**23)
    for alpha in (np.arange(bins) + 0.5, np.arange(bins)):
        alpha = alpha.astype(np.float32)
        ours = [
            kernels._table_weight(
                a, np.float32(1 / float(scale)), log2_coeff, magic, kernels.EXP2_POLY
            )
            for a in alpha
        ]
        low = table[alpha.astype(int)].astype(np.float64)
        expected = low + (alpha - alpha.astype(int)) * (table[alpha.astype(int) + 1] - low)
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("shape", [(9, 11), (8, 7, 3), (3, 12)])
@pytest.mark.parametrize("mode", ["constant", "wrap"])
def test_bilateral_float_constant_and_wrap_borders_match_a_slow_loop(shape, mode):
    # values in [0.5, 1]: the constant border's zeros lie below them, and the colour
    # table must reach them (it spanned the image's values only, and was read past its end)
    image = 0.5 + 0.5 * make(shape, np.float64, seed=24)
    ours = filters.bilateral(image, 5, 0.3, 2.0, mode=mode)
    np.testing.assert_allclose(ours, bilateral_oracle(image, 5, 0.3, 2.0, mode), rtol=1e-6)
    f32 = filters.bilateral(image.astype(np.float32), 5, 0.3, 2.0, mode=mode)
    np.testing.assert_allclose(f32, ours, rtol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 3, 3), (3, 2)])
@pytest.mark.parametrize("mode", ["mirror", "reflect", "nearest"])
def test_bilateral_uint8_tiny_images_match_cv2(shape, mode):
    border = {
        "mirror": cv2.BORDER_REFLECT_101,
        "reflect": cv2.BORDER_REFLECT,
        "nearest": cv2.BORDER_REPLICATE,
    }
    image = make(shape, np.uint8, seed=14)
    ours = filters.bilateral(image, 9, 60, 3, mode=mode)
    theirs = cv2.bilateralFilter(image, 9, 60, 3, borderType=border[mode])
    assert np.abs(ours.astype(int) - theirs.reshape(ours.shape).astype(int)).max() <= 1


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_bilateral_on_views_and_input_unchanged(dtype):
    base = make((40, 46, 3), dtype, seed=15)
    before = base.copy()
    sigma_color = 40 if dtype == np.uint8 else 0.2 * (65535 if dtype == np.uint16 else 1)
    for view in (base[::2, 1::3], base[..., ::2], base[:, :, 0].T, base[5:30:3, ::-1, 1]):
        ours = filters.bilateral(view, 7, sigma_color, 3)
        expected = filters.bilateral(np.ascontiguousarray(view), 7, sigma_color, 3)
        np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(base, before)


@pytest.mark.parametrize("shape", [(30, 33), (25, 27, 3)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bilateral_non_finite_windows_give_nan(shape, bad, dtype):
    # issue 19: NaN gave IndexError, inf ZeroDivisionError
    image = make(shape, dtype, seed=16)
    image[12, 20] = bad
    before = image.copy()
    ours = filters.bilateral(image, 7, 0.3, 2.0)
    np.testing.assert_array_equal(image, before)
    # by hand: the disc of radius 3 around (12, 20), 29 pixels, all NaN; nothing else
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    disc = (rows - 12) ** 2 + (cols - 20) ** 2 <= 9
    nan = np.isnan(ours) if ours.ndim == 2 else np.isnan(ours).all(axis=2)
    np.testing.assert_array_equal(nan, disc)
    assert np.count_nonzero(disc) == 29
    # elsewhere: the filter of the finite image, where the window misses the bad sample
    clean = image.copy()
    clean[12, 20] = image[~np.isnan(image) & np.isfinite(image)].min()
    np.testing.assert_allclose(ours[~disc], filters.bilateral(clean, 7, 0.3, 2.0)[~disc])


def test_bilateral_all_nan_and_huge_values():
    assert np.isnan(filters.bilateral(np.full((4, 5), np.nan, np.float32), 5, 1, 1)).all()
    # differences of 1e308 overflow: an exact power-of-two scaling gives the same weights
    image = make((20, 21), np.float64, seed=17)
    scaled = image * 2.0**1020
    ours = filters.bilateral(scaled, 5, 0.3 * 2.0**1020, 2.0)
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours / 2.0**1020, filters.bilateral(image, 5, 0.3, 2.0), rtol=1e-12)
    f32 = np.array([[3e38, -3e38, 1e38], [0, 2e38, -1e38]], np.float32)
    assert np.isfinite(filters.bilateral(f32, 3, 1e38, 1.0)).all()


def test_bilateral_radius_cut_where_space_weights_underflow():
    # issue 19: a diameter of 4001 on a 40x50 image ran for minutes; beyond 14.4
    # sigma_space the float32 space weights are exactly 0, so the cut changes nothing
    bilateral_module = importlib.import_module("convstack.filters.bilateral")
    gauss = float(np.float32(-0.5 / 1.5**2))
    radius = bilateral_module._radius(4001, 1.5, gauss)
    assert np.float32(np.exp(radius**2 * gauss)) > 0
    assert np.float32(np.exp((radius + 1) ** 2 * gauss)) == 0
    # by hand: exp(-r**2 / 4.5) < 2**-150 once r**2 > 4.5 * 150 ln 2 = 467.9
    assert radius == 21
    image = make((30, 34, 3), np.uint8, seed=18)
    np.testing.assert_array_equal(
        filters.bilateral(image, 4001, 50, 1.5), filters.bilateral(image, 2 * radius + 1, 50, 1.5)
    )
    theirs = cv2.bilateralFilter(image, 61, 50, 1.5)  # radius 30, past the cut
    assert np.abs(filters.bilateral(image, 61, 50, 1.5).astype(int) - theirs).max() <= 1


@pytest.mark.parametrize("shape", [(12, 15), (11, 9, 3)])
@pytest.mark.parametrize("diameter", [31, 7])
def test_bilateral_float_windows_wider_than_the_image_match_cv2(shape, diameter):
    # a window wider than the image takes the one-offset-at-a-time loop, a narrower one
    # the flat pairs: both OpenCV's
    image = make(shape, np.float32, seed=21)
    theirs = cv2.bilateralFilter(image, diameter, 0.3, 5.0)
    ours = filters.bilateral(image, diameter, 0.3, 5.0)
    np.testing.assert_allclose(ours, theirs.reshape(ours.shape), rtol=1e-4, atol=1e-5)


def test_bilateral_refuses_absurd_windows():
    image = make((40, 50), np.float32, seed=19)
    with pytest.raises(ValueError, match=r"with a window wider than the image, more than"):
        filters.bilateral(image, 4001, 10, 1000)
    with pytest.raises(ValueError, match=r"radius 2000, .* use a smaller `diameter`"):
        filters.bilateral(image.astype(np.uint8), 4001, 10, 1000)


def test_cli_bilateral_refuses_an_absurd_window(tmp_path, capsys):
    from convstack.cli import main
    from convstack.stack.io import write_image

    write_image(tmp_path / "in.png", make((40, 50), np.uint8, seed=20))
    code = main(
        ["filter", "bilateral", str(tmp_path / "in.png"), str(tmp_path / "out.png")]
        + ["--diameter", "4001", "--sigma-space", "1000"]
    )
    assert code != 0
    assert "use a smaller --diameter or --sigma-space" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


# ------------------------------------------------------------------ across a fork


def _compiled_filters(image):
    return [
        filters.median_blur(image, 5),
        filters.median_blur(image, 17),
        filters.box_blur(image, 31),
        filters.bilateral(image, 9, 40, 5),
    ]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_compiled_filters_in_a_child_forked_after_they_ran():
    # issue 13: the kernels ran (on the strip threads) in this process first; a child
    # forked afterwards must be able to run them again and get the same bits. A bare
    # os.fork: the pipeline's can_fork() declines while another library's thread is
    # alive (dask's, after other tests), and this child only computes
    image = make((150, 70, 3), np.uint8, seed=12)
    parent = _compiled_filters(image)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as stream:
                pickle.dump(_compiled_filters(image), stream)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as stream:
        ready, _, _ = select.select([stream], [], [], 120)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        results = pickle.load(stream) if ready else None
    _, status = os.waitpid(pid, 0)
    assert results is not None, "the forked child did not answer within 120 s"
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert len(results) == len(parent)
    for theirs, ours in zip(results, parent, strict=True):
        np.testing.assert_array_equal(theirs, ours)
