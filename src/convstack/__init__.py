"""convstack: exact, fast convolution in NumPy, classic filters, and focus stacking."""

from importlib.metadata import PackageNotFoundError, version

from .calculus import (
    Extremum,
    derivative,
    extrema,
    gradient,
    gradient_direction,
    gradient_magnitude,
    second_derivatives,
)
from .convolve import convolve, correlate
from .padding import pad

try:
    __version__ = version("convstack")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "Extremum",
    "__version__",
    "convolve",
    "correlate",
    "derivative",
    "extrema",
    "gradient",
    "gradient_direction",
    "gradient_magnitude",
    "pad",
    "second_derivatives",
]
