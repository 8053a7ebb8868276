"""Peak memory of ``convstack fuse`` on big synthetic stacks (issue 14's method).

A fresh ``convstack fuse`` runs on a stack this script writes (uncompressed TIFF frames
in a temporary folder; the writing is timed apart), while the script samples every
``--interval`` seconds (20 ms) the resident size (``VmRSS`` of ``/proc/PID/status``) of
every process of the run's tree, children included, and sums them: the peak of that
sum, bytes per pixel of one frame, and the wall time of the run. The sum counts the
pages a forked child shares with its parent twice (the frame slots, copy-on-write
pages): ``--pss`` also samples the proportional sizes (``Pss`` of ``smaps_rollup``),
which split shared pages between the processes.

    python bench/memory.py                      # 6 MP colour x 5, 10, 20; 12 MP x 5
    python bench/memory.py --cases 6mp-grey16 24mp-grey16   # grey 16-bit, two sizes
    python bench/memory.py --cases big45 --frames 10 --env CONVSTACK_FORK=0
    python bench/memory.py --cases big45 big200 # 45 MP colour, 200 MP grey 16-bit
    python bench/memory.py --cases 6mp --frames 10 --old /tmp/base/src   # and an older tree
    python bench/memory.py --cases 6mp 12mp --memory-limit 1.2GiB 2GiB   # within a budget?
    python bench/memory.py --cases 6mp big45 --frames 10 20 --memory-limit 2GiB  # strip-major

A budget under the frame-major merge's estimate makes ``fuse`` merge strip-major
(frames cached on disk in the system's temporary folder, float32: 12 bytes a pixel of
colour per frame, freed when the run ends); a case is skipped when the disk lacks room
for its frames and that cache.

``--old SRC`` runs the same stack again with ``PYTHONPATH=SRC`` (another checkout's
``src``) right after, for a ratio in the same run. Check ``free -g`` before the big
cases: 45 MP colour frames are 135 MB each on disk, 200 MP grey 16-bit 400 MB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from convstack.limits import parse_size

#: name -> (rows, cols, channels, dtype, frame counts)
CASES: dict[str, tuple[int, int, int, str, list[int]]] = {
    "6mp": (2000, 3000, 3, "uint8", [5, 10, 20]),
    "12mp": (2828, 4243, 3, "uint8", [5]),
    "6mp-grey16": (2000, 3000, 1, "uint16", [5]),
    "24mp-grey16": (4000, 6000, 1, "uint16", [5]),
    "big45": (5504, 8256, 3, "uint8", [50]),
    "big200": (12000, 16667, 1, "uint16", [20]),
}


def make_stack(
    folder: Path, shape: tuple[int, int, int], dtype: str, count: int, move: bool = False
) -> list[Path]:
    """``count`` frames of a textured scene, each sharp in its own band of rows and
    blurred elsewhere (a focus sweep down the image), as uncompressed TIFF; ``move``:
    frame i shifted by (0.37 i, -0.23 i) px and zoomed by 0.03 i % about the centre
    (focus breathing), so that fuse registers and warps every frame but the first."""
    rows, cols, channels = shape
    rng = np.random.default_rng(0)
    top = float(np.iinfo(np.dtype(dtype)).max)
    coarse = rng.random((rows // 16 + 1, cols // 16 + 1, channels), np.float32)
    texture = cv2.resize(coarse, (cols, rows), interpolation=cv2.INTER_CUBIC)
    if texture.ndim == 2:
        texture = texture[:, :, None]
    fine = rng.random((rows, cols, channels), np.float32)
    texture = np.clip(0.7 * texture + 0.3 * fine, 0.0, 1.0)
    del fine, coarse
    sharp = np.rint(texture * top).astype(dtype)
    del texture
    blurred = cv2.GaussianBlur(sharp, (0, 0), 3.0)
    if blurred.ndim == 2:
        blurred = blurred[:, :, None]
    paths = []
    for i in range(count):
        frame = blurred.copy()
        lo, hi = rows * i // count, rows * (i + 1) // count
        frame[lo:hi] = sharp[lo:hi]
        path = folder / f"frame_{i:03d}.tif"
        image = frame[:, :, 0] if channels == 1 else frame[:, :, ::-1]  # OpenCV: BGR
        if move and i:
            zoom = cv2.getRotationMatrix2D((cols / 2, rows / 2), 0.0, 1.0 + 0.0003 * i)
            zoom[:, 2] += (0.37 * i, -0.23 * i)
            image = cv2.warpAffine(image, zoom, (cols, rows), borderMode=cv2.BORDER_REFLECT)
        if not cv2.imwrite(str(path), image, [cv2.IMWRITE_TIFF_COMPRESSION, 1]):
            raise OSError(f"cannot write {path}")
        paths.append(path)
    return paths


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's ``children`` list)."""
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def _tree(root: int) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo += _children(pid)
    return pids


