"""The PNG reader's own path (libdeflate, then the rows' filters undone by a compiled
loop) against independent decoders, on files whose rows carry every filter type."""

from __future__ import annotations

import struct
import sys
import threading
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from convstack.stack import io as stack_io
from convstack.stack.errors import FrameReadError


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _filtered(rows: np.ndarray, bpp: int, kinds: list[int]) -> bytes:
    """The scanlines (rows, stride) filtered as PNG specifies, row r by ``kinds[r]``:
    a slow, obviously-correct loop over the bytes."""
    out = bytearray()
    prior = [0] * rows.shape[1]
    for row, kind in zip(rows.tolist(), kinds, strict=True):
        out.append(kind)
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = prior[i]
            c = prior[i - bpp] if i >= bpp else 0
            guess = [0, a, b, (a + b) // 2, _paeth(a, b, c)][kind] if kind < 5 else 0
            out.append((x - guess) % 256)
        prior = row
    return bytes(out)


def _png(image: np.ndarray, kinds: list[int], *, idat_parts: int = 1) -> bytes:
    """A PNG of ``image`` (uint8 or uint16, grey, grey+alpha, RGB or RGBA) whose row r
    takes filter ``kinds[r]``, its zlib stream split over ``idat_parts`` IDAT chunks."""
    rows, cols = image.shape[:2]
    samples = 1 if image.ndim == 2 else image.shape[2]
    depth = 16 if image.dtype == np.uint16 else 8
    big = np.ascontiguousarray(image, dtype=">u2" if depth == 16 else np.uint8)
    scanlines = big.reshape(rows, -1).view(np.uint8)
    stream = zlib.compress(_filtered(scanlines, samples * depth // 8, kinds), 6)
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[samples]
    chunks = [(b"IHDR", struct.pack(">IIBBBBB", cols, rows, depth, colour, 0, 0, 0))]
    step = -(-len(stream) // idat_parts)
    chunks += [(b"IDAT", stream[i : i + step]) for i in range(0, len(stream), step)]
    chunks.append((b"IEND", b""))
    out = [b"\x89PNG\r\n\x1a\n"]
    for kind, body in chunks:
        crc = zlib.crc32(body, zlib.crc32(kind))
        out += [struct.pack(">I", len(body)), kind, body, struct.pack(">I", crc)]
    return b"".join(out)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((6, 7), np.uint8),
        ((5, 9, 3), np.uint8),
        ((5, 4, 4), np.uint8),
        ((6, 5, 2), np.uint8),
        ((5, 6), np.uint16),
        ((5, 7, 3), np.uint16),
        ((1, 1, 3), np.uint8),
        ((7, 1), np.uint16),
    ],
)
def test_every_filter_type_reads_as_pillow_and_libpng_read_it(
    shape: tuple[int, ...], dtype: type, tmp_path: Path
) -> None:
    rng = np.random.default_rng(sum(shape))
    top = np.iinfo(dtype).max
    image = rng.integers(0, top, shape, dtype=dtype, endpoint=True)
    image[: shape[0] // 2] = np.sort(image[: shape[0] // 2], axis=1)  # some smooth rows
    kinds = [r % 5 for r in range(shape[0])]  # none, Sub, Up, Average, Paeth, ...
    data = _png(image, kinds, idat_parts=3)
    path = tmp_path / "f.png"
    path.write_bytes(data)
    got = stack_io.read_image(path)
    expected = image if image.ndim == 2 or shape[2] == 3 else image[..., :-1]
    if expected.ndim == 3 and expected.shape[2] == 1:  # grey + alpha: grey
        expected = expected[..., 0]
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == dtype
    libpng = np.asarray(imagecodecs.png_decode(data))  # oracles: libpng, and Pillow
    np.testing.assert_array_equal(libpng.reshape(image.shape), image)
    if dtype == np.uint8:
        with Image.open(path) as im:
            np.testing.assert_array_equal(np.asarray(im).reshape(image.shape), image)
    # the compiled path read it (not libpng, behind it)
    compiled = stack_io._inflated_png("f.png", data)
    assert compiled is not None
    np.testing.assert_array_equal(compiled.reshape(image.shape), image)


def test_the_bug_frames_read_as_libpng_reads_them() -> None:
    folder = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bug"
    paths = sorted(folder.glob("b_bigbug*.png"))[:2]
    if not paths:
        pytest.skip("the bug set is not in ../shared/data")
    for path in paths:
        data = path.read_bytes()
        compiled = stack_io._inflated_png(str(path), data)
        assert compiled is not None
        np.testing.assert_array_equal(compiled, np.asarray(imagecodecs.png_decode(data)))


def test_a_row_of_an_unknown_filter_type_is_a_read_error_naming_the_file(
    tmp_path: Path,
) -> None:
    image = np.arange(24, dtype=np.uint8).reshape(4, 6)
    path = tmp_path / "bad.png"
    path.write_bytes(_png(image, [0, 1, 5, 2]))
    with pytest.raises(FrameReadError, match=r"bad\.png: row 2 has filter type 5"):
        stack_io.read_image(path)


def test_image_data_of_the_wrong_size_is_a_read_error_naming_the_file(
    tmp_path: Path,
) -> None:
    image = np.arange(24, dtype=np.uint8).reshape(4, 6)
    data = bytearray(_png(image, [0] * 4))
    data[16:24] = struct.pack(">II", 6, 3)  # IHDR says 3 rows (its CRC is not checked)
    path = tmp_path / "short.png"
    path.write_bytes(bytes(data))
    with pytest.raises(FrameReadError, match=r"short\.png: cannot read the image"):
        stack_io.read_image(path)
    data[16:24] = struct.pack(">II", 6, 5)  # 5 rows: the data inflate to fewer bytes
    path.write_bytes(bytes(data))
    with pytest.raises(FrameReadError, match=r"short\.png: its image data inflate to 28 bytes"):
        stack_io.read_image(path)


def test_image_data_longer_than_the_rows_reads_as_libpng_and_pillow_read_it(
    tmp_path: Path,
) -> None:
    """A zlib stream with one row more than IHDR declares: libpng (with a warning)
    and Pillow read the declared rows, and so does the reader (fails when the
    compiled path refuses the file)."""
    image = np.arange(24, dtype=np.uint8).reshape(4, 6)
    scanlines = b"".join(b"\x00" + row.tobytes() for row in image) + b"\x00" + bytes(6)
    header = struct.pack(">IIBBBBB", 6, 4, 8, 0, 0, 0, 0)
    chunks = [(b"IHDR", header), (b"IDAT", zlib.compress(scanlines)), (b"IEND", b"")]
    data = b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        for kind, body in chunks
    )
    path = tmp_path / "long.png"
    path.write_bytes(data)
    with Image.open(path) as pillow:
        assert np.array_equal(np.asarray(pillow), image)
    assert np.array_equal(stack_io.read_image(path), image)


def test_corrupt_image_data_is_a_read_error(tmp_path: Path) -> None:
    image = np.random.default_rng(1).integers(0, 256, (16, 16), dtype=np.uint8)
    data = bytearray(_png(image, [4] * 16))
    data[60] ^= 0xFF  # inside the zlib stream
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    with pytest.raises(FrameReadError, match=r"corrupt\.png: cannot read the image"):
        stack_io.read_image(path)


def test_the_read_ahead_thread_reads_through_libpng_until_the_kernel_is_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The command's read-ahead decodes while numba starts: it never waits for it. With
    the compiled reader not yet loaded (hidden here, whatever earlier tests loaded), the
    read-ahead thread reads through libpng and every other thread through the kernel
    (the switch once loaded is tested in a fresh process in test_start_preload)."""
    monkeypatch.delitem(sys.modules, "convstack._k_png", raising=False)
    seen: list[bool] = []
    thread = threading.Thread(
        target=lambda: seen.append(stack_io._compiled_png()), name=stack_io._READ_AHEAD_THREAD
    )
    thread.start()
    thread.join()
    assert seen == [False] and stack_io._compiled_png()


def test_a_transparent_colour_is_noted_as_libpng_reads_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A grey PNG with a tRNS chunk (one grey level transparent): the same pixels as
    without it, and the warning that its alpha is ignored (the compiled path has no
    alpha to test, so it leaves such files to libpng)."""
    image = np.arange(24, dtype=np.uint8).reshape(4, 6)
    plain = _png(image, [0] * 4)
    body = struct.pack(">H", 7)  # grey level 7 is transparent
    trns = (
        struct.pack(">I", 2)
        + b"tRNS"
        + body
        + struct.pack(">I", zlib.crc32(body, zlib.crc32(b"tRNS")))
    )
    ihdr_end = 8 + 12 + 13
    path = tmp_path / "trns.png"
    path.write_bytes(plain[:ihdr_end] + trns + plain[ihdr_end:])
    with caplog.at_level("WARNING", logger="convstack"):
        out = stack_io.read_image(path)
    np.testing.assert_array_equal(out, image)
    assert "trns.png: alpha channel is not opaque" in caplog.text
