"""Image file I/O: round trips, bit depth, metadata, atomic writes and listing frames."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, PngImagePlugin

from convstack.stack.errors import FrameReadError, OutputError
from convstack.stack.io import (
    ImageMetadata,
    list_frames,
    natural_key,
    read_image,
    read_metadata,
    write_image,
)

RNG = np.random.default_rng(1234)


def _cv2_write(path, image: np.ndarray) -> None:
    """Write an RGB (or grey) image with OpenCV, which takes colour as BGR."""
    cv2.imwrite(str(path), image[..., ::-1] if image.ndim == 3 else image)


def _random(dtype: type, channels: int | None, shape: tuple[int, int] = (13, 17)) -> np.ndarray:
    full = shape if channels is None else (*shape, channels)
    if dtype == np.uint8:
        return RNG.integers(0, 256, full, dtype=np.uint8)
    if dtype == np.uint16:
        return RNG.integers(0, 65536, full, dtype=np.uint16)
    return RNG.random(full).astype(np.float32)


def _smooth(dtype: type, channels: int | None) -> np.ndarray:
    rows, cols = np.mgrid[0:32, 0:40]
    base = 0.5 + 0.4 * np.sin(rows / 6.0) * np.cos(cols / 7.0)
    if channels is not None:
        base = np.stack([base, base[::-1], 1 - base], axis=-1)
    top = 255 if dtype == np.uint8 else 65535
    return np.round(base * top).astype(dtype)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- lossless round trips


@pytest.mark.parametrize("ext", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [None, 3])
def test_lossless_round_trip(tmp_path, ext, dtype, channels):
    image = _random(dtype, channels)
    path = write_image(tmp_path / f"a{ext}", image)
    back = read_image(path)
    assert back.dtype == dtype
    assert back.shape == image.shape
    np.testing.assert_array_equal(back, image)


@pytest.mark.parametrize("channels", [None, 3])
def test_float_tiff_round_trip(tmp_path, channels):
    image = _random(np.float32, channels)
    back = read_image(write_image(tmp_path / "f.tif", image))
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, image)
    back64 = read_image(write_image(tmp_path / "g.tif", image.astype(np.float64)))
    assert back64.dtype == np.float32
    np.testing.assert_array_equal(back64, image)


@pytest.mark.parametrize(
    "ext, dtype",
    [
        (".png", np.uint8),
        (".png", np.uint16),
        (".tif", np.uint8),
        (".tif", np.uint16),
        (".tif", np.float32),
    ],
)
@pytest.mark.parametrize("channels", [None, 3])
def test_png_and_tiff_match_independent_reader(tmp_path, ext, dtype, channels):
    """OpenCV (libpng, libtiff) reads what we wrote: the 16-bit colour PNG really holds
    16 bits, and the TIFF's predictors (integer and float) and compression are standard."""
    image = _random(dtype, channels)
    path = write_image(tmp_path / f"a{ext}", image)
    oracle = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if channels == 3:
        oracle = oracle[..., ::-1]
    assert oracle.dtype == dtype
    np.testing.assert_array_equal(oracle, image)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [None, 3])
def test_read_files_written_by_other_libraries(tmp_path, dtype, channels):
    image = _random(dtype, channels)
    png_path = tmp_path / "cv.png"
    _cv2_write(png_path, image)
    np.testing.assert_array_equal(read_image(png_path), image)
    tif_path = tmp_path / "tf.tif"
    tifffile.imwrite(tif_path, image, photometric="rgb" if channels else "minisblack")
    np.testing.assert_array_equal(read_image(tif_path), image)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [None, 3])
def test_lzw_tiffs_read(tmp_path, dtype, channels):
    # LZW is the default compression of many programs (OpenCV's TIFFs among them);
    # tifffile needs imagecodecs for it
    image = _random(dtype, channels)
    cv_path = tmp_path / "cv.tif"
    _cv2_write(cv_path, image)
    with tifffile.TiffFile(cv_path) as tif:
        assert tif.pages.first.compression == tifffile.COMPRESSION.LZW
    np.testing.assert_array_equal(read_image(cv_path), image)
    lzw_path = tmp_path / "lzw.tif"
    photometric = "rgb" if channels else "minisblack"
    tifffile.imwrite(lzw_path, image, photometric=photometric, compression="lzw", predictor=2)
    np.testing.assert_array_equal(read_image(lzw_path), image)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [None, 3])
def test_interlaced_png_reads(tmp_path, dtype, channels):
    import png

    image = _random(dtype, channels)
    planes = channels or 1
    writer = png.Writer(
        17, 13, greyscale=channels is None, bitdepth=8 * image.itemsize, interlace=True
    )
    with open(tmp_path / "adam7.png", "wb") as fh:
        writer.write(fh, image.reshape(13, 17 * planes))
    np.testing.assert_array_equal(read_image(tmp_path / "adam7.png"), image)


