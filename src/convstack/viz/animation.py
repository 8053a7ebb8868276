"""The convolution-arithmetic animation of Dumoulin and Visin, for any padding, stride, dilation.

"A guide to convolution arithmetic for deep learning" (V. Dumoulin, F. Visin, 2016) draws
the input in blue, the padding as dashed empty cells, the kernel's footprint as a shaded
patch sliding over the input, and the output in green, one cell written per step. This
module draws the same for any 1-D or 2-D case that `convstack.correlate` accepts: one frame
per output cell, so a GIF has exactly ``prod(output_shape)`` frames, where each axis follows
``floor((n + before + after - dilation*(k-1) - 1) / stride) + 1``.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, NamedTuple

from .. import _validate as v
from ..convolve import output_shape
from ..padding import dilated_span, resolve_padding
from ._common import atomic_write, check_target, new_figure

__all__ = ["Sweep", "convolution_animation", "sweep"]

MAX_FRAMES = 1024

INPUT_COLOUR = "#7fb2e5"
PADDING_EDGE = "#8c8c8c"
FOOTPRINT_COLOUR = "#404040"
OUTPUT_DONE = "#a8dcb0"
OUTPUT_NOW = "#2e9e4a"


class Sweep(NamedTuple):
    """Geometry of a sweep: every size on two axes (rows, cols); 1-D cases have one row."""

    input_shape: tuple[int, int]
    kernel_shape: tuple[int, int]
    pads: tuple[tuple[int, int], tuple[int, int]]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    output_shape: tuple[int, int]

    def taps(self, out_row: int, out_col: int) -> list[tuple[int, int]]:
        """Cells of the padded input under the kernel's taps for one output cell."""
        top, left = out_row * self.stride[0], out_col * self.stride[1]
        return [
            (top + i * self.dilation[0], left + j * self.dilation[1])
            for i in range(self.kernel_shape[0])
            for j in range(self.kernel_shape[1])
        ]


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)) or len(value) not in (1, 2):
        raise v.fail(name, "be 1 or 2 ints (a 1-D or 2-D shape)", value, kind=TypeError)
    return v.per_axis_ints(tuple(value), name, len(value), minimum=1)


def sweep(
    input_shape: int | tuple[int, ...],
    kernel_shape: int | tuple[int, ...],
    *,
    padding: Any = 0,
    stride: int | tuple[int, ...] = 1,
    dilation: int | tuple[int, ...] = 1,
) -> Sweep:
    """Work out the geometry of a kernel sweeping an input, as `convstack.correlate` does.

    Parameters
    ----------
    input_shape, kernel_shape : int or tuple of 1 or 2 ints
        Sizes of the input and the kernel (the same number of axes).
    padding : {"same", "valid", "full"}, int, sequence of int or of (before, after)
        As in `convstack.correlate`.
    stride, dilation : int or sequence of int
        As in `convstack.correlate`, >= 1.

    Returns
    -------
    Sweep
        Sizes on two axes, with ``output_shape`` from the output-shape formula.

    Examples
    --------
    >>> sweep((5, 5), (3, 3), padding=1, stride=2).output_shape
    (3, 3)
    >>> sweep(7, 3, dilation=2).output_shape
    (1, 3)
    """
    shape = _shape(input_shape, "input_shape")
    kshape = _shape(kernel_shape, "kernel_shape")
    if len(kshape) != len(shape):
        raise ValueError(
            f"`kernel_shape` must have as many axes as `input_shape` ({len(shape)}); got {kshape}."
        )
    ndim = len(shape)
    strides = v.per_axis_ints(stride, "stride", ndim, minimum=1)
    dilations = v.per_axis_ints(dilation, "dilation", ndim, minimum=1)
    pads = resolve_padding(padding, kshape, dilations)
    spans = dilated_span(kshape, dilations)
    for axis, (n, (b, a), w) in enumerate(zip(shape, pads, spans, strict=True)):
        if n + b + a < w:
            raise ValueError(
                f"`kernel_shape` must fit inside the padded input: along axis {axis} the "
                f"dilated kernel spans {w} cells but the padded input has "
                f"{n + b + a}."
            )
    out = output_shape(shape, kshape, pads, strides, dilations)
    if ndim == 1:
        return Sweep(
            (1, shape[0]),
            (1, kshape[0]),
            ((0, 0), pads[0]),
            (1, strides[0]),
            (1, dilations[0]),
            (1, out[0]),
        )
    return Sweep(
        (shape[0], shape[1]),
        (kshape[0], kshape[1]),
        (pads[0], pads[1]),
        (strides[0], strides[1]),
        (dilations[0], dilations[1]),
        (out[0], out[1]),
    )


def _describe(geometry: Sweep) -> str:
    """'padding 1, stride 2, dilation 1', per axis where the axes differ."""
    axes = [1] if geometry.input_shape[0] == 1 else [0, 1]

    def text(values: tuple[Any, Any]) -> str:
        chosen = [values[a] for a in axes]
        if all(x == chosen[0] for x in chosen):
            item = chosen[0]
            if isinstance(item, tuple):
                return str(item[0]) if item[0] == item[1] else f"{item[0]} before, {item[1]} after"
            return str(item)
        return f"{chosen[0]} (rows) x {chosen[1]} (cols)"

    return (
        f"padding {text(geometry.pads)}, stride {text(geometry.stride)}, "
        f"dilation {text(geometry.dilation)}"
    )


