"""Camera RAW frames (DNG, NEF, CR2, CR3, ARW, ...) through LibRaw (rawpy, the ``raw`` extra).

A RAW frame is demosaiced by LibRaw into 16-bit *linear* RGB (gamma 1, no automatic
brightening: the sensor's values, scaled so that its white level is 65535) with the
camera's as-shot white balance, in linear sRGB primaries; the pixels come as stored
(no rotation by the orientation flag, as every other frame). rawpy is imported only
when a RAW file is read: ``pip install convstack[raw]``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import FrameReadError

__all__ = ["RAW_EXTENSIONS", "is_raw", "read_raw"]

#: File extensions read as camera RAW (lower case, with the dot).
RAW_EXTENSIONS = (
    ".dng",
    ".nef",
    ".nrw",
    ".cr2",
    ".cr3",
    ".crw",
    ".arw",
    ".srf",
    ".sr2",
    ".raf",
    ".orf",
    ".rw2",
    ".pef",
    ".srw",
    ".3fr",
    ".iiq",
    ".erf",
    ".kdc",
    ".mrw",
    ".x3f",
)


def is_raw(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a camera RAW file by its extension."""
    return Path(path).suffix.lower() in RAW_EXTENSIONS


def _rawpy() -> Any:
    try:
        import rawpy
    except ImportError:
        raise FrameReadError(
            "reading camera RAW files needs rawpy (LibRaw): pip install 'convstack[raw]'."
        ) from None
    return rawpy


def read_raw(path: str | os.PathLike[str], *, name: str | None = None) -> NDArray[np.uint16]:
    """Read a camera RAW file as 16-bit linear RGB with the camera's white balance.

    Parameters
    ----------
    path : str or path-like
        A RAW file LibRaw knows (DNG, NEF, CR2, CR3, ARW, RAF, ORF, RW2, ...).
    name : str, optional
        How error messages name it (default: the path).

    Returns
    -------
    ndarray of uint16, shape (rows, cols, 3)
        Linear (gamma 1) RGB, sRGB primaries, as-shot white balance, not brightened.

    Raises
    ------
    FrameReadError
        rawpy is not installed, or LibRaw cannot open or decode the file (the message
        names the file and LibRaw's reason).
    """
    from ..limits import LimitError, check_memory, check_pixels
    from .errors import FrameTooLargeError

    rawpy = _rawpy()
    label = name or str(path)
    try:
        with rawpy.imread(os.fspath(path)) as raw:
            rows, cols = int(raw.sizes.height), int(raw.sizes.width)
            try:
                check_pixels(rows, cols, f"{label}: the image")
                check_memory(rows * cols * 3 * 2 * 2, f"{label}: demosaicing {rows} x {cols}")
            except LimitError as exc:
                raise FrameTooLargeError(str(exc)) from None
            image = raw.postprocess(
                gamma=(1, 1),
                no_auto_bright=True,
                output_bps=16,
                use_camera_wb=True,
                output_color=rawpy.ColorSpace.sRGB,
                user_flip=0,
            )
    except FrameReadError:
        raise
    except rawpy.LibRawError as exc:  # (LibRawFileUnsupportedError, ...IOError, ...)
        reason = type(exc).__name__.removeprefix("LibRaw").removesuffix("Error")
        raise FrameReadError(
            f"{label}: LibRaw cannot decode it as a camera RAW file ({reason}: {exc})."
        ) from None
    except OSError as exc:
        raise FrameReadError(f"{label}: cannot read it ({exc.strerror or exc}).") from None
    return np.ascontiguousarray(image, dtype=np.uint16)
