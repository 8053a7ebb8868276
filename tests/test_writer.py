"""convstack._writer: no clobber, inputs never written, atomic exclusive create, no leftovers."""

from __future__ import annotations

import errno
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from convstack import _writer
from convstack.stack.errors import OutputError
from convstack.stack.io import read_image, write_image


def leftovers(folder: Path) -> list[str]:
    """Temporary files of the writer left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name)


def test_writes_new_file_with_the_usual_mode(tmp_path: Path) -> None:
    target = _writer.write_bytes(tmp_path / "a.bin", b"hello")
    assert target.read_bytes() == b"hello"
    mask = os.umask(0o022)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
    assert leftovers(tmp_path) == []


def test_existing_file_is_kept_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(_writer.TargetExistsError, match=r"a\.bin: already exists"):
        _writer.write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    _writer.write_bytes(target, b"new", overwrite=True)
    assert target.read_bytes() == b"new"
    assert leftovers(tmp_path) == []


def test_a_dangling_symlink_counts_as_existing(tmp_path: Path) -> None:
    link = tmp_path / "a.bin"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError, match="already exists"):
        _writer.write_bytes(link, b"new")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("how", ["same", "relative", "symlink", "hardlink"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_an_input_is_never_written(tmp_path: Path, how: str, overwrite: bool) -> None:
    frame = tmp_path / "frame.bin"
    frame.write_bytes(b"frame")
    target = {
        "same": frame,
        "relative": tmp_path / "sub" / ".." / "frame.bin",
        "symlink": tmp_path / "link.bin",
        "hardlink": tmp_path / "hard.bin",
    }[how]
    (tmp_path / "sub").mkdir()
    if how == "symlink":
        target.symlink_to(frame)
    elif how == "hardlink":
        os.link(frame, target)
    with pytest.raises(_writer.InputTargetError, match=r"is one of the inputs \(.*frame\.bin\)"):
        _writer.write_bytes(target, b"depth", overwrite=overwrite, inputs=[frame])
    with pytest.raises(ValueError, match="an input is never written"):
        _writer.check_target(target, overwrite=overwrite, inputs=_writer.Inputs([frame]))
    assert frame.read_bytes() == b"frame"
    assert leftovers(tmp_path) == []


def test_other_files_beside_the_inputs_are_written(tmp_path: Path) -> None:
    frame = tmp_path / "frame.bin"
    frame.write_bytes(b"frame")
    _writer.write_bytes(tmp_path / "out.bin", b"out", inputs=[frame, tmp_path / "missing.bin"])
    assert (tmp_path / "out.bin").read_bytes() == b"out"


def test_folder_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"a\.bin: the output folder .*nope does not"):
        _writer.write_bytes(tmp_path / "nope" / "a.bin", b"x")
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError, match=r"dir: is a folder"):
        _writer.write_bytes(tmp_path / "dir", b"x", overwrite=True)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"file is not a folder"):
        _writer.check_target(tmp_path / "file" / "a.bin")


def test_unwritable_folder_is_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tests may run as root, for whom every folder is writable: the check asks access()
    real = os.access

    def access(path: object, mode: int, **kwargs: object) -> bool:
        if Path(os.fsdecode(path)) == tmp_path and mode & os.W_OK:  # type: ignore[arg-type]
            return False
        return real(path, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)
    with pytest.raises(PermissionError, match=r"a\.bin: the output folder .* is not writable"):
        _writer.check_target(tmp_path / "a.bin")
    with pytest.raises(PermissionError, match="not writable"):
        _writer.write_bytes(tmp_path / "a.bin", b"x")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_temp_file_removed_on_every_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overwrite: bool
) -> None:
    def fill(stream: object) -> None:
        raise KeyboardInterrupt  # (what the CLI's SIGTERM handler raises, too)

    with pytest.raises(KeyboardInterrupt):
        _writer.write_stream(tmp_path / "a.bin", fill, overwrite=overwrite)

    def no_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(_writer, "_fsync", no_fsync)
    with pytest.raises(OSError, match="I/O error"):
        _writer.write_bytes(tmp_path / "b.bin", b"x", overwrite=overwrite)
    assert list(tmp_path.iterdir()) == []


def test_write_via_path_keeps_the_extension_for_the_writer(tmp_path: Path) -> None:
    seen: list[str] = []

    def fill(temp: str) -> None:
        seen.append(temp)
        Path(temp).write_bytes(b"GIF89a")

    target = _writer.write_via_path(tmp_path / "a.gif", fill)
    assert seen[0].endswith(".tmp.gif") and Path(seen[0]).parent == tmp_path
    assert target.read_bytes() == b"GIF89a"
    assert leftovers(tmp_path) == []


def race(target: Path, monkeypatch: pytest.MonkeyPatch, write: object) -> list[object]:
    """Two threads write ``target``; both hold their finished temporary file before
    either gives it the name (a barrier in the fsync), the worst interleaving."""
    barrier = threading.Barrier(2, timeout=30)
    real = _writer._fsync

    def fsync(fd: int) -> None:
        real(fd)
        barrier.wait()

    monkeypatch.setattr(_writer, "_fsync", fsync)
    outcomes: list[object] = [None, None]

    def run(k: int) -> None:
        try:
            outcomes[k] = write(k)  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - the outcome is asserted
            outcomes[k] = exc

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def test_two_writers_racing_for_one_new_name_exactly_one_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.bin"
    data = [b"first" * 100, b"second" * 100]
    outcomes = race(target, monkeypatch, lambda k: _writer.write_bytes(target, data[k]))
    won = [k for k in range(2) if outcomes[k] == target]
    lost = [k for k in range(2) if isinstance(outcomes[k], _writer.TargetExistsError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert "another program created it" in str(outcomes[lost[0]])
    assert target.read_bytes() == data[won[0]]  # the winner's data, whole
    assert leftovers(tmp_path) == []


def test_two_image_writers_racing_exactly_one_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.png"
    images = [np.full((8, 9), 10, np.uint8), np.full((8, 9), 200, np.uint8)]
    outcomes = race(target, monkeypatch, lambda k: write_image(target, images[k]))
    lost = [o for o in outcomes if isinstance(o, OutputError)]
    won = [k for k in range(2) if outcomes[k] == target]
    assert len(lost) == 1 and len(won) == 1, outcomes
    assert "already exists" in str(lost[0])
    np.testing.assert_array_equal(read_image(target), images[won[0]])
    assert leftovers(tmp_path) == []


def test_with_overwrite_both_writers_succeed_and_one_whole_file_remains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    data = [b"first" * 100, b"second" * 100]
    outcomes = race(
        target, monkeypatch, lambda k: _writer.write_bytes(target, data[k], overwrite=True)
    )
    assert outcomes == [target, target]
    assert target.read_bytes() in data
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("code", [errno.EPERM, errno.EXDEV])
def test_without_hard_links_an_exclusive_create_reserves_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def no_link(src: object, dst: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", no_link)
    target = _writer.write_bytes(tmp_path / "a.bin", b"data")
    assert target.read_bytes() == b"data"
    with pytest.raises(_writer.TargetExistsError, match="already exists"):
        _writer._place_new_without_links(str(tmp_path / "x"), target)
    assert target.read_bytes() == b"data"
    assert leftovers(tmp_path) == []


def test_a_real_link_error_is_not_taken_for_missing_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(src: object, dst: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "link", denied)
    with pytest.raises(PermissionError, match="Permission denied"):
        _writer.write_bytes(tmp_path / "a.bin", b"data")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- every command writes by the rules


def locked_folder(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``folder`` reads as unwritable to access(), as it would to a user without the
    right (tests may run as root, for whom every folder is writable)."""
    real = os.access

    def access(path: object, mode: int, **kwargs: object) -> bool:
        if Path(os.fsdecode(path)) == folder and mode & os.W_OK:  # type: ignore[arg-type]
            return False
        return real(path, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)


