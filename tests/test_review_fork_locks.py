"""Review: the engine's memo caches (``_methods.BoundedCache``, 97ecd9e) after a fork.

Each cache guards its entries with a ``threading.Lock``. A process that forks while
another of its threads is inside a cache (planning a call) hands the child that lock
held, by a thread the child does not have: the child's first call through that cache
waited forever (``functools.lru_cache``, used before, has no lock). ``fuse`` forks its
reader child while other threads may run.
"""

from __future__ import annotations

import importlib
import os
import time
import warnings
from collections.abc import Callable

import numpy as np
import pytest

from convstack import _methods, correlate

engine = importlib.import_module("convstack.convolve")

IMAGE = np.random.default_rng(4).random((40, 50))
KERNEL = np.random.default_rng(5).normal(size=(5, 5))


def _in_child(call: Callable[[], np.ndarray], held: _methods.BoundedCache) -> int:
    """Fork while ``held``'s lock is taken (as by a thread inside the cache), run
    ``call`` in the child; the child's exit status (1: wrong result; killed: hung)."""
    expected = call()
    with held._lock:  # another thread, inside the cache when the fork happens
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # (3.12+: fork, threads)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os._exit(0 if np.array_equal(call(), expected) else 1)
            finally:
                os._exit(2)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return -9


@pytest.mark.parametrize(
    ("name", "method"),
    [("_row_geometry", "direct"), ("_spectrum_cached", "fft"), ("_costs", "auto")],
)
def test_a_child_forked_while_a_cache_was_in_use_can_use_it(name: str, method: str) -> None:
    held = getattr(engine if name == "_costs" else _methods, name)
    fresh = IMAGE + 0.0  # (another call's plan than any before: the cache is asked)

    def call() -> np.ndarray:
        engine._PLANS.clear()
        return correlate(fresh, KERNEL, mode="nearest", method=method)

    assert _in_child(call, held) == 0  # before: -9, the child waited on the lock


def test_a_child_forked_while_the_plan_cache_was_written_can_plan() -> None:
    # (the plan cache's lock, older than this session, has the same hazard)
    held = type("Held", (), {"_lock": engine._PLANS_LOCK})

    def call() -> np.ndarray:
        engine._PLANS.clear()  # a new plan: inserted under the lock
        return correlate(IMAGE * 2.0, KERNEL, mode="mirror")

    assert _in_child(call, held) == 0  # type: ignore[arg-type]  # before: -9
