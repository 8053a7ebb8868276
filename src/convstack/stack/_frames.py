"""One frame on its way through :func:`convstack.stack.fuse`, and the plain steps
that take it onto the reference grid and measure its focus.

The steps are functions of (frame, transform) with no state of their own, so that
the scheduler may run them in either process or thread, and a variant that works
on strips of rows may replace them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..warp import warp
from .depth import voting_measure
from .sharpness import to_unit_float

__all__ = [
    "STILL_MOTION",
    "Frame",
    "is_identity",
    "measure_focus",
    "planar",
    "to_reference_grid",
    "warped",
]


@dataclass
class Frame:
    """One frame between the worker and the merge (raw until warped).

    Attributes
    ----------
    index : int
        The frame's index in the stack.
    raw : ndarray or None
        The frame as read (or its stand-in's), until warped.
    gray : ndarray of float32 or None
        The luma (or focus channel) of ``raw``, or of ``frame`` once warped.
    frame : ndarray of float32 or None
        On the reference grid, on [0, 1].
    measured : ndarray of float32 or None
        Its focus measure.
    """

    index: int
    raw: NDArray[Any] | None
    gray: NDArray[np.float32] | None
    frame: NDArray[np.float32] | None = None
    measured: NDArray[np.float32] | None = None


#: A registered frame that no transform moves by this many pixels or more, anywhere on
#: it, is taken as it is, not resampled: a resample costs a warp of the frame and blurs
#: it by far more than such a motion (the two-pass quintic's own error is larger; the
#: 200 MP bench stack warped frames "moved" by 0.001 px).
STILL_MOTION = 0.01


def is_identity(matrix: NDArray[np.float64], shape: tuple[int, ...]) -> bool:
    """Whether ``matrix`` leaves a frame of ``shape`` (rows, cols[, channels]) where it
    is: an affine matrix that moves none of its pixels by :data:`STILL_MOTION` or more
    (an affine motion is largest at a corner; a projective one is resampled).

    Examples
    --------
    >>> shift = np.array([[1.0, 0.0, 0.006], [0.0, 1.0, 0.007], [0.0, 0.0, 1.0]])
    >>> is_identity(shift, (480, 640)), is_identity(2 * shift, (480, 640))
    (True, False)
    """
    if matrix[2, 0] != 0.0 or matrix[2, 1] != 0.0 or matrix[2, 2] != 1.0:
        return False
    rows, cols = float(shape[0] - 1), float(shape[1] - 1)
    corners = np.array([[0.0, 0.0], [0.0, cols], [rows, 0.0], [rows, cols]])
    moved = corners @ matrix[:2, :2].T + matrix[:2, 2] - corners
    return bool(np.all(np.isfinite(moved)) and np.hypot(*moved.T).max() < STILL_MOTION)


def planar(shape: tuple[int, ...], empty: Callable[..., NDArray[Any]] = np.empty) -> NDArray[Any]:
    """A float32 frame of ``shape`` (rows, cols[, channels]) stored channel by channel
    (``empty((channels, rows, cols), np.float32)``, viewed channels last): the pyramid
    merges planes, and the warp writes them directly (no interleaving and back)."""
    if len(shape) == 2:
        return empty(shape, np.float32)
    return np.moveaxis(empty((shape[2], *shape[:2]), np.float32), 0, -1)


def warped(
    frame: NDArray[Any],
    matrix: NDArray[np.float64],
    out: NDArray[np.float32] | None = None,
    order: int = 3,
) -> NDArray[np.float32]:
    """``frame`` resampled onto the reference grid (cubic, or ``order`` 5: quintic
    spline in two 1-D passes, ``warp(separable=True)``; edges repeated, not black), into
    ``out`` if given, else into a new planar frame (see :func:`planar`); a float64 frame
    is warped apart, then copied in.

    Integer frames keep their scale (float32 out); float frames are made float32.
    """
    separable = order == 5
    if frame.dtype == np.float64:
        result = warp(frame, matrix, order=order, mode="nearest", separable=separable)
        if out is None:
            return result.astype(np.float32)
        out[...] = result
        return out
    out = planar(frame.shape) if out is None else out
    return warp(frame, matrix, order=order, mode="nearest", separable=separable, out=out)


def to_reference_grid(
    raw: NDArray[Any],
    matrix: NDArray[np.float64],
    into: NDArray[np.float32] | None = None,
    order: int = 3,
) -> NDArray[np.float32]:
    """A registered frame as read, put on the reference grid as float32 on [0, 1]
    (into ``into`` if given; ``order``: the warp's, see :func:`warped`); a frame that
    ``matrix`` leaves where it is (:func:`is_identity`) is not resampled."""
    if is_identity(matrix, raw.shape):
        if into is None:
            return to_unit_float(raw)
        if raw.dtype.kind in "ui":  # as to_unit_float, without a frame of its own
            return np.divide(raw, np.float32(np.iinfo(raw.dtype).max), out=into, dtype=np.float32)
        into[...] = raw
        return into
    # warp the integers as they are (cheaper), then scale to [0, 1]
    frame = warped(raw, matrix, into, order)
    if raw.dtype.kind in "ui":
        frame *= np.float32(1.0 / np.iinfo(raw.dtype).max)
    return frame


def measure_focus(gray: NDArray[np.float32], measure: str) -> NDArray[np.float32]:
    """The focus measure that votes for the depth map (see
    :func:`convstack.stack.depth.voting_measure`)."""
    return voting_measure(gray, measure)