def test_sixteen_bit_grey_and_alpha_png_reads_grey(tmp_path):
    import png

    grey_alpha = _random(np.uint16, 2)
    grey_alpha[..., 1] = 65535
    path = tmp_path / "la16.png"
    with open(path, "wb") as fh:
        png.Writer(17, 13, greyscale=True, alpha=True, bitdepth=16).write(
            fh, grey_alpha.reshape(13, 34)
        )
    np.testing.assert_array_equal(read_image(path), grey_alpha[..., 0])


def test_planar_tiff_is_returned_channels_last(tmp_path):
    image = _random(np.uint16, 3)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, np.moveaxis(image, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(path), image)


def test_alpha_is_dropped(tmp_path, caplog):
    rgba = _random(np.uint8, 4)
    rgba[..., 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "opaque.png")
    np.testing.assert_array_equal(read_image(tmp_path / "opaque.png"), rgba[..., :3])
    rgba[0, 0, 3] = 10
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "see-through.png")
    with caplog.at_level(logging.WARNING, logger="convstack.stack.io"):
        back = read_image(tmp_path / "see-through.png")
    assert back.shape == rgba.shape[:2] + (3,)
    assert "alpha" in caplog.text


def test_rgba16_png_drops_alpha(tmp_path):
    rgba = _random(np.uint16, 4)
    rgba[..., 3] = 65535
    cv2.imwrite(str(tmp_path / "a.png"), rgba[..., [2, 1, 0, 3]])
    back = read_image(tmp_path / "a.png")
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, rgba[..., :3])


def test_palette_png_reads_as_rgb(tmp_path):
    image = _random(np.uint8, 3)
    Image.fromarray(image).quantize(colors=16).save(tmp_path / "p.png")
    expected = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    back = read_image(tmp_path / "p.png")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, expected)


@pytest.mark.parametrize("ext", [".png", ".tif", ".jpg"])
def test_views_with_gaps_are_written(tmp_path, ext):
    # the RGB of an RGBA array, every other column: strided views, not C-contiguous
    rgba = _smooth(np.uint8, 3)[:, :, [0, 1, 2, 0]]
    for view in (rgba[..., :3], rgba[:, ::2, :3]):
        assert not view.flags.c_contiguous
        written = write_image(tmp_path / f"v{view.shape[1]}{ext}", view)
        copied = write_image(tmp_path / f"c{view.shape[1]}{ext}", view.copy())
        assert written.read_bytes() == copied.read_bytes()  # the same file as a copy's
        if ext != ".jpg":
            np.testing.assert_array_equal(read_image(written), view)


def test_single_channel_axis_is_squeezed(tmp_path):
    image = _random(np.uint8, 1)
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "a.png", image)), image[..., 0])


# ---------------------------------------------------------------- JPEG


@pytest.mark.parametrize("channels", [None, 3])
def test_jpeg_round_trip_is_close(tmp_path, channels):
    image = _smooth(np.uint8, channels)
    back = read_image(write_image(tmp_path / "a.jpg", image, quality=95))
    assert back.dtype == np.uint8
    assert back.shape == image.shape
    assert np.abs(back.astype(int) - image).mean() < 2.0


@pytest.mark.parametrize("channels", [None, 3])
def test_jpeg_decodes_as_opencv_and_pillow_do(tmp_path, channels):
    # both decode with libjpeg-turbo's defaults (integer IDCT, smooth upsampling)
    image = _smooth(np.uint8, channels)
    path = tmp_path / "cv.jpg"
    _cv2_write(path, image)
    back = read_image(path)
    oracle = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(back, oracle[..., ::-1] if channels else oracle)
    with Image.open(path) as im:
        np.testing.assert_array_equal(back, np.asarray(im))


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    rgb = Image.fromarray(_smooth(np.uint8, 3))
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    back = read_image(tmp_path / "cmyk.jpg")
    with Image.open(tmp_path / "cmyk.jpg") as im:
        assert im.mode == "CMYK"
        np.testing.assert_array_equal(back, np.asarray(im.convert("RGB")))


def test_rgb_png_with_a_transparent_colour_reads_rgb(tmp_path):
    image = _random(np.uint8, 3)
    Image.fromarray(image).save(
        tmp_path / "key.png", transparency=tuple(int(v) for v in image[0, 0])
    )
    np.testing.assert_array_equal(read_image(tmp_path / "key.png"), image)


