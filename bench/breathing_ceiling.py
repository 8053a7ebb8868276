"""How far can any fusion go on the breathing stacks? (issue 16's one missed target)

    python bench/breathing_ceiling.py                   # breathing-1 and breathing-4 (~1 min)
    python bench/breathing_ceiling.py --cases breathing-1

Issue 16 asks `fuse` for 1 dB over focusweave on every synthetic stack of bench/fusion.py.
The breathing stacks (0.4 % magnification a frame, shifts, noise sigma 0.01) miss it by
0.1-0.2 dB. This script measures, on the same 8-bit frames and scored as bench/fusion.py
scores (PSNR against the truth, a 16 px border left out), what bounds any fusion there:

  fuse            convstack's default fuse, and focusweave (when on PATH): the target
  round trip      the truth through the renderer's Keys resample (each moving frame's
                  transform) and back by fuse's warp: the mean over the moving frames. A
                  frame focused everywhere would score this.
  noise-free      the same stack rendered without noise, fused by default: what the noise costs
  oracle select   knowing the truth: per pyramid level and pixel the frame (registered by its
                  true transform, fuse's warp) whose 5x5 window of coefficients is nearest the
                  truth's; the best any per-pixel selection or soft weighting of frames can do
  oracle means    the same with the means of 2 and 3 neighbouring frames as candidates too:
                  the best that averaging the frames' noise away where they agree can do
  + Wiener        fuse's result with its two finest levels shrunk by a local Wiener gain that
                  knows the noise: sigma times each of FRACTIONS, the best (the noise through
                  the fuse is ~0.9 of a frame's sigma)
  spline render   the frames resampled by SciPy's quintic spline instead of Keys (a camera
                  does not interpolate): fuse and focusweave (`bench/fusion.py --render spline`)

Every row is one run of this script; rows are not timed.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from convstack.stack import fuse
from convstack.stack import fusion as F
from convstack.stack.synthetic import _warp as keys_resample
from convstack.stack.synthetic import make_scene, render_stack
from convstack.warp import warp

ROOT = Path(__file__).resolve().parents[1]
#: Opponent colour axes (orthonormal): luma, red-green, yellow-blue.
OPPONENT = np.array([[1, 1, 1], [1, -1, 0], [1, 1, -2]], np.float64)
OPPONENT /= np.linalg.norm(OPPONENT, axis=1, keepdims=True)
#: Noise sigmas tried by the Wiener row, as fractions of the frames' sigma (the best is kept).
FRACTIONS = (0.5, 0.7, 0.9, 1.0)


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_fusion", ROOT / "bench" / "fusion.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def registered(frames: np.ndarray, transforms: np.ndarray) -> list[np.ndarray]:
    """Each 8-bit frame in [0, 1] on the reference grid by its true transform (fuse's warp)."""
    return [
        warp(f.astype(np.float32) / 255, m, order=5, separable=True, mode="nearest")
        for f, m in zip(frames, transforms, strict=True)
    ]


def round_trip(truth: np.ndarray, transforms: np.ndarray, score: Any) -> float:
    """Mean PSNR of the truth through each moving frame's Keys resample and back."""
    unit = truth.astype(np.float32) / np.float32(255)
    values = []
    for m in transforms:
        if np.allclose(m, np.eye(3)):
            continue
        there = keys_resample(unit, m)
        back = warp(there, m, order=5, separable=True, mode="nearest")
        values.append(score(back))
    return float(np.mean(values))


def oracle_select(
    aligned: list[np.ndarray], truth: np.ndarray, span: int = 1, levels: int = 6
) -> np.ndarray:
    """Per level and pixel the candidate whose 5x5 window of coefficients is nearest the
    truth's; candidates: each frame and (``span`` > 1) the means of up to ``span``
    neighbouring frames."""
    target = F.laplacian_pyramid(truth.astype(np.float32) / 255, levels)
    bands = [F.laplacian_pyramid(a, levels) for a in aligned]
    fused = []
    for k in range(levels):
        candidates = [
            np.mean([b[k] for b in bands[i : i + n]], axis=0)
            for n in range(1, span + 1)
            for i in range(len(bands) - n + 1)
        ]
        errors = np.stack(
            [ndimage.uniform_filter(((c - target[k]) ** 2).sum(axis=2), 5) for c in candidates]
        )
        best = np.argmin(errors, axis=0)
        fused.append(np.take_along_axis(np.stack(candidates), best[None, ..., None], axis=0)[0])
    return np.asarray(F.collapse(fused))


def wiener(image: np.ndarray, sigma: float, levels: int = 2, window: int = 5) -> np.ndarray:
    """``image`` (8-bit) with its finest ``levels`` shrunk by ``max(0, 1 - s2 / E)`` in
    opponent colour (``s2``: the level's share of white noise of ``sigma``, E: the local
    energy of each coefficient in a ``window``-square)."""
    unit = (image.astype(np.float32) / 255) @ OPPONENT.T.astype(np.float32)
    bands = F.laplacian_pyramid(unit, levels + 1)
    white = np.random.default_rng(0).normal(0.0, 1.0, unit.shape[:2] + (1,)).astype(np.float32)
    gains = [float(np.mean(b**2)) for b in F.laplacian_pyramid(white, levels + 1)[:levels]]
    for k in range(levels):
        energy = ndimage.uniform_filter(bands[k] ** 2, (window, window, 1))
        bands[k] *= np.maximum(0.0, 1.0 - sigma**2 * gains[k] / np.maximum(energy, 1e-12))
    return F.collapse(bands) @ OPPONENT.astype(np.float32)


def measure(bench: Any, name: str, work: Path) -> dict[str, float | None]:
    """Every figure of one case (PSNR dB; None: focusweave absent)."""
    methods = bench.available_methods()
    spec = bench.SYNTHETIC[name]
    motion = dict(spec["motion"])
    scene = make_scene((480, 640), seed=spec["seed"], kind=spec["kind"])
    truth = bench.to_u8(scene.image)

    def score(image: np.ndarray) -> float:
        return float(
            bench.score(truth, image if image.dtype == np.uint8 else bench.to_u8(image))[0]
        )

    def fused(tag: str, resample: Any = None, noise: float = motion["noise"]) -> Any:
        """(fuse's PSNR, focusweave's or None, fuse's image) of the stack rendered so."""
        folder = work / f"{name}-{tag}"
        folder.mkdir()
        case = dict(spec, motion=dict(motion, noise=noise))
        paths, _, align = bench.prepare_case(name, case, folder, resample)
        result = fuse(paths, method="pyramid", align=align).image
        peer = None
        if "focusweave" in methods:
            methods["focusweave"](paths, folder / "focusweave.png", align)
            peer = score(bench.load_rgb(folder / "focusweave.png"))
        return score(result), peer, result

    ours, peer, result = fused("keys")
    stack = render_stack(scene, 9, seed=spec["seed"], **motion)
    aligned = registered(np.stack([bench.to_u8(f) for f in stack.frames]), stack.transforms)
    spline, spline_peer, _ = fused("spline", bench.spline_resample)
    return {
        "fuse": ours,
        "focusweave": peer,
        "round trip": round_trip(truth, stack.transforms, score),
        "noise-free": fused("clean", noise=0.0)[0],
        "oracle select": score(oracle_select(aligned, truth)),
        "oracle means": score(oracle_select(aligned, truth, span=3)),
        "+ Wiener": max(score(wiener(result, motion["noise"] * f)) for f in FRACTIONS),
        "spline: fuse": spline,
        "spline: focusweave": spline_peer,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=["breathing-1", "breathing-4"])
    args = parser.parse_args(argv)
    bench = _bench()
    work = Path(tempfile.mkdtemp(prefix="ceiling_"))
    rows = []
    try:
        for name in args.cases:
            figures = measure(bench, name, work)
            rows.append((name, figures))
            line = ", ".join(f"{k} {'-' if v is None else f'{v:.2f}'}" for k, v in figures.items())
            print(f"{name}: {line}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    keys = list(rows[0][1]) if rows else []
    print("| stack | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for name, figures in rows:
        cells = ["-" if figures[k] is None else f"{figures[k]:.2f}" for k in keys]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
