"""`convstack batch` and convstack.stack.batch: discovery, grouping, outputs equal to
`fuse` to the bit, the report, reruns, failures, parallel jobs and interruption."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convstack import _writer
from convstack.cli import main
from convstack.stack import batch as B
from convstack.stack import fuse
from test_stack_fusion import two_depth_stack


def write_frames(folder: Path, seed: int, names: list[str] | None = None, **kw: int) -> list[Path]:
    frames, _ = two_depth_stack(seed=seed, **kw)
    names = names or [f"frame_{i + 1}.png" for i in range(len(frames))]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in zip(names, frames, strict=False):
        Image.fromarray(frame).save(folder / name)
        paths.append(folder / name)
    return paths


def load(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def read_report(path: Path) -> dict[str, dict]:
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return {r["stack"]: r for r in records}


def stray_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """root/a (3 frames), root/b/c (3), root/b/d10 and root/b/d9 (3 each), root/b/lone
    (1 frame), root/.hidden (3), root/notes.txt."""
    root = tmp_path / "root"
    write_frames(root / "a", 0)
    write_frames(root / "b" / "c", 1)
    write_frames(root / "b" / "d10", 2)
    write_frames(root / "b" / "d9", 3)
    write_frames(root / "b" / "lone", 4, names=["only.png"])
    write_frames(root / ".hidden", 5)
    (root / "notes.txt").write_text("not a frame")
    return root


# ------------------------------------------------------------------ discovery


def test_find_stacks_folders_in_natural_order(tree: Path) -> None:
    stacks = B.find_stacks(tree)
    assert [s.name for s in stacks] == ["a", "b/c", "b/d9", "b/d10"]
    assert [f.name for f in stacks[0].frames] == ["frame_1.png", "frame_2.png", "frame_3.png"]
    assert all(len(s.frames) == 3 and s.note is None for s in stacks)


def test_find_stacks_natural_frame_order_and_root_itself(tmp_path: Path) -> None:
    root = tmp_path / "shots"
    write_frames(root, 0, names=["f10.png", "f2.png", "f1.png"])
    (stack,) = B.find_stacks(root)
    assert stack.name == "shots"
    assert [f.name for f in stack.frames] == ["f1.png", "f2.png", "f10.png"]


def test_find_stacks_excludes_the_output_folder(tree: Path) -> None:
    out = tree / "fused"
    write_frames(out / "x", 6)  # would be a stack
    assert "fused/x" in [s.name for s in B.find_stacks(tree)]
    assert "fused/x" not in [s.name for s in B.find_stacks(tree, exclude=[out])]


def test_group_by_prefix(tmp_path: Path) -> None:
    folder = tmp_path / "root" / "tray"
    write_frames(folder, 0, names=["beetle_001.png", "beetle_002.png", "beetle_010.png"])
    write_frames(folder, 1, names=["moth-1.png", "moth-2.png", "moth-3.png"])
    write_frames(folder, 2, names=["wasp_1.png"])  # alone: no stack
    stacks = B.find_stacks(tmp_path / "root", group="prefix")
    assert [s.name for s in stacks] == ["tray/beetle", "tray/moth"]
    assert [f.name for f in stacks[0].frames] == [
        "beetle_001.png",
        "beetle_002.png",
        "beetle_010.png",
    ]


def write_jpeg(path: Path, frame: np.ndarray, taken: str | None) -> None:
    exif = Image.Exif()
    if taken is not None:
        exif.get_ifd(0x8769)[36867] = taken
    Image.fromarray(frame).save(path, exif=exif, quality=95)


def test_group_by_capture_gap_from_exif(tmp_path: Path) -> None:
    folder = tmp_path / "root" / "day"
    folder.mkdir(parents=True)
    frames, _ = two_depth_stack(seed=0)
    times = ["10:00:00", "10:00:01", "10:00:03", "10:05:00", "10:05:02", "10:05:04"]
    for i, taken in enumerate(times):
        write_jpeg(folder / f"IMG_{i + 1:04d}.jpg", frames[i % 3], f"2024:05:01 {taken}")
    # modification times that would group them otherwise: EXIF wins
    for i, path in enumerate(sorted(folder.iterdir())):
        os.utime(path, (1e9 + 100 * i, 1e9 + 100 * i))
    stacks = B.find_stacks(tmp_path / "root", group="gap=10")
    assert [s.name for s in stacks] == ["day/IMG_0001", "day/IMG_0004"]
    assert [len(s.frames) for s in stacks] == [3, 3]
    assert all(s.note is None for s in stacks)
    # a gap longer than every pause: one stack
    assert [len(s.frames) for s in B.find_stacks(tmp_path / "root", group="gap=600")] == [6]


def test_group_by_gap_falls_back_to_file_times_with_a_note(tmp_path: Path) -> None:
    folder = tmp_path / "root"
    paths = write_frames(folder, 0, names=["p1.png", "p2.png", "p3.png"])
    paths += write_frames(folder, 1, names=["p4.png", "p5.png", "p6.png"])
    for path, seconds in zip(paths, [0, 2, 4, 50, 52, 54], strict=True):
        os.utime(path, (1e9 + seconds, 1e9 + seconds))
    stacks = B.find_stacks(folder, group=B.Grouping("gap", 5.0))
    assert [[f.name for f in s.frames] for s in stacks] == [
        ["p1.png", "p2.png", "p3.png"],
        ["p4.png", "p5.png", "p6.png"],
    ]
    assert all("modification time" in (s.note or "") for s in stacks)


def test_capture_time_reads_subseconds(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2024:05:01 10:00:00"
    exif.get_ifd(0x8769)[37521] = "25"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, exif=exif)
    seconds, exact = B.capture_time(path)
    assert exact
    assert seconds % 1 == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gap=0", r"`group` gap must be a number of seconds > 0; got '0'"),
        ("gap=abc", r"`group` gap must be a number of seconds > 0; got 'abc'"),
        ("gap=nan", r"> 0; got 'nan'"),
        ("date", r"`group` must be 'folder', 'prefix' or 'gap=SECONDS'; got 'date'"),
    ],
)
def test_parse_group_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        B.parse_group(text)


def test_library_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="`group` must be a string"):
        B.parse_group(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`root` must be a folder"):
        B.find_stacks(tmp_path / "missing")
    with pytest.raises(ValueError, match="`jobs` must be an integer >= 1; got 0"):
        B.run_batch([], tmp_path, jobs=0)


# ------------------------------------------------------------------ the command


def batch(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["batch", *argv, "--quiet"])
    return code, capsys.readouterr().err


def test_batch_outputs_equal_fuse_to_the_bit(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, err = batch([str(tree), "-o", str(out), "--depth-map", "--method", "depthmap"], capsys)
    assert code == 0, err
    for stack in B.find_stacks(tree):
        result = fuse(list(stack.frames), method="depthmap")
        image = out.joinpath(*stack.name.split("/")).with_suffix(".png")
        np.testing.assert_array_equal(load(image), result.image)
        depth = load(image.with_name(image.stem + ".depth.png"))
        assert depth.dtype == np.uint16 and depth.shape == result.depth.shape
        # the depth map is the fractional frame index scaled to 16 bits
        np.testing.assert_allclose(depth / 65535 * 2, result.depth, atol=1 / 65535 * 2 + 1e-6)
    assert not (out / "b" / "lone.png").exists()
    assert not (out / ".hidden.png").exists()
    assert stray_files(out) == []
    assert "4 fused, 0 skipped, 0 failed of 4 stacks" in err


def test_library_batch_equals_the_command(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert batch([str(tree), "-o", str(tmp_path / "cli")], capsys)[0] == 0
    seen: list[tuple[str, int, int]] = []
    records = B.run_batch(
        B.find_stacks(tree),
        tmp_path / "lib",
        B.FuseWork(),
        progress=lambda stage, done, total: seen.append((stage, done, total)),
    )
    assert [r.status for r in records] == ["done"] * 4
    assert seen[0] == ("stacks", 0, 4) and seen[-1] == ("stacks", 4, 4)
    for name in ("a.png", "b/c.png", "b/d9.png", "b/d10.png"):
        assert (tmp_path / "lib" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()


def test_report_content(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert batch([str(tree), "-o", str(out)], capsys)[0] == 0
    report = read_report(out / B.REPORT_NAME)
    assert list(report) == ["a", "b/c", "b/d9", "b/d10"]
    for name, record in report.items():
        assert record["status"] == "done" and record["error"] is None
        assert record["frames"] == 3
        assert 0 < record["seconds"] < 600
        assert record["peak_rss"] > 10 * 2**20  # at least the interpreter and NumPy
        assert record["residual"] is None
        assert record["outputs"] == [str(out / f"{name}.png")]


def test_rerun_skips_and_force_redoes(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert batch([str(tree), "-o", str(out)], capsys)[0] == 0
    image = out / "b" / "c.png"
    first = image.stat()
    code, err = batch([str(tree), "-o", str(out)], capsys)
    assert code == 0
    assert "0 fused, 4 skipped" in err
    assert {r["status"] for r in read_report(out / B.REPORT_NAME).values()} == {"skipped"}
    assert image.stat().st_ino == first.st_ino and image.stat().st_mtime_ns == first.st_mtime_ns
    code, err = batch([str(tree), "-o", str(out), "--force"], capsys)
    assert code == 0 and "4 fused, 0 skipped" in err
    assert image.stat().st_ino != first.st_ino  # replaced (atomically: a new file)
    assert {r["status"] for r in read_report(out / B.REPORT_NAME).values()} == {"done"}


def test_progress_counts_the_stacks_to_run(tree: Path, tmp_path: Path) -> None:
    """A rerun's progress (and so its time left) is over the stacks it fuses, not the
    skipped ones done at once."""
    out = tmp_path / "out"
    stacks = B.find_stacks(tree)
    B.run_batch(stacks[:3], out, NamingWork())
    seen: list[tuple[str, int, int]] = []
    records = B.run_batch(stacks, out, NamingWork(), progress=lambda *args: seen.append(args))
    assert [r.status for r in records] == ["skipped"] * 3 + ["done"]
    assert seen == [("stacks", 0, 1), ("stacks", 1, 1)]


def test_new_stack_is_fused_on_rerun(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert batch([str(tree), "-o", str(out)], capsys)[0] == 0
    write_frames(tree / "e", 7)
    code, err = batch([str(tree), "-o", str(out)], capsys)
    assert code == 0 and "1 fused, 4 skipped" in err
    assert read_report(out / B.REPORT_NAME)["e"]["status"] == "done"


def test_partial_outputs_are_refused_without_force(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert batch([str(tree), "-o", str(out)], capsys)[0] == 0  # results, no depth maps
    code, err = batch([str(tree), "-o", str(out), "--depth-map"], capsys)
    assert code == 1
    record = read_report(out / B.REPORT_NAME)["a"]
    assert record["status"] == "failed"
    assert "a.png exists but not" in record["error"] and "--force" in record["error"]
    assert batch([str(tree), "-o", str(out), "--depth-map", "--force"], capsys)[0] == 0
    assert (out / "a.depth.png").is_file()


def test_a_broken_stack_does_not_stop_the_others(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tree / "b" / "c" / "frame_2.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    out = tmp_path / "out"
    code, err = batch([str(tree), "-o", str(out), "--depth-map"], capsys)
    assert code == 1
    assert "failed: b/c:" in err and "frame_2.png" in err
    report = read_report(out / B.REPORT_NAME)
    assert report["b/c"]["status"] == "failed"
    assert "frame_2.png" in report["b/c"]["error"]
    assert [report[n]["status"] for n in ("a", "b/d9", "b/d10")] == ["done"] * 3
    assert not (out / "b" / "c.png").exists() and not (out / "b" / "c.depth.png").exists()
    assert (out / "b" / "d9.png").is_file()
    assert stray_files(out) == []


def test_output_folder_inside_root_is_not_a_stack_on_rerun(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tree / "fused"
    assert batch([str(tree), "-o", str(out)], capsys)[0] == 0
    code, err = batch([str(tree), "-o", str(out)], capsys)
    assert code == 0 and "0 fused, 4 skipped, 0 failed of 4 stacks" in err


def test_save_steps_and_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    write_frames(root / "s", 0)
    out = tmp_path / "out"
    code, err = batch([str(root), "-o", str(out), "--format", "tif", "--save-steps"], capsys)
    assert code == 0, err
    assert (out / "s.tif").is_file()
    assert (out / "s.steps" / "depth.png").is_file()
    assert (out / "s.steps" / "aligned_000.png").is_file()


def test_retouch_folder_replays_each_stacks_strokes(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--retouch DIR: DIR/NAME.strokes.json replayed as `fuse --retouch` does."""
    strokes = tmp_path / "strokes"
    (strokes / "b").mkdir(parents=True)
    document = {
        "format": "convstack-strokes",
        "version": 1,
        "image": {"rows": 48, "cols": 64},
        "strokes": [
            {"frame": 0, "radius": 10.0, "hardness": 0.5, "erase": False, "points": [[20, 50]]}
        ],
    }
    (strokes / "b" / "c.strokes.json").write_text(json.dumps(document))
    out = tmp_path / "out"
    code, err = batch([str(tree), "-o", str(out), "--retouch", str(strokes)], capsys)
    assert code == 0, err
    alone = tmp_path / "alone.png"
    argv = ["fuse", str(tree / "b" / "c"), "-o", str(alone), "--quiet"]
    assert main([*argv, "--retouch", str(strokes / "b" / "c.strokes.json")]) == 0
    assert (out / "b" / "c.png").read_bytes() == alone.read_bytes()
    plain = fuse(B.find_stacks(tree / "b" / "c")[0].frames).image
    assert not np.array_equal(load(out / "b" / "c.png"), plain)  # the strokes painted
    np.testing.assert_array_equal(
        load(out / "b" / "d9.png"), fuse(sorted((tree / "b" / "d9").iterdir())).image
    )


