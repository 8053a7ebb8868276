"""Image files in and out: PNG, JPEG and TIFF, grey or RGB, 8-bit, 16-bit and float.

Libraries, not hand-written codecs:

- imagecodecs (libpng, libjpeg-turbo) reads grey and RGB PNG (8- and 16-bit, with
  or without alpha; Pillow 13 has no 16-bit RGB mode and would silently truncate such
  files to 8 bits) and grey and RGB JPEG. PNG is written here as chunks around
  imagecodecs' libdeflate stream (rows Up-filtered, see ``_png``), EXIF and ICC
  chunks included.
- Pillow reads the other PNG and JPEG kinds (palette, 1-4 bit, CMYK) and writes JPEG.
- tifffile reads and writes every TIFF (8/16-bit integer and float, grey or RGB), with
  imagecodecs for the compressions other than zlib (LZW, the default of many
  programs, among them).

Arrays are ``(rows, cols)`` for grey and ``(rows, cols, 3)`` for RGB, of dtype
``uint8``, ``uint16`` or ``float32``. An alpha channel is dropped on reading (a focus
stack has no use for it; a non-opaque alpha is logged). Palette, bilevel and CMYK
images are converted to RGB or grey by Pillow. The EXIF orientation tag is not
applied: pixels come back as stored, so every frame of a stack keeps one geometry
and the EXIF block copied to the output stays true.

Reading refuses hostile files before they do harm, with a ``FrameReadError`` naming
the file: from the header alone, before decoding, images of more pixels than
``convstack.limits.max_image_pixels()`` or more decoded bytes than the memory limit
(``FrameTooLargeError``) and progressive JPEGs of over 1000 scans; files cut short
(a PNG without IEND, a JPEG without its end-of-image marker, TIFF strips past the
end); multi-page TIFFs (a z-stack is read plane by plane by
:mod:`convstack.stack.zstack`, not as one frame); CMYK, palette and Lab TIFFs; empty
files, folders, link loops and images without pixels.

Writing goes through ``convstack._writer``, the one writer of every file the
project writes: atomic (a temporary file in the output folder takes the target's name
only once complete, so an interrupted run leaves no half-written image and no
temporary file), exclusive (an existing file is never replaced unless
``overwrite=True``, even one that another program creates meanwhile), and an input
frame is never written, ``overwrite`` or not.
"""

from __future__ import annotations

import glob
import io
import logging
import os
import re
import stat
import struct
import sys
import threading
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _writer
from ..limits import LimitError, check_memory, check_pixels
from .errors import FrameReadError, FrameTooLargeError, OutputError
from .raw import RAW_EXTENSIONS as _RAW_EXTENSIONS  # (read through LibRaw: the raw extra)

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageMetadata",
    "ReadAhead",
    "check_output",
    "decoded_ahead",
    "drop_read_ahead",
    "list_frames",
    "natural_key",
    "read_header",
    "read_ahead_bytes",
    "read_image",
    "read_metadata",
    "write_image",
]

logger = logging.getLogger(__name__)

#: File extensions read and written (lower case, with the dot).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
_EXIF_HEADER = b"Exif\x00\x00"
_TIFF_ICC_TAG = 34675
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic, BigTIFF


@dataclass(frozen=True)
class ImageMetadata:
    """Metadata carried from an input frame to an output.

    Attributes
    ----------
    exif : bytes or None
        Raw EXIF block as Pillow writes it (``b"Exif\\0\\0"`` followed by a TIFF header).
    icc_profile : bytes or None
        The embedded ICC colour profile.
    """

    exif: bytes | None = None
    icc_profile: bytes | None = None


# --------------------------------------------------------------------------- reading


def _png_header(data: bytes) -> tuple[int, int, int] | None:
    """Bit depth, colour type and interlace method from a PNG's IHDR chunk, or None if
    not a PNG."""
    if len(data) < 29 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return data[24], data[25], data[28]


def _check_size(label: str, rows: int, cols: int, samples: int, itemsize: int) -> None:
    """Refuse, before decoding, an image over the pixel limit or whose decoded samples
    (``rows * cols * samples * itemsize`` bytes) would not fit the memory limit."""
    try:
        check_pixels(rows, cols, f"{label}: the image")
        check_memory(
            rows * cols * samples * itemsize,
            f"{label}: decoding {rows} x {cols} pixels of {samples} x {8 * itemsize}-bit samples",
        )
    except LimitError as exc:
        raise FrameTooLargeError(str(exc)) from None


#: Samples a pixel of each PNG colour type decodes to (a palette expands to RGB).
_PNG_SAMPLES = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


def _check_png(label: str, data: bytes) -> None:
    """Refuse a PNG too large to decode (from IHDR) or cut short (its chunks, walked to
    IEND without reading them: a chunk that runs past the end of the file, or no IEND).

    libpng decodes a PNG that lacks only its IEND chunk without a word, and Pillow one
    cut inside its last IDAT chunk; a cut file has lost whatever followed.
    """
    cols, rows = struct.unpack(">II", data[16:24])
    depth, colour = data[24], data[25]
    _check_size(label, rows, cols, _PNG_SAMPLES.get(colour, 4), 2 if depth == 16 else 1)
    position = 8
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        end = position + 12 + length  # length, type, data, CRC
        if end > len(data):
            name = kind.decode("latin-1")
            raise FrameReadError(
                f"{label}: truncated: its {name} chunk at byte {position} needs {length + 12} "
                f"bytes, the file ends {len(data) - position} bytes after it starts."
            )
        if kind == b"IEND":
            return
        position = end
    raise FrameReadError(f"{label}: truncated: the file ends without an IEND chunk.")


