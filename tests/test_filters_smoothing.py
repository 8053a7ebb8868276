"""box_blur, gaussian_blur and unsharp_mask against OpenCV, SciPy, scikit-image and the lab."""

from __future__ import annotations

import numpy as np
import pytest

import convstack
from convstack import filters, kernels

cv2 = pytest.importorskip("cv2")
ndimage = pytest.importorskip("scipy.ndimage")

BORDERS = {
    "mirror": cv2.BORDER_REFLECT_101,
    "reflect": cv2.BORDER_REFLECT,
    "nearest": cv2.BORDER_REPLICATE,
    "constant": cv2.BORDER_CONSTANT,
}
DTYPES = [np.uint8, np.uint16, np.float32, np.float64]
SHAPES = [(23, 31), (19, 26, 3)]


def make(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    return rng.random(shape).astype(dtype)


def assert_close(ours, theirs, *, exact_int=True):
    assert ours.dtype == theirs.dtype
    assert ours.shape == theirs.shape
    if theirs.dtype.kind == "u":
        diff = np.abs(ours.astype(np.int64) - theirs.astype(np.int64))
        assert diff.max() <= (0 if exact_int else 1)
    else:
        scale = max(1.0, float(np.abs(theirs).max()))
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * scale)


# --------------------------------------------------------------------------- box


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", list(BORDERS))
@pytest.mark.parametrize("size", [3, 5, 7, 11])
def test_box_blur_matches_cv2_odd_square(dtype, shape, mode, size):
    image = make(shape, dtype)
    expected = cv2.blur(image, (size, size), borderType=BORDERS[mode])
    # uint16 sums above 2**24 pass through float32 inside OpenCV: allow one level there
    assert_close(filters.box_blur(image, size, mode=mode), expected, exact_int=dtype == np.uint8)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("size", [1, 2, 4, (2, 3), (3, 8), (1, 9), 16, 21])
def test_box_blur_other_sizes_within_one_level(dtype, size):
    image = make((40, 37, 3), dtype, seed=1)
    rows, cols = (size, size) if isinstance(size, int) else size
    expected = cv2.blur(image, (cols, rows))
    assert_close(filters.box_blur(image, size), expected, exact_int=False)


def test_box_blur_matches_scipy_uniform_filter():
    image = make((30, 41), np.float64, seed=2)
    for size in (3, 9, 25):
        ours = filters.box_blur(image, size, mode="reflect")
        theirs = ndimage.uniform_filter(image, size, mode="reflect")
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_box_blur_large_window_float32_stays_accurate():
    image = make((300, 260), np.float32, seed=3) * 1000
    ours = filters.box_blur(image, 101)
    theirs = ndimage.uniform_filter(image.astype(np.float64), 101, mode="mirror")
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


