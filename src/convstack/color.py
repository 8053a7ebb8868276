"""Grey levels of colour images: the one home of the BT.601 luma weights.

Colour arrays are RGB (OpenCV's ``imread`` gives BGR); the luma is
``0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601, OpenCV's ``COLOR_RGB2GRAY``). A fourth
(alpha) channel is ignored; one or two channels (grey, grey + alpha) take the first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validate as v

__all__ = ["BT601", "BT601_F32", "to_gray"]

#: ITU-R BT.601 luma weights for R, G, B.
BT601 = (0.299, 0.587, 0.114)

#: The same weights as a float32 array, for float32 frames.
BT601_F32 = np.array(BT601, dtype=np.float32)


def to_gray(image: ArrayLike) -> NDArray[np.floating[Any]]:
    """Gray level of an image on [0, 1], float32 for float32 input, float64 otherwise.

    Parameters
    ----------
    image : array_like
        (rows, cols) gray, or (rows, cols, channels) with 3 (RGB) or 4 (RGBA)
        channels; 1 or 2 channels (gray, gray + alpha) take the first.

    Returns
    -------
    ndarray, shape (rows, cols)
        ``0.299 R + 0.587 G + 0.114 B`` for colour; integer images divided by their
        dtype's maximum, bool as 0 and 1, floats unchanged (not clipped).

    Examples
    --------
    >>> to_gray(np.array([[[255, 0, 0], [255, 255, 255]]], dtype=np.uint8))
    array([[0.299, 1.   ]])
    """
    array = v.as_real_array(image, "image")
    if array.ndim not in (2, 3):
        raise v.fail("image", "be 2-D (rows, cols) or 3-D (rows, cols, channels)", array)
    if array.ndim == 3 and array.shape[2] > 4:
        raise v.fail("image", "have 1 to 4 channels on its last axis", array)
    dtype = v.float_dtype(array)
    if array.dtype.kind in "ui":
        unit = array.astype(dtype) / dtype.type(np.iinfo(array.dtype).max)
    else:
        unit = array.astype(dtype, copy=False)
    if unit.ndim == 2:
        return unit
    if unit.shape[2] < 3:
        return np.ascontiguousarray(unit[..., 0])
    r, g, b = (dtype.type(w) for w in BT601)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, as IEEE says
        gray: NDArray[np.floating[Any]] = unit[..., 0] * r + unit[..., 1] * g + unit[..., 2] * b
    return gray
