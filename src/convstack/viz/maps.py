"""Per-frame sharpness maps and depth maps, with colour bars: their values matter."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import ArrayLike

from .. import _validate as v
from ._common import check_titles, finish, finite_range, new_figure
from .grids import grid_shape, panel_size

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["depth_map", "sharpness_maps"]


def sharpness_maps(
    maps: ArrayLike | Sequence[ArrayLike],
    titles: Sequence[str] | None = None,
    *,
    cols: int | None = None,
    cmap: str = "magma",
    vmax: float | None = None,
    label: str = "sharpness",
    scale: str = "linear",
    panel_width: float = 2.8,
    path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Figure:
    """Show one sharpness map per frame on one shared colour scale with one colour bar.

    Parameters
    ----------
    maps : array_like (frames, rows, cols) or sequence of 2-D arrays
        Non-negative sharpness per pixel of each frame.
    titles : sequence of str, optional
        One per map (default "frame 0", "frame 1", ...).
    cols : int, optional
        Maps per row (default: up to 4).
    cmap : str
        Colormap.
    vmax : float, optional
        Top of the shared scale (default: the largest value over all maps); the bottom is
        0, or the smallest value when some are negative.
    label : str
        Label of the colour bar.
    scale : {"linear", "sqrt"}
        Colour scale: "sqrt" spreads the small values, for maps whose few strong
        peaks would leave the rest dark (the colour bar keeps the true values).
    panel_width : float
        Width of each map in inches.
    path : path-like, optional
        Save the figure there as a PNG (atomically).
    overwrite : bool
        Replace an existing file at ``path``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    items = list(cast(Iterable[Any], maps))
    arrays = [v.as_real_array(m, f"maps[{i}]").astype(np.float64) for i, m in enumerate(items)]
    if not arrays:
        raise v.fail("maps", "hold at least one map", maps)
    for i, array in enumerate(arrays):
        if array.shape != arrays[0].shape or array.ndim != 2:
            raise v.fail(f"maps[{i}]", f"be 2-D of shape {arrays[0].shape}", array)
    check_titles(titles, len(arrays), "map")
    names = list(titles) if titles is not None else [f"frame {i}" for i in range(len(arrays))]
    low, high = finite_range(np.stack(arrays))
    low = min(low, 0.0)
    if vmax is not None:
        high = v.positive_float(vmax, "vmax")
    v.choice(scale, "scale", ("linear", "sqrt"))
    from matplotlib.colors import Normalize, PowerNorm

    norm = (
        PowerNorm(0.5, vmin=low, vmax=high)
        if scale == "sqrt" and low >= 0
        else Normalize(vmin=low, vmax=high)
    )
    rows, ncols = grid_shape(len(arrays), cols)
    width, height = panel_size(arrays[0].shape, panel_width)
    fig = new_figure(ncols * width + 1.2, rows * (height + 0.4))
    axes = fig.subplots(rows, ncols, squeeze=False)
    shown: Any = None
    for index, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if index >= len(arrays):
            ax.axis("off")
            continue
        shown = ax.imshow(arrays[index], cmap=cmap, norm=norm, interpolation="nearest")
        ax.set_title(names[index], fontsize=10)
    fig.colorbar(shown, ax=axes, fraction=0.03, pad=0.02, label=label)
    return finish(fig, path, overwrite)


def depth_map(
    depth: ArrayLike,
    *,
    title: str | None = None,
    cmap: str = "viridis",
    label: str = "depth (frame index)",
    vmin: float | None = None,
    vmax: float | None = None,
    width: float = 5.0,
    path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Figure:
    """Show a depth map with a colour bar.

    Parameters
    ----------
    depth : array_like
        2-D array (e.g. the index of the sharpest frame per pixel).
    title : str, optional
        Text above the map.
    cmap : str
        Colormap.
    label : str
        Label of the colour bar (what the values are).
    vmin, vmax : float, optional
        Value range (default: the map's own).
    width : float
        Width of the map in inches (the height follows the aspect ratio).
    path : path-like, optional
        Save the figure there as a PNG (atomically).
    overwrite : bool
        Replace an existing file at ``path``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    array = v.as_real_array(depth, "depth")
    if array.ndim != 2:
        raise v.fail("depth", "be a 2-D array", array)
    low, high = finite_range(array.astype(np.float64))
    low = low if vmin is None else float(vmin)
    high = high if vmax is None else float(vmax)
    pw, ph = panel_size(array.shape, width)
    fig = new_figure(pw + 1.2, ph + 0.5)
    ax = fig.add_subplot()
    norm: Any = None
    ticks: Any = None
    whole = array.dtype.kind in "biu" or bool(np.all(np.mod(array[np.isfinite(array)], 1) == 0))
    if whole and vmin is None and vmax is None and low.is_integer() and 1 <= high - low <= 24:
        # Frame indices: one colour per index, ticks on the whole numbers.
        from matplotlib import colormaps
        from matplotlib.colors import BoundaryNorm

        levels = int(round(high - low)) + 1
        norm = BoundaryNorm(np.arange(low - 0.5, high + 1.0), levels)
        cmap_obj: Any = colormaps[cmap].resampled(levels)
        ticks = np.arange(low, high + 1.0, max(1, levels // 12))
        shown = ax.imshow(array, cmap=cmap_obj, norm=norm, interpolation="nearest")
    else:
        shown = ax.imshow(array, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03, label=label, ticks=ticks)
    if title:
        ax.set_title(title, fontsize=11)
    return finish(fig, path, overwrite)