def batch_process(
    root: Path, out: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`convstack batch ROOT -o OUT --jobs 2 --quiet` run in a process of its own."""
    command = [sys.executable, "-m", "convstack.cli", "batch", str(root), "--quiet"]
    return subprocess.run(
        [*command, "-o", str(out), "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_jobs_give_the_same_bits(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a child process: the workers' start method (spawn) leaves multiprocessing's
    resource tracker running as a child of the process that used it."""
    assert batch([str(tree), "-o", str(tmp_path / "one")], capsys)[0] == 0
    done = batch_process(tree, tmp_path / "two")
    assert done.returncode == 0, done.stderr
    for name in ("a.png", "b/c.png", "b/d9.png", "b/d10.png"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    workers = {r["worker"] for r in read_report(tmp_path / "two" / B.REPORT_NAME).values()}
    assert 1 <= len(workers) <= 2  # worker processes took the four stacks


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--jobs", "0"], r"--jobs must be >= 1; got 0\."),
        (["--group", "gap=-1"], r"--group: `group` gap must be a number of seconds > 0"),
        (["--retouch", "nowhere"], r"--retouch nowhere: is not a folder\."),
    ],
)
def test_command_errors(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, err = batch([str(tree), "-o", str(tmp_path / "out"), *argv], capsys)
    assert code == 1
    assert re.search(message, err)


def test_report_may_not_be_a_frame_or_in_a_missing_folder(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = tree / "a" / "frame_1.png"
    before = frame.read_bytes()
    code, err = batch([str(tree), "-o", str(tmp_path / "out"), "--report", str(frame)], capsys)
    assert code == 1 and "--report" in err and "is one of the inputs" in err
    assert frame.read_bytes() == before
    assert not (tmp_path / "out" / "a.png").exists()  # refused before the work
    missing = tmp_path / "nowhere" / "r.jsonl"
    code, err = batch([str(tree), "-o", str(tmp_path / "out"), "--report", str(missing)], capsys)
    assert code == 1 and "does not exist" in err
    code, err = batch(
        [str(tree), "-o", str(tmp_path / "out"), "--report", str(tmp_path / "r.jsonl")], capsys
    )
    assert code == 0 and set(read_report(tmp_path / "r.jsonl")) == {"a", "b/c", "b/d9", "b/d10"}


def test_command_errors_root_and_outdir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = batch([str(tmp_path / "nope"), "-o", str(tmp_path / "out")], capsys)
    assert code == 1 and "is not a folder (ROOT" in err
    (tmp_path / "empty").mkdir()
    code, err = batch([str(tmp_path / "empty"), "-o", str(tmp_path / "out")], capsys)
    assert code == 1 and "holds no focus stack" in err
    write_frames(tmp_path / "r" / "s", 0)
    (tmp_path / "file").write_text("x")
    code, err = batch([str(tmp_path / "r"), "-o", str(tmp_path / "file")], capsys)
    assert code == 1 and "is a file, not a folder" in err


# ------------------------------------------------------------------ one stack's outputs


class HalfWork(B.FuseWork):
    """Writes the result, then fails before the depth map."""

    def __call__(self, stack: B.Stack, outputs: B.Outputs, overwrite: bool) -> None:
        _writer.write_bytes(outputs.image, b"result", overwrite=overwrite)
        raise RuntimeError("disk on fire")


def test_a_failed_stack_removes_what_it_wrote(tmp_path: Path) -> None:
    stack = B.Stack("s", tuple(write_frames(tmp_path / "s", 0)))
    work = HalfWork(depth_map=True)
    outputs = work.outputs(stack, tmp_path / "out")
    (tmp_path / "out").mkdir()
    record = B.run_stack(work, stack, outputs, False)
    assert record.status == "failed" and record.error == "disk on fire"
    assert not outputs.image.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_stale_temporary_files_are_removed_before_a_retry(tmp_path: Path) -> None:
    stack = B.Stack("s", tuple(write_frames(tmp_path / "s", 0)))
    work = B.FuseWork()
    out = tmp_path / "out"
    out.mkdir()
    outputs = work.outputs(stack, out)
    stale = out / ".s.png.0a1b2c3d.tmp"  # as a writer killed with SIGKILL leaves it
    stale.write_bytes(b"half")
    other = out / ".t.png.0a1b2c3d.tmp"  # another output's: not touched
    other.write_bytes(b"x")
    steps = out / "s.steps"
    steps.mkdir()
    stale_step = steps / ".depth.png.0123abcd.tmp"
    stale_step.write_bytes(b"half")
    outputs = B.Outputs(outputs.image, None, (steps,))
    record = B.run_stack(work, stack, outputs, False)
    assert record.status == "done"
    assert not stale.exists() and other.exists()
    assert list(steps.iterdir()) == []
    steps.rmdir()
    assert sorted(p.name for p in out.iterdir()) == [".t.png.0a1b2c3d.tmp", "s.png"]


def test_a_retried_task_finds_its_outputs_written(tmp_path: Path) -> None:
    """A task run again after its record was lost (its worker died after writing)."""
    stack = B.Stack("s", tuple(write_frames(tmp_path / "s", 0)))
    work = B.FuseWork()
    (tmp_path / "out").mkdir()
    outputs = work.outputs(stack, tmp_path / "out")
    assert B.run_stack(work, stack, outputs, False).status == "done"
    written = outputs.image.stat()
    again = B.run_stack(work, stack, outputs, False)
    assert again.status == "done" and "earlier try" in (again.note or "")
    assert outputs.image.stat().st_mtime_ns == written.st_mtime_ns


# ------------------------------------------------------------------ interruption


class NamingWork(B.FuseWork):
    """Writes its outputs' names (no fusing): for runners that do the work themselves."""

    def __call__(self, stack: B.Stack, outputs: B.Outputs, overwrite: bool) -> None:
        for path in outputs.files():
            _writer.write_bytes(path, stack.name.encode(), overwrite=overwrite)


def test_an_interrupted_run_reports_every_stack_and_leaves_none_half_done(
    tmp_path: Path,
) -> None:
    """A runner stopped by Ctrl-C after: s0 reported, s1 half written (its image, no
    depth map), s2 written whole but not reported (its worker stopped first), s3 not run."""
    stacks = [B.Stack(f"s{k}", (tmp_path / "f1.png", tmp_path / "f2.png")) for k in range(4)]
    work = NamingWork(depth_map=True)
    ended: list[B.Record] = []

    def stopped(work: B.Work, tasks: list, force: bool, done) -> None:
        (s0, o0), (s1, o1), (s2, o2) = tasks[:3]
        done(B.run_stack(work, s0, o0, force))
        _writer.write_bytes(o1.image, b"half", overwrite=False)
        work(s2, o2, force)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        B.run_batch(stacks, tmp_path / "out", work, runner=stopped, on_record=ended.append)
    by_name = {r.stack: r for r in ended}
    assert [by_name[f"s{k}"].status for k in range(4)] == ["done", "interrupted", "done"] + [
        "interrupted"
    ]
    assert "interrupted" in (by_name["s2"].note or "")
    assert by_name["s3"].error == "the batch was interrupted before this stack ended."
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "s0.depth.png",
        "s0.png",
        "s2.depth.png",
        "s2.png",
    ]


def test_parallel_runners_get_the_biggest_stacks_first(tmp_path: Path) -> None:
    sizes = {"a": 10, "b": 300, "c": 20, "d": 300}
    stacks = []
    for name, size in sizes.items():
        frames = (tmp_path / f"{name}1.png", tmp_path / f"{name}2.png")
        for frame in frames:
            frame.write_bytes(b"x" * size)
        stacks.append(B.Stack(name, frames))
    order: list[list[str]] = []

    def runner(work: B.Work, tasks: list, force: bool, done) -> None:
        order.append([stack.name for stack, _ in tasks])
        for stack, outputs in tasks:
            done(B.run_stack(work, stack, outputs, force))

    records = B.run_batch(stacks, tmp_path / "out", NamingWork(), runner=runner)
    assert order == [["b", "d", "c", "a"]]  # ties keep their order
    assert [r.stack for r in records] == ["a", "b", "c", "d"]  # the report's order: the tree's


#: Stacks of the interrupted-batch test: enough that some are left at the signal (of 6,
#: all had ended once in a cold CI; 12 had one unexplained failure in ~35 runs here).
STACKS = 16


def make_slow_tree(root: Path, count: int) -> None:
    for k in range(count):
        write_frames(root / f"s{k}", k, rows=360, cols=480, count=4)


def has_distributed() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


DASK = pytest.mark.skipif(not has_distributed(), reason="needs dask.distributed")


@pytest.mark.slow
def test_a_cold_cache_compiles_the_first_stacks_kernels_once(tree: Path, tmp_path: Path) -> None:
    """With numba's cache empty, `batch --jobs 2` compiles in the parent before its
    workers fork, so each kernel is compiled and filed once: both workers compiled every
    kernel before (each file saved twice), and two processes filing one kernel's
    signatures at once can mix up its cache index. (Warm, the parent loads them.)"""
    if sys.platform != "linux":  # (the command's own process: no other thread runs)
        pytest.skip("the workers are forked on Linux only")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "NUMBA_DEBUG_CACHE": "1"}
    done = batch_process(tree, tmp_path / "out", env)
    assert done.returncode == 0, done.stderr
    saved = re.findall(r"data saved to '([^']+)'", done.stdout + done.stderr)
    assert saved  # the cache was cold: kernels were compiled and filed
    twice = sorted({name for name in saved if saved.count(name) > 1})
    assert not twice, twice
    np.testing.assert_array_equal(
        load(tmp_path / "out" / "a.png"), fuse(sorted((tree / "a").iterdir())).image
    )


