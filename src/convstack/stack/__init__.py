"""Focus stacking: fuse photos focused at different depths into one sharp image.

``fuse`` runs the whole pipeline (load, align, sharpness, depth, merge) on arrays or
paths, streaming; ``sharpness_mask`` and ``weighted_merge`` are the lab's two functions.
"""

from .errors import (
    AlignmentError,
    FrameMismatchError,
    FrameReadError,
    FrameValueError,
    OutputError,
    StackError,
)
from .fusion import DEFAULT_NOISE_FLOOR, METHODS, weighted_merge
from .pipeline import DEFAULT_METHOD, FuseResult, fuse
from .sharpness import sharpness_mask

__all__ = [
    "DEFAULT_METHOD",
    "DEFAULT_NOISE_FLOOR",
    "METHODS",
    "AlignmentError",
    "FrameMismatchError",
    "FrameValueError",
    "FrameReadError",
    "FuseResult",
    "OutputError",
    "StackError",
    "fuse",
    "sharpness_mask",
    "weighted_merge",
]
