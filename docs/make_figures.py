"""Build the pictures of docs/focus-stacking.md from built-in synthetic data only.

Usage::

    python docs/make_figures.py            # writes docs/img/*, refuses to overwrite
    python docs/make_figures.py --force    # replace existing pictures
    python docs/make_figures.py --out DIR  # somewhere else

Every input comes from ``convstack.stack.synthetic`` with fixed seeds, so a run on the
same code gives the same pictures and the same printed figures (the numbers quoted
in the document are pasted from this script's output). Overviews are downscaled
(block means) and saved as JPEG; crops are 1:1 (one image pixel per file pixel, no
resampling) and saved as PNG. Takes about 15 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convstack import viz
from convstack.metrics import psnr, ssim
from convstack.stack import fuse
from convstack.stack.fusion import pyramid_merge
from convstack.stack.io import write_image
from convstack.stack.sharpness import to_gray
from convstack.stack.synthetic import make_scene, render_stack
from convstack.warp import warp

HERE = Path(__file__).resolve().parent
SHAPE = (480, 640)
FRAMES = 9
BORDER = 16  # pixels left out of every score (as bench/fusion.py)

FIGURES = (
    "1-frames.jpg",
    "2-alignment.jpg",
    "3-sharpness.jpg",
    "4-fusion.jpg",
    "4-fusion-crops.png",
    "5-depth.png",
    "6-progress.png",
    "halo-overview.jpg",
    "halo-crops.png",
)


# ---------------------------------------------------------------------------- helpers
def u8(image: NDArray[Any]) -> NDArray[np.uint8]:
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def unit(image: NDArray[Any]) -> NDArray[np.float32]:
    if image.dtype.kind == "u":
        return (image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)).astype(np.float32)
    return image.astype(np.float32)


def shrink(image: NDArray[Any], factor: int) -> NDArray[np.float32]:
    """Downscale by an integer factor with block means (no aliasing)."""
    a = unit(image) if image.dtype.kind == "u" else image.astype(np.float32)
    rows, cols = a.shape[0] // factor * factor, a.shape[1] // factor * factor
    a = a[:rows, :cols]
    shape = (rows // factor, factor, cols // factor, factor) + a.shape[2:]
    return a.reshape(shape).mean(axis=(1, 3)).astype(np.float32)


def inner(a: NDArray[Any]) -> NDArray[Any]:
    return a[BORDER:-BORDER, BORDER:-BORDER]


def score(truth: NDArray[Any], image: NDArray[Any]) -> tuple[float, float]:
    t, i = inner(unit(truth)), inner(unit(image))
    return psnr(t, i, data_range=1.0), ssim(t, i, data_range=1.0, channel_axis=-1)


def compact_png(path: str) -> None:
    """Rewrite a matplotlib PNG as RGB (no alpha), maximally compressed (lossless)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
    rgb.save(path, format="PNG", optimize=True)


