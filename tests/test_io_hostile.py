"""Hostile frames: decompression bombs, cut files, fakes, multi-page TIFFs, float ranges.

Every bad frame is refused with a ``FrameReadError`` that names it (``FrameTooLargeError``
for bombs, before anything is decoded), from the library and from ``convstack fuse``
(``error: ...``, no traceback); nothing is fused from a damaged frame.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image

from convstack import limits
from convstack.cli import main
from convstack.stack import fuse
from convstack.stack.errors import (
    FrameMismatchError,
    FrameReadError,
    FrameTooLargeError,
    FrameValueError,
)
from convstack.stack.io import read_image
from test_stack_fusion import two_depth_stack

RNG = np.random.default_rng(19)


# ------------------------------------------------------------------ crafted files
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(rows: int, cols: int, colour: int = 0, depth: int = 8, body: bytes = b"") -> bytes:
    """A PNG whose IHDR claims ``rows x cols``, with a tiny zlib stream as its IDAT."""
    ihdr = struct.pack(">IIBBBBB", cols, rows, depth, colour, 0, 0, 0)
    idat = zlib.compress(body or bytes(64))
    chunks = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def _tiff(rows: int, cols: int, data: bytes, compression: int = 1) -> bytes:
    """A little-endian grey 8-bit TIFF of one strip, its IFD written by hand."""
    entries = [
        (256, 4, cols),  # ImageWidth, LONG
        (257, 4, rows),  # ImageLength
        (258, 3, 8),  # BitsPerSample, SHORT
        (259, 3, compression),
        (262, 3, 1),  # min-is-black
        (273, 4, 8 + 2 + 12 * 9 + 4),  # StripOffsets: right after the IFD
        (277, 3, 1),  # SamplesPerPixel
        (278, 4, max(rows, 1)),  # RowsPerStrip
        (279, 4, len(data)),  # StripByteCounts
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        packed = struct.pack("<I", value) if kind == 4 else struct.pack("<HH", value, 0)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00\x00\x00\x00" + data


def _jpeg(rows: int = 48, cols: int = 64) -> bytes:
    image = (RNG.random((rows, cols, 3)) * 255).astype(np.uint8)
    return bytes(imagecodecs.jpeg8_encode(image, level=90))


def _with_sof_size(jpeg: bytes, rows: int, cols: int) -> bytes:
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[: sof + 5] + struct.pack(">HH", rows, cols) + jpeg[sof + 9 :]


def _encoded_png(image: np.ndarray) -> bytes:
    return bytes(imagecodecs.png_encode(image))


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every decoder fail loudly: a refusal must come from the header alone."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded")

    monkeypatch.setattr(imagecodecs, "png_decode", forbidden)
    monkeypatch.setattr(imagecodecs, "jpeg8_decode", forbidden)
    monkeypatch.setattr(tifffile.TiffPage, "asarray", forbidden)
    monkeypatch.setattr(Image.Image, "load", forbidden)


# ------------------------------------------------------------- decompression bombs
BOMB_MESSAGE = r"bomb\.\w+: the image is 50000 x 50000 = 2500000000 pixels, more than the limit"


@pytest.mark.parametrize("colour", [0, 2, 3, 6], ids=["grey", "rgb", "palette", "rgba"])
def test_png_bomb_is_refused_from_its_header(tmp_path, monkeypatch, colour):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(50000, 50000, colour))
    assert path.stat().st_size < 1000
    _no_decoding(monkeypatch)
    with pytest.raises(FrameTooLargeError, match=BOMB_MESSAGE):
        read_image(path)


def test_bomb_error_is_a_limit_and_a_read_error():
    assert issubclass(FrameTooLargeError, FrameReadError)
    assert issubclass(FrameTooLargeError, limits.LimitError)


def test_jpeg_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    path = tmp_path / "bomb.jpg"
    path.write_bytes(_with_sof_size(_jpeg(), 50000, 50000))
    _no_decoding(monkeypatch)
    with pytest.raises(FrameTooLargeError, match=BOMB_MESSAGE):
        read_image(path)


def test_jpeg_of_many_scans_is_refused(tmp_path, monkeypatch):
    """libjpeg decodes every scan over the whole image, however many (a CPU bomb)."""
    image = (RNG.random((64, 64)) * 255).astype(np.uint8)
    path = tmp_path / "scans.jpg"
    Image.fromarray(image).save(path, progressive=True)
    data = path.read_bytes()
    last = data.rindex(b"\xff\xda")
    path.write_bytes(data[:last] + data[last:-2] * 1001 + b"\xff\xd9")
    _no_decoding(monkeypatch)
    with pytest.raises(FrameReadError, match=r"scans\.jpg: 100\d scans, more than 1000"):
        read_image(path)


@pytest.mark.parametrize("ext", [".tif", ".png"])  # (a TIFF named .png is found by content)
def test_tiff_bomb_is_refused_from_its_header(tmp_path, monkeypatch, ext):
    path = tmp_path / f"bomb{ext}"
    path.write_bytes(_tiff(50000, 50000, zlib.compress(bytes(4096)), compression=8))
    _no_decoding(monkeypatch)
    with pytest.raises(FrameTooLargeError, match=BOMB_MESSAGE):
        read_image(path)


def test_pillow_path_checks_the_pixel_limit(tmp_path, monkeypatch):
    """A GIF goes through Pillow: refused from its size, under our limit (not Pillow's)."""
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(path, format="GIF")
    monkeypatch.setenv("CONVSTACK_MAX_PIXELS", "1000")
    _no_decoding(monkeypatch)
    with pytest.raises(FrameTooLargeError, match=r"small\.png: the image is 40 x 50 = 2000"):
        read_image(path)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif"])
def test_pixel_limit_is_configurable(tmp_path, monkeypatch, ext):
    path = tmp_path / f"frame{ext}"
    image = (RNG.random((30, 40)) * 255).astype(np.uint8)
    if ext == ".tif":
        tifffile.imwrite(path, image)
    else:
        Image.fromarray(image).save(path)
    assert read_image(path).shape == (30, 40)
    monkeypatch.setenv("CONVSTACK_MAX_PIXELS", "1199")
    with pytest.raises(FrameTooLargeError, match=rf"frame\{ext}: the image is 30 x 40 = 1200"):
        read_image(path)
    monkeypatch.setenv("CONVSTACK_MAX_PIXELS", "1200")
    assert read_image(path).shape == (30, 40)


def test_decoded_bytes_must_fit_the_memory_limit(tmp_path):
    path = tmp_path / "frame.png"
    path.write_bytes(_encoded_png(np.zeros((300, 400, 3), np.uint16)))  # 720000 bytes decoded
    refused = pytest.raises(FrameTooLargeError, match=r"frame\.png: decoding 300 x 400 pixels")
    with limits.memory_limit(700_000), refused:
        read_image(path)
    with limits.memory_limit(800_000):
        assert read_image(path).shape == (300, 400, 3)


def test_bomb_in_a_stack_is_named_by_fuse_and_the_cli(tmp_path, monkeypatch, capsys):
    frames, _ = two_depth_stack(rows=32, cols=48, count=2, colour=False)
    Image.fromarray(frames[0]).save(tmp_path / "a.png")
    (tmp_path / "bomb.png").write_bytes(_png(50000, 50000))
    _no_decoding(monkeypatch)
    with pytest.raises(FrameTooLargeError, match=BOMB_MESSAGE):
        fuse([tmp_path / "a.png", tmp_path / "bomb.png"], align="none")
    code = main(["fuse", str(tmp_path / "a.png"), str(tmp_path / "bomb.png"), "-o", "x.png"])
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    assert "error:" in err and "bomb.png: the image is 50000 x 50000" in err


# -------------------------------------------------------------------- cut files
def test_jpeg_cut_in_half_is_refused(tmp_path):
    """libjpeg-turbo (through imagecodecs) decodes it without a word, the rest grey."""
    data = _jpeg()
    half = data[: len(data) // 2]
    partial = np.asarray(imagecodecs.jpeg8_decode(half))  # the silent damage
    assert partial.shape == (48, 64, 3) and np.all(partial[-1] == 128)
    path = tmp_path / "cut.jpg"
    path.write_bytes(half)
    with pytest.raises(FrameReadError, match=r"cut\.jpg: truncated: .*end-of-image"):
        read_image(path)


@pytest.mark.parametrize("keep", [4, 10, 100, -2], ids=["soi", "header", "tables", "no-eoi"])
def test_jpeg_cut_anywhere_is_refused(tmp_path, keep):
    path = tmp_path / "cut.jpg"
    path.write_bytes(_jpeg()[:keep])
    with pytest.raises(FrameReadError, match=r"cut\.jpg: truncated"):
        read_image(path)


@pytest.mark.parametrize(
    "options",
    [{}, {"progressive": True}, {"restart_marker_blocks": 1}, {"quality": 100}],
    ids=["baseline", "progressive", "restarts", "q100"],
)
def test_complete_jpegs_still_read_as_pillow_reads_them(tmp_path, options):
    image = (RNG.random((37, 53, 3)) * 255).astype(np.uint8)
    path = tmp_path / "whole.jpg"
    Image.fromarray(image).save(path, **options)
    with Image.open(path) as im:
        expected = np.asarray(im)
    np.testing.assert_array_equal(read_image(path), expected)
    # bytes after the end-of-image marker (padding, a second image) are no truncation
    path.write_bytes(path.read_bytes() + bytes(16))
    np.testing.assert_array_equal(read_image(path), expected)


@pytest.mark.parametrize("colour", ["grey", "palette"])  # libpng and Pillow
@pytest.mark.parametrize("cut", ["iend", "idat"])
def test_cut_png_is_refused(tmp_path, colour, cut):
    image = (RNG.random((40, 50)) * 255).astype(np.uint8)
    whole = tmp_path / "whole.png"
    if colour == "grey":
        whole.write_bytes(_encoded_png(image))
    else:
        Image.fromarray(image).convert("P").save(whole)
    data = whole.read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[:-12] if cut == "iend" else data[: len(data) - 40])
    with pytest.raises(FrameReadError, match=r"cut\.png: truncated"):
        read_image(path)


def test_cut_tiff_is_refused(tmp_path):
    data = _tiff(20, 30, bytes(range(200)) * 3)
    path = tmp_path / "cut.tif"
    path.write_bytes(data[:-100])
    with pytest.raises(FrameReadError, match=r"cut\.tif: truncated: .*ends at"):
        read_image(path)
    path.write_bytes(data)
    assert read_image(path).shape == (20, 30)


def test_cut_jpeg_in_a_stack_is_not_fused(tmp_path):
    frames, _ = two_depth_stack(rows=32, cols=48, count=3)
    paths = []
    for i, frame in enumerate(frames):
        paths.append(tmp_path / f"f{i}.jpg")
        Image.fromarray(frame).save(paths[-1], quality=95)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) // 2])
    with pytest.raises(FrameReadError, match=r"f2\.jpg: truncated"):
        fuse(paths, align="none")


