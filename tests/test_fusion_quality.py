"""Fusion quality (issue 16): out-of-focus backgrounds (the noise floor), breathing stacks
resampled by the quintic spline (``interpolation``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from convstack.stack import fuse
from convstack.stack import fusion as F
from convstack.stack.synthetic import make_scene, render_stack


def _high_pass(image: np.ndarray) -> np.ndarray:
    """SciPy's 5-point Laplacian of the channel mean (an independent high-pass)."""
    return ndimage.laplace(image.mean(axis=2).astype(np.float64))


def _background_stack(kind: str, seed: int, noise: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Frames focused on the nearer half of the scene only (noise 0.02), so the farthest
    layer is out of focus in every frame; and the mask of that layer (eroded)."""
    scene = make_scene((240, 320), seed=seed, kind=kind)
    near, far = float(scene.depth.min()), float(scene.depth.max())
    distances = 1.0 / np.linspace(1.0 / near, 1.0 / (near + 0.5 * (far - near)), 5)
    stack = render_stack(scene, focus_distances=distances, noise=noise, seed=seed)
    background = ndimage.binary_erosion(scene.depth >= far - 1e-6, iterations=6)
    return stack.frames, background


def _noise_of(noisy: np.ndarray, clean: np.ndarray, where: np.ndarray) -> float:
    """High-pass RMS over ``where`` of what noise changed (an image minus its noise-free
    counterpart)."""
    return float(_high_pass(noisy.astype(np.float64) - clean)[where].std())


@pytest.mark.parametrize(("kind", "seed"), [("halo", 2), ("default", 0), ("default", 1)])
def test_default_background_is_quieter_than_the_frames(kind: str, seed: int) -> None:
    # the oracle: the same stack rendered without noise, fused with the same settings
    frames, background = _background_stack(kind, seed)
    clean, _ = _background_stack(kind, seed, noise=0.0)
    assert background.mean() > 0.3
    each = float(
        np.median([_noise_of(f, c, background) for f, c in zip(frames, clean, strict=True)])
    )
    quiet = _noise_of(fuse(frames, align="none").image, fuse(clean, align="none").image, background)
    picked = _noise_of(
        fuse(frames, align="none", noise_floor=None).image,
        fuse(clean, align="none", noise_floor=None).image,
        background,
    )
    # measured: default / frame 0.77-0.82, floor off / frame 0.88-0.94, default / off
    # 0.87-0.90; each bar about 5 % above the largest
    assert quiet < 0.86 * each, quiet / each
    assert quiet < 0.95 * picked, quiet / picked


@pytest.mark.parametrize(("kind", "sigma"), [("default", 0.02), ("default", 0.005), ("halo", 0.01)])
def test_noise_floor_measures_the_frames_noise(kind: str, sigma: float) -> None:
    # rendered noise of known sigma over a detailed scene: the floor's variance is that
    # of the luma's finest level (white noise's share of it measured here, apart);
    # the whole level's MAD, used before, read 1.8-5x that (texture counted as noise)
    scene = make_scene((240, 320), seed=3, kind=kind)
    frame = render_stack(scene, 1, noise=sigma, seed=3).frames[0]
    white = np.random.default_rng(1).standard_normal((240, 320)).astype(np.float32)
    share = float(np.mean(F.laplacian_pyramid(white, 2)[0] ** 2))
    luma = sigma**2 * float(np.sum(np.square([0.299, 0.587, 0.114])))
    acc = F.PyramidAccumulator(noise=3.0)
    acc.add(0, frame)
    assert 0.85 < acc.sigma2 / (luma * share) < 1.2, acc.sigma2 / (luma * share)
    quiet = F.PyramidAccumulator(noise=3.0)
    quiet.add(0, render_stack(scene, 1, seed=3).frames[0])  # no noise at all
    assert quiet.sigma2 < 0.15 * luma * share  # measured 0.03-0.10 (the scene's texture)


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