def test_load_ahead_asks_the_work_which_kernels(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from convstack import _preload
    from convstack.cli._batch import CommandWork
    from convstack.stack.io import read_header

    loaded: list[dict] = []  # type: ignore[type-arg]
    monkeypatch.setattr(_preload, "load_fuse_kernels", lambda **kw: loaded.append(kw))
    stack = B.find_stacks(tree)[0]
    tasks = [(stack, B.Outputs(tree / "x.png"))]
    header = read_header(stack.frames[0])
    B.load_ahead(B.FuseWork(), tasks)
    B.load_ahead(B.FuseWork(align="none", method="maxabs"), tasks)
    B.load_ahead(CommandWork({"align": "similarity", "focus_channel": "1"}), tasks)
    B.load_ahead(B.FuseWork(), [])
    B.load_ahead(B.FuseWork(), [(B.Stack("empty", ()), B.Outputs(tree / "x.png"))])
    B.load_ahead(object(), tasks)  # type: ignore[arg-type]  (no kernels: nothing)
    assert loaded == [
        {"warp": True, "frame": header, "pyramid": True, "classic": False, "png": True},
        {"warp": False, "frame": header, "pyramid": True, "classic": True, "png": True},
        {"warp": True, "frame": header, "pyramid": False, "classic": False, "png": True},
        # (no frame to read: the defaults)
        {"warp": True, "frame": None, "pyramid": True, "classic": False, "png": True},
    ]
    # every different set once: the tree's colour 8-bit stacks, then a grey 16-bit one
    grey = tmp_path / "grey"
    grey.mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 50), 1000 * i, np.uint16)).save(grey / f"g{i}.png")
    loaded.clear()
    stacks = [*B.find_stacks(tree), *B.find_stacks(grey)]
    B.load_ahead(B.FuseWork(), [(s, B.Outputs(tmp_path / "x.png")) for s in stacks])
    assert [kw["frame"] for kw in loaded] == [header, ((40, 50), np.dtype(np.uint16))]


