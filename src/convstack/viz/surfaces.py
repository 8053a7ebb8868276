"""A 2-D array drawn as a 3-D surface (the lab's plotly ``go.Surface`` figures)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _validate as v
from ._common import finish, finite_range, new_figure, symmetric_range

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["surface"]


def _bilinear(
    z: NDArray[np.float64], rows: NDArray[np.float64], cols: NDArray[np.float64]
) -> NDArray[np.float64]:
    """``z`` sampled bilinearly at the fractional ``rows`` x ``cols`` grid."""
    r0 = np.clip(np.floor(rows).astype(int), 0, max(z.shape[0] - 2, 0))
    c0 = np.clip(np.floor(cols).astype(int), 0, max(z.shape[1] - 2, 0))
    r1 = np.minimum(r0 + 1, z.shape[0] - 1)
    c1 = np.minimum(c0 + 1, z.shape[1] - 1)
    fr = (rows - r0)[:, None]
    fc = (cols - c0)[None, :]
    top = z[np.ix_(r0, c0)] * (1 - fc) + z[np.ix_(r0, c1)] * fc
    bottom = z[np.ix_(r1, c0)] * (1 - fc) + z[np.ix_(r1, c1)] * fc
    result: NDArray[np.float64] = top * (1 - fr) + bottom * fr
    return result


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
        Label of the colour bar (the heights).
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
    low, high = symmetric_range(low, high)
    rows, cols = height.shape
    # Subdivide each cell (bilinear) so that colours follow the heights across a cell, as
    # in the lab's plotly surfaces, instead of one flat colour per coarse face.
    step = max(1, min(6, 48 // max(rows, cols)))
    fine_r = np.linspace(0, rows - 1, (rows - 1) * step + 1)
    fine_c = np.linspace(0, cols - 1, (cols - 1) * step + 1)
    fine = _bilinear(height, fine_r, fine_c)
    grid_c, grid_r = np.meshgrid(fine_c, fine_r)
    fig = new_figure(4.8, 4.0)
    ax = fig.add_subplot(projection="3d")
    # matplotlib's own surface shading would hide the colormap; draw flat colours instead.
    mesh = ax.plot_surface(
        grid_c,
        grid_r,
        fine,
        cmap=cmap,
        vmin=low,
        vmax=high,
        rstride=1,
        cstride=1,
        linewidth=0,
        antialiased=False,
        shade=False,
    )
    # the sample grid itself, as thin lines through the samples
    ax.plot_wireframe(
        *np.meshgrid(np.arange(cols), np.arange(rows)),
        height,
        color=(0.15, 0.15, 0.15, 0.5),
        linewidth=0.4,
    )
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("col")
    ax.set_ylabel("row")
    ax.zaxis.set_major_locator(MaxNLocator(5))
    ax.set_ylim(rows - 1, 0)  # row 0 at the back, as an image is read from the top
    ax.view_init(elev=elevation, azim=azimuth)
    ax.set_box_aspect((cols, rows, 0.6 * max(rows, cols)))
    fig.colorbar(mesh, ax=ax, shrink=0.65, pad=0.04, label=zlabel)
    if title:
        ax.set_title(title)
    return finish(fig, path, overwrite)
