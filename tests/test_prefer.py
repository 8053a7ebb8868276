"""``fuse(prefer=...)``: the preferred layer kept whole at occlusions (issue 16, part 2),
scored against the synthetic scene's truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from convstack.cli import main
from convstack.stack import fuse
from convstack.stack.occlusion import near_is_first, prefer_layer, preferred_side
from convstack.stack.synthetic import make_scene, render_stack
from test_cli_fuse import load, write_stack


def _psnr(truth: np.ndarray, image: np.ndarray, region: np.ndarray) -> float:
    error = np.mean((truth[region].astype(np.float64) - image[region]) ** 2)
    return float(10.0 * np.log10(1.0 / error))


@pytest.fixture(scope="module", params=[0, 1])
def occlusion(request: pytest.FixtureRequest) -> tuple[np.ndarray, list[np.ndarray], tuple]:
    """The 'occlusion' scene (a 5 px stick at frame 0 across a ring, before a wall), its
    frames, and the regions scored: the stick within 3 px of its outline, the 10 px
    around it, everything but a 16 px border."""
    scene = make_scene((240, 320), seed=request.param, kind="occlusion")
    stack = render_stack(scene, 7, noise=0.01, seed=request.param)
    stick = scene.layers[-1].alpha >= 0.5
    zone = ndimage.binary_dilation(stick, iterations=10) & ~ndimage.binary_erosion(
        stick, iterations=3
    )
    inner = np.zeros_like(stick)
    inner[16:-16, 16:-16] = True
    return scene.image, list(stack.frames), (zone & stick, zone & ~stick, inner)


@pytest.mark.parametrize("reverse", [False, True])
def test_prefer_near_keeps_the_stick_whole(
    occlusion: tuple[np.ndarray, list[np.ndarray], tuple], reverse: bool
) -> None:
    # in either focus order: which end is near is read from the depth map
    truth, frames, regions = occlusion
    frames = frames[::-1] if reverse else frames
    plain = fuse(frames, align="none").image
    near = fuse(frames, align="none", prefer="near").image
    on, around, everywhere = (_psnr(truth, near, r) - _psnr(truth, plain, r) for r in regions)
    assert on > 0.15, on  # measured +0.28, +0.38 dB
    assert around > -0.05, around  # measured -0.00
    assert everywhere > -0.02, everywhere  # measured +0.00, +0.01


def test_prefer_none_is_the_plain_merge(
    occlusion: tuple[np.ndarray, list[np.ndarray], tuple],
) -> None:
    _, frames, _ = occlusion
    plain = fuse(frames, align="none")
    np.testing.assert_array_equal(fuse(frames, align="none", prefer="none").image, plain.image)
    far = fuse(frames, align="none", prefer="far")
    assert not np.array_equal(far.image, plain.image)
    np.testing.assert_array_equal(far.depth, plain.depth)  # only the image changes


def test_near_is_first_by_hand() -> None:
    depth = np.full((8, 12), 6.0)
    depth[:, :5] = 0.0  # the near side (frame 0) grown by a column
    snapped = depth.copy()
    snapped[:, 4] = 6.0
    assert near_is_first(depth, snapped)
    assert not near_is_first(6.0 - depth, 6.0 - snapped)  # the same stack, far first
    assert near_is_first(depth, depth)  # nothing changed: nearest first


def test_preferred_side_by_hand() -> None:
    depth = np.full((40, 30), 6.0)
    depth[15:25, 10:20] = 0.0  # a near square, a step of 6 frames
    depth[0:4] = 4.5  # a step of 1.5 frames: not an occlusion
    near = preferred_side(depth, depth, 7, "near")
    expected = np.zeros((40, 30), bool)
    expected[16:24, 11:19] = True  # the square, eroded by one pixel
    np.testing.assert_array_equal(near, expected)
    # the far side: within 8 px (the 17 x 17 window) of the square, eroded by the 3 x 3
    # cross (the square's four diagonal neighbours stay)
    rows, cols = np.mgrid[0:40, 0:30]
    distance = np.maximum(
        np.maximum(15 - rows, rows - 24), np.maximum(10 - cols, cols - 19)
    )  # (Chebyshev, from the square's pixels)
    corners = np.isin(rows, (14, 25)) & np.isin(cols, (9, 20))
    np.testing.assert_array_equal(
        preferred_side(depth, depth, 7, "far"), ((distance >= 2) & (distance <= 7)) | corners
    )


def test_prefer_layer_leaves_its_inputs(
    occlusion: tuple[np.ndarray, list[np.ndarray], tuple],
) -> None:
    _, frames, _ = occlusion
    result = fuse(frames, align="none")
    image, depth = result.image.copy(), result.depth.copy()
    out = prefer_layer(image, depth, lambda k: frames[k], prefer="near", count=len(frames))
    np.testing.assert_array_equal(image, result.image)
    np.testing.assert_array_equal(depth, result.depth)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out, fuse(frames, align="none", prefer="near").image, atol=1e-6)


def test_bad_prefer() -> None:
    frames = [np.zeros((8, 8)), np.ones((8, 8))]
    with pytest.raises(ValueError, match="`prefer` must be one of 'none', 'near', 'far'"):
        fuse(frames, prefer="middle")
    with pytest.raises(ValueError, match="`prefer` must be one of"):
        prefer_layer(frames[0], frames[0], lambda k: frames[k], prefer="front", count=2)
    with pytest.raises(ValueError, match=r"`confidence` must have the depth map's shape \(8, 8\)"):
        prefer_layer(
            frames[0], frames[0], lambda k: frames[k], prefer="near", count=2,
            confidence=np.zeros((4, 4)),
        )  # fmt: skip
    with pytest.raises(ValueError, match="`count` must be an int >= 1"):
        prefer_layer(frames[0], frames[0], lambda k: frames[k], prefer="near", count=0)


def test_prefer_reaches_fuse_and_batch(
    occlusion: tuple[np.ndarray, list[np.ndarray], tuple],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, frames, _ = occlusion
    frames8 = [np.rint(f * 255).astype(np.uint8) for f in frames]
    write_stack(tmp_path / "root" / "a", frames8)
    out = tmp_path / "out.png"
    base = ["fuse", str(tmp_path / "root" / "a"), "-o", str(out), "--quiet", "--align", "none"]
    assert main([*base, "--prefer", "near"]) == 0
    expected = fuse(frames8, align="none", prefer="near").image
    np.testing.assert_array_equal(load(out), expected)
    assert not np.array_equal(expected, fuse(frames8, align="none").image)
    batch = ["batch", str(tmp_path / "root"), "-o", str(tmp_path / "b"), "--quiet"]
    assert main([*batch, "--align", "none", "--prefer", "near"]) == 0
    (result,) = (tmp_path / "b").rglob("*.png")
    np.testing.assert_array_equal(load(result), expected)
    with pytest.raises(SystemExit):
        main([*base, "--prefer", "front"])
    assert "--prefer: invalid choice: 'front'" in capsys.readouterr().err


@pytest.mark.parametrize("size", [3, 5, 9, 17])
def test_running_extremes_match_scipy(size: int) -> None:
    from convstack.stack.occlusion import _running

    rng = np.random.default_rng(size)
    labels = rng.integers(0, 9, (37, 53)).astype(np.float64)
    mask = rng.random((20, 30)) > 0.3
    for reduce, oracle in (
        (np.maximum, ndimage.maximum_filter),
        (np.minimum, ndimage.minimum_filter),
    ):
        np.testing.assert_array_equal(
            _running(labels, size, reduce), oracle(labels, size, mode="nearest")
        )
        np.testing.assert_array_equal(
            _running(mask, size, reduce), oracle(mask, size, mode="nearest")
        )
