"""The registrar of :func:`convstack.stack.fuse`: the one path that chains a stack's
frames to its reference.

Frames are registered from the reference outwards (``ref, ref+1, ..., n-1, ref-1,
..., 0``), each to its neighbour on the reference's side (similar focus, so robust),
and the steps are composed into transforms to the reference. A frame whose
registration fails or is implausible is rejected: its neighbour (raw frame, luma,
pyramid and transform) stands in for it, and the chain goes on from there. What was
decided for every frame goes into a row of floats (in memory that a forked child
process writes into too) that :mod:`convstack.stack.registration_report` reads.

A broken reference (another scene, a black frame, a rotation or zoom jump) makes
every frame, or nearly every one, look broken. When at least half the frames and one
of the reference's neighbours are rejected, its two neighbours are registered to each
other: if they agree, and each one's step from the reference failed or scales or
rotates well beyond their own step (a stack whose lens jumps right after the
reference has one neighbour agree with it), the reference is the broken one.
:meth:`Registrar.reports` then raises :class:`ReferenceBroken`, and ``fuse`` runs
again (:meth:`ReferenceBroken.again`) from the nearest of the two, the broken frame
left out as a rejected one is (its neighbour stands in for it). A reference the user
chose is never replaced: that is an :class:`AlignmentError` naming it.
"""

from __future__ import annotations

import contextvars
import io
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _validate as v
from . import align
from . import registration_report as _report
from ._frames import to_reference_grid
from ._source import FrameSource
from .errors import AlignmentError
from .forked import shared_array

__all__ = [
    "DEFAULT_INTERPOLATION",
    "INTERPOLATIONS",
    "ReferenceBroken",
    "Registrar",
    "processing_order",
]

# the warnings are fuse's: logged under its module's name, where users listen
logger = logging.getLogger("convstack.stack.pipeline")


#: The frames a fuse run again after a broken reference leaves out (see
#: :meth:`ReferenceBroken.again`): frame -> the reference it replaced was that frame.
_LEFT_OUT: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "convstack_left_out", default=frozenset()
)
#: How fuse may put the frames on the reference grid: name -> the warp's ``order``.
INTERPOLATIONS = {"cubic": 3, "quintic": 5}
#: The interpolation :func:`convstack.stack.fuse` (and a :class:`Registrar` not told
#: otherwise) puts frames on the reference grid with.
DEFAULT_INTERPOLATION = "quintic"
#: The reason code of a broken reference left out (registration_report.REASONS).
_BROKEN_REFERENCE = 7


class ReferenceBroken(AlignmentError):
    """The reference chosen by default disagrees with its neighbours, which agree with
    each other: :meth:`again` fuses once more with ``reference`` instead, ``broken``
    left out.

    Attributes
    ----------
    reference : int
        The nearest trusted frame, the new reference.
    broken : int
        The reference first chosen.
    """

    def __init__(self, message: str, reference: int, broken: int) -> None:
        super().__init__(message)
        self.reference = reference
        self.broken = broken

    def again(self, fuse: Callable[..., Any], source: FrameSource, options: dict[str, Any]) -> Any:
        """``fuse(frames, **options)`` with the new reference, the broken one left out.

        The frames are ``source``'s (file objects' bytes, already read, in new ones);
        a warning says which frame is the reference now.
        """
        logger.warning("%s", self)
        frames: list[Any] = []
        for index, item in enumerate(source.items):
            if index in source.content:
                item = io.BytesIO(source.content[index])
                item.name = source.names[index]  # (the messages keep its name)
            frames.append(item)
        token = _LEFT_OUT.set(frozenset({self.broken}))
        try:
            return fuse(frames, **{**options, "reference": self.reference})
        finally:
            _LEFT_OUT.reset(token)


_NO_MOTION = np.eye(3)


def processing_order(count: int, reference: int) -> list[tuple[int, int | None]]:
    """(frame, neighbour towards the reference) in processing order."""
    order: list[tuple[int, int | None]] = [(reference, None)]
    order += [(i, i - 1) for i in range(reference + 1, count)]
    order += [(i, i + 1) for i in range(reference - 1, -1, -1)]
    return order


