"""The PNG writer (`convstack.stack.io._png`: Up-filtered rows, libdeflate, own chunks),
checked with independent decoders: OpenCV's libpng and Pillow."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from convstack.stack import io as stack_io


def opencv_read(path: Path) -> np.ndarray:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert data is not None, path
    return data[..., ::-1] if data.ndim == 3 else data


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize(
    "shape", [(1, 1), (1, 9), (11, 1), (37, 53), (1, 1, 3), (2, 5, 3), (61, 47, 3)]
)
def test_round_trip_through_opencv_and_pillow(tmp_path: Path, dtype, shape) -> None:
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    kept = image.copy()
    path = tmp_path / "x.png"
    stack_io.write_image(path, image)
    np.testing.assert_array_equal(image, kept)  # input untouched
    np.testing.assert_array_equal(opencv_read(path), image)
    with Image.open(path) as im:
        im.verify()  # Pillow checks every chunk's CRC
    if dtype == np.uint8:
        with Image.open(path) as im:
            np.testing.assert_array_equal(np.asarray(im), image)
    np.testing.assert_array_equal(stack_io.read_image(path), image)


def test_a_view_with_gaps_is_written_as_its_values(tmp_path: Path) -> None:
    base = np.random.default_rng(3).integers(0, 65536, (20, 30, 4), dtype=np.uint16)
    view = base[::2, 1::2, :3]  # strided, RGBA without its alpha
    path = tmp_path / "v.png"
    stack_io.write_image(path, view)
    np.testing.assert_array_equal(opencv_read(path), view)


def test_exif_and_icc_chunks_read_back_by_pillow(tmp_path: Path) -> None:
    tags = Image.Exif()
    tags[0x010F] = "convstack"
    exif = tags.tobytes()  # b"Exif\0\0" + TIFF
    icc = np.random.default_rng(4).bytes(5000)
    meta = stack_io.ImageMetadata(exif=exif, icc_profile=icc)
    image = np.random.default_rng(5).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    path = tmp_path / "m.png"
    stack_io.write_image(path, image, metadata=meta)
    with Image.open(path) as im:
        assert im.info["icc_profile"] == icc
        assert im.getexif()[0x010F] == "convstack"
    assert stack_io.read_metadata(path) == meta
    np.testing.assert_array_equal(opencv_read(path), image)


def test_chunks_in_order_with_right_crcs_and_up_filtered_rows(tmp_path: Path) -> None:
    """Walked by hand: signature, IHDR, iCCP, eXIf, IDAT, IEND; each CRC; the rows
    decompress (zlib, an independent inflater) to filter type 2 and the byte
    differences from the row above."""
    image = np.random.default_rng(6).integers(0, 256, (5, 4), dtype=np.uint8)
    meta = stack_io.ImageMetadata(exif=b"Exif\x00\x00MM\x00*", icc_profile=b"profile")
    path = tmp_path / "c.png"
    stack_io.write_image(path, image, metadata=meta)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, kinds, bodies = 8, [], {}
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        kinds.append(kind)
        bodies[kind] = body
        position += 12 + length
    assert kinds == [b"IHDR", b"iCCP", b"eXIf", b"IDAT", b"IEND"]
    assert struct.unpack(">IIBBBBB", bodies[b"IHDR"]) == (4, 5, 8, 0, 0, 0, 0)
    rows = np.frombuffer(zlib.decompress(bodies[b"IDAT"]), np.uint8).reshape(5, 5)
    assert (rows[:, 0] == 2).all()
    expected = np.diff(image.astype(np.int16), axis=0, prepend=0) % 256
    np.testing.assert_array_equal(rows[:, 1:], expected)
