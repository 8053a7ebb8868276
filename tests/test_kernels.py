"""convstack.kernels against OpenCV's kernel builders and hand values."""

from __future__ import annotations

import numpy as np
import pytest

from convstack import kernels

cv2 = pytest.importorskip("cv2")


@pytest.mark.parametrize("size", [1, 3, 4, 5, 7, 9, 11, 15, 21, 31])
@pytest.mark.parametrize("sigma", [0.0, -1.0, 0.5, 1.0, 2.5, 7.0])
def test_gaussian_1d_matches_opencv(size, sigma):
    expected = cv2.getGaussianKernel(size, sigma, ktype=cv2.CV_64F).ravel()
    got = kernels.gaussian(size, sigma, ndim=1)
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-17)


@pytest.mark.parametrize("size", [3, 5, 7, 9])
def test_gaussian_small_tables_are_exact(size):
    expected = cv2.getGaussianKernel(size, 0, ktype=cv2.CV_64F).ravel()
    assert kernels.gaussian(size, ndim=1).tolist() == expected.tolist()


def test_gaussian_2d_is_outer_product_and_sums_to_one():
    k1 = cv2.getGaussianKernel(11, 2.0, ktype=cv2.CV_64F).ravel()
    k2 = kernels.gaussian(11, 2.0)
    np.testing.assert_allclose(k2, np.outer(k1, k1), rtol=1e-13)
    assert k2.sum() == pytest.approx(1.0, abs=1e-15)


def test_gaussian_sigma_rule():
    for n in (3, 5, 11, 21):
        assert kernels.gaussian_sigma(n) == pytest.approx(0.3 * ((n - 1) * 0.5 - 1) + 0.8)


def test_box():
    assert kernels.box(3).sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(kernels.box((2, 4)), np.full((2, 4), 1 / 8))


def test_differences_by_hand():
    assert kernels.derivative().tolist() == [-1.0, 1.0]
    assert kernels.second_derivative().tolist() == [1.0, -2.0, 1.0]


def test_laplacian_by_hand_and_opencv():
    assert kernels.laplacian(4).tolist() == [[0, 1, 0], [1, -4, 1], [0, 1, 0]]
    assert kernels.laplacian(8).tolist() == [[1, 1, 1], [1, -8, 1], [1, 1, 1]]
    image = np.random.default_rng(0).random((9, 11))
    ours = cv2.filter2D(image, -1, kernels.laplacian(4), borderType=cv2.BORDER_REFLECT_101)
    theirs = cv2.Laplacian(image, cv2.CV_64F, ksize=1)
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


SOBEL_CASES = [
    (dx, dy, size)
    for size in (1, 3, 5, 7)
    for dx in range(0, 4)
    for dy in range(0, 4)
    if dx + dy > 0 and dx < max(size, 3) and dy < max(size, 3) and dx + dy <= 3
]


@pytest.mark.parametrize(("dx", "dy", "size"), SOBEL_CASES)
def test_sobel_matches_getderivkernels(dx, dy, size):
    kx, ky = cv2.getDerivKernels(dx, dy, size, ktype=cv2.CV_64F)
    np.testing.assert_array_equal(kernels.sobel(dx, dy, size), np.outer(ky.ravel(), kx.ravel()))


@pytest.mark.parametrize(("dx", "dy"), [(1, 0), (0, 1)])
def test_scharr_matches_getderivkernels(dx, dy):
    kx, ky = cv2.getDerivKernels(dx, dy, cv2.FILTER_SCHARR, ktype=cv2.CV_64F)
    np.testing.assert_array_equal(kernels.scharr(dx, dy), np.outer(ky.ravel(), kx.ravel()))


def test_disk():
    d = kernels.disk(2)
    assert d.shape == (5, 5)
    assert d.sum() == pytest.approx(1.0)
    mask = d > 0
    assert mask.sum() == 13  # 1 + 4 + 4 + 4 samples with r <= 2
    assert not mask[0, 0] and mask[0, 2] and mask[2, 0]
    assert kernels.disk(0).tolist() == [[1.0]]


def test_errors():
    with pytest.raises(ValueError, match="`size` must be >= 1"):
        kernels.gaussian(0)
    with pytest.raises(TypeError, match="`sigma` must be a real number"):
        kernels.gaussian(3, "a")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`ndim` must be 1 or 2"):
        kernels.gaussian(3, ndim=3)
    with pytest.raises(ValueError, match="`neighbours` must be 4 or 8"):
        kernels.laplacian(6)
    with pytest.raises(ValueError, match="`size` must be 1, 3, 5 or 7"):
        kernels.sobel(1, 0, 9)
    with pytest.raises(ValueError, match=r"`dx \+ dy` must be >= 1"):
        kernels.sobel(0, 0)
    with pytest.raises(ValueError, match="`dx` must be smaller than the kernel size 3"):
        kernels.sobel(3, 0, 3)
    with pytest.raises(ValueError, match=r"`dx \+ dy` must be 1 for a Scharr"):
        kernels.scharr(1, 1)
    with pytest.raises(ValueError, match="`dy` must be >= 0"):
        kernels.scharr(1, -1)
    with pytest.raises(TypeError, match="`dx` must be an int"):
        kernels.sobel(1.0, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`radius` must be .*>= 0"):
        kernels.disk(-1)
    with pytest.raises(ValueError, match="`size` must be >= 1"):
        kernels.box((0, 3))
