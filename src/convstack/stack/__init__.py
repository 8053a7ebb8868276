"""Focus stacking: fuse photos focused at different depths into one sharp image."""

from .fusion import weighted_merge
from .sharpness import sharpness_mask

__all__ = ["sharpness_mask", "weighted_merge"]
