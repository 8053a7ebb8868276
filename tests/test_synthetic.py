"""Synthetic scenes and rendered focus stacks: defocus, transforms, reproducibility."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from convstack.stack.synthetic import Scene, make_scene, render_stack


def _laplacian_energy(image: np.ndarray) -> np.ndarray:
    """Squared Laplacian of the grey image (OpenCV as the independent filter)."""
    grey = image.mean(axis=-1).astype(np.float64)
    return cv2.Laplacian(grey, cv2.CV_64F, ksize=1) ** 2


@pytest.fixture(scope="module")
def scene() -> Scene:
    return make_scene((96, 128), seed=3)


@pytest.mark.parametrize("kind", ["default", "halo"])
def test_scene_truth(kind):
    scene = make_scene((64, 80), seed=0, kind=kind)
    assert scene.image.shape == (64, 80, 3)
    assert scene.image.dtype == np.float32
    assert scene.depth.shape == (64, 80)
    assert scene.depth.dtype == np.float32
    assert scene.image.min() >= 0.0 and scene.image.max() <= 1.0
    assert scene.depth.min() > 0
    assert len(np.unique(scene.depth)) >= 2  # several distances
    # fine detail: the image is not flat anywhere at large
    assert _laplacian_energy(scene.image).mean() > 1e-4


def test_halo_scene_is_bright_object_on_dark_background():
    scene = make_scene((96, 96), seed=1, kind="halo")
    near = scene.depth <= 1.2
    far = scene.depth >= 4.9
    assert near.mean() > 0.1 and far.mean() > 0.3
    assert scene.image[near].mean() > 3 * scene.image[far].mean()


def test_scene_reproducible_and_seed_dependent():
    a = make_scene((48, 64), seed=5)
    b = make_scene((48, 64), seed=5)
    c = make_scene((48, 64), seed=6)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.depth, b.depth)
    assert not np.array_equal(a.image, c.image)


def test_each_frame_is_sharpest_where_it_is_focused(scene):
    """A frame focused at a layer's distance beats every other frame there."""
    stack = render_stack(scene, 5, aperture=12.0, seed=0)  # 2.4 px more blur per step
    energy = np.stack([_laplacian_energy(f) for f in stack.frames])
    inv_depth = 1.0 / scene.depth
    inv_focus = 1.0 / stack.focus_distances
    nearest = np.argmin(np.abs(inv_depth[None] - inv_focus[:, None, None]), axis=0)
    checked = 0
    for k in range(len(stack.frames)):
        # pixels whose depth is within a quarter step of frame k's focus, away from borders
        close = np.abs(inv_depth - inv_focus[k]) < 0.25 * abs(inv_focus[1] - inv_focus[0])
        close[:4], close[-4:], close[:, :4], close[:, -4:] = False, False, False, False
        if close.sum() < 50:
            continue
        assert np.all(nearest[close] == k)
        totals = energy[:, close].sum(axis=1)
        assert np.argmax(totals) == k, (k, totals)
        checked += 1
    assert checked >= 2


def test_pinhole_frames_equal_the_truth(scene):
    stack = render_stack(scene, 3, aperture=0.0)
    for frame in stack.frames:
        np.testing.assert_allclose(frame, scene.image, atol=1e-5)


def test_frames_differ_only_by_blur(scene):
    """No breathing, shift or noise: every frame is the truth blurred (same mean colour,
    same geometry), and blur only removes detail."""
    stack = render_stack(scene, 4, seed=1)
    np.testing.assert_array_equal(stack.transforms, np.broadcast_to(np.eye(3), (4, 3, 3)))
    truth_energy = _laplacian_energy(scene.image).sum()
    inner = (slice(12, -12), slice(12, -12), slice(None))
    for frame in stack.frames:
        assert abs(frame[inner].mean() - scene.image[inner].mean()) < 0.01
        assert _laplacian_energy(frame).sum() < truth_energy
        # low-pass versions agree: a heavy blur hides the defocus differences
        a = cv2.GaussianBlur(frame.astype(np.float64), (0, 0), 6)[inner]
        b = cv2.GaussianBlur(scene.image.astype(np.float64), (0, 0), 6)[inner]
        assert np.abs(a - b).mean() < 0.02


