"""The frame source of :func:`convstack.stack.fuse`: frames from arrays, paths, file
objects or a z-stack, read one at a time on demand and checked against the reference.

The frame read first (the reference) sets the stack's shape and dtype; every later
frame must match it. Float frames are scaled by the reference's largest magnitude
where over 1 (the stages assume about [0, 1]); their ranges are kept to scale the
result back.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _validate as v
from ..limits import max_image_pixels
from . import io as _io
from . import raw as _raw
from . import zstack as _zstack
from .errors import FrameMismatchError, FrameReadError, FrameValueError
from .forked import shared_array
from .sharpness import to_unit_float

__all__ = ["DTYPES", "FrameSource", "frame_name", "probe_header"]

#: The frame dtypes fuse accepts.
DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32), np.dtype(np.float64))


def _is_file_object(item: Any) -> bool:
    return not isinstance(item, np.ndarray) and callable(getattr(item, "read", None))


def frame_name(item: Any, index: int) -> str:
    """How messages name frame ``index``: its path, a file object's name, or its index."""
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    if isinstance(item, _zstack.ZPlane):
        return item.name
    if _is_file_object(item):
        own = getattr(item, "name", None)
        if isinstance(own, (str, os.PathLike)):
            return f"frames[{index}] ({os.fspath(own)})"
        return f"frames[{index}] (in-memory bytes)"
    return f"frames[{index}]"


def _extremes(array: NDArray[Any], name: str) -> tuple[float, float]:
    """The least and the largest sample of float frame ``array``; a
    :class:`FrameValueError` if it holds NaN or infinity (they would spread through the
    pyramid into a patch of NaN in the result)."""
    low, high = float(np.min(array)), float(np.max(array))
    if np.isfinite(low) and np.isfinite(high):
        return low, high
    bad = ~np.isfinite(array)
    where, count = np.argwhere(bad)[0], int(bad.sum())
    samples = "1 sample is" if count == 1 else f"{count} samples are"
    raise FrameValueError(
        f"{name}: {samples} NaN or infinite (the first at row "
        f"{where[0]}, column {where[1]}); focus stacking needs finite values: replace "
        "them (for example with np.nan_to_num) or crop them away."
    )


def probe_header(
    item: Any, content: bytes | None = None
) -> tuple[tuple[int, ...], np.dtype[Any]] | None:
    """A frame's (shape, dtype) as :meth:`FrameSource.raw` will read it, from an array's
    attributes or an image file's header (PNG, JPEG, TIFF), without decoding pixels;
    None where the header does not say (another format, a z-stack plane, a lone
    channel kept or an alpha dropped on reading are not told apart: an upper bound).

    ``content``: a file object's bytes, already read.
    """
    if isinstance(item, np.ndarray):
        shape = item.shape[:2] if item.ndim == 3 and item.shape[2] == 1 else item.shape
        return (tuple(shape), item.dtype) if item.ndim in (2, 3) else None
    if content is None and not isinstance(item, (str, os.PathLike)):
        return None
    return _io.read_header(item if content is None else content)