LARGE_SIZES = [31, 61, (61, 17), (9, 61)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(70, 90), (50, 66, 3)])
@pytest.mark.parametrize("mode", list(BORDERS))
@pytest.mark.parametrize("size", LARGE_SIZES)
def test_box_blur_large_windows_match_cv2(dtype, shape, mode, size):
    image = make(shape, dtype, seed=5)
    rows, cols = (size, size) if isinstance(size, int) else size
    expected = cv2.blur(image, (cols, rows), borderType=BORDERS[mode])
    ours = filters.box_blur(image, size, mode=mode)
    assert_close(ours, expected, exact_int=dtype == np.uint8 and rows == cols)
    if dtype == np.float32:  # tighter than assert_close: the ~1e-6 the docs promise
        np.testing.assert_allclose(ours, expected, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("mode", ["wrap", "reflect", "mirror", "nearest", "constant", "mean"])
@pytest.mark.parametrize("shape", [(40, 70), (33, 50, 3)])
def test_box_blur_matches_a_padded_window_mean_every_mode(mode, shape):
    # oracle: numpy.pad (or convstack.pad for 'mean', which numpy lacks) and the mean
    # of every window by sliding_window_view
    image = make(shape, np.float64, seed=12)
    for size in (5, 31, (61, 7), (4, 6)):
        rows, cols = (size, size) if isinstance(size, int) else size
        pads = ((rows // 2, rows - 1 - rows // 2), (cols // 2, cols - 1 - cols // 2))
        if mode == "mean":
            channel_axis = 2 if image.ndim == 3 else None
            padded = convstack.pad(image, pads, mode="mean", channel_axis=channel_axis)
        else:
            numpy_mode = {"nearest": "edge", "mirror": "reflect", "reflect": "symmetric"}
            widths = pads + (((0, 0),) if image.ndim == 3 else ())
            padded = np.pad(image, widths, mode=numpy_mode.get(mode, mode))
        windows = np.lib.stride_tricks.sliding_window_view(padded, (rows, cols), axis=(0, 1))
        theirs = windows.mean(axis=(-2, -1))
        ours = filters.box_blur(image, size, mode=mode)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (40, 1), (2, 40), (3, 40, 3), (1, 1, 2)])
@pytest.mark.parametrize("size", [2, 3, 7, (4, 3), (9, 1), 45])
@pytest.mark.parametrize("mode", ["mirror", "constant", "nearest"])
def test_box_blur_tiny_images_and_windows_larger_than_the_image(dtype, shape, size, mode):
    image = make(shape, dtype, seed=6)
    rows, cols = (size, size) if isinstance(size, int) else size
    expected = cv2.blur(image, (cols, rows), borderType=BORDERS[mode])
    assert_close(filters.box_blur(image, size, mode=mode), expected, exact_int=False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_box_blur_on_views(dtype):
    base = make((60, 52, 3), dtype, seed=13)
    before = base.copy()
    for view in (base[::2, 1::3], base[..., ::2], base[:, :, 0].T, base[5:50:3, ::-1, 1]):
        for size in (3, (8, 5), 31):
            ours = filters.box_blur(view, size)
            np.testing.assert_array_equal(ours, filters.box_blur(np.ascontiguousarray(view), size))
            rows, cols = (size, size) if isinstance(size, int) else size
            expected = cv2.blur(np.ascontiguousarray(view), (cols, rows))
            assert_close(ours, expected, exact_int=dtype != np.uint16 and rows == cols)
    np.testing.assert_array_equal(base, before)


def test_box_blur_on_many_strips(small_strips):
    # every 16-row strip restarts its running sums
    for dtype in (np.uint8, np.uint16, np.float32):
        image = make((90, 41, 3), dtype, seed=7)
        for size in (21, (33, 5)):
            rows, cols = (size, size) if isinstance(size, int) else size
            expected = cv2.blur(image, (cols, rows))
            assert_close(filters.box_blur(image, size), expected, exact_int=rows == cols)


def test_box_blur_float32_leaves_no_trace_of_a_bright_region():
    # a running sum in float32 carried the rounding error of the bright rows
    # into the dark ones (7.5 % off); every output must be accurate relative
    # to its own window
    image = np.full((300, 40), 1e4, np.float32)
    image[100:] = 1e-2
    image[:, 20:] = image[:, :20][::-1]  # bright above dark and below it
    image += make(image.shape, np.float32, seed=9) * np.float32(1e-3)
    for img in (image, np.ascontiguousarray(image.T)):  # down the rows and along them
        ours = filters.box_blur(img, 21)
        theirs = ndimage.uniform_filter(img.astype(np.float64), 21, mode="mirror")
        np.testing.assert_allclose(ours, theirs, rtol=2e-6)


def test_box_blur_float32_running_sum_does_not_drift_on_a_tall_or_wide_image():
    # 4096 rows (and columns) of values near 1000: a float32 running sum over the
    # whole column or row would drift; the sums must stay within ~1e-6 of float64 ones
    image = 1000 + make((4096, 8), np.float32, seed=10)
    for img, size in ((image, (101, 3)), (np.ascontiguousarray(image.T), (3, 101))):
        ours = filters.box_blur(img, size)
        theirs = ndimage.uniform_filter(img.astype(np.float64), size, mode="mirror")
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_box_blur_uint16_large_window_is_exact():
    # sums of 255 rows of values up to 16383 (int32), rounded once
    image = make((600, 6), np.uint16, seed=11) // 64
    image[:300] = 16383 - image[:300]
    ours = filters.box_blur(image, (255, 1), mode="nearest")
    means = ndimage.uniform_filter(image.astype(np.float64), (255, 1), mode="nearest")
    assert np.abs(ours - means).max() <= 0.5 + 1e-6


def test_box_blur_uint16_sums_past_int32_are_exact():
    # 65535 * 40401 samples does not fit in int32: the sums run in int64
    image = np.full((30, 30), 65535, np.uint16)
    image[::2, ::3] = 65534
    ours = filters.box_blur(image, 201, mode="wrap")
    means = ndimage.uniform_filter(image.astype(np.float64), 201, mode="wrap")
    np.testing.assert_array_equal(ours, np.rint(means).astype(np.uint16))


# ---------------------------------------------------------------------- gaussian


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", list(BORDERS))
@pytest.mark.parametrize(("size", "sigma"), [(3, 0), (5, 0), (7, 0), (9, 0), (11, 0), (5, 1.0)])
def test_gaussian_blur_matches_cv2(dtype, shape, mode, size, sigma):
    image = make(shape, dtype)
    expected = cv2.GaussianBlur(image, (size, size), sigma, borderType=BORDERS[mode])
    assert_close(filters.gaussian_blur(image, size, sigma, mode=mode), expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize(
    ("size", "sigma", "sigma_y"),
    [((3, 7), 0, None), ((9, 5), 2.0, 0.7), (21, 3.0, None), (0, 1.7, None), ((0, 0), 2.2, 1.1)],
)
def test_gaussian_blur_anisotropic_and_auto_size(dtype, size, sigma, sigma_y):
    image = make((45, 52, 3), dtype, seed=4)
    rows, cols = (size, size) if isinstance(size, int) else size
    expected = cv2.GaussianBlur(image, (cols, rows), sigma, sigmaY=sigma_y or 0)
    assert_close(filters.gaussian_blur(image, size, sigma, sigma_y=sigma_y), expected)


def test_gaussian_blur_uint8_bit_exact_on_larger_image():
    image = make((300, 257, 3), np.uint8, seed=5)
    for size in (3, 5, 7, 15):
        ours = filters.gaussian_blur(image, size)
        np.testing.assert_array_equal(ours, cv2.GaussianBlur(image, (size, size), 0))


def test_gaussian_blur_matches_scipy_gaussian_filter():
    image = make((33, 40), np.float64, seed=6)
    sigma, radius = 1.6, 6
    ours = filters.gaussian_blur(image, 2 * radius + 1, sigma, mode="nearest")
    theirs = ndimage.gaussian_filter(image, sigma, mode="nearest", truncate=radius / sigma)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 30), (30, 1), (3, 3), (4, 7, 3), (2, 9)])
