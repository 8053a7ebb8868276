"""Stage 3: focus measures against OpenCV / SciPy oracles and the lab's recipe."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.exposure import rescale_intensity

from convstack.stack import sharpness_mask
from convstack.stack.sharpness import MEASURES, sharpness, to_gray

LAP4 = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float32)


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (23, 31, 3), dtype=np.uint8)


def test_gray_is_bt601(rgb: np.ndarray) -> None:
    expected = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    np.testing.assert_allclose(to_gray(rgb), expected, atol=1 / 255)
    assert to_gray(rgb).dtype == np.float32


def test_gray_16bit_scaled_like_8bit(rgb: np.ndarray) -> None:
    wide = rgb.astype(np.uint16) * 257
    np.testing.assert_allclose(to_gray(wide), to_gray(rgb), atol=1e-6)


def test_lab_mask_matches_the_lab(rgb: np.ndarray) -> None:
    bgr = rgb[..., ::-1]
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) / 255.0
    expected = rescale_intensity(np.abs(cv2.filter2D(gray, -1, LAP4)))
    # the lab rounds gray to 8 bits first; we keep float luma: equal up to that rounding
    got = sharpness_mask(rgb)
    assert got.dtype == np.float32 and got.shape == rgb.shape[:2]
    assert got.min() == 0.0 and got.max() == 1.0
    np.testing.assert_allclose(got, expected, atol=0.02)


def test_lab_mask_exact_on_gray() -> None:
    gray = np.random.default_rng(4).integers(0, 256, (17, 19), dtype=np.uint8)
    expected = rescale_intensity(np.abs(cv2.filter2D(gray / 255.0, -1, LAP4)))
    np.testing.assert_allclose(sharpness_mask(gray), expected, atol=1e-5)
    np.testing.assert_allclose(sharpness_mask(gray, gamma=2.0), expected**2, atol=1e-5)


def test_lab_mask_flat_frame_is_zero() -> None:
    assert not sharpness_mask(np.full((5, 6), 7, np.uint8)).any()


def test_lab_mask_rejects_bad_gamma() -> None:
    with pytest.raises(ValueError, match="`gamma` must be"):
        sharpness_mask(np.zeros((4, 4)), gamma=0)


def test_laplacian_energy_matches_opencv() -> None:
    gray = np.random.default_rng(5).random((20, 24)).astype(np.float32)
    lap = cv2.Laplacian(gray, cv2.CV_32F)  # ksize=1: the 4-neighbour kernel, sign flipped
    expected = ndi.gaussian_filter(lap * lap, 2.0, mode="mirror", truncate=4.0)
    np.testing.assert_allclose(sharpness(gray, measure="laplacian_energy"), expected, atol=1e-5)
    np.testing.assert_allclose(sharpness(gray, measure="laplacian"), np.abs(lap), atol=1e-5)


def test_log_energy_matches_scipy() -> None:
    gray = np.random.default_rng(6).random((20, 24)).astype(np.float32)
    smooth = ndi.gaussian_filter(gray, 1.5, mode="mirror", truncate=4.0)
    lap = cv2.Laplacian(smooth, cv2.CV_32F)
    expected = ndi.gaussian_filter(lap * lap, 1.0, mode="mirror", truncate=4.0)
    got = sharpness(gray, measure="log_energy", sigma=1.5, window=1.0)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_tenengrad_matches_opencv_sobel() -> None:
    gray = np.random.default_rng(7).random((20, 24)).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    got = sharpness(gray, measure="tenengrad", window=0)
    np.testing.assert_allclose(got, gx * gx + gy * gy, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("measure", MEASURES)
def test_every_measure_prefers_the_sharp_frame(measure: str) -> None:
    sharp = np.random.default_rng(8).random((40, 40)).astype(np.float32)
    soft = ndi.gaussian_filter(sharp, 2.0)
    assert sharpness(sharp, measure=measure).mean() > 2 * sharpness(soft, measure=measure).mean()


def test_measure_input_unchanged(rgb: np.ndarray) -> None:
    before = rgb.copy()
    sharpness(rgb)
    sharpness_mask(rgb)
    np.testing.assert_array_equal(rgb, before)


def test_unknown_measure() -> None:
    with pytest.raises(ValueError, match="`measure` must be one of"):
        sharpness(np.zeros((4, 4)), measure="variance")


def test_bad_image_shape() -> None:
    with pytest.raises(ValueError, match="`image` must be 2-D"):
        to_gray(np.zeros((2, 3, 4, 5)))
