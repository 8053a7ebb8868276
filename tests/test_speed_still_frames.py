"""Frames whose registered motion is below ``STILL_MOTION`` (0.01 px) everywhere are
taken as they are, not resampled: the warp would cost a pass over the frame and blur
it by more than the motion it corrects."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from convstack.stack import _frames as frames_mod
from convstack.stack import align, fuse
from convstack.stack._frames import STILL_MOTION, is_identity, to_reference_grid
from convstack.warp import warp
from test_stack_fusion import two_depth_stack


def _shift(rows: float, cols: float) -> np.ndarray:
    matrix = np.eye(3)
    matrix[:2, 2] = rows, cols
    return matrix


def test_is_identity_is_every_pixel_moving_less_than_the_still_motion() -> None:
    shape = (1000, 2000, 3)
    assert STILL_MOTION == 0.01
    assert is_identity(np.eye(3), shape)
    assert is_identity(_shift(0.005, 0.008), shape)  # 0.0094 px
    assert not is_identity(_shift(0.008, 0.008), shape)  # 0.0113 px
    # a zoom about the origin moves the far corner most: hypot(999, 1999) times it
    assert is_identity(np.diag([1 + 4e-6, 1 + 4e-6, 1.0]), shape)  # 0.0089 px there
    assert not is_identity(np.diag([1 + 6e-6, 1 + 6e-6, 1.0]), shape)  # 0.0134 px
    assert not is_identity(np.diag([1 + 6e-6, 1 + 6e-6, 1.0]), (2000, 1000))
    assert is_identity(np.diag([1 + 6e-6, 1 + 6e-6, 1.0]), (100, 200))  # small frame
    projective = np.eye(3)
    projective[2, 0] = 1e-9  # projective: always resampled
    assert not is_identity(projective, shape)
    assert not is_identity(np.eye(3) * 2, shape)  # (not normalised: not taken as still)
    assert not is_identity(_shift(np.nan, 0.0), shape)


@pytest.mark.parametrize("order", [3, 5])
def test_a_still_frame_is_not_resampled_and_differs_from_its_warp_by_the_warp_error(
    order: int,
) -> None:
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    before = raw.copy()
    still = _shift(0.004, -0.006)
    got = to_reference_grid(raw, still, None, order)
    np.testing.assert_array_equal(got, raw.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(raw, before)  # input unchanged
    # the warp it saved: as far from the frame as the motion is small (noise: its
    # gradient is up to a level a pixel, so 0.0072 px moves a sample by < 0.0072;
    # the spline's own smoothing of noise adds to that)
    resampled = warp(raw, still, order=order, mode="nearest", separable=order == 5)
    error = np.abs(resampled.astype(np.float32) / 255 - got)
    assert 0 < error.max() < 0.05


def _tiny_steps(monkeypatch: pytest.MonkeyPatch, step: np.ndarray) -> None:
    """Every registration finds ``step`` (trusted, aligned)."""

    def register_checked(*args: Any, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        outcome = {"asked": "similarity", "model": "similarity", "status": "aligned"}
        outcome.update(correlation=0.99, identity=0.9, step=step)
        return step, outcome

    monkeypatch.setattr(align, "register_checked", register_checked)


def test_fuse_merges_frames_registered_as_still_as_they_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frames, _ = two_depth_stack(rows=64, cols=96, count=5)
    plain = fuse(frames, align="none").image
    step = _shift(0.002, -0.0015)  # chained over two steps each way: < 0.01 px
    _tiny_steps(monkeypatch, step)
    result = fuse(frames)
    assert any(not np.array_equal(m, np.eye(3)) for m in result.transforms)  # kept as found
    np.testing.assert_array_equal(result.image, plain)  # but nothing resampled
    # resampled, the image differs from the still one by about the warp's own error
    monkeypatch.setattr(frames_mod, "STILL_MOTION", 0.0)
    warped = fuse(frames).image
    difference = np.abs(warped.astype(np.int16) - plain.astype(np.int16))
    assert 0 < difference.max() <= 8 and difference.mean() < 0.5