@pytest.mark.parametrize(
    ("signum", "jobs", "group", "local"),
    [
        (signal.SIGINT, 1, True, False),
        (signal.SIGINT, 2, True, False),
        (signal.SIGTERM, 2, False, False),
        pytest.param(signal.SIGINT, 2, True, True, marks=DASK),
        pytest.param(signal.SIGTERM, 2, False, True, marks=DASK),
    ],
    ids=["ctrl-c", "ctrl-c-jobs-2", "sigterm-jobs-2", "ctrl-c-dask-local", "sigterm-dask-local"],
)
def test_interrupted_batch_leaves_no_partial_output(
    tmp_path: Path, signum: int, jobs: int, group: bool, local: bool
) -> None:
    """Ctrl-C reaches the whole process group (the workers too); SIGTERM only the batch."""
    root, out = tmp_path / "root", tmp_path / "out"
    # on a cold numba cache both workers end their first stacks together, then take a
    # fraction of a second a stack
    make_slow_tree(root, STACKS)
    command = [sys.executable, "-m", "convstack.cli", "batch", str(root), "-o", str(out)]
    command += ["--depth-map", "--quiet", "--jobs", str(jobs), "--method", "depthmap"]
    command += ["--scheduler", "local"] if local else []
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*.depth.png")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.1)
        finished = len(list(out.glob("*.depth.png")))
        if group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err
    done = {p.name.removesuffix(".png") for p in out.glob("*.png") if "depth" not in p.name}
    depths = {p.name.removesuffix(".depth.png") for p in out.glob("*.depth.png")}
    assert done == depths  # each stack: both outputs or none
    # no stack started after the signal (those running may have finished meanwhile)
    assert finished <= len(done) <= finished + jobs
    assert len(done) < STACKS
    assert stray_files(out) == []
    for name in done:  # and those there are whole
        assert load(out / f"{name}.png").shape == (360, 480, 3)
    # the report says which stacks ended and which did not
    report = read_report(out / B.REPORT_NAME)
    assert sorted(report) == sorted(f"s{k}" for k in range(STACKS))
    assert {name for name, r in report.items() if r["status"] == "done"} == done
    others = [r for name, r in report.items() if name not in done]
    assert {r["status"] for r in others} == {"interrupted"}
    assert all("interrupted before this stack ended" in r["error"] for r in others)
    assert "batch interrupted:" in err


