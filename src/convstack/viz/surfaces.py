"""A 2-D array drawn as a 3-D surface (the lab's plotly ``go.Surface`` figures)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from .. import _validate as v
from ._common import finish, finite_range, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["surface"]


def surface(
    z: ArrayLike,
    *,
    title: str | None = None,
    cmap: str = "viridis",
    zlabel: str = "value",
    elevation: float = 35.0,
    azimuth: float = -60.0,
    path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Figure:
    """Draw a 2-D array as a 3-D surface over its (row, col) grid, with a colour bar.

    Parameters
    ----------
    z : array_like
        2-D array of real numbers: the height at each (row, col).
    title : str, optional
        Text above the plot.
    cmap : str
        Colormap of the heights (symmetric about 0 when they have both signs).
    zlabel : str
        Label of the height axis and the colour bar.
    elevation, azimuth : float
        Viewing angles in degrees.
    path : path-like, optional
        Save the figure there as a PNG (atomically).
    overwrite : bool
        Replace an existing file at ``path``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    array = v.as_real_array(z, "z")
    if array.ndim != 2:
        raise v.fail("z", "be a 2-D array", array)
    height = array.astype(np.float64)
    low, high = finite_range(height)
    if low < 0 < high and cmap == "viridis":
        cmap = "coolwarm"
    if low < 0 < high:
        bound = max(-low, high)
        low, high = -bound, bound
    rows, cols = height.shape
    grid_r, grid_c = np.mgrid[0:rows, 0:cols]
    fig = new_figure(5.6, 4.6)
    ax = fig.add_subplot(projection="3d")
    # matplotlib's own surface shading would hide the colormap; draw flat colours instead.
    mesh = ax.plot_surface(
        grid_c,
        grid_r,
        height,
        cmap=cmap,
        vmin=low,
        vmax=high,
        rstride=1,
        cstride=1,
        linewidth=0.3,
        edgecolor=(0.2, 0.2, 0.2, 0.4),
        antialiased=True,
        shade=False,
    )
    ax.set_xlabel("col")
    ax.set_ylabel("row")
    ax.set_zlabel(zlabel)
    ax.set_ylim(rows - 1, 0)  # row 0 at the back, as an image is read from the top
    ax.view_init(elev=elevation, azim=azimuth)
    ax.set_box_aspect((cols, rows, 0.6 * max(rows, cols)))
    fig.colorbar(mesh, ax=ax, shrink=0.6, pad=0.1, label=zlabel)
    if title:
        ax.set_title(title)
    return finish(fig, path, overwrite)
