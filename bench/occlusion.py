"""Depth order at occlusions (issue 16): ``fuse(prefer='near'|'far')`` against the
plain pyramid merge, on scenes whose truth is known, and on the bug set's antennae.

    python bench/occlusion.py                  # three scenes + the bug set, PSNR and time
    python bench/occlusion.py --crops DIR      # also 1:1 crops (PNG) for the docs
    python bench/occlusion.py --rounds 3       # time ratios: median of 3 alternated rounds

Scenes: the 'occlusion' scene (a 5 px stick at frame 0 across a ring at frame ~3-4,
before a wall; 240 x 320, 7 frames, seeds 0 and 1) and the demo's default scene (480 x
640, 9 frames, its 11 px stick), noise 0.01, no motion, fused with ``fuse(align='none')``.
Scored against the scene's truth (PSNR dB) on the stick (its pixels within 3 px of its
outline), around it (the 10 px outside) and everywhere (a 16 px border left out). The
bug set (13 frames, 1344 x 1021, similarity alignment) has no truth at the antennae:
how many pixels ``prefer`` changed, and crops where it changed most. Time: ``fuse`` with
``prefer`` over ``fuse`` without, alternated, same process (run under flock).

``bench/occlusion.py --paste`` also scores last session's paste of the near frame
(``pasted``), which ``prefer`` replaced.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from convstack.metrics import psnr
from convstack.stack import fuse
from convstack.stack.depth import snap_depth_steps
from convstack.stack.synthetic import make_scene, render_stack

ROOT = Path(__file__).resolve().parents[1]
CASES = (
    ("occlusion", 0, (240, 320), 7),
    ("occlusion", 1, (240, 320), 7),
    ("default", 0, (480, 640), 9),
)


def pasted(
    frames: np.ndarray,
    fused: np.ndarray,
    raw: np.ndarray,
    snapped: np.ndarray,
    step: int,
    erode: int,
) -> np.ndarray:
    count = len(frames)
    before = np.clip(np.rint(raw), 0, count - 1).astype(int)
    labels = np.clip(np.rint(snapped), 0, count - 1).astype(int)
    farther = ndi.maximum_filter(labels, 17)  # frames are nearest first here
    near_step = (labels <= farther - step) & (before == labels)
    if erode:
        near_step = ndi.binary_erosion(near_step, iterations=erode)
    weight = ndi.gaussian_filter(near_step.astype(np.float32), 0.5)[..., None]
    own = np.take_along_axis(frames, labels[None, ..., None].repeat(3, -1), 0)[0]
    return fused * (1 - weight) + own * weight


def _timed(run: Any) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _ratio(plain: Any, preferred: Any, rounds: int) -> float:
    """Median over ``rounds`` of (time of ``preferred()``) / (time of ``plain()``), the two
    alternated (after one warm-up of each)."""
    plain(), preferred()
    return float(np.median([_timed(preferred) / _timed(plain) for _ in range(rounds)]))


def _tile(image: np.ndarray, box: Any) -> np.ndarray:
    return np.rint(np.clip(image[box], 0, 1) * 255).astype(np.uint8)


def synthetic(args: argparse.Namespace) -> None:
    print("| scene | merge | on the stick | around it | everywhere | time / plain |")
    print("|---|---|---:|---:|---:|---:|")
    for kind, seed, shape, count in CASES:
        scene = make_scene(shape, seed=seed, kind=kind)
        stack = render_stack(scene, count, noise=0.01, seed=seed)
        frames = list(stack.frames)
        result = fuse(frames, align="none")
        fused = result.image.astype(np.float32)  # float frames in, float out: [0, 1]
        stick = scene.layers[-1].alpha >= 0.5  # the nearest layer: the stick
        zone = ndi.binary_dilation(stick, iterations=10) & ~ndi.binary_erosion(stick, iterations=3)
        b = 16
        regions = (zone & stick, zone & ~stick, np.s_[b:-b, b:-b])
        outputs = {"pyramid": fused}
        ratios = {"pyramid": 1.0}
        for prefer in ("near", "far"):
            outputs[f"prefer {prefer}"] = fuse(frames, align="none", prefer=prefer).image
            ratios[f"prefer {prefer}"] = _ratio(
                lambda f=frames: fuse(f, align="none"),
                lambda p=prefer, f=frames: fuse(f, align="none", prefer=p),
                args.rounds,
            )
        if args.paste:
            snapped = snap_depth_steps(result.depth, result.image, count=count)
            outputs["paste, step 2, erode 1"] = pasted(
                stack.frames, fused, result.depth, snapped, 2, 1
            )
        for name, image in outputs.items():
            scores = [psnr(scene.image[r], image[r], data_range=1) for r in regions]
            ratio = f"{ratios[name]:.2f}" if name in ratios else ""
            print(
                f"| {kind}-{seed} | {name} | "
                + " | ".join(f"{s:.2f}" for s in scores)
                + f" | {ratio} |",
                flush=True,
            )
        if args.crops:
            args.crops.mkdir(parents=True, exist_ok=True)
            middle = int(np.flatnonzero(stick.any(axis=1)).mean())
            centre = (middle, int(np.argmax(stick[middle])))
            box = np.s_[centre[0] - 40 : centre[0] + 40, max(centre[1] - 40, 0) : centre[1] + 40]
            images = [outputs["pyramid"], outputs["prefer near"], outputs["prefer far"]]
            tiles = [scene.image, *images]
            tiles += [np.clip(np.abs(t - scene.image) * 4, 0, 1) for t in images]
            row = np.hstack([_tile(t, box) for t in tiles])
            Image.fromarray(row).save(args.crops / f"occlusion_{kind}-{seed}.png")


def bug(args: argparse.Namespace) -> None:
    folder = ROOT.parent / "shared" / "data" / "bug"
    paths = sorted(folder.glob("b_bigbug*.png"))
    if not paths:
        print("bug set absent: skipped")
        return
    plain = fuse(paths).image.astype(np.float32) / 255
    print("| bug | merge | pixels changed > 2 levels | largest change | time / plain |")
    print("|---|---|---:|---:|---:|")
    outputs = {}
    for prefer in ("near", "far"):
        image = fuse(paths, prefer=prefer).image.astype(np.float32) / 255
        outputs[prefer] = image
        change = np.abs(image - plain).max(axis=2)
        ratio = _ratio(lambda: fuse(paths), lambda p=prefer: fuse(paths, prefer=p), args.rounds)
        print(
            f"| bug | prefer {prefer} | {int((change > 2 / 255).sum())} | "
            f"{change.max() * 255:.0f} | {ratio:.2f} |",
            flush=True,
        )
    if args.crops:
        change = ndi.uniform_filter(np.abs(outputs["near"] - plain).max(axis=2), 41)
        r, c = np.unravel_index(int(np.argmax(change)), change.shape)
        r = min(max(r, 60), plain.shape[0] - 60)
        c = min(max(c, 60), plain.shape[1] - 60)
        box = np.s_[r - 60 : r + 60, c - 60 : c + 60]
        tiles = [plain, outputs["near"], outputs["far"]]
        tiles += [np.clip(np.abs(outputs[p] - plain) * 8, 0, 1) for p in ("near", "far")]
        Image.fromarray(np.hstack([_tile(t, box) for t in tiles])).save(
            args.crops / "occlusion_bug.png"
        )
        print(f"bug crop centred at row {r}, column {c}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=Path, help="write 1:1 crops (PNG) here")
    parser.add_argument("--rounds", type=int, default=3, help="alternated timing rounds")
    parser.add_argument("--paste", action="store_true", help="also the paste prefer replaced")
    args = parser.parse_args(argv)
    synthetic(args)
    bug(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
