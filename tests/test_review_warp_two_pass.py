"""Review of the two-pass quintic warp (``warp(order=5, separable=True)``, fuse's default
since 5ed2198): matrices at the limits of its path, 'constant' fills, tiny images.

The oracle is the 2-D quintic (``separable=False``, SciPy's ``order=5``): on a
band-limited image the two agree within the row prefilter's approximation wherever
the sample lies inside the image, and 'constant' marks exactly the same pixels outside.
"""

from __future__ import annotations

import numpy as np
import pytest

from convstack.warp import warp


def affine(a: float, b: float, c: float, d: float, e: float, f: float) -> np.ndarray:
    return np.array([[a, b, c], [d, e, f], [0.0, 0.0, 1.0]])


def rotation(degrees: float, zoom: float = 1.0) -> np.ndarray:
    t = np.deg2rad(degrees)
    return affine(
        np.cos(t) * zoom, -np.sin(t) * zoom, 0.3, np.sin(t) * zoom, np.cos(t) * zoom, -0.7
    )


#: Matrices the two-pass path takes, its limits included (row scale 1/4 and 4, shear
#: terms exactly half the row scale), and column maps it does not bound
MATRICES = {
    "identity": np.eye(3),
    "sub-pixel": affine(1.0, 0.01, 0.5, -0.01, 1.0, 0.25),
    "0.3 deg zoomed": rotation(0.3, 1.004),
    "26 deg": rotation(26.0),
    "shear +0.5": affine(1.0, 0.5, 0.0, -0.5, 1.0, 0.0),
    "row scale 1/4": affine(0.25, 0.0, 1.0, 0.0, 1.0, 0.0),
    "row scale 4": affine(4.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "row scale 4, shear 2": affine(4.0, 2.0, 0.0, -2.0, 1.0, 0.0),
    "column flip": affine(1.0, 0.0, 0.0, 0.0, -1.0, 20.0),
    "column scale 3": affine(1.0, 0.0, 0.0, 0.0, 3.0, 0.0),
    "columns collapsed": affine(1.0, 0.0, 0.0, 0.0, 0.0, 3.5),
    "far outside": affine(1.0, 0.0, 1e3, 0.0, 1.0, -1e3),
}


def smooth(rows: int, cols: int, channels: int = 2) -> np.ndarray:
    """Band-limited (well below Nyquist), so both interpolations see the same function."""
    r, c = np.mgrid[:rows, :cols].astype(np.float64)
    planes = [
        np.sin(r * 0.3 + c * 0.2) + np.cos(c * 0.25 - r * 0.1),
        np.cos(r * 0.15) * np.sin(c * 0.3),
    ]
    return np.stack(planes[:channels], axis=-1)


def inside(m: np.ndarray, shape: tuple[int, int], out_shape: tuple[int, int]) -> np.ndarray:
    """Output pixels whose source lies inside the image (a pixel's margin kept)."""
    y, x = np.mgrid[: out_shape[0], : out_shape[1]].astype(np.float64)
    r = m[0, 0] * y + m[0, 1] * x + m[0, 2]
    c = m[1, 0] * y + m[1, 1] * x + m[1, 2]
    return (r >= 0) & (r <= shape[0] - 1) & (c >= 0) & (c <= shape[1] - 1)


@pytest.mark.parametrize("name", sorted(MATRICES))
@pytest.mark.parametrize("shape", [(24, 31), (6, 40), (40, 6), (3, 3)])
def test_two_pass_matches_the_2d_quintic_inside_and_its_constant_mask(
    name: str, shape: tuple[int, int]
) -> None:
    m = MATRICES[name]
    image = smooth(*shape)
    before = image.copy()
    for out_shape in (shape, (5, 9)):
        two = warp(
            image, m, order=5, separable=True, mode="constant", cval=np.nan, output_shape=out_shape
        )
        full = warp(image, m, order=5, mode="constant", cval=np.nan, output_shape=out_shape)
        np.testing.assert_array_equal(np.isnan(two), np.isnan(full))
        keep = inside(m, shape, out_shape)
        # the 17-tap FIR row prefilter and the two-pass decomposition: within 1 %
        # of the image's range (4) on this band-limited image
        np.testing.assert_allclose(two[keep], full[keep], rtol=0, atol=0.04)
        near = warp(image, m, order=5, separable=True, mode="nearest", output_shape=out_shape)
        np.testing.assert_allclose(near[keep], two[keep], rtol=0, atol=1e-12)
        assert np.isfinite(near).all()
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2)])
@pytest.mark.parametrize("mode", ["nearest", "constant"])
def test_tiny_images_take_the_two_pass_path_as_the_2d_one(
    shape: tuple[int, int], mode: str
) -> None:
    image = smooth(*shape, channels=1)[..., 0] * 10.0
    for name in ("identity", "sub-pixel", "0.3 deg zoomed", "far outside"):
        m = MATRICES[name]
        two = warp(image, m, order=5, separable=True, mode=mode, cval=-3.0)
        full = warp(image, m, order=5, mode=mode, cval=-3.0)
        assert two.shape == full.shape == shape
        np.testing.assert_allclose(two, full, rtol=0, atol=0.05 * max(1.0, np.ptp(image)))


def test_shift_by_whole_pixels_is_the_shifted_image() -> None:
    """A whole-pixel shift samples the spline at its knots: the image itself (to the FIR)."""
    image = smooth(20, 25)
    got = warp(
        image, affine(1.0, 0.0, 2.0, 0.0, 1.0, -3.0), order=5, separable=True, mode="constant"
    )
    np.testing.assert_allclose(got[:18, 3:], image[2:, :22], rtol=0, atol=2e-3)
    assert (got[18:] == 0).all() and (got[:, :3] == 0).all()