@pytest.mark.parametrize("mode", ["mirror", "reflect", "nearest"])
def test_tiny_images_and_single_rows_like_opencv(dtype, shape, mode):
    # OpenCV drops the kernel along an axis of length 1 and reflects again where
    # the pad is wider than the image
    image = make(shape, dtype, seed=7)
    for size in (5, 11):
        expected = cv2.GaussianBlur(image, (size, size), 0, borderType=BORDERS[mode])
        assert_close(filters.gaussian_blur(image, size, mode=mode), expected)
        expected = cv2.blur(image, (size, size), borderType=BORDERS[mode])
        assert_close(filters.box_blur(image, size, mode=mode), expected, exact_int=False)


@pytest.fixture
def small_strips(monkeypatch):
    """Cut every image into 16-row strips (the filters' pool) or 7 row ranges (the
    engine's threads, the Gaussian's separable rows): inner strips read the image in
    place, the first and last ones gather border rows by index."""
    from convstack import _methods
    from convstack.filters import _dtype, smoothing

    real = _dtype.strips

    def tiny(rows, row_bytes, work, *, target=0):
        real(rows, row_bytes, work, target=16 * row_bytes)

    monkeypatch.setattr(smoothing, "strips", tiny)
    monkeypatch.setattr(_methods, "THREADS", 7)
    monkeypatch.setattr(_methods, "THREAD_MIN_WORK", 0)


SCIPY_MODES = ["constant", "nearest", "reflect", "mirror", "wrap"]


