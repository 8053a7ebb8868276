"""Edge and focus maps against OpenCV and scikit-image (the lab's own pipeline)."""

import cv2
import numpy as np
import pytest
from skimage.exposure import rescale_intensity

from convstack.edges import focus_measure, laplacian_edges, sobel_magnitude, to_gray

RNG = np.random.default_rng(7)
LAB_KERNEL = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float64)


def _texture(shape, dtype=np.uint8):
    """A smooth-ish random image: edges of every strength."""
    base = RNG.random(shape)
    base = cv2.GaussianBlur(base, (5, 5), 1.0) * 0.7 + base * 0.3
    if dtype == np.uint8:
        return np.round(base * 255).astype(np.uint8)
    if dtype == np.uint16:
        return np.round(base * 65535).astype(np.uint16)
    return base.astype(dtype)


def test_to_gray_uses_bt601_on_rgb_order():
    rgb = _texture((9, 11, 3), np.float32)
    np.testing.assert_allclose(to_gray(rgb), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), rtol=1e-6)
    rgba = np.concatenate([rgb, np.ones((9, 11, 1), np.float32)], axis=2)
    np.testing.assert_allclose(to_gray(rgba), cv2.cvtColor(rgba, cv2.COLOR_RGBA2GRAY), rtol=1e-6)
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 255
    assert to_gray(red)[0, 0] == pytest.approx(0.299)  # BGR order would give 0.114
    # uint8: OpenCV rounds its gray to an integer; ours stays exact (within half a level)
    rgb8 = _texture((9, 11, 3))
    assert np.max(np.abs(to_gray(rgb8) - cv2.cvtColor(rgb8, cv2.COLOR_RGB2GRAY) / 255)) <= 0.5 / 255
    assert to_gray(rgb8).dtype == np.float64
    assert to_gray(rgb).dtype == np.float32


def test_to_gray_scales_integers_by_dtype_maximum():
    np.testing.assert_allclose(to_gray(np.array([[0, 65535]], np.uint16)), [[0.0, 1.0]])
    np.testing.assert_allclose(to_gray(np.array([[True, False]])), [[1.0, 0.0]])
    gray_alpha = np.stack([np.full((2, 2), 51, np.uint8), np.zeros((2, 2), np.uint8)], axis=2)
    np.testing.assert_allclose(to_gray(gray_alpha), 0.2)


def test_laplacian_edges_is_the_labs_pipeline():
    img = _texture((24, 20))
    # the lab: gray / 255.0, cv2.filter2D (BORDER_REFLECT_101), abs, rescale_intensity
    lab = rescale_intensity(np.abs(cv2.filter2D(img / 255.0, -1, LAB_KERNEL)))
    np.testing.assert_allclose(laplacian_edges(img), lab, atol=1e-12)
    assert laplacian_edges(img).min() == 0.0 and laplacian_edges(img).max() == 1.0
    raw = laplacian_edges(img, rescale=False)
    np.testing.assert_allclose(raw, np.abs(cv2.filter2D(img / 255.0, -1, LAB_KERNEL)), atol=1e-12)


def test_laplacian_edges_colour_and_border():
    rgb = _texture((16, 12, 3), np.float32)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    expected = np.abs(
        cv2.filter2D(gray, -1, LAB_KERNEL.astype(np.float32), borderType=cv2.BORDER_CONSTANT)
    )
    got = laplacian_edges(rgb, mode="constant", rescale=False)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_flat_image_has_no_edges():
    flat = np.full((5, 5), 7, np.uint8)
    np.testing.assert_array_equal(laplacian_edges(flat), 0.0)
    np.testing.assert_array_equal(sobel_magnitude(flat, rescale=True), 0.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64])
def test_sobel_magnitude_matches_opencv(dtype):
    img = _texture((20, 17), dtype)
    g = to_gray(img).astype(np.float64)
    expected = np.hypot(cv2.Sobel(g, cv2.CV_64F, 1, 0), cv2.Sobel(g, cv2.CV_64F, 0, 1))
    np.testing.assert_allclose(sobel_magnitude(img), expected, atol=1e-12)
    np.testing.assert_allclose(
        sobel_magnitude(img, rescale=True), rescale_intensity(expected), atol=1e-12
    )
    replicate = np.hypot(
        cv2.Sobel(g, cv2.CV_64F, 1, 0, borderType=cv2.BORDER_REPLICATE),
        cv2.Sobel(g, cv2.CV_64F, 0, 1, borderType=cv2.BORDER_REPLICATE),
    )
    np.testing.assert_allclose(sobel_magnitude(img, mode="nearest"), replicate, atol=1e-12)


@pytest.mark.parametrize("size", [1, 3, 9])
def test_focus_measure_matches_opencv(size):
    img = _texture((30, 25))
    g = img / 255.0
    expected = cv2.blur(cv2.Laplacian(g, cv2.CV_64F) ** 2, (size, size))
    np.testing.assert_allclose(focus_measure(img, size=size), expected, rtol=1e-9, atol=1e-15)


def test_focus_measure_prefers_the_sharp_frame_and_ignores_bit_depth():
    img = _texture((32, 32), np.float64)
    soft = cv2.GaussianBlur(img, (7, 7), 1.5)
    assert np.mean(focus_measure(img) > focus_measure(soft)) > 0.9
    as8 = np.round(img * 255).astype(np.uint8)
    as16 = as8.astype(np.uint16) * 257  # same picture at 16 bits
    np.testing.assert_allclose(focus_measure(as8), focus_measure(as16), rtol=1e-12)
    assert focus_measure(img.astype(np.float32)).dtype == np.float32


def test_inputs_unchanged():
    img = _texture((8, 8, 3))
    copy = img.copy()
    laplacian_edges(img)
    sobel_magnitude(img)
    focus_measure(img)
    np.testing.assert_array_equal(img, copy)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: laplacian_edges(np.zeros((2, 2, 2, 2))), ValueError, r"`image` must be 2-D"),
        (lambda: sobel_magnitude(np.zeros((3, 3, 5))), ValueError, r"1 to 4 channels"),
        (lambda: laplacian_edges(np.zeros((3, 3)), mode="edge"), ValueError, r"`mode` must"),
        (lambda: focus_measure(np.zeros((3, 3)), size=4), ValueError, r"`size` must be an odd"),
        (lambda: focus_measure(np.zeros((3, 3)), size=2.0), TypeError, r"`size` must be an odd"),
        (lambda: focus_measure(np.zeros((3, 3)), size=True), TypeError, r"`size`"),
        (lambda: to_gray(np.array([["a"]])), TypeError, r"`image` must be an array of real"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
