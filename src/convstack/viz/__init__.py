"""Figures of convstack's results: tables, surfaces, signals, image grids, maps, animations.

Needs matplotlib, the optional ``plots`` extra (``pip install "convstack[plots]"``); it is
imported only when a figure is made. Every function returns a `matplotlib.figure.Figure`
drawn on an Agg canvas (no window ever opens) and accepts ``path=`` to save it as a PNG,
written atomically and never over an existing file unless ``overwrite=True``.
`convolution_animation` writes a GIF and returns its path.
"""

from .animation import Sweep, convolution_animation, sweep
from .grids import image_grid, kernel_plot
from .maps import depth_map, sharpness_maps
from .signals import signal_plot
from .surfaces import surface
from .tables import array_table

__all__ = [
    "Sweep",
    "array_table",
    "convolution_animation",
    "depth_map",
    "image_grid",
    "kernel_plot",
    "sharpness_maps",
    "signal_plot",
    "surface",
    "sweep",
]