@pytest.mark.parametrize("mode", SCIPY_MODES)
def test_strip_filters_match_scipy_in_every_mode(small_strips, mode):
    # colour floats, gray uint8 and colour box means on many strips, against
    # SciPy's per-channel correlation with the same taps and border rule
    image = make((75, 23, 3), np.float64, seed=11)
    for size, sigma in ((5, 0.0), (11, 2.5), (3, 0.8)):
        taps = kernels.gaussian(size, sigma, ndim=1)
        theirs = ndimage.correlate1d(image, taps, axis=0, mode=mode)
        theirs = ndimage.correlate1d(theirs, taps, axis=1, mode=mode)
        ours = filters.gaussian_blur(image, size, sigma, mode=mode)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
        box = ndimage.uniform_filter(image, (size, size, 1), mode=mode)
        np.testing.assert_allclose(filters.box_blur(image, size, mode=mode), box, atol=1e-12)
    gray = make((70, 37), np.uint8, seed=12)
    for size in (5, 7):  # binomial (uint16 only) and general (uint32 columns) paths
        exact = ndimage.correlate(
            gray.astype(np.int64),
            np.outer(
                *[np.array(filters.smoothing._fixed_point(kernels.gaussian(size, 0.0, ndim=1), 8))]
                * 2
            ),
            mode=mode,
        )
        expected = ((exact + (1 << 15)) >> 16).astype(np.uint8)
        np.testing.assert_array_equal(filters.gaussian_blur(gray, size, mode=mode), expected)
    assert filters.box_blur(gray, 4, mode=mode).shape == gray.shape


def test_strip_filters_match_cv2_on_many_strips(small_strips):
    image = make((90, 41, 3), np.uint8, seed=13)
    for size in (3, 5, 9):
        np.testing.assert_array_equal(
            filters.gaussian_blur(image, size), cv2.GaussianBlur(image, (size, size), 0)
        )
        np.testing.assert_array_equal(filters.box_blur(image, size), cv2.blur(image, (size, size)))
    floats = make((90, 41, 3), np.float32, seed=14)
    assert_close(filters.gaussian_blur(floats, 7), cv2.GaussianBlur(floats, (7, 7), 0))
    assert_close(filters.box_blur(floats, 21), cv2.blur(floats, (21, 21)))
    # colour derivatives share the strip passes (antisymmetric taps, two terms)
    for mode in ("mirror", "nearest", "constant"):
        border = BORDERS[mode]
        for dx, dy, size in ((1, 0, 3), (0, 1, 5), (1, 1, 3), (2, 0, 7)):
            theirs = cv2.Sobel(image, cv2.CV_32F, dx, dy, ksize=size, borderType=border)
            assert_close(filters.sobel(image, dx, dy, size, mode=mode), theirs)
        for size in (1, 3):
            theirs = cv2.Laplacian(image, cv2.CV_32F, ksize=size, borderType=border)
            assert_close(filters.laplacian(image, size, mode=mode), theirs)
        theirs = cv2.Scharr(floats, cv2.CV_32F, 0, 1, borderType=border)
        assert_close(filters.scharr(floats, 0, 1, mode=mode), theirs)


# ----------------------------------------------------------------------- unsharp


def test_unsharp_mask_matches_skimage():
    skfilters = pytest.importorskip("skimage.filters")
    image = make((40, 44), np.float64, seed=8)
    ours = filters.unsharp_mask(image, 1.5, 0.8, mode="reflect")
    theirs = skfilters.unsharp_mask(image, radius=1.5, amount=0.8, preserve_range=True)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_unsharp_mask_uint8_saturates_and_rounds():
    skfilters = pytest.importorskip("skimage.filters")
    image = make((30, 32), np.uint8, seed=9)
    ours = filters.unsharp_mask(image, 1.0, 2.0, mode="reflect")
    theirs = skfilters.unsharp_mask(
        image.astype(np.float64), radius=1.0, amount=2.0, preserve_range=True
    )
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, np.clip(np.rint(theirs), 0, 255).astype(np.uint8))
    colour = make((20, 22, 3), np.uint8, seed=11)
    per_channel = [filters.unsharp_mask(colour[..., c], 1.0, 2.0) for c in range(3)]
    np.testing.assert_array_equal(filters.unsharp_mask(colour, 1.0, 2.0), np.dstack(per_channel))


def test_unsharp_mask_amount_zero_is_identity_and_flat_stays_flat():
    image = make((10, 12), np.uint16, seed=10)
    np.testing.assert_array_equal(filters.unsharp_mask(image, 2.0, 0.0), image)
    flat = np.full((9, 9), 0.25, dtype=np.float32)
    np.testing.assert_allclose(filters.unsharp_mask(flat, 1.0, 3.0), flat, atol=1e-6)


