"""The strip-major merge (issue 14, bounded memory): two passes, frames cached on disk.

The oracle is the frame-major merge (``PyramidAccumulator.add`` of every frame, then
``result``; tests/test_strips.py holds it against the whole-frame merge): the
strip-major one makes the same per-pixel arithmetic in the same order, so the tests
ask for the same bits, not one grey level.
"""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convstack.limits import LimitError
from convstack.stack import _strip_major as SM
from convstack.stack import fuse, pipeline
from convstack.stack import fusion as F
from convstack.stack._schedule import MemoryPlan, plan_memory
from convstack.stack._strip_major import FrameCache
from convstack.stack.synthetic import make_scene, render_stack


def _stack(
    shape: tuple[int, int], count: int, dtype: Any, *, grey: bool = False, seed: int = 0
) -> list[np.ndarray]:
    """A rendered focus stack in ``dtype`` (float: [0, 1] float32)."""
    frames = render_stack(make_scene(shape, seed=seed), count, noise=0.01, seed=seed).frames
    out = []
    for frame in frames:
        f = frame.mean(axis=2) if grey else frame
        if np.dtype(dtype).kind == "u":
            top = np.iinfo(dtype).max
            f = np.clip(np.rint(f * top), 0, top).astype(dtype)
        else:
            f = f.astype(dtype)
        out.append(f)
    return out


def _strip_major(monkeypatch: pytest.MonkeyPatch, rows: int) -> list[FrameCache]:
    """Make fuse's memory plan strip-major with ``rows`` a strip; the caches made."""
    made: list[FrameCache] = []

    class Spy(FrameCache):
        def __init__(self, frames: int = 0) -> None:
            super().__init__(frames)
            made.append(self)

    monkeypatch.setattr(
        pipeline, "plan_memory", lambda *a, **k: MemoryPlan(False, rows, 0, strip_major=True)
    )
    monkeypatch.setattr(pipeline, "FrameCache", Spy)
    return made


