"""convstack: exact, fast convolution in NumPy, classic filters, and focus stacking."""

from importlib.metadata import PackageNotFoundError, version

from . import filters, kernels
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
from .filters import (
    bilateral,
    box_blur,
    gaussian_blur,
    laplacian,
    median_blur,
    scharr,
    sobel,
    unsharp_mask,
)
from .padding import pad

try:
    __version__ = version("convstack")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "Extremum",
    "__version__",
    "bilateral",
    "box_blur",
    "convolve",
    "correlate",
    "derivative",
    "extrema",
    "filters",
    "gaussian_blur",
    "gradient",
    "gradient_direction",
    "gradient_magnitude",
    "kernels",
    "laplacian",
    "median_blur",
    "pad",
    "scharr",
    "second_derivatives",
    "sobel",
    "unsharp_mask",
]
