"""File handling shared by `convstack filter` and `convstack edges`.

The rules, stated once:

- The output keeps the input's sample type: 8-bit in, 8-bit out; 16-bit in, 16-bit
  out; floating-point (TIFF) in, float32 TIFF out. Floating-point results can only be
  written to TIFF.
- Smoothing filters already return the input's dtype (rounded and saturated as OpenCV).
- Derivative filters (laplacian, sobel, scharr) return signed values in grey levels of
  the input. For integer images ``--scale`` picks how they become samples:
  ``abs`` (default) ``|value|`` rounded and saturated to the dtype's range (OpenCV's
  ``convertScaleAbs``, extended to 16 bits); ``offset`` ``value + 128`` (``+ 32768``
  for 16-bit), saturated, so zero is mid-grey and the sign is kept; ``rescale``
  ``|value| / max|value|`` stretched to the full range. Float images keep the signed
  float32 values.
- Edge maps are on [0, 1] and are multiplied by the dtype's maximum (255, 65535),
  rounded; float inputs give a float32 [0, 1] TIFF.
- An existing OUTPUT is refused unless ``--force``; the INPUT is never written, even
  with ``--force``; every error names its file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..stack.errors import OutputError, StackError
from ..stack.io import check_output as check_image_output
from ..stack.io import read_image, read_metadata, write_image
from ._common import UserError

SCALES = ("abs", "offset", "rescale")
TIFF_SUFFIXES = (".tif", ".tiff")


def check_output(output: str, *, force: bool, floating: bool, source: str | None = None) -> Path:
    """Refuse, before the work, an output that cannot or may not be written: an
    existing file (without ``force``), the input file ``source`` (``force`` or not),
    a missing or unwritable folder, an unknown extension, or a float result to a
    non-TIFF."""
    path = Path(output)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give an image file name.")
    try:
        check_image_output(path, overwrite=force, inputs=() if source is None else (source,))
    except OutputError as exc:
        text = str(exc)
        if "already exists" in text:
            text = f"{path}: already exists; use --force to replace it."
        raise UserError(text) from None
    if floating and path.suffix.lower() not in TIFF_SUFFIXES:
        raise UserError(
            f"{path}: the result has floating-point samples, which only TIFF holds; "
            f"name the output .tif or .tiff."
        )
    return path


def load(path: str) -> NDArray[Any]:
    """Read an image; any failure becomes a ``UserError`` naming the file."""
    try:
        return read_image(path)
    except StackError as exc:
        raise UserError(str(exc)) from None


def save(path: Path, image: NDArray[Any], source: str, *, force: bool) -> None:
    """Write ``image`` atomically, carrying over the EXIF/ICC of ``source``, which it
    may never replace."""
    try:
        metadata = read_metadata(source)
    except StackError:
        metadata = None
    try:
        write_image(path, image, overwrite=force, metadata=metadata, inputs=(source,))
    except (StackError, OSError, ValueError, TypeError) as exc:
        text = str(exc)
        raise UserError(text if str(path) in text else f"{path}: {text}") from None


def derivative_to_dtype(values: NDArray[Any], dtype: np.dtype[Any], scale: str) -> NDArray[Any]:
    """Signed derivative values (grey levels of ``dtype``) to samples of ``dtype``.

    Float dtypes keep the signed values (float32 or float64); integer dtypes follow
    ``scale`` (see the module notes).

    Examples
    --------
    >>> v = np.array([-300.0, -2.4, 0.0, 2.6, 300.0])
    >>> derivative_to_dtype(v, np.dtype(np.uint8), "abs").tolist()
    [255, 2, 0, 3, 255]
    >>> derivative_to_dtype(v, np.dtype(np.uint8), "offset").tolist()
    [0, 126, 128, 131, 255]
    >>> derivative_to_dtype(v, np.dtype(np.uint8), "rescale").tolist()
    [255, 2, 0, 2, 255]
    """
    if dtype.kind == "f":
        return values
    top = float(np.iinfo(dtype).max)
    if scale == "abs":
        out = np.abs(values)
    elif scale == "offset":
        out = values + (top + 1) / 2
    else:
        magnitude = np.abs(values).astype(np.float64)
        peak = float(magnitude.max())
        out = magnitude * (top / peak) if peak > 0 else magnitude
    return np.clip(np.rint(out), 0, top).astype(dtype)


def unit_to_dtype(values: NDArray[Any], dtype: np.dtype[Any]) -> NDArray[Any]:
    """A map on [0, 1] to samples of ``dtype``: float32 for floats, else ``round(v * max)``.

    Examples
    --------
    >>> unit_to_dtype(np.array([0.0, 0.5, 1.0]), np.dtype(np.uint8)).tolist()
    [0, 128, 255]
    """
    if dtype.kind == "f":
        return values.astype(np.float32)
    top = float(np.iinfo(dtype).max)
    return np.clip(np.rint(values * top), 0, top).astype(dtype)
