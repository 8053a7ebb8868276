"""fuse(memory_limit=...): the plan (forked reader or thread, merge strip rows) follows
the budget, a budget below the leanest estimate is refused before any frame is
decoded, and the output is the same whatever the plan (issue 14, part 3)."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from convstack.limits import LimitError
from convstack.stack import _schedule, fuse
from convstack.stack import io as stack_io
from convstack.stack._schedule import estimate_peak, estimate_strip_major, plan_memory
from convstack.stack._source import probe_header
from convstack.stack.fusion import STRIP_BUDGET, STRIP_MIN_ROWS
from convstack.stack.strips import rows_for_budget, strip_bytes

MiB = 1 << 20


def _stack(channels: int = 3, count: int = 4, rows: int = 300, cols: int = 220) -> np.ndarray:
    """Frames each sharp in its own band of rows, shifted a little each (warped)."""
    rng = np.random.default_rng(3)
    sharp = rng.random((rows, cols, channels)).astype(np.float32)
    soft = cv2.GaussianBlur(sharp, (0, 0), 2.0).reshape(rows, cols, channels)
    frames = []
    for i in range(count):
        frame = soft.copy()
        frame[rows * i // count : rows * (i + 1) // count] = sharp[
            rows * i // count : rows * (i + 1) // count
        ]
        shift = np.float32([[1, 0, 0.6 * i], [0, 1, -0.3 * i]])
        frame = cv2.warpAffine(frame, shift, (cols, rows), borderMode=cv2.BORDER_REFLECT)
        frames.append(np.rint(frame.reshape(rows, cols, channels) * 255).astype(np.uint8))
    stack = np.stack(frames)
    return stack[..., 0] if channels == 1 else stack


def _plan(limit: int, shape: tuple[int, ...] = (300, 220, 3)) -> _schedule.MemoryPlan:
    """The plan fuse makes (its default strips: fusion's 'auto')."""
    rows = max(STRIP_MIN_ROWS, rows_for_budget(shape, STRIP_BUDGET))
    return plan_memory(shape, np.dtype(np.uint8), "pyramid", limit, default_rows=rows)


# --------------------------------------------------------------------------- the plan


def test_plan_forks_when_the_budget_allows_and_uses_a_thread_below():
    shape = (2000, 3000, 3)
    forked = estimate_peak(shape, np.dtype(np.uint8), "pyramid", forked=True)
    alone = estimate_peak(shape, np.dtype(np.uint8), "pyramid", forked=False)
    strips = strip_bytes(shape, 160)  # (160 rows: 'auto' at 3000 columns of colour)
    assert _plan(1 << 40, shape).strip_rows == 160
    assert alone < forked  # the forked reader costs a process of its own
    assert _plan(forked + strips, shape).forked
    plan = _plan(forked + strips - 1, shape)
    assert not plan.forked and plan.strip_rows == 160
    assert plan.estimate == alone + strips


def test_plan_shrinks_the_strips_before_refusing():
    shape = (2000, 3000, 3)
    alone = estimate_peak(shape, np.dtype(np.uint8), "pyramid", forked=False)
    plan = _plan(alone + strip_bytes(shape, 160) // 2, shape)
    assert not plan.forked
    assert isinstance(plan.strip_rows, int) and 8 <= plan.strip_rows < 160
    assert plan.strip_rows % 8 == 0
    assert plan.estimate <= alone + strip_bytes(shape, 160) // 2
    assert _plan(alone + strip_bytes(shape, 8), shape).strip_rows == 8
    lean = alone + strip_bytes(shape, 8)
    below = _plan(lean - 1, shape)  # under the leanest frame-major schedule: strip-major
    assert below.strip_major and below.estimate <= lean - 1
    least = estimate_strip_major(shape, np.dtype(np.uint8), 8)
    with pytest.raises(LimitError, match=rf"needs about .* \({least} bytes\) .* limit of .*"):
        _plan(least - 1, shape)
    refused = r"needs about [\d.]+ [MG]iB .* limit of 500\.0 MiB; raise"
    with pytest.raises(LimitError, match=refused):
        _plan(500 * MiB, shape)


def test_estimate_is_linear_in_pixels_and_conservative_for_wider_samples():
    def peak(shape: tuple[int, ...], dtype: type = np.uint8, method: str = "pyramid") -> int:
        return estimate_peak(shape, np.dtype(dtype), method, forked=False)

    small, large = peak((1000, 1000, 3)), peak((2000, 2000, 3))
    assert large - small == 3 * (small - peak((0, 0, 3)))
    assert peak((1000, 1000, 3), np.uint16) > small
    assert peak((1000, 1000, 3), np.float64) > peak((1000, 1000, 3), np.float32) > small
    assert peak((1000, 1000), np.uint8) < small  # fewer channels
    assert peak((1000, 1000, 3), method="weighted") > small  # not measured: more


# --------------------------------------------------------------------------- fuse


@pytest.fixture
def which_worker(monkeypatch):
    """Records whether the scheduler forked a reader or ran a thread."""
    used: list[str] = []
    forked, threaded = _schedule.Scheduler.forked, _schedule.Scheduler.threaded

    def forked_spy(self):
        used.append("forked")
        return forked(self)

    def threaded_spy(self, pool):
        used.append("threaded")
        return threaded(self, pool)

    monkeypatch.setattr(_schedule.Scheduler, "forked", forked_spy)
    monkeypatch.setattr(_schedule.Scheduler, "threaded", threaded_spy)
    monkeypatch.setenv("CONVSTACK_FORK", "1")  # (small frames: forked where the plan says)
    return used


def test_fork_or_thread_follows_the_budget(which_worker):
    frames = _stack()
    if not _schedule.can_fork():
        pytest.skip("no fork here")
    forked = _plan(1 << 40).estimate
    fuse(frames, align="translation", memory_limit=forked)
    fuse(frames, align="translation", memory_limit=forked - 1)
    assert which_worker == ["forked", "threaded"]


def test_output_is_the_same_whatever_the_budget(which_worker):
    frames = _stack()
    shape = (300, 220, 3)
    alone = estimate_peak(shape, np.dtype(np.uint8), "pyramid", forked=False)
    budgets = [1 << 40, "300MiB", alone + strip_bytes(shape, 48), alone + strip_bytes(shape, 8)]
    plans = [_plan(300 * MiB if isinstance(b, str) else b) for b in budgets]
    # forked, then a thread: whole frames in one strip ('auto'), then 48 and 8 rows
    assert [(p.forked, p.strip_rows) for p in plans] == [
        (True, 3048), (False, 3048), (False, 48), (False, 8)
    ]  # fmt: skip
    results = [fuse(frames, align="translation", memory_limit=b) for b in budgets]
    for other in results[1:]:
        for name in ("image", "depth", "confidence"):
            np.testing.assert_array_equal(getattr(other, name), getattr(results[0], name))
        for a, b in zip(other.transforms, results[0].transforms, strict=True):
            np.testing.assert_array_equal(a, b)
    if _schedule.can_fork():
        assert which_worker[0] == "forked" and "threaded" in which_worker


def _written(folder, suffix: str) -> list:
    """Three frames of :func:`_stack` written by OpenCV as ``f0.SUFFIX``, ..."""
    paths = [folder / f"f{i}.{suffix}" for i in range(3)]
    for path, frame in zip(paths, _stack(count=3), strict=True):
        assert cv2.imwrite(str(path), frame)
    return paths


@pytest.fixture
def decoded(monkeypatch):
    """The sources this process's read_image decodes, in order (a spy)."""
    seen: list[object] = []
    read_image = stack_io.read_image

    def noticed(*args, **kwargs):
        seen.append(args[0])
        return read_image(*args, **kwargs)

    monkeypatch.setattr(stack_io, "read_image", noticed)
    return seen


def test_a_budget_below_the_estimate_is_refused_before_any_frame_is_decoded(tmp_path, decoded):
    paths = _written(tmp_path, "tif")
    with pytest.raises(LimitError, match=r"more than the memory limit of 100\.0 MiB; raise it"):
        fuse(paths, memory_limit="100MiB")
    first = io.BytesIO(paths[0].read_bytes())  # a file object: only its bytes are read
    with pytest.raises(LimitError, match="--memory-limit"):
        fuse([first, *paths[1:]], memory_limit=100 * MiB)
    assert decoded == []
    fuse(paths, align="none", memory_limit="1GiB")
    assert paths[1] in decoded  # the spy sees this process decode (a forked reader its own)


def test_a_frame_whose_header_says_nothing_is_read_first_then_refused(tmp_path, decoded):
    paths = _written(tmp_path, "bmp")
    assert probe_header(paths[0]) is None
    with pytest.raises(LimitError, match="memory limit"):
        fuse(paths, memory_limit="100MiB")
    assert decoded == [paths[1]]  # the reference only
    plain = fuse(paths, align="none", memory_limit="1GiB")
    again = fuse(paths, align="none")
    np.testing.assert_array_equal(plain.image, again.image)


@pytest.mark.parametrize(
    ("limit", "kind", "message"),
    [
        (-1, ValueError, r"`memory_limit` must be a size > 0; got -1\."),
        (0, ValueError, r"`memory_limit` must be a size > 0; got 0\."),
        ("lots", ValueError, r"`memory_limit` must be a size such as 2GiB.*; got 'lots'\."),
        (1.5e9, TypeError, r"`memory_limit` must be a size in bytes or a string"),
        (True, TypeError, r"`memory_limit` must be a size in bytes or a string"),
    ],
)
def test_bad_memory_limit_is_named(limit, kind, message):
    with pytest.raises(kind, match=message):
        fuse(_stack(count=2, rows=40, cols=30), memory_limit=limit)


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("suffix", "channels", "dtype"),
    [
        (".png", 3, np.uint8),
        (".png", 1, np.uint16),
        (".png", 4, np.uint8),
        (".jpg", 3, np.uint8),
        (".jpg", 1, np.uint8),
        (".tif", 3, np.uint16),
        (".tif", 1, np.float32),
    ],
)
def test_probe_header_says_what_reading_gives(tmp_path, suffix, channels, dtype):
    rng = np.random.default_rng(0)
    image = (rng.random((37, 53, channels)) * (1 if dtype == np.float32 else 200)).astype(dtype)
    path = tmp_path / f"frame{suffix}"
    assert cv2.imwrite(str(path), image[..., 0] if channels == 1 else image)
    read = stack_io.read_image(path)  # the oracle: the decoder itself
    # (an alpha channel is dropped on reading: the header gives an upper bound)
    said = (*read.shape[:2], channels) if channels == 4 else read.shape
    assert probe_header(path) == (said, read.dtype)
    assert probe_header("x", path.read_bytes()) == (said, read.dtype)
    array = np.zeros((5, 6, 1), np.float64)
    assert probe_header(array) == ((5, 6), np.dtype(np.float64))
    assert probe_header(tmp_path / "missing.png") is None


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def frame_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, frame in enumerate(_stack(count=3, rows=64, cols=48)):
        assert cv2.imwrite(str(folder / f"f{i}.png"), frame)
    return folder


@pytest.fixture
def fuse_calls(monkeypatch):
    """The memory_limit each `fuse` the CLI makes is given (then the real fuse)."""
    from convstack.cli import _fuse

    seen: list[object] = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("memory_limit"))
        return fuse(*args, **kwargs)

    monkeypatch.setattr(_fuse, "fuse", spy)
    return seen


