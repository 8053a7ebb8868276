"""Progress reporting: the library calls a callback and never prints."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ProgressCallback", "report"]

#: ``callback(stage, done, total)``: ``stage`` names the work ("load", "align",
#: "sharpness", "fuse", ...), ``done`` of ``total`` units are finished.
ProgressCallback = Callable[[str, int, int], None]


def report(callback: ProgressCallback | None, stage: str, done: int, total: int) -> None:
    """Call ``callback`` if one was given."""
    if callback is not None:
        callback(stage, done, total)