class FrameSource:
    """Frames from arrays, paths or file objects, loaded on demand and checked against
    the first (the reference), whose range also sets the scale of float frames."""

    def __init__(self, frames: Any) -> None:
        if isinstance(frames, (str, os.PathLike)):  # one file: a z-stack
            if not os.path.isfile(frames):
                raise v.fail(
                    "frames",
                    "be a sequence of arrays or paths, or one z-stack file",
                    frames,
                    kind=TypeError,
                )
            frames = _zstack.open_zstack(frames)
        elif _zstack.is_lone_zstack(frames):  # [one file], as a folder or glob lists it
            frames = _zstack.open_zstack(frames[0])
        if isinstance(frames, _zstack.ZStack):
            frames = frames.frames()
        if isinstance(frames, np.ndarray):
            if frames.ndim not in (3, 4):
                raise v.fail(
                    "frames",
                    "be a (frames, rows, cols[, channels]) array or a sequence of frames",
                    frames,
                )
            items: list[Any] = list(frames)
        elif isinstance(frames, Sequence):
            items = list(frames)
        else:
            raise v.fail("frames", "be a sequence of arrays or paths", frames, kind=TypeError)
        self.items = items
        self.names = [frame_name(item, i) for i, item in enumerate(items)]
        # camera RAW: LibRaw's OpenMP threads, started in this process, would leave a
        # forked child's decoder deadlocked; such stacks are read in a worker thread
        self.raw_files = any(
            isinstance(item, (str, os.PathLike)) and _raw.is_raw(item) for item in items
        )
        # file objects are read once, here: a frame may be read twice, and in a child
        # process that shares an open file's position
        self.content: dict[int, bytes] = {}
        for i, item in enumerate(items):
            if _is_file_object(item):
                data = item.read()
                if not isinstance(data, bytes):
                    raise v.fail(self.names[i], "be a binary file object", data, kind=TypeError)
                self.content[i] = data
        self.shape: tuple[int, ...] | None = None
        self.dtype: np.dtype[Any] | None = None
        self.first = ""  # the frame read first (the reference) sets shape and dtype
        # float frames: divided by the reference's largest magnitude where over 1 (the
        # steps assume about [0, 1]); each one's range as read, scaled, in memory that a
        # child process forked later (after the reference is read) writes into too
        self.scale = 1.0
        self.ranges: NDArray[np.float64] | None = None
        if len(items) < 2:
            if len(items) == 1 and (isinstance(items[0], (str, os.PathLike)) or self.content):
                self.raw(0)  # a lone file may say why (a multi-page TIFF, unreadable)
            raise FrameMismatchError(f"focus stacking needs at least two frames; got {len(items)}.")

    def __len__(self) -> int:
        return len(self.items)

    def probe(self, index: int) -> tuple[tuple[int, ...], np.dtype[Any]] | None:
        """Frame ``index``'s (shape, dtype) from its header, nothing decoded (see
        :func:`probe_header`); None where unknown (camera RAW, z-stacks, other formats)
        or where the decoder has more to say (no pixels, or over the pixel limit)."""
        if self.raw_files:
            return None
        found = probe_header(self.items[index], self.content.get(index))
        if found is not None:
            rows, cols = found[0][:2]
            if min(rows, cols) < 1 or rows * cols > max_image_pixels():
                return None
        return found

    def decoded_ahead(self, index: int) -> bool:
        """Whether frame ``index`` was decoded ahead (:class:`convstack.stack.io.ReadAhead`)
        and not read since: :meth:`raw` hands it over without decoding."""
        return index not in self.content and _io.decoded_ahead(self.items[index])

    def raw(self, index: int) -> NDArray[Any]:
        """Frame ``index`` as read (float frames scaled), checked against the reference."""
        item = self.items[index]
        name = self.names[index]
        if isinstance(item, _zstack.ZPlane):
            array = item.load()
        elif isinstance(item, (str, os.PathLike)) or index in self.content:
            try:
                if index in self.content:
                    array = _io.read_image(io.BytesIO(self.content[index]), name=name)
                else:
                    array = _io.read_image(item)
            except FrameReadError:
                raise
            except Exception as exc:  # codec errors of every kind
                raise FrameReadError(f"{name}: cannot read the image ({exc}).") from exc
        else:
            array = v.as_real_array(item, name)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3) or array.dtype not in DTYPES:
            raise FrameMismatchError(
                f"{name}: frames must be (rows, cols) or (rows, cols, channels) arrays of "
                f"uint8, uint16, float32 or float64; got shape {array.shape}, dtype "
                f"{array.dtype}."
            )
        extremes = _extremes(array, name) if array.dtype.kind == "f" else (0.0, 0.0)
        if self.shape is None:
            self.shape, self.dtype, self.first = array.shape, array.dtype, name
            if array.dtype.kind == "f":
                self.scale = max(1.0, extremes[1], -extremes[0])
                self.ranges = shared_array((len(self.items), 2), np.float64)
        elif array.shape != self.shape or array.dtype != self.dtype:
            raise FrameMismatchError(
                f"{name}: shape {array.shape} and dtype {array.dtype} differ from those of "
                f"the reference frame {self.first} ({self.shape}, {self.dtype}); "
                "all frames must have the same size, channels and bit depth."
            )
        if self.scale != 1.0:  # (float frames only: integers keep the scale 1)
            scale = array.dtype.type(self.scale)
            array = array / scale
            # rounding is monotonic: the scaled extremes are the extremes scaled, bit for
            # bit, with no second pass over the frame
            low, high = (float(array.dtype.type(x) / scale) for x in extremes)
            extremes = (low, high)
        if self.ranges is not None:
            self.ranges[index] = extremes
        return array

    def float_range(self) -> tuple[float, float]:
        """The range of the float frames read, scaled, widened to [0, 1]."""
        assert self.ranges is not None
        return min(0.0, float(self.ranges[:, 0].min())), max(1.0, float(self.ranges[:, 1].max()))

    def unit(self, index: int) -> NDArray[np.float32]:
        """Frame ``index`` as float32 on [0, 1] (integers divided by their maximum)."""
        return to_unit_float(self.raw(index), self.names[index])
