"""Shared fixtures: the optional real data sets beside the checkout."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# fuse forks its reader for frames of 1 MP and more only (_schedule.FORK_MIN_PIXELS);
# the tests' small stacks fork as ever unless a test says otherwise (CONVSTACK_FORK=0)
os.environ.setdefault("CONVSTACK_FORK", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` of the checkout; skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _no_thread_left_behind() -> Iterator[None]:
    """Fail a test that leaves a foreign thread running.

    With a thread other than convstack's own pools alive, ``fuse`` no longer forks
    (``forked.can_fork``), so every fork test later in the run would skip in silence.
    """
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while True:
        left = [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and not t.name.startswith("convstack")
        ]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not left, f"the test left threads running: {[t.name for t in left]}"