# ------------------------------------------------------------------ multi-page TIFF
MULTI_PAGE = r"pages\.tif: a multi-page TIFF \(5 pages\), not one frame"


def _five_pages(path: Path, **options: object) -> None:
    tifffile.imwrite(path, (RNG.random((5, 32, 48)) * 255).astype(np.uint8), **options)


@pytest.mark.parametrize("options", [{}, {"imagej": True}], ids=["pages", "imagej"])
def test_multi_page_tiff_is_refused(tmp_path, options):
    _five_pages(tmp_path / "pages.tif", **options)
    with pytest.raises(FrameReadError, match=MULTI_PAGE):
        read_image(tmp_path / "pages.tif")


def test_reduced_resolution_page_is_not_a_frame(tmp_path):
    """A full image and its preview (a reduced-resolution page) read as one frame."""
    image = (RNG.random((32, 48)) * 255).astype(np.uint8)
    with tifffile.TiffWriter(tmp_path / "preview.tif") as tif:
        tif.write(image)
        tif.write(image[::4, ::4], subfiletype=1)
    np.testing.assert_array_equal(read_image(tmp_path / "preview.tif"), image)


def test_multi_page_tiff_among_frames_is_refused(tmp_path, capsys):
    frames, _ = two_depth_stack(rows=32, cols=48, count=2, colour=False)
    for i, frame in enumerate(frames):
        tifffile.imwrite(tmp_path / f"frame_{i}.tif", frame)
    _five_pages(tmp_path / "pages.tif")
    with pytest.raises(FrameReadError, match=MULTI_PAGE):
        fuse(sorted(tmp_path.glob("*.tif")), align="none")
    code = main(["fuse", str(tmp_path), "-o", str(tmp_path / "out.png")])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert "5 pages" in err and "pages.tif" in err


