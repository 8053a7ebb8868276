"""convstack: exact, fast convolution in NumPy, classic filters, and focus stacking."""

from importlib.metadata import PackageNotFoundError, version

from . import calculus, edges, filters, kernels
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
from .edges import focus_measure, laplacian_edges, sobel_magnitude
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
    "calculus",
    "convolve",
    "correlate",
    "derivative",
    "edges",
    "extrema",
    "filters",
    "focus_measure",
    "gaussian_blur",
    "gradient",
    "gradient_direction",
    "gradient_magnitude",
    "kernels",
    "laplacian",
    "laplacian_edges",
    "median_blur",
    "pad",
    "scharr",
    "second_derivatives",
    "sobel",
    "sobel_magnitude",
    "unsharp_mask",
]