def test_jpeg_16_bit_is_rounded_to_8_with_a_log(tmp_path, caplog):
    image = _smooth(np.uint16, 3)
    with caplog.at_level(logging.WARNING, logger="convstack.stack.io"):
        path = write_image(tmp_path / "a.jpeg", image, quality=100)
    assert "8 bits" in caplog.text
    back = read_image(path)
    assert back.dtype == np.uint8
    expected = np.round(image / 257.0)
    assert np.abs(back - expected).mean() < 2.0


def test_quality_is_checked(tmp_path):
    with pytest.raises(ValueError, match="`quality` must lie in"):
        write_image(tmp_path / "a.jpg", _smooth(np.uint8, None), quality=0)


# ---------------------------------------------------------------- metadata


def _icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "convstack-test-camera"  # Make
    return exif.tobytes()


@pytest.mark.parametrize(
    ("name", "dtype", "channels"),
    [
        ("a.png", np.uint8, None),
        ("a.png", np.uint8, 3),
        ("a.png", np.uint16, None),
        ("a.png", np.uint16, 3),
        ("a.jpg", np.uint8, 3),
    ],
)
def test_exif_and_icc_are_kept(tmp_path, name, dtype, channels):
    meta = ImageMetadata(exif=_exif(), icc_profile=_icc())
    path = write_image(tmp_path / name, _smooth(dtype, channels), metadata=meta)
    with Image.open(path) as im:  # independent check through Pillow
        assert im.info.get("icc_profile") == meta.icc_profile
        assert im.getexif()[0x010F] == "convstack-test-camera"
    back = read_metadata(path)
    assert back.icc_profile == meta.icc_profile
    assert back.exif is not None
    assert b"convstack-test-camera" in back.exif


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_keeps_icc(tmp_path, dtype):
    meta = ImageMetadata(exif=_exif(), icc_profile=_icc())
    path = write_image(tmp_path / "a.tif", _smooth(dtype, 3), metadata=meta)
    with tifffile.TiffFile(path) as tif:
        assert bytes(tif.pages.first.tags[34675].value) == meta.icc_profile
    assert read_metadata(path).icc_profile == meta.icc_profile


def test_metadata_empty_when_absent(tmp_path):
    path = write_image(tmp_path / "a.png", _smooth(np.uint8, 3))
    assert read_metadata(path) == ImageMetadata()


def test_read_metadata_missing_file(tmp_path):
    with pytest.raises(FrameReadError, match="nope.jpg"):
        read_metadata(tmp_path / "nope.jpg")


# ---------------------------------------------------------------- safety


def test_refuses_to_overwrite(tmp_path):
    path = write_image(tmp_path / "a.png", _smooth(np.uint8, None))
    before = _digest(path)
    with pytest.raises(OutputError, match=r"a\.png: already exists"):
        write_image(path, _smooth(np.uint8, 3))
    assert _digest(path) == before
    write_image(path, _smooth(np.uint8, 3), overwrite=True)
    assert read_image(path).shape == (32, 40, 3)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(OutputError, match="output folder .*missing"):
        write_image(tmp_path / "missing" / "a.png", _smooth(np.uint8, None))


@pytest.mark.parametrize("name", ["a.bmp", "a", "a.webp"])
def test_unknown_extension_is_named(tmp_path, name):
    with pytest.raises(OutputError, match="unknown image extension"):
        write_image(tmp_path / name, _smooth(np.uint8, None))
    assert list(tmp_path.iterdir()) == []


