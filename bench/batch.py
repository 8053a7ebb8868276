"""`convstack batch` throughput: one by one, --jobs 2, and a 2-worker local Dask cluster.

    python bench/batch.py                      # 20 stacks of 7 frames, 480 x 640 RGB
    python bench/batch.py --stacks 8 --quick   # a smoke run
    python bench/batch.py --repeat 2 --size 480 640
    python bench/batch.py --overhead --repeat 5  # the runners' own cost: 20 stacks, no fusing

Each run is a fresh `python -m convstack.cli batch ROOT -o OUT --quiet` process, timed
wall-clock from start to exit (worker start-up, Dask's included), on the same stacks:

  one by one     --jobs 1 (in the batch process; fuse forks its own reader child)
  jobs 2         --jobs 2 (two workers forked from the batch's process, each
                 CONVSTACK_THREADS=1 and no fork of its own)
  jobs 2 oversub --jobs 2 with CONVSTACK_THREADS=2 CONVSTACK_FORK=1 in the workers (each
                 fuse as if alone: 2 workers x 2 processes x 2 threads on the cores)
  dask local 2   --scheduler local --jobs 2 (distributed.LocalCluster, 2 worker processes
                 forked as --jobs's are)
  jobs 2 old     with --old SRC: --jobs 2 run by another tree's package (SRC holds its
                 convstack folder, put first on PYTHONPATH), e.g. the commit before a change

The runs are interleaved (one of each, then again with --repeat); the table gives the
best of each, the ratios are throughputs against a peer of the same round, and every
run's outputs are compared byte for byte with the first's. Each run also prints the mean
time a stack took inside its worker (from the batch's report), which leaves out the
start-up of the workers and of the cluster. The stacks are synthetic
(convstack.stack.synthetic: a scene, focus breathing, shifts, noise), written as 8-bit
PNG once per invocation.

--overhead times what the runners cost besides the stacks: a fresh interpreter runs
run_batch on 20 stacks whose work writes one small file (no fusing), with --jobs 2's
forked pool and with a 2-worker local Dask cluster (start, 20 tasks, close), alternated;
it prints the whole process's and run_batch's seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from convstack.stack.synthetic import make_scene, render_stack

RUNS: dict[str, tuple[list[str], dict[str, str]]] = {
    "one by one": (["--jobs", "1"], {}),
    "jobs 2": (["--jobs", "2"], {}),
    "jobs 2 oversub": (["--jobs", "2"], {"CONVSTACK_THREADS": "2", "CONVSTACK_FORK": "1"}),
    "dask local 2": (["--scheduler", "local", "--jobs", "2"], {}),
}


def make_stacks(root: Path, count: int, shape: tuple[int, int], frames: int) -> None:
    """``count`` stacks ``root/stack_NN/frame_K.png``."""
    for k in range(count):
        scene = make_scene(shape, seed=k)
        stack = render_stack(scene, frames, breathing=0.002, shift=2.0, noise=0.01, seed=k)
        folder = root / f"stack_{k:02d}"
        folder.mkdir(parents=True)
        for i, frame in enumerate(stack.frames):
            data = np.rint(np.clip(frame, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(data).save(folder / f"frame_{i + 1}.png")


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every result under ``folder`` (the report excluded)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.png"))
    }


def cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


CPU: dict[str, list[float]] = {}


def run(root: Path, out: Path, args: list[str], env: dict[str, str], name: str = "") -> float:
    """Seconds one batch process takes, start to exit (its CPU seconds, workers'
    included, are kept in ``CPU[name]``: a figure the other jobs on a loaded machine
    disturb less than the wall time)."""
    command = [sys.executable, "-m", "convstack.cli", "batch", str(root), "-o", str(out)]
    cpu = cpu_seconds()
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "--quiet", *args], env={**os.environ, **env}, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"batch failed ({done.returncode}):\n{done.stderr[-3000:]}")
    CPU.setdefault(name, []).append(cpu_seconds() - cpu)
    return seconds


def stack_seconds(out: Path) -> float:
    """Mean seconds a stack took in its worker, from the batch's report."""
    records = [json.loads(line) for line in (out / "batch-report.jsonl").read_text().splitlines()]
    return sum(r["seconds"] for r in records) / max(1, len(records))


OVERHEAD = """
import sys, tempfile, time
from pathlib import Path
from convstack import _writer
from convstack.stack import batch as B

class Names(B.FuseWork):
    def __call__(self, stack, outputs, overwrite):
        _writer.write_bytes(outputs.image, stack.name.encode(), overwrite=overwrite)

temp = Path(tempfile.mkdtemp(prefix="convstack-bench-overhead-"))
stacks = []
for k in range(20):
    frames = (temp / f"{k}a.png", temp / f"{k}b.png")
    for frame in frames:
        frame.write_bytes(b"x")
    stacks.append(B.Stack(f"s{k:02d}", frames))
runner = None
if sys.argv[1] == "dask":
    from convstack.stack.cluster import dask_runner
    runner = dask_runner("local", workers=2)
started = time.perf_counter()
records = B.run_batch(stacks, temp / "out", Names(), jobs=2, runner=runner)
assert [r.status for r in records] == ["done"] * 20
print(time.perf_counter() - started)
"""


