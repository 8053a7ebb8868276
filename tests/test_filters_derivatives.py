"""sobel, scharr and laplacian against OpenCV and scipy.ndimage."""

from __future__ import annotations

import numpy as np
import pytest

from convstack import filters

cv2 = pytest.importorskip("cv2")
ndimage = pytest.importorskip("scipy.ndimage")

BORDERS = {
    "mirror": cv2.BORDER_REFLECT_101,
    "reflect": cv2.BORDER_REFLECT,
    "nearest": cv2.BORDER_REPLICATE,
    "constant": cv2.BORDER_CONSTANT,
}
DTYPES = [np.uint8, np.uint16, np.float32, np.float64]


def make(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    return rng.random(shape).astype(dtype)


def cv_depth(dtype):
    return cv2.CV_64F if dtype == np.float64 else cv2.CV_32F


def check(ours, theirs):
    assert ours.dtype == theirs.dtype, (ours.dtype, theirs.dtype)
    scale = max(1.0, float(np.abs(theirs).max()))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(21, 27), (17, 19, 3)])
@pytest.mark.parametrize("mode", list(BORDERS))
@pytest.mark.parametrize(
    ("dx", "dy", "size"),
    [(1, 0, 3), (0, 1, 3), (1, 1, 3), (2, 0, 3), (1, 0, 1), (0, 2, 1), (1, 0, 5), (2, 1, 7)],
)
def test_sobel_matches_cv2(dtype, shape, mode, dx, dy, size):
    image = make(shape, dtype)
    theirs = cv2.Sobel(image, cv_depth(dtype), dx, dy, ksize=size, borderType=BORDERS[mode])
    check(filters.sobel(image, dx, dy, size, mode=mode), theirs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(21, 27), (17, 19, 3)])
@pytest.mark.parametrize("mode", ["mirror", "nearest"])
@pytest.mark.parametrize(("dx", "dy"), [(1, 0), (0, 1)])
def test_scharr_matches_cv2(dtype, shape, mode, dx, dy):
    image = make(shape, dtype, seed=1)
    theirs = cv2.Scharr(image, cv_depth(dtype), dx, dy, borderType=BORDERS[mode])
    check(filters.scharr(image, dx, dy, mode=mode), theirs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(21, 27), (17, 19, 3)])
@pytest.mark.parametrize("mode", list(BORDERS))
@pytest.mark.parametrize("size", [1, 3, 5, 7])
def test_laplacian_matches_cv2(dtype, shape, mode, size):
    image = make(shape, dtype, seed=2)
    theirs = cv2.Laplacian(image, cv_depth(dtype), ksize=size, borderType=BORDERS[mode])
    check(filters.laplacian(image, size, mode=mode), theirs)


def test_sobel_and_laplace_match_scipy():
    image = make((25, 30), np.float64, seed=3)
    for mode in ("mirror", "reflect", "nearest", "wrap", "constant"):
        np.testing.assert_allclose(
            filters.sobel(image, 1, 0, mode=mode), ndimage.sobel(image, axis=1, mode=mode)
        )
        np.testing.assert_allclose(
            filters.sobel(image, 0, 1, mode=mode), ndimage.sobel(image, axis=0, mode=mode)
        )
        np.testing.assert_allclose(
            filters.laplacian(image, mode=mode), ndimage.laplace(image, mode=mode), atol=1e-12
        )


def test_lab_laplacian_is_the_negative():
    lab_kernel = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float32)
    image = make((16, 18), np.float32, seed=4)
    theirs = cv2.filter2D(image, -1, lab_kernel)
    np.testing.assert_allclose(filters.laplacian(image), -theirs, atol=1e-5)


def test_output_dtypes_and_input_unchanged():
    image = make((10, 12, 3), np.uint8)
    before = image.copy()
    assert filters.sobel(image, 1, 0).dtype == np.float32
    assert filters.laplacian(image.astype(np.float64)).dtype == np.float64
    assert filters.scharr(image.astype(np.uint16), 0, 1).dtype == np.float32
    np.testing.assert_array_equal(image, before)


def test_errors():
    image = make((8, 8), np.float32)
    with pytest.raises(ValueError, match="`size` must be 1, 3, 5 or 7"):
        filters.laplacian(image, 2)
    with pytest.raises(ValueError, match="`size` must be 1, 3, 5 or 7"):
        filters.sobel(image, 1, 0, 9)
    with pytest.raises(ValueError, match=r"`dx \+ dy` must be >= 1"):
        filters.sobel(image, 0, 0)
    with pytest.raises(ValueError, match=r"`dx \+ dy` must be 1 for a Scharr"):
        filters.scharr(image, 1, 1)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        filters.sobel(image, 1, 0, mode="symmetric")
    with pytest.raises(TypeError, match="`image` must have dtype"):
        filters.laplacian(image.astype(np.int16))
