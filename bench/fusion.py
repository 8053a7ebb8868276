"""Focus-stacking quality and speed: convstack's methods against the lab and the peers.

    python bench/fusion.py                 # synthetic stacks + bug + PCB (about 5-10 min)
    python bench/fusion.py --quick         # three synthetic stacks only
    python bench/fusion.py --out /tmp/fb   # also keep every output and 1:1 edge crops
    python bench/fusion.py --memory 10 40  # peak RSS of fuse() on N frames of 2000 x 3000 RGB
    python bench/fusion.py --alternate 5 --cases bug pcb breathing-1 breathing-4
                                           # convstack (warm; command line; handed to a
                                           # `convstack serve`) vs focusweave in turn
    python bench/fusion.py --alternate 5 --interpolations cubic quintic --cases bug pcb
                                           # the default fuse with each warp in turn (warm)
    python bench/fusion.py --warp 5        # warp of a rotated PCB frame vs OpenCV, best of 5
    python bench/fusion.py --render spline --cases breathing-1 breathing-4
                                           # synthetic frames resampled by SciPy's quintic

Inputs
  synthetic  convstack.stack.synthetic scenes (480 x 640, 9 frames) rendered with a thin-lens
             defocus model: 'aligned' (no motion, no noise), 'breathing' (0.4 % magnification
             per frame + random shifts up to 3 px + noise sigma 0.01) and 'halo' (bright sharp
             objects over a dark background), two seeds each. Scored against the scene's
             all-in-focus truth (PSNR, SSIM; a 16 px border is left out).
  bug        ../shared/data/bug (13 frames, 1344 x 1021): scored against result.png (the
             authors' composite) after registering each output to it (similarity, our align).
             Also the high-pass RMS (SciPy's Laplacian of the channel mean) of three
             out-of-focus background regions, beside the median frame's (issue 16).
  bug-none   the bug set with no alignment for every method (the peers too): result.png
             follows each frame's own geometry (the frames breathe by 0.1 % a frame), so an
             aligned result differs from it by up to ~4 px at the edges (issue 16).
  pcb        ../shared/data/pcb/pcb (7 JPEG frames, 2048 x 1536): no truth; wall time and a
             no-reference sharpness figure (variance of OpenCV's Laplacian of the luma on the
             central 80 %), reported for information only: ringing and noise raise it too.
  pcbrot3    the PCB frames rotated about their centre by 0.3 degrees a frame (up to 0.9 from
             the middle one; convstack's cubic warp, edges repeated, JPEG quality 95): a
             hand-held stack. Scored as pcb.

Methods (one run, same files)
  mean         plain per-pixel mean, no alignment
  lab          the lab's recipe: |Laplacian| masks, weighted mean, automatic gamma, no alignment
  <ours>       convstack.stack.fuse(paths, method=...) for every method (similarity alignment,
               except 'none' on the aligned/halo stacks, as for the peers); pyramid-nf0,
               pyramid-c and pyramid-near: 'pyramid' with noise_floor=None (off),
               interpolation='cubic' (the default: 'quintic') and prefer='near'
  enfuse       align_image_stack -m -a (reference frame first) + enfuse focus-stacking options
  focusweave   focusweave FOLDER --keep-size (its defaults: middle reference, sharpness 4)

Wall time includes reading the frames and writing the result for every entry.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tifffile
from PIL import Image

import convstack
from convstack.metrics import psnr, ssim
from convstack.stack import DEFAULT_METHOD, METHODS, fuse, sharpness_mask, weighted_merge
from convstack.stack import io as stack_io
from convstack.stack.align import estimate_transform
from convstack.stack.synthetic import make_scene, render_stack
from convstack.warp import warp

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
BORDER = 16

SYNTHETIC = {
    "aligned-0": dict(seed=0, kind="default", motion={}),
    "aligned-3": dict(seed=3, kind="default", motion={}),
    "breathing-1": dict(
        seed=1, kind="default", motion=dict(breathing=0.004, shift=3.0, noise=0.01)
    ),
    "breathing-4": dict(
        seed=4, kind="default", motion=dict(breathing=0.004, shift=3.0, noise=0.01)
    ),
    "halo-2": dict(seed=2, kind="halo", motion={}),
    "halo-5": dict(seed=5, kind="halo", motion=dict(noise=0.005)),
}
QUICK = ("aligned-0", "breathing-1", "halo-2")
#: Rotation per frame of the 'pcbrot3' case (degrees, about the centre, middle frame fixed).
PCB_ROTATION = 0.3


def to_u8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255), 0, 255).astype(np.uint8)


def load_rgb(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            data = tifffile.imread(path)
        except ValueError:  # LZW without imagecodecs: Pillow reads it
            with Image.open(path) as im:
                data = np.asarray(im)
    else:
        with Image.open(path) as im:
            data = np.asarray(im.convert("RGB"))
    if data.ndim == 3 and data.shape[2] == 4:
        data = data[..., :3]
    if data.dtype == np.uint16:
        data = np.rint(data / 257.0).astype(np.uint8)
    return data


# ------------------------------------------------------------------------- methods
def run_mean(paths: list[Path], out: Path, align: str) -> None:
    total = None
    for p in paths:
        frame = stack_io.read_image(p).astype(np.float64)
        total = frame if total is None else total + frame
    assert total is not None
    stack_io.write_image(out, np.rint(total / len(paths)).astype(np.uint8), overwrite=True)


def run_lab(paths: list[Path], out: Path, align: str) -> None:
    frames = [stack_io.read_image(p) for p in paths]
    masks = [sharpness_mask(f) for f in frames]
    stack_io.write_image(out, weighted_merge(frames, masks, gamma_correction=True), overwrite=True)


def ours(method: str, **options: Any) -> Callable[[list[Path], Path, str], None]:
    def run(paths: list[Path], out: Path, align: str) -> None:
        result = fuse(paths, method=method, align=align, **options)
        stack_io.write_image(out, result.image, overwrite=True)

    return run


def run_enfuse(paths: list[Path], out: Path, align: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="enfuse_"))
    try:
        ref = len(paths) // 2
        ordered = [paths[ref]] + [p for i, p in enumerate(paths) if i != ref]
        if align == "none":
            aligned = [str(p) for p in ordered]
        else:
            subprocess.run(
                ["align_image_stack", "-m", "-a", str(work / "al_"), *map(str, ordered)],
                check=True,
                capture_output=True,
            )
            aligned = sorted(str(p) for p in work.glob("al_*.tif"))
        target = work / "out.tif"
        subprocess.run(
            [
                "enfuse",
                "--exposure-weight=0",
                "--saturation-weight=0",
                "--contrast-weight=1",
                "--hard-mask",
                "--contrast-window-size=9",
                "--gray-projector=l-star",
                "-o",
                str(target),
                *aligned,
            ],
            check=True,
            capture_output=True,
        )
        stack_io.write_image(out, load_rgb(target), overwrite=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_focusweave(paths: list[Path], out: Path, align: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="fw_"))
    try:
        for p in paths:  # focusweave takes a folder
            os.symlink(p.resolve(), work / p.name)
        target = work.parent / (work.name + ".png")
        args = ["focusweave", str(work), "--output", str(target), "--keep-size"]
        if align == "none":
            args.append("--no-align")
        subprocess.run(args, check=True, capture_output=True)
        stack_io.write_image(out, load_rgb(target), overwrite=True)
        target.unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def available_methods() -> dict[str, Callable[[list[Path], Path, str], None]]:
    methods: dict[str, Callable[[list[Path], Path, str], None]] = {
        "mean": run_mean,
        "lab": run_lab,
    }
    for name in METHODS:
        methods[name] = ours(name)
    methods["pyramid-nf0"] = ours("pyramid", noise_floor=None)
    methods["pyramid-c"] = ours("pyramid", interpolation="cubic")
    methods["pyramid-near"] = ours("pyramid", prefer="near")
    if shutil.which("enfuse") and shutil.which("align_image_stack"):
        methods["enfuse"] = run_enfuse
    if shutil.which("focusweave"):
        methods["focusweave"] = run_focusweave
    return methods


# ------------------------------------------------------------------------- scoring
def score(truth: np.ndarray, image: np.ndarray) -> tuple[float, float]:
    b = BORDER
    t, o = truth[b:-b, b:-b], image[b:-b, b:-b]
    return psnr(t, o, data_range=255), ssim(t, o, data_range=255, channel_axis=2)


def register_to(reference: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``image`` resampled onto ``reference``'s grid (similarity, convstack.align),
    registered down to full resolution: the scoring must not depend on fuse's
    working-level policy (and every method is scored through the same transform)."""
    matrix = estimate_transform(reference, image, model="similarity", finest_level=0)
    return to_u8(warp(image, matrix, order=3, mode="nearest") / 255.0)


