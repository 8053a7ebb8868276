"""The forked worker process: messages both ways, errors raised in the parent, shared memory."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from convstack.stack import forked

pytestmark = pytest.mark.skipif(not forked.can_fork(), reason="no fork on this platform")


def _doubler(inbox: forked.Channel, outbox: forked.Channel) -> None:
    while True:
        try:
            value = inbox.recv()
        except EOFError:
            return
        outbox.send(("ok", 2 * value))


def test_messages_go_both_ways_in_order() -> None:
    with forked.ForkedWorker(_doubler) as worker:
        for value in (1, 5, 7):
            worker.send(value)
        assert [worker.receive() for _ in range(3)] == [2, 10, 14]


def test_shared_array_is_written_by_the_child() -> None:
    shared = forked.shared_array((3, 4), np.float32)
    private = np.zeros((3, 4), np.float32)

    def fill(inbox: forked.Channel, outbox: forked.Channel) -> None:
        shared[...] = np.arange(12).reshape(3, 4)
        private[...] = 1  # the child's own copy
        outbox.send(("ok", None))

    with forked.ForkedWorker(fill) as worker:
        worker.receive()
    np.testing.assert_array_equal(shared, np.arange(12).reshape(3, 4))
    assert not private.any()


class _Unpicklable(Exception):
    def __reduce__(self):  # type: ignore[no-untyped-def]
        raise TypeError("cannot pickle this")


@pytest.mark.parametrize(
    ("error", "kind", "match"),
    [
        (ValueError("frame 3 is broken"), ValueError, "frame 3 is broken"),
        (_Unpicklable("odd"), RuntimeError, "_Unpicklable: odd"),
    ],
)
def test_an_exception_in_the_child_is_raised_in_the_parent(
    error: Exception, kind: type, match: str
) -> None:
    def fail(inbox: forked.Channel, outbox: forked.Channel) -> None:
        outbox.send(("ok", "first"))
        raise error

    with forked.ForkedWorker(fail) as worker:
        assert worker.receive() == "first"
        with pytest.raises(kind, match=match):
            worker.receive()


def test_a_child_that_ends_early_is_an_error() -> None:
    with (
        forked.ForkedWorker(lambda inbox, outbox: None) as worker,
        pytest.raises(ChildProcessError, match="ended unexpectedly"),
    ):
        worker.receive()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_closing_stops_a_child_that_still_works() -> None:
    with forked.ForkedWorker(_doubler) as worker:
        worker.send(1)  # never read back
        pid = worker.pid
    assert worker.pid == 0 and _gone(pid)


def test_an_error_in_the_parent_kills_a_busy_child() -> None:
    import time

    def busy(inbox: forked.Channel, outbox: forked.Channel) -> None:
        time.sleep(30)

    started = time.perf_counter()
    with pytest.raises(KeyError), forked.ForkedWorker(busy) as worker:
        pid = worker.pid
        raise KeyError("parent failed")
    assert _gone(pid) and time.perf_counter() - started < 5


def test_no_fork_when_switched_off_or_with_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(forked.ENVIRONMENT_SWITCH, "0")
    assert not forked.can_fork()
    monkeypatch.delenv(forked.ENVIRONMENT_SWITCH)
    assert forked.can_fork()
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert not forked.can_fork()
    finally:
        release.set()
        other.join()
    assert forked.can_fork()


def test_pools_of_convstack_do_not_prevent_forking_and_work_in_the_child() -> None:
    import convstack._methods as methods
    from convstack.filters import _dtype

    _dtype._pool().submit(int).result()  # starts the filters' pool
    assert any(t.name.startswith("convstack-filters") for t in threading.enumerate())
    assert forked.can_fork()

    def use_pool(inbox: forked.Channel, outbox: forked.Channel) -> None:
        outbox.send(("ok", _dtype._pool().submit(sum, [1, 2]).result()))

    with forked.ForkedWorker(use_pool) as worker:
        assert worker.receive() == 3
    assert methods._pool is None or methods._pool is methods._executor()


def _small_stack(rows: int = 40, cols: int = 50) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    base = rng.random((rows, cols + 2, 3)).astype(np.float32)
    return [base[:, i : i + cols].copy() for i in range(3)]


@pytest.fixture
def worker_kind(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records whether fuse's scheduler forked its reader or ran it in a thread."""
    from convstack.stack import _schedule

    used: list[str] = []
    real_forked, real_threaded = _schedule.Scheduler.forked, _schedule.Scheduler.threaded

    def forked_spy(self: _schedule.Scheduler) -> object:
        used.append("forked")
        return real_forked(self)

    def threaded_spy(self: _schedule.Scheduler, pool: object) -> object:
        used.append("threaded")
        return real_threaded(self, pool)

    monkeypatch.setattr(_schedule.Scheduler, "forked", forked_spy)
    monkeypatch.setattr(_schedule.Scheduler, "threaded", threaded_spy)
    return used


