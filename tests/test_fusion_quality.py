"""Fusion quality (issue 16): out-of-focus backgrounds (``noise_floor``), breathing stacks
resampled by the quintic spline (``interpolation``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from convstack.stack import fuse
from convstack.stack.synthetic import make_scene, render_stack


def _high_pass(image: np.ndarray) -> np.ndarray:
    """SciPy's 5-point Laplacian of the channel mean (an independent high-pass)."""
    return ndimage.laplace(image.mean(axis=2).astype(np.float64))


def _background_stack(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames focused on the nearer half of the scene only (noise 0.02), so the farthest
    layer is out of focus in every frame; and the mask of that layer (eroded)."""
    scene = make_scene((240, 320), seed=seed, kind=kind)
    near, far = float(scene.depth.min()), float(scene.depth.max())
    distances = 1.0 / np.linspace(1.0 / near, 1.0 / (near + 0.5 * (far - near)), 5)
    stack = render_stack(scene, focus_distances=distances, noise=0.02, seed=seed)
    background = ndimage.binary_erosion(scene.depth >= far - 1e-6, iterations=6)
    return stack.frames, background


@pytest.mark.parametrize(("kind", "seed"), [("halo", 2), ("default", 0), ("default", 1)])
def test_noise_floor_background_no_noisier_than_the_median_frame(kind: str, seed: int) -> None:
    frames, background = _background_stack(kind, seed)
    assert background.mean() > 0.3
    median_frame = float(np.median([_high_pass(f)[background].std() for f in frames]))
    default = _high_pass(fuse(frames, align="none").image)[background].std()
    quiet = _high_pass(fuse(frames, align="none", noise_floor=3).image)[background].std()
    # measured: quiet / median frame 0.79-0.88, quiet / default 0.64-0.68 (default / median
    # frame 1.24-1.34); each bar 6 % (0.5 dB) above the largest
    assert quiet < 0.93 * median_frame, quiet / median_frame
    assert quiet < 0.72 * default, quiet / default


@pytest.mark.parametrize("value", [-1.0, 0.0, float("nan")])
def test_noise_floor_must_be_positive(value: float) -> None:
    frames, _ = _background_stack("default", 0)
    with pytest.raises(ValueError, match="`noise_floor` must be"):
        fuse(frames[:2], align="none", noise_floor=value)


def _psnr(truth: np.ndarray, image: np.ndarray, border: int = 12) -> float:
    inner = (slice(border, -border), slice(border, -border))
    error = np.mean((truth[inner].astype(np.float64) - image[inner]) ** 2)
    return float(10.0 * np.log10(1.0 / error))


@pytest.mark.parametrize("seed", [1, 4])
def test_quintic_interpolation_gains_on_a_breathing_stack(seed: int) -> None:
    # frames that breathe 0.4 % and shift up to 3 px: each is resampled onto the
    # reference grid, where the cubic softens the detail it keeps
    scene = make_scene((240, 320), seed=seed)
    stack = render_stack(scene, 7, breathing=0.004, shift=3.0, noise=0.01, seed=seed)
    cubic = _psnr(scene.image, fuse(stack.frames, interpolation="cubic").image)
    quintic = _psnr(scene.image, fuse(stack.frames).image)  # (the default)
    assert quintic > cubic + 0.5, (quintic, cubic)  # measured +0.97, +1.02 dB


def test_interpolation_is_checked() -> None:
    frames, _ = _background_stack("default", 0)
    with pytest.raises(ValueError, match="`interpolation` must be one of 'cubic', 'quintic'"):
        fuse(frames[:2], interpolation="lanczos")


def test_render_stack_takes_a_resampler() -> None:
    # the frames that move go through it (SciPy's quintic spline here), the reference not
    def spline(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        inverse = np.linalg.inv(matrix)
        planes = [ndimage.affine_transform(image[..., c], inverse, order=5, mode="nearest")
                  for c in range(image.shape[2])]  # fmt: skip
        return np.stack(planes, axis=-1).astype(np.float32)

    scene = make_scene((48, 64), seed=3)
    keys = render_stack(scene, 3, breathing=0.01, shift=1.0, seed=3)
    sharp = render_stack(scene, 3, breathing=0.01, shift=1.0, seed=3, resample=spline)
    np.testing.assert_array_equal(sharp.frames[1], keys.frames[1])
    np.testing.assert_array_equal(sharp.transforms, keys.transforms)
    assert np.abs(sharp.frames[0] - keys.frames[0]).max() > 0.01
    with pytest.raises(TypeError, match="`resample` must be a callable or None"):
        render_stack(scene, 3, resample="quintic")  # type: ignore[arg-type]