def _frame_major(monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
    monkeypatch.setattr(pipeline, "plan_memory", lambda *a, **k: MemoryPlan(False, rows, 0))


CASES = [
    # (shape, count, dtype, grey, fuse options)
    ((150, 203), 4, np.uint8, False, {}),
    ((133, 171), 3, np.uint16, True, {}),
    ((120, 160), 3, np.float32, False, {"noise_floor": 3.0}),
    ((97, 130), 3, np.uint8, True, {"method": "maxabs"}),
    ((128, 128), 4, np.uint16, False, {"photometric": True, "height": True}),
]


@pytest.mark.parametrize(("shape", "count", "dtype", "grey", "options"), CASES)
@pytest.mark.parametrize("rows", [8, 40])
def test_strip_major_equals_frame_major_to_the_bit(
    monkeypatch: pytest.MonkeyPatch,
    shape: tuple[int, int],
    count: int,
    dtype: Any,
    grey: bool,
    options: dict[str, Any],
    rows: int,
) -> None:
    frames = _stack(shape, count, dtype, grey=grey)
    kept = [f.copy() for f in frames]
    _frame_major(monkeypatch, 24)
    expected = fuse(frames, align="none", **options)
    made = _strip_major(monkeypatch, rows)
    got = fuse(frames, align="none", **options)
    assert len(made) == 1 and made[0].closed
    assert got.image.dtype == expected.image.dtype
    np.testing.assert_array_equal(got.image, expected.image)
    np.testing.assert_array_equal(got.depth, expected.depth)
    for frame, copy in zip(frames, kept, strict=True):
        np.testing.assert_array_equal(frame, copy)  # inputs untouched


def test_strip_major_with_rotation_and_zoom(monkeypatch: pytest.MonkeyPatch) -> None:
    from convstack.warp import warp

    frames = _stack((160, 200), 4, np.uint8)
    centre = np.array([80.0, 100.0])
    moved = []
    for k, frame in enumerate(frames):
        angle, zoom = 0.01 * (k - 2), 1.0 + 0.004 * (k - 2)
        c, s = np.cos(angle) * zoom, np.sin(angle) * zoom
        m = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        m[:2, 2] = centre - m[:2, :2] @ centre + [0.7 * k, -0.4 * k]
        out = warp(frame, m, order=3, mode="nearest")
        moved.append(np.clip(np.rint(out), 0, 255).astype(np.uint8))
    _frame_major(monkeypatch, 16)
    expected = fuse(moved, align="similarity")
    _strip_major(monkeypatch, 16)
    got = fuse(moved, align="similarity")
    assert any(not np.allclose(m, np.eye(3)) for m in got.transforms)
    np.testing.assert_array_equal(got.image, expected.image)


def _open_caches() -> list[str]:
    """This process's open files that are unlinked frame caches."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "convstack-frames-" in target:
            found.append(target)
    return found


def test_the_cache_leaves_nothing_after_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = _stack((96, 128), 4, np.uint8)
    broken = [*frames[:3], frames[3][:, :-1]]  # the last frame read does not match
    made = _strip_major(monkeypatch, 16)
    with pytest.raises(ValueError, match="differ from those of the reference"):
        fuse(broken, align="none")
    gc.collect()
    assert made and all(cache.closed for cache in made)
    assert _open_caches() == []
    assert not any(name.startswith("convstack-frames-") for name in os.listdir(_tmp()))


def _tmp() -> str:
    import tempfile

    return tempfile.gettempdir()


def test_the_cache_reads_back_rows_and_is_never_on_disk() -> None:
    rng = np.random.default_rng(0)
    colour = rng.random((30, 20, 3)).astype(np.float32)
    grey = rng.random((30, 20)).astype(np.float32)
    with FrameCache() as cache:
        cache.put(7, colour)
        cache.put(2, grey)
        assert len(_open_caches()) == 1
        assert not any(n.startswith("convstack-frames-") for n in os.listdir(_tmp()))
        np.testing.assert_array_equal(cache.rows(7, 5, 17), np.moveaxis(colour, 2, 0)[:, 5:17])
        np.testing.assert_array_equal(cache.rows(2, 0, 30), grey)
    assert cache.closed and _open_caches() == []


def test_accumulator_strip_major_equals_add_and_result() -> None:
    # the accumulator alone, odd sizes, strips of 8 rows (the smallest) to one strip
    rng = np.random.default_rng(3)
    for shape, options in [
        ((203, 177, 3), {}),
        ((77, 65), {"noise": 2.0}),
        ((64, 64, 3), {}),
        ((40, 50), {}),
        ((99, 70), {"soft_levels": 1}),
    ]:
        scene = rng.random(shape).astype(np.float32)
        frames = [scene + 0.3 * rng.random(shape).astype(np.float32) for _ in range(3)]
        depth = 2 * rng.random(shape[:2]).astype(np.float32)
        for rows in (8, 24, 1000):
            whole = F.PyramidAccumulator(strip_rows=rows, **options)
            strips = F.PyramidAccumulator(strip_rows=rows, **options)
            planar = []
            for i, frame in enumerate(frames):
                whole.add(i, frame)
                strips.add_coarse(i, frame)
                planar.append(np.moveaxis(frame, 2, 0) if frame.ndim == 3 else frame)
            expected = whole.result(depth, np.uint16)
            got = strips.merge_strips(
                lambda i, lo, hi, p=planar: p[i][..., lo:hi, :].copy(), [0, 1, 2], depth, np.uint16
            )
            np.testing.assert_array_equal(got, expected)
            # the noise floor's measure (issue 16), streamed or not, is one value
            assert strips.sigma2 == whole.sigma2
            if "noise" in options:
                single = F.PyramidAccumulator(strip_rows=None, **options)
                single.add(0, frames[0])
                assert single.sigma2 == whole.sigma2 > 0


def test_add_coarse_needs_two_levels() -> None:
    with pytest.raises(ValueError, match="needs at least 2 pyramid levels; got 1"):
        F.PyramidAccumulator(levels=1).add_coarse(0, np.zeros((40, 40), np.float32))


def test_the_plan_goes_strip_major_when_frame_major_does_not_fit() -> None:
    from convstack.stack._schedule import estimate_peak, estimate_strip_major
    from convstack.stack.strips import strip_bytes

    shape, dtype = (3000, 4000, 3), np.dtype(np.uint8)
    roomy = plan_memory(shape, dtype, "pyramid", 1 << 40, default_rows=160)
    assert not roomy.strip_major
    # under the leanest frame-major schedule, over the strip-major one
    lean = estimate_peak(shape, dtype, "pyramid", forked=False) + strip_bytes(shape, 8)
    tight = plan_memory(shape, dtype, "pyramid", lean - 1, default_rows=160)
    assert tight.strip_major and not tight.forked and tight.estimate <= lean - 1
    assert tight.estimate == estimate_strip_major(shape, dtype, int(tight.strip_rows))
    # the other methods have no strip-major merge
    with pytest.raises(LimitError, match=r"method 'weighted'\) needs about"):
        plan_memory(shape, dtype, "weighted", lean - 1, default_rows=160)
    # below even the strip-major estimate: refused, and said so
    least = estimate_strip_major(shape, dtype, 8)
    with pytest.raises(LimitError, match=r"smallest merge strips \(strip-major\)"):
        plan_memory(shape, dtype, "maxabs", least - 1, default_rows=160)


def _zoom_whole(small: np.ndarray, factor: int) -> np.ndarray:
    """zoom_bilinear's formula on whole arrays (the oracle of its blocks): per axis and
    output phase, the sample mixed with its clamped neighbour before or after."""
    out = small
    for axis in (0, 1):
        moved = np.moveaxis(out, axis, 0)
        prev = np.concatenate([moved[:1], moved[:-1]])
        nxt = np.concatenate([moved[1:], moved[-1:]])
        up = np.empty((moved.shape[0] * factor, *moved.shape[1:]), np.float32)
        for phase in range(factor):
            pos = (phase + 0.5) / factor - 0.5
            if pos < 0:
                up[phase::factor] = prev * np.float32(-pos) + moved * np.float32(1 + pos)
            else:
                up[phase::factor] = moved * np.float32(1 - pos) + nxt * np.float32(pos)
        out = np.moveaxis(up, 0, axis)
    return out


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (5, 1), (300, 7), (513, 260)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("factor", [2, 4])
def test_zoom_in_blocks_has_the_whole_arrays_bits(
    shape: tuple[int, int], dtype: Any, factor: int
) -> None:
    # the depth map's zoom to full size runs in blocks of rows (fuse's peak on big
    # frames): the same arithmetic, so the same bits, blocks' edges included
    from convstack.stack.depth import zoom_bilinear

    small = np.random.default_rng(1).random(shape).astype(dtype)
    kept = small.copy()
    np.testing.assert_array_equal(zoom_bilinear(small, factor), _zoom_whole(small, factor))
    np.testing.assert_array_equal(small, kept)


def test_a_small_budget_makes_fuse_strip_major(monkeypatch: pytest.MonkeyPatch) -> None:
    # the real plan: under the frame-major estimate (at least its fixed 236 MiB) and
    # over the strip-major one (its constants made tiny here), fuse goes strip-major
    from convstack.stack import _schedule

    frames = np.stack(_stack((120, 150), 3, np.uint8))
    expected = fuse(frames, align="none")
    made: list[FrameCache] = []

    class Spy(FrameCache):
        def __init__(self, frames: int = 0) -> None:
            super().__init__(frames)
            made.append(self)

    monkeypatch.setattr(pipeline, "FrameCache", Spy)
    monkeypatch.setattr(_schedule, "_STRIP_MAJOR", (1 << 20, 1, 0))
    got = fuse(frames, align="none", memory_limit="200MiB")
    assert len(made) == 1 and made[0].closed
    np.testing.assert_array_equal(got.image, expected.image)
    np.testing.assert_array_equal(got.confidence, expected.confidence)


def test_strip_major_shows_the_same_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = _stack((96, 120), 3, np.uint16)

    def steps() -> dict[str, np.ndarray]:
        seen: dict[str, np.ndarray] = {}
        fuse(frames, align="translation", on_step=lambda name, a: seen.update({name: a.copy()}))
        return seen

    _frame_major(monkeypatch, 16)
    expected = steps()
    _strip_major(monkeypatch, 16)
    got = steps()
    assert sorted(got) == sorted(expected) and "aligned_001" in got
    for name, array in expected.items():
        np.testing.assert_array_equal(got[name], array, err_msg=name)


def test_strip_major_photometric_with_alignment(monkeypatch: pytest.MonkeyPatch) -> None:
    # the frame brightness-matched in place there, registered frames' lumas kept as
    # they were for the registrar: the same bits as frame-major
    frames = _stack((112, 144), 4, np.uint8)
    drifted = []
    for k, frame in enumerate(frames):
        moved = np.roll(frame, (k - 2, 2 * k - 3), axis=(0, 1)).astype(np.float32)
        drifted.append(np.clip(moved * (0.85 + 0.1 * k) + 6 * k, 0, 255).astype(np.uint8))
    kept = [f.copy() for f in drifted]
    _frame_major(monkeypatch, 16)
    expected = fuse(drifted, align="translation", photometric=True)
    _strip_major(monkeypatch, 16)
    got = fuse(drifted, align="translation", photometric=True)
    assert any(not np.allclose(m, np.eye(3)) for m in got.transforms)
    np.testing.assert_array_equal(got.image, expected.image)
    np.testing.assert_array_equal(got.depth, expected.depth)
    for frame, copy in zip(drifted, kept, strict=True):
        np.testing.assert_array_equal(frame, copy)


@pytest.mark.parametrize("q", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_streamed_quantile_is_numpys_quantile(q: float) -> None:
    # the first frame's tau without its whole energies: two passes over chunks must
    # give np.quantile's value exactly (ties, zeros, one value, tiny and huge values)
    from convstack.stack.fusion import _StreamedQuantile

    rng = np.random.default_rng(5)
    cases = [
        rng.random(1001) ** 4,
        np.zeros(500),
        np.full(77, 3.5),
        np.concatenate([np.zeros(300), rng.random(50)]),
        rng.random(20000) * 1e-30,
        np.array([2.0]),
        np.array([1.0, 5.0]),
        np.concatenate([rng.random(100) * 1e30, rng.random(100)]),
    ]
    for values in cases:
        values = values.astype(np.float32)
        streamed = _StreamedQuantile(q)
        chunks = np.array_split(rng.permutation(values), 7)
        for chunk in chunks:
            streamed.first(chunk)
        streamed.between()
        for chunk in chunks:
            streamed.second(chunk)
        assert streamed.value() == float(np.quantile(values, q)), (values[:4], q)


def test_a_disk_without_room_is_said_before_the_frames_are_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil
    from collections import namedtuple

    from convstack.stack import _strip_major as cache_module
    from convstack.stack.errors import StackError

    frames = _stack((96, 128), 4, np.uint8)
    made = _strip_major(monkeypatch, 16)
    usage = namedtuple("usage", "total used free")
    real = shutil.disk_usage
    monkeypatch.setattr(
        cache_module.shutil, "disk_usage", lambda path: usage(1 << 30, 1 << 30, 1000)
    )
    room = r"keeps the registered frames on disk .* about 576\.0 KiB more in .*, which has "
    with pytest.raises(StackError, match=room + r"1000 B free; point TMPDIR at a larger disk"):
        fuse(frames, align="none")
    monkeypatch.setattr(cache_module.shutil, "disk_usage", real)

    def full(*args: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_module.os, "pwrite", full)
    with pytest.raises(StackError, match="about .* more in .*; point TMPDIR") as caught:
        fuse(frames, align="none")
    assert isinstance(caught.value.__cause__, OSError)
    del caught
    gc.collect()
    assert len(made) == 2 and all(cache.closed for cache in made)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [0, 3])
def test_an_unmoved_frame_is_cached_as_read(dtype: Any, channels: int) -> None:
    # a frame that did not move is kept as read (a quarter of the bytes for 8-bit) and
    # its rows come back as the float32 frame the merge took: divided by the dtype's
    # maximum, then photometric gain and offset, each rounded to float32
    rng = np.random.default_rng(2)
    shape = (40, 30, channels) if channels else (40, 30)
    raw = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    gain = (1.1, -0.02)
    frame = np.divide(raw, np.float32(np.iinfo(dtype).max), dtype=np.float32)
    frame = frame * np.float32(gain[0]) + np.float32(gain[1])
    planar = np.moveaxis(frame, 2, 0) if channels else frame
    with FrameCache(2) as cache:
        cache.put(0, frame, raw=raw, gain=gain)
        size = os.fstat(cache._fd).st_size
        assert size == raw.nbytes
        cache.put(1, frame)  # moved: float32
        assert os.fstat(cache._fd).st_size == size + frame.nbytes
        for index in (0, 1):
            np.testing.assert_array_equal(cache.rows(index, 7, 33), planar[..., 7:33, :])


def test_same_bits_compares_bits_in_blocks() -> None:
    from convstack.stack._strip_major import same_bits as _same_bits

    rng = np.random.default_rng(5)
    a = rng.random((517, 9), dtype=np.float32)
    b = a.copy()
    assert _same_bits(a, b, rows=16)
    b[516, 8] = np.nextafter(b[516, 8], np.float32(2))  # the last block's last value
    assert not _same_bits(a, b, rows=16)
    zero, minus = np.zeros((3, 3), np.float32), np.full((3, 3), -0.0, np.float32)
    assert not _same_bits(zero, minus)  # equal numbers, other bits
    nan = np.full((2, 2), np.nan, np.float32)
    assert _same_bits(nan, nan.copy())  # the same bits, though NaN != NaN
    assert not _same_bits(a, a[:, :8]) and not _same_bits(a, a.astype(np.float64))


@pytest.mark.parametrize("grey", [True, False])
def test_strip_major_big_frame_path_to_the_bit(monkeypatch: pytest.MonkeyPatch, grey: bool) -> None:
    # the path of frames of 1 MP and more (the measure on the half grid, in strips of
    # a few rows; a grey frame that did not move measured as its own luma), small
    from convstack.stack import depth as D

    monkeypatch.setattr(D, "_HALF_VOTE_PIXELS", 100)
    monkeypatch.setattr(D, "_MEASURE_PIXELS", 1000)
    frames = _stack((141, 167), 4, np.uint16, grey=grey)
    kept = [f.copy() for f in frames]
    _frame_major(monkeypatch, 24)
    expected = fuse(frames, align="none")
    made = _strip_major(monkeypatch, 16)
    got = fuse(frames, align="none")
    assert len(made) == 1 and made[0].closed
    np.testing.assert_array_equal(got.image, expected.image)
    np.testing.assert_array_equal(got.depth, expected.depth)
    np.testing.assert_array_equal(got.confidence, expected.confidence)
    for frame, copy in zip(frames, kept, strict=True):
        np.testing.assert_array_equal(frame, copy)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_unit_bits_is_the_frame_scaled_to_the_bit(dtype: Any) -> None:
    from convstack.stack._frames import to_reference_grid
    from convstack.stack._strip_major import unit_bits

    top = np.iinfo(dtype).max
    raw = np.random.default_rng(2).integers(0, top + 1, (261, 13)).astype(dtype)
    kept = raw.copy()
    scaled = to_reference_grid(raw, np.eye(3))  # the frame on the grid, as fuse makes it
    assert unit_bits(raw, scaled, rows=32)
    # the oracle: float64 division rounded once to float32 (exact here: a correctly
    # rounded float32 division is the rounded real quotient)
    assert unit_bits(raw, (raw / float(top)).astype(np.float32))
    off = scaled.copy()
    off[260, 12] = np.nextafter(off[260, 12], np.float32(2))
    assert not unit_bits(raw, off, rows=32)
    assert not unit_bits(raw, scaled.astype(np.float64))  # not float32
    assert not unit_bits(raw.astype(np.float32), scaled)  # not integers
    assert not unit_bits(raw[:, :12], scaled)
    np.testing.assert_array_equal(raw, kept)


def test_issue_14_budgets_plan_the_big_stacks() -> None:
    # the estimate's constants (fitted to bench/memory.py's runs) plan issue 14's two
    # big stacks within their budgets, strip-major, and refuse a budget below them
    from convstack.stack._schedule import estimate_strip_major

    for shape, dtype, budget in (
        ((12000, 16667), np.uint16, 4 << 30),  # 200 MP grey 16-bit
        ((5504, 8256, 3), np.uint8, 2 << 30),  # 45 MP colour 8-bit
    ):
        plan = plan_memory(shape, np.dtype(dtype), "pyramid", budget, default_rows=160)
        assert plan.strip_major and plan.estimate <= budget
        least = estimate_strip_major(shape, np.dtype(dtype), 8)
        with pytest.raises(LimitError, match=r"smallest merge strips \(strip-major\)"):
            plan_memory(shape, np.dtype(dtype), "pyramid", least - 1, default_rows=160)
    # colour measures a luma of its own, grey frames are their own luma
    grey = estimate_strip_major((1000, 1000), np.dtype(np.uint8), 8)
    colour = estimate_strip_major((1000, 1000, 3), np.dtype(np.uint8), 8)
    assert colour - grey >= 1000 * 1000 * (4 + 2 * 8)


def test_filesystem_type_reads_the_longest_mount_point(tmp_path: Path) -> None:
    assert SM.filesystem_type("/proc") == "proc"  # Linux's own
    assert SM.filesystem_type(str(tmp_path)) is not None


@pytest.mark.parametrize(
    ("tmpdir_set", "var_tmp", "expected", "warns"),
    [
        (False, "ext4", "/var/tmp", False),  # /tmp in memory: the disk's folder instead
        (True, "ext4", "TMP", True),  # TMPDIR chosen by the user: kept, and said
        (False, "tmpfs", "TMP", True),  # no folder on disk to take
    ],
)
def test_cache_folder_leaves_a_temporary_folder_in_memory(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    tmpdir_set: bool,
    var_tmp: str,
    expected: str,
    warns: bool,
) -> None:
    kinds = {str(tmp_path): "tmpfs", "/var/tmp": var_tmp}
    monkeypatch.setattr(SM, "filesystem_type", lambda folder: kinds.get(folder))
    monkeypatch.setattr(SM.tempfile, "gettempdir", lambda: str(tmp_path))
    if tmpdir_set:
        monkeypatch.setenv("TMPDIR", str(tmp_path))
    else:
        monkeypatch.delenv("TMPDIR", raising=False)
    with caplog.at_level(logging.WARNING, logger=SM.__name__):
        folder = SM.cache_folder()
    assert folder == (str(tmp_path) if expected == "TMP" else expected)
    assert ("a file system in memory" in caplog.text) == warns


def test_cache_folder_on_disk_is_the_temporary_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SM, "filesystem_type", lambda folder: "ext4")
    assert SM.cache_folder() == SM.tempfile.gettempdir()
