"""Review of the frames decoded ahead (`convstack.stack.io.ReadAhead`, f803df0) and the
header probe it starts with (`read_header`): a damaged file must neither kill the
decoding thread with a traceback nor escape as anything but a named read error, and a
frame listed twice is handed over right both times."""

from __future__ import annotations

import io
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image

from convstack.cli import main
from convstack.stack import io as stack_io
from convstack.stack.errors import FrameReadError


@pytest.fixture(autouse=True)
def _nothing_left_ahead() -> Any:
    stack_io.drop_read_ahead()
    yield
    stack_io.drop_read_ahead()


def rational_rows_per_strip_tiff() -> bytes:
    """A 30x40 RGB TIFF whose RowsPerStrip tag is stored as a RATIONAL: opening it makes
    tifffile compare a tuple with an int (TypeError, not one of its own errors)."""
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((30, 40, 3), np.uint8))
    data = bytearray(buf.getvalue())
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack("<H", data[entry : entry + 2])[0] == 278:  # RowsPerStrip
            data[entry + 2 : entry + 4] = struct.pack("<H", 5)  # RATIONAL
    try:
        with tifffile.TiffFile(io.BytesIO(bytes(data))):
            pass
    except TypeError:
        return bytes(data)
    pytest.skip("this tifffile opens the damaged header without a TypeError")


def png(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)
    return path


def test_read_header_of_a_damaged_tiff_is_none() -> None:
    """read_header promises None where the header does not say (it is a probe)."""
    assert stack_io.read_header(rational_rows_per_strip_tiff()) is None


def test_a_damaged_tiff_stops_the_read_ahead_without_a_thread_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_bytes(rational_rows_per_strip_tiff())
    good = png(tmp_path / "good.png", 1)
    crashed: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashed.append(args.exc_value))
    ahead = stack_io.ReadAhead([bad, good], 1 << 20)
    ahead._thread.join()
    ahead.stop()
    assert crashed == []
    assert not stack_io._decoded_ahead  # stopped at the file it cannot read


def test_read_image_of_a_damaged_tiff_is_a_named_read_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_bytes(rational_rows_per_strip_tiff())
    with pytest.raises(FrameReadError, match=r"bad\.tif: cannot read the image"):
        stack_io.read_image(bad)
    with pytest.raises(FrameReadError, match=r"in-memory image.*: cannot read the image"):
        stack_io.read_image(io.BytesIO(bad.read_bytes()))


def test_read_image_still_refuses_a_file_object_giving_text() -> None:
    with pytest.raises(TypeError, match=r"`path` must be a binary file object \(giving bytes\)"):
        stack_io.read_image(io.StringIO("text"))


def test_the_command_names_a_damaged_tiff_among_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_bytes(rational_rows_per_strip_tiff())
    frames = [png(tmp_path / "a.png", 2), bad, png(tmp_path / "c.png", 3)]
    code = main(["fuse", *map(str, frames), "-o", str(tmp_path / "out.png")])
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err and "Exception in thread" not in err
    assert err.startswith("error:") and "bad.tif" in err, err
    assert not (tmp_path / "out.png").exists()


def test_a_frame_listed_twice_is_handed_over_right_both_times(tmp_path: Path) -> None:
    a, b = png(tmp_path / "a.png", 4), png(tmp_path / "b.png", 5)
    ahead = stack_io.ReadAhead([a, a, b], 1 << 20)
    ahead._thread.join()
    ahead.stop()
    first, second, other = (stack_io.read_image(p) for p in (a, a, b))
    with Image.open(a) as image:
        want = np.asarray(image)
    np.testing.assert_array_equal(first, want)
    np.testing.assert_array_equal(second, want)
    assert first is not second  # never one array for two frames (fuse may write one)
    assert not stack_io._decoded_ahead