class Registrar:
    """Registers each frame to its neighbour and chains the transforms to the reference.

    Parameters
    ----------
    source : FrameSource
        Where the frames are read.
    reference : int
        The reference frame's index.
    model : str
        The motion model (one of :data:`convstack.stack.align.MODELS`).
    gray_of : callable
        ``gray_of(frame)``: the float32 luma (or focus channel) registered.
    chosen : bool
        Whether the user chose the reference: it is then never replaced (a broken one
        is an :class:`AlignmentError`), else :meth:`reports` may raise
        :class:`ReferenceBroken`.
    interpolation : {'cubic', 'quintic'}
        How the frames are put on the reference grid by their transforms
        (``warp_order``: :func:`convstack.warp.warp`'s ``order``, 3 or 5); default
        :data:`DEFAULT_INTERPOLATION`, fuse's own default.

    Attributes
    ----------
    transforms : list of ndarray (3, 3)
        Per frame, reference pixel coordinates -> its own (a rejected frame's is its
        stand-in's); the identity until registered.
    rows : ndarray
        Per frame, what registration decided (see
        :func:`convstack.stack.registration_report.record`).
    preread : dict
        Frames read before a child process forked, taken instead of reading again.
    """

    def __init__(
        self,
        source: FrameSource,
        reference: int,
        model: str,
        gray_of: Callable[[NDArray[Any]], NDArray[np.float32]],
        *,
        chosen: bool = False,
        interpolation: str = DEFAULT_INTERPOLATION,
    ) -> None:
        count = len(source)
        self.source = source
        self.reference = reference
        self.model = model
        self.gray_of = gray_of
        self.chosen = chosen
        self.warp_order = INTERPOLATIONS[interpolation]
        # a broken reference replaced: left out without registration (see ReferenceBroken)
        self.left_out = _LEFT_OUT.get()
        self.order = processing_order(count, reference)
        self.transforms: list[NDArray[np.float64]] = [np.eye(3)] * count
        self.rows = _report.new_rows(count, shared_array)
        self.preread: dict[int, NDArray[Any]] = {}
        self._stand_ins: dict[int, int] = {}  # a rejected frame -> the kept frame merged
        self._residuals: list[float] = []  # of the frames kept so far (spots outliers)
        # the last and the first step estimated each way (+1 up, -1 down): breathing
        # changes smoothly, so they predict the next step (a jump from it is implausible)
        self._steps: dict[int, NDArray[np.float64]] = {}
        self._first_steps: dict[int, NDArray[np.float64]] = {}
        # registration pyramids of the frames a later frame registers against (each is
        # built once: as the moving frame, then as its neighbour's reference)
        self._pyramids: dict[int, align.Pyramid] = {}

    def register(
        self, index: int, neighbour: int | None
    ) -> tuple[NDArray[Any], NDArray[np.float32]]:
        """Read frame ``index`` and register it to ``neighbour`` (None: the reference).

        Returns the raw frame and its luma: the stand-in's when the frame is rejected.
        """
        raw = self.preread.pop(index) if index in self.preread else self.source.raw(index)
        gray = self.gray_of(raw)
        if self.model == "none" or neighbour is None:
            status = "reference" if neighbour is None else "identity"
            outcome = {"status": status, "model": self.model}
            energy = _report.tile_energy(gray)
            _report.record(self.rows, index, outcome, np.eye(3), neighbour, None, energy)
        if self.model != "none":
            if not np.all(np.isfinite(gray)):
                raise v.fail(self.source.names[index], "contain only finite values", gray)
            pyramid = align.gray_pyramid(gray)
            if neighbour is not None:
                raw, gray, pyramid = self._checked(index, neighbour, raw, gray, pyramid)
            # keep only the pyramids a later frame registers against
            for k in [k for k in self._pyramids if k != self.reference]:
                del self._pyramids[k]
            pyramid.release_templates()  # its gradients were for the previous pair
            self._pyramids[index] = pyramid
        return raw, gray

    def _checked(
        self,
        index: int,
        neighbour: int,
        raw: NDArray[Any],
        gray: NDArray[np.float32],
        pyramid: align.Pyramid,
    ) -> tuple[NDArray[Any], NDArray[np.float32], align.Pyramid]:
        """Register a frame to its neighbour and decide whether to trust it; a rejected
        frame's neighbour (its raw frame, luma, pyramid and transform) stands in for it."""
        residuals = self._residuals
        typical = float(np.median(residuals)) if len(residuals) >= 2 else None
        way = 1 if index > neighbour else -1
        predicted = self._steps.get(way)
        if predicted is None and -way in self._steps:  # the first step down: the first
            # one up, inverted
            predicted = np.asarray(np.linalg.inv(self._first_steps[-way]), dtype=np.float64)
        step: NDArray[np.float64] | None
        outcome: dict[str, Any]
        if index in self.left_out:  # the broken reference replaced: not registered
            step = None
            outcome = {"status": "rejected", "model": self.model}
            outcome.update(reason=_BROKEN_REFERENCE, value=float(self.reference))
        else:
            step, outcome = align.register_checked(
                self._pyramids[neighbour],
                pyramid,
                model=self.model,
                typical_residual=typical,
                predicted=predicted,
            )
        if step is not None and not align.jumps_beyond(outcome["step"], _NO_MOTION):
            # only an ordinary step predicts: one that jumps from no motion (trusted as
            # the first after the reference, judged with wider limits) may be a lens
            # that jumped once, after which the next ordinary step would look like a
            # jump from it, or a frame broken by a zoom, after which its neighbour's step
            # would (every frame beyond it was rejected: 5 of 7)
            self._steps[way] = outcome["step"]
            self._first_steps.setdefault(way, outcome["step"])
        energy = _report.tile_energy(gray)
        transforms = self.transforms
        if step is None:
            self._stand_ins[index] = self._stand_ins.get(neighbour, neighbour)
            transforms[index] = transforms[neighbour]
            raw = self.source.raw(self._stand_ins[index])
            gray = self.gray_of(raw)
            pyramid = self._pyramids[neighbour]
        else:
            matrix = step @ transforms[neighbour]
            transforms[index] = matrix / matrix[2, 2]
            residuals.append(1.0 - outcome["correlation"])
        stand_in = self._stand_ins.get(index)
        _report.record(self.rows, index, outcome, transforms[index], neighbour, stand_in, energy)
        return raw, gray, pyramid

    def on_grid(self, index: int) -> NDArray[np.float32]:
        """Frame ``index`` (its stand-in if it was rejected) read again and put on the
        reference grid by its transform: float32 on [0, 1]."""
        kept = self.stand_in(index)
        raw = self.source.raw(index if kept is None else kept)
        return to_reference_grid(raw, self.transforms[index], None, self.warp_order)

    def stand_in(self, index: int) -> int | None:
        """The kept frame merged in place of frame ``index`` (None: it was kept).

        Read from the rows, so it is known here when a child process registered it."""
        return _report.stand_in(self.rows, index)

    def reports(self) -> tuple[_report.FrameReport, ...]:
        """Every frame's :class:`~convstack.stack.registration_report.FrameReport`, once
        all are registered (the pyramids kept for the chain are dropped); logs a warning
        naming the frames not trusted.

        Raises
        ------
        ReferenceBroken
            The reference, chosen by default, looks broken (see the module's notes).
        AlignmentError
            No frame but the reference was kept, or the reference the user chose looks
            broken.
        """
        self._pyramids.clear()
        frames = _report.reports(self.rows, self.source.names)
        rejected = [f for f in frames if f.status == "rejected"]
        self._check_reference(frames)
        if rejected and len(rejected) == len(frames) - 1:
            reasons = "; ".join(f"frame {f.name!r} ({', '.join(f.flags)})" for f in rejected)
            raise AlignmentError(
                f"alignment of every frame but the reference failed: {reasons}; the frames "
                "may not overlap."
            )
        line = _report.summary(frames)
        if line:
            logger.warning("%s", line)
        return frames

    def _check_reference(self, frames: tuple[_report.FrameReport, ...]) -> None:
        """Raise if the reference looks broken: at least half the other frames and one
        of its neighbours rejected, while its two neighbours register to each other
        plausibly, and each one's step from the reference failed or scales or rotates
        well beyond that (see the module's notes)."""
        count, ref = len(self.source), self.reference
        if self.model == "none" or self.left_out or not 0 < ref < count - 1:
            return  # (a reference at an end has no neighbours on both sides to ask)
        rejected = {f.index for f in frames if f.status == "rejected"}
        if 2 * len(rejected) < count - 1 or not rejected & {ref - 1, ref + 1}:
            return
        near = [ref - 1, ref + 1]
        pyramids = [align.gray_pyramid(self.gray_of(self.source.raw(i))) for i in near]
        step, outcome = align.register_checked(pyramids[0], pyramids[1], model=self.model)
        if step is None:
            return  # they disagree too: the frames, not the reference, are broken
        direct = outcome["step"]
        if not all(align.jumps_beyond(frames[i].step, direct) for i in near):
            return  # one of them agrees with the reference: a jump in the stack itself
        names = self.source.names
        found = (
            f"the reference frame {names[ref]!r} looks broken (another scene, a black frame, "
            f"a rotation or zoom jump?): its neighbours {names[near[0]]!r} and "
            f"{names[near[1]]!r} register to each other, not to it"
        )
        if self.chosen:
            raise AlignmentError(
                f"{found}; choose another `reference` (got {ref}), or leave it to the "
                "default, which then takes the nearest trusted frame."
            )
        middle = (count - 1) / 2.0
        new = min(near, key=lambda i: (abs(i - ref), abs(i - middle), i))
        raise ReferenceBroken(
            f"{found}; {names[new]!r} is the reference instead (the output has its "
            f"geometry), {names[ref]!r} left out.",
            new,
            ref,
        )
