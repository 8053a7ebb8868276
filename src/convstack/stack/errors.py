"""The focus-stacking error family: one base class, one subclass per kind of failure."""

from __future__ import annotations

from ..limits import LimitError

__all__ = [
    "AlignmentError",
    "FrameMismatchError",
    "FrameReadError",
    "FrameTooLargeError",
    "OutputError",
    "StackError",
]


class StackError(Exception):
    """Base class of every focus-stacking failure."""


class FrameReadError(StackError):
    """A frame could not be read (missing, unreadable, corrupt, unsupported)."""


class FrameTooLargeError(FrameReadError, LimitError):
    """A frame would decode to more pixels or bytes than :mod:`convstack.limits` allows.

    Raised from the file's header, before anything is decoded; it is a
    :class:`FrameReadError` (the CLI reports it as one) and a ``LimitError``.
    """


class FrameMismatchError(StackError, ValueError):
    """Frames disagree in size, channel count or bit depth, or there are too few."""


class FrameValueError(StackError, ValueError):
    """A frame holds samples the stack cannot use (NaN or infinite float values)."""


class AlignmentError(StackError):
    """Alignment of a frame to the reference diverged or found no match."""


class OutputError(StackError):
    """An output cannot be written: exists without overwrite, missing folder, unknown format."""
