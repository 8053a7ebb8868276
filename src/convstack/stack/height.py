"""Calibrated height maps: where along Z each pixel is sharpest, below a frame's step.

The depth map (:mod:`convstack.stack.depth`) votes for whole frames. A height map
wants the peak of each pixel's focus curve ``s_0, s_1, ..., s_{n-1}`` (the focus
measure of the frames at that pixel): the best frame ``k`` refined by the vertex of
the parabola through ``(k-1, s_{k-1}), (k, s_k), (k+1, s_{k+1})``, as
:func:`convstack.calculus.extrema` refines a 1-D turning point::

    offset = (s_{k+1} - s_{k-1}) / (2 (2 s_k - s_{k-1} - s_{k+1})),  clipped to [-1/2, 1/2]

(0 at the first and last frame, where the curve has one neighbour, and where it is not
curved down). :class:`FocusCurve` finds ``k`` and its two neighbours with a running
maximum, keeping only the measures of frames whose neighbours have not all been seen
(three maps or so in :func:`fuse`'s order), so memory does not grow with the frames.

A pixel whose raw peak lies more than a frame from the regularised depth map (a
textureless area, where noise peaks anywhere) takes the depth map's value instead.
Heights are ``index * z_step`` micrometres, frame 0 at height 0.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .zstack import to_micrometres

__all__ = ["FocusCurve", "parse_length", "subframe_height"]

_LENGTH = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\d\s].*?)?\s*$")


def parse_length(text: str | float, what: str = "z_step") -> float:
    """A length such as ``"2.5um"``, ``"2.5 µm"``, ``"500nm"`` or ``"0.002mm"``, in
    micrometres (a bare number is taken as micrometres).

    Raises
    ------
    ValueError
        Not a number with a unit, an unknown unit, or a length that is not > 0.

    Examples
    --------
    >>> parse_length("500nm")
    0.5
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return to_micrometres(float(text), "um", what)
    if not isinstance(text, str):
        raise TypeError(f"`{what}` must be a length such as '2.5um'; got {text!r}.")
    match = _LENGTH.match(text)
    if match is None:
        raise ValueError(f"`{what}` must be a length such as 2.5um or 500nm; got {text!r}.")
    return to_micrometres(float(match.group(1)), match.group(2) or "um", what)


class FocusCurve:
    """Running peak of each pixel's focus curve and the curve's values either side.

    Frames may come in any order (:func:`fuse` takes the reference first, then the
    frames after it, then those before it); the measures of a frame are kept only
    while one of its neighbours is still to come.
    """

    def __init__(self) -> None:
        self.best: NDArray[np.float32] | None = None
        self.index: NDArray[np.int32] | None = None
        self.lower: NDArray[np.float32] | None = None  # s_{k-1} (NaN: not seen yet)
        self.upper: NDArray[np.float32] | None = None  # s_{k+1}
        self.total: NDArray[np.float32] | None = None
        self.kept: dict[int, NDArray[Any]] = {}
        self.seen: set[int] = set()

    def add(self, index: int, measure: NDArray[Any]) -> None:
        """Take in frame ``index``'s focus measure."""
        m = np.asarray(measure, dtype=np.float32)
        if self.best is None:
            self.best = m.copy()
            self.index = np.full(m.shape, index, np.int32)
            self.lower = np.full(m.shape, np.nan, np.float32)
            self.upper = np.full(m.shape, np.nan, np.float32)
            self.total = m.copy()
            for side, other in ((self.lower, index - 1), (self.upper, index + 1)):
                if other in self.kept:
                    side[...] = self.kept[other]
        else:
            assert self.index is not None and self.lower is not None
            assert self.upper is not None and self.total is not None
            np.copyto(self.upper, m, where=self.index == index - 1)
            np.copyto(self.lower, m, where=self.index == index + 1)
            better = m > self.best
            self.index[better] = index
            np.copyto(self.best, m, where=better)
            for side, other in ((self.lower, index - 1), (self.upper, index + 1)):
                known = self.kept.get(other)
                np.copyto(side, np.float32(np.nan) if known is None else known, where=better)
            self.total += m
        self.seen.add(index)
        self.kept[index] = m
        for k in list(self.kept):  # keep a frame while a neighbour is to come
            if (k - 1 in self.seen or k == 0) and k + 1 in self.seen:
                del self.kept[k]

    def peak(self, count: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """The sub-frame peak (a fractional frame index in [0, count - 1]) and the
        raw peak's confidence ``1 - mean / max`` of the curve (0: flat, 1: one frame)."""
        assert self.best is not None and self.index is not None
        assert self.lower is not None and self.upper is not None and self.total is not None
        k = self.index
        inside = (k > 0) & (k < count - 1) & np.isfinite(self.lower) & np.isfinite(self.upper)
        low = np.where(inside, self.lower, 0.0)
        up = np.where(inside, self.upper, 0.0)
        curvature = 2.0 * self.best - low - up
        bent = inside & (curvature > 0)
        offset = np.where(bent, 0.5 * (up - low) / np.where(bent, curvature, 1.0), 0.0)
        peak = (k + np.clip(offset, -0.5, 0.5)).astype(np.float32)
        mean = self.total / np.float32(len(self.seen))
        with np.errstate(divide="ignore", invalid="ignore"):
            confidence = np.where(self.best > 0, 1.0 - mean / self.best, 0.0)
        return peak, np.clip(confidence, 0.0, 1.0).astype(np.float32)


def subframe_height(
    peak: NDArray[np.float32], depth: NDArray[np.float32], *, tolerance: float = 1.0
) -> NDArray[np.float32]:
    """The focus curve's sub-frame ``peak`` where it lies within ``tolerance`` frames of
    the regularised ``depth`` map, the depth map elsewhere (untrusted raw peaks).

    Both are fractional frame indices of one shape; so is the result (float32).
    """
    if peak.shape != depth.shape:
        raise ValueError(f"`peak` must have the shape of `depth` {depth.shape}; got {peak.shape}.")
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"`tolerance` must be >= 0; got {tolerance!r}.")
    near = np.abs(np.rint(peak) - depth) <= tolerance
    return np.where(near, peak, depth).astype(np.float32)