def save(fig: Any, path: Path, *, quality: int = 88) -> None:
    """Save a matplotlib figure atomically (JPEG or PNG by extension)."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        if path.suffix == ".jpg":
            fig.savefig(
                temp,
                format="jpeg",
                dpi=100,
                bbox_inches="tight",
                pad_inches=0.08,
                pil_kwargs={"quality": quality},
            )
        else:
            fig.savefig(temp, format="png", dpi=100, bbox_inches="tight", pad_inches=0.08)
            compact_png(temp)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def one_to_one(
    rows: list[list[NDArray[Any]]],
    col_titles: list[str],
    row_titles: list[str],
    path: Path,
    note: str = "",
) -> None:
    """Tiles at exactly one image pixel per file pixel, with titles drawn around them."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    gap, top, left, bottom = 6, 22, 20, 18 if note else 4
    th, tw = rows[0][0].shape[:2]
    width = left + len(col_titles) * (tw + gap)
    height = top + len(rows) * (th + gap) + bottom
    canvas = np.ones((height, width, 3), np.float32)
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            y, x = top + r * (th + gap), left + c * (tw + gap)
            rgb = tile if tile.ndim == 3 else np.repeat(tile[..., None], 3, axis=2)
            canvas[y : y + th, x : x + tw] = np.clip(unit(rgb), 0.0, 1.0)
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    FigureCanvasAgg(fig)
    fig.figimage(u8(canvas), 0, 0, origin="upper", resize=False)
    for c, title in enumerate(col_titles):
        x = left + c * (tw + gap) + tw / 2
        fig.text(x / width, 1 - 4 / height, title, ha="center", va="top", fontsize=9)
    for r, title in enumerate(row_titles):
        y = top + r * (th + gap) + th / 2
        fig.text(3 / width, 1 - y / height, title, ha="left", va="center", fontsize=8, rotation=90)
    if note:
        fig.text(left / width, 3 / height, note, ha="left", va="bottom", fontsize=8)
    fd, temp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(temp, format="png", dpi=100)
        compact_png(temp)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def window_at(
    score_map: NDArray[Any], size: int, avoid: tuple[int, int] | None = None
) -> tuple[int, int]:
    """Top-left corner of the ``size`` x ``size`` window (step size/4) with the largest mean.

    Windows overlapping the one at ``avoid`` are skipped.
    """
    best, where = -np.inf, (BORDER, BORDER)
    step = size // 4
    rows, cols = score_map.shape
    for r in range(BORDER, rows - BORDER - size + 1, step):
        for c in range(BORDER, cols - BORDER - size + 1, step):
            if avoid is not None and abs(r - avoid[0]) < size and abs(c - avoid[1]) < size:
                continue
            value = float(score_map[r : r + size, c : c + size].mean())
            if value > best:
                best, where = value, (r, c)
    return where


def crop(image: NDArray[Any], corner: tuple[int, int], size: int) -> NDArray[Any]:
    r, c = corner
    return image[r : r + size, c : c + size]


def true_index(depth: NDArray[Any], distances: NDArray[Any]) -> NDArray[np.float32]:
    """Truth depth as a fractional frame index (frame k is focused at 1 / z_k)."""
    inv_focus = 1.0 / distances
    order = np.argsort(inv_focus)
    index = np.interp(
        1.0 / depth.astype(np.float64), inv_focus[order], np.arange(len(order))[order]
    )
    return index.astype(np.float32)


def corner_error(estimated: NDArray[Any], true: NDArray[Any], shape: tuple[int, int]) -> float:
    rows, cols = shape
    p = np.array([[0, 0, 1], [0, cols - 1, 1], [rows - 1, 0, 1], [rows - 1, cols - 1, 1.0]]).T
    a, b = estimated @ p, true @ p
    return float(np.abs(a[:2] / a[2] - b[:2] / b[2]).max())


