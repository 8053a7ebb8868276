"""An array shown as a table of numbers, as the lab shows its small arrays."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._common import as_2d, finish, finite_range, new_figure, symmetric_range, text_colour

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["array_table", "format_number"]


def format_number(value: float, decimals: int = 2) -> str:
    """Format a number as the lab's tables do: integers bare, others to ``decimals`` places.

    Examples
    --------
    >>> format_number(4.0), format_number(-0.125), format_number(0.9999999)
    ('4', '-0.12', '1')
    """
    if not np.isfinite(value):
        return str(value)
    rounded = round(float(value), decimals)
    if rounded.is_integer():  # also 0.9999999 from float arithmetic: shown as 1
        return str(int(rounded))
    return f"{value:.{decimals}f}"


def array_table(
    a: ArrayLike,
    *,
    title: str | None = None,
    decimals: int = 2,
    cmap: str | None = None,
    highlight: ArrayLike | None = None,
    path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Figure:
    """Draw a 1-D or 2-D array as a grid of cells, each annotated with its value.

    Parameters
    ----------
    a : array_like
        1-D (drawn as one row) or 2-D array of real numbers.
    title : str, optional
        Text above the table.
    decimals : int
        Places shown for values that are not whole numbers.
    cmap : str, optional
        Colour the cells by value with this colormap (symmetric about 0 when the values
        have both signs); plain light-grey cells, as in the lab, when None.
    highlight : array_like of bool, optional
        Cells to outline in bold (same shape as ``a``).
    path : path-like, optional
        Save the figure there as a PNG (atomically).
    overwrite : bool
        Replace an existing file at ``path``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    array = as_2d(a, "a").astype(np.float64)
    rows, cols = array.shape
    marks: NDArray[Any] | None = None
    if highlight is not None:
        marks = as_2d(highlight, "highlight").astype(bool)
        if marks.shape != array.shape:
            raise ValueError(
                f"`highlight` must have the shape of `a` {array.shape}; got {marks.shape}."
            )
    cell = 0.55
    fig = new_figure(max(cols * cell + 0.3, 1.6), rows * cell + (0.45 if title else 0.15))
    ax = fig.add_subplot()
    colours: NDArray[Any] | None = None
    if cmap is not None:
        from matplotlib import colormaps
        from matplotlib.colors import Normalize

        low, high = symmetric_range(*finite_range(array))
        colours = colormaps[cmap](Normalize(low, high)(array))
    from matplotlib.patches import Rectangle

    for r in range(rows):
        for c in range(cols):
            face: Any = (0.98, 0.98, 0.98) if colours is None else colours[r, c]
            bold = marks is not None and bool(marks[r, c])
            ax.add_patch(
                Rectangle(
                    (c, r), 1, 1, facecolor=face, edgecolor="black", linewidth=2.5 if bold else 1
                )
            )
            text = format_number(float(array[r, c]), decimals)
            size = 11 if len(text) <= 4 else max(6, 11 - (len(text) - 4))
            ax.text(
                c + 0.5,
                r + 0.5,
                text,
                ha="center",
                va="center",
                fontsize=size,
                color="black" if colours is None else text_colour(colours[r, c]),
                fontweight="bold" if bold else "normal",
            )
    ax.set_xlim(-0.05, cols + 0.05)
    ax.set_ylim(rows + 0.05, -0.05)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=11)
    return finish(fig, path, overwrite)
