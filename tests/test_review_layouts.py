"""Review: the separable rows on images of every memory layout.

A transposed or Fortran-ordered colour image is a valid input; the exact integer
Gaussian's output must not inherit its layout (the compiled rows write C-ordered
rows). Oracles: OpenCV's bit-exact uint8 GaussianBlur on a contiguous copy, and the
result for the contiguous copy itself (the layout must not change a bit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest

from convstack import gaussian_blur, scharr, sobel

LAYOUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "fortran": np.asfortranarray,
    "transposed": lambda a: np.ascontiguousarray(a.swapaxes(0, 1)).swapaxes(0, 1),
    "negative": lambda a: np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1],
    "strided": lambda a: np.repeat(np.repeat(a, 2, axis=0), 3, axis=1)[::2, ::3],
}
CV_MODES = {
    "mirror": cv2.BORDER_REFLECT_101,
    "reflect": cv2.BORDER_REFLECT,
    "nearest": cv2.BORDER_REPLICATE,
    "constant": cv2.BORDER_CONSTANT,
}


def _image(shape: tuple[int, ...], dtype: Any, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, np.iinfo(dtype).max + 1, size=shape).astype(dtype)
    return (rng.standard_normal(shape) * 50).astype(dtype)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("mode", sorted(CV_MODES))
@pytest.mark.parametrize("shape", [(13, 17, 3), (1, 9, 3), (9, 1, 4), (40, 33, 3), (21, 19)])
def test_uint8_gaussian_any_layout_matches_opencv(
    layout: str, mode: str, shape: tuple[int, ...]
) -> None:
    image = _image(shape, np.uint8, 3)
    view = LAYOUTS[layout](image)
    assert np.array_equal(view, image)
    before = view.copy()
    for size, sigma in [(5, 1.2), (3, 0.0), (11, 2.0)]:
        got = gaussian_blur(view, size, sigma, mode=mode)
        want = cv2.GaussianBlur(image, (size, size), sigma, borderType=CV_MODES[mode])
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want.reshape(image.shape))
    np.testing.assert_array_equal(view, before)  # the input is never modified


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("channels", [0, 1, 3])
def test_separable_filters_same_bits_for_any_layout(layout: str, dtype: Any, channels: int) -> None:
    shape = (23, 18) + ((channels,) if channels else ())
    image = _image(shape, dtype, 7)
    view = LAYOUTS[layout](image)
    for mode in ("mirror", "wrap", "mean"):
        calls = [
            lambda a: gaussian_blur(a, 7, 1.5, mode=mode),  # noqa: B023
            lambda a: gaussian_blur(a, (5, 9), 1.0, sigma_y=2.0, mode=mode),  # noqa: B023
            lambda a: sobel(a, 1, 1, 5, mode=mode),  # noqa: B023
            lambda a: scharr(a, 0, 1, mode=mode),  # noqa: B023
        ]
        for call in calls:
            want = call(image)
            got = call(view)
            assert got.dtype == want.dtype and got.shape == want.shape
            if mode == "mean" and layout != "negative":
                # the border's mean is summed in another order: last bits only
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
            else:
                np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_exact_gaussian_matches_opencv_on_tiny_images_and_long_kernels(dtype: Any) -> None:
    # the exact integer Gaussian's sums in float32 (uint8) or float64 (uint16) since
    # 0fd98d4, the dense column pass since 8d05839: kernels longer than the image,
    # one-pixel and one-row images, odd channel counts, against OpenCV's fixed point
    rng = np.random.default_rng(9)
    shapes = [(1, 1), (1, 2), (2, 1), (1, 9), (9, 1), (3, 3), (2, 40), (40, 2), (5, 7, 3)]
    shapes += [(1, 1, 3), (4, 3, 4), (6, 5, 2)]
    checked = 0
    for shape in shapes:
        image = rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)
        for size, sigma in [(3, 0.0), (5, 1.1), (9, 0.0), (31, 5.0), (0, 2.0), ((7, 3), 0.9)]:
            rows, cols = size if isinstance(size, tuple) else (size, size)
            for mode, border in CV_MODES.items():
                want = cv2.GaussianBlur(image, (cols, rows), sigma, borderType=border)
                got = gaussian_blur(image, size, sigma, mode=mode)
                np.testing.assert_array_equal(got, want.reshape(image.shape))
                checked += 1
    assert checked == len(shapes) * 6 * 4
