"""PSNR and SSIM against scikit-image as the oracle."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from convstack.metrics import psnr, ssim

RNG = np.random.default_rng(7)


def _pair(shape: tuple[int, ...], dtype: type) -> tuple[np.ndarray, np.ndarray]:
    base = RNG.random(shape)
    noisy = np.clip(base + RNG.normal(0, 0.1, shape), 0, 1)
    if dtype == np.uint8:
        return np.round(base * 255).astype(np.uint8), np.round(noisy * 255).astype(np.uint8)
    if dtype == np.uint16:
        scale = 65535
        return np.round(base * scale).astype(np.uint16), np.round(noisy * scale).astype(np.uint16)
    return base.astype(dtype), noisy.astype(dtype)


def _skimage_ssim(a, b, data_range, channel_axis=None):
    return structural_similarity(
        a,
        b,
        data_range=data_range,
        channel_axis=channel_axis,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(20, 31), (24, 18, 3)])
def test_psnr_matches_skimage(dtype, shape):
    a, b = _pair(shape, dtype)
    expected = peak_signal_noise_ratio(a, b)  # dtype range: 255 / 65535 / 1 for [0,1] floats
    assert psnr(a, b) == pytest.approx(expected, rel=1e-9)
    assert psnr(a, b, data_range=2.0) == pytest.approx(
        peak_signal_noise_ratio(a, b, data_range=2.0), rel=1e-9
    )


def test_psnr_hand_computed():
    # MSE = 0.01 / 3, peak 1 -> 10 log10(300)
    assert psnr([0.0, 0.5, 1.0], [0.0, 0.5, 0.9]) == pytest.approx(10 * np.log10(300))
    assert psnr(np.zeros((3, 3)), np.zeros((3, 3))) == float("inf")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_ssim_gray_matches_skimage(dtype):
    a, b = _pair((40, 53), dtype)
    peak = {np.uint8: 255, np.uint16: 65535}.get(dtype, 1.0)
    expected = _skimage_ssim(a, b, peak)
    assert abs(ssim(a, b, data_range=peak) - expected) < 1e-4
    assert abs(ssim(a, b) - expected) < 1e-4  # default range from the dtype / [0, 1]


@pytest.mark.parametrize("channel_axis", [-1, 0, 2])
def test_ssim_colour_matches_skimage(channel_axis):
    a, b = _pair((3, 30, 41) if channel_axis == 0 else (30, 41, 3), np.float64)
    expected = _skimage_ssim(a, b, 1.0, channel_axis=channel_axis)
    assert abs(ssim(a, b, data_range=1.0, channel_axis=channel_axis) - expected) < 1e-4


def test_ssim_structured_images_match_skimage():
    rows, cols = np.mgrid[0:64, 0:64]
    a = 0.5 + 0.5 * np.sin(rows / 3.0) * np.cos(cols / 5.0)
    b = np.roll(a, 1, axis=1) * 0.9 + 0.05
    expected = _skimage_ssim(a, b, 1.0)
    assert abs(ssim(a, b) - expected) < 1e-4
    assert ssim(a, a) == pytest.approx(1.0)


def test_ssim_drops_with_noise():
    a, _ = _pair((32, 32), np.float64)
    small = np.clip(a + RNG.normal(0, 0.02, a.shape), 0, 1)
    large = np.clip(a + RNG.normal(0, 0.2, a.shape), 0, 1)
    assert ssim(a, a) > ssim(a, small) > ssim(a, large)


def test_inputs_unchanged():
    a, b = _pair((16, 16, 3), np.float32)
    a0, b0 = a.copy(), b.copy()
    psnr(a, b)
    ssim(a, b, channel_axis=-1)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_errors():
    a = np.zeros((12, 12))
    with pytest.raises(ValueError, match="`a` and `b` must have the same shape"):
        psnr(a, np.zeros((12, 13)))
    with pytest.raises(ValueError, match="`data_range` must be given"):
        psnr(a * 3 - 1, a)
    with pytest.raises(ValueError, match=r"`data_range` must be .*> 0"):
        ssim(a, a, data_range=0)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((10, 30)), np.zeros((10, 30)))
    with pytest.raises(ValueError, match="must be 2-D"):
        ssim(np.zeros((12, 12, 3)), np.zeros((12, 12, 3)))
    with pytest.raises(TypeError, match="`a` must be an array of real numbers"):
        psnr(np.zeros(3, dtype=complex), np.zeros(3))


@pytest.mark.parametrize("noise", [0.001, 0.03])
@pytest.mark.parametrize("dtype", [np.uint16, np.float64])
def test_ssim_of_a_flat_bright_image_matches_skimage(dtype, noise):
    # the local variances cancel most here (mean 0.9, noise 0.1-3 % of the range): the
    # case that float32 moments get wrong first
    peak = 65535.0 if dtype == np.uint16 else 1.0
    rng = np.random.default_rng(5)
    a = np.full((64, 80), 0.9 * peak) + rng.normal(0.0, noise * peak, (64, 80))
    b = a + rng.normal(0.0, noise * peak, a.shape)
    a, b = (np.clip(z, 0, peak).astype(dtype) for z in (a, b))
    expected = _skimage_ssim(a, b, peak)
    assert expected < 0.9995  # the noise counts: not a trivial 1
    assert abs(ssim(a, b, data_range=peak) - expected) < 1e-4
