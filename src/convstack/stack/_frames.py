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

__all__ = ["Frame", "is_identity", "measure_focus", "planar", "to_reference_grid", "warped"]


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


def is_identity(matrix: NDArray[np.float64]) -> bool:
    """Whether ``matrix`` leaves a frame where it is (to rounding)."""
    return bool(np.allclose(matrix, np.eye(3)))


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
    (into ``into`` if given; ``order``: the warp's, see :func:`warped`)."""
    if is_identity(matrix):
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
