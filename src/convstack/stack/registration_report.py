"""What alignment did to each frame of a stack, and which frames it does not trust.

:func:`convstack.stack.fuse` registers each frame to its neighbour on the reference's
side (see :mod:`convstack.stack.align`). For every frame it keeps a
:class:`FrameReport`: the transform applied, the registration's residual against its
neighbour (``1 - correlation`` of the blur-matched frames) beside the identity's,
a confidence, and what was decided:

- ``'aligned'``: the transform explained the pair significantly better than the
  identity (it removed at least 5 % of the identity's residual) and was applied;
- ``'identity'``: it did not, so the frame was left where it is (a defocus
  difference read as motion would otherwise move it);
- ``'rejected'``: the registration failed with every model down to a translation,
  or was implausible (a scale or rotation jump between neighbours), or the frame was
  the default reference and looked broken (its neighbours register to each other, not
  to it: another is the reference); the frame is left out of the merge (its neighbour
  stands in for it);
- ``'reference'``.

``flags`` add what was noticed without rejecting: a fallback to a simpler model, a
misfire (a frame blurrier than its neighbours everywhere, see :func:`misfires`), a
large step kept (a scale or rotation beyond a jump between neighbours that registered:
the first frame after the reference is judged with wider limits).

Inside :func:`fuse` the numbers travel through a row of floats per frame (a child
process writes them into shared memory); :func:`record` and :func:`reports` are the
two ends of that row.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["FrameReport", "misfires", "summary", "write_report"]

#: Status codes in the shared row, and their names.
STATUSES = ("pending", "reference", "aligned", "identity", "rejected")
#: Why a frame was rejected (code -> message; ``{}`` takes the row's value).
REASONS = {
    0: "",
    1: "registration failed with every model down to a translation (no texture, or no overlap)",
    2: "correlation {:.2f} with its neighbour after registration (another scene?)",
    3: "scale jump of {:.1%} (against the step predicted from its neighbours)",
    4: "rotation jump of {:.1f} degrees (against the step predicted from its neighbours)",
    5: "shift of {:.0f} pixels from its neighbour",
    6: "residual {:.3f} after registration, an outlier among the stack's",
    7: "the reference first chosen, broken: its neighbours register to each other, not "
    "to it; frame {:.0f}'s geometry is the output's",
}
#: The flag of a frame kept whose step from its neighbour scales or rotates beyond a
#: jump between neighbours (:func:`convstack.stack.align.jumps_beyond` from no motion).
LARGE_STEP = "a large step from its neighbour (a lens or camera jump?), kept: it registered"
#: Side of the grid of tiles whose sharpness the misfire check compares.
TILES = 8
# layout of a frame's row: status, model, correlation, identity correlation, stand-in,
# neighbour, reason, reason value, model asked for, the 3x3 step, the applied 3x3
# transform, tile energies
_STEP = 9
_APPLIED = 18
_ENERGY = 27
WIDTH = _ENERGY + TILES * TILES
#: A frame less than half (_MISFIRE_RATIO) as sharp as both its neighbours in nearly all
#: (_MISFIRE_SHARE) of the textured tiles is flagged as a misfire.
_MISFIRE_SHARE = 0.9
_MISFIRE_RATIO = 0.5


@dataclass(frozen=True)
class FrameReport:
    """How one frame was registered.

    Attributes
    ----------
    index : int
        The frame's index in the stack.
    name : str
        Its path or ``frames[i]``.
    status : {'reference', 'aligned', 'identity', 'rejected'}
        What was done with it (see the module's notes).
    model : str
        The motion model of the estimate (a simpler one than asked after a fallback).
    transform : ndarray (3, 3)
        Reference pixel coordinates -> this frame's, as applied (a rejected frame's is
        its stand-in's).
    step : ndarray (3, 3) or None
        The registration against ``neighbour`` as estimated (before any decision).
    neighbour : int or None
        The frame it was registered to.
    correlation, identity_correlation : float
        Correlation of the blur-matched pair after registration, and with no motion.
    confidence : float
        In [0, 1]: how far the correlation lies above the failure floor (0.2), 0 for a
        rejected frame, 1 for the reference.
    flags : tuple of str
        Reasons for distrust, in words (empty when none).
    """

    index: int
    name: str
    status: str
    model: str
    transform: NDArray[np.float64] = field(repr=False)
    step: NDArray[np.float64] | None = field(repr=False)
    neighbour: int | None
    correlation: float
    identity_correlation: float
    confidence: float
    flags: tuple[str, ...] = ()

    @property
    def residual(self) -> float:
        """``1 - correlation`` (NaN for the reference)."""
        return 1.0 - self.correlation

    @property
    def trusted(self) -> bool:
        """False for a rejected or flagged frame."""
        return self.status != "rejected" and not self.flags

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN written as null)."""

        def number(x: float) -> float | None:
            return None if not math.isfinite(x) else round(float(x), 6)

        def matrix(m: NDArray[np.float64] | None) -> list[list[float]] | None:
            return None if m is None else [[round(float(x), 9) for x in row] for row in m]

        return {
            "index": self.index,
            "name": self.name,
            "status": self.status,
            "model": self.model,
            "transform": matrix(self.transform),
            "step": matrix(self.step),
            "neighbour": self.neighbour,
            "correlation": number(self.correlation),
            "identity_correlation": number(self.identity_correlation),
            "residual": number(self.residual),
            "identity_residual": number(1.0 - self.identity_correlation),
            "confidence": number(self.confidence),
            "flags": list(self.flags),
        }


def new_rows(count: int, empty: Any = None) -> NDArray[np.float64]:
    """``count`` rows for :func:`record` (``empty(shape, dtype)``: e.g. shared memory)."""
    rows = np.zeros((count, WIDTH)) if empty is None else empty((count, WIDTH), np.float64)
    rows[:, :_STEP] = np.nan
    rows[:, 0] = 0
    return rows


def record(
    rows: NDArray[np.float64],
    index: int,
    outcome: dict[str, Any],
    applied: NDArray[np.float64],
    neighbour: int | None,
    stand_in: int | None,
    energy: NDArray[np.float64],
) -> None:
    """Write one frame's registration ``outcome`` (see
    :func:`convstack.stack.align.register_checked`)."""
    from .align import MODELS

    row = rows[index]
    row[0] = STATUSES.index(outcome["status"])
    row[1] = MODELS.index(outcome["model"])
    row[2] = outcome.get("correlation", math.nan)
    row[3] = outcome.get("identity", math.nan)
    row[4] = -1 if stand_in is None else stand_in
    row[5] = -1 if neighbour is None else neighbour
    row[6] = outcome.get("reason", 0)
    row[7] = outcome.get("value", 0.0)
    row[8] = MODELS.index(outcome.get("asked", outcome["model"]))
    step = outcome.get("step")
    row[_STEP:_APPLIED] = np.nan if step is None else np.asarray(step).ravel()
    row[_APPLIED:_ENERGY] = np.asarray(applied).ravel()
    row[_ENERGY:] = energy


def stand_in(rows: NDArray[np.float64], index: int) -> int | None:
    """The frame merged in place of a rejected frame ``index`` (None if it was kept)."""
    value = int(rows[index, 4])
    return None if value < 0 else value


def tile_energy(gray: NDArray[np.float32]) -> NDArray[np.float64]:
    """Mean squared gradient of ``gray`` (subsampled by two) in a TILES x TILES grid."""
    g = np.asarray(gray[::2, ::2], dtype=np.float32)
    h, w = g.shape
    energy = np.zeros((h, w), dtype=np.float32)
    if h > 1:
        energy[:-1] += np.square(np.diff(g, axis=0))
    if w > 1:
        energy[:, :-1] += np.square(np.diff(g, axis=1))
    out = np.zeros((TILES, TILES))
    rows = np.linspace(0, h, TILES + 1).astype(int)
    cols = np.linspace(0, w, TILES + 1).astype(int)
    for i in range(TILES):
        for j in range(TILES):
            tile = energy[rows[i] : rows[i + 1], cols[j] : cols[j + 1]]
            out[i, j] = float(tile.mean(dtype=np.float64)) if tile.size else 0.0
    return out.ravel()


def misfires(energy: NDArray[np.float64], kept: NDArray[np.bool_]) -> list[int]:
    """Frames much blurrier than their kept neighbours everywhere.

    ``energy`` (frames, tiles): each frame's tile sharpness (:func:`tile_energy`);
    ``kept``: the frames that take part (at least three). A kept frame is a misfire
    when, in at least 90 % of the tiles that have texture, its sharpness is under half
    the smaller of its neighbours' (the one neighbour's at either end): a frame of a
    focus stack is the sharpest somewhere, where it was focused.

    Examples
    --------
    >>> energy = np.array([[1.0, 4.0], [4.0, 1.0], [0.1, 0.1], [1.0, 4.0]])
    >>> misfires(energy, np.ones(4, dtype=bool))
    [2]
    """
    frames = np.flatnonzero(kept)
    found: list[int] = []
    if len(frames) < 3:  # of two frames, which one misfired?
        return found
    for position, index in enumerate(frames):
        around = [frames[p] for p in (position - 1, position + 1) if 0 <= p < len(frames)]
        floor = np.min(energy[around], axis=0)
        textured = np.maximum(floor, energy[index]) > 1e-3 * float(np.max(energy[frames]) or 1.0)
        if not textured.any():
            continue
        blurrier = energy[index][textured] < _MISFIRE_RATIO * floor[textured]
        if float(np.mean(blurrier)) >= _MISFIRE_SHARE:
            found.append(int(index))
    return found


def reports(rows: NDArray[np.float64], names: list[str]) -> tuple[FrameReport, ...]:
    """The :class:`FrameReport` of every frame from the rows :func:`record` wrote."""
    from .align import MODELS, jumps_beyond

    status = [STATUSES[int(code)] for code in rows[:, 0]]
    kept = np.array([s != "rejected" for s in status])
    blurry = set(misfires(rows[:, _ENERGY:], kept))
    out = []
    for index, row in enumerate(rows):
        model = MODELS[int(row[1])]
        flags = []
        reason = int(row[6])
        if reason:
            flags.append(REASONS[reason].format(float(row[7])))
        if int(row[8]) != int(row[1]) and status[index] != "rejected":
            flags.append(f"fell back from {MODELS[int(row[8])]} to {model}")
        if index in blurry:
            flags.append("misfire: much blurrier than its neighbours everywhere")
        step = row[_STEP:_APPLIED]
        moved = status[index] == "aligned" and not np.isnan(step).any()
        if moved and jumps_beyond(step.reshape(3, 3), np.eye(3)):
            # kept (it registered), but a lens jump or a frame moved by hand: worth a look
            flags.append(LARGE_STEP)
        correlation = float(row[2])
        if status[index] == "reference":
            confidence = 1.0
        elif status[index] == "rejected" or not math.isfinite(correlation):
            confidence = 0.0
        else:
            confidence = min(1.0, max(0.0, (correlation - 0.2) / 0.8))
        out.append(
            FrameReport(
                index=index,
                name=names[index],
                status=status[index],
                model=model,
                transform=row[_APPLIED:_ENERGY].reshape(3, 3).copy(),
                step=None if np.isnan(step).any() else step.reshape(3, 3).copy(),
                neighbour=None if row[5] < 0 else int(row[5]),
                correlation=correlation,
                identity_correlation=float(row[3]),
                confidence=confidence,
                flags=tuple(flags),
            )
        )
    return tuple(out)


def summary(frames: tuple[FrameReport, ...] | list[FrameReport]) -> str:
    """One line naming the frames that are not trusted ('' when all are)."""
    parts = [
        f"{f.name} ({f.status}: {'; '.join(f.flags)})" if f.flags else f"{f.name} ({f.status})"
        for f in frames
        if not f.trusted
    ]
    return "" if not parts else "frames not trusted: " + ", ".join(parts)


def write_report(
    frames: tuple[FrameReport, ...] | list[FrameReport],
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: Any = (),
) -> Path:
    """Write the frames' reports as one JSON document by the one writer's rules.

    ``{"frames": [...], "reference": name, "rejected": [names], "flagged": [names]}``
    (``reference``: the frame whose geometry is the output's); the file is never one
    of ``inputs`` (the frames) and replaces an existing one only with ``overwrite``.
    """
    import json

    from .. import _writer

    document = {
        "frames": [f.to_json() for f in frames],
        "reference": next((f.name for f in frames if f.status == "reference"), None),
        "rejected": [f.name for f in frames if f.status == "rejected"],
        "flagged": [f.name for f in frames if f.status != "rejected" and f.flags],
    }
    text = json.dumps(document, indent=1) + "\n"
    return _writer.write_bytes(path, text.encode(), overwrite=overwrite, inputs=inputs)
