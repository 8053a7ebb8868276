"""`convstack demo`: render a synthetic focus stack with known truth, fuse it, score it.

Nothing is downloaded: the scene (textured planes and objects at known distances) is
generated, photographed at several focus distances with a thin-lens defocus model,
focus breathing, camera shake and sensor noise, written as 16-bit PNG frames, fused
from those files by ``convstack.stack.fuse``, and scored against the truth.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _preload, _writer
from ..stack import DEFAULT_METHOD, METHODS, StackError, fuse
from ..stack import io as _io
from ..stack.depth import depth_to_image
from ..stack.synthetic import SCENE_KINDS, RenderedStack, Scene, make_scene, render_stack
from ..warp import warp
from ._common import UserError, progress_bar

__all__ = ["register", "run"]

_BREATHING = 0.003  # relative magnification change per frame
_SHIFT = 2.0  # pixels of random shift per frame
_NOISE = 0.01  # sensor noise sigma on a [0, 1] scale


def register(subparsers: Any) -> None:
    """Add the `demo` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="render a synthetic focus stack with known truth, fuse it and score it",
        description=(
            "Build a synthetic scene with known depth, render a focus stack from it "
            "(thin-lens defocus, focus breathing, shift and sensor noise), fuse it, write "
            "the frames, the result, the depth map and a side-by-side picture, and print "
            "PSNR/SSIM against the truth for every frame and for the result."
        ),
    )
    parser.add_argument(
        "--out", default="convstack-demo", metavar="DIR", help="output folder (created)"
    )
    parser.add_argument(
        "--size",
        nargs=2,
        type=int,
        default=(480, 640),
        metavar=("ROWS", "COLS"),
        help="image size (default 480 640)",
    )
    parser.add_argument("--frames", type=int, default=9, metavar="N", help="frames (default 9)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--scene", choices=SCENE_KINDS, default="default", help="scene kind (default: default)"
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default=DEFAULT_METHOD,
        help=f"fusion method (default {DEFAULT_METHOD})",
    )
    parser.add_argument("--force", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _u8(image: NDArray[Any]) -> NDArray[np.uint8]:
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _u16(image: NDArray[Any]) -> NDArray[np.uint16]:
    return np.rint(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)


def _unit(image: NDArray[Any]) -> NDArray[np.float32]:
    if image.dtype.kind == "u":
        return (image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)).astype(np.float32)
    return image.astype(np.float32)


def _planar(shape: tuple[int, ...]) -> NDArray[np.float32]:
    """An empty float32 (rows, cols, channels) image stored channel by channel."""
    return np.moveaxis(np.empty((shape[-1], *shape[:-1]), np.float32), 0, -1)


def _load_kernels(frame: tuple[int, ...]) -> None:
    """Load the kernels of the demo's fuse (of frames of ``frame``'s shape written as
    16-bit PNG) in both its processes, and of its scores (the float64 windows of SSIM,
    the warp of each frame onto the truth's grid): tiny calls, the same signatures.

    After a fresh install (a cold cache) a second process compiles the warps
    (:func:`_load_warps`) meanwhile: 10-11 s of compiling, 4-5 s of it there.
    """
    from ..metrics import ssim

    aside = _preload.warps_aside(__name__, _load_warps.__name__)
    try:
        frames = (frame, np.dtype(np.uint16))
        _preload.load_fuse_kernels(warp=False, frame=frames, pyramid=True, png=True)
        tiny = np.zeros((16, 16, 3), np.float32)
        ssim(tiny, tiny, data_range=1.0, channel_axis=-1)
    finally:
        if aside is not None:
            aside()
    _load_warps()  # (from the cache the other process filled)


def _load_warps() -> None:
    """Load the demo's warps (:func:`_load_kernels`): the fuse's, of 16-bit frames,
    and the scores', a float32 frame into planes by Keys' cubic."""
    _preload.load_warp_kernels(((16, 16, 3), np.dtype(np.uint16)))
    tiny = np.zeros((16, 16, 3), np.float32)
    moved = np.array([[1.003, 0.0, 0.5], [0.0, 1.003, -0.25], [0.0, 0.0, 1.0]])
    warp(tiny, moved, order=3, out=_planar(tiny.shape))


