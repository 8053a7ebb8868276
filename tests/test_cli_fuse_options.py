"""`convstack fuse` and `batch` merge options that reach `fuse`: --noise-floor, --snap-depth,
--interpolation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convstack.cli import main
from convstack.stack import fuse
from convstack.stack.depth import depth_to_image
from test_cli_fuse import load, write_stack
from test_stack_fusion import two_depth_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    folder = tmp_path_factory.mktemp("stack")
    frames, _ = two_depth_stack(rows=64, cols=96)
    write_stack(folder / "in", frames)
    return folder / "in", frames


def _stacks_root(folder: Path, root: Path, names: tuple[str, ...] = ("a",)) -> Path:
    """``root`` holding a copy of the stack in ``folder`` under each of ``names``."""
    for name in names:
        (root / name).mkdir(parents=True)
        for path in sorted(folder.iterdir()):
            (root / name / path.name).write_bytes(path.read_bytes())
    return root


@pytest.mark.parametrize(
    ("argv", "options"),
    [
        ([], {}),
        (["--noise-floor", "5"], {"noise_floor": 5.0}),
        (["--noise-floor", "off"], {"noise_floor": None}),
        (["--snap-depth"], {"snap_depth": True}),
    ],
)
def test_fuse_options_reach_fuse(
    stack: tuple[Path, list[np.ndarray]], tmp_path: Path, argv: list[str], options: dict
) -> None:  # type: ignore[type-arg]
    folder, frames = stack
    out, depth = tmp_path / "out.png", tmp_path / "depth.png"
    argv = ["fuse", str(folder), "-o", str(out), "--depth-map", str(depth), "--quiet", *argv]
    assert main(argv) == 0
    expected = fuse(frames, **options)  # the oracle: the library call with those options
    np.testing.assert_array_equal(load(out), expected.image)
    depth_image = depth_to_image(expected.depth, len(frames), np.uint16)
    np.testing.assert_array_equal(load(depth), depth_image)


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "three"])
def test_bad_noise_floor_is_a_clean_usage_error(
    stack: tuple[Path, list[np.ndarray]],
    tmp_path: Path,
    value: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, _ = stack
    with pytest.raises(SystemExit) as exit_info:
        main(["fuse", str(folder), "-o", str(tmp_path / "o.png"), "--noise-floor", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--noise-floor: must be a number > 0 or 'off'" in err and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_batch_takes_the_noise_floor_as_fuse_does(
    stack: tuple[Path, list[np.ndarray]], tmp_path: Path
) -> None:
    folder, frames = stack
    root = _stacks_root(folder, tmp_path / "root")
    outdir = tmp_path / "out"
    assert main(["batch", str(root), "-o", str(outdir), "--noise-floor", "off", "--quiet"]) == 0
    results = [p for p in outdir.rglob("*.png")]
    assert len(results) == 1
    with Image.open(results[0]) as image:
        fused = np.asarray(image)
    np.testing.assert_array_equal(fused, fuse(frames, noise_floor=None).image)
    assert not np.array_equal(fused, fuse(frames).image)  # the option made a difference


def test_batch_memory_limit_is_the_whole_batch_budget(
    stack: tuple[Path, list[np.ndarray]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --jobs 1: the stack runs here, within the whole budget, which is the limit in force
    # while the batch runs (fuse plans within it: memory_limit=None), and restored after
    from convstack.cli import _fuse
    from convstack.limits import get_memory_limit

    before = get_memory_limit()
    seen: list[tuple[object, int]] = []
    real_run = _fuse.run

    def spy(args: object) -> int:
        seen.append((args.memory_limit, get_memory_limit()))
        return real_run(args)

    monkeypatch.setattr(_fuse, "run", spy)
    root = _stacks_root(stack[0], tmp_path / "root")
    argv = ["batch", str(root), "-o", str(tmp_path / "out"), "--memory-limit", "3GiB"]
    assert main([*argv, "--quiet"]) == 0
    assert seen == [(None, 3 * 1024**3)]
    assert get_memory_limit() == before


def test_batch_memory_limit_is_split_between_jobs(
    stack: tuple[Path, list[np.ndarray]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --jobs 2: each worker is started with half of the batch's budget
    from convstack.stack import batch

    shares: list[int] = []
    real_share = batch.worker_memory_limit

    def spy(jobs: int) -> int:
        shares.append(real_share(jobs))
        return shares[-1]

    monkeypatch.setattr(batch, "worker_memory_limit", spy)
    root = _stacks_root(stack[0], tmp_path / "root", ("a", "b"))
    argv = ["batch", str(root), "-o", str(tmp_path / "out"), "--memory-limit", "3GiB"]
    assert main([*argv, "--jobs", "2", "--quiet"]) == 0
    assert shares and set(shares) == {3 * 1024**3 // 2}


def test_interpolation_reaches_fuse_and_batch(tmp_path: Path) -> None:
    # a stack that moves (its frames are resampled), so the option makes a difference
    from convstack.stack.synthetic import make_scene, render_stack

    stack = render_stack(make_scene((64, 96), seed=2), 3, breathing=0.004, shift=1.5, seed=2)
    frames = [np.rint(f * 255).astype(np.uint8) for f in stack.frames]
    write_stack(tmp_path / "in", frames)
    out = tmp_path / "out.png"
    argv = ["fuse", str(tmp_path / "in"), "-o", str(out), "--quiet"]
    assert main([*argv, "--interpolation", "cubic"]) == 0  # (quintic: the default)
    cubic = fuse(frames, interpolation="cubic").image
    np.testing.assert_array_equal(load(out), cubic)
    assert not np.array_equal(cubic, fuse(frames).image)
    root = _stacks_root(tmp_path / "in", tmp_path / "root")
    outdir = tmp_path / "batch"
    batch = ["batch", str(root), "-o", str(outdir), "--quiet"]
    assert main([*batch, "--interpolation", "cubic"]) == 0
    (result,) = outdir.rglob("*.png")
    np.testing.assert_array_equal(load(result), cubic)


def test_bad_interpolation_is_a_clean_usage_error(
    stack: tuple[Path, list[np.ndarray]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = stack
    with pytest.raises(SystemExit) as exit_info:
        main(["fuse", str(folder), "-o", str(tmp_path / "o.png"), "--interpolation", "lanczos"])
    assert exit_info.value.code == 2
    assert "--interpolation: invalid choice: 'lanczos'" in capsys.readouterr().err
