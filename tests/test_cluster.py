"""The batch on a real Dask cluster on localhost: a scheduler and worker processes,
one of them killed with SIGKILL while it writes a stack's result.

Every cluster runs in a child interpreter (:func:`in_child`): a process that has run a
Dask client keeps a thread of distributed's (its offload executor) for the rest of its
life, and `fuse` does not fork where a foreign thread runs, which would change the
tests that run after these in the pytest process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from convstack import _writer
from convstack.stack import batch as B
from test_batch import load, read_report, stray_files, write_frames

pytest.importorskip("distributed")

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent


def in_child(scenario: str, *args: str) -> None:
    """Run ``scenario(*args)`` of this module in a fresh interpreter; fail with its
    output if it fails."""
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    code = f"import sys, test_cluster; test_cluster.{scenario}(*sys.argv[1:])"
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-6000:]


def make_tree(root: Path) -> None:
    for k in range(4):
        write_frames(root / f"s{k}", k)


def same_as_here(tree: Path, out: Path, here: Path) -> None:
    """Every result under ``out`` equals the one fused here, one by one."""
    records = B.run_batch(B.find_stacks(tree), here)
    assert [r.status for r in records] == ["done"] * 4
    for k in range(4):
        assert (out / f"s{k}.png").read_bytes() == (here / f"s{k}.png").read_bytes()


# ------------------------------------------------------------------ a worker killed


class DieOnceWork(B.FuseWork):
    """The first try of stack ``victim`` notes its process id in ``marker``, starts
    writing the result (the writer's temporary file is there) and waits to be killed;
    every other try fuses normally."""

    def __init__(self, victim: str, marker: str) -> None:
        super().__init__()
        object.__setattr__(self, "victim", victim)
        object.__setattr__(self, "marker", marker)

    def __call__(self, stack: B.Stack, outputs: B.Outputs, overwrite: bool) -> None:
        marker = Path(self.marker)  # type: ignore[attr-defined]
        if stack.name == self.victim and not marker.exists():  # type: ignore[attr-defined]

            def fill(stream: object) -> None:
                stream.write(b"\x89PNG half a file")  # type: ignore[attr-defined]
                stream.flush()  # type: ignore[attr-defined]
                marker.write_text(str(os.getpid()))
                time.sleep(120)

            _writer.write_stream(outputs.image, fill, overwrite=overwrite)
        super().__call__(stack, outputs, overwrite)


def killed_mid_stack(folder: str) -> None:
    from convstack.stack.cluster import dask_runner

    base = Path(folder)
    tree, out, marker = base / "root", base / "out", base / "victim.pid"
    make_tree(tree)
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        while not marker.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert list(out.glob(".s1.png.*.tmp")), "the writer's temporary file is there"
        pid = int(marker.read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    records = B.run_batch(
        B.find_stacks(tree),
        out,
        DieOnceWork("s1", str(marker)),
        runner=dask_runner("local", workers=2),
    )
    thread.join(5)
    assert killed, "the victim was never killed"
    assert [r.status for r in records] == ["done"] * 4, [r.error for r in records]
    victim = next(r for r in records if r.stack == "s1")
    assert victim.worker is not None and not victim.worker.endswith(f":{killed[0]}")
    same_as_here(tree, out, base / "here")
    assert stray_files(out) == []
    assert sorted(p.name for p in out.iterdir()) == [f"s{k}.png" for k in range(4)]


def test_worker_killed_mid_stack_is_retried_elsewhere(tmp_path: Path) -> None:
    in_child("killed_mid_stack", str(tmp_path))


class AlwaysDieWork(B.FuseWork):
    """Kills its own worker on stack 's2', every try."""

    def __call__(self, stack: B.Stack, outputs: B.Outputs, overwrite: bool) -> None:
        if stack.name == "s2":
            time.sleep(0.3)  # the worker's previous task is reported finished first
            os.kill(os.getpid(), signal.SIGKILL)
        super().__call__(stack, outputs, overwrite)


def always_dies(folder: str) -> None:
    import dask

    from convstack.stack.cluster import dask_runner

    base = Path(folder)
    tree, out = base / "root", base / "out"
    make_tree(tree)
    # one retry (the default is 3): a task the scheduler still saw running on a worker
    # as it died is counted against that worker's death too, and is retried
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        records = B.run_batch(
            B.find_stacks(tree), out, AlwaysDieWork(), runner=dask_runner("local", workers=2)
        )
    status = {r.stack: r.status for r in records}
    expected = {"s0": "done", "s1": "done", "s2": "failed", "s3": "done"}
    assert status == expected, [r.error for r in records]
    failed = next(r for r in records if r.stack == "s2")
    assert "the cluster could not run it (KilledWorker" in (failed.error or "")
    assert not (out / "s2.png").exists()
    assert stray_files(out) == []


def test_a_stack_that_kills_every_worker_fails_alone(tmp_path: Path) -> None:
    in_child("always_dies", str(tmp_path))


# ------------------------------------------------------------------ the command


def test_command_on_a_local_cluster_equals_jobs(tmp_path: Path) -> None:
    tree = tmp_path / "root"
    make_tree(tree)
    command = [sys.executable, "-m", "convstack.cli", "batch", str(tree), "--quiet"]
    done = subprocess.run(
        [*command, "-o", str(tmp_path / "dask"), "--scheduler", "local", "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "4 fused, 0 skipped, 0 failed of 4 stacks" in done.stderr
    same_as_here(tree, tmp_path / "dask", tmp_path / "here")
    assert load(tmp_path / "dask" / "s0.png").shape == (48, 64, 3)
    report = read_report(tmp_path / "dask" / B.REPORT_NAME)
    assert {r["status"] for r in report.values()} == {"done"}
    assert len({r["worker"] for r in report.values()}) <= 2


def with_an_address(folder: str) -> None:
    """A running cluster whose workers started in another folder; the command gets
    relative paths, which must reach the workers absolute."""
    import distributed

    from convstack.cli import main

    base = Path(folder)
    make_tree(base / "root")
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},
    ) as running:
        os.chdir(base)
        argv = ["batch", "root", "-o", "out", "--quiet", "--scheduler", running.scheduler_address]
        assert main(argv) == 0
    same_as_here(base / "root", base / "out", base / "here")
    report = read_report(base / "out" / B.REPORT_NAME)
    assert report["s0"]["outputs"] == [str(base / "out" / "s0.png")]


def test_command_with_a_scheduler_address_and_relative_paths(tmp_path: Path) -> None:
    in_child("with_an_address", str(tmp_path))


def profiles() -> bool:
    """In a worker: whether its statistical profiler is on."""
    import dask.config

    return bool(dask.config.get("distributed.worker.profile.enabled"))


def saturation(dask_scheduler: object) -> float:
    """On the scheduler: how many tasks it queues on a worker thread."""
    return float(dask_scheduler.WORKER_SATURATION)  # type: ignore[attr-defined]


def local_shares(folder: str, start: str) -> None:
    """``start`` 'fork': this process has no other thread, its workers are forked from it;
    'spawn': a thread runs (fork would be unsafe), they are spawned."""
    from convstack.limits import set_memory_limit
    from convstack.stack.cluster import dask_runner
    from test_batch import ProbeWork

    base = Path(folder)
    for k in range(2):
        (base / "root" / f"s{k}").mkdir(parents=True)
        for i in range(2):
            (base / "root" / f"s{k}" / f"f{i}.png").write_bytes(b"")
    set_memory_limit("3GiB")
    stacks = B.find_stacks(base / "root")
    profiling: dict[str, bool] = {}
    saturations: list[float] = []

    def inspect(client: object) -> None:
        profiling.update(client.run(profiles))  # type: ignore[attr-defined]
        saturations.append(client.run_on_scheduler(saturation))  # type: ignore[attr-defined]

    release = threading.Event()
    other = threading.Thread(target=release.wait)
    if start == "spawn":
        other.start()
    try:
        runner = dask_runner("local", on_submitted=inspect)
        records = B.run_batch(stacks, base / "out", ProbeWork(), runner=runner)
    finally:
        release.set()
    assert [r.status for r in records] == ["done"] * 2, [r.error for r in records]
    assert list(profiling.values()) == [False, False]  # no profiler sampling the stacks
    assert saturations == [1.0]  # one stack at a time on each worker, none queued
    share = str(max(1, (os.cpu_count() or 1) // 2))
    forked = sys.platform == "linux" and start == "fork"
    for k in range(2):
        seen = (base / "out" / f"s{k}.png").read_text().split()
        assert seen[-5:-2] == [share, share, str(3 * 2**29)], seen
        # forked: numba came loaded from this process; no module kept its thread count
        assert seen[-2:] == [str(forked), "none"], seen


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_local_workers_get_their_shares_and_no_profiler(tmp_path: Path, start: str) -> None:
    in_child("local_shares", str(tmp_path), start)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scheduler": ""}, r"`scheduler` must be 'local' or an address; got ''"),
        ({"scheduler": "local", "workers": 0}, r"`workers` must be an integer >= 1; got 0"),
        ({"scheduler": "local", "retries": -1}, r"`retries` must be an integer >= 0; got -1"),
    ],
)
def test_runner_argument_errors(kwargs: dict, message: str) -> None:
    from convstack.stack.cluster import dask_runner

    with pytest.raises(ValueError, match=message):
        dask_runner(**kwargs)


def test_no_thread_is_left_in_this_process() -> None:
    """What the child interpreters are for (see the module's docstring)."""
    names = [t.name for t in threading.enumerate()]
    assert not [name for name in names if name.startswith("Dask")], names
