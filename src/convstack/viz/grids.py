"""Images side by side with titles, and a kernel drawn as coloured, annotated cells."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _validate as v
from ._common import (
    as_2d,
    check_titles,
    finish,
    finite_range,
    new_figure,
    symmetric_range,
    text_colour,
)
from .tables import format_number

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["display_rgb", "image_grid", "kernel_plot"]


def _integer_peak(image: NDArray[Any]) -> float:
    """White of an integer image: 255 for uint8, 65535 for uint16; for other integer
    types 255 when the values fit, else 65535."""
    if image.dtype in (np.uint8, np.uint16):
        return float(np.iinfo(image.dtype).max)
    return 255.0 if int(image.max()) <= 255 else 65535.0


def display_rgb(image: NDArray[Any]) -> NDArray[np.float64]:
    """Colour image as floats in [0, 1]: integers scaled by their white (255 for uint8,
    65535 for uint16), floats taken to be in [0, 1] already (clipped).

    Examples
    --------
    >>> display_rgb(np.array([[[0, 255, 51]]], np.uint8)).tolist()
    [[[0.0, 1.0, 0.2]]]
    """
    if image.dtype.kind in "ui":
        scaled = image.astype(np.float64) / _integer_peak(image)
    else:
        scaled = image.astype(np.float64)
    return np.clip(scaled, 0.0, 1.0)


def grid_shape(count: int, cols: int | None) -> tuple[int, int]:
    if cols is None:
        cols = min(count, 4)
    cols = v.per_axis_ints(cols, "cols", 1, minimum=1)[0]
    cols = min(cols, count)
    return math.ceil(count / cols), cols


def show_image(
    ax: Axes,
    image: NDArray[Any],
    *,
    cmap: str,
    vmin: float | None,
    vmax: float | None,
) -> Any:
    """Draw one gray or colour image on ``ax`` without ticks; return the AxesImage."""
    if image.ndim == 3:
        shown = ax.imshow(display_rgb(image[..., :3]), interpolation="nearest")
    else:
        if image.dtype in (np.uint8, np.uint16):  # the dtype's range, as a viewer shows it
            low, high = 0.0, float(np.iinfo(image.dtype).max)
        else:
            # signed values (derivatives): 0 is mid-gray
            low, high = symmetric_range(*finite_range(image))
        shown = ax.imshow(
            image,
            cmap=cmap,
            vmin=low if vmin is None else vmin,
            vmax=high if vmax is None else vmax,
            interpolation="nearest",
        )
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def panel_size(shape: tuple[int, ...], width: float = 3.4) -> tuple[float, float]:
    """Inches (width, height) of one panel that keeps the image's aspect ratio."""
    rows, cols = shape[:2]
    return width, max(1.0, width * rows / cols)


def image_grid(
    images: Sequence[ArrayLike],
    titles: Sequence[str] | None = None,
    *,
    cols: int | None = None,
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = False,
    suptitle: str | None = None,
    panel_width: float = 3.4,
    path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Figure:
    """Show images in a grid, each with its title.

    Parameters
    ----------
    images : sequence of array_like
        Gray (rows, cols) or colour (rows, cols, 3 or 4) images. Colour images: uint8
        and uint16 scaled by 255 and 65535 (other integers by 255 when they fit, else
        65535), floats must lie in [0, 1] (outside values are clipped). Gray images:
        uint8 and uint16 over their dtype's range, others over their own range (min to
        max, symmetric about 0 when they have both signs), unless ``vmin`` / ``vmax``
        are given.
    titles : sequence of str, optional
        One per image.
    cols : int, optional
        Images per row (default: up to 4).
    cmap : str
        Colormap of gray images.
    vmin, vmax : float, optional
        Value range of gray images, the same for all.
    colorbar : bool
        A colour bar beside each gray image, for images whose values matter.
    suptitle : str, optional
        Text above the grid.
    panel_width : float
        Width of each image in inches.
    path : path-like, optional
        Save the figure there as a PNG (atomically).
    overwrite : bool
        Replace an existing file at ``path``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    arrays = [v.as_real_array(image, f"images[{i}]") for i, image in enumerate(images)]
    if not arrays:
        raise v.fail("images", "hold at least one image", images)
    for i, array in enumerate(arrays):
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
            raise v.fail(f"images[{i}]", "be (rows, cols) or (rows, cols, 3 or 4)", array)
    check_titles(titles, len(arrays), "image")
    rows, ncols = grid_shape(len(arrays), cols)
    width, height = panel_size(arrays[0].shape, panel_width)
    extra = 0.9 if colorbar else 0.0
    fig = new_figure(ncols * (width + extra) + 0.2, rows * (height + 0.45) + (0.4 * bool(suptitle)))
    axes = fig.subplots(rows, ncols, squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= len(arrays):
            ax.axis("off")
            continue
        shown = show_image(ax, arrays[index], cmap=cmap, vmin=vmin, vmax=vmax)
        if titles is not None:
            ax.set_title(titles[index], fontsize=10)
        if colorbar and arrays[index].ndim == 2:
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
    if suptitle:
        fig.suptitle(suptitle)
    return finish(fig, path, overwrite)


def kernel_plot(
    kernel: ArrayLike,
    *,
    title: str | None = None,
    decimals: int = 3,
    annotate: bool | None = None,
    path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Figure:
    """Draw a 1-D or 2-D kernel as coloured cells with a colour bar.

    Parameters
    ----------
    kernel : array_like
        The weights. A signed kernel is drawn with a diverging colormap centred on 0.
    title : str, optional
        Text above the plot; by default the kernel's shape and sum.
    decimals : int
        Places of the numbers written in the cells.
    annotate : bool, optional
        Write each weight in its cell (default: when no side exceeds 11 cells).
    path : path-like, optional
        Save the figure there as a PNG (atomically).
    overwrite : bool
        Replace an existing file at ``path``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    weights = as_2d(kernel, "kernel").astype(np.float64)
    rows, cols = weights.shape
    low, high = float(np.nanmin(weights)), float(np.nanmax(weights))
    if low == high:  # a constant kernel (box): show it against 0
        low, high = min(low, 0.0), max(high, 0.0)
        if low == high:
            low, high = -1.0, 1.0
    cmap = "RdBu_r" if low < 0 < high else "viridis"
    low, high = symmetric_range(low, high)
    if annotate is None:
        annotate = max(rows, cols) <= 11
    cell = 0.6 if max(rows, cols) <= 11 else 5.0 / max(rows, cols)
    fig = new_figure(max(cols * cell + 1.4, 3.0), max(rows * cell + 0.7, 1.6))
    ax = fig.add_subplot()
    shown = ax.imshow(weights, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
    if annotate:
        from matplotlib import colormaps
        from matplotlib.colors import Normalize

        colours = colormaps[cmap](Normalize(low, high)(weights))
        for r in range(rows):
            for c in range(cols):
                ax.text(
                    c,
                    r,
                    format_number(float(weights[r, c]), decimals),
                    ha="center",
                    va="center",
                    fontsize=8 if max(rows, cols) > 5 else 10,
                    color=text_colour(colours[r, c]),
                )
    ax.set_xticks(range(cols) if cols <= 11 else [0, cols // 2, cols - 1])
    ax.set_yticks(range(rows) if rows <= 11 else [0, rows // 2, rows - 1])
    ax.set_xlabel("col")
    ax.set_ylabel("row")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="weight")
    ax.set_title(
        title if title is not None else f"kernel {rows}x{cols}, sum {weights.sum():.4g}",
        fontsize=10,
    )
    return finish(fig, path, overwrite)