# ---------------------------------------------------------------------------- figures
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(HERE / "img"), help="output folder (docs/img)")
    parser.add_argument("--force", action="store_true", help="replace existing pictures")
    args = parser.parse_args(argv)
    out = Path(args.out)
    existing = [str(out / name) for name in FIGURES if (out / name).exists()]
    if existing and not args.force:
        print(
            f"error: {existing[0]} exists (and {len(existing) - 1} more); use --force.",
            file=sys.stderr,
        )
        return 1
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    # ---- the main stack: default scene, breathing + shift + noise, 8-bit frames
    scene = make_scene(SHAPE, seed=0)
    stack = render_stack(scene, FRAMES, breathing=0.003, shift=2.0, noise=0.01, seed=0)
    frames = u8(stack.frames)  # what a camera would store
    truth = scene.image
    ref = stack.reference
    print(
        f"main stack: default scene seed 0, {FRAMES} frames {SHAPE[0]}x{SHAPE[1]} uint8, "
        f"breathing 0.3 %/frame, shift <= 2 px, noise sigma 0.01, reference {ref}"
    )
    print("focus distances z:", " ".join(f"{z:.2f}" for z in stack.focus_distances))

    steps: dict[str, NDArray[Any]] = {}
    events: list[tuple[float, str, int, int]] = []
    t0 = time.perf_counter()

    def on_step(name: str, array: NDArray[Any]) -> None:
        steps[name] = np.array(array, copy=True)

    def progress(stage: str, done: int, total: int) -> None:
        events.append((time.perf_counter() - t0, stage, done, total))

    result = fuse(frames, on_step=on_step, progress=progress)
    fuse_s = time.perf_counter() - t0
    print(
        f"fuse(frames) defaults: method={result.method}, reference={result.reference}, "
        f"{fuse_s:.2f} s, image {result.image.dtype} {result.image.shape}"
    )

    # 1. frames ---------------------------------------------------------------------
    shown = [0, 2, 4, 6, 8]
    fig = viz.image_grid(
        [shrink(frames[k], 2) for k in shown],
        [f"frame {k} (focus z={stack.focus_distances[k]:.2f})" for k in shown],
        cols=5,
        panel_width=2.6,
    )
    save(fig, out / "1-frames.jpg")
    for k in range(FRAMES):
        p, s = score(
            truth, warp(unit(frames[k]), stack.transforms[k], order=3) if k != ref else frames[k]
        )
        print(f"  frame {k}: PSNR {p:.2f} dB, SSIM {s:.4f} vs truth (true transform undone)")

    # 2. alignment ------------------------------------------------------------------
    k = 0
    gray_ref = to_gray(frames[ref])
    before = np.abs(to_gray(frames[k]) - gray_ref)
    after = np.abs(to_gray(steps[f"aligned_{k:03d}"]) - gray_ref)
    ideal = to_gray(warp(unit(frames[k]), stack.transforms[k], order=3, mode="nearest"))
    registration = np.abs(to_gray(steps[f"aligned_{k:03d}"]) - ideal)
    boost = 10.0
    box = (slice(120, 360), slice(160, 480))
    vmax = float(np.quantile(before[box], 0.999))
    fig = viz.image_grid(
        [before[box], after[box], registration[box] * boost],
        [
            f"|frame {k} - frame {ref}| before",
            f"|aligned frame {k} - frame {ref}|",
            f"|ours - true-transform warp| x{boost:g}",
        ],
        cols=3,
        cmap="magma",
        vmin=0.0,
        vmax=vmax,
        colorbar=True,
        panel_width=3.2,
    )
    save(fig, out / "2-alignment.jpg")
    print(
        f"alignment: luma |diff| frame {k} vs {ref} (central 240x320): mean before "
        f"{before[box].mean():.4f}, after {after[box].mean():.4f}, ours vs true warp "
        f"{registration[box].mean():.4f} (max {registration[box].max():.4f}); "
        f"colour scale 0..{vmax:.3f}, "
        f"{(before[box] > vmax).mean() * 100:.2f} % of 'before' above it"
    )
    errors = [corner_error(result.transforms[i], stack.transforms[i], SHAPE) for i in range(FRAMES)]
    print("  corner error vs true transform (px):", " ".join(f"{e:.3f}" for e in errors))

    # 3. sharpness ------------------------------------------------------------------
    picks = [0, ref, FRAMES - 1]
    maps = [shrink(steps[f"sharpness_{i:03d}"], 2) for i in picks]
    fig = viz.sharpness_maps(
        maps,
        [f"frame {i} (z={stack.focus_distances[i]:.2f})" for i in picks],
        cols=3,
        scale="sqrt",
        label="log_energy (2x2 block mean)",
        panel_width=3.2,
    )
    save(fig, out / "3-sharpness.jpg")
    raw = steps["depth_raw"].astype(int)
    wins = np.bincount(raw.ravel(), minlength=FRAMES) / raw.size * 100
    print(
        "sharpness: share of pixels where each frame is sharpest (%):",
        " ".join(f"{w:.1f}" for w in wins),
    )
    full = [steps[f"sharpness_{i:03d}"] for i in picks]
    print("  max log_energy of frames", picks, ":", " ".join(f"{m.max():.4g}" for m in full))

    # 4. fusion ---------------------------------------------------------------------
    fused = result.image
    fig = viz.image_grid(
        [shrink(truth, 2), shrink(frames[ref], 2), shrink(fused, 2)],
        ["truth (all in focus)", f"frame {ref} (reference)", f"fused ({result.method})"],
        cols=3,
        panel_width=3.2,
    )
    save(fig, out / "4-fusion.jpg")
    fused_err = np.abs(unit(fused) - truth).mean(axis=2)
    mid_err = np.abs(unit(frames[ref]) - truth).mean(axis=2)
    size = 96
    where_mid = window_at(mid_err, size)
    where_ours = window_at(fused_err, size, avoid=where_mid)
    rows = []
    for corner in (where_mid, where_ours):
        rows.append(
            [
                crop(truth, corner, size),
                crop(frames[ref], corner, size),
                crop(fused, corner, size),
                np.clip(crop(fused_err, corner, size) * 4, 0, 1),
            ]
        )
    one_to_one(
        rows,
        ["truth", f"frame {ref}", "fused", "|err| x4"],
        [f"at {where_mid}", f"at {where_ours}"],
        out / "4-fusion-crops.png",
    )
    p, s = score(truth, fused)
    print(
        f"fusion: fused PSNR {p:.2f} dB, SSIM {s:.4f} ({BORDER} px border left out); "
        f"crops at {where_mid} (frame {ref} worst) and {where_ours} (fused worst elsewhere), "
        f"mean |err| there {crop(fused_err, where_ours, size).mean():.4f}"
    )
    for method in ("depthmap", "weighted", "maxabs"):
        other = fuse(frames, method=method)
        p2, s2 = score(truth, other.image)
        print(f"  method={method}: PSNR {p2:.2f} dB, SSIM {s2:.4f}")

    # 5. depth ----------------------------------------------------------------------
    truth_idx = true_index(scene.depth, stack.focus_distances)
    fig = viz.image_grid(
        [
            shrink(truth_idx, 2),
            shrink(steps["depth_raw"].astype(np.float32), 2),
            shrink(result.depth, 2),
        ],
        ["true depth", "raw argmax (depth_raw)", "regularised (result.depth)"],
        cols=3,
        cmap="viridis",
        vmin=0.0,
        vmax=float(FRAMES - 1),
        colorbar=True,
        panel_width=3.0,
    )
    save(fig, out / "5-depth.png")
    d_err = np.abs(result.depth - truth_idx)
    r_err = np.abs(steps["depth_raw"] - truth_idx)
    print(
        f"depth (frame index): regularised median |err| {np.median(inner(d_err)):.3f}, "
        f"mean {inner(d_err).mean():.3f}, within 1 frame {(inner(d_err) <= 1).mean() * 100:.1f} %;"
        f" raw argmax median {np.median(inner(r_err)):.3f}, mean {inner(r_err).mean():.3f}, "
        f"within 1 frame {(inner(r_err) <= 1).mean() * 100:.1f} %"
    )

    raw_d = steps["depth_raw"].astype(np.float32)
    print(
        f"  foreground spread: pixels at index < 0.5 (the bar): truth {(truth_idx < 0.5).sum()}, "
        f"raw {(raw_d < 0.5).sum()}, regularised {(result.depth < 0.5).sum()}; index < 2.5 "
        f"in rows < 300 (the blob): truth {(truth_idx[:300] < 2.5).sum()}, raw "
        f"{(raw_d[:300] < 2.5).sum()}, regularised {(result.depth[:300] < 2.5).sum()}"
    )
    for name, d in (("raw", raw_d), ("regularised", result.depth)):
        print(
            f"  {name}: mean |err| rows 0-15 (border) {np.abs(d - truth_idx)[:16].mean():.3f}, "
            f"rows 16-59 (smooth sky) {np.abs(d - truth_idx)[16:60, 16:-16].mean():.3f}"
        )

    # 6. progress -------------------------------------------------------------------
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 2.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = {"align": "tab:blue", "depth": "tab:orange", "fuse": "tab:green"}
    for stage in ("align", "depth", "fuse"):
        pts = [(t, d / tot if tot else 1.0) for t, s_, d, tot in events if s_ == stage]
        if pts:
            ts, fs = zip(*pts, strict=True)
            ax.step(ts, fs, where="post", marker="o", ms=3, label=stage, color=colours[stage])
    ax.set_xlabel("seconds since fuse() started")
    ax.set_ylabel("done / total")
    ax.set_title(f"progress(stage, done, total) calls, {FRAMES} frames 480x640")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    save(fig, out / "6-progress.png")
    for t, stage, done, total in events:
        print(f"  progress t={t:5.2f} s  {stage:<6} {done}/{total}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "frames"
        folder.mkdir()
        for i, frame in enumerate(frames):
            write_image(folder / f"frame{i + 1:02d}.png", frame)
        cmd = [
            sys.executable,
            "-m",
            "convstack.cli",
            "fuse",
            str(folder),
            "-o",
            str(Path(tmp) / "fused.png"),
            "--depth-map",
            str(Path(tmp) / "depth.png"),
            "--save-steps",
            str(Path(tmp) / "steps"),
        ]
        t1 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        cli_s = time.perf_counter() - t1
        print(
            f"CLI: convstack fuse FRAMES/ -o fused.png --depth-map depth.png --save-steps "
            f"steps -> rc {done.returncode} in {cli_s:.1f} s; stderr (not a terminal):"
        )
        print(done.stderr.replace(tmp, "TMP").rstrip())
        names = sorted(p.name for p in (Path(tmp) / "steps").iterdir())
        print(
            f"  --save-steps wrote {len(names)} files: {', '.join(names[:3])}, ..., "
            f"{', '.join(names[-4:])}"
        )

    # halo -------------------------------------------------------------------------
    halo = make_scene(SHAPE, seed=2, kind="halo")
    hstack = render_stack(halo, FRAMES, seed=2)
    hframes = u8(hstack.frames)
    ours = fuse(hframes, align="none").image
    lab = fuse(hframes, method="weighted", align="none").image
    mean = u8(hframes.astype(np.float32).mean(axis=0) / 255.0)
    htruth = halo.image
    print("halo: halo scene seed 2, 9 frames 480x640 uint8, no motion, no noise, align='none'")
    results = {"pyramid (default)": ours, "weighted (lab)": lab, "plain mean": mean}
    for name, image in results.items():
        p, s = score(htruth, image)
        print(f"  {name:<18} PSNR {p:.2f} dB, SSIM {s:.4f}")
    # glow: mean luma excess over the truth on the dark background 1..8 px from a
    # bright foreground object (star z=1 or sticks z=1.15)
    front = halo.depth < 2.0
    grown = front.copy()
    first = front
    for step in range(8):
        nxt = grown.copy()
        nxt[1:] |= grown[:-1]
        nxt[:-1] |= grown[1:]
        nxt[:, 1:] |= grown[:, :-1]
        nxt[:, :-1] |= grown[:, 1:]
        grown = nxt
        if step == 0:
            first = grown & ~front
    ring = grown & ~front
    ring[:BORDER] = ring[-BORDER:] = False
    ring[:, :BORDER] = ring[:, -BORDER:] = False
    tluma = to_gray(htruth)
    for name, image in results.items():
        excess = to_gray(unit(image)) - tluma
        print(
            f"  {name:<18} background 1-8 px from bright edges: mean luma excess "
            f"{excess[ring].mean():+.4f} (truth mean {tluma[ring].mean():.4f}), "
            f"1st px {excess[first].mean():+.4f}"
        )
    # undershoot: pixels clipped to 0 (the truth never goes below 5/255) and pixels
    # darker than the truth by more than 20 levels in a channel, near bright edges
    near = grown & ~front
    t8 = u8(htruth).astype(int)
    for name, image in results.items():
        diff = image.astype(int) - t8
        clipped = int((image == 0).any(axis=2).sum())
        dark = (diff < -20).any(axis=2)
        print(
            f"  {name:<18} pixels with a channel at 0: {clipped} (truth: "
            f"{int((t8 == 0).any(axis=2).sum())}); darker than truth by > 20/255: "
            f"{int(dark.sum())}, {int((dark & near).sum())} of them 1-8 px from a bright object"
        )
    below = (ours.astype(int) < hframes.astype(int).min(axis=0)).any(axis=2)
    dark = ((ours.astype(int) - t8) < -20).any(axis=2)
    print(
        f"  pyramid: {int((dark & below).sum())} of the {int(dark.sum())} pixels darker than "
        "the truth by > 20/255 are darker than every frame there (undershoot)"
    )
    # which frame the default's output resembles at each distance from a bright object
    dist = np.zeros(front.shape, np.int32)
    reach = front.copy()
    for step in range(1, 9):
        nxt = reach.copy()
        nxt[1:] |= reach[:-1]
        nxt[:-1] |= reach[1:]
        nxt[:, 1:] |= reach[:, :-1]
        nxt[:, :-1] |= reach[:, 1:]
        dist[nxt & ~reach] = step
        reach = nxt
    dist[:BORDER] = dist[-BORDER:] = 0
    dist[:, :BORDER] = dist[:, -BORDER:] = 0
    closest = []
    for step in range(1, 9):
        where = dist == step
        errs = [
            np.abs(ours.astype(int) - f.astype(int)).mean(axis=2)[where].mean() for f in hframes
        ]
        closest.append(f"{step} px: frame {int(np.argmin(errs))}")
        if step <= 2:
            closest[-1] += f" (|diff| {min(errs):.1f} vs frame 8 {errs[-1]:.1f} levels)"
    print("  pyramid output closest to, by distance from a bright object:", "; ".join(closest))

    # what the default leaves beside bright edges: mean luma error (grey levels) and
    # how much of the truth's fine texture (3x3 high-pass, std ratio) survives, by
    # distance (the high-pass at 1-2 px also holds the edge itself)
    def high_pass(a: NDArray[Any]) -> NDArray[Any]:
        padded = np.pad(a, 1, mode="edge")
        rows, cols = a.shape
        box = sum(padded[i : i + rows, j : j + cols] for i in range(3) for j in range(3))
        return a - box / 9.0

    oluma = to_gray(unit(ours)) * 255.0
    hp_truth, hp_ours = high_pass(tluma * 255.0), high_pass(oluma)
    band = []
    for step in range(1, 9):
        where = dist == step
        band.append(
            f"{step} px {float((oluma - tluma * 255.0)[where].mean()):+.1f} "
            f"({float(hp_ours[where].std() / hp_truth[where].std()) * 100:.0f} %)"
        )
    print("  pyramid luma error in levels (texture kept) by distance:", ", ".join(band))
    # the envelope check on and off, same merge (pyramid_merge on the frames, fuse's depth)
    depth = fuse(hframes, align="none").depth
    for envelope in (True, False):
        merged = pyramid_merge(hframes, depth, envelope=envelope)
        p, s = score(htruth, merged)
        excess = to_gray(unit(merged)) - tluma
        dark = ((merged.astype(int) - t8) < -20).any(axis=2)
        print(
            f"  pyramid_merge(envelope={envelope}): PSNR {p:.2f} dB, SSIM {s:.4f}, luma excess "
            f"1-8 px {excess[ring].mean():+.4f}, pixels with a channel at 0: "
            f"{int((merged == 0).any(axis=2).sum())}, darker than truth by > 20/255: "
            f"{int(dark.sum())}"
        )
    fig = viz.image_grid(
        [shrink(htruth, 2), shrink(ours, 2), shrink(lab, 2), shrink(mean, 2)],
        ["truth", "pyramid (default)", "weighted (lab)", "plain mean"],
        cols=4,
        panel_width=2.6,
    )
    save(fig, out / "halo-overview.jpg")
    # crops: the edge window where OUR error is largest, and where the lab's is
    ours_err = np.abs(unit(ours) - htruth).mean(axis=2)
    lab_err = np.abs(unit(lab) - htruth).mean(axis=2)
    size = 80
    w_ours = window_at(ours_err, size)
    w_lab = window_at(lab_err, size, avoid=w_ours)
    rows = []
    labels = []
    for corner in (w_ours, w_lab):
        tiles = [crop(htruth, corner, size)] + [crop(img, corner, size) for img in results.values()]
        rows.append(tiles)
        rows.append([np.clip(unit(t), 0, 1) ** 0.4 for t in tiles])
        labels += [f"at {corner}", "gamma 0.4"]
    one_to_one(
        rows,
        ["truth", "pyramid", "weighted", "mean"],
        labels,
        out / "halo-crops.png",
    )
    print(
        f"  crops at {w_ours} (our worst {size}x{size} window, mean |err| "
        f"{crop(ours_err, w_ours, size).mean():.4f}) and {w_lab} (lab's worst, ours "
        f"{crop(ours_err, w_lab, size).mean():.4f}, lab {crop(lab_err, w_lab, size).mean():.4f})"
    )

    total = 0
    for name in FIGURES:
        n = (out / name).stat().st_size
        total += n
        print(f"  {name:<22} {n / 1024:7.1f} KiB")
    print(f"  total {total / 1024:.1f} KiB; done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
