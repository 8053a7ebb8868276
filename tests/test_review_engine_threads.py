"""Review: the engine's shared task queue (``_methods._run``) under the ways a library
is called: from several user threads at once, in a forked child after the pools ran,
with an interrupt on the calling thread. Oracle: the same calls on one thread."""

from __future__ import annotations

import os
import pickle
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from convstack import _methods, correlate, gaussian_blur, sobel


def _calls() -> list[Callable[[], np.ndarray]]:
    rng = np.random.default_rng(2)
    grey = rng.random((97, 131))
    colour = (rng.random((61, 83, 3)) * 255).astype(np.uint8)
    f32 = rng.random((70, 90, 3)).astype(np.float32)
    kernel = rng.normal(size=(7, 5))
    nan_image = grey.copy()
    nan_image[40, 50] = np.nan
    return [
        lambda: correlate(grey, kernel, mode="mirror", method="direct"),
        lambda: correlate(grey, kernel, mode="wrap", method="separable"),
        lambda: correlate(grey, rng_kernel(17), mode="reflect", method="fft"),
        lambda: correlate(f32, kernel, mode="nearest", channel_axis=-1, stride=2),
        lambda: gaussian_blur(colour, 7, 1.5),
        lambda: gaussian_blur(f32, 5, 1.0, mode="mean"),
        lambda: gaussian_blur(nan_image, 5, 1.0),
        lambda: sobel(colour, 1, 1, 5),
    ]


def rng_kernel(size: int) -> np.ndarray:
    return np.random.default_rng(size).normal(size=(size, size))


@pytest.fixture
def threaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call split over 3 engine threads, however small; FFT tiles of one size
    whatever the thread count (its plan picks tiles for the threads: other rounding)."""
    monkeypatch.setattr(_methods, "THREADS", 3)
    monkeypatch.setattr(_methods, "_pool", None)
    monkeypatch.setattr(_methods, "THREAD_MIN_WORK", 0)
    monkeypatch.setattr(_methods, "fft_plan", lambda span, full, t=1: ((64, 48), (64, 48), 0.0))


def test_calls_from_several_user_threads_at_once_give_the_serial_bits(
    threaded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _calls()
    monkeypatch.setattr(_methods, "THREADS", 1)
    serial = [call() for call in calls]
    monkeypatch.setattr(_methods, "THREADS", 3)

    def worker(seed: int) -> list[tuple[int, np.ndarray]]:
        order = np.random.default_rng(seed).permutation(len(calls) * 3) % len(calls)
        return [(int(i), calls[i]()) for i in order]

    with ThreadPoolExecutor(max_workers=5) as users:
        futures = [users.submit(worker, seed) for seed in range(5)]
        results = [future.result(timeout=120) for future in futures]
    for result in results:
        for i, got in result:
            assert got.dtype == serial[i].dtype
            np.testing.assert_array_equal(got, serial[i])


def test_a_forked_child_runs_threaded_calls_after_the_parent_did(threaded: None) -> None:
    calls = _calls()
    expected = [call() for call in calls]  # the parent's pools are running now
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # (3.12+: fork with threads)
        pid = os.fork()
    if pid == 0:  # the child: its pools' threads stayed in the parent
        try:
            payload = pickle.dumps([call() for call in calls])
        except BaseException as exc:  # pragma: no cover - reported to the parent
            payload = pickle.dumps(repr(exc))
        with os.fdopen(write, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        deadline = time.monotonic() + 120
        data = b""
        os.set_blocking(pipe.fileno(), False)
        while time.monotonic() < deadline:
            chunk = pipe.read()
            if chunk:
                data += chunk
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                data += pipe.read() or b""
                break
            time.sleep(0.02)
        else:  # pragma: no cover - a deadlock in the child
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child's threaded calls did not finish")
    got = pickle.loads(data)
    assert not isinstance(got, str), got
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_interrupt_on_the_calling_thread_waits_for_the_pool_threads(threaded: None) -> None:
    lock = threading.Lock()
    state = {"running": 0, "done": 0}

    def slow() -> None:
        with lock:
            state["running"] += 1
        time.sleep(0.01)
        with lock:
            state["running"] -= 1
            state["done"] += 1

    caller = threading.get_ident()

    def task() -> None:  # the calling thread's first task is interrupted
        if threading.get_ident() == caller:
            time.sleep(0.005)  # (the pool threads have started theirs)
            raise KeyboardInterrupt
        slow()

    tasks = [task] * 9
    with pytest.raises(KeyboardInterrupt):
        _methods._run(tasks, 1.0)
    assert state["running"] == 0  # no thread still writes when the caller goes on
    assert state["done"] >= 1


def test_a_pool_thread_interrupted_reaches_the_caller(threaded: None) -> None:
    caller = threading.get_ident()
    ran: list[Any] = []

    def task() -> None:
        if threading.get_ident() != caller:
            raise KeyboardInterrupt
        time.sleep(0.01)  # (so that a pool thread takes a task)
        ran.append(1)

    with pytest.raises(KeyboardInterrupt):
        _methods._run([task] * 6, 1.0)
