"""The fuse pipeline: arrays and paths, dtypes, alignment, streaming, progress, errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi
from skimage.metrics import peak_signal_noise_ratio

from convstack.stack import (
    DEFAULT_METHOD,
    METHODS,
    AlignmentError,
    FrameMismatchError,
    FrameReadError,
    fuse,
    sharpness_mask,
    weighted_merge,
)
from convstack.stack import io as stack_io
from test_stack_fusion import two_depth_stack


@pytest.mark.parametrize("method", METHODS)
def test_every_method_on_arrays(method: str) -> None:
    frames, truth = two_depth_stack()
    result = fuse(frames, method=method, align="none")
    assert result.image.dtype == np.uint8 and result.image.shape == truth.shape
    assert result.depth.shape == truth.shape[:2] and result.method == method
    assert len(result.transforms) == 3 and result.reference == 1
    score = peak_signal_noise_ratio(truth[:, 4:-4], result.image[:, 4:-4])
    lab = weighted_merge(frames, [sharpness_mask(f) for f in frames])
    if method == "weighted":
        np.testing.assert_allclose(result.image.astype(int), lab.astype(int), atol=1)
    else:  # measured over the lab's 27.49 dB: pyramid +13.21, depthmap +9.54, maxabs +4.45
        bar = {"pyramid": 12.7, "depthmap": 9.0, "maxabs": 3.9}[method]
        assert score > peak_signal_noise_ratio(truth, lab) + bar, score


def test_default_method_is_one_of_ours() -> None:
    assert DEFAULT_METHOD in ("pyramid", "depthmap")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_bit_depth_kept(dtype: type) -> None:
    frames, truth = two_depth_stack(colour=False)
    if dtype is np.uint16:
        frames = [f.astype(np.uint16) * 257 for f in frames]
    elif dtype is np.float32:
        frames = [f.astype(np.float32) / 255 for f in frames]
    result = fuse(np.stack(frames), align="none")
    assert result.image.dtype == dtype
    scaled = result.image.astype(np.float64) / {np.uint8: 255, np.uint16: 65535}.get(dtype, 1)
    # measured 42.71 dB (uint8), 42.66 (uint16, float32)
    assert peak_signal_noise_ratio(truth[:, 4:-4] / 255, scaled[:, 4:-4], data_range=1) > 42.1


def test_alignment_recovers_shifts() -> None:
    frames, truth = two_depth_stack(rows=96, cols=128, count=3)
    shifts = [(2.0, -3.0), (0.0, 0.0), (-1.5, 2.5)]
    moved = [
        np.clip(
            np.rint(ndi.shift(f.astype(float), (dr, dc, 0), order=3, mode="nearest")), 0, 255
        ).astype(np.uint8)
        for f, (dr, dc) in zip(frames, shifts, strict=True)
    ]
    result = fuse(moved, align="translation")
    for matrix, (dr, dc) in zip(result.transforms, shifts, strict=True):
        # reference (r, c) is moving (r + dr, c + dc)
        np.testing.assert_allclose(matrix[:2, 2], [dr, dc], atol=0.1)
    inner = (slice(8, -8), slice(8, -8))
    unaligned = fuse(moved, align="none")
    good = peak_signal_noise_ratio(truth[inner], result.image[inner])
    # measured 39.65 dB aligned, 15.84 not (+23.81)
    assert good > peak_signal_noise_ratio(truth[inner], unaligned.image[inner]) + 23.2, good


def test_paths_are_streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frames, truth = two_depth_stack(count=5)
    paths = []
    for i, f in enumerate(frames):
        paths.append(tmp_path / f"f{i}.png")
        Image.fromarray(f).save(paths[-1])
    log = tmp_path / "reads.log"  # a file: frames may be read in a child process
    original = stack_io.read_image

    def counting(path):  # type: ignore[no-untyped-def]
        with log.open("a") as fh:
            fh.write(Path(path).name + "\n")
        return original(path)

    monkeypatch.setattr(stack_io, "read_image", counting)
    result = fuse(paths, align="none")
    in_memory = fuse(frames, align="none")
    np.testing.assert_array_equal(result.image, in_memory.image)
    # one read per frame for the first pass, at most one more for the blend
    reads = log.read_text().split()
    assert all(1 <= reads.count(p.name) <= 2 for p in paths)


def test_progress_and_steps() -> None:
    frames, _ = two_depth_stack()
    calls: list[tuple[str, int, int]] = []
    steps: list[str] = []
    fuse(
        frames,
        align="none",
        progress=lambda s, d, t: calls.append((s, d, t)),
        on_step=lambda name, array: steps.append(name),
    )
    stages = [c[0] for c in calls]
    assert stages[0] == "align" and "depth" in stages and stages[-1] == "fuse"
    assert ("align", 3, 3) in calls and ("fuse", 1, 1) in calls
    assert {"aligned_000", "sharpness_002", "depth_raw", "confidence", "depth"} <= set(steps)


def test_reference_frame_sets_geometry() -> None:
    frames, _ = two_depth_stack(rows=64, cols=96)
    shifted = [np.roll(f, 3 * i, axis=1) for i, f in enumerate(frames)]
    result = fuse(shifted, align="translation", reference=0)
    assert result.reference == 0
    np.testing.assert_allclose(result.transforms[0], np.eye(3))
    assert abs(result.transforms[2][1, 2] - 6.0) < 0.2


def test_too_few_frames() -> None:
    with pytest.raises(FrameMismatchError, match="at least two frames; got 1"):
        fuse([np.zeros((8, 8))])


def test_mismatched_frames_named() -> None:
    # the reference (the middle frame, read first) sets the size and the dtype
    with pytest.raises(FrameMismatchError, match=r"frames\[0\]: shape \(8, 9\) .* frames\[1\]"):
        fuse([np.zeros((8, 9)), np.zeros((8, 8))], align="none")
    with pytest.raises(FrameMismatchError, match=r"frames\[2\]: .*dtype uint16 differ"):
        frames = [np.zeros((8, 8), np.uint8)] * 2 + [np.zeros((8, 8), np.uint16)]
        fuse(frames, align="none")
    with pytest.raises(FrameMismatchError, match=r"frames\[1\]: frames must be"):
        fuse([np.zeros((8, 8), np.int64), np.zeros((8, 8), np.int64)], align="none")


def test_unreadable_frame_named(tmp_path: Path) -> None:
    good = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(good)
    bad = tmp_path / "b.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(FrameReadError, match="b.png"):
        fuse([good, bad], align="none")


def test_alignment_failure_named() -> None:
    a = np.zeros((64, 64))
    a[10:20, 10:20] = 1
    b = np.zeros((64, 64))
    b[40:60, 5:9] = 1
    with pytest.raises(AlignmentError, match=r"frames\[1\]"):
        fuse([a, b], reference=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "median"}, "`method` must be one of"),
        ({"align": "rigid"}, "`align` must be one of"),
        ({"measure": "variance"}, "`measure` must be one of"),
        ({"reference": 3}, r"`reference` must be a frame index in \[0, 1\]"),
    ],
)
def test_bad_options(kwargs: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=match):
        fuse([np.zeros((8, 8)), np.zeros((8, 8))], **kwargs)


def test_frames_must_be_a_sequence() -> None:
    with pytest.raises(TypeError, match="`frames` must be a sequence"):
        fuse("frames/*.png")  # type: ignore[arg-type]


def _drifted(frames: list[np.ndarray], gains: list[float], offsets: list[float]) -> list:
    return [
        np.clip(np.rint(f * g + o), 0, 255).astype(np.uint8)
        for f, g, o in zip(frames, gains, offsets, strict=True)
    ]


def test_photometric_correction_undoes_exposure_drift() -> None:
    frames, truth = two_depth_stack(rows=64, cols=96)
    # frames 0 and 2 are exposed differently from the reference (frame 1)
    drifted = _drifted(frames, [0.8, 1.0, 1.15], [20.0, 0.0, -12.0])
    plain = fuse(drifted, align="none")
    matched = fuse(drifted, align="none", photometric=True)
    inner = (slice(None), slice(4, -4))
    plain_score = peak_signal_noise_ratio(truth[inner], plain.image[inner])
    matched_score = peak_signal_noise_ratio(truth[inner], matched.image[inner])
    # measured: plain 30.29 dB, matched 41.74, undrifted frames 44.13
    assert matched_score > plain_score + 10.9
    reference = peak_signal_noise_ratio(truth[inner], fuse(frames, align="none").image[inner])
    assert matched_score > reference - 2.9


def test_photometric_correction_costs_nothing_without_drift() -> None:
    frames, _ = two_depth_stack(rows=64, cols=96)
    plain = fuse(frames, align="none").image
    matched = fuse(frames, align="none", photometric=True).image
    assert peak_signal_noise_ratio(plain, matched) > 45.6  # measured 46.18 dB


@pytest.mark.parametrize("fork", ["0", "1"])
@pytest.mark.parametrize("photometric", [False, True])
def test_the_split_between_threads_does_not_change_the_result(
    monkeypatch: pytest.MonkeyPatch, photometric: bool, fork: str
) -> None:
    # the worker thread (or child process) warps and measures as much as balances the
    # two; whichever does a step, the numbers are the same
    from convstack.stack import _schedule, forked

    monkeypatch.setenv(forked.ENVIRONMENT_SWITCH, fork)
    frames, _ = two_depth_stack(rows=64, cols=96, count=5)
    shifted = [np.roll(f, k - 2, axis=1) for k, f in enumerate(frames)]
    results = []
    for share in (0, 1, 2):
        monkeypatch.setattr(_schedule, "balanced_share", lambda costs, share=share: share)
        # the child process's frames read there, every other one read here, or all
        for credit in (0.0, 0.5, 1.0) if fork == "1" else (0.0,):
            monkeypatch.setattr(_schedule, "read_credit", lambda costs, share, c=credit: c)
            results.append(fuse(shifted, align="translation", photometric=photometric))
    for other in results[1:]:
        np.testing.assert_array_equal(other.image, results[0].image)
        np.testing.assert_array_equal(other.depth, results[0].depth)


def test_read_credit_balances_the_two_processes() -> None:
    from convstack.stack._schedule import read_credit

    def costs(read: float, register: float, warp: float, measure: float, merge: float) -> dict:  # type: ignore[type-arg]
        steps = {"read": read, "register": register, "warp": warp, "measure": measure}
        return {step: [seconds] for step, seconds in {**steps, "merge": merge}.items()}

    assert read_credit({"read": [1.0]}, 1) == 0.0  # not measured yet
    # breathing-like: the child (read 9 + register 28) is busier than this process
    # (warp 7 + measure 5 + merge 15): reading (37 - 27) / 18 of the frames here evens them
    assert read_credit(costs(9, 28, 7, 5, 15), 0) == pytest.approx(10 / 18)
    assert read_credit(costs(15, 60, 110, 40, 170), 1) == 0.0  # PCB-like: this one is busier
    assert read_credit(costs(5, 200, 7, 5, 15), 0) == 1.0  # at most every frame


def test_balanced_share_moves_work_to_the_idle_thread() -> None:
    from convstack.stack._schedule import balanced_share

    def costs(register: float, warp: float, measure: float, merge: float) -> dict:  # type: ignore[type-arg]
        return {"register": [register], "warp": [warp], "measure": [measure], "merge": [merge]}

    assert balanced_share({"register": [1.0]}) == 1  # not measured yet
    assert balanced_share(costs(80, 55, 30, 100)) == 1  # bug set: balanced as is
    assert balanced_share(costs(40, 130, 80, 190)) == 2  # large frames: merging dominates
    assert balanced_share(costs(40, 9, 6, 30)) == 0  # small frames: registration dominates


def _child_processes() -> set[int]:
    """This process's children, reaped or not (a zombie is still listed), from /proc."""
    children: set[int] = set()
    try:
        for task in Path("/proc/self/task").iterdir():
            children.update(int(pid) for pid in (task / "children").read_text().split())
    except OSError:  # no /proc, or a kernel without its children lists
        pytest.skip("this system does not list a process's children in /proc")
    return children