@pytest.mark.parametrize(
    ("switch", "least", "cores", "expected"),
    [
        (None, None, 4, "threaded"),  # 2000 pixels: under FORK_MIN_PIXELS
        (None, 2000, 4, "forked"),  # at the threshold
        (None, 2001, 4, "threaded"),
        (None, 2000, 2, "threaded"),  # under FORK_MIN_CORES: any size
        ("1", None, 2, "forked"),  # forced
        ("0", 2000, 4, "threaded"),  # never
    ],
)
def test_small_frames_are_read_in_a_thread_unless_forced(
    monkeypatch: pytest.MonkeyPatch,
    worker_kind: list[str],
    switch: str | None,
    least: int | None,
    cores: int,
    expected: str,
) -> None:
    from convstack.stack import _schedule, fuse

    if switch is None:
        monkeypatch.delenv(forked.ENVIRONMENT_SWITCH, raising=False)
    else:
        monkeypatch.setenv(forked.ENVIRONMENT_SWITCH, switch)
    if least is not None:
        monkeypatch.setattr(_schedule, "FORK_MIN_PIXELS", least)
    monkeypatch.setattr(_schedule, "_cores", lambda: cores)
    result = fuse(_small_stack(), align="translation")
    assert worker_kind == [expected]
    assert result.image.shape == (40, 50, 3)


def test_the_frames_fuse_to_the_same_bits_in_a_thread_or_a_child(
    monkeypatch: pytest.MonkeyPatch, worker_kind: list[str]
) -> None:
    from convstack.stack import fuse

    frames = _small_stack(60, 70)
    results = []
    for switch in ("1", "0"):
        monkeypatch.setenv(forked.ENVIRONMENT_SWITCH, switch)
        results.append(fuse(frames, align="translation"))
    assert worker_kind == ["forked", "threaded"]
    for name in ("image", "depth", "confidence"):
        np.testing.assert_array_equal(getattr(results[0], name), getattr(results[1], name))


def test_frames_handed_back_to_be_warped_here_come_through_their_slot(
    monkeypatch: pytest.MonkeyPatch, worker_kind: list[str]
) -> None:
    """The child hands the frames this process warps (share 0) back through the
    shared raw slots, not pickled down the pipe, a rejected frame's stand-in too: the
    same bits as the threaded run."""
    from convstack.stack import _schedule, fuse

    rng = np.random.default_rng(5)
    base = rng.random((48, 70, 3)).astype(np.float32)
    frames = [base[:, i : i + 64].copy() for i in range(5)]
    frames[0] = np.zeros_like(frames[0])  # black: rejected, frame 1 (moved) stands in
    monkeypatch.setattr(_schedule, "balanced_share", lambda costs: 0)  # warped here
    monkeypatch.setattr(_schedule, "read_credit", lambda costs, share: 0.0)  # read there
    received: list[tuple[object, ...]] = []
    receive = forked.ForkedWorker.receive

    def spy(self: forked.ForkedWorker) -> tuple[object, ...]:
        received.append(receive(self))
        return received[-1]

    monkeypatch.setattr(forked.ForkedWorker, "receive", spy)
    results = []
    for switch in ("1", "0"):
        monkeypatch.setenv(forked.ENVIRONMENT_SWITCH, switch)
        results.append(fuse(frames, align="translation"))
    assert worker_kind == ["forked", "threaded"]
    assert [f.status for f in results[0].frames].count("rejected") == 1
    for name in ("image", "depth", "confidence"):
        np.testing.assert_array_equal(getattr(results[0], name), getattr(results[1], name))
    # the frames warped here (all but the first two, sent before any cost was
    # measured: frames 1 and 0, whose stand-in is frame 1) are in their slots, none
    # in its message
    assert [m[1:4] for m in received[2:]] == [(None, True, False)] * 2