def _field(path: str, name: str) -> int:
    """A ``kB`` field of a /proc file, in bytes (0 when the process is gone)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_fuse(
    paths: list[Path],
    out: Path,
    interval: float,
    pss: bool,
    pythonpath: str | None,
    extra: dict[str, str] | None = None,
    limit: float = 0.0,
    options: list[str] | None = None,
) -> dict[str, float]:
    """Run ``convstack fuse`` on ``paths``; peak sums of the tree's RSS (and PSS), wall s.

    ``limit``: bytes; the run is killed (``killed``: 1) once the sum passes it."""
    env = dict(os.environ, **(extra or {}))
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    env.setdefault("CONVSTACK_MAX_PIXELS", str(1 << 31))
    script = shutil.which("convstack") or str(Path(sys.executable).parent / "convstack")
    command = [sys.executable, script, "fuse", *map(str, paths), "-o", str(out)]
    command += ["--quiet", "--force", *(options or [])]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, start_new_session=True)
    peak_rss = peak_pss = 0
    most = 0
    while process.poll() is None:
        pids = _tree(process.pid)
        most = max(most, len(pids))
        peak_rss = max(peak_rss, sum(_field(f"/proc/{p}/status", "VmRSS:") for p in pids))
        if limit and peak_rss > limit:  # the run's own session: its tree, nothing else
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return {"rss": peak_rss, "pss": peak_pss, "wall": float("nan"), "killed": 1}
        if pss:
            peak_pss = max(peak_pss, sum(_field(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids))
        time.sleep(interval)
    wall = time.perf_counter() - start
    _, err = process.communicate()
    if process.returncode:
        if "more than the memory limit" in err.decode():  # a budget it refuses: a row
            return {"rss": peak_rss, "pss": peak_pss, "wall": wall, "killed": 0, "refused": 1}
        raise RuntimeError(f"fuse failed ({process.returncode}): {err.decode()[-2000:]}")
    return {"rss": peak_rss, "pss": peak_pss, "wall": wall, "processes": most, "killed": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["6mp", "12mp"], choices=sorted(CASES))
    parser.add_argument("--frames", type=int, nargs="+", help="frame counts (default: the case's)")
    parser.add_argument("--interval", type=float, default=0.02, help="sampling period, s")
    parser.add_argument("--pss", action="store_true", help="also sample PSS (smaps_rollup)")
    parser.add_argument(
        "--move", action="store_true", help="frames shifted and zoomed a little: fuse warps them"
    )
    parser.add_argument(
        "--old", help="also run with PYTHONPATH=OLD (another tree's src), under each budget too"
    )
    parser.add_argument("--tmp", help="folder for the stack (default: the system's temp)")
    parser.add_argument(
        "--kill-above", type=float, default=8.0, help="GiB: stop a run whose sum passes it"
    )
    parser.add_argument(
        "--env", nargs="+", default=[], metavar="KEY=VALUE", help="also run with these set"
    )
    parser.add_argument(
        "--memory-limit",
        nargs="+",
        default=[],
        metavar="SIZE",
        help="also run `fuse --memory-limit SIZE` for each; the row says whether the peak "
        "stayed within it",
    )
    args = parser.parse_args()
    print("| case | frames | run | peak GiB (RSS sum) | B/px | PSS GiB | wall s | s/MP/frame |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for name in args.cases:
        rows, cols, channels, dtype, counts = CASES[name]
        counts = args.frames or counts
        # the TIFF frames, plus the strip-major merge's frame cache (float32 on the
        # reference grid, in the system's temporary folder) where a budget picks it
        itemsize = np.dtype(dtype).itemsize
        needed = max(counts) * rows * cols * channels * (itemsize + 4)
        free = shutil.disk_usage(args.tmp or tempfile.gettempdir()).free
        if needed > free * 0.8:
            print(f"<!-- {name}: skipped, needs ~{needed / 2**30:.0f} GiB of disk, "
                  f"{free / 2**30:.0f} GiB free -->")  # fmt: skip
            continue
        work = Path(tempfile.mkdtemp(prefix="bench_memory_", dir=args.tmp))
        try:
            t = time.perf_counter()
            paths = make_stack(work, (rows, cols, channels), dtype, max(counts), args.move)
            os.sync()  # the frames on disk: no writeback competing with the first run
            print(
                f"<!-- {name}: {max(counts)} frames written in {time.perf_counter() - t:.1f} s -->"
            )
            for n in counts:
                Run = tuple[str, str | None, dict[str, str], list[str]]
                runs: list[Run] = [("this tree", None, {}, [])]
                if args.old:
                    runs.append(("--old", args.old, {}, []))
                if args.env:
                    extra = dict(item.split("=", 1) for item in args.env)
                    runs.append((" ".join(args.env), None, extra, []))
                for size in args.memory_limit:
                    runs.append((f"--memory-limit {size}", None, {}, ["--memory-limit", size]))
                    if args.old:  # the other tree under the same budget, right after
                        option = ["--memory-limit", size]
                        runs.append((f"--old --memory-limit {size}", args.old, {}, option))
                for label, path, extra, options in runs:
                    limit = args.kill_above * 2**30
                    r = run_fuse(
                        paths[:n],
                        work / "out.tif",
                        args.interval,
                        args.pss,
                        path,
                        extra,
                        limit,
                        options,
                    )
                    if r["killed"]:
                        print(f"| {name} | {n} | {label} | > {args.kill_above} (killed) |")
                        continue
                    if r.get("refused"):
                        print(f"| {name} | {n} | {label} | refused before reading |")
                        continue
                    if options:
                        budget = parse_size(options[1], "--memory-limit")
                        label += " (within)" if r["rss"] <= budget else " (OVER)"
                    pixels = rows * cols
                    print(
                        f"| {name} {rows}x{cols}x{channels} {dtype} | {n} | {label} "
                        f"| {r['rss'] / 2**30:.2f} | {r['rss'] / pixels:.0f} "
                        f"| {r['pss'] / 2**30:.2f} | {r['wall']:.1f} "
                        f"| {r['wall'] / (pixels / 1e6) / n:.3f} |",
                        flush=True,
                    )
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
