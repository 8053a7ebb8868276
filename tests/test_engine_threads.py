"""The engine's thread hand-off: tasks from one queue on at most ``THREADS`` threads."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from convstack import _methods, correlate


def _recording_tasks(count: int, seconds: float = 0.002):
    """Tasks that note which thread ran them and how many ran at once."""
    lock = threading.Lock()
    state = {"now": 0, "most": 0}
    ran: list[tuple[int, int]] = []

    def make(index: int):
        def task() -> None:
            with lock:
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
            time.sleep(seconds)
            with lock:
                state["now"] -= 1
                ran.append((index, threading.get_ident()))

        return task

    return [make(i) for i in range(count)], state, ran


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("count", [2, 6, 11])
def test_tasks_run_once_on_at_most_threads(threads, count, monkeypatch) -> None:
    """Every task runs exactly once, never more than ``THREADS`` at a time (the calling
    thread included: handing every task but the first to a pool of ``THREADS`` ran
    ``THREADS + 1`` at once)."""
    monkeypatch.setattr(_methods, "THREADS", threads)
    monkeypatch.setattr(_methods, "_pool", None)  # a pool of this many threads
    monkeypatch.setattr(_methods, "THREAD_MIN_WORK", 0)
    tasks, state, ran = _recording_tasks(count)
    _methods._run(tasks, 1.0)
    assert sorted(i for i, _ in ran) == list(range(count))
    assert state["most"] <= threads


def test_small_work_runs_on_the_calling_thread(monkeypatch) -> None:
    monkeypatch.setattr(_methods, "THREADS", 2)
    tasks, state, ran = _recording_tasks(4, 0.0)
    _methods._run(tasks, _methods.THREAD_MIN_WORK - 1.0)
    assert [i for i, _ in ran] == [0, 1, 2, 3]
    assert {ident for _, ident in ran} == {threading.get_ident()}


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("where", [0, 2, 5])
def test_a_failing_task_raises_after_the_others_finish(threads, where, monkeypatch) -> None:
    monkeypatch.setattr(_methods, "THREADS", threads)
    monkeypatch.setattr(_methods, "_pool", None)
    monkeypatch.setattr(_methods, "THREAD_MIN_WORK", 0)
    tasks, state, ran = _recording_tasks(5)

    def boom() -> None:
        raise ValueError("task failed")

    with pytest.raises(ValueError, match="task failed"):
        _methods._run([*tasks[:where], boom, *tasks[where:]], 1.0)
    assert state["now"] == 0  # nothing still running when the error reaches the caller


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_fft_tiles_over_threads_same_bits(threads, monkeypatch) -> None:
    """Twelve FFT tiles taken from the queue by any thread give the result of one
    thread to the bit, and the direct method's to float rounding."""
    monkeypatch.setattr(_methods, "_pool", None)
    monkeypatch.setattr(_methods, "THREAD_MIN_WORK", 0)
    # 64-sample tiles of 56 outputs under a 9x9 kernel: 3 x 4 tiles of 150 x 170
    monkeypatch.setattr(_methods, "fft_plan", lambda span, full, t=1: ((64, 56), (64, 56), 0.0))
    rng = np.random.default_rng(5)
    image = rng.random((150, 170))
    kernel = rng.normal(size=(9, 9))
    monkeypatch.setattr(_methods, "THREADS", 1)
    one = correlate(image, kernel, mode="mirror", method="fft")
    monkeypatch.setattr(_methods, "THREADS", threads)
    got = correlate(image, kernel, mode="mirror", method="fft")
    np.testing.assert_array_equal(got, one)
    direct = correlate(image, kernel, mode="mirror", method="direct")
    np.testing.assert_allclose(got, direct, rtol=1e-10, atol=1e-10)
