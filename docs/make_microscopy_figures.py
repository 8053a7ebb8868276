"""Build the pictures of docs/microscopy.md: a z-stack from one OME-TIFF to a height map.

Usage::

    python docs/make_microscopy_figures.py            # writes docs/img/micro-*, no overwrite
    python docs/make_microscopy_figures.py --force    # replace existing pictures
    python docs/make_microscopy_figures.py --out DIR  # somewhere else

The z-stack is rendered by ``convstack.stack.synthetic`` (fixed seed) and written as a
16-bit, 3-channel OME-TIFF with its calibration; the command line then fuses it exactly
as the document shows. Every file goes through ``convstack._writer`` (atomic, no
clobber). The figures printed at the end are those quoted in the document. About 10 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from numpy.typing import NDArray

from convstack import _writer
from convstack.cli import main as convstack
from convstack.metrics import psnr
from convstack.stack.io import read_image
from convstack.stack.synthetic import make_scene, render_stack

HERE = Path(__file__).resolve().parent
SHAPE = (240, 320)
PLANES = 9
Z_STEP = 2.5  # micrometres between planes
PIXEL = 0.65  # micrometres a pixel
BLUR_PER_PLANE = 1.25  # blur-disc radius (pixels) one plane from focus
FIGURES = ("micro-planes.jpg", "micro-fused.jpg", "micro-height.png", "micro-mesh.jpg")


def make_zstack(folder: Path) -> tuple[Path, NDArray[Any], NDArray[Any]]:
    """The OME-TIFF z-stack, the true all-in-focus image and the true height (um)."""
    scene = make_scene(SHAPE, seed=3)
    inv = 1.0 / scene.depth.astype(np.float64)
    span = float(inv.max() - inv.min())
    stack = render_stack(
        scene, PLANES, aperture=BLUR_PER_PLANE * (PLANES - 1) / span, noise=0.005, seed=3
    )
    # the stack starts at the bottom (the farthest surface) and steps up, as a microscope's
    frames = np.rint(stack.frames[::-1] * 65535).astype(np.uint16)
    path = folder / "zstack.ome.tif"
    tifffile.imwrite(
        path,
        np.moveaxis(frames, -1, 1),  # Z, C, Y, X
        metadata={
            "axes": "ZCYX",
            "PhysicalSizeZ": Z_STEP,
            "PhysicalSizeX": PIXEL,
            "PhysicalSizeY": PIXEL,
            "Channel": {"Name": ["red", "green", "blue"]},
        },
    )
    height = (inv - inv.min()) / span * (PLANES - 1) * Z_STEP  # plane 0 at height 0
    return path, scene.image, height.astype(np.float32)


def save(fig: Any, path: Path, force: bool) -> None:
    """A matplotlib figure through the one writer (JPEG or PNG by extension)."""
    options: dict[str, Any] = {"dpi": 100, "bbox_inches": "tight", "pad_inches": 0.08}
    if path.suffix == ".jpg":
        options["pil_kwargs"] = {"quality": 88}
    _writer.write_via_path(path, lambda temp: fig.savefig(temp, **options), overwrite=force)


def figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def show(ax: Any, image: NDArray[Any], title: str, **options: Any) -> Any:
    shown = ax.imshow(image, **options)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return shown


def unit(image: NDArray[Any]) -> NDArray[np.float32]:
    if image.dtype.kind == "u":
        return (image / np.float32(np.iinfo(image.dtype).max)).astype(np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "img")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    out: Path = args.out
    for name in FIGURES:
        _writer.check_target(out / name, overwrite=args.force)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        path, truth, true_height = make_zstack(work)
        files = {k: work / v for k, v in (("edf", "edf.ome.tif"), ("h", "height.tif"))}
        files.update(c=work / "confidence.tif", mesh=work / "surface.ply")
        code = convstack(
            ["fuse", str(path), "-o", str(files["edf"]), "--quiet"]
            + ["--height-map", str(files["h"]), "--confidence", str(files["c"])]
            + ["--mesh", str(files["mesh"]), "--mesh-step", "2"]
        )
        if code != 0:
            return code
        with tifffile.TiffFile(path) as tif:
            planes = [np.moveaxis(tif.series[0].asarray()[z], 0, -1) for z in (0, 3, 6, 8)]
        with tifffile.TiffFile(files["edf"]) as tif:
            fused = np.moveaxis(tif.asarray(), 0, -1)
        height = read_image(files["h"])
        confidence = read_image(files["c"])
        mesh_bytes = files["mesh"].stat().st_size

    fig = figure(12, 2.9)
    for i, (z, plane) in enumerate(zip((0, 3, 6, 8), planes, strict=True)):
        show(fig.add_subplot(1, 4, i + 1), unit(plane), f"plane Z={z} ({z * Z_STEP:g} µm)")
    fig.suptitle("zstack.ome.tif: 9 planes of 16-bit, 3 channels, 2.5 µm apart", fontsize=10)
    save(fig, out / FIGURES[0], args.force)

    fig = figure(8, 3.2)
    show(fig.add_subplot(1, 2, 1), unit(truth), "truth (all in focus)")
    show(fig.add_subplot(1, 2, 2), unit(fused), "fused: edf.ome.tif")
    save(fig, out / FIGURES[1], args.force)

    error = np.abs(height - true_height)
    fig = figure(13, 2.6)
    top = (PLANES - 1) * Z_STEP
    panels = (
        (true_height, "true height (µm)", {"cmap": "viridis", "vmin": 0, "vmax": top}),
        (height, "--height-map (µm)", {"cmap": "viridis", "vmin": 0, "vmax": top}),
        (error, "|error| (µm)", {"cmap": "magma", "vmin": 0, "vmax": Z_STEP}),
        (confidence, "--confidence", {"cmap": "gray", "vmin": 0, "vmax": 1}),
    )
    for i, (image, title, options) in enumerate(panels):
        ax = fig.add_subplot(1, 4, i + 1)
        fig.colorbar(show(ax, image, title, **options), ax=ax, fraction=0.035, pad=0.02)
    save(fig, out / FIGURES[2], args.force)

    fig = figure(7, 5)
    ax = fig.add_subplot(1, 1, 1, projection="3d")
    step = 4
    rows, cols = np.mgrid[0 : SHAPE[0] : step, 0 : SHAPE[1] : step]
    ax.plot_surface(
        cols * PIXEL,
        (SHAPE[0] - 1 - rows) * PIXEL,
        height[::step, ::step],
        facecolors=unit(fused)[::step, ::step],
        rstride=1,
        cstride=1,
        linewidth=0,
        antialiased=False,
        shade=False,
    )
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("y (µm)")
    ax.set_zlabel("height (µm)")
    ax.view_init(elev=48, azim=-70)
    ax.set_title("the height map as a surface, coloured by the fused image", fontsize=10)
    save(fig, out / FIGURES[3], args.force)

    inner = (slice(16, -16), slice(16, -16))
    print(f"height map: mean |error| {error.mean() / Z_STEP:.3f} planes ({error.mean():.3f} µm)")
    print(f"  within half a plane: {(error <= Z_STEP / 2).mean():.1%} of pixels")
    score = psnr(unit(truth)[inner], unit(fused)[inner], data_range=1.0)
    print(f"fused PSNR against the truth: {score:.2f} dB (16 px border left out)")
    print(f"mesh: {mesh_bytes / 1e6:.1f} MB (--mesh-step 2)")
    print(f"wrote {', '.join(FIGURES)} to {out} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