def test_lone_multi_page_tiff_is_a_stack(tmp_path, capsys):
    """Not "needs at least two frames; got 1": the one file holds five, stacked (issue 15;
    tests/test_zstack.py tests the reading)."""
    _five_pages(tmp_path / "pages.tif")
    assert fuse([tmp_path / "pages.tif"], align="none").image.shape == (32, 48)
    out = str(tmp_path / "out.png")
    code = main(["fuse", str(tmp_path / "pages.tif"), "-o", out, "--align", "none", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err


def test_lone_single_frame_still_needs_a_second(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "one.png")
    with pytest.raises(FrameMismatchError, match="at least two frames; got 1"):
        fuse([tmp_path / "one.png"])


# ------------------------------------------------------------- in-memory frames
def test_in_memory_frame_is_named_sensibly():
    with pytest.raises(FrameReadError, match=r"^in-memory image \(BytesIO\): cannot read") as err:
        read_image(io.BytesIO(b"not an image"))
    assert "0x" not in str(err.value) and "b'not an i'" in str(err.value)
    with pytest.raises(FrameReadError, match=r"^frame 3: cannot read"):
        read_image(io.BytesIO(b"not an image"), name="frame 3")


def test_in_memory_frame_in_a_stack_is_named_by_its_index():
    frames, _ = two_depth_stack(rows=32, cols=48, count=3, colour=False)
    items: list[object] = [io.BytesIO(_encoded_png(f)) for f in frames]
    items[2] = io.BytesIO(b"not an image")
    with pytest.raises(FrameReadError, match=r"^frames\[2\] \(in-memory bytes\): ") as err:
        fuse(items, align="none")
    assert "0x" not in str(err.value)


def test_open_file_is_named_by_its_name(tmp_path):
    path = tmp_path / "junk.png"
    path.write_bytes(b"junk")
    with open(path, "rb") as fh, pytest.raises(FrameReadError, match=r"junk\.png: cannot read"):
        read_image(fh)


@pytest.mark.parametrize("method", ["pyramid", "depthmap"])  # depthmap reads frames twice
def test_in_memory_frames_fuse_as_files_do(tmp_path, method):
    frames, _ = two_depth_stack(rows=32, cols=48, count=3)
    paths = []
    for i, frame in enumerate(frames):
        paths.append(tmp_path / f"f{i}.png")
        paths[-1].write_bytes(_encoded_png(frame))
    expected = fuse(paths, method=method).image
    handles = [io.BytesIO(p.read_bytes()) for p in paths]
    np.testing.assert_array_equal(fuse(handles, method=method).image, expected)


def test_read_image_refuses_other_types():
    with pytest.raises(TypeError, match=r"`path` must be a path or a binary file object; got int"):
        read_image(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"`path` must be a binary file object"):
        read_image(io.StringIO("text"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"frames\[1\] \(in-memory bytes\)` must be a binary"):
        fuse([np.zeros((8, 8)), io.StringIO("text")])


# --------------------------------------------------------- a folder of hostile files
def _five_channels(path: Path) -> None:
    image = np.zeros((8, 8, 5), np.uint8)  # RGB and two extra samples
    tifffile.imwrite(path, image, photometric="rgb", planarconfig="contig", extrasamples=[0, 0])


def _cmyk(path: Path) -> None:
    tifffile.imwrite(path, np.zeros((8, 8, 4), np.uint8), photometric="separated")


def _palette_tiff(path: Path) -> None:
    colormap = np.zeros((3, 256), np.uint16)
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), photometric="palette", colormap=colormap)


def _symlink_loop(path: Path) -> None:
    os.symlink(path.name, path)


HOSTILE = {
    "empty.png": (lambda p: p.write_bytes(b""), r"the file is empty \(0 bytes\)"),
    "empty.jpg": (lambda p: p.write_bytes(b""), r"the file is empty"),
    "empty.tif": (lambda p: p.write_bytes(b""), r"the file is empty"),
    "text.png": (lambda p: p.write_text("hello, I am text"), r"cannot read the image"),
    "text.jpg": (lambda p: p.write_text("hello, I am text"), r"cannot read the image"),
    "text.tif": (lambda p: p.write_text("hello, I am text"), r"cannot read the image"),
    "signature_only.png": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n"), r"cannot read"),
    "folder.png": (lambda p: p.mkdir(), r"is a folder, not an image file"),
    "loop.png": (_symlink_loop, r"cannot open it \(Too many levels of symbolic links\)"),
    "dangling.png": (lambda p: os.symlink("nowhere.png", p), r"no such file"),
    "zero_rows.png": (lambda p: p.write_bytes(_png(0, 16)), r"cannot read the image"),
    "zero_rows.tif": (lambda p: p.write_bytes(_tiff(0, 16, b"")), r"not a 2-D image|no pixels"),
    "five_channels.tif": (_five_channels, r"5 samples per pixel"),
    "cmyk.tif": (_cmyk, r"photometric interpretation SEPARATED"),
    "palette.tif": (_palette_tiff, r"photometric interpretation PALETTE"),
    "bomb.png": (lambda p: p.write_bytes(_png(50000, 50000)), r"50000 x 50000"),
    "cut.jpg": (lambda p: p.write_bytes(_jpeg()[:300]), r"truncated"),
    "pages.tif": (_five_pages, r"5 pages"),
}


CLI_REASONS = {
    "folder.png": r"folder holds no image files",
    "dangling.png": r"cannot open it \(No such file or directory\)",
}


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    folder = tmp_path / "hostile"
    folder.mkdir()
    for name, (make, _) in HOSTILE.items():
        make(folder / name)
    return folder


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_is_a_named_read_error(hostile, name):
    with pytest.raises(FrameReadError, match=rf"hostile/{name}: .*(?:{HOSTILE[name][1]})") as err:
        read_image(hostile / name)
    assert "object at 0x" not in str(err.value)  # (Pillow named its BytesIO)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_in_a_stack_is_a_clean_cli_error(tmp_path, hostile, name, capsys):
    frames, _ = two_depth_stack(rows=16, cols=16, count=2, colour=False)
    good = tmp_path / "good.png"
    Image.fromarray(frames[0]).save(good)
    code = main(["fuse", str(good), str(hostile / name), "-o", str(tmp_path / "out.png")])
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    assert err.startswith("error:") and name in err
    reason = CLI_REASONS.get(name, HOSTILE[name][1])  # (the listing sees some first)
    assert re.search(reason, err), err
    assert not (tmp_path / "out.png").exists()


def test_listing_names_a_symlink_loop(hostile):
    from convstack.stack.io import list_frames

    with pytest.raises(FrameReadError, match=r"loop\.png: cannot open it \(Too many levels"):
        list_frames([hostile / "loop.png"])
    listed = {p.name for p in list_frames([hostile])}  # a folder lists its regular files
    assert "loop.png" not in listed and "folder.png" not in listed and "empty.png" in listed


@pytest.mark.parametrize("kind", [".png", ".jpg"])
def test_misnamed_file_is_read_by_its_content(tmp_path, kind):
    image = (RNG.random((20, 30, 3)) * 255).astype(np.uint8)
    path = tmp_path / "frame.tif"
    Image.fromarray(image).save(path, format="PNG" if kind == ".png" else "JPEG")
    with Image.open(path) as im:
        expected = np.asarray(im)
    np.testing.assert_array_equal(read_image(path), expected)


def test_min_is_white_tiff_reads_as_pillow_reads_it(tmp_path):
    image = (RNG.random((8, 9)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "white.tif", image, photometric="miniswhite")
    with Image.open(tmp_path / "white.tif") as im:
        expected = np.asarray(im)
    np.testing.assert_array_equal(expected, 255 - image)
    np.testing.assert_array_equal(read_image(tmp_path / "white.tif"), expected)


# --------------------------------------------------------------- float frames' range
def _float_stack(scale: float) -> list[np.ndarray]:
    frames, _ = two_depth_stack(rows=48, cols=64, count=3)
    return [(f.astype(np.float32) / np.float32(255)) * np.float32(scale) for f in frames]


@pytest.mark.parametrize("method", ["pyramid", "depthmap", "weighted", "maxabs"])
@pytest.mark.parametrize("align", ["none", "similarity"])
def test_float_frames_keep_their_range(method, align):
    big = fuse(_float_stack(1000.0), method=method, align=align).image
    unit = fuse(_float_stack(1.0), method=method, align=align).image
    assert big.dtype == np.float32
    assert big.max() > 500 and (big > 1).mean() > 0.9  # was clipped to 1.0 (99.98 %)
    # the same stack on [0, 1], fused, times 1000: the same picture (to float32
    # rounding, which can tip a few of the steps' choices: within 0.05 % of the range)
    np.testing.assert_allclose(big, unit * np.float32(1000), rtol=0, atol=0.5)
    assert np.abs(big - unit * np.float32(1000)).mean() < 0.01


def test_float_frames_on_their_own_scale_are_not_clipped_to_the_first():
    """A later frame brighter than the reference keeps its highlights."""
    frames = _float_stack(100.0)
    frames[0] = frames[0] * np.float32(5)  # frame 0 (not the reference) reaches 500
    image = fuse(frames, align="none").image
    assert image.max() > 400


def test_float_frames_on_unit_range_are_clipped_as_before():
    frames = _float_stack(1.0)
    image = fuse(frames, align="none").image
    assert image.min() >= 0.0 and image.max() <= 1.0


def test_float_tiff_stack_keeps_its_range_through_the_cli(tmp_path, capsys):
    for i, frame in enumerate(_float_stack(1000.0)):
        tifffile.imwrite(tmp_path / f"frame_{i}.tif", frame, photometric="rgb")
    out = tmp_path / "out" / "fused.tif"
    out.parent.mkdir()
    assert main(["fuse", str(tmp_path), "-o", str(out), "--quiet"]) == 0
    fused = tifffile.imread(out)
    unit = fuse(_float_stack(1.0)).image
    assert fused.dtype == np.float32 and (fused > 1).mean() > 0.9
    np.testing.assert_allclose(fused, unit * np.float32(1000), rtol=0, atol=0.5)


# ------------------------------------------------------- a frame failing in the child
def test_send_to_a_child_ended_by_a_bad_frame_raises_its_error():
    """Not a BrokenPipeError traceback: the frame's own error (the pipeline sends the
    child its next task while the child may already have failed on a frame)."""
    from convstack.stack.forked import ForkedWorker, can_fork

    if not can_fork():
        pytest.skip("no fork here")

    def target(inbox: object, outbox: object) -> None:
        raise FrameReadError("frame_7.png: truncated")

    with ForkedWorker(target) as worker, pytest.raises(FrameReadError, match="frame_7"):
        for _ in range(1000):  # the pipe fills, then breaks once the child has ended
            worker.send(bytes(65536))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_float_frame_with_nan_or_infinity_is_refused_naming_it(bad):
    """NaN or infinity in a float frame spread through the pyramid into a patch of
    NaN in the result (7803 NaN values from one 10x10 NaN patch): now an error naming
    the frame, the count and the first sample's place."""
    frames = [RNG.random((40, 50, 3)).astype(np.float32) for _ in range(3)]
    frames[1][5, 7, 1] = bad
    frames[1][9, 9, 0] = bad
    with pytest.raises(
        FrameValueError,
        match=r"frames\[1\]: 2 samples are NaN or infinite "
        r"\(the first at row 5, column 7\)",
    ):
        fuse(frames, align="none")


def test_a_float_tiff_with_nan_is_a_clean_cli_error(tmp_path, capsys):
    for i in range(3):
        frame = RNG.random((30, 40)).astype(np.float32)
        if i == 2:
            frame[12, 3] = np.nan
        tifffile.imwrite(tmp_path / f"f{i}.tif", frame)
    out = tmp_path / "out.tif"
    assert main(["fuse", str(tmp_path), "-o", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert re.search(r"f2\.tif: 1 sample is NaN or infinite \(the first at row 12, column 3\)", err)
    assert "Traceback" not in err and not out.exists()


def test_an_unsupported_float_dtype_is_named_with_those_supported():
    frames = [RNG.random((20, 30)).astype(np.float16) for _ in range(2)]
    with pytest.raises(FrameMismatchError, match="uint8, uint16, float32 or float64; got"):
        fuse(frames, align="none")
