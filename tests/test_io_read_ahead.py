"""Frames decoded ahead of their reading (`convstack.stack.io.ReadAhead`): what the
command decodes while numba starts is handed over once, exactly as read, and never
stands in for a file that changed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convstack.cli import main
from convstack.stack import fuse
from convstack.stack import io as stack_io
from convstack.stack.errors import FrameReadError


@pytest.fixture(autouse=True)
def _nothing_left_ahead() -> None:
    stack_io.drop_read_ahead()
    yield
    stack_io.drop_read_ahead()


def write_frames(folder: Path, count: int, shape: tuple[int, ...] = (30, 40, 3)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    paths = []
    for i in range(count):
        path = folder / f"f{i}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def read_all_ahead(paths: list[Path], budget: int) -> None:
    """A read-ahead left to decode all it may (the command stops it when numba is up)."""
    ahead = stack_io.ReadAhead(paths, budget)
    ahead._thread.join()
    ahead.stop()


def pillow(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_files_decoded_ahead_are_handed_over_once_as_read(tmp_path: Path) -> None:
    paths = write_frames(tmp_path, 3)
    read_all_ahead(paths, 1 << 20)
    assert len(stack_io._decoded_ahead) == 3
    first = [stack_io.read_image(p) for p in paths]
    assert not stack_io._decoded_ahead  # each taken
    for path, image in zip(paths, first, strict=True):
        np.testing.assert_array_equal(image, pillow(path))
        again = stack_io.read_image(path)  # decoded anew: not the same array
        assert again is not image
        np.testing.assert_array_equal(again, image)


def test_read_ahead_stops_at_the_budget_in_the_order_given(tmp_path: Path) -> None:
    paths = write_frames(tmp_path, 4)
    frame_bytes = 30 * 40 * 3
    order = [paths[2], paths[3], paths[1], paths[0]]
    read_all_ahead(order, 2 * frame_bytes + frame_bytes // 2)
    held = {key[0] for key in stack_io._decoded_ahead}
    assert held == {os.path.abspath(paths[2]), os.path.abspath(paths[3])}


def test_a_file_changed_after_its_read_ahead_is_decoded_again(tmp_path: Path) -> None:
    (path,) = write_frames(tmp_path, 1)
    read_all_ahead([path], 1 << 20)
    changed = np.full((30, 41, 3), 7, dtype=np.uint8)  # another size: another identity
    Image.fromarray(changed).save(path)
    np.testing.assert_array_equal(stack_io.read_image(path), changed)


def test_an_unreadable_file_stops_the_read_ahead_and_is_reported_where_read(
    tmp_path: Path,
) -> None:
    paths = write_frames(tmp_path, 3)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2])  # cut short
    read_all_ahead(paths, 1 << 20)
    assert {key[0] for key in stack_io._decoded_ahead} == {os.path.abspath(paths[0])}
    with pytest.raises(FrameReadError, match=r"f1\.png"):
        stack_io.read_image(paths[1])


def test_the_command_fuses_frames_decoded_ahead_as_the_library_fuses_the_files(
    tmp_path: Path,
) -> None:
    """The command decodes its frames ahead (the library never does): same pixels, and
    nothing left decoded once it returns."""
    rows, cols = 48, 64
    rng = np.random.default_rng(5)
    sharp = rng.integers(0, 256, (rows, cols, 3), dtype=np.uint8)
    soft = np.full_like(sharp, 128)
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for i in range(4):  # each frame sharp in its own quarter of the columns
        frame = soft.copy()
        side = slice(i * cols // 4, (i + 1) * cols // 4)
        frame[:, side] = sharp[:, side]
        paths.append(folder / f"f{i}.png")
        Image.fromarray(frame).save(paths[-1])
    out = tmp_path / "out.png"
    assert main(["fuse", str(folder), "-o", str(out), "--quiet", "--align", "none"]) == 0
    assert not stack_io._decoded_ahead
    expected = fuse(paths, align="none").image
    np.testing.assert_array_equal(pillow(out), expected)


def test_decoded_ahead_says_whether_a_read_takes_the_decoded_frame(tmp_path: Path) -> None:
    paths = write_frames(tmp_path, 2)
    read_all_ahead(paths[:1], 1 << 20)
    assert stack_io.decoded_ahead(paths[0]) and stack_io.decoded_ahead(str(paths[0]))
    assert not stack_io.decoded_ahead(paths[1])  # not decoded ahead
    assert not stack_io.decoded_ahead(np.zeros((2, 2)))  # not a path
    assert not stack_io.decoded_ahead(tmp_path / "missing.png")
    stack_io.read_image(paths[0])
    assert not stack_io.decoded_ahead(paths[0])  # taken


def _forked_fuse_counting(
    paths: list[Path], monkeypatch: pytest.MonkeyPatch
) -> tuple[np.ndarray, list[str], list[int]]:
    """fuse with the reader forked and this process keen to read every frame for it:
    the image, the frames this process decoded, and its calls to hand pages back."""
    from convstack.stack import _schedule

    monkeypatch.setenv("CONVSTACK_FORK", "1")  # (small frames: forked all the same)
    monkeypatch.setattr(_schedule, "read_credit", lambda costs, share: 1.0)
    decoded: list[str] = []
    trims: list[int] = []
    original = stack_io._decode

    def counting(label: str, content: bytes) -> np.ndarray:
        decoded.append(label)  # (the child's calls count in its own copy)
        return original(label, content)

    monkeypatch.setattr(stack_io, "_decode", counting)
    monkeypatch.setattr(_schedule, "release_free_pages", lambda: trims.append(1))
    return fuse(paths, align="none").image, decoded, trims


def test_the_forked_reader_is_never_sent_a_frame_it_has_decoded_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame the command decoded ahead costs the child nothing to read: this process
    does not decode it again for the child (it did, when the child looked busier), and
    it hands back the pages it held them in (the child has them)."""
    paths = write_frames(tmp_path, 6, (40, 50, 3))
    image, decoded, trims = _forked_fuse_counting(paths, monkeypatch)
    assert decoded and not trims  # nothing ahead: this process reads some frames
    read_all_ahead(paths, 1 << 20)
    again, decoded, trims = _forked_fuse_counting(paths, monkeypatch)
    assert decoded == [] and trims == [1]
    assert not stack_io._decoded_ahead
    np.testing.assert_array_equal(again, image)
