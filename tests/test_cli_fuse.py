"""`convstack fuse` end to end on tiny files, and every user error as a clean message."""

from __future__ import annotations

import io as _stdio
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from convstack.cli import main
from convstack.cli._common import ProgressBar
from test_stack_fusion import two_depth_stack


def write_stack(folder: Path, frames: list[np.ndarray], ext: str = ".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        path = folder / f"frame_{i + 1}{ext}"
        if ext == ".tif":
            tifffile.imwrite(path, frame)
        else:
            Image.fromarray(frame).save(path)
        paths.append(path)
    return paths


def load(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_end_to_end_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames, truth = two_depth_stack(rows=64, cols=96)
    write_stack(tmp_path / "in", frames)
    out = tmp_path / "out.png"
    depth = tmp_path / "depth.png"
    steps = tmp_path / "steps"
    code, err = run(
        [
            "fuse",
            str(tmp_path / "in"),
            "-o",
            str(out),
            "--depth-map",
            str(depth),
            "--save-steps",
            str(steps),
        ],
        capsys,
    )
    assert code == 0, err
    assert "done in" in err  # the progress bar went to stderr
    fused = load(out)
    assert fused.dtype == np.uint8 and fused.shape == truth.shape
    assert peak_signal_noise_ratio(truth[8:-8, 8:-8], fused[8:-8, 8:-8]) > 30
    depth_image = load(depth)
    assert depth_image.dtype == np.uint16 and depth_image.shape == truth.shape[:2]
    assert depth_image[:, :30].mean() < 10000 and depth_image[:, 66:].mean() > 55000
    assert (steps / "aligned_000.png").is_file() and (steps / "depth.png").is_file()


def test_16bit_tiff_glob_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames, truth = two_depth_stack(rows=48, cols=64, colour=False)
    wide = [f.astype(np.uint16) * 257 for f in frames]
    write_stack(tmp_path, wide, ".tif")
    out = tmp_path / "out" / "fused.tif"
    out.parent.mkdir()
    code, err = run(
        ["fuse", str(tmp_path / "frame_*.tif"), "-o", str(out), "--align", "none", "--quiet"],
        capsys,
    )
    assert code == 0 and err == ""
    fused = tifffile.imread(out)
    assert fused.dtype == np.uint16 and fused.shape == truth.shape
    score = peak_signal_noise_ratio(
        truth[:, 4:-4] * 257.0, fused[:, 4:-4].astype(float), data_range=65535
    )
    assert score > 30


def test_exif_of_reference_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames, _ = two_depth_stack(rows=48, cols=64)
    folder = tmp_path / "in"
    paths = write_stack(folder, frames, ".jpg")
    exif = Image.Exif()
    exif[0x010F] = "convstack-test-camera"  # Make
    Image.fromarray(frames[1]).save(paths[1], exif=exif.tobytes())  # the reference
    out = tmp_path / "out.jpg"
    code, err = run(["fuse", *map(str, paths), "-o", str(out), "--quiet"], capsys)
    assert code == 0, err
    with Image.open(out) as image:
        assert image.getexif().get(0x010F) == "convstack-test-camera"


def test_method_and_reference_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames, _ = two_depth_stack(rows=48, cols=64)
    write_stack(tmp_path / "in", frames)
    for method in ("weighted", "depthmap", "maxabs"):
        out = tmp_path / f"{method}.png"
        args = ["fuse", str(tmp_path / "in"), "-o", str(out), "--method", method]
        code, err = run([*args, "--reference", "0", "--quiet"], capsys)
        assert code == 0, err and out.is_file()


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        ("one_frame", "at least two frames; got 1"),
        ("corrupt", "frame_2.png"),
        ("sizes", "frame_1.png: shape"),
        ("bit_depth", "dtype uint16 differ"),
        ("channels", r"shape \(48, 64\) and dtype uint8 differ"),
        ("exists", r"already exists \(use --force"),
        ("no_folder", "the output folder .* does not exist"),
        ("extension", "unknown image extension '.bmp'"),
        ("diverges", "alignment of .*frame_1.png"),
        ("missing_input", "no such file or folder"),
        ("reference", r"--reference must be a frame index in \[0, 2\]"),
    ],
)
def test_user_errors(
    setup: str, match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames, _ = two_depth_stack(rows=48, cols=64)
    folder = tmp_path / "in"
    paths = write_stack(folder, frames)
    out = tmp_path / "out.png"
    extra: list[str] = []
    inputs = [str(folder)]
    if setup == "one_frame":
        inputs = [str(paths[0])]
    elif setup == "corrupt":
        paths[1].write_bytes(b"\x89PNG\r\n\x1a\n broken")
    elif setup == "sizes":
        Image.fromarray(frames[0][:40]).save(paths[0])
    elif setup == "bit_depth":
        gray = [f[..., 0] for f in frames]
        write_stack(folder, gray)
        tifffile.imwrite(folder / "frame_3.tif", gray[2].astype(np.uint16) * 257)
        paths[2].unlink()
    elif setup == "channels":
        Image.fromarray(frames[0][..., 0]).save(paths[0])
    elif setup == "exists":
        out.write_bytes(b"old")
    elif setup == "no_folder":
        out = tmp_path / "nowhere" / "out.png"
    elif setup == "extension":
        out = tmp_path / "out.bmp"
    elif setup == "diverges":
        blank = np.zeros((48, 64, 3), np.uint8)
        blank[5:15, 5:15] = 255
        Image.fromarray(blank).save(paths[0])
    elif setup == "missing_input":
        inputs = [str(tmp_path / "absent")]
    elif setup == "reference":
        extra = ["--reference", "3"]
    code, err = run(["fuse", *inputs, "-o", str(out), "--quiet", *extra], capsys)
    assert code != 0
    assert err.startswith("error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert pytest.importorskip("re").search(match, err), err
    if setup == "exists":
        assert out.read_bytes() == b"old"  # untouched
    else:
        assert not out.exists()
    assert not list(tmp_path.glob(".out*.tmp"))


def test_force_replaces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames, _ = two_depth_stack(rows=48, cols=64)
    write_stack(tmp_path / "in", frames)
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    code, err = run(["fuse", str(tmp_path / "in"), "-o", str(out), "--force", "--quiet"], capsys)
    assert code == 0, err
    assert load(out).shape == (48, 64, 3)


def test_progress_bar_draws_eta() -> None:
    class Tty(_stdio.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = ProgressBar(stream)
    bar("align", 0, 4)
    bar("align", 2, 4)
    bar("align", 4, 4)
    bar("fuse", 1, 2)
    text = stream.getvalue()
    assert "align" in text and "ETA" in text and "done in" in text and "fuse" in text
    assert "\r" in text and "[" + "#" * 28 + "]" in text


def test_progress_bar_quiet_on_pipes() -> None:
    stream = _stdio.StringIO()
    bar = ProgressBar(stream)
    for done in range(1, 101):
        bar("align", done, 100)
    lines = stream.getvalue().splitlines()
    assert 1 <= len(lines) <= 3 and lines[-1].startswith("align") and "100/100" in lines[-1]
