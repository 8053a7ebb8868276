"""What every figure function shares: the lazy matplotlib import and saving through the
project's one writer (``convstack._writer``: atomic, no clobber).

matplotlib is an optional dependency (the ``plots`` extra). It is imported only when a
figure is made, and only its object-oriented API with the Agg canvas is used: no pyplot,
no global state, never a window.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _validate as v
from .. import _writer

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL_HINT = 'convstack.viz needs matplotlib: pip install "convstack[plots]"'


def new_figure(width: float, height: float) -> Figure:
    """Return an empty Figure of ``width`` x ``height`` inches on an Agg canvas."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # the optional extra is not installed
        raise ImportError(INSTALL_HINT) from exc
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def check_target(path: str | os.PathLike[str] | None, overwrite: bool) -> Path | None:
    """Refuse an existing ``path`` unless ``overwrite``, and a folder that is missing
    or not writable; return it as a Path."""
    if path is None:
        return None
    target = Path(path)
    if os.path.lexists(target) and not overwrite:
        raise FileExistsError(f"`path` must not exist (pass overwrite=True); got '{target}'.")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"`path` must be in an existing folder; got '{target}'.")
    _writer.check_target(target, overwrite=overwrite)  # (a folder at `path`, rights)
    return target


def atomic_write(target: Path, write: Any, *, overwrite: bool = True) -> None:
    """Call ``write(temp_path)`` on a temporary file beside ``target``, which then takes
    the name ``target`` by the rules of ``convstack._writer`` (atomic; an existing file
    is replaced only with ``overwrite``, even one that appeared meanwhile)."""
    _writer.write_via_path(target, write, overwrite=overwrite)


def finish(
    fig: Figure, path: str | os.PathLike[str] | None, overwrite: bool, dpi: float = 100
) -> Figure:
    """Save ``fig`` as a PNG at ``path`` (atomically) when a path is given; return it."""
    target = check_target(path, overwrite)
    if target is not None:
        atomic_write(
            target,
            lambda temp: fig.savefig(
                temp, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.08
            ),
            overwrite=overwrite,
        )
    return fig


def as_2d(value: ArrayLike, name: str) -> NDArray[Any]:
    """A real array of 1 or 2 dimensions as 2-D (a 1-D array becomes one row)."""
    array = v.as_real_array(value, name)
    if array.ndim == 1:
        return array[np.newaxis]
    if array.ndim != 2:
        raise v.fail(name, "be a 1-D or 2-D array", array)
    return array


def finite_range(array: NDArray[Any]) -> tuple[float, float]:
    """Min and max of the finite values (0, 1 when there are none); never equal."""
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    return low, high


def symmetric_range(low: float, high: float) -> tuple[float, float]:
    """``(low, high)`` widened to be symmetric about 0 when it holds both signs.

    Signed values (derivatives, kernels) then show 0 at the middle of the colormap.

    Examples
    --------
    >>> symmetric_range(-1.0, 3.0), symmetric_range(0.5, 2.0)
    ((-3.0, 3.0), (0.5, 2.0))
    """
    if low < 0 < high:
        bound = max(-low, high)
        return -bound, bound
    return low, high


def text_colour(rgba: ArrayLike) -> str:
    """ "white" or "black": the text colour that reads on a cell of colour ``rgba``."""
    dark = float(np.dot(np.asarray(rgba)[:3], [0.3, 0.59, 0.11])) < 0.5
    return "white" if dark else "black"


def check_titles(titles: Sequence[str] | None, count: int, what: str) -> None:
    """Refuse ``titles`` unless it is None or has one entry per ``what`` (``count``)."""
    if titles is not None and len(titles) != count:
        raise ValueError(f"`titles` must have one entry per {what} ({count}); got {len(titles)}.")