#: A marker in JPEG entropy-coded data: 0xFF, then neither a stuffed 0x00, a restart
#: marker (0xD0-0xD7) nor a fill byte (0xFF).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
#: Start-of-frame markers (every coding process; 0xC4, 0xC8 and 0xCC are not frames).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


#: Most start-of-scan markers a JPEG may hold: progressive files have about 10 (libjpeg's
#: default script), but libjpeg decodes every scan, valid or not, over the whole image,
#: so a file of thousands of tiny scans costs many times a normal decode.
_JPEG_MAX_SCANS = 1000


def _check_scans(label: str, data: bytes) -> None:
    scans = data.count(b"\xff\xda")  # (0xFF is stuffed in entropy-coded data)
    if scans > _JPEG_MAX_SCANS:
        raise FrameReadError(
            f"{label}: {scans} scans, more than {_JPEG_MAX_SCANS} (a progressive JPEG has "
            "about 10); refused as a decoding bomb."
        )


def _check_jpeg(label: str, data: bytes) -> None:
    """Refuse a JPEG too large to decode (from its start-of-frame segment) or cut short.

    The segments are walked to the first scan, and on to the end-of-image marker
    unless the file ends with one; after each start-of-scan the entropy-coded data run
    to the next marker. libjpeg-turbo, as imagecodecs drives it, decodes a JPEG cut
    anywhere in its scan without an error (the rows it lacks come out grey), so a file
    without its end-of-image marker is refused here.
    """
    position = 2  # after SOI
    progressive = False
    while True:
        position = data.find(b"\xff", position)  # (libjpeg skips stray bytes too)
        while 0 <= position < len(data) - 1 and data[position + 1] == 0xFF:
            position += 1  # fill bytes before a marker
        if position < 0 or position + 2 > len(data):
            break
        marker = data[position + 1]
        if marker == 0xD9:  # EOI
            return
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length
            position += 2
            continue
        if position + 4 > len(data):
            break
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        end = position + 2 + length
        if end > len(data):
            break
        if marker in _JPEG_SOF and length >= 8:
            rows, cols = struct.unpack(">HH", data[position + 5 : position + 9])
            components = data[position + 9]
            _check_size(label, rows, cols, max(1, min(components, 4)), 1)  # (CMYK: 4)
            progressive = marker in (0xC2, 0xC6, 0xCA, 0xCE)
        if marker == 0xDA and progressive:  # (sequential files refuse repeated scans)
            _check_scans(label, data)
            progressive = False  # counted
        if marker == 0xDA:  # SOS: the entropy-coded data follow, up to the next marker
            if data.endswith(b"\xff\xd9"):  # cut files do not end so (0xFF is stuffed)
                return
            found = _JPEG_MARKER.search(data, end)
            if found is None:
                break
            end = found.start()
        position = end
    raise FrameReadError(
        f"{label}: truncated: the JPEG data end without an end-of-image marker "
        f"(after {len(data)} bytes); the missing part would decode as grey."
    )


