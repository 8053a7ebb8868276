"""The batch on a real Dask cluster on localhost: a scheduler and worker processes,
one of them killed with SIGKILL while it writes a stack's result."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from convstack import _writer
from convstack.cli import main
from convstack.stack import batch as B
from test_batch import load, read_report, stray_files, write_frames

distributed = pytest.importorskip("distributed")
cluster = pytest.importorskip("convstack.stack.cluster")

pytestmark = pytest.mark.slow


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for k in range(4):
        write_frames(root / f"s{k}", k)
    return root


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


def test_worker_killed_mid_stack_is_retried_elsewhere(tree: Path, tmp_path: Path) -> None:
    marker = tmp_path / "victim.pid"
    out = tmp_path / "out"
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
        runner=cluster.dask_runner("local", workers=2),
    )
    thread.join(5)
    assert killed, "the victim was never killed"
    assert [r.status for r in records] == ["done"] * 4, [r.error for r in records]
    victim = next(r for r in records if r.stack == "s1")
    assert victim.worker is not None and not victim.worker.endswith(f":{killed[0]}")
    # every result equals the one fused here, one by one; nothing else is left
    here = B.run_batch(B.find_stacks(tree), tmp_path / "here")
    assert [r.status for r in here] == ["done"] * 4
    for k in range(4):
        assert (out / f"s{k}.png").read_bytes() == (tmp_path / "here" / f"s{k}.png").read_bytes()
    assert stray_files(out) == []
    assert sorted(p.name for p in out.iterdir()) == [f"s{k}.png" for k in range(4)]


class AlwaysDieWork(B.FuseWork):
    """Kills its own worker on stack 's2', every try."""

    def __call__(self, stack: B.Stack, outputs: B.Outputs, overwrite: bool) -> None:
        if stack.name == "s2":
            time.sleep(0.3)  # the worker's previous task is reported finished first
            os.kill(os.getpid(), signal.SIGKILL)
        super().__call__(stack, outputs, overwrite)


def test_a_stack_that_kills_every_worker_fails_alone(tree: Path, tmp_path: Path) -> None:
    import dask

    out = tmp_path / "out"
    # one retry (the default is 3): a task the scheduler still saw running on a worker
    # as it died is counted against that worker's death too, and is retried
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        records = B.run_batch(
            B.find_stacks(tree),
            out,
            AlwaysDieWork(),
            runner=cluster.dask_runner("local", workers=2),
        )
    status = {r.stack: r.status for r in records}
    assert status == {"s0": "done", "s1": "done", "s2": "failed", "s3": "done"}, [
        r.error for r in records
    ]
    failed = next(r for r in records if r.stack == "s2")
    assert "the cluster could not run it (KilledWorker" in (failed.error or "")
    assert not (out / "s2.png").exists()
    assert stray_files(out) == []


def test_command_on_a_local_cluster_equals_jobs(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["batch", str(tree), "-o", str(tmp_path / "one"), "--quiet"]) == 0
    code = main(
        ["batch", str(tree), "-o", str(tmp_path / "dask"), "--scheduler", "local", "--jobs", "2"]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    for k in range(4):
        one, dask = tmp_path / "one" / f"s{k}.png", tmp_path / "dask" / f"s{k}.png"
        assert one.read_bytes() == dask.read_bytes()
        assert load(dask).shape == (48, 64, 3)
    report = read_report(tmp_path / "dask" / B.REPORT_NAME)
    assert {r["status"] for r in report.values()} == {"done"}
    assert all(not r["worker"].endswith(f":{os.getpid()}") for r in report.values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scheduler": ""}, r"`scheduler` must be 'local' or an address; got ''"),
        ({"scheduler": "local", "workers": 0}, r"`workers` must be an integer >= 1; got 0"),
        ({"scheduler": "local", "retries": -1}, r"`retries` must be an integer >= 0; got -1"),
    ],
)
def test_runner_argument_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cluster.dask_runner(**kwargs)


def test_command_with_a_scheduler_address_and_relative_paths(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A running cluster whose workers started in another folder: paths are sent
    absolute."""
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},
    ) as running:
        monkeypatch.chdir(tmp_path)
        argv = ["batch", "root", "-o", "out", "--quiet", "--scheduler", running.scheduler_address]
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 0, err
    here = B.run_batch(B.find_stacks(tree), tmp_path / "here")
    assert [r.status for r in here] == ["done"] * 4
    for k in range(4):
        assert (tmp_path / "out" / f"s{k}.png").read_bytes() == (
            tmp_path / "here" / f"s{k}.png"
        ).read_bytes()
    report = read_report(tmp_path / "out" / B.REPORT_NAME)
    assert report["s0"]["outputs"] == [str(tmp_path / "out" / "s0.png")]