def never(*args: object, **kwargs: object) -> None:
    raise AssertionError("the work started before the outputs were checked")


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    return write_image(tmp_path / "in.png", rng.integers(0, 256, (12, 14, 3), dtype=np.uint8))


@pytest.mark.parametrize("command", [["filter", "box"], ["edges"]])
@pytest.mark.parametrize("how", ["same", "hardlink", "symlink"])
def test_filter_and_edges_never_write_their_input(
    picture: Path, capsys: pytest.CaptureFixture[str], command: list[str], how: str
) -> None:
    from convstack.cli import main

    target = {"same": picture, "hardlink": picture.with_name("h.png")}.get(how)
    if how == "hardlink":
        os.link(picture, target)  # type: ignore[arg-type]
    elif how == "symlink":
        target = picture.with_name("s.png")
        target.symlink_to(picture)
    before = picture.read_bytes()
    assert main([*command, str(picture), str(target), "--force"]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(r"error: .*: is one of the inputs \(.*in\.png\).*\n", err), err
    assert picture.read_bytes() == before


@pytest.mark.parametrize("command", [["filter", "box"], ["edges"]])
def test_filter_and_edges_refuse_an_unwritable_folder_before_the_work(
    picture: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    from convstack import edges, filters
    from convstack.cli import main

    locked = tmp_path / "locked"
    locked.mkdir()
    locked_folder(monkeypatch, locked)
    monkeypatch.setattr(filters, "box_blur", never)
    monkeypatch.setattr(edges, "laplacian_edges", never)
    assert main([*command, str(picture), str(locked / "o.png")]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(r"error: .*o\.png: the output folder .*locked is not writable.*\n", err)
    assert list(locked.iterdir()) == []


def test_filter_refuses_an_unknown_extension_before_the_work(
    picture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from convstack.cli import main

    assert main(["filter", "box", str(picture), str(tmp_path / "o.bmp")]) == 1
    assert "unknown image extension '.bmp'" in capsys.readouterr().err


def test_demo_refuses_an_unwritable_folder_before_rendering(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from convstack.cli import _demo, main

    out = tmp_path / "demo"
    (out / "frames").mkdir(parents=True)
    locked_folder(monkeypatch, out / "frames")
    monkeypatch.setattr(_demo, "make_scene", never)
    assert main(["demo", "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(r"error: .*frame01\.png: the output folder .* is not writable.*\n", err)


def test_lab_refuses_an_unwritable_folder_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from convstack.apps import lab
    from convstack.cli import main

    locked_folder(monkeypatch, tmp_path)
    monkeypatch.setattr(lab, "run_lab", never)
    assert main(["lab", "--out", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(r"error: --out .*: the output folder .* is not writable.*\n", err), err


def test_figures_are_saved_by_the_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    from convstack import viz

    path = tmp_path / "t.png"
    viz.array_table([[1, 2]], path=path)
    with pytest.raises(FileExistsError, match="must not exist"):
        viz.array_table([[1, 2]], path=path)
    before = path.read_bytes()
    locked_folder(monkeypatch, tmp_path)
    with pytest.raises(PermissionError, match="not writable"):
        viz.array_table([[3, 4]], path=path, overwrite=True)
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_the_lab_report_is_not_written_over_one_made_meanwhile(tmp_path: Path) -> None:
    from convstack.apps.lab import Report

    report = Report(tmp_path, overwrite=False, progress=None)
    (tmp_path / "report.html").write_text("someone else's")
    with pytest.raises(FileExistsError, match="report.html"):
        report.write("title", "intro")
    assert (tmp_path / "report.html").read_text() == "someone else's"
    assert leftovers(tmp_path) == []


def test_folder_that_refuses_files_names_the_target_not_the_temporary():
    # /proc passes the folder checks for root (os.access says writable) but creating a
    # file there fails: the error named '/proc/.x.bin.XXXXXXXX.tmp' (issue 19 audit)
    if not os.path.isdir("/proc/self") or not os.access("/proc", os.W_OK | os.X_OK):
        pytest.skip("needs /proc writable by os.access (root on Linux)")
    # the folder check's probe file finds it now, before any data is written
    with pytest.raises(
        _writer.FolderNotWritableError,
        match=r"^/proc/x\.bin: cannot create a file in the output folder /proc \(",
    ) as info:
        _writer.write_bytes("/proc/x.bin", b"data")
    assert ".tmp" not in str(info.value)


def test_the_folder_check_creates_a_real_file_and_leaves_none(tmp_path: Path) -> None:
    assert _writer.check_folder(tmp_path) == tmp_path
    assert list(tmp_path.iterdir()) == []
    if os.path.isdir("/proc/self") and os.access("/proc", os.W_OK | os.X_OK):
        with pytest.raises(
            _writer.FolderNotWritableError, match=r"cannot create a file in the output folder /proc"
        ):
            _writer.check_folder("/proc")
