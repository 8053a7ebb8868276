"""Retouch strokes: the JSON document, the brush, and their replay on an image.

One function, :func:`apply_strokes`, turns a fused image, the strokes and the frames
into the retouched image. The viewer's save and ``convstack fuse --retouch`` both call
it, so what the page saves and what the command replays are the same pixels.

The strokes document (JSON)::

    {"format": "convstack-strokes", "version": 1,
     "image": {"rows": 4000, "cols": 6000},
     "frames": ["aligned_000.png", ...],          # names, for the reader (optional)
     "strokes": [{"frame": 3, "radius": 40.0, "hardness": 0.5, "erase": false,
                  "points": [[1200.0, 3400.5], [1210.0, 3420.0], ...]}, ...]}

Points are ``[row, col]`` in image pixel coordinates: the centre of pixel ``(r, c)``
is at ``(r, c)``. A stroke is the round brush swept along its polyline; a pixel at
distance ``d`` from the polyline gets the weight

- 1 where ``d <= hardness * radius``;
- ``1 - s(t)`` with ``t = (d - hardness * radius) / (radius - hardness * radius)`` and
  ``s(t) = t^2 (3 - 2t)`` (smoothstep) where ``hardness * radius < d < radius``;
- 0 where ``d >= radius`` (except that with hardness 1 every ``d <= radius`` is 1).

Strokes are applied in order: ``out = out + w * (source - out)``, where the source
is the stroke's frame, or the untouched image for an erasing stroke; integer images
are rounded (``rint``) and saturated after each stroke. A pixel no stroke reaches
keeps its exact value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FORMAT",
    "Stroke",
    "apply_strokes",
    "brush_weights",
    "load_strokes",
    "parse_strokes",
    "strokes_document",
    "to_dtype",
]

#: The ``format`` field of a strokes document.
FORMAT = "convstack-strokes"
_MAX_POINTS = 1_000_000


@dataclass(frozen=True)
class Stroke:
    """One brush stroke: ``points`` is a (n, 2) float64 array of ``[row, col]``."""

    frame: int | None
    radius: float
    hardness: float
    erase: bool
    points: NDArray[np.float64]


def _fail(where: str, rule: str, value: Any) -> ValueError:
    return ValueError(f"`{where}` must {rule}; got {value!r}.")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, "be a number", value)
    number = float(value)
    if not math.isfinite(number):
        raise _fail(where, "be finite", value)
    return number


def parse_strokes(
    document: Any, shape: tuple[int, ...] | None = None, frames: int | None = None
) -> list[Stroke]:
    """Check a strokes document (parsed JSON) and return its strokes.

    Parameters
    ----------
    document : dict
        The document (see the module's docstring).
    shape : tuple of int, optional
        The image's shape: its ``rows`` and ``cols`` must match.
    frames : int, optional
        How many frames there are: every painting stroke's ``frame`` must be below it.

    Returns
    -------
    list of Stroke

    Raises
    ------
    ValueError
        Anything that does not follow the format; the message names the field.
    """
    if not isinstance(document, dict):
        raise _fail("strokes", "be a JSON object", type(document).__name__)
    if document.get("format") != FORMAT:
        raise _fail("format", f"be {FORMAT!r}", document.get("format"))
    if document.get("version") != 1:
        raise _fail("version", "be 1", document.get("version"))
    image = document.get("image")
    if not isinstance(image, dict):
        raise _fail("image", "be an object with rows and cols", image)
    size: list[int] = []
    for name in ("rows", "cols"):
        value = image.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _fail(f"image.{name}", "be an integer >= 1", value)
        size.append(value)
    rows, cols = size
    if shape is not None and (rows, cols) != tuple(shape[:2]):
        raise ValueError(
            f"`image` must match the image's size {shape[0]} x {shape[1]} (rows x cols); "
            f"got {rows} x {cols}."
        )
    items = document.get("strokes")
    if not isinstance(items, list):
        raise _fail("strokes", "be a list", type(items).__name__)
    strokes: list[Stroke] = []
    total = 0
    for i, item in enumerate(items):
        where = f"strokes[{i}]"
        if not isinstance(item, dict):
            raise _fail(where, "be an object", type(item).__name__)
        erase = item.get("erase", False)
        if not isinstance(erase, bool):
            raise _fail(f"{where}.erase", "be true or false", erase)
        frame = item.get("frame")
        if erase and frame is None:
            index = None
        else:
            if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
                raise _fail(f"{where}.frame", "be a frame index >= 0", frame)
            if frames is not None and frame >= frames and not erase:
                raise _fail(f"{where}.frame", f"be a frame index below {frames}", frame)
            index = frame
        radius = _number(item.get("radius"), f"{where}.radius")
        if not 0 < radius <= 4 * max(rows, cols):
            raise _fail(f"{where}.radius", f"lie in (0, {4 * max(rows, cols)}]", radius)
        hardness = _number(item.get("hardness", 1.0), f"{where}.hardness")
        if not 0 <= hardness <= 1:
            raise _fail(f"{where}.hardness", "lie in [0, 1]", hardness)
        points = item.get("points")
        if not isinstance(points, list) or not points:
            raise _fail(f"{where}.points", "be a non-empty list of [row, col]", points)
        total += len(points)
        if total > _MAX_POINTS:
            raise _fail("strokes", f"hold at most {_MAX_POINTS} points in all", total)
        array = np.empty((len(points), 2), dtype=np.float64)
        for j, point in enumerate(points):
            if not isinstance(point, list) or len(point) != 2:
                raise _fail(f"{where}.points[{j}]", "be [row, col]", point)
            array[j, 0] = _number(point[0], f"{where}.points[{j}][0]")
            array[j, 1] = _number(point[1], f"{where}.points[{j}][1]")
        strokes.append(Stroke(index, radius, hardness, erase, array))
    return strokes


def strokes_document(
    strokes: Sequence[Stroke], shape: tuple[int, ...], frames: Sequence[str] = ()
) -> dict[str, Any]:
    """The JSON document (a dict) of ``strokes`` on an image of ``shape``."""
    return {
        "format": FORMAT,
        "version": 1,
        "image": {"rows": int(shape[0]), "cols": int(shape[1])},
        "frames": [str(name) for name in frames],
        "strokes": [
            {
                "frame": s.frame,
                "radius": s.radius,
                "hardness": s.hardness,
                "erase": s.erase,
                "points": s.points.tolist(),
            }
            for s in strokes
        ],
    }


def load_strokes(path: str | Path) -> Any:
    """Read a strokes file as parsed JSON (checked by :func:`parse_strokes`)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a JSON document ({exc}).") from None


def _profile(distance: NDArray[np.float64], radius: float, hardness: float) -> NDArray[np.float64]:
    if hardness >= 1.0:
        return (distance <= radius).astype(np.float64)
    inner = hardness * radius
    t = np.clip((distance - inner) / (radius - inner), 0.0, 1.0)
    return 1.0 - t * t * (3.0 - 2.0 * t)


def _segment_distance(
    rows: NDArray[np.float64], cols: NDArray[np.float64], a: NDArray[Any], b: NDArray[Any]
) -> NDArray[np.float64]:
    """Distance of the points (rows[:, None], cols[None, :]) to the segment a-b."""
    dr, dc = b[0] - a[0], b[1] - a[1]
    length2 = dr * dr + dc * dc
    pr = rows[:, None] - a[0]
    pc = cols[None, :] - a[1]
    if length2 == 0.0:
        return np.sqrt(pr * pr + pc * pc)
    t = np.clip((pr * dr + pc * dc) / length2, 0.0, 1.0)
    er = pr - t * dr
    ec = pc - t * dc
    return np.sqrt(er * er + ec * ec)


def brush_weights(
    stroke: Stroke, shape: tuple[int, ...]
) -> tuple[tuple[slice, slice], NDArray[np.float64]] | None:
    """The weights of a stroke on an image of ``shape``: the region it reaches and the
    (rows, cols) float64 weights in [0, 1] there, or None where it reaches no pixel.

    Examples
    --------
    >>> import numpy as np
    >>> s = Stroke(0, 1.0, 1.0, False, np.array([[1.0, 1.0]]))
    >>> region, w = brush_weights(s, (3, 3))
    >>> w
    array([[0., 1., 0.],
           [1., 1., 1.],
           [0., 1., 0.]])
    """
    rows, cols = int(shape[0]), int(shape[1])
    r = stroke.radius
    pts = stroke.points
    top = max(0, math.ceil(float(pts[:, 0].min()) - r))
    bottom = min(rows - 1, math.floor(float(pts[:, 0].max()) + r))
    left = max(0, math.ceil(float(pts[:, 1].min()) - r))
    right = min(cols - 1, math.floor(float(pts[:, 1].max()) + r))
    if top > bottom or left > right:
        return None
    weights = np.zeros((bottom - top + 1, right - left + 1), dtype=np.float64)
    segments = [(pts[0], pts[0])] if len(pts) == 1 else list(zip(pts[:-1], pts[1:], strict=True))
    for a, b in segments:
        r0 = max(top, math.ceil(min(a[0], b[0]) - r))
        r1 = min(bottom, math.floor(max(a[0], b[0]) + r))
        c0 = max(left, math.ceil(min(a[1], b[1]) - r))
        c1 = min(right, math.floor(max(a[1], b[1]) + r))
        if r0 > r1 or c0 > c1:
            continue
        grid_r = np.arange(r0, r1 + 1, dtype=np.float64)
        grid_c = np.arange(c0, c1 + 1, dtype=np.float64)
        w = _profile(_segment_distance(grid_r, grid_c, a, b), r, stroke.hardness)
        view = weights[r0 - top : r1 - top + 1, c0 - left : c1 - left + 1]
        np.maximum(view, w, out=view)
    return (slice(top, bottom + 1), slice(left, right + 1)), weights


def to_dtype(frame: NDArray[Any], dtype: np.dtype[Any] | type) -> NDArray[Any]:
    """A frame in another image dtype: 8 <-> 16 bits by 257, floats as [0, 1].

    >>> import numpy as np
    >>> to_dtype(np.array([0, 257, 65535], dtype=np.uint16), np.uint8)
    array([  0,   1, 255], dtype=uint8)
    """
    target = np.dtype(dtype)
    array = np.asarray(frame)
    if array.dtype == target:
        return array
    if array.dtype.kind in "ui":
        unit = array.astype(np.float64) / float(np.iinfo(array.dtype).max)
    else:
        unit = array.astype(np.float64)
    if target.kind == "f":
        return unit.astype(target)
    top = float(np.iinfo(target).max)
    return np.clip(np.rint(unit * top), 0, top).astype(target)


def apply_strokes(
    image: NDArray[Any],
    strokes: Sequence[Stroke],
    frame: Callable[[int], NDArray[Any]],
) -> NDArray[Any]:
    """Replay retouch strokes on ``image``; return a new image (the input is untouched).

    Parameters
    ----------
    image : ndarray
        The fused image, (rows, cols) or (rows, cols, 3), uint8, uint16 or float.
    strokes : sequence of Stroke
        From :func:`parse_strokes`.
    frame : callable
        ``frame(index)`` gives the (aligned) frame ``index`` in the image's geometry;
        it is converted to the image's dtype with :func:`to_dtype`. Called once per
        stroke (cache it on the caller's side if frames are slow to load).

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``.

    Raises
    ------
    ValueError
        A frame whose shape differs from the image's.
    """
    original = np.asarray(image)
    out = original.copy()
    integer = out.dtype.kind in "ui"
    top = float(np.iinfo(out.dtype).max) if integer else 0.0
    for number, stroke in enumerate(strokes):
        found = brush_weights(stroke, out.shape)
        if found is None:
            continue
        region, weights = found
        if stroke.erase:
            source = original[region]
        else:
            assert stroke.frame is not None
            data = np.asarray(frame(stroke.frame))
            if data.shape != out.shape:
                raise ValueError(
                    f"`frame {stroke.frame}` must have the image's shape {out.shape} for "
                    f"strokes[{number}]; got {data.shape}."
                )
            source = to_dtype(data[region], out.dtype)
        w = weights if out.ndim == 2 else weights[:, :, None]
        current = out[region].astype(np.float64)
        blended = current + w * (source.astype(np.float64) - current)
        if integer:
            out[region] = np.clip(np.rint(blended), 0, top).astype(out.dtype)
        else:
            out[region] = blended.astype(out.dtype)
    return out