def _true_index(scene: Scene, stack: RenderedStack) -> NDArray[np.float32]:
    """The truth depth as a fractional frame index (frame k is focused at ``1/z_k``)."""
    inv_focus = 1.0 / stack.focus_distances
    inv = 1.0 / scene.depth.astype(np.float64)
    order = np.argsort(inv_focus)
    index = np.interp(inv, inv_focus[order], np.arange(len(inv_focus), dtype=np.float64)[order])
    return index.astype(np.float32)


def _margin(stack: RenderedStack, shape: tuple[int, int]) -> int:
    """Pixels at the border that a frame's warp may have filled by edge repetition."""
    rows, cols = shape
    corners = np.array([[0, 0, 1], [0, cols - 1, 1], [rows - 1, 0, 1], [rows - 1, cols - 1, 1.0]])
    moved = max(float(np.abs((m @ corners.T)[:2] - corners.T[:2]).max()) for m in stack.transforms)
    return int(math.ceil(moved)) + 4


def _panel(tiles: list[list[tuple[NDArray[Any], str]]]) -> NDArray[np.uint8]:
    """A grid of labelled RGB tiles separated by white lines."""
    from PIL import Image, ImageDraw  # here: the other commands never need them

    gap = 4
    rows: list[NDArray[np.uint8]] = []
    for tile_row in tiles:
        images: list[NDArray[np.uint8]] = []
        for image, label in tile_row:
            rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)
            picture = Image.fromarray(_u8(rgb))
            draw = ImageDraw.Draw(picture)
            draw.rectangle((0, 0, 8 + 6 * len(label), 16), fill=(0, 0, 0))
            draw.text((4, 3), label, fill=(255, 255, 255))
            images.append(np.asarray(picture))
        spacer = np.full((images[0].shape[0], gap, 3), 255, np.uint8)
        line = [images[0]]
        for tile in images[1:]:
            line += [spacer, tile]
        rows.append(np.concatenate(line, axis=1))
    spacer_row = np.full((gap, rows[0].shape[1], 3), 255, np.uint8)
    grid = [rows[0]]
    for strip in rows[1:]:
        grid += [spacer_row, strip]
    return np.concatenate(grid, axis=0)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    rows, cols = args.size
    if rows < 32 or cols < 32:
        raise UserError(f"--size must be at least 32 32; got {rows} {cols}.")
    if args.frames < 2:
        raise UserError(f"--frames must be at least 2; got {args.frames}.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder.")
    names = [f"frame{k + 1:02d}.png" for k in range(args.frames)]
    targets = [out / "frames" / n for n in names] + [
        out / "truth.png",
        out / "truth-depth.png",
        out / "result.png",
        out / "depth.png",
        out / "side-by-side.png",
    ]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not args.force:
        raise UserError(
            f"{existing[0]} already exists"
            + (f" (and {len(existing) - 1} more)" if len(existing) > 1 else "")
            + "; use --force to replace, or --out for another folder."
        )
    (out / "frames").mkdir(parents=True, exist_ok=True)
    for target in targets:  # (folders writable, no folder in a file's place) before the work
        try:
            _writer.check_target(target, overwrite=args.force)
        except _writer.OutputRefusedError as exc:
            raise UserError(str(exc)) from None
    progress = progress_bar(args.quiet)

    started = time.perf_counter()
    # the kernels of the fuse and of the scores load (or, after a fresh install,
    # compile) while the stack renders; done before fuse forks its reader child
    kernels_loaded = _preload.in_background(lambda: _load_kernels((rows, cols, 3)))
    try:
        scene = make_scene((rows, cols), seed=args.seed, kind=args.scene)
        stack = render_stack(
            scene,
            args.frames,
            breathing=_BREATHING,
            shift=_SHIFT,
            noise=_NOISE,
            seed=args.seed,
        )
        rendered = time.perf_counter()
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    finally:
        kernels_loaded()

    frame_paths = []
    for k, frame in enumerate(stack.frames):
        frame_paths.append(_io.write_image(targets[k], _u16(frame), overwrite=args.force))
        if progress is not None:
            progress("write", k + 1, len(stack.frames))
    _io.write_image(out / "truth.png", _u16(scene.image), overwrite=args.force)
    truth_index = _true_index(scene, stack)
    depth_image = depth_to_image(truth_index, args.frames, np.uint16)
    _io.write_image(out / "truth-depth.png", depth_image, overwrite=args.force)

    fuse_start = time.perf_counter()
    try:
        result = fuse(frame_paths, method=args.method, align="similarity", progress=progress)
    except (StackError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    fused = time.perf_counter()
    _io.write_image(out / "result.png", result.image, overwrite=args.force)
    depth_out = depth_to_image(result.depth, args.frames, np.uint16)
    _io.write_image(out / "depth.png", depth_out, overwrite=args.force)

    image = _unit(result.image)
    truth = scene.image
    mid = stack.reference
    error = np.abs(image - truth).mean(axis=-1) * 4.0
    picture = _panel(
        [
            [
                (truth, "truth"),
                (_unit(_u16(stack.frames[mid])), f"frame {mid + 1}"),
                (image, f"result ({result.method})"),
            ],
            [
                (truth_index / max(args.frames - 1, 1), "true depth"),
                (result.depth / max(args.frames - 1, 1), "fused depth"),
                (error, "|result - truth| x4"),
            ],
        ]
    )
    _io.write_image(out / "side-by-side.png", picture, overwrite=args.force)
    finished = time.perf_counter()

    margin = _margin(stack, (rows, cols))
    inner = (slice(margin, rows - margin), slice(margin, cols - margin))
    if rows - 2 * margin < 11 or cols - 2 * margin < 11:
        inner = (slice(None), slice(None))
        margin = 0
    from ..metrics import psnr, ssim  # here: the other commands never need them

    table = []
    for k in range(args.frames):
        # Each frame put back on the truth's grid with its true transform, so that its
        # score measures the defocus, not the camera motion.
        frame = _unit(_u16(stack.frames[k]))
        if k != stack.reference:
            planar = _planar(frame.shape)  # (the layout, so the kernel, of fuse's warps)
            warp(frame, stack.transforms[k], order=3, out=planar)
            frame = np.clip(planar, 0.0, 1.0)
        label = f"{names[k]} (focus z={stack.focus_distances[k]:.2f})"
        table.append(
            (
                label,
                psnr(truth[inner], frame[inner], data_range=1.0),
                ssim(truth[inner], frame[inner], data_range=1.0, channel_axis=-1),
            )
        )
    best = max(p for _, p, _ in table)
    result_psnr = psnr(truth[inner], image[inner], data_range=1.0)
    result_ssim = ssim(truth[inner], image[inner], data_range=1.0, channel_axis=-1)
    depth_error = np.abs(result.depth - truth_index)[inner]

    print(
        f"convstack demo: {args.scene} scene, {args.frames} frames of {rows}x{cols}, "
        f"seed {args.seed}; breathing {_BREATHING:.1%}/frame, shift up to {_SHIFT:g} px, "
        f"noise sigma {_NOISE:g}"
    )
    print(
        f"rendered in {rendered - started:.1f} s, fused ({result.method}, similarity "
        f"alignment) in {fused - fuse_start:.1f} s, total {finished - started:.1f} s"
    )
    print(
        f"\nscores against the truth ({margin} px border excluded; frames registered "
        "with their true transform):"
    )
    print(f"{'image':<32} {'PSNR (dB)':>9} {'SSIM':>7}")
    for label, p, s in table:
        print(f"{label:<32} {p:9.2f} {s:7.4f}")
    print(
        f"{'result':<32} {result_psnr:9.2f} {result_ssim:7.4f}"
        f"   ({result_psnr - best:+.2f} dB over the best frame)"
    )
    print(
        f"depth map: mean |error| {depth_error.mean():.2f} frames, "
        f"{(depth_error <= 0.5).mean():.0%} of pixels within half a frame"
    )
    print(
        f"\nwrote {out}/: frames/, truth.png, truth-depth.png, result.png, depth.png, "
        "side-by-side.png"
    )
    print(f"try: convstack fuse {out / 'frames'} -o fused.png --depth-map depth.png")
    return 0
