"""The command's start-up: no garbage collection until it is done.

:func:`hold_collector` (at the command's entry, its own process only) and
:func:`start_up_done` (once the command's imports and numba's set-up are done, before
``fuse`` forks) bracket it.
"""

from __future__ import annotations

import gc

__all__ = ["hold_collector", "start_up_done"]

#: Whether :func:`hold_collector` holds the garbage collector (until ``start_up_done``).
_held = False


def hold_collector() -> None:
    """No garbage collection while the command starts: for its own process only.

    Its imports and numba's set-up make hundreds of thousands of objects and no
    garbage, and the collector would walk them again and again (15-30 ms of a
    ``convstack fuse`` start). See :func:`start_up_done`.
    """
    global _held
    gc.disable()
    _held = True


def start_up_done() -> None:
    """End the start-up that :func:`hold_collector` began (else do nothing): what exists
    now lives as long as the process, so it is frozen (never walked again, and a child
    forked later does not copy the pages that a collection would write), and
    collection resumes."""
    global _held
    if _held:
        _held = False
        gc.freeze()
        gc.enable()