def overhead(repeat: int) -> None:
    """The runners' own seconds (see the module's docstring), alternated ``repeat`` times."""
    times: dict[str, list[tuple[float, float]]] = {"jobs 2": [], "dask local 2": []}
    print(f"the runners' own cost, 20 stacks of no work, load {os.getloadavg()[0]:.1f}")
    for _ in range(repeat):
        for name, kind in (("jobs 2", "jobs"), ("dask local 2", "dask")):
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", OVERHEAD, kind], capture_output=True, text=True
            )
            if done.returncode != 0:
                sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            times[name].append((time.perf_counter() - started, float(done.stdout)))
            print(
                f"  {name:<13} process {times[name][-1][0]:5.2f} s  run_batch "
                f"{times[name][-1][1]:5.2f} s"
            )
    for name, pairs in times.items():
        process = statistics.median(p for p, _ in pairs)
        inside = statistics.median(r for _, r in pairs)
        print(f"{name:<13} median: process {process:.2f} s, run_batch {inside:.2f} s")
    print(f"load after: {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stacks", type=int, default=20)
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("ROWS", "COLS"))
    parser.add_argument("--frames", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of all runs")
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--quick", action="store_true", help="8 stacks of 240 x 320")
    parser.add_argument(
        "--old", metavar="SRC", help="also run --jobs 2 with the package under SRC ('jobs 2 old')"
    )
    parser.add_argument(
        "--overhead", action="store_true", help="only the runners' own cost (no fusing)"
    )
    options = parser.parse_args()
    if options.overhead:
        overhead(options.repeat)
        return
    if options.old:
        old = str(Path(options.old).resolve())
        RUNS["jobs 2 old"] = (["--jobs", "2"], {"PYTHONPATH": old})
        if "jobs 2 old" not in options.runs:
            options.runs.append("jobs 2 old")
    if options.quick:
        options.stacks, options.size = 8, (240, 320)
    with tempfile.TemporaryDirectory(prefix="convstack-bench-batch-") as temp:
        root = Path(temp) / "root"
        make_stacks(root, options.stacks, tuple(options.size), options.frames)
        run(root, Path(temp) / "warm", ["--jobs", "1"], {})  # compile/cache the kernels
        if options.old:
            run(root, Path(temp) / "warm-old", ["--jobs", "1"], RUNS["jobs 2 old"][1])
        print(
            f"{options.stacks} stacks of {options.frames} frames, {options.size[0]} x "
            f"{options.size[1]} RGB, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
        )
        best: dict[str, float] = {}
        rounds: list[dict[str, float]] = []
        reference: dict[str, str] | None = None
        for round_ in range(options.repeat):
            times: dict[str, float] = {}
            for name in options.runs:
                out = Path(temp) / f"out-{round_}-{name.replace(' ', '-')}"
                argv, env = RUNS[name]
                times[name] = run(root, out, argv, env, name)
                found = digest(out)
                if reference is None:
                    reference = found
                same = found == reference and len(found) == options.stacks
                print(
                    f"  round {round_ + 1}  {name:<15} {times[name]:7.2f} s  "
                    f"{options.stacks / times[name]:5.2f} stacks/s  cpu {CPU[name][-1]:5.2f} s  "
                    f"{stack_seconds(out):5.2f} s a stack in its worker  "
                    f"outputs {'identical' if same else 'DIFFER'}"
                )
                best[name] = min(best.get(name, float("inf")), times[name])
            rounds.append(times)
        print(f"load after: {os.getloadavg()[0]:.1f}")
        print(
            f"\n{'run':<16} {'best s':>7} {'stacks/s':>9} {'x one by one':>13} {'x jobs 2':>9}"
            f" {'median cpu s':>13}"
        )
        for name in options.runs:
            vs_one = best["one by one"] / best[name] if "one by one" in best else float("nan")
            vs_two = best["jobs 2"] / best[name] if "jobs 2" in best else float("nan")
            print(
                f"{name:<16} {best[name]:7.2f} {options.stacks / best[name]:9.2f} "
                f"{vs_one:13.2f} {vs_two:9.2f} {statistics.median(CPU[name]):13.2f}"
            )
        for peer in ("one by one", "jobs 2"):
            for name in options.runs:
                if peer in rounds[0] and name not in (peer, "one by one"):
                    ratios = [r[peer] / r[name] for r in rounds]
                    listed = ", ".join(f"{x:.2f}" for x in ratios)
                    print(
                        f"throughput {name} / {peer}, each round: {listed} "
                        f"(median {statistics.median(ratios):.2f})"
                    )


if __name__ == "__main__":
    main()
