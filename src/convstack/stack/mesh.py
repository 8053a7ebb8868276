"""A height map as a coloured surface mesh: PLY, which MeshLab, Blender and CloudCompare open.

One vertex a pixel (every ``step``-th row and column with decimation), two triangles a
quad of neighbouring vertices, counter-clockwise seen from above (+z):

- ``x = col * pixel_width``, ``y = (last_row - row) * pixel_height`` (micrometres, y up,
  so that the mesh seen from above is the image, not its mirror), ``z`` the height;
- ``red, green, blue`` from the fused image (8 bits: integers scaled by their dtype's
  maximum, floats clipped to [0, 1]; grey repeated; two channels as red and green;
  more than three: the first three).

Binary little-endian by default (ASCII on request), written row band by row band
through the one writer (:mod:`convstack._writer`: atomic, an existing file refused).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _validate as v
from .. import _writer

__all__ = ["mesh_colours", "write_ply"]

_VERTEX = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
)
_FACE = np.dtype([("count", "u1"), ("vertices", "<i4", (3,))])
#: Vertex rows written at a time (memory: a band of vertices and faces).
_BAND = 256


def mesh_colours(image: ArrayLike) -> NDArray[np.uint8]:
    """``image`` (rows, cols[, channels]) as (rows, cols, 3) uint8 vertex colours."""
    array = v.as_real_array(image, "image")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise v.fail("image", "be (rows, cols) or (rows, cols, channels)", array)
    if array.dtype.kind in "ui":
        unit = array.astype(np.float32) / np.float32(np.iinfo(array.dtype).max)
    else:
        unit = np.clip(array.astype(np.float32), 0.0, 1.0)
    channels = unit.shape[2]
    if channels == 1:
        unit = np.repeat(unit, 3, axis=2)
    elif channels == 2:
        unit = np.concatenate([unit, np.zeros_like(unit[..., :1])], axis=2)
    else:
        unit = unit[..., :3]
    return np.rint(unit * 255.0).astype(np.uint8)


def write_ply(
    path: str | os.PathLike[str],
    height: ArrayLike,
    colours: ArrayLike | None = None,
    *,
    pixel_size: tuple[float, float] = (1.0, 1.0),
    step: int = 1,
    binary: bool = True,
    overwrite: bool = False,
    inputs: _writer.Inputs | tuple[str | os.PathLike[str], ...] = (),
) -> Path:
    """Write a height map as a triangulated, coloured PLY surface.

    Parameters
    ----------
    path : str or path-like
        The ``.ply`` file; an existing file is refused unless ``overwrite``.
    height : array_like, (rows, cols)
        Heights (micrometres), finite.
    colours : array_like, optional
        The image to colour the vertices from (see :func:`mesh_colours`), the size of
        ``height``; default grey 200.
    pixel_size : (float, float)
        Row and column spacing of the pixels in micrometres (> 0).
    step : int
        Take every ``step``-th row and column (>= 1; big images).
    binary : bool
        Binary little-endian (default) or ASCII PLY.
    overwrite : bool
        Replace an existing file.
    inputs : paths
        Files never to be written (the input frames).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        A height map that is not 2-D, at least 2 x 2 after decimation and finite;
        colours of another size; a pixel size or step out of range.
    OutputError
        The path exists (without ``overwrite``), is an input, or cannot be written.
    """
    from .errors import OutputError

    z = v.as_real_array(height, "height")
    if z.ndim != 2:
        raise v.fail("height", "be 2-D (rows, cols)", z)
    if not np.all(np.isfinite(z)):
        raise v.fail("height", "be finite everywhere", z)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise v.fail("step", "be an int >= 1", step)
    sizes = tuple(float(s) for s in pixel_size)
    if len(sizes) != 2 or not all(np.isfinite(s) and s > 0 for s in sizes):
        raise v.fail("pixel_size", "be two lengths > 0 (row, col)", pixel_size)
    rgb = None if colours is None else mesh_colours(colours)
    if rgb is not None and rgb.shape[:2] != z.shape:
        raise v.fail("colours", f"have the size of `height` {z.shape}", np.asarray(colours))
    rows_at = np.arange(0, z.shape[0], int(step))
    cols_at = np.arange(0, z.shape[1], int(step))
    if rows_at.size < 2 or cols_at.size < 2:
        raise v.fail("height", "have at least 2 x 2 vertices after `step`", z)
    file = Path(path)
    if file.suffix.lower() != ".ply":
        raise OutputError(f"{file}: a mesh is written as .ply; got {file.suffix!r}.")
    try:
        _writer.check_target(file, overwrite=overwrite, inputs=inputs)
    except _writer.OutputRefusedError as exc:
        raise OutputError(str(exc)) from None

    n_rows, n_cols = rows_at.size, cols_at.size
    n_faces = 2 * (n_rows - 1) * (n_cols - 1)
    form = "binary_little_endian" if binary else "ascii"
    header = (
        f"ply\nformat {form} 1.0\n"
        "comment convstack height map: x, y, z in micrometres\n"
        f"element vertex {n_rows * n_cols}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"element face {n_faces}\n"
        "property list uchar int vertex_indices\nend_header\n"
    ).encode("ascii")
    x = (cols_at * sizes[1]).astype(np.float32)
    last = float(rows_at[-1])

    def vertices(start: int, stop: int) -> NDArray[Any]:
        band = rows_at[start:stop]
        out = np.empty((band.size, n_cols), _VERTEX)
        out["x"] = x[None, :]
        out["y"] = ((last - band) * sizes[0]).astype(np.float32)[:, None]
        out["z"] = z[np.ix_(band, cols_at)]
        if rgb is None:
            out["red"] = out["green"] = out["blue"] = 200
        else:
            picked = rgb[np.ix_(band, cols_at)]
            out["red"], out["green"], out["blue"] = picked[..., 0], picked[..., 1], picked[..., 2]
        return out.ravel()

    def faces(start: int, stop: int) -> NDArray[Any]:
        """The faces of the quads whose top-left vertex lies in rows ``start:stop``."""
        r = np.arange(start, min(stop, n_rows - 1))[:, None]
        c = np.arange(n_cols - 1)[None, :]
        a = (r * n_cols + c).ravel()  # top-left; b top-right, c bottom-left, d bottom-right
        b, cl, d = a + 1, a + n_cols, a + n_cols + 1
        out = np.empty((a.size, 2), _FACE)
        out["count"] = 3
        out["vertices"][:, 0] = np.stack([a, cl, d], axis=1)
        out["vertices"][:, 1] = np.stack([a, d, b], axis=1)
        return out.ravel()

    def fill(stream: BinaryIO) -> None:
        stream.write(header)
        for part, count in ((vertices, n_rows), (faces, n_rows - 1)):
            for start in range(0, count, _BAND):
                block = part(start, start + _BAND)
                if binary:
                    stream.write(block.tobytes())
                else:
                    stream.write(_ascii(block).encode("ascii"))

    try:
        return _writer.write_stream(file, fill, overwrite=overwrite, inputs=inputs)
    except _writer.OutputRefusedError as exc:
        raise OutputError(str(exc)) from None


def _ascii(block: NDArray[Any]) -> str:
    if block.dtype == _VERTEX:
        return "".join(
            f"{p['x']:.9g} {p['y']:.9g} {p['z']:.9g} {p['red']} {p['green']} {p['blue']}\n"
            for p in block
        )
    return "".join(f"3 {f['vertices'][0]} {f['vertices'][1]} {f['vertices'][2]}\n" for f in block)
