"""Pieces shared by the subcommands: the user-error type and a stderr progress bar (the
command's start-up, its garbage collector held: :mod:`convstack.cli._startup`)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from ..progress import ProgressCallback

__all__ = ["ProgressBar", "UserError", "progress_bar"]


class UserError(Exception):
    """A mistake by the user (bad file, bad option): printed as ``error: ...``, no traceback."""


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """A ``progress(stage, done, total)`` callback drawing one bar per stage on a stream.

    On a terminal the bar is redrawn in place (carriage return); elsewhere (a log file,
    a pipe) a line is written at most every two seconds and when a stage ends. The time
    left is estimated from the mean time per unit so far in the stage.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 28) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.stage: str | None = None
        self.start = 0.0
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last_draw = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if stage != self.stage:
            if self.stage is not None and self.interactive:
                self.stream.write("\n")
            self.stage, self.start = stage, now
            self.last_draw = 0.0 if self.interactive else now
        finished = total > 0 and done >= total
        if not self.interactive and not finished and (done == 0 or now - self.last_draw < 2.0):
            return
        if self.interactive and not finished and now - self.last_draw < 0.1 and done > 0:
            return
        self.last_draw = now
        elapsed = now - self.start
        fraction = min(1.0, done / total) if total > 0 else 1.0
        filled = int(round(fraction * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        if finished:
            tail = f"done in {_clock(elapsed)}"
        elif done > 0:
            tail = f"ETA {_clock(elapsed / done * (total - done))}"
        else:
            tail = "ETA --:--"
        line = f"{stage:<10} [{bar}] {done}/{total}  {tail}"
        if self.interactive:
            self.stream.write("\r" + line + ("\n" if finished else ""))
            if finished:
                self.stage = None
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def progress_bar(quiet: bool, stream: TextIO | None = None) -> ProgressCallback | None:
    """The CLI's progress callback: a :class:`ProgressBar` on stderr, or None when quiet."""
    return None if quiet else ProgressBar(stream)
