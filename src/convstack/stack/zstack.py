"""One file as a focus stack: multi-page TIFF, ImageJ hyperstack and OME-TIFF z-stacks.

A z-stack file holds its frames as planes along an axis Z (or, in a plain multi-page
TIFF, the page sequence, which tifffile names ``I`` or ``Q``). :func:`open_zstack`
parses the axes once (through tifffile's series), and :class:`ZStack` reads one Z
plane at a time, page by page, so memory does not grow with the number of planes.

Axes:

- ``Z`` (or the page sequence) is the focus axis; at least two planes.
- ``Y`` and ``X`` are rows and columns; ``C`` (channels) and ``S`` (samples of a
  page, RGB) are the plane's channels, last, as every frame of :func:`fuse`.
- Any other axis of more than one entry (``T`` time, ``P`` position, ...) is refused
  with a message naming it unless ``index`` picks one entry of it (``{"T": 0}``,
  ``--index T=0`` on the command line). An OME-TIFF of several images (positions)
  is taken as an axis ``P`` over them.

Physical sizes come from the OME ``Pixels`` element (``PhysicalSizeX/Y/Z`` and their
units) or ImageJ's metadata (``spacing``, ``unit``, the X and Y resolution tags), in
micrometres; channel names from the OME ``Channel`` elements.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import FrameMismatchError, FrameReadError

__all__ = [
    "ZPlane",
    "channel_tiff",
    "ZStack",
    "is_lone_zstack",
    "is_zstack",
    "open_zstack",
    "parse_index",
    "to_micrometres",
]

#: Axes a plane keeps: rows, columns and channels.
_PLANE_AXES = frozenset("YXCS")
#: tifffile's names of an axis of unknown meaning (a plain page sequence).
_SEQUENCE_AXES = ("I", "Q")
#: Micrometres per unit, for the units OME and ImageJ write (and ``--z-step`` reads).
_UNITS = {
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,  # (Greek mu, not the micro sign)
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "\\u00b5m": 1.0,  # (ImageJ writes the escape itself)
    "nm": 1e-3,
    "nanometer": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "m": 1e6,
    "pixel": math.nan,  # ImageJ's "no unit"
}


def to_micrometres(value: float, unit: str, what: str) -> float:
    """``value`` in ``unit`` as micrometres; ValueError naming ``what`` for an unknown
    unit or a size that is not finite and > 0."""
    factor = _UNITS.get(unit.strip().lower())
    if factor is None:
        known = "um, µm, nm, mm"
        raise ValueError(f"`{what}` must be in a known unit ({known}); got {unit!r}.")
    size = float(value) * factor
    if not (math.isfinite(size) and size > 0):
        raise ValueError(f"`{what}` must be a finite length > 0; got {value!r} {unit}.")
    return size


def parse_index(text: str | Mapping[str, int] | None) -> dict[str, int]:
    """``"T=0,P=2"`` (or a mapping) as ``{"T": 0, "P": 2}``.

    Raises
    ------
    ValueError
        An entry that is not ``AXIS=N`` with a one-letter axis and an integer >= 0.
    """
    if text is None:
        return {}
    pairs = text.items() if isinstance(text, Mapping) else _pairs(text)
    index: dict[str, int] = {}
    for axis, value in pairs:
        name = str(axis).strip().upper()
        if len(name) != 1 or not name.isalpha():
            raise ValueError(f"`index` axes must be single letters (T, P, ...); got {axis!r}.")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"`index` {name} must be an integer >= 0; got {value!r}.") from None
        if number < 0 or isinstance(value, bool):
            raise ValueError(f"`index` {name} must be an integer >= 0; got {value!r}.")
        index[name] = number
    return index


def _pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for part in text.split(","):
        if "=" not in part:
            raise ValueError(f"`index` entries must read AXIS=N (as T=0); got {part.strip()!r}.")
        axis, value = part.split("=", 1)
        pairs.append((axis, value.strip()))
    return pairs


def is_lone_zstack(frames: Any) -> bool:
    """Whether ``frames`` is a sequence of one path, to a z-stack file."""
    return (
        isinstance(frames, (list, tuple))
        and len(frames) == 1
        and isinstance(frames[0], (str, os.PathLike))
        and is_zstack(frames[0])
    )


def is_zstack(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a TIFF of more than one image (a z-stack, or a file that
    :func:`open_zstack` will say why it cannot read as one)."""
    file = Path(path)
    if file.suffix.lower() not in (".tif", ".tiff") or not file.is_file():
        return False
    import tifffile

    try:
        with open(file, "rb") as fh:
            if fh.read(4) not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
                return False
        with tifffile.TiffFile(file) as tif:
            series = tif.series
            if len(series) > 1 and not tif.is_ome:  # pages of several sizes or dtypes
                return True
            return bool(series) and any(
                a not in "YXS" and n > 1
                for a, n in zip(series[0].axes, series[0].shape, strict=True)
            )
    except Exception:  # not a TIFF tifffile reads: the single-image reader says why
        return False


