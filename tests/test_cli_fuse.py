"""`convstack fuse` end to end on tiny files, and every user error as a clean message."""

from __future__ import annotations

import io as _stdio
import os
import re
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
    assert peak_signal_noise_ratio(truth[8:-8, 8:-8], fused[8:-8, 8:-8]) > 42.8  # measured 43.34
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
    assert score > 42.1  # measured 42.66 dB


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
        assert code == 0, err
        assert out.is_file(), method


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
        # one such frame is left out with a warning (issue 16); all but the reference fail
        Image.fromarray(blank).save(paths[0])
        Image.fromarray(blank[::-1]).save(paths[2])
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


# ---------------------------------------------------------------- what is never overwritten


def digests(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def no_fusing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make fusing a failure of the test: a refusal must come before the work."""
    from convstack.cli import _fuse

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the frames were fused before the outputs were checked")

    monkeypatch.setattr(_fuse, "fuse", fail)


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
@pytest.mark.parametrize("flag", ["--depth-map", "-o"])
def test_an_input_frame_is_never_an_output_even_with_force(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    flag: str,
) -> None:
    frames, _ = two_depth_stack(rows=48, cols=64)
    folder = tmp_path / "in"
    paths = write_stack(folder, frames)
    target = {"same": paths[1], "symlink": tmp_path / "link.png", "hardlink": tmp_path / "h.png"}
    if how == "symlink":
        target[how].symlink_to(paths[1])
    elif how == "hardlink":
        os.link(paths[1], target[how])
    before = digests(folder)
    no_fusing(monkeypatch)
    argv = ["fuse", str(folder), "--force", "--quiet", flag, str(target[how])]
    argv += ["-o", str(tmp_path / "out.png")] if flag != "-o" else []
    code, err = run(argv, capsys)
    assert code == 1
    assert re.fullmatch(r"error: .*: is one of the inputs \(.*frame_2\.png\).*\n", err), err
    assert digests(folder) == before
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("force", [False, True])
def test_save_steps_never_writes_over_an_input_frame(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    force: bool,
) -> None:
    frames, _ = two_depth_stack(rows=48, cols=64)
    folder = tmp_path / "in"
    folder.mkdir()
    for index, frame in enumerate(frames):  # named as the steps are
        Image.fromarray(frame).save(folder / f"aligned_{index:03d}.png")
    before = digests(folder)
    no_fusing(monkeypatch)
    argv = ["fuse", str(folder), "-o", str(tmp_path / "out.png"), "--save-steps", str(folder)]
    code, err = run([*argv, "--quiet", *(["--force"] if force else [])], capsys)
    assert code == 1
    assert "aligned_000.png: is one of the inputs" in err and err.count("\n") == 1, err
    assert digests(folder) == before


def test_save_steps_keeps_existing_files_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    frames, _ = two_depth_stack(rows=48, cols=64)
    write_stack(tmp_path / "in", frames)
    steps = tmp_path / "steps"
    steps.mkdir()
    (steps / "depth.png").write_bytes(b"old")
    argv = ["fuse", str(tmp_path / "in"), "-o", str(tmp_path / "out.png"), "--quiet"]
    argv += ["--save-steps", str(steps)]
    with monkeypatch.context() as patch:
        no_fusing(patch)
        code, err = run(argv, capsys)
    assert code == 1
    assert re.fullmatch(r"error: --save-steps .*depth\.png: already exists.*--force.*\n", err)
    assert digests(steps) == {"depth.png": b"old"}
    code, err = run([*argv, "--force"], capsys)
    assert code == 0, err
    assert load(steps / "depth.png").dtype == np.uint16
    assert len(list(steps.iterdir())) == 2 * 3 + 3


def test_save_steps_may_not_write_the_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    frames, _ = two_depth_stack(rows=48, cols=64)
    write_stack(tmp_path / "in", frames)
    no_fusing(monkeypatch)
    out = tmp_path / "depth.png"
    argv = ["fuse", str(tmp_path / "in"), "-o", str(out), "--save-steps", str(tmp_path)]
    code, err = run(argv, capsys)
    assert code == 1 and "--save-steps would write" in err and "the -o file" in err, err


@pytest.mark.parametrize("which", ["-o", "--depth-map", "--save-steps"])
def test_an_unwritable_folder_is_refused_before_the_work(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    which: str,
) -> None:
    # tests run as root, for whom every folder is writable: access() says what a user
    # without the right would be told (a real non-root run is the next test)
    frames, _ = two_depth_stack(rows=48, cols=64)
    write_stack(tmp_path / "in", frames)
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access

    def access(path: object, mode: int, **kwargs: object) -> bool:
        if Path(os.fsdecode(path)) == locked and mode & os.W_OK:  # type: ignore[arg-type]
            return False
        return real(path, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)
    no_fusing(monkeypatch)
    paths = {"-o": tmp_path / "out.png", "--depth-map": tmp_path / "d.png"}
    paths[which] = locked / "x.png"
    argv = ["fuse", str(tmp_path / "in"), "-o", str(paths["-o"])]
    argv += ["--depth-map", str(paths["--depth-map"])]
    if which == "--save-steps":
        argv += ["--save-steps", str(locked)]
    code, err = run(argv, capsys)
    assert code == 1
    assert re.fullmatch(r"error: .*the output folder .*locked is not writable.*\n", err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "locked"]


def _without_root_rights() -> list[str] | None:
    """A command prefix under which write permissions are enforced: none for a plain
    user; for root, ``setpriv`` dropping the capability to override them (root keeps
    its uid, so this venv stays readable); None if neither is available."""
    import shutil

    if not hasattr(os, "geteuid"):
        return None
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]


def test_an_unwritable_folder_as_a_real_user(tmp_path: Path) -> None:
    import subprocess
    import sys

    prefix = _without_root_rights()
    if prefix is None:
        pytest.skip("needs a non-root user, or root with setpriv")
    frames, _ = two_depth_stack(rows=48, cols=64)
    write_stack(tmp_path / "in", frames)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    command = [*prefix, sys.executable, "-m", "convstack.cli", "fuse", str(tmp_path / "in")]
    for flag in ("-o", "--depth-map", "--save-steps"):
        target = locked if flag == "--save-steps" else locked / "x.png"
        outputs = {"-o": tmp_path / "out.png", flag: target}
        result = subprocess.run(
            [*command, "--quiet", *(str(a) for item in outputs.items() for a in item)],
            capture_output=True,
            text=True,
        )
        if "setpriv" in result.stderr:
            pytest.skip(f"setpriv cannot drop the capability here: {result.stderr.strip()}")
        assert result.returncode == 1, result.stderr
        assert re.fullmatch(r"error: .*locked is not writable.*\n", result.stderr), result.stderr
        assert list(locked.iterdir()) == [] and not (tmp_path / "out.png").exists()


def test_two_fuse_runs_racing_for_one_new_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both runs pass the early check (the output does not exist yet) and both fuse;
    both hold their finished temporary file before either names it (a barrier in
    the writer's fsync): exactly one may win, the other must say so."""
    import threading

    from convstack import _writer

    frames, _ = two_depth_stack(rows=48, cols=64)
    write_stack(tmp_path / "in", frames)
    out = tmp_path / "out.png"
    barrier = threading.Barrier(2, timeout=120)
    real = _writer._fsync

    def fsync(fd: int) -> None:
        real(fd)
        barrier.wait()

    monkeypatch.setattr(_writer, "_fsync", fsync)
    codes: list[object] = [None, None]

    def one(k: int) -> None:
        try:
            codes[k] = main(["fuse", str(tmp_path / "in"), "-o", str(out), "--quiet"])
        except BaseException as exc:  # noqa: BLE001 - asserted below
            codes[k] = exc

    threads = [threading.Thread(target=one, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    err = capsys.readouterr().err
    assert sorted(codes, key=str) == [0, 1], (codes, err)
    assert re.fullmatch(r"error: .*out\.png: already exists: another program created it.*\n", err)
    assert load(out).shape == (48, 64, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out.png"]


_SLOW_WRITE = """
import sys, time
from pathlib import Path
from convstack import _writer
marker = Path(sys.argv[1])
real = _writer._fsync
def slow(fd):
    real(fd)
    marker.write_text("writing")
    for _ in range(600):  # slices: a signal's handler runs between them
        time.sleep(0.05)
_writer._fsync = slow
sys.argv = ["convstack", *sys.argv[2:]]
from convstack.cli import command
command()
"""


@pytest.mark.parametrize(("name", "code"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_during_the_final_write_leaves_no_temporary_file(
    tmp_path: Path, name: str, code: int
) -> None:
    import signal
    import subprocess
    import sys
    import time

    frames, _ = two_depth_stack(rows=48, cols=64)
    write_stack(tmp_path / "in", frames)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    marker = tmp_path / "marker"
    argv = ["fuse", str(tmp_path / "in"), "-o", str(out_dir / "fused.png"), "--quiet"]
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITE, str(marker), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), process.communicate(timeout=10)
        assert [p.name for p in out_dir.iterdir() if ".tmp" in p.name]  # caught in the act
        process.send_signal(getattr(signal, name))
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == code, err
    assert "Traceback" not in err
    assert list(out_dir.iterdir()) == []


_MEET_BEFORE_NAMING = """
import sys, time
from pathlib import Path
from convstack import _writer
mine, other = Path(sys.argv[1]), Path(sys.argv[2])
real = _writer._fsync
def meet(fd):
    real(fd)
    mine.write_text("ready")  # both temporary files are complete before either is named
    deadline = time.monotonic() + 60
    while not other.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
_writer._fsync = meet
sys.argv = ["convstack", *sys.argv[3:]]
from convstack.cli import command
command()
"""


def test_two_fuse_processes_racing_for_one_new_output(tmp_path: Path) -> None:
    """The issue's case, as two real processes: both pass the early check, both fuse,
    both hold a finished temporary file; exactly one may exit 0."""
    import subprocess
    import sys

    frames, _ = two_depth_stack(rows=48, cols=64)
    write_stack(tmp_path / "in", frames)
    out = tmp_path / "out.png"
    argv = ["fuse", str(tmp_path / "in"), "-o", str(out), "--quiet"]
    marks = [tmp_path / "a.ready", tmp_path / "b.ready"]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _MEET_BEFORE_NAMING, str(marks[k]), str(marks[1 - k]), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(2)
    ]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    codes = sorted(p.returncode for p in processes)
    assert codes == [0, 1], errors
    loser = errors[[p.returncode for p in processes].index(1)]
    assert re.fullmatch(r"error: .*out\.png: already exists: another program created it.*\n", loser)
    assert all(m.exists() for m in marks)  # they did meet: the race was real
    assert load(out).shape == (48, 64, 3)
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp" in p.name) == []


def test_a_folder_that_refuses_files_despite_access_is_refused_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # /proc for root: access() says writable, creating a file there fails; the folder check
    # tries a real file, so the error comes before any frame is read (issue 19 audit)
    if not os.path.isdir("/proc/self") or not os.access("/proc", os.W_OK | os.X_OK):
        pytest.skip("needs /proc writable by os.access (root on Linux)")
    frames, _ = two_depth_stack(rows=48, cols=64)
    write_stack(tmp_path / "in", frames)
    no_fusing(monkeypatch)
    code, err = run(["fuse", str(tmp_path / "in"), "-o", "/proc/x.png"], capsys)
    assert code == 1
    assert re.fullmatch(r"error: .*cannot create a file in the output folder /proc \(.*\)\.\n", err)