# ------------------------------------------------------------------ how workers start

#: Set in the process that runs the batch; a forked worker sees the value set there,
#: a spawned one this default.
MARK = "imported"


class ProbeWork(B.FuseWork):
    """Writes, in place of an image, what the worker process was started with."""

    def __call__(self, stack: B.Stack, outputs: B.Outputs, overwrite: bool) -> None:
        from convstack import _methods
        from convstack.limits import get_memory_limit

        seen = [MARK, str(_methods.THREADS), os.environ["CONVSTACK_THREADS"]]
        seen.append(str(get_memory_limit()))
        seen.append(str("numba" in sys.modules))
        # a module that copied the count at import would keep the batch process's
        stale = [
            name
            for name, module in list(sys.modules.items())
            if name.startswith("convstack") and getattr(module, "THREADS", None) is not None
            if module is not _methods and module.THREADS != _methods.THREADS
        ]
        seen.append(",".join(stale) or "none")
        outputs.image.write_text(" ".join(seen))


def forked_workers(folder: str) -> None:
    global MARK
    from convstack import _methods
    from convstack.limits import set_memory_limit

    base = Path(folder)
    for k in range(4):
        (base / "root" / f"s{k}").mkdir(parents=True)
        for i in range(2):
            (base / "root" / f"s{k}" / f"f{i}.png").write_bytes(b"")
    cores = os.cpu_count() or 1
    assert cores == _methods.THREADS  # imported here before the batch's share
    assert "numba" not in sys.modules
    MARK = "set by the batch's process"
    set_memory_limit("3GiB")  # the batch's budget: half of it for each of two workers
    records = B.run_batch(B.find_stacks(base / "root"), base / "out", ProbeWork(), jobs=2)
    assert [r.status for r in records] == ["done"] * 4, [r.error for r in records]
    share = str(max(1, cores // 2))
    expected = f"{MARK} {share} {share} {3 * 2**29} True none"
    for k in range(4):
        assert (base / "out" / f"s{k}.png").read_text() == expected
    assert cores == _methods.THREADS  # this process's own share is unchanged


def test_workers_are_forked_loaded_and_with_their_thread_share(tmp_path: Path) -> None:
    """In a fresh interpreter (no other thread): the workers are forked from it, with
    numba loaded once there, and each takes its share of threads from its environment,
    though the engine read CONVSTACK_THREADS when this process imported it, and its
    share of the memory limit."""
    if sys.platform != "linux":
        pytest.skip("workers are forked on Linux only")
    env = {k: v for k, v in os.environ.items() if k not in ("CONVSTACK_THREADS", "CONVSTACK_FORK")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    code = f"import test_batch; test_batch.forked_workers({str(tmp_path)!r})"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-4000:]


def test_workers_are_spawned_while_another_thread_runs() -> None:
    import threading

    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert B.worker_start_method() == "spawn"  # fork would copy that thread's locks held
    finally:
        release.set()
        other.join()
