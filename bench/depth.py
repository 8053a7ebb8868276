"""Depth-map quality (issue 16): error against the scene's truth, the demo stick's width,
speckle on the PCB depthmap stack, and what snapping the steps to edges costs.

    python bench/depth.py                  # synthetic stacks, demo stick, PCB depthmap
    python bench/depth.py --quick          # synthetic stacks only
    python bench/depth.py --picture FILE   # also the demo stick's depth, before and after

Synthetic stacks: bench/fusion.py's six (480 x 640, 9 frames) and the demo's (`convstack
demo`: seed 0, breathing 0.003, shift 2 px, noise 0.01), fused as bench/fusion.py fuses them.
The truth is the scene's depth as a fractional frame index (frame k focused at 1/z_k,
interpolated in 1/z). Columns: mean absolute error in frames and the share of pixels more
than one frame off (16 px border left out), for ``fuse``'s depth and for
``snap_depth_steps(depth, image)``; its time against ``fuse``'s, same process, best of 3.
Demo stick: per row the stick crosses, the depth map's frame-0 pixels within 20 px of it
minus the stick's own (median and 90th percentile, px). PCB: connected areas of one rounded
frame index under 64 px in the map of the ``depthmap`` stack (10 JPEGs, 2048 x 1536).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from convstack.stack import fuse
from convstack.stack.depth import regularize_depth, snap_depth_steps
from convstack.stack.synthetic import make_scene, render_stack

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
BORDER = 16


def _fusion_cases() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("bench_fusion", ROOT / "bench" / "fusion.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.SYNTHETIC)


def true_index(scene: Any, stack: Any) -> np.ndarray:
    inv_focus = 1.0 / stack.focus_distances
    order = np.argsort(inv_focus)
    ramp = np.arange(len(inv_focus), dtype=np.float64)[order]
    return np.interp(1.0 / scene.depth.astype(np.float64), inv_focus[order], ramp)


def best_of(count: int, func: Any) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(count):
        started = time.perf_counter()
        value = func()
        best = min(best, time.perf_counter() - started)
    return best, value


def errors(depth: np.ndarray, truth: np.ndarray) -> str:
    b = BORDER
    off = np.abs(depth - truth)[b:-b, b:-b]
    return f"{off.mean():.3f} / {100 * np.mean(off > 1):.1f} %"


def stick_excess(depth: np.ndarray, stick: np.ndarray) -> str:
    rows = np.flatnonzero(stick.sum(axis=1) >= 2)[10:-10]
    near = ndi.binary_dilation(stick, iterations=20)
    extra = ((depth < 1.5) & near)[rows].sum(axis=1) - stick[rows].sum(axis=1)
    return f"{np.median(extra):+.0f} / {np.percentile(extra, 90):+.0f}"


def synthetic(name: str, spec: dict[str, Any], rows: list[str]) -> tuple[Any, Any, Any]:
    scene = make_scene((480, 640), seed=spec["seed"], kind=spec["kind"])
    stack = render_stack(scene, 9, seed=spec["seed"], **spec["motion"])
    align = "similarity" if spec["motion"].get("shift") else "none"
    fuse_s, result = best_of(3, lambda: fuse(list(stack.frames), align=align))
    snap_s, snapped = best_of(3, lambda: snap_depth_steps(result.depth, result.image, count=9))
    truth = true_index(scene, stack)
    rows.append(
        f"| {name} | {errors(result.depth, truth)} | {errors(snapped, truth)} "
        f"| {fuse_s:.2f} | {snap_s:.3f} | {snap_s / fuse_s:.2f} |"
    )
    return scene, result, snapped


def pcb_islands() -> str:
    paths = sorted((DATA / "pcb" / "depthmap").glob("*.JPG"))
    if not paths:
        return "PCB depthmap stack not found"
    kept: dict[str, np.ndarray] = {}

    def keep(name: str, array: np.ndarray) -> None:
        if name in ("depth_raw", "confidence"):
            kept[name] = array.copy()

    result = fuse(paths, on_step=keep)
    lines = ["| outlier | islands < 64 px | their area px | depth Laplacian RMS |"]
    lines.append("|---|---:|---:|---:|")
    for outlier in (0.5, 0.65):
        depth = regularize_depth(
            kept["depth_raw"], kept["confidence"], count=len(paths), shape=result.depth.shape,
            outlier=outlier,
        )  # fmt: skip
        labels = np.rint(depth).astype(int)
        sizes = np.concatenate(
            [
                np.bincount(ndi.label(labels == k, np.ones((3, 3)))[0].ravel())[1:]
                for k in np.unique(labels)
            ]
        )
        small = sizes[sizes < 64]
        rms = float(np.sqrt(np.mean(ndi.laplace(depth.astype(np.float64)) ** 2)))
        lines.append(f"| {outlier} | {small.size} | {int(small.sum())} | {rms:.3f} |")
    return "\n".join(lines)


def picture(stick: np.ndarray, before: np.ndarray, after: np.ndarray, path: Path) -> None:
    """The stick's rows, 2x: green where the depth map and the truth agree, red where
    the map claims frame 0 beyond the stick, blue where it misses the stick."""
    rows = np.flatnonzero(stick.any(axis=1))
    cols = np.flatnonzero(stick.any(axis=0))
    box = np.s_[rows[0] - 8 : rows[-1] + 9, max(cols[0] - 12, 0) : cols[-1] + 13]
    tiles = []
    for depth in (before, after):
        near = depth < 1.5
        tile = np.full((*stick.shape, 3), 40, np.uint8)
        tile[near & stick] = (0, 200, 0)
        tile[near & ~stick & ndi.binary_dilation(stick, iterations=20)] = (220, 0, 0)
        tile[stick & ~near] = (0, 0, 255)
        tiles.append(tile[box])
    gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
    both = np.hstack([tiles[0], gap, tiles[1]])
    Image.fromarray(both).resize((both.shape[1] * 2, both.shape[0] * 2), Image.NEAREST).save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="synthetic stacks only")
    parser.add_argument("--picture", type=Path, help="write the demo stick's depth here (PNG)")
    args = parser.parse_args(argv)
    rows = [
        "| stack | fuse depth: MAE frames / > 1 frame off | snapped | fuse s | snap s | ratio |",
        "|---|---|---|---:|---:|---:|",
    ]
    cases = _fusion_cases()
    cases["demo"] = dict(
        seed=0, kind="default", motion=dict(breathing=0.003, shift=2.0, noise=0.01)
    )
    for name, spec in cases.items():
        scene, result, snapped = synthetic(name, spec, rows)
        print(rows[-1], file=sys.stderr)
    print("\n".join(rows))
    stick = scene.layers[-1].alpha >= 0.5  # the demo's last layer: its stick
    width = np.median(stick.sum(axis=1)[stick.any(axis=1)])
    print(f"\ndemo stick ({width:.0f} px a row), extra px a row (median / 90th pct):")
    print(f"fuse {stick_excess(result.depth, stick)}, snapped {stick_excess(snapped, stick)}")
    if args.picture:
        picture(stick, result.depth, snapped, args.picture)
    if not args.quick:
        print()
        print(pcb_islands())
    return 0


if __name__ == "__main__":
    sys.exit(main())