def _jpeg_shape(head: bytes) -> tuple[int, ...] | None:
    """(rows, cols[, channels]) from a JPEG's start-of-frame segment, or None (the
    segments walked from SOI; :func:`_check_jpeg` walks them again, defensively, when
    the whole file is read)."""
    position = 2
    while position + 9 < len(head) and head[position] == 0xFF:
        marker = head[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        length = int.from_bytes(head[position + 2 : position + 4], "big")
        if marker in _JPEG_SOF:
            rows = int.from_bytes(head[position + 5 : position + 7], "big")
            cols = int.from_bytes(head[position + 7 : position + 9], "big")
            channels = head[position + 9]
            return (rows, cols) if channels == 1 else (rows, cols, channels)
        position += 2 + length
    return None


def read_header(
    source: str | os.PathLike[str] | bytes,
) -> tuple[tuple[int, ...], np.dtype[Any]] | None:
    """An image's (shape, dtype) from its header (PNG, JPEG, TIFF), without decoding
    pixels; None where the header does not say (another format, unreadable).

    ``source``: a path, or the file's bytes. A lone channel kept or an alpha dropped on
    reading are not told apart: the shape is an upper bound of what
    :func:`read_image` gives.
    """
    try:
        if isinstance(source, bytes):
            head = source[: 1 << 16]
        else:
            with open(source, "rb") as fh:
                head = fh.read(1 << 16)
        header = _png_header(head)
        if header is not None:
            cols, rows = struct.unpack(">II", head[16:24])
            samples = _PNG_SAMPLES.get(header[1], 4)
            dtype = np.dtype(np.uint16 if header[0] == 16 else np.uint8)
            return ((rows, cols) if samples == 1 else (rows, cols, samples)), dtype
        if head.startswith(b"\xff\xd8\xff"):
            shape = _jpeg_shape(head)
            return None if shape is None else (shape, np.dtype(np.uint8))
        if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            import tifffile

            with tifffile.TiffFile(
                io.BytesIO(source) if isinstance(source, bytes) else source
            ) as tif:
                page = tif.pages.first
                rows, cols = int(page.imagelength), int(page.imagewidth)
                samples = int(page.samplesperpixel)
                found = page.dtype
                if found is None:
                    return None
                return ((rows, cols) if samples == 1 else (rows, cols, samples)), np.dtype(found)
    except Exception:  # a damaged header raises many kinds (tifffile: TypeError, ...)
        return None
    return None


def _for_libpng(depth: int, colour: int, interlace: int) -> bool:
    """Whether imagecodecs' libpng reads a PNG of this IHDR: grey or RGB, 8 or 16 bits,
    with or without alpha. Pillow reads the rest (palette, 1-4 bit) and the interlaced
    files it can hold (all but 16-bit colour or alpha): libpng, as imagecodecs drives
    it, prints a warning for each interlaced file."""
    if depth not in (8, 16) or colour not in (0, 2, 4, 6):
        return False
    return interlace == 0 or (depth == 16 and colour != 0)


def _read_png(path: str, data: bytes, depth: int) -> NDArray[Any]:
    """A PNG of ``depth`` (8 or 16) bits a sample, grey or RGB, with or without alpha
    (no palette), through imagecodecs' libpng.

    Pillow (13.x) cannot hold 16-bit colour (no 16-bit RGB mode: it would silently
    truncate such files to 8 bits), and pypng undoes the rows' filters in Python (about
    20x slower); 8-bit frames read faster than through Pillow too.
    """
    import imagecodecs  # imported here, as tifffile below: most runs never need it

    image = _inflated_png(path, data) if _compiled_png() else None
    if image is None:
        image = np.asarray(imagecodecs.png_decode(data))
    dtype, opaque = (np.uint16, 65535) if depth == 16 else (np.uint8, 255)
    if image.dtype != dtype:
        raise FrameReadError(f"{path}: a {depth}-bit PNG decoded as {image.dtype}.")
    if image.ndim == 3 and image.shape[-1] in (2, 4):  # grey + alpha, RGB + alpha
        _note_alpha(path, image[..., -1], opaque)
        image = image[..., :-1]
    return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image


def _compiled_png() -> bool:
    """Whether this thread reads PNG with :func:`_inflated_png`: all but the command's
    read-ahead, which decodes while numba starts (it would wait for numba there), until
    the command has loaded the kernel (``convstack._preload.load_fuse_kernels``)."""
    if threading.current_thread().name != _READ_AHEAD_THREAD:
        return True
    kernels = sys.modules.get("convstack._k_png")
    return bool(getattr(getattr(kernels, "unfilter_rows", None), "signatures", None))


def _inflated_png(path: str, data: bytes) -> NDArray[Any] | None:
    """A non-interlaced 8- or 16-bit grey or RGB(A) PNG (checked whole by
    :func:`_check_png`), inflated by imagecodecs' libdeflate (which checks the zlib
    stream's Adler-32; about 2.5x zlib's speed) and its rows' filters undone by a
    compiled loop (:func:`convstack._k_png.unfilter_rows`): the pixels libpng gives,
    at about 0.6x its time on the bug frames. None for other PNGs, for those with a
    transparent colour (tRNS) and for data that does not inflate into the rows
    (damaged, or longer than the rows): libpng reads those, or says why not."""
    import imagecodecs

    cols, rows = struct.unpack(">II", data[16:24])
    depth, colour, interlace = data[24], data[25], data[28]
    if interlace != 0 or depth not in (8, 16) or colour not in (0, 2, 4, 6):
        return None
    samples = _PNG_SAMPLES[colour]
    bpp = samples * depth // 8
    stride = cols * bpp
    parts = []
    position = 8
    while position + 8 <= len(data):  # (every chunk is whole: _check_png)
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        if kind == b"IDAT":
            parts.append(data[position + 8 : position + 8 + length])
        elif kind == b"tRNS":  # a transparent colour: libpng makes it alpha, noted
            return None
        elif kind == b"IEND":
            break
        position += 12 + length
    size = rows * (stride + 1)
    try:
        inflated = np.frombuffer(imagecodecs.deflate_decode(b"".join(parts), out=size), np.uint8)
    except imagecodecs.DeflateError:  # damaged, or more data than rows: libpng judges
        return None  # (it reads surplus data with a warning, as Pillow does)
    if inflated.size != size:
        raise FrameReadError(
            f"{path}: its image data inflate to {inflated.size} bytes; {rows} rows of "
            f"{cols} pixels need {size}."
        )
    from .. import _k_png

    out = np.empty((rows, stride), np.uint8)
    bad = _k_png.unfilter_rows(inflated, bpp, out)
    if bad >= 0:
        kind = inflated[bad * (stride + 1)]
        raise FrameReadError(f"{path}: row {bad} has filter type {kind}; PNG's are 0-4.")
    if depth == 16:  # big-endian samples
        return out.view(">u2").astype(np.uint16).reshape(rows, cols, samples)
    return out.reshape(rows, cols, samples)


def _read_jpeg(data: bytes) -> NDArray[Any] | None:
    """A grey or RGB JPEG through imagecodecs' libjpeg-turbo (about 2.5x faster than
    Pillow, the same pixels); None for other colour spaces
    (CMYK, YCCK), which Pillow converts."""
    import imagecodecs

    image = np.asarray(imagecodecs.jpeg8_decode(data))
    if image.dtype != np.uint8 or not (image.ndim == 2 or image.shape[-1] == 3):
        return None
    return image


def _note_alpha(path: str, alpha: NDArray[Any], opaque: int) -> None:
    if np.any(alpha != opaque):
        logger.warning("%s: alpha channel is not opaque; it is ignored.", path)


def _read_pillow(path: str, content: bytes) -> NDArray[Any]:
    from PIL import Image  # imported here: PNG, JPEG and TIFF frames rarely need it

    try:
        opened = Image.open(io.BytesIO(content))
    except Image.DecompressionBombError as exc:  # Pillow's own limit, at twice its warning
        raise FrameTooLargeError(f"{path}: {exc}") from None
    except Image.UnidentifiedImageError:  # (its message names the BytesIO object)
        raise FrameReadError(
            f"{path}: cannot read the image (not PNG, JPEG, TIFF or another format Pillow "
            f"reads; it starts with {content[:8]!r})."
        ) from None
    with opened as im:
        cols, rows = im.size
        wide = 4 if im.mode in ("I", "F") else 2 if im.mode.startswith("I;16") else 1
        grey = im.mode in ("1", "L", "I", "F") or im.mode.startswith("I;16")
        _check_size(path, rows, cols, 1 if grey else 4, wide)  # (palettes go through RGBA)
        im.load()
        mode = im.mode
        if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
            return np.asarray(im, dtype=np.uint16).copy()
        if mode == "F":
            return np.asarray(im, dtype=np.float32).copy()
        if mode == "I":
            data = np.asarray(im)
            if data.min() >= 0 and data.max() <= 65535:
                return data.astype(np.uint16)
            raise FrameReadError(f"{path}: 32-bit integer images are not supported.")
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA" if mode != "LA" else "LA")
            data = np.asarray(rgba)
            _note_alpha(path, data[..., -1], 255)
            return data[..., :-1].copy() if mode != "LA" else data[..., 0].copy()
        if mode == "L":
            return np.asarray(im, dtype=np.uint8).copy()
        if mode == "1":
            return np.asarray(im.convert("L"), dtype=np.uint8).copy()
        if mode == "P":
            converted = im.convert("RGB")
        elif mode != "RGB":
            converted = im.convert("RGB")  # CMYK, YCbCr, LAB, ...
        else:
            converted = im
        return np.asarray(converted, dtype=np.uint8).copy()


#: TIFF photometric interpretations read: min-is-white (inverted), min-is-black, RGB and
#: YCbCr (which tifffile's JPEG decoding turns into RGB). Palette, CMYK and Lab would
#: come back as indices or as colour channels misread as RGB (and alpha).
_TIFF_PHOTOMETRICS = (0, 1, 2, 6)


def _tiff_pages(tif: Any) -> int:
    """The images in a TIFF: its pages (reduced-resolution ones, previews, not counted),
    the images ImageJ keeps contiguous after one page, and the slices of a volume page."""
    count = len(tif.pages)
    if count > 1:
        count = sum(1 for page in tif.pages if not getattr(page, "is_reduced", False))
    if tif.is_imagej:
        count = max(count, int((tif.imagej_metadata or {}).get("images", 1)))
    return max(count, int(getattr(tif.pages.first, "imagedepth", 1)))


def _read_tiff(path: str, source: Path | BinaryIO) -> NDArray[Any]:
    import tifffile

    with tifffile.TiffFile(source) as tif:
        pages = _tiff_pages(tif)
        if pages > 1:
            raise FrameReadError(
                f"{path}: a multi-page TIFF ({pages} pages), not one frame: give the file "
                "alone to fuse (`convstack fuse FILE`, fuse(FILE)) to stack its planes, or "
                "read it with convstack.stack.zstack.open_zstack."
            )
        page = tif.pages.first
        _check_size(
            path,
            int(page.imagelength),
            int(page.imagewidth),
            int(page.samplesperpixel),
            max(1, -(-int(max(page.bitspersample, 1)) // 8)),
        )
        size = tif.filehandle.size
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
            if offset + count > size:
                raise FrameReadError(
                    f"{path}: truncated: its image data run to byte {offset + count}, the "
                    f"file ends at {size}."
                )
        photometric = int(page.photometric)
        if photometric not in _TIFF_PHOTOMETRICS:
            kind = getattr(page.photometric, "name", photometric)
            raise FrameReadError(
                f"{path}: a TIFF of photometric interpretation {kind} (not grey or RGB); "
                "convert it to grey or RGB."
            )
        data = page.asarray()
        axes = page.axes
    if photometric == 0 and data.dtype.kind in "bu":  # min-is-white: 0 is white
        data = ~data if data.dtype.kind == "u" else np.logical_not(data)
    if axes.startswith("S") and data.ndim == 3:  # planar configuration: samples first
        data = np.moveaxis(data, 0, -1)
    data = np.squeeze(data) if data.ndim > 3 else data
    if data.ndim == 3:
        if data.shape[-1] == 1:
            data = data[..., 0]
        elif data.shape[-1] in (2, 4):  # grey + alpha, RGB + alpha
            opaque = np.iinfo(data.dtype).max if data.dtype.kind in "ui" else 1
            _note_alpha(path, data[..., -1], opaque)
            data = data[..., :-1]
            data = data[..., 0] if data.shape[-1] == 1 else data
        elif data.shape[-1] != 3:
            raise FrameReadError(f"{path}: TIFF with {data.shape[-1]} samples per pixel.")
    if data.ndim not in (2, 3):
        raise FrameReadError(f"{path}: TIFF of shape {data.shape} is not a 2-D image.")
    if data.dtype == np.bool_:
        return data.astype(np.uint8) * np.uint8(255)
    if data.dtype in (np.uint8, np.uint16):
        return data
    if data.dtype.kind == "f":
        return data.astype(np.float32)
    raise FrameReadError(f"{path}: TIFF sample type {data.dtype} is not supported.")


def _label(source: Any, name: str | None) -> str:
    """How messages name ``source``: ``name``, the path, or a file object's ``name``."""
    if name is not None:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(Path(source))
    own = getattr(source, "name", None)
    if isinstance(own, (str, os.PathLike)):
        return os.fspath(own)
    return f"in-memory image ({type(source).__name__})"


def _regular_file(file: Path, label: str) -> int:
    """The size of ``file``, refusing what is not a regular file one can open."""
    try:
        info = file.stat()
    except FileNotFoundError:
        raise FrameReadError(f"{label}: no such file.") from None
    except OSError as exc:  # a symbolic-link loop, a name too long, no permission ...
        raise FrameReadError(f"{label}: cannot open it ({exc.strerror or exc}).") from None
    if stat.S_ISDIR(info.st_mode):
        raise FrameReadError(f"{label}: is a folder, not an image file.")
    if not stat.S_ISREG(info.st_mode):
        raise FrameReadError(f"{label}: is not a regular file.")
    return info.st_size


def _decode(label: str, content: bytes) -> NDArray[Any]:
    """The image in ``content``, by its signature; sizes and completeness checked first."""
    if content.startswith(_TIFF_SIGNATURES):
        return _read_tiff(label, io.BytesIO(content))
    header = _png_header(content)
    if header is not None:
        _check_png(label, content)
        if _for_libpng(*header):
            return _read_png(label, content, header[0])
    elif content.startswith(_JPEG_SIGNATURE):
        _check_jpeg(label, content)
        image = _read_jpeg(content)
        if image is not None:
            return image
    return _read_pillow(label, content)


def _checked(label: str, image: NDArray[Any]) -> NDArray[Any]:
    """Refuse a decoded image without pixels or of other than 1 or 3 channels."""
    if image.ndim == 3 and image.shape[-1] != 3:
        raise FrameReadError(
            f"{label}: {image.shape[-1]} channels per pixel; frames must be grey or RGB."
        )
    if image.ndim not in (2, 3) or image.size == 0:
        raise FrameReadError(f"{label}: an image of shape {image.shape} has no pixels to stack.")
    return image


#: Frames decoded ahead of their reading by :class:`ReadAhead`, by file identity (path,
#: inode, size, modification time): each taken, once, by :func:`read_image`.
_decoded_ahead: dict[tuple[str, int, int, int], NDArray[Any]] = {}


def _identity(path: str | os.PathLike[str]) -> tuple[str, int, int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns


#: The name of :class:`ReadAhead`'s thread.
_READ_AHEAD_THREAD = "convstack-read-ahead"


class ReadAhead:
    """Decode image files in a background thread, in the order given, while the caller
    does other work; :func:`read_image` then takes each one decoded (once) rather than
    decoding it again.

    For the ``convstack`` command: its frames decode while numba starts (numba's import
    holds the GIL, the decoders release it), and a reader process forked later has them.
    Only PNG, JPEG and TIFF files whose header gives their size; it stops at the first
    file that would take the decoded bytes over ``budget``, or that does not read (its
    reader reports that).

    Parameters
    ----------
    paths : sequence of path-like
        The files, in the order they will be read.
    budget : int
        The most bytes of decoded pixels to hold.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]], budget: int) -> None:
        self._stop = threading.Event()
        self._complete = False
        self._thread = threading.Thread(
            target=self._decode, args=(list(paths), budget), name=_READ_AHEAD_THREAD
        )
        self._thread.daemon = True
        self._thread.start()

    def _decode(self, paths: list[str | os.PathLike[str]], budget: int) -> None:
        for path in paths:
            found = read_header(path)
            if self._stop.is_set() or found is None:
                return
            if Path(path).suffix.lower() in _RAW_EXTENSIONS:
                return
            budget -= int(np.prod(found[0], dtype=np.int64)) * found[1].itemsize
            key = _identity(path)
            if budget < 0 or key is None:
                return
            try:
                image = read_image(path)
            except Exception:  # read again where it is needed, and reported there
                return
            _decoded_ahead[key] = image
        self._complete = True

    def complete(self) -> bool:
        """Whether every file is decoded already (none is left for its reader)."""
        return self._complete

    def stop(self) -> None:
        """Decode no more files (the one in hand is finished); return once the thread
        has ended. Call it before anything forks."""
        self._stop.set()
        self._thread.join()


def drop_read_ahead() -> None:
    """Forget the frames decoded ahead and not read (their memory is freed)."""
    _decoded_ahead.clear()


def decoded_ahead(path: Any) -> bool:
    """Whether :func:`read_image` would hand ``path`` over decoded already (a
    :class:`ReadAhead` decoded it and it was not read since): reading it costs nothing."""
    if not _decoded_ahead or not isinstance(path, (str, os.PathLike)):
        return False
    key = _identity(path)
    return key is not None and key in _decoded_ahead


def read_ahead_bytes() -> int:
    """The bytes of the frames decoded ahead and not read yet: memory that a fuse holds
    until it reads them, which its memory plan counts (``_schedule.plan_memory``)."""
    return sum(image.nbytes for image in list(_decoded_ahead.values()))


def read_image(path: str | os.PathLike[str] | BinaryIO, *, name: str | None = None) -> NDArray[Any]:
    """Read an image file into an array.

    Parameters
    ----------
    path : str, path-like or binary file object
        A PNG, JPEG or TIFF file (the format is found from the content; a ``.tif`` or
        ``.tiff`` extension picks TIFF handling), a camera RAW file by its extension
        (``.dng``, ``.nef``, ``.cr2``, ...: :func:`convstack.stack.raw.read_raw`, 16-bit
        linear RGB; the ``raw`` extra), or a file object open for reading
        bytes (``io.BytesIO``, ``open(..., "rb")``), read from where it stands.
    name : str, optional
        How error messages name the image (default: the path, or the file object's
        ``name``, or "in-memory image").

    Returns
    -------
    ndarray
        ``(rows, cols)`` grey or ``(rows, cols, 3)`` RGB, dtype ``uint8``, ``uint16``
        or ``float32``, exactly as stored (16-bit stays 16-bit). Alpha is dropped.
        A file that :class:`ReadAhead` decoded is handed over from there, once.

    Raises
    ------
    FrameReadError
        If the file is missing, empty, not a regular file, unreadable, truncated,
        corrupt, a multi-page TIFF, or of an unsupported kind; the message names it.
    FrameTooLargeError
        If its header claims more pixels than ``convstack.limits.max_image_pixels()``
        or more decoded bytes than the memory limit (checked before decoding; a
        ``FrameReadError`` and a ``LimitError``).
    TypeError
        If ``path`` is neither a path nor a file object giving bytes.
    """
    label = _label(path, name)
    if not isinstance(path, (str, os.PathLike)) and not callable(getattr(path, "read", None)):
        raise TypeError(
            f"`path` must be a path or a binary file object; got {type(path).__name__}."
        )
    if _decoded_ahead and isinstance(path, (str, os.PathLike)):
        key = _identity(path)
        ahead = _decoded_ahead.pop(key, None) if key is not None else None
        if ahead is not None:
            return ahead
    not_bytes: TypeError | None = None  # ours; the decoders' TypeErrors are read errors
    try:
        if isinstance(path, (str, os.PathLike)):
            file = Path(path)
            if _regular_file(file, label) == 0:
                raise FrameReadError(f"{label}: the file is empty (0 bytes).")
            if file.suffix.lower() in _RAW_EXTENSIONS:  # camera RAW, through LibRaw
                from .raw import read_raw

                return _checked(label, read_raw(file, name=label))
            if file.suffix.lower() in (".tif", ".tiff"):
                with open(file, "rb") as fh:
                    head = fh.read(4)
                if head.startswith(_TIFF_SIGNATURES):  # (tifffile reads what it needs)
                    return _checked(label, _read_tiff(label, file))
            content = file.read_bytes()  # any other file, by its content
        else:
            content = path.read()
            if not isinstance(content, bytes):
                not_bytes = TypeError(
                    f"`path` must be a binary file object (giving bytes); {label} gave "
                    f"{type(content).__name__}."
                )
                raise not_bytes
            if not content:
                raise FrameReadError(f"{label}: no data (0 bytes).")
        return _checked(label, _decode(label, content))
    except FrameReadError:
        raise
    except TypeError as exc:
        if exc is not_bytes:
            raise
        raise FrameReadError(f"{label}: cannot read the image ({exc}).") from exc
    except OSError as exc:
        if exc.strerror:  # the file system's (the decoders' own OSErrors have none)
            raise FrameReadError(f"{label}: cannot read it ({exc.strerror}).") from exc
        raise FrameReadError(f"{label}: cannot read the image ({exc}).") from exc
    except Exception as exc:  # decoders raise many kinds (zlib.error, PngError, ...)
        raise FrameReadError(f"{label}: cannot read the image ({exc}).") from exc


def read_metadata(path: str | os.PathLike[str]) -> ImageMetadata:
    """Read the EXIF block and the ICC profile of an image file.

    Returns empty fields where the file has none or its format cannot be parsed for
    them; raises ``FrameReadError`` only for a missing file.
    """
    file = Path(path)
    if not file.is_file():
        raise FrameReadError(f"{file}: no such file.")
    exif: bytes | None = None
    icc: bytes | None = None
    try:
        with open(file, "rb") as fh:
            head = fh.read(32)
        if _png_header(head) is not None:
            return _png_metadata(file.read_bytes())
        if head.startswith(_JPEG_SIGNATURE):
            found = _jpeg_metadata(file.read_bytes())
            if found is not None:
                return found
        from PIL import Image  # imported here: PNG and JPEG stacks never need it

        with Image.open(file) as im:
            icc = im.info.get("icc_profile") or None
            raw = im.info.get("exif")
            if isinstance(raw, bytes) and raw:
                exif = raw if raw.startswith(_EXIF_HEADER) else _EXIF_HEADER + raw
            else:
                tags = im.getexif()
                exif = tags.tobytes() if len(tags) else None
    except Exception:  # unreadable metadata is simply absent
        pass
    if icc is None and file.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            with tifffile.TiffFile(file) as tif:
                tag = tif.pages.first.tags.get(_TIFF_ICC_TAG)
                if tag is not None:
                    icc = bytes(tag.value)
        except (OSError, ValueError, tifffile.TiffFileError):
            pass
    return ImageMetadata(exif=exif, icc_profile=icc)


def _png_metadata(data: bytes) -> ImageMetadata:
    """The eXIf and iCCP chunks of a PNG, found by walking its chunks (pypng).

    Pillow's ``getexif`` would decode the whole image to look for an eXIf chunk after
    the image data, and importing Pillow would cost every start-up.
    """
    import png  # pypng

    exif: bytes | None = None
    icc: bytes | None = None
    for kind, chunk in png.Reader(bytes=data).chunks():
        if kind == b"eXIf" and chunk:
            exif = _EXIF_HEADER + chunk
        elif kind == b"iCCP":  # profile name, NUL, compression method 0, zlib data
            name_end = chunk.index(b"\x00")
            icc = zlib.decompress(chunk[name_end + 2 :]) or None
    return ImageMetadata(exif=exif, icc_profile=icc)


def _jpeg_metadata(data: bytes) -> ImageMetadata | None:
    """The EXIF block (the APP1 segments that start ``Exif\\0\\0``, joined) and the ICC
    profile (the APP2 ``ICC_PROFILE`` segments, joined in their sequence order) of a
    JPEG, found by walking its segments up to the first scan, as Pillow reads them;
    None where the walk meets what it does not expect (Pillow reads that file).

    Importing Pillow and its JPEG plugin would cost every ``convstack fuse`` of JPEG
    frames more than the walk, for two byte strings.
    """
    exif: bytes | None = None
    icc_parts: list[bytes] = []
    position = 2  # after SOI
    while True:
        if position + 4 > len(data) or data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte before the marker
            position += 1
            continue
        if marker in (0xDA, 0xD9):  # the first scan, or the end: no metadata after it
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        payload = data[position + 4 : position + 2 + length]
        if length < 2 or len(payload) != length - 2:
            return None
        if marker == 0xE1 and payload.startswith(_EXIF_HEADER):  # (more: extended EXIF)
            exif = payload if exif is None else exif + payload[len(_EXIF_HEADER) :]
        elif marker == 0xE2 and payload.startswith(b"ICC_PROFILE\x00"):
            if len(payload) < 14:  # no sequence number and count
                return None
            icc_parts.append(payload)
        position += 2 + length
    icc = None
    if icc_parts:  # (sequence number, count, data) each; an incomplete set is dropped
        icc_parts.sort()
        if icc_parts[0][13] == len(icc_parts):
            icc = b"".join(part[14:] for part in icc_parts) or None
    return ImageMetadata(exif=exif, icc_profile=icc)


# --------------------------------------------------------------------------- writing


def _check_image(image: ArrayLike) -> NDArray[Any]:
    array = np.asarray(image)
    if array.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise TypeError(
            f"`image` must be uint8, uint16, float32 or float64; got dtype {array.dtype}."
        )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3) or array.size == 0:
        raise ValueError(
            f"`image` must have shape (rows, cols) or (rows, cols, 3); got {array.shape}."
        )
    return array


#: zlib level of PNG and TIFF outputs: level 1 encodes 3-4x faster than level 6 for
#: about 1 % more bytes on photographs, and a stack's write is a visible share of its
#: wall time.
ZLIB_LEVEL = 1


def _to_uint8(array: NDArray[Any], path: Path) -> NDArray[Any]:
    logger.warning("%s: JPEG holds 8 bits per sample; 16-bit data is rounded to 8 bits.", path)
    return np.round(array.astype(np.float64) / 257.0).astype(np.uint8)


def _png(array: NDArray[Any], meta: ImageMetadata | None) -> bytes:
    """``array`` (uint8 or uint16, grey or RGB) as a PNG, with ``meta``'s EXIF and ICC.

    The chunks are written here, the compression is imagecodecs' libdeflate at
    :data:`ZLIB_LEVEL`: every row takes the Up filter (its difference from the row
    above, one NumPy subtraction; 16-bit samples big-endian first): about half the
    time of libpng's adaptive filters at the same level for 2-3 % more bytes, and a
    stack's write is a visible share of a ``convstack fuse``. The iCCP and
    eXIf chunks go after IHDR, before the image data.
    """
    import imagecodecs  # imported here: most runs write one image, at their end

    rows = array.shape[0]
    cols = array.shape[1]
    samples = np.ascontiguousarray(array, dtype=">u2" if array.dtype == np.uint16 else np.uint8)
    scanlines = samples.reshape(rows, -1).view(np.uint8)
    filtered = np.empty((rows, scanlines.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = 2  # Up (the first row's "row above" is zeros: its own bytes)
    filtered[0, 1:] = scanlines[0]
    np.subtract(scanlines[1:], scanlines[:-1], out=filtered[1:, 1:])  # modulo 256
    depth = 16 if array.dtype == np.uint16 else 8
    colour = 2 if array.ndim == 3 else 0  # RGB, grey
    chunks = [(b"IHDR", struct.pack(">IIBBBBB", cols, rows, depth, colour, 0, 0, 0))]
    if meta is not None and meta.icc_profile:
        chunks.append((b"iCCP", b"ICC profile\x00\x00" + zlib.compress(meta.icc_profile)))
    if meta is not None and meta.exif:
        raw = meta.exif[len(_EXIF_HEADER) :] if meta.exif.startswith(_EXIF_HEADER) else meta.exif
        chunks.append((b"eXIf", raw))
    chunks.append(
        (b"IDAT", bytes(imagecodecs.deflate_encode(filtered.tobytes(), level=ZLIB_LEVEL)))
    )
    chunks.append((b"IEND", b""))
    out = [_PNG_SIGNATURE]
    for kind, body in chunks:
        out += [struct.pack(">I", len(body)), kind, body]
        out.append(struct.pack(">I", zlib.crc32(body, zlib.crc32(kind))))
    return b"".join(out)


def _encode(
    array: NDArray[Any], fmt: str, path: Path, meta: ImageMetadata | None, quality: int
) -> bytes:
    exif = meta.exif if meta else None
    icc = meta.icc_profile if meta else None
    if fmt == "TIFF":
        import tifffile

        if array.dtype == np.float64:
            array = array.astype(np.float32)
        buffer = io.BytesIO()
        if exif:
            logger.info("%s: EXIF is not written to TIFF outputs (ICC is).", path)
        tifffile.imwrite(
            buffer,
            array,
            photometric="rgb" if array.ndim == 3 else "minisblack",
            compression="zlib",
            compressionargs={"level": ZLIB_LEVEL},
            # samples as differences from their left neighbour (TIFF predictor 2 for
            # integers, 3 for floats, through imagecodecs): smaller files (a third less
            # on photographs) written in about half the time
            predictor=True,
            iccprofile=icc,
            metadata=None,
        )
        return buffer.getvalue()
    if array.dtype.kind == "f":
        raise TypeError(
            f"`image` of dtype {array.dtype} can only be written to TIFF; "
            f"convert it to uint8 or uint16 to write {path.name}."
        )
    if fmt == "JPEG" and array.dtype == np.uint16:
        array = _to_uint8(array, path)
    if fmt == "PNG":
        return _png(array, meta)
    from PIL import Image  # imported here: only JPEG is written through Pillow

    image = Image.fromarray(array)
    options: dict[str, Any] = {"quality": quality}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def check_output(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Refuse an output path that :func:`write_image` could not write; return it as a Path.

    Parameters
    ----------
    path : str or path-like
        The image to be written.
    overwrite : bool
        Whether an existing file may be replaced.
    inputs : iterable of paths
        Files that ``path`` may never be (the frames it is made from), whatever
        ``overwrite`` says; also through a hard or symbolic link.

    Raises
    ------
    OutputError
        Unknown extension, missing or unwritable output folder, a folder at ``path``,
        an existing file without ``overwrite``, or one of ``inputs``.
    """
    file = Path(path)
    if file.suffix.lower() not in _FORMATS:
        raise OutputError(
            f"{file}: unknown image extension {file.suffix!r}; "
            f"use one of {', '.join(IMAGE_EXTENSIONS)}."
        )
    try:
        return _writer.check_target(file, overwrite=overwrite, inputs=inputs)
    except _writer.OutputRefusedError as exc:
        raise OutputError(str(exc)) from None


def write_image(
    path: str | os.PathLike[str],
    image: ArrayLike,
    *,
    overwrite: bool = False,
    metadata: ImageMetadata | None = None,
    quality: int = 95,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Write an image atomically, keeping its bit depth.

    Parameters
    ----------
    path : str or path-like
        Target file; the format comes from the extension: ``.png``, ``.jpg``/``.jpeg``,
        ``.tif``/``.tiff``.
    image : array_like
        ``(rows, cols)`` or ``(rows, cols, 3)`` of dtype uint8, uint16, float32 or
        float64. uint16 gives 16-bit PNG/TIFF; JPEG holds 8 bits only, so 16-bit data
        is rounded to 8 bits (``round(x / 257)``) and a warning is logged. Floats can
        only go to TIFF (written as float32).
    overwrite : bool
        Replace an existing file. Default False: an existing file is an error.
    metadata : ImageMetadata, optional
        EXIF and ICC to embed: PNG and JPEG keep both, TIFF keeps the ICC profile only
        (tifffile does not write an EXIF directory; logged).
    quality : int
        JPEG quality, 1 to 100.
    inputs : iterable of paths
        Files that ``path`` may never be (the frames the image is made from), whatever
        ``overwrite`` says; also through a hard or symbolic link.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    OutputError
        Unknown extension, missing or unwritable output folder, an existing file
        without ``overwrite`` (also one that another program created while this one
        was writing), or one of ``inputs``.
    TypeError, ValueError
        An image of unsupported dtype or shape.

    Notes
    -----
    Written by ``convstack._writer``: the data go to a temporary file in the same
    folder, flushed to disk, which then takes the name ``path`` in one atomic step
    (``os.replace`` with ``overwrite``; else a hard link, which fails if the name
    exists); on any error or interrupt the temporary file is removed.
    """
    file = check_output(path, overwrite=overwrite, inputs=inputs)
    fmt = _FORMATS[file.suffix.lower()]
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"`quality` must lie in [1, 100]; got {quality!r}.")
    array = _check_image(image)
    data = _encode(array, fmt, file, metadata, int(quality))
    try:
        return _writer.write_bytes(file, data, overwrite=overwrite, inputs=inputs)
    except _writer.OutputRefusedError as exc:  # (another program took the name meanwhile)
        raise OutputError(str(exc)) from None


# --------------------------------------------------------------------------- listing


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders digit runs by value: ``"frame2" < "frame10"``.

    >>> sorted(["f10.png", "f2.png", "F1.png"], key=natural_key)
    ['F1.png', 'f2.png', 'f10.png']
    """
    parts = re.split(r"(\d+)", text)
    folded = tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part.casefold()) for part in parts if part
    )
    return (folded, text)


def _path_key(path: Path) -> tuple[Any, ...]:
    return (natural_key(str(path.parent)), natural_key(path.name))


def _is_image(path: Path) -> bool:
    known = path.suffix.lower() in IMAGE_EXTENSIONS or path.suffix.lower() in _RAW_EXTENSIONS
    return path.is_file() and known and not path.name.startswith(".")


def list_frames(inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[Path]:
    """Expand files, folders and globs into the list of frame files.

    Parameters
    ----------
    inputs : sequence of str or path-like
        Each entry is an image file, a folder (its image files, not recursive, hidden
        files skipped) or a glob pattern (``*``, ``?``, ``[...]``).

    Returns
    -------
    list of Path
        Every frame once, in natural name order (``frame2`` before ``frame10``;
        folder first, then file name), which is taken as the focus order.

    Raises
    ------
    FrameReadError
        If an entry names nothing, or a folder or pattern holds no image files.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if len(inputs) == 0:
        raise FrameReadError("`inputs` must name at least one file, folder or pattern; got none.")
    found: dict[Path, None] = {}
    for entry in inputs:
        text = os.fspath(entry)
        path = Path(text).expanduser()
        if path.is_dir():
            matches = [p for p in path.iterdir() if _is_image(p)]
            if not matches:
                raise FrameReadError(f"{text}: folder holds no image files ({_ext_list()}).")
        elif path.is_file():
            matches = [path]
        elif glob.has_magic(text):
            matches = [Path(p) for p in glob.glob(os.path.expanduser(text)) if _is_image(Path(p))]
            if not matches:
                raise FrameReadError(f"{text}: pattern matched no image files ({_ext_list()}).")
        elif os.path.lexists(path):  # a symbolic link to nowhere, or a loop of them
            raise FrameReadError(f"{text}: cannot open it ({_stat_error(path)}).")
        else:
            raise FrameReadError(f"{text}: no such file or folder.")
        for match in matches:
            found.setdefault(match, None)
    return sorted(found, key=_path_key)


def _stat_error(path: Path) -> str:
    try:
        path.stat()
    except OSError as exc:
        return str(exc.strerror or exc)
    return "not a file or folder"


def _ext_list() -> str:
    return ", ".join(IMAGE_EXTENSIONS)
