"""Frames with an alpha channel (RGBA, grey + alpha): the fused image keeps one.

The colour channels are fused as always (:func:`convstack.stack.fuse`, alpha left out);
the output's alpha is the *union of the frames' coverage*: each frame's alpha, put on
the reference grid with the frame's own transform (bilinear; outside the frame:
uncovered), and the per-pixel maximum over the frames. A pixel that some frame covers is
covered in the result (3-D scanning and photogrammetry pipelines mask the background
this way). Frames are read a second time for their alpha, one at a time, so memory
stays flat. Outputs with alpha are PNG (8 or 16-bit) or TIFF (with an extra sample,
unassociated alpha, or float32); JPEG holds no alpha.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _writer
from .errors import FrameReadError, OutputError
from .pipeline import FuseResult, fuse

__all__ = ["encode_with_alpha", "fuse_with_alpha", "read_alpha", "write_with_alpha"]


def read_alpha(path: str | os.PathLike[str]) -> NDArray[Any] | None:
    """The alpha channel of an image file as stored (uint8, uint16 or float32), or None
    when it has none. Read after :func:`convstack.stack.io.read_image` has vetted the
    file (sizes, truncation)."""
    file = Path(path)
    with open(file, "rb") as fh:
        head = fh.read(8)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        import tifffile

        with tifffile.TiffFile(file) as tif:
            page = tif.pages.first
            if not page.extrasamples:
                return None
            data = page.asarray()
        if page.axes.startswith("S") and data.ndim == 3:
            data = np.moveaxis(data, 0, -1)
        return np.ascontiguousarray(data[..., -1])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        import imagecodecs

        image = np.asarray(imagecodecs.png_decode(file.read_bytes()))
        if image.ndim == 3 and image.shape[-1] in (2, 4):
            return np.ascontiguousarray(image[..., -1])
        return None
    from PIL import Image

    with Image.open(file) as im:
        if im.mode not in ("RGBA", "LA", "PA") and "transparency" not in im.info:
            return None
        return np.asarray(im.convert("RGBA"))[..., -1].copy()


class _QuietAlpha(logging.Filter):
    """Drops the reader's note that a frame's alpha is ignored: here it is not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "alpha channel is not opaque" not in record.getMessage()


@contextlib.contextmanager
def _alpha_kept() -> Iterator[None]:
    logger = logging.getLogger("convstack.stack.io")
    quiet = _QuietAlpha()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _unit(alpha: NDArray[Any]) -> NDArray[np.float32]:
    if alpha.dtype.kind in "ui":
        return (alpha / np.float32(np.iinfo(alpha.dtype).max)).astype(np.float32)
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


def fuse_with_alpha(frames: Sequence[Any] | NDArray[Any], **options: Any) -> FuseResult:
    """:func:`fuse` the colour of frames that carry alpha, and give the result the union
    of the frames' coverage as its alpha channel (last).

    Parameters
    ----------
    frames : sequence of paths, or of arrays (rows, cols, 2 or 4), or ndarray
        Paths: each file's alpha is read (an image without one covers everything).
        Arrays: the last channel of grey + alpha (2) or RGBA (4) frames is the alpha.
    **options
        Passed on to :func:`fuse`.

    Returns
    -------
    FuseResult
        ``image`` of (rows, cols, colour channels + 1) in the frames' dtype.

    Raises
    ------
    ValueError
        Array frames of other than 2 or 4 channels.
    """
    items = list(frames)
    paths = all(isinstance(item, (str, os.PathLike)) for item in items)
    if paths:
        colour: list[Any] = items
    else:
        arrays = [np.asarray(item) for item in items]
        for i, array in enumerate(arrays):
            if array.ndim != 3 or array.shape[-1] not in (2, 4):
                raise ValueError(
                    f"`frames[{i}]` must be (rows, cols, 2 or 4) with alpha last; got shape "
                    f"{array.shape}."
                )
        colour = [a[..., 0] if a.shape[-1] == 2 else a[..., :3] for a in arrays]
    with _alpha_kept():
        result = fuse(colour, **options)
    image = result.image
    coverage = np.zeros(image.shape[:2], np.float32)
    from ..warp import warp

    for index, item in enumerate(items):
        if paths:
            try:
                stored = read_alpha(item)
            except Exception as exc:  # (vetted by the first pass; a file changed since?)
                raise FrameReadError(f"{item}: cannot read its alpha channel ({exc}).") from exc
            alpha = np.ones(image.shape[:2], np.float32) if stored is None else _unit(stored)
        else:
            alpha = _unit(np.asarray(items[index])[..., -1])
        matrix = result.transforms[index]
        if not np.allclose(matrix, np.eye(3)):
            alpha = warp(alpha, matrix, order=1, mode="constant", cval=0.0)
        np.maximum(coverage, alpha, out=coverage)
    if image.dtype.kind in "ui":
        top = np.iinfo(image.dtype).max
        plane = np.rint(np.clip(coverage, 0.0, 1.0) * top).astype(image.dtype)
    else:
        plane = coverage.astype(image.dtype)
    channels = image if image.ndim == 3 else image[..., None]
    return dataclasses.replace(result, image=np.concatenate([channels, plane[..., None]], axis=2))


def encode_with_alpha(image: NDArray[Any], suffix: str) -> bytes:
    """An image with alpha last (grey + alpha or RGBA) as PNG or TIFF bytes.

    Raises
    ------
    ValueError
        Another format (JPEG holds no alpha), or float data to PNG.
    """
    kind = suffix.lower()
    if kind == ".png":
        if image.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"PNG holds 8 or 16-bit samples; got {image.dtype}: write a .tif.")
        import imagecodecs

        return bytes(imagecodecs.png_encode(np.ascontiguousarray(image), level=1))
    if kind in (".tif", ".tiff"):
        import tifffile

        data = image.astype(np.float32) if image.dtype == np.float64 else image
        buffer = io.BytesIO()
        tifffile.imwrite(
            buffer,
            np.ascontiguousarray(data),
            photometric="rgb" if data.shape[-1] == 4 else "minisblack",
            extrasamples=["unassalpha"],
            planarconfig="contig",
            compression="zlib",
            predictor=True,
            metadata=None,
        )
        return buffer.getvalue()
    raise ValueError(f"an image with alpha is written to .png or .tif; got {suffix!r}.")


def write_with_alpha(
    path: str | os.PathLike[str],
    image: NDArray[Any],
    *,
    overwrite: bool = False,
    inputs: Any = (),
) -> Path:
    """Write an image with alpha through the one writer (atomic, no clobber)."""
    file = Path(path)
    data = encode_with_alpha(image, file.suffix)
    try:
        return _writer.write_bytes(file, data, overwrite=overwrite, inputs=inputs)
    except _writer.OutputRefusedError as exc:
        raise OutputError(str(exc)) from None
