"""convstack: exact, fast convolution in NumPy, classic filters, and focus stacking."""

from importlib.metadata import PackageNotFoundError, version

from .convolve import convolve, correlate
from .padding import pad

try:
    __version__ = version("convstack")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "convolve", "correlate", "pad"]
