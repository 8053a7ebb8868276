"""convstack: exact, fast convolution in NumPy, classic filters, and focus stacking.

The engine is imported with the package; calculus, edges, filters and kernels on
first use (PEP 562), so that ``convstack fuse`` and scripts that need one part do
not pay for importing every other part.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The engine is imported now: the function ``convolve`` must shadow the module of that
# name, which any later import of the submodule would otherwise set here.
from .convolve import convolve, correlate
from .padding import pad

if TYPE_CHECKING:
    from . import calculus as calculus
    from . import edges as edges
    from . import filters as filters
    from . import kernels as kernels
    from .calculus import (
        Extremum,
        derivative,
        extrema,
        gradient,
        gradient_direction,
        gradient_magnitude,
        second_derivatives,
    )
    from .edges import focus_measure, laplacian_edges, sobel_magnitude
    from .filters import (
        box_blur,
        gaussian_blur,
        laplacian,
        median_blur,
        scharr,
        sobel,
        unsharp_mask,
    )
    from .filters.bilateral import bilateral

    __version__: str

#: Where each public name lives (a module of the package, or the name is one).
_HOMES = {
    "calculus": "",
    "edges": "",
    "filters": "",
    "kernels": "",
    "Extremum": "calculus",
    "derivative": "calculus",
    "extrema": "calculus",
    "gradient": "calculus",
    "gradient_direction": "calculus",
    "gradient_magnitude": "calculus",
    "second_derivatives": "calculus",
    "focus_measure": "edges",
    "laplacian_edges": "edges",
    "sobel_magnitude": "edges",
    "bilateral": "filters",
    "box_blur": "filters",
    "gaussian_blur": "filters",
    "laplacian": "filters",
    "median_blur": "filters",
    "scharr": "filters",
    "sobel": "filters",
    "unsharp_mask": "filters",
}

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


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value: Any = version("convstack")
        except PackageNotFoundError:  # running from a source tree without installation
            value = "0.0.0+unknown"
    elif name in _HOMES:
        home = _HOMES[name]
        module = importlib.import_module(f".{home or name}", __name__)
        value = module if not home else getattr(module, name)
    else:
        raise AttributeError(f"module 'convstack' has no attribute {name!r}")
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
