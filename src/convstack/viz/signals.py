"""A sampled signal with its derivative and its marked extrema (the lab's tasks on sin(x))."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _validate as v
from ._common import finish, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["signal_plot"]


def _curve(values: ArrayLike, name: str) -> NDArray[Any]:
    array = v.as_real_array(values, name)
    if array.ndim != 1:
        raise v.fail(name, "be a 1-D array", array)
    return array.astype(np.float64)


def signal_plot(
    x: ArrayLike,
    y: ArrayLike,
    derivative: ArrayLike | tuple[ArrayLike, ArrayLike] | None = None,
    extrema: Iterable[Any] | None = None,
    *,
    title: str | None = None,
    label: str = "f(x)",
    derivative_label: str = "f'(x)",
    path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Figure:
    """Plot ``y`` against ``x``, optionally its derivative and its extrema.

    Parameters
    ----------
    x, y : array_like
        1-D samples of the same length.
    derivative : array_like or (x, dy), optional
        The derivative at ``x`` (same length), or its own abscissae and values (for
        a difference taken between samples). Drawn on the same axes, as the lab does.
    extrema : iterable, optional
        Records with attributes ``x``, ``y`` and ``kind`` ("min" or "max"), e.g. the
        result of ``convstack.extrema``; marked and labelled on the curve.
    title : str, optional
        Text above the plot.
    label, derivative_label : str
        Legend entries.
    path : path-like, optional
        Save the figure there as a PNG (atomically).
    overwrite : bool
        Replace an existing file at ``path``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    xs = _curve(x, "x")
    ys = _curve(y, "y")
    if xs.shape != ys.shape:
        raise ValueError(f"`y` must have the length of `x` ({xs.size}); got {ys.size}.")
    fig = new_figure(7.5, 4.2)
    ax = fig.add_subplot()
    ax.plot(xs, ys, color="tab:blue", linewidth=1.8, label=label)
    if derivative is not None:
        if isinstance(derivative, tuple) and len(derivative) == 2:
            dx, dy = _curve(derivative[0], "derivative[0]"), _curve(derivative[1], "derivative[1]")
            if dx.shape != dy.shape:
                raise ValueError(
                    f"`derivative` must be (x, dy) of equal lengths; got {dx.size} and {dy.size}."
                )
        else:
            dx, dy = xs, _curve(derivative, "derivative")
            if dy.shape != xs.shape:
                raise ValueError(
                    f"`derivative` must have the length of `x` ({xs.size}); got {dy.size}."
                )
        ax.plot(dx, dy, color="tab:orange", linewidth=1.4, label=derivative_label)
    if extrema is not None:
        points = list(extrema)
        for kind, marker, colour in (("max", "^", "tab:red"), ("min", "v", "tab:green")):
            chosen = [p for p in points if str(p.kind) == kind]
            if not chosen:
                continue
            ax.plot(
                [float(p.x) for p in chosen],
                [float(p.y) for p in chosen],
                linestyle="none",
                marker=marker,
                markersize=9,
                color=colour,
                markeredgecolor="black",
                label=f"{kind}ima" if kind == "max" else "minima",
                zorder=5,
            )
            for p in chosen:
                ax.annotate(
                    f"{kind} ({float(p.x):.4g}, {float(p.y):.4g})",
                    (float(p.x), float(p.y)),
                    textcoords="offset points",
                    xytext=(0, 10 if kind == "max" else -16),
                    ha="center",
                    fontsize=9,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
                    zorder=6,
                )
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.grid(True, alpha=0.4)
    ax.set_xlabel("x")
    ax.set_ylabel("value")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4, fontsize=9, frameon=False)
    ax.margins(x=0.01, y=0.12)
    if title:
        ax.set_title(title)
    return finish(fig, path, overwrite)