def test_cli_memory_limit_reaches_fuse(frame_folder, tmp_path, fuse_calls):
    from convstack.cli import main

    out = tmp_path / "out.png"
    assert main(["fuse", str(frame_folder), "-o", str(out), "--quiet"]) == 0
    argv = ["fuse", str(frame_folder), "-o", str(out), "--force", "--quiet"]
    assert main([*argv, "--memory-limit", "1.5GiB"]) == 0
    assert fuse_calls == [None, int(1.5 * 2**30)]


def test_cli_memory_limit_below_the_estimate_is_a_clean_error(frame_folder, tmp_path, capsys):
    from convstack.cli import main

    out = tmp_path / "out.png"
    code = main(["fuse", str(frame_folder), "-o", str(out), "--memory-limit", "100MiB"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.startswith("error: fusing frames of 64 x 48 pixels x 3 channels of uint8")
    assert "more than the memory limit of 100.0 MiB; raise it" in err
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "-1", "lots", "2 GiBs"])
def test_cli_bad_memory_limit_is_a_usage_error(frame_folder, tmp_path, capsys, value):
    from convstack.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["fuse", str(frame_folder), "-o", str(tmp_path / "o.png"), "--memory-limit", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    rule = "must be a size > 0 such as 2GiB, 512MB or a number of bytes"
    assert f"--memory-limit: {rule}; got {value!r}" in err


def test_batch_passes_the_memory_limit_on(frame_folder, tmp_path, fuse_calls, capsys):
    from convstack.cli import main

    root = tmp_path / "root" / "a"
    root.mkdir(parents=True)
    for path in frame_folder.iterdir():
        (root / path.name).write_bytes(path.read_bytes())
    outdir = tmp_path / "out"
    argv = ["batch", str(root.parent), "-o", str(outdir), "--quiet"]
    assert main([*argv, "--memory-limit", "100MiB"]) == 1  # refused, named in the report
    assert "more than the memory limit of 100.0 MiB" in capsys.readouterr().err
    assert main([*argv, "--memory-limit", "1GiB"]) == 0
    # the batch's budget is the limit in force while it runs (split between --jobs
    # workers: tests/test_cli_fuse_options.py), so each fuse plans within it
    assert fuse_calls == [None, None]


# --------------------------------------------------------------- frames decoded ahead


def _leanest(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """The smallest budget small frames are fused in: one process, the least strips
    (below the strip-major merge's estimate, whose fixed bytes are more)."""
    least = 1 << _schedule.STRIP_LEVEL
    lean = estimate_peak(shape, dtype, "pyramid", forked=False) + strip_bytes(shape, least)
    assert lean < estimate_strip_major(shape, dtype, least)
    return lean


def test_plan_counts_bytes_held_within_the_limit():
    shape = (300, 220, 3)
    rows = max(STRIP_MIN_ROWS, rows_for_budget(shape, STRIP_BUDGET))
    u8 = np.dtype(np.uint8)
    forked = estimate_peak(shape, u8, "pyramid", forked=True) + strip_bytes(shape, rows)
    alone = estimate_peak(shape, u8, "pyramid", forked=False) + strip_bytes(shape, rows)
    assert _plan(forked).forked
    held = 5 * MiB  # frames decoded ahead, kept until fuse reads them
    plan = plan_memory(shape, u8, "pyramid", forked, default_rows=rows, held=held)
    assert not plan.forked
    assert plan.estimate == alone + held <= forked
    assert plan_memory(shape, u8, "pyramid", forked + held, default_rows=rows, held=held).forked
    lean = _leanest(shape, u8)
    with pytest.raises(LimitError, match=r"needs about .* more than the memory limit of"):
        plan_memory(shape, u8, "pyramid", lean, default_rows=rows, held=1)
    assert plan_memory(shape, u8, "pyramid", lean, default_rows=rows).estimate == lean


def test_fuse_plans_with_the_frames_decoded_ahead(tmp_path):
    paths = _written(tmp_path, "png")
    frame = cv2.imread(str(paths[0]))
    lean = _leanest(frame.shape, frame.dtype)
    try:
        ahead = stack_io.ReadAhead(paths, 1 << 30)
        ahead._thread.join()  # all three decoded: none read yet
        ahead.stop()
        assert stack_io.read_ahead_bytes() == 3 * frame.nbytes
        with pytest.raises(LimitError, match="more than the memory limit"):
            fuse(paths, memory_limit=lean)
    finally:
        stack_io.drop_read_ahead()
    assert stack_io.read_ahead_bytes() == 0
    fuse(paths, memory_limit=lean)  # the same budget fits once nothing is held


def test_the_commands_read_ahead_holds_at_most_a_16th_of_the_limit(tmp_path):
    import argparse

    from convstack.cli import _fuse

    paths = _written(tmp_path, "png")
    frame_bytes = cv2.imread(str(paths[0])).nbytes
    limit = 16 * (2 * frame_bytes + frame_bytes // 2)  # room for two frames of three
    args = argparse.Namespace(memory_limit=limit, alpha=False, reference=None)
    try:
        ahead = _fuse._read_ahead(args, list(map(str, paths)), None)
        ahead._thread.join()
        ahead.stop()
        assert stack_io.read_ahead_bytes() == 2 * frame_bytes <= limit // 16
    finally:
        stack_io.drop_read_ahead()