def _spy_on_forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the child processes that fuse starts (skips where fork is unavailable)."""
    from convstack.stack import _schedule, forked

    monkeypatch.setenv(forked.ENVIRONMENT_SWITCH, "1")  # (small frames: forked)
    if not forked.can_fork():
        pytest.skip("no fork here (platform, or another thread is running)")
    started: list[int] = []
    original = _schedule.ForkedWorker

    class Counted(original):  # type: ignore[misc,valid-type]
        def __init__(self, target):  # type: ignore[no-untyped-def]
            started.append(1)
            super().__init__(target)

    monkeypatch.setattr(_schedule, "ForkedWorker", Counted)
    return started


@pytest.mark.parametrize(
    ("from_files", "align", "kind"),
    [
        (False, "translation", "uint8"),
        (True, "similarity", "uint8"),
        (True, "none", "uint8"),
        (False, "similarity", "float64 gray"),
    ],
)
def test_child_process_and_worker_thread_give_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, from_files: bool, align: str, kind: str
) -> None:
    from convstack.stack import forked

    started = _spy_on_forks(monkeypatch)
    frames, _ = two_depth_stack(rows=64, cols=96, count=5)
    inputs: list[object] = [np.roll(f, 2 * k - 4, axis=1) for k, f in enumerate(frames)]
    if kind == "float64 gray":  # warped whole, then copied into the shared slot
        inputs = [np.asarray(f, np.float64)[..., 1] / 255 for f in inputs]  # type: ignore[call-overload]
    if from_files:
        for k, frame in enumerate(list(inputs)):
            inputs[k] = tmp_path / f"f{k}.png"
            Image.fromarray(frame).save(inputs[k])
    monkeypatch.setenv(forked.ENVIRONMENT_SWITCH, "0")
    threaded = fuse(inputs, align=align)
    assert started == []
    monkeypatch.setenv(forked.ENVIRONMENT_SWITCH, "1")
    steps: list[str] = []
    in_child = fuse(inputs, align=align, on_step=lambda name, a: steps.append(name))
    assert started == [1]
    np.testing.assert_array_equal(in_child.image, threaded.image)
    np.testing.assert_array_equal(in_child.depth, threaded.depth)
    np.testing.assert_array_equal(in_child.confidence, threaded.confidence)
    for a, b in zip(in_child.transforms, threaded.transforms, strict=True):
        np.testing.assert_array_equal(a, b)
    if align != "none":
        assert abs(in_child.transforms[0][1, 2] + 4) < 0.2  # it did register
    assert {f"aligned_{k:03d}" for k in range(5)} <= set(steps)


def test_child_process_keeps_no_frame_it_handed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    # frames come through two shared slots that the child reuses: what on_step is given
    # must stay as it was when given
    started = _spy_on_forks(monkeypatch)
    frames, _ = two_depth_stack(rows=48, cols=64, count=5)
    shifted = [np.roll(f, k, axis=0) for k, f in enumerate(frames)]
    kept: dict[str, np.ndarray] = {}
    fuse(shifted, align="translation", on_step=lambda n, a: kept.setdefault(n, a))
    assert started == [1]
    monkeypatch.setenv("CONVSTACK_FORK", "0")
    again: dict[str, np.ndarray] = {}
    fuse(shifted, align="translation", on_step=lambda n, a: again.setdefault(n, a.copy()))
    for name, array in again.items():
        np.testing.assert_array_equal(kept[name], array)


def test_failure_in_the_child_process_is_raised_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = _spy_on_forks(monkeypatch)
    before = _child_processes()  # another test's (a spawned pool's resource tracker...)
    frames, _ = two_depth_stack(count=5)
    paths = []
    for i, f in enumerate(frames):
        paths.append(tmp_path / f"f{i}.png")
        Image.fromarray(f).save(paths[-1])
    paths[3].write_bytes(b"truncated")
    with pytest.raises(FrameReadError, match="f3.png"):
        fuse(paths)
    assert started == [1]
    small = [*frames[:4], frames[4][:-2]]  # a size mismatch found in the child
    with pytest.raises(FrameMismatchError, match=r"frames\[4\]: shape"):
        fuse(small)
    assert _child_processes() <= before  # every child was waited for, none is left


def test_a_child_process_that_dies_is_a_stack_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # killed (by the user, or the kernel out of memory): an error naming the frame, not a hang
    import signal

    from convstack.stack import StackError, align

    started = _spy_on_forks(monkeypatch)
    original = align.gray_pyramid

    def dies(gray):  # type: ignore[no-untyped-def]
        if os.getpid() != parent:  # in the child, at the first frame to register
            os.kill(os.getpid(), signal.SIGKILL)
        return original(gray)

    parent = os.getpid()
    before = _child_processes()
    monkeypatch.setattr(align, "gray_pyramid", dies)
    frames, _ = two_depth_stack(count=5)
    with pytest.raises(StackError, match=r"frames\[3\] failed: the worker process ended"):
        fuse(frames)
    assert started == [1]
    assert _child_processes() <= before  # waited for


def _stack_imports() -> dict[str, list[tuple[str, str, int]]]:
    """Per module of convstack.stack: (module, name, line) of every name it takes from
    another convstack module, by ``from X import name`` or ``alias.name``."""
    import ast

    import convstack.stack

    folder = Path(convstack.stack.__file__).parent
    package = folder.parent
    found: dict[str, list[tuple[str, str, int]]] = {}
    for path in sorted(folder.glob("*.py")):
        uses: list[tuple[str, str, int]] = []
        aliases: dict[str, str] = {}  # local name -> convstack module it stands for
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.level == 0:
                continue
            base = folder if node.level == 1 else package
            parts = (node.module or "").split(".") if node.module else []
            for alias in node.names:
                target = base.joinpath(*parts, alias.name)
                if target.with_suffix(".py").is_file() or target.is_dir():  # a module
                    aliases[alias.asname or alias.name] = ".".join([*parts, alias.name])
                else:
                    uses.append((".".join(parts), alias.name, node.lineno))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                uses.append((aliases[node.value.id], node.attr, node.lineno))
        found[path.stem] = uses
    return found


def test_no_private_name_crosses_a_module_line_in_stack() -> None:
    # a stage's helpers that another needs live in a shared module, with public names
    crossing = [
        f"{module}.py:{line}: {source}.{name}"
        for module, uses in _stack_imports().items()
        for source, name, line in uses
        if name.startswith("_") and not name.startswith("__")
    ]
    assert crossing == []


def test_stack_modules_import_no_cycle() -> None:
    imports = _stack_imports()
    graph = {m: {s for s, _, _ in uses if s in imports and s != m} for m, uses in imports.items()}
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for dep in graph[node]:
                if dep == start:
                    cycles.append(" -> ".join([*trail, dep]))
                elif dep not in seen:
                    seen.add(dep)
                    stack.append((dep, [*trail, dep]))
    assert cycles == []


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_a_frame_goes_onto_the_reference_grid_by_its_transform(dtype: type) -> None:
    # the scheduler's warp step, a plain function of (frame, transform): a whole-pixel
    # shift moves every pixel exactly (any interpolation), edges repeat; integers come
    # out on [0, 1]
    from convstack.stack._frames import planar, to_reference_grid

    rng = np.random.default_rng(5)
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    frame = (rng.random((20, 30, 3)) * top).astype(dtype)
    before = frame.copy()
    unit = frame.astype(np.float64) / top
    same = to_reference_grid(frame, np.eye(3))
    assert same.dtype == np.float32
    np.testing.assert_allclose(same, unit, rtol=0, atol=1e-7)
    shift = np.array(
        [[1.0, 0.0, 2.0], [0.0, 1.0, 3.0], [0.0, 0.0, 1.0]]
    )  # ref (r, c) -> (r+2, c+3)
    into = planar(frame.shape)
    moved = to_reference_grid(frame, shift, into)
    assert moved is into and moved.dtype == np.float32
    np.testing.assert_allclose(moved[:-2, :-3], unit[2:, 3:], rtol=0, atol=1e-6)
    np.testing.assert_allclose(moved[-1, -1], unit[-1, -1], rtol=0, atol=1e-6)  # edge repeated
    np.testing.assert_array_equal(frame, before)
    # a frame that does not move goes into the slot too (the forked reader's: no frame
    # of its own), the same bits as without one: the float32 quotient of the float32 value
    kept = planar(frame.shape)
    assert to_reference_grid(frame, np.eye(3), kept) is kept
    oracle = frame.astype(np.float32) / np.float32(top)  # (float64 frames: rounded first)
    np.testing.assert_array_equal(kept, oracle)
    np.testing.assert_array_equal(same, oracle)
    np.testing.assert_array_equal(frame, before)


@pytest.mark.parametrize(("failing", "named"), [(1, 3), (3, 4)])
def test_a_child_that_ended_before_a_message_reached_it_is_a_stack_error(
    monkeypatch: pytest.MonkeyPatch, failing: int, named: int
) -> None:
    # a child that ends before the parent's message reaches it breaks the pipe: the
    # send then says it as the receive does, naming the frame the child was on (it
    # was a bare ChildProcessError, racing with the receive, under load)
    from convstack.stack import StackError, forked

    monkeypatch.setenv(forked.ENVIRONMENT_SWITCH, "1")
    sends: list[object] = []
    send = forked.ForkedWorker.send

    def broken(self: forked.ForkedWorker, message: object) -> None:
        sends.append(message)
        if len(sends) == failing:
            raise ChildProcessError("the worker process ended unexpectedly.")
        send(self, message)

    monkeypatch.setattr(forked.ForkedWorker, "send", broken)
    frames, _ = two_depth_stack(count=5)  # reference 2, then 3, 4, 1, 0
    with pytest.raises(StackError, match=rf"frames\[{named}\] failed: the worker process ended"):
        fuse(frames)
    assert len(sends) == failing
