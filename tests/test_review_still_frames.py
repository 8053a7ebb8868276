"""Review of 21000ed: frames whose registered motion is under ``STILL_MOTION`` are merged
as read. On every schedule (frame-major, strip-major with its cache of frames as read,
photometric correction, the forked reader) the result must be the one of the same
frames with ``align='none'``: nothing resampled anywhere, transforms reported as found.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from convstack.stack import align, forked, fuse
from test_strip_major import _frame_major, _stack, _strip_major


def _tiny_steps(monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    """Every registration finds a 0.0025 px step (trusted): chained over the stack's
    two steps either side of the reference, still under 0.01 px."""
    step = np.eye(3)
    step[:2, 2] = 0.002, -0.0015

    def register_checked(*args: Any, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        outcome = {"asked": "similarity", "model": "similarity", "status": "aligned"}
        outcome.update(correlation=0.99, identity=0.9, step=step)
        return step, outcome

    monkeypatch.setattr(align, "register_checked", register_checked)
    return step


@pytest.mark.parametrize(
    ("shape", "dtype", "grey", "options"),
    [
        ((150, 203), np.uint8, False, {}),
        ((133, 171), np.uint16, True, {}),
        ((128, 128), np.uint16, False, {"photometric": True}),
        ((120, 160), np.float32, False, {"noise_floor": 3.0}),
    ],
)
@pytest.mark.parametrize("schedule", ["frame-major", "strip-major"])
def test_still_frames_merge_as_align_none_on_every_schedule(
    monkeypatch: pytest.MonkeyPatch,
    shape: tuple[int, int],
    dtype: Any,
    grey: bool,
    options: dict[str, Any],
    schedule: str,
) -> None:
    frames = _stack(shape, 5, dtype, grey=grey)
    _frame_major(monkeypatch, 24)
    plain = fuse(frames, align="none", **options)
    _tiny_steps(monkeypatch)
    if schedule == "strip-major":
        made = _strip_major(monkeypatch, 16)
    got = fuse(frames, **options)
    if schedule == "strip-major":
        assert len(made) == 1 and made[0].closed
    assert any(not np.array_equal(m, np.eye(3)) for m in got.transforms)  # as found
    np.testing.assert_array_equal(got.image, plain.image)
    np.testing.assert_array_equal(got.depth, plain.depth)


@pytest.mark.skipif(not forked.can_fork(), reason="no fork on this platform")
@pytest.mark.parametrize(("share", "credit"), [(0, 0.0), (1, 0.0), (0, 5.0), (1, 5.0)])
def test_still_frames_through_the_forked_reader_merge_as_align_none(
    monkeypatch: pytest.MonkeyPatch, share: int, credit: float
) -> None:
    # the child finishes the frames (share 1) or hands them back (0); the parent reads
    # frames for it (credit) or not: every way, nothing is resampled
    from convstack.stack import _schedule

    rng = np.random.default_rng(8)
    frames = [(rng.random((48, 64, 3)) * 255).astype(np.uint8) for _ in range(5)]
    plain = fuse(frames, align="none")
    _tiny_steps(monkeypatch)
    used: list[str] = []
    real = _schedule.Scheduler.forked

    def spy(self: _schedule.Scheduler) -> object:
        used.append("forked")
        return real(self)

    monkeypatch.setattr(_schedule.Scheduler, "forked", spy)
    monkeypatch.setattr(_schedule, "FORK_MIN_PIXELS", 1)
    monkeypatch.setattr(_schedule, "balanced_share", lambda costs: share)
    monkeypatch.setattr(_schedule, "read_credit", lambda costs, s: credit)
    monkeypatch.setenv(forked.ENVIRONMENT_SWITCH, "1")
    got = fuse(frames)
    assert used == ["forked"]
    np.testing.assert_array_equal(got.image, plain.image)
    np.testing.assert_array_equal(got.depth, plain.depth)