@dataclass(frozen=True)
class ZPlane:
    """Plane ``z`` of a :class:`ZStack` (what :func:`fuse` takes as one frame)."""

    stack: ZStack
    z: int

    @property
    def name(self) -> str:
        return f"{self.stack.path} (Z={self.z})"

    def load(self) -> NDArray[Any]:
        """The plane, ``(rows, cols)`` or ``(rows, cols, channels)``.

        (Not ``read``: :func:`fuse` takes objects with a ``read`` method as files.)
        """
        return self.stack.read(self.z)


@dataclass
class ZStack:
    """A z-stack file, parsed: see :func:`open_zstack`.

    Attributes
    ----------
    path : Path
        The file.
    axes, shape : str, tuple of int
        The file's own axes and shape (tifffile's letters, unsqueezed).
    planes : int
        Frames along Z.
    rows, cols, channels : int
        Size of a plane; ``channels`` is 1 for grey.
    dtype : numpy.dtype
        The samples' type.
    z_step, pixel_size : float or None, (float, float) or None
        Plane spacing and (row, col) pixel size in micrometres, where the file says.
    channel_names : tuple of str
        The OME channel names (empty where the file has none).
    """

    path: Path
    axes: str
    shape: tuple[int, ...]
    planes: int
    rows: int
    cols: int
    channels: int
    dtype: np.dtype[Any]
    z_step: float | None = None
    pixel_size: tuple[float, float] | None = None
    channel_names: tuple[str, ...] = ()
    is_ome: bool = False
    _series: int = 0
    _selection: dict[str, int] = field(default_factory=dict, repr=False)
    _page_ndim: int = 0
    _handles: dict[int, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        # the open files are closed with the stack (or at exit), not left to the collector
        weakref.finalize(self, _close_all, self._handles)

    def __len__(self) -> int:
        return self.planes

    def frames(self) -> list[ZPlane]:
        """The planes, in Z order, as frames to give :func:`fuse`."""
        return [ZPlane(self, z) for z in range(self.planes)]

    def _tiff(self) -> Any:
        """The open file of this process (a forked child opens its own: a shared file
        position would mix the two processes' reads)."""
        import tifffile

        pid = os.getpid()
        handle = self._handles.get(pid)
        if handle is None:
            handle = self._handles[pid] = tifffile.TiffFile(self.path)
        return handle

    def close(self) -> None:
        """Close this process's handle on the file (reading reopens it)."""
        handle = self._handles.pop(os.getpid(), None)
        if handle is not None:
            handle.close()

    def read(self, z: int) -> NDArray[Any]:
        """Plane ``z``: ``(rows, cols)`` or ``(rows, cols, channels)``, read page by page."""
        if not 0 <= z < self.planes:
            raise IndexError(f"`z` must lie in [0, {self.planes - 1}]; got {z}.")
        with self._lock:
            try:
                return self._read(z)
            except (FrameReadError, FrameMismatchError):
                raise
            except Exception as exc:  # decoders raise many kinds
                raise FrameReadError(
                    f"{self.path} (Z={z}): cannot read the plane ({exc})."
                ) from exc

    def _read(self, z: int) -> NDArray[Any]:
        tif = self._tiff()
        series = tif.series[self._series]
        split = len(self.shape) - self._page_ndim
        page_axes, page_shape = self.axes[:split], self.shape[:split]
        inner_axes, inner_shape = self.axes[split:], self.shape[split:]
        chosen = {**self._selection, "Z": z}
        free = [i for i, a in enumerate(page_axes) if a in "CS"]
        parts = []
        for values in np.ndindex(*(page_shape[i] for i in free)):
            position = [chosen.get(a, 0) for a in page_axes]
            for i, value in zip(free, values, strict=True):
                position[i] = value
            number = int(np.ravel_multi_index(position, page_shape)) if page_shape else 0
            data = self._page(tif, series, number).reshape(inner_shape)
            keep = tuple(slice(None) if a in _PLANE_AXES else chosen.get(a, 0) for a in inner_axes)
            parts.append(data[keep])
        kept = [a for a in inner_axes if a in _PLANE_AXES]
        block = np.stack(parts) if free else parts[0]
        axes = "".join(page_axes[i] for i in free) + "".join(kept)
        if free:
            block = block.reshape(*(page_shape[i] for i in free), *block.shape[1:])
        # (Y, X, channel axes in file order)
        order = [axes.index("Y"), axes.index("X")] + [i for i, a in enumerate(axes) if a in "CS"]
        plane = np.transpose(block, order).reshape(self.rows, self.cols, self.channels)
        if plane.dtype.byteorder not in ("=", "|"):
            plane = plane.astype(plane.dtype.newbyteorder("="))
        plane = np.ascontiguousarray(plane)
        return plane[..., 0] if self.channels == 1 else plane

    def _page(self, tif: Any, series: Any, number: int) -> NDArray[Any]:
        """Page ``number`` of the series (one page's data, as stored)."""
        pages = series.pages
        size = int(np.prod(self.shape[len(self.shape) - self._page_ndim :]))
        if len(pages) > number and pages[number] is not None:
            page = pages[number]
            data = np.asarray(page.asarray())
            if data.size != size or data.dtype != self.dtype:
                raise FrameMismatchError(
                    f"{self.path}: page {number} holds {data.shape} {data.dtype} samples, "
                    f"page 0 {self.shape[-self._page_ndim :]} {self.dtype}; all pages of a "
                    "z-stack must have the same size and dtype."
                )
            return data
        if series.dataoffset is None:  # (ImageJ files over 4 GB keep one IFD)
            raise FrameReadError(f"{self.path}: page {number} is missing from the file.")
        dtype = self.dtype.newbyteorder(tif.byteorder)
        fh = tif.filehandle
        fh.seek(series.dataoffset + number * size * dtype.itemsize)
        raw = fh.read(size * dtype.itemsize)
        if len(raw) != size * dtype.itemsize:
            raise FrameReadError(f"{self.path}: truncated: page {number} runs past the end.")
        return np.frombuffer(raw, dtype)


def _close_all(handles: dict[int, Any]) -> None:
    handle = handles.pop(os.getpid(), None)
    if handle is not None:
        handle.close()


def open_zstack(
    path: str | os.PathLike[str], *, index: Mapping[str, int] | str | None = None
) -> ZStack:
    """Open a multi-page TIFF, ImageJ hyperstack or OME-TIFF as a stack of Z planes.

    Parameters
    ----------
    path : str or path-like
        The file.
    index : mapping or str, optional
        One entry for each axis other than Z, Y, X and channels that has more than one
        (``{"T": 0}`` or ``"T=0,P=1"``).

    Returns
    -------
    ZStack
        Sizes, calibration and channel names; ``frames()`` gives what :func:`fuse` takes.

    Raises
    ------
    FrameReadError
        Not a TIFF; pages that differ in size or dtype; an axis other than Z, Y, X, C
        not picked by ``index``; an ``index`` axis the file does not have, or out of
        its range; one plane along Z.
    """
    import tifffile

    file = Path(path)
    chosen = parse_index(index)
    if not file.is_file():
        raise FrameReadError(f"{file}: no such file.")
    try:
        tif = tifffile.TiffFile(file)
    except Exception as exc:
        raise FrameReadError(f"{file}: cannot read it as a TIFF ({exc}).") from exc
    try:
        return _parse(file, tif, chosen)
    finally:
        tif.close()


def _parse(file: Path, tif: Any, chosen: dict[str, int]) -> ZStack:
    all_series = list(tif.series)
    if not all_series:
        raise FrameReadError(f"{file}: a TIFF without images.")
    number = 0
    if tif.is_ome and len(all_series) > 1:  # several OME images: positions
        if "P" not in chosen:
            raise FrameReadError(
                f"{file}: an OME-TIFF of {len(all_series)} images (positions, axis P); "
                "pick one with --index P=N (index={'P': N})."
            )
        number = chosen.pop("P")
        if number >= len(all_series):
            raise FrameReadError(
                f"{file}: --index P={number} is out of range; the file has "
                f"{len(all_series)} positions (P=0 to {len(all_series) - 1})."
            )
    elif len(all_series) > 1:
        described = ", ".join(
            f"{s.shape[-2] if len(s.shape) > 1 else '?'} x {s.shape[-1]} {s.dtype}"
            for s in all_series[:4]
        )
        raise FrameReadError(
            f"{file}: its pages differ in size or dtype ({described}); all pages of a "
            "z-stack must have the same size and dtype."
        )
    series = all_series[number]
    axes = str(series.get_axes(False))
    shape = tuple(int(n) for n in series.get_shape(False))
    page_size = int(series.keyframe.size)
    page_ndim = next(
        k for k in range(len(shape) + 1) if math.prod(shape[len(shape) - k :]) == page_size
    )
    # the focus axis: Z, else the page sequence
    if "Z" not in axes:
        sequence = [a for a, n in zip(axes, shape, strict=True) if a in _SEQUENCE_AXES and n > 1]
        if len(sequence) == 1:
            axes = axes.replace(sequence[0], "Z", 1)
    unknown = sorted(set(chosen) - set(axes))
    if unknown:
        raise FrameReadError(
            f"{file}: --index names axis {', '.join(unknown)}, which the file does not "
            f"have (its axes: {axes}, sizes {shape})."
        )
    for a, n in zip(axes, shape, strict=True):
        if a in chosen and chosen[a] >= n:
            raise FrameReadError(
                f"{file}: --index {a}={chosen[a]} is out of range; axis {a} has {n} "
                f"entries ({a}=0 to {n - 1})."
            )
    extra = [
        f"{a} ({n})"
        for a, n in zip(axes, shape, strict=True)
        if a not in _PLANE_AXES and a != "Z" and n > 1 and a not in chosen
    ]
    if extra:
        raise FrameReadError(
            f"{file}: axes other than Z, Y, X and channels: {', '.join(extra)} (axes "
            f"{axes}); pick one entry of each with --index (as --index "
            f"{extra[0][0]}=0)."
        )
    sizes = dict(zip(axes, shape, strict=True))
    planes = sizes.get("Z", 1)
    if planes < 2:
        raise FrameReadError(
            f"{file}: a Z axis of {planes} plane (axes {axes}, sizes {shape}); a focus "
            "stack needs at least two."
        )
    channels = sizes.get("C", 1) * sizes.get("S", 1)
    rows, cols = sizes.get("Y", 1), sizes.get("X", 1)
    dtype = np.dtype(series.dtype).newbyteorder("=")
    if dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise FrameReadError(
            f"{file}: samples of type {dtype}; z-stacks must be 8 or 16-bit or float."
        )
    if not 1 <= channels <= 8:
        raise FrameReadError(f"{file}: {channels} channels; z-stacks may have 1 to 8.")
    z_step, pixel, names = _calibration(tif, number, file)
    return ZStack(
        path=file,
        axes=axes,
        shape=shape,
        planes=planes,
        rows=rows,
        cols=cols,
        channels=channels,
        dtype=dtype,
        z_step=z_step,
        pixel_size=pixel,
        channel_names=names if len(names) == channels else (),
        is_ome=bool(tif.is_ome),
        _series=number,
        _selection=chosen,
        _page_ndim=page_ndim,
    )


def _calibration(
    tif: Any, number: int, file: Path
) -> tuple[float | None, tuple[float, float] | None, tuple[str, ...]]:
    """(z step, (row, col) pixel size) in micrometres and the channel names."""
    if tif.is_ome and tif.ome_metadata:
        try:
            return _ome_calibration(tif.ome_metadata, number)
        except (ElementTree.ParseError, ValueError):
            return None, None, ()
    if tif.is_imagej:
        meta = tif.imagej_metadata or {}
        unit = str(meta.get("unit", "pixel"))
        z_step = pixel = None
        try:
            if "spacing" in meta:
                z_step = to_micrometres(float(meta["spacing"]), unit, "spacing")
            tags = tif.pages.first.tags
            x, y = tags.get("XResolution"), tags.get("YResolution")
            if x is not None and y is not None:
                per_col = x.value[0] / x.value[1]
                per_row = y.value[0] / y.value[1]
                pixel = (
                    to_micrometres(1.0 / per_row, unit, "YResolution"),
                    to_micrometres(1.0 / per_col, unit, "XResolution"),
                )
        except (ValueError, ZeroDivisionError):
            pass  # no unit ("pixel"), or no size: uncalibrated
        return z_step, pixel, ()
    return None, None, ()


def _ome_calibration(
    xml: str, number: int
) -> tuple[float | None, tuple[float, float] | None, tuple[str, ...]]:
    root = ElementTree.fromstring(xml)
    images = [e for e in root if e.tag.endswith("}Image") or e.tag == "Image"]
    pixels = next((e for e in images[number] if e.tag.endswith("Pixels")), None)
    if pixels is None:
        return None, None, ()

    def size(axis: str) -> float | None:
        value = pixels.get(f"PhysicalSize{axis}")
        if value is None:
            return None
        return to_micrometres(float(value), pixels.get(f"PhysicalSize{axis}Unit", "µm"), axis)

    row, col = size("Y"), size("X")
    names = tuple(
        e.get("Name", f"C{i}") for i, e in enumerate(c for c in pixels if c.tag.endswith("Channel"))
    )
    pixel = (row, col) if row is not None and col is not None else None
    return size("Z"), pixel, names


def channel_tiff(
    image: NDArray[Any],
    *,
    channel_names: tuple[str, ...] = (),
    pixel_size: tuple[float, float] | None = None,
    z_step: float | None = None,
    ome: bool = True,
) -> bytes:
    """A fused multi-channel image as TIFF bytes: channel planes (``CYX``), zlib-compressed,
    with OME metadata (channel names, pixel sizes in µm) when ``ome``.

    Parameters
    ----------
    image : ndarray, (rows, cols) or (rows, cols, channels)
        uint8, uint16 or float32 (float64 is written as float32).
    channel_names, pixel_size, z_step
        What the OME ``Pixels`` element records (where known).
    ome : bool
        Write OME-XML; else a plain multi-page TIFF, one page a channel.
    """
    import io

    import tifffile

    data = image.astype(np.float32) if image.dtype == np.float64 else image
    planes = data[None] if data.ndim == 2 else np.moveaxis(data, -1, 0)
    metadata: dict[str, Any] | None = None
    if ome:
        metadata = {"axes": "CYX"}
        if channel_names and len(channel_names) == planes.shape[0]:
            metadata["Channel"] = {"Name": list(channel_names)}
        if pixel_size is not None:
            metadata["PhysicalSizeY"], metadata["PhysicalSizeX"] = pixel_size
            metadata["PhysicalSizeYUnit"] = metadata["PhysicalSizeXUnit"] = "µm"
        if z_step is not None:
            metadata["PhysicalSizeZ"], metadata["PhysicalSizeZUnit"] = z_step, "µm"
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        np.ascontiguousarray(planes),
        photometric="minisblack",
        compression="zlib",
        predictor=True,
        metadata=metadata,
        ome=ome,
    )
    return buffer.getvalue()