#: Out-of-focus background regions of the bug set (rows, cols of result.png).
BACKGROUND = ((20, 200, 20, 200), (60, 240, 800, 1300), (520, 880, 860, 1200))


def background_rms(image: np.ndarray) -> list[float]:
    """High-pass RMS (SciPy's 5-point Laplacian of the channel mean, 8-bit units) of each
    BACKGROUND region of the bug set."""
    from scipy import ndimage

    lap = ndimage.laplace(np.asarray(image, dtype=np.float64).mean(axis=2))
    return [float(lap[r0:r1, c0:c1].std()) for r0, r1, c0, c1 in BACKGROUND]


def background_noise(image: np.ndarray | list[float]) -> str:
    """:func:`background_rms` of an image (or the figures themselves) as 'a / b / c'."""
    figures = image if isinstance(image, list) else background_rms(image)
    return " / ".join(f"{x:.1f}" for x in figures)


def laplacian_variance(image: np.ndarray) -> float:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    r, c = gray.shape
    inner = gray[r // 10 : r - r // 10, c // 10 : c - c // 10]
    return float(cv2.Laplacian(inner, cv2.CV_32F).var())


def timed(func: Callable[[], None]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def crops(truth: np.ndarray | None, outputs: dict[str, np.ndarray], path: Path) -> None:
    """1:1 crops around the strongest edges (labelled columns: truth first)."""
    first = next(iter(outputs.values()))
    gray = cv2.cvtColor(truth if truth is not None else first, cv2.COLOR_RGB2GRAY)
    edges = np.abs(cv2.Laplacian(cv2.GaussianBlur(gray, (0, 0), 3).astype(np.float32), -1))
    b = 64
    edges[:b], edges[-b:], edges[:, :b], edges[:, -b:] = 0, 0, 0, 0
    rows = []
    picked: list[tuple[int, int]] = []
    for _ in range(3):
        r, c = np.unravel_index(int(np.argmax(edges)), edges.shape)
        picked.append((int(r), int(c)))
        edges[max(0, r - 96) : r + 96, max(0, c - 96) : c + 96] = 0
    images = ([truth] if truth is not None else []) + list(outputs.values())
    for r, c in picked:
        rows.append(np.hstack([im[r - 48 : r + 48, c - 48 : c + 48] for im in images]))
    Image.fromarray(np.vstack(rows)).save(path)


# -------------------------------------------------------------------------- memory
def write_big_stack(folder: Path, count: int, shape: tuple[int, int] = (2000, 3000)) -> list[Path]:
    """``count`` 6 MP RGB PNG frames: a texture sharp in one band per frame, shifted a bit."""
    from convstack.stack.sharpness import gaussian_window

    rng = np.random.default_rng(0)
    base = rng.random(shape + (3,), dtype=np.float32)
    soft = np.stack([gaussian_window(base[..., c], 3.0) for c in range(3)], axis=2)
    cols = np.arange(shape[1])
    paths = []
    for k in range(count):
        band = (cols * count // shape[1]) == k
        frame = np.where(band[None, :, None], base, soft)
        frame = np.roll(frame, (k % 3, (k * 2) % 5), axis=(0, 1))
        paths.append(folder / f"big_{k:03d}.png")
        Image.fromarray(to_u8(frame)).save(paths[-1], compress_level=1)
    return paths


_MEMORY_RUNS = {
    # fuse() as a library call, and the `convstack fuse` command (which also tunes
    # glibc's allocator for its own process, see convstack/cli/_allocator.py)
    "fuse()": "from convstack.stack import fuse\nfuse(sys.argv[2:])\n",
    "convstack fuse": (
        "from convstack.cli import main\n"
        "sys.argv = ['convstack', 'fuse', *sys.argv[2:], '-o', sys.argv[1], '--quiet']\n"
        "main()\n"
    ),
}


def measure_memory(counts: list[int]) -> None:
    """Peak RSS of a fresh process running ``fuse`` (default options) on each stack, and
    of the child process it forks (shared pages, the two frame slots, count in both)."""
    work = Path(tempfile.mkdtemp(prefix="bench_fusion_mem_"))
    try:
        paths = write_big_stack(work, max(counts))
        print("| frames (2000 x 3000 RGB, 8-bit PNG) | run | peak RSS MiB: main / child | wall s |")
        print("|---:|---|---:|---:|")
        for n in counts:
            # the middle of the folder for N < max: a contiguous focus range
            chosen = paths[:n]
            for label, run in _MEMORY_RUNS.items():
                code = (
                    "import resource, sys, time\n"
                    "t = time.perf_counter()\n"
                    f"{run}"
                    "rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
                    "child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
                    "print(f'{rss:.0f} {child:.0f} {time.perf_counter() - t:.1f}')\n"
                )
                target = work / "out.png"
                target.unlink(missing_ok=True)
                out = subprocess.run(
                    [sys.executable, "-c", code, str(target), *map(str, chosen)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.split()
                print(f"| {n} | {label} | {out[0]} / {out[1]} | {out[2]} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def spline_resample(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``render_stack``'s resampler for ``--render spline``: SciPy's quintic spline
    (``out[q] = image[matrix^-1 q]``, edges repeated), sharper than its Keys cubic."""
    from scipy import ndimage

    inverse = np.linalg.inv(matrix)
    planes = [
        ndimage.affine_transform(image[..., c], inverse, order=5, mode="nearest")
        for c in range(image.shape[2])
    ]
    return np.stack(planes, axis=-1).astype(np.float32)


def prepare_case(
    name: str, spec: Any, folder: Path, resample: Any = None
) -> tuple[list[Path], np.ndarray | None, str] | None:
    """(frame paths, truth or None, alignment model) of one case; None if its data is
    absent. ``resample``: the synthetic frames' resampler (``render_stack``'s)."""
    if spec is not None:
        scene = make_scene((480, 640), seed=spec["seed"], kind=spec["kind"])
        stack = render_stack(scene, 9, seed=spec["seed"], resample=resample, **spec["motion"])
        paths = []
        for i, frame in enumerate(stack.frames):
            paths.append(folder / f"frame_{i:02d}.png")
            stack_io.write_image(paths[-1], to_u8(frame))
        moving = spec["motion"].get("shift") or spec["motion"].get("breathing")
        return paths, to_u8(scene.image), "similarity" if moving else "none"
    if name in ("bug", "bug-none"):
        bug = DATA / "bug"
        if not bug.is_dir():
            return None
        align = "none" if name == "bug-none" else "similarity"
        return sorted(bug.glob("b_bigbug*.png")), load_rgb(bug / "result.png"), align
    pcb = DATA / "pcb" / "pcb"
    if not pcb.is_dir():
        return None
    paths = sorted(pcb.glob("pcb_*.jpg"))
    if name == "pcbrot3":
        paths = rotated_frames(paths, PCB_ROTATION, folder)
    return paths, None, "similarity"


def rotated_frames(paths: list[Path], degrees: float, folder: Path) -> list[Path]:
    """``paths`` rotated about their centre by ``degrees`` a frame (the middle frame
    unmoved), written as JPEG quality 95 into ``folder``: a hand-held stack."""
    rotated = []
    for i, path in enumerate(paths):
        frame = load_rgb(path)
        angle = np.radians(degrees * (i - len(paths) // 2))
        c, s = np.cos(angle), np.sin(angle)
        centre = (np.array(frame.shape[:2], dtype=np.float64) - 1.0) / 2.0
        m = np.eye(3)
        m[:2, :2] = [[c, s], [-s, c]]
        m[:2, 2] = centre - m[:2, :2] @ centre
        image = warp(frame, m, order=3, mode="nearest")
        rotated.append(folder / path.name)
        Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8)).save(
            rotated[-1], quality=95
        )
    return rotated


def alternate(name: str, paths: list[Path], align: str, rounds: int) -> None:
    """Time convstack (warm, in this process; then its command line) and focusweave in turn."""
    if not shutil.which("focusweave"):
        print(f"{name}: focusweave not installed", file=sys.stderr)
        return
    work = Path(tempfile.mkdtemp(prefix="alt_"))
    try:
        folder = work / "frames"
        folder.mkdir()
        for p in paths:
            os.symlink(p.resolve(), folder / p.name)
        out = work / "out.png"
        fw_args = ["focusweave", str(folder), "--output", str(out), "--keep-size"]
        cli_args = ["convstack", "fuse", str(folder), "-o", str(out), "--quiet"]
        if align == "none":
            fw_args.append("--no-align")
            cli_args += ["--align", "none"]
        ours(DEFAULT_METHOD)(paths, out, align)  # warm-up
        # The command line reads bytecode, as an installed package's does (pip compiles it
        # at install, and focusweave's was): where PYTHONDONTWRITEBYTECODE is set (this VM)
        # an editable checkout would otherwise compile every module at each start (~75 ms).
        compileall.compile_dir(Path(convstack.__file__).parent, quiet=1)
        # the command run here (no server), and handed to a `convstack serve` of its own
        here = {**os.environ, "CONVSTACK_SERVER_SOCKET": str(work / "none.sock")}
        served = {**os.environ, "CONVSTACK_SERVER_SOCKET": str(work / "run" / "server.sock")}
        server = start_server(work / "run" / "server.sock")
        times: dict[str, list[float]] = {"ours": [], "ours CLI": [], "served": [], "fw": []}
        for _ in range(rounds):
            for key, job in (
                ("ours", lambda: ours(DEFAULT_METHOD)(paths, out, align)),
                ("fw", lambda: subprocess.run(fw_args, check=True, capture_output=True)),
                ("ours CLI", lambda: subprocess.run(cli_args, check=True, env=here)),
                ("fw", lambda: subprocess.run(fw_args, check=True, capture_output=True)),
                ("served", lambda: subprocess.run(cli_args, check=True, env=served)),
                ("fw", lambda: subprocess.run(fw_args, check=True, capture_output=True)),
            ):
                out.unlink(missing_ok=True)
                times[key].append(timed(job))
                if key == "served":  # (untimed: the server readies its next process,
                    time.sleep(1.0)  # 0.3 s of one core, which must not slow the next job)
        server.send_signal(signal.SIGINT)
        server.wait(30)
        cells = [f"{min(t):.2f} / {statistics.median(t):.2f}" for t in times.values()]
        fw = statistics.median(times["fw"])
        ratios = [f"{statistics.median(times[k]) / fw:.2f}" for k in ("ours", "ours CLI", "served")]
        print(f"| {name} | " + " | ".join(cells + ratios) + " |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def start_server(socket: Path) -> subprocess.Popen[bytes]:
    """A `convstack serve` on ``socket``, once it listens."""
    server = subprocess.Popen(
        ["convstack", "serve", "--socket", str(socket)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not socket.exists():
        if server.poll() is not None:
            raise RuntimeError("convstack serve ended")
        time.sleep(0.05)
    return server


def alternate_interpolations(
    name: str, paths: list[Path], align: str, rounds: int, names: list[str]
) -> None:
    """Time the default fuse (warm, in this process) with each of ``names``'
    interpolations in turn; the ratio of each median to the first one's."""
    work = Path(tempfile.mkdtemp(prefix="alt_"))
    try:
        out = work / "out.png"
        jobs = {n: ours(DEFAULT_METHOD, interpolation=n) for n in names}
        for job in jobs.values():  # warm-up (compiles each)
            job(paths, out, align)
        times: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(rounds):
            for n, job in jobs.items():
                times[n].append(timed(lambda job=job: job(paths, out, align)))
        first = statistics.median(times[names[0]])
        cells = [f"{min(t):.2f} / {statistics.median(t):.2f}" for t in times.values()]
        ratios = [f"{statistics.median(times[n]) / first:.3f}" for n in names[1:]]
        print(f"| {name} | " + " | ".join(cells + ratios) + " |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def time_warps(rounds: int) -> None:
    """A PCB frame (3 MP colour, uint8) warped by rotations about its centre (Keys cubic,
    edges repeated, float32 out): convstack into planar and interleaved frames, and
    OpenCV's warpAffine (cubic a = -0.75, BORDER_REPLICATE, on the float32 frame) in turn;
    also convstack's two-pass quintic (fuse's default) into planar frames."""
    pcb = DATA / "pcb" / "pcb"
    if not pcb.is_dir():
        print("no PCB data", file=sys.stderr)
        return
    frame = load_rgb(sorted(pcb.glob("pcb_*.jpg"))[0])
    unit = frame.astype(np.float32)
    rows, cols = frame.shape[:2]
    planes = np.empty((3, rows, cols), np.float32)
    print(
        "| rotation deg | convstack planar ms | interleaved ms | cv2.warpAffine ms | planar / cv2 "
        "| quintic two-pass planar ms | / planar cubic |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for degrees in (0.0, 0.01, 0.1, 0.3, 0.9, 5.0, 45.0):
        angle = np.radians(degrees)
        c, s = np.cos(angle), np.sin(angle)
        centre = (np.array([rows, cols], dtype=np.float64) - 1.0) / 2.0
        m = np.eye(3)
        m[:2, :2] = [[c, s], [-s, c]]
        m[:2, 2] = centre - m[:2, :2] @ centre + (0.3, -0.7)
        # OpenCV's inverse map in (x, y): our (row, col) matrix with both axes swapped
        inverse = np.array([[m[1, 1], m[1, 0], m[1, 2]], [m[0, 1], m[0, 0], m[0, 2]]])
        jobs: dict[str, Callable[[], Any]] = {
            "planar": lambda m=m: warp(frame, m, order=3, out=np.moveaxis(planes, 0, -1)),
            "interleaved": lambda m=m: warp(frame, m, order=3),
            "quintic": lambda m=m: warp(
                frame, m, order=5, separable=True, out=np.moveaxis(planes, 0, -1)
            ),
            "cv2": lambda inverse=inverse: cv2.warpAffine(
                unit,
                inverse,
                (cols, rows),
                flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REPLICATE,
            ),
        }
        for job in jobs.values():  # compile, warm the caches
            job()
        times: dict[str, list[float]] = {key: [] for key in jobs}
        for _ in range(rounds):
            for key, job in jobs.items():
                times[key].append(timed(job))
        best = {key: 1e3 * min(values) for key, values in times.items()}
        print(
            f"| {degrees:g} | {best['planar']:.1f} | {best['interleaved']:.1f} | "
            f"{best['cv2']:.1f} | {best['planar'] / best['cv2']:.2f} | {best['quintic']:.1f} | "
            f"{best['quintic'] / best['planar']:.2f} |",
            flush=True,
        )


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three synthetic stacks only")
    parser.add_argument("--out", type=Path, help="keep outputs and crops here")
    parser.add_argument("--methods", nargs="*", help="subset of methods to run")
    parser.add_argument("--cases", nargs="*", help="subset of cases to run")
    parser.add_argument(
        "--memory", nargs="+", type=int, metavar="N", help="peak RSS for stacks of N frames"
    )
    parser.add_argument(
        "--alternate",
        type=int,
        metavar="N",
        help="time convstack (warm and from the command line) and focusweave in turn, N rounds",
    )
    parser.add_argument(
        "--interpolations",
        nargs="+",
        metavar="NAME",
        help="with --alternate: time the default fuse (warm) with each of these "
        "interpolations in turn instead, and each median over the first's",
    )
    parser.add_argument(
        "--render",
        choices=("keys", "spline"),
        default="keys",
        help="how synthetic frames that move are resampled when rendered: the renderer's "
        "Keys cubic (default) or SciPy's quintic spline (a camera samples without that blur)",
    )
    parser.add_argument(
        "--warp",
        type=int,
        metavar="N",
        help="time the warp of a rotated PCB frame against OpenCV, best of N",
    )
    args = parser.parse_args(argv)
    if args.warp:
        time_warps(args.warp)
        return 0
    if args.memory:
        measure_memory(args.memory)
        return 0
    methods = available_methods()
    if args.methods:
        methods = {k: v for k, v in methods.items() if k in args.methods}
    keep = args.out
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_fusion_"))
    rows: list[tuple[str, str, str, str, str]] = []
    noise: list[tuple[str, str, str]] = []  # (case, method, background high-pass RMS)
    print(f"methods: {', '.join(methods)}", file=sys.stderr)
    if args.alternate and args.interpolations:
        names = args.interpolations
        heads = [f"{n} min / median s" for n in names] + [f"{n} / {names[0]}" for n in names[1:]]
        print("| stack | " + " | ".join(heads) + " |")
        print("|---|" + "---:|" * len(heads))
    elif args.alternate:
        print(
            "| stack | convstack warm min / median | CLI | CLI served | focusweave "
            "| warm / fw | CLI / fw | served / fw |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
    try:
        cases: list[tuple[str, Any]] = []
        names = QUICK if args.quick else tuple(SYNTHETIC)
        cases += [(n, SYNTHETIC[n]) for n in names]
        if not args.quick:
            cases += [("bug", None), ("bug-none", None), ("pcb", None), ("pcbrot3", None)]
        if args.cases:
            cases = [c for c in cases if c[0] in args.cases]
        for name, spec in cases:
            folder = work / name
            folder.mkdir()
            resample = spline_resample if args.render == "spline" else None
            prepared = prepare_case(name, spec, folder, resample)
            if prepared is None:
                continue
            paths, truth, align = prepared
            if args.alternate and args.interpolations:
                alternate_interpolations(name, paths, align, args.alternate, args.interpolations)
                continue
            if args.alternate:
                alternate(name, paths, align, args.alternate)
                continue
            outputs: dict[str, np.ndarray] = {}
            for method, run in methods.items():
                out = folder / f"out_{method}.png"
                try:
                    seconds = timed(lambda r=run, o=out, p=paths, a=align: r(p, o, a))
                except (subprocess.CalledProcessError, Exception) as exc:  # noqa: BLE001
                    print(f"{name:12s} {method:10s} FAILED: {exc}", file=sys.stderr)
                    rows.append((name, method, "failed", "", ""))
                    continue
                image = load_rgb(out)
                if truth is not None and name.startswith("bug"):
                    image = register_to(truth, image)
                    noise.append((name, method, background_noise(image)))
                outputs[method] = image
                if truth is not None:
                    p, s = score(truth, image)
                    figures = (f"{p:.2f}", f"{s:.4f}")
                else:
                    figures = (f"LapVar {laplacian_variance(image):.1f}", "")
                rows.append((name, method, *figures, f"{seconds:.2f}"))
                print(
                    f"{name:12s} {method:10s} {' '.join(figures):>18s} {seconds:7.2f}s",
                    file=sys.stderr,
                )
                if keep is not None:
                    Image.fromarray(image).save(keep / f"{name}_{method}.png")
            if keep is not None and outputs:
                crops(truth, outputs, keep / f"{name}_crops.png")
            if name.startswith("bug") and noise:
                each = np.array([background_rms(load_rgb(p)) for p in paths])
                median = [float(x) for x in np.median(each, axis=0)]
                noise.append((name, "median frame", background_noise(median)))
                noise.append((name, "result.png", background_noise(truth)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.alternate:
        return 0
    print("| stack | method | PSNR dB | SSIM | wall s |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if noise:
        print()
        print(f"| stack | method | background high-pass RMS, rows {BACKGROUND} |")
        print("|---|---|---|")
        for row in noise:
            print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