def convolution_animation(
    input_shape: int | tuple[int, ...],
    kernel_shape: int | tuple[int, ...],
    *,
    padding: Any = 0,
    stride: int | tuple[int, ...] = 1,
    dilation: int | tuple[int, ...] = 1,
    path: str | os.PathLike[str],
    fps: int = 2,
    overwrite: bool = False,
) -> Path:
    """Write a GIF of a kernel sweeping an input, one frame per output cell.

    Blue cells are the input, dashed empty cells the padding, dark cells the kernel's
    taps (spread apart by the dilation, the dotted box is their span), and on the right
    the output: light green cells are written, the dark green one is being written.

    Parameters
    ----------
    input_shape, kernel_shape : int or tuple of 1 or 2 ints
        Sizes of the input and the kernel.
    padding : {"same", "valid", "full"}, int, sequence of int or of (before, after)
        As in `convstack.correlate`.
    stride, dilation : int or sequence of int
        As in `convstack.correlate`, >= 1.
    path : path-like
        The GIF to write (atomically, with matplotlib's Pillow writer).
    fps : int
        Frames per second.
    overwrite : bool
        Replace an existing file at ``path``.

    Returns
    -------
    pathlib.Path
        ``path``. The GIF has ``prod(output_shape)`` frames.

    Raises
    ------
    ValueError
        A kernel that does not fit the padded input, bad sizes, or more than 1024 frames.
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    geometry = sweep(input_shape, kernel_shape, padding=padding, stride=stride, dilation=dilation)
    frames = geometry.output_shape[0] * geometry.output_shape[1]
    if frames > MAX_FRAMES:
        raise ValueError(
            f"the animation must have at most {MAX_FRAMES} frames (one per output cell); "
            f"got {frames} for output shape {geometry.output_shape}."
        )
    fps = v.per_axis_ints(fps, "fps", 1, minimum=1)[0]
    target = check_target(path, overwrite)
    assert target is not None

    from matplotlib.animation import PillowWriter
    from matplotlib.patches import Rectangle

    (rows, cols), (pb_r, pa_r), (pb_c, pa_c) = (
        geometry.input_shape,
        geometry.pads[0],
        geometry.pads[1],
    )
    prows, pcols = rows + pb_r + pa_r, cols + pb_c + pa_c
    orows, ocols = geometry.output_shape
    gap = 2.0
    ox = pcols + gap  # left edge of the output grid
    oy = (prows - orows) / 2.0  # output centred vertically on the input
    width_cells = ox + ocols + 0.5
    height_cells = prows + 2.6  # room for the titles above and the caption below
    cell = min(0.42, 7.5 / width_cells)
    fig = new_figure(max(width_cells * cell, 4.0), height_cells * cell + 0.3)
    fig.set_layout_engine("none")
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(-0.5, max(width_cells, 4.0 / cell - 0.5))
    ax.set_ylim(prows + 1.6, -1.3)
    ax.set_aspect("equal")
    ax.axis("off")

    for r, c in itertools.product(range(prows), range(pcols)):
        inside = pb_r <= r < pb_r + rows and pb_c <= c < pb_c + cols
        ax.add_patch(
            Rectangle(
                (c, r),
                1,
                1,
                facecolor=INPUT_COLOUR if inside else "white",
                edgecolor="#1f4e79" if inside else PADDING_EDGE,
                linestyle="solid" if inside else (0, (3, 2)),
                linewidth=1.0,
            )
        )
    taps = [
        Rectangle((0, 0), 1, 1, facecolor=FOOTPRINT_COLOUR, alpha=0.6, edgecolor="black")
        for _ in range(geometry.kernel_shape[0] * geometry.kernel_shape[1])
    ]
    for patch in taps:
        ax.add_patch(patch)
    span_r = geometry.dilation[0] * (geometry.kernel_shape[0] - 1) + 1
    span_c = geometry.dilation[1] * (geometry.kernel_shape[1] - 1) + 1
    span = Rectangle(
        (0, 0), span_c, span_r, fill=False, edgecolor="black", linestyle=":", linewidth=1.5
    )
    ax.add_patch(span)
    outputs = {}
    for r, c in itertools.product(range(orows), range(ocols)):
        patch = Rectangle(
            (ox + c, oy + r), 1, 1, facecolor="white", edgecolor="#1e6b31", linewidth=1.0
        )
        ax.add_patch(patch)
        outputs[(r, c)] = patch
    shape_text = "x".join(str(n) for n in geometry.input_shape[rows == 1 :])
    out_text = "x".join(str(n) for n in geometry.output_shape[rows == 1 :])
    kernel_text = "x".join(str(n) for n in geometry.kernel_shape[rows == 1 :])
    ax.text(0, -0.4, f"input {shape_text} (blue), padding dashed", fontsize=9, va="bottom")
    ax.text(ox, oy - 0.4, f"output {out_text}", fontsize=9, va="bottom")
    ax.text(
        0,
        prows + 0.35,
        f"kernel {kernel_text}, {_describe(geometry)}",
        fontsize=9,
        va="top",
    )
    caption = ax.text(0, prows + 1.0, "", fontsize=9, va="top", color="#1e6b31")

    writer = PillowWriter(fps=fps)

    def render(temp: str) -> None:
        with writer.saving(fig, temp, dpi=100):
            for index, (r, c) in enumerate(itertools.product(range(orows), range(ocols))):
                cells = geometry.taps(r, c)
                for patch, (tr, tc) in zip(taps, cells, strict=True):
                    patch.set_xy((tc, tr))
                span.set_xy((cells[0][1], cells[0][0]))
                for key, patch in outputs.items():
                    done = key < (r, c)
                    patch.set_facecolor(
                        OUTPUT_NOW if key == (r, c) else OUTPUT_DONE if done else "white"
                    )
                where = f"[{c}]" if rows == 1 else f"[{r}, {c}]"
                caption.set_text(f"step {index + 1}/{frames}: writing output{where}")
                writer.grab_frame()

    atomic_write(target, render, overwrite=overwrite)
    return target