# -------------------------------------------------------------------- lab task 3


def lab_cvconv(f, g):
    """The lab's ``cvconv``: zero border by copyMakeBorder, filter2D, crop."""
    pv, ph = (g.shape[0] - 1) // 2, (g.shape[1] - 1) // 2
    fb = cv2.copyMakeBorder(f, pv, pv, ph, ph, cv2.BORDER_CONSTANT, 0)
    out = cv2.filter2D(fb.astype(g.dtype), -1, g)
    return out[pv : fb.shape[0] - pv, ph : fb.shape[1] - ph]


def lab_gaussian_kernel(size, sig=3.0):
    vec = np.linspace(-(size // 2), size // 2, size)
    vec = 1 / (np.sqrt(2 * np.pi) * sig) * np.e ** (-np.power(vec / sig, 2) / 2)
    kernel = np.outer(vec, vec)
    return kernel / kernel.max()


@pytest.fixture(scope="module")
def rgb():
    data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(data.astronaut()[100:228, 150:278])


def test_lab_task3_box_11_per_channel(rgb):
    expected = lab_cvconv(rgb, np.ones((11, 11)) / 121)
    ours = filters.box_blur(rgb, 11, mode="constant")
    assert np.abs(ours.astype(float) - expected).max() <= 0.5 + 1e-9
    per_channel = np.stack(
        [filters.box_blur(rgb[..., c], 11, mode="constant") for c in range(3)], axis=-1
    )
    np.testing.assert_array_equal(ours, per_channel)


def test_lab_task3_gaussian_21_sums_to_one_unlike_the_lab(rgb):
    lab_kernel = lab_gaussian_kernel(21, 3.0)
    ours_kernel = kernels.gaussian(21, 3.0)
    # Same shape of bell, different normalisation: ours sums to 1, the lab's peaks at 1.
    np.testing.assert_allclose(ours_kernel, lab_kernel / lab_kernel.sum(), rtol=1e-12)
    assert lab_kernel.sum() > 50
    ours = filters.gaussian_blur(rgb, 21, 3.0, mode="constant")
    bordered = cv2.GaussianBlur(rgb, (21, 21), 3.0, borderType=cv2.BORDER_CONSTANT)
    np.testing.assert_array_equal(ours, bordered)
    # OpenCV's (and our) uint8 path quantises the taps to 1/256: within 1.5 of the float result
    assert np.abs(ours.astype(float) - lab_cvconv(rgb, ours_kernel)).max() < 1.5
    # The lab's kernel multiplies the brightness by its sum (~57): everything saturates.
    brightened = lab_cvconv(rgb, lab_kernel)
    centre = (slice(20, -20), slice(20, -20))
    assert brightened[centre].mean() > 40 * rgb[centre].mean()
    assert abs(ours[centre].mean() - rgb[centre].mean()) < 0.02 * rgb[centre].mean()


# ------------------------------------------------------------------------ errors


def test_inputs_unchanged_and_top_level_exports():
    image = make((12, 13, 3), np.uint8)
    before = image.copy()
    for f in (convstack.box_blur, convstack.gaussian_blur):
        f(image, 3)
    convstack.unsharp_mask(image)
    np.testing.assert_array_equal(image, before)


def test_errors():
    image = make((8, 8), np.uint8)
    with pytest.raises(ValueError, match="`size` must be odd for every axis"):
        filters.gaussian_blur(image, 4)
    with pytest.raises(ValueError, match="`size` must be >= 1"):
        filters.box_blur(image, 0)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        filters.box_blur(image, 3, mode="edge")
    with pytest.raises(TypeError, match="`image` must have dtype uint8, uint16, float32"):
        filters.box_blur(image.astype(np.int32), 3)
    with pytest.raises(ValueError, match=r"`image` must be 2-D \(rows, cols\) or 3-D"):
        filters.gaussian_blur(np.zeros(5, np.float32), 3)
    with pytest.raises(TypeError, match="`sigma` must be a real number"):
        filters.gaussian_blur(image, 3, "wide")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`sigma` must be"):
        filters.unsharp_mask(image, 0.0)
    with pytest.raises(ValueError, match="`image` must not be empty"):
        filters.box_blur(np.zeros((0, 3), np.uint8), 3)