def test_no_temp_file_left_on_error(tmp_path):
    with pytest.raises(TypeError, match="can only be written to TIFF"):
        write_image(tmp_path / "a.png", _random(np.float32, 3))
    with pytest.raises(TypeError, match="`image` must be uint8"):
        write_image(tmp_path / "b.png", np.zeros((4, 4), dtype=np.int32))
    with pytest.raises(ValueError, match=r"`image` must have shape"):
        write_image(tmp_path / "c.png", np.zeros((4, 4, 2), dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    """A failure at the rename leaves neither the target nor a temporary file."""
    existing = write_image(tmp_path / "keep.png", _smooth(np.uint8, None))
    before = _digest(existing)

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)  # the rename that overwrites
    monkeypatch.setattr(os, "link", boom)  # the exclusive one, for a new name
    with pytest.raises(OSError, match="disk full"):
        write_image(tmp_path / "new.png", _smooth(np.uint8, 3))
    with pytest.raises(OSError, match="disk full"):
        write_image(existing, _smooth(np.uint8, 3), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]
    assert _digest(existing) == before


def test_input_array_unchanged(tmp_path):
    image = _smooth(np.uint16, 3)
    copy = image.copy()
    write_image(tmp_path / "a.jpg", image)
    write_image(tmp_path / "a.png", image)
    np.testing.assert_array_equal(image, copy)


def test_input_file_unchanged_by_reading(tmp_path):
    path = write_image(tmp_path / "a.png", _random(np.uint16, 3))
    before = (_digest(path), path.stat().st_mtime_ns)
    read_image(path)
    read_metadata(path)
    assert (_digest(path), path.stat().st_mtime_ns) == before


@pytest.mark.parametrize(
    "ext, dtype",
    [(".png", np.uint8), (".png", np.uint16), (".jpg", np.uint8), (".tif", np.uint8)],
)
def test_corrupt_file_is_named(tmp_path, ext, dtype):
    good = write_image(tmp_path / f"good{ext}", _smooth(dtype, 3))
    bad = tmp_path / f"bad{ext}"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    with pytest.raises(FrameReadError, match=f"bad\\{ext}"):
        read_image(bad)


def test_not_an_image_is_named(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    with pytest.raises(FrameReadError, match=r"notes\.png: cannot read"):
        read_image(bad)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FrameReadError, match=r"ghost\.tif: no such file"):
        read_image(tmp_path / "ghost.tif")


# ---------------------------------------------------------------- listing


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_image(folder / name, np.zeros((2, 2), dtype=np.uint8))


def test_natural_key():
    names = ["frame10.png", "frame2.png", "frame1.png", "Frame3.png"]
    assert sorted(names, key=natural_key) == [
        "frame1.png",
        "frame2.png",
        "Frame3.png",
        "frame10.png",
    ]


def test_list_folder_in_natural_order(tmp_path):
    _touch(tmp_path, "frame10.png", "frame2.png", "frame1.jpg", ".hidden.png")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    names = [p.name for p in list_frames([tmp_path])]
    assert names == ["frame1.jpg", "frame2.png", "frame10.png"]


def test_list_glob_and_files(tmp_path):
    _touch(tmp_path, "b10.tif", "b9.tif", "a1.png")
    assert [p.name for p in list_frames([str(tmp_path / "b*.tif")])] == ["b9.tif", "b10.tif"]
    files = [tmp_path / "b10.tif", tmp_path / "a1.png", tmp_path / "b10.tif"]
    assert [p.name for p in list_frames(files)] == ["a1.png", "b10.tif"]
    assert [p.name for p in list_frames(str(tmp_path / "a1.png"))] == ["a1.png"]


def test_list_errors_name_the_input(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FrameReadError, match="empty: folder holds no image files"):
        list_frames([tmp_path / "empty"])
    with pytest.raises(FrameReadError, match=r"\*\.png: pattern matched no image files"):
        list_frames([str(tmp_path / "*.png")])
    with pytest.raises(FrameReadError, match="ghost.png: no such file or folder"):
        list_frames([tmp_path / "ghost.png"])
    with pytest.raises(FrameReadError, match="at least one"):
        list_frames([])


def test_png_exif_after_the_image_data_is_found_without_decoding(tmp_path, monkeypatch):
    # an eXIf chunk may follow IDAT; Pillow then decodes the image to find it
    import png

    path = write_image(tmp_path / "a.png", _smooth(np.uint8, 3))
    chunks = list(png.Reader(bytes=path.read_bytes()).chunks())
    exif = _exif()[len(b"Exif\x00\x00") :]
    with open(path, "wb") as fh:
        png.write_chunks(fh, chunks[:-1] + [(b"eXIf", exif), chunks[-1]])
    with Image.open(path) as im:  # independent check: Pillow finds it (after a decode)
        assert im.getexif()[0x010F] == "convstack-test-camera"
    monkeypatch.setattr(
        PngImagePlugin.PngImageFile, "load", lambda self: pytest.fail("decoded the image")
    )
    back = read_metadata(path)
    assert back.exif == b"Exif\x00\x00" + exif
    assert read_metadata(write_image(tmp_path / "b.png", _smooth(np.uint8, 3))).exif is None


def test_png_metadata_written_by_pillow_is_read_back(tmp_path):
    # an independent writer: Pillow's iCCP (zlib-compressed, named) and eXIf chunks
    path = tmp_path / "p.png"
    Image.fromarray(_smooth(np.uint8, 3)).save(path, icc_profile=_icc(), exif=_exif())
    back = read_metadata(path)
    assert back.icc_profile == _icc()
    assert back.exif is not None and b"convstack-test-camera" in back.exif


def test_png_metadata_needs_no_pillow(tmp_path):
    # PNG stacks never import Pillow (12 ms of start-up), metadata included
    path = write_image(
        tmp_path / "a.png", _smooth(np.uint8, 3), metadata=ImageMetadata(exif=_exif())
    )
    code = (
        "import sys; from convstack.stack import io; "
        f"meta = io.read_metadata({str(path)!r}); io.read_image({str(path)!r}); "
        "assert meta.exif is not None; print('PIL' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