def test_blur_grows_with_distance_from_focus(scene):
    far = float(scene.depth.max())
    near = float(scene.depth.min())
    stack = render_stack(scene, focus_distances=[far, near, far], aperture=12.0)
    np.testing.assert_allclose(stack.focus_distances, [far, near, far])
    back = scene.depth >= far - 1e-6
    energy = [_laplacian_energy(f)[back].sum() for f in stack.frames]
    assert energy[0] > 2 * energy[1]
    np.testing.assert_allclose(stack.frames[0], stack.frames[2])


def test_transforms_match_the_applied_warp():
    """A bright dot's centroid lands where the returned matrix says."""
    scene = make_scene((96, 96), seed=0)
    image = np.zeros_like(scene.image)
    depth = np.full(scene.depth.shape, 2.0, np.float32)
    image[40:43, 55:58] = 1.0
    layer = type(scene.layers[0])(image, np.ones_like(depth), depth)
    dot = Scene(image=image, depth=depth, layers=(layer,))
    stack = render_stack(dot, 5, breathing=0.02, shift=3.0, aperture=0.0, seed=4)
    assert stack.reference == 2
    np.testing.assert_array_equal(stack.transforms[2], np.eye(3))
    truth = np.array([41.0, 56.0, 1.0])
    for frame, matrix in zip(stack.frames, stack.transforms, strict=True):
        grey = frame.mean(axis=-1)
        rows, cols = np.indices(grey.shape)
        centroid = np.array([(grey * rows).sum(), (grey * cols).sum()]) / grey.sum()
        np.testing.assert_allclose(centroid, (matrix @ truth)[:2], atol=0.1)
        scale = matrix[0, 0]
        assert matrix[1, 1] == scale and matrix[0, 1] == 0 and matrix[1, 0] == 0
    scales = stack.transforms[:, 0, 0]
    np.testing.assert_allclose(scales[1:] / scales[:-1], 1.02)
    shifts = np.abs(stack.transforms[:, :2, 2] - (1 - scales[:, None]) * 47.5)
    assert shifts.max() <= 3.0 and shifts.max() > 0.5


def test_noise_has_the_asked_sigma(scene):
    clean = render_stack(scene, 2, seed=0)
    noisy = render_stack(scene, 2, noise=0.02, seed=0)
    diff = (noisy.frames - clean.frames)[:, 10:-10, 10:-10]
    mid = (clean.frames[:, 10:-10, 10:-10] > 0.1) & (clean.frames[:, 10:-10, 10:-10] < 0.9)
    assert diff[mid].std() == pytest.approx(0.02, rel=0.1)


def test_render_reproducible(scene):
    a = render_stack(scene, 3, breathing=0.01, shift=2.0, noise=0.01, seed=9)
    b = render_stack(scene, 3, breathing=0.01, shift=2.0, noise=0.01, seed=9)
    c = render_stack(scene, 3, breathing=0.01, shift=2.0, noise=0.01, seed=10)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.transforms, b.transforms)
    assert not np.array_equal(a.frames, c.frames)
    assert a.frames.dtype == np.float32
    assert a.frames.min() >= 0 and a.frames.max() <= 1


def test_scene_unchanged_by_rendering(scene):
    before = scene.image.copy(), scene.depth.copy()
    render_stack(scene, 2, breathing=0.01, shift=1.0, noise=0.01)
    np.testing.assert_array_equal(scene.image, before[0])
    np.testing.assert_array_equal(scene.depth, before[1])


def test_errors(scene):
    with pytest.raises(ValueError, match="`kind` must be one of"):
        make_scene((32, 32), kind="forest")
    with pytest.raises(ValueError, match="`shape` must be >= 16"):
        make_scene((8, 32))
    with pytest.raises(TypeError, match="`seed` must be an int"):
        make_scene((32, 32), seed=1.5)
    with pytest.raises(TypeError, match="`scene` must be a Scene"):
        render_stack(np.zeros((4, 4)), 2)
    with pytest.raises(ValueError, match="`n_frames` must be >= 1"):
        render_stack(scene, 0)
    with pytest.raises(ValueError, match="`focus_distances` must be"):
        render_stack(scene, focus_distances=[1.0, -2.0])
    with pytest.raises(ValueError, match="`breathing` must lie in"):
        render_stack(scene, 2, breathing=0.9)
    with pytest.raises(ValueError, match="`noise` must be"):
        render_stack(scene, 2, noise=-1)
