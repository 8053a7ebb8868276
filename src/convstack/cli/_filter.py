"""`convstack filter NAME INPUT OUTPUT [options]`: one classic filter on an image file.

The filters are those of :mod:`convstack.filters` with OpenCV's defaults; the sample
type rules (16-bit stays 16-bit, ``--scale`` for derivative filters) are in
``cli/_images.py``.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np

from .._modes import MODES
from . import _images
from ._common import UserError

# name -> (function in convstack.filters, {option: default}, is_derivative). The options
# are passed to the function as keywords of the same name; None means the option is
# required/ignored. Functions by name: the filters are imported only when one runs.
_FILTERS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "box": ("box_blur", {"size": 3}, False),
    "gaussian": ("gaussian_blur", {"size": 5, "sigma": 0.0}, False),
    "median": ("median_blur", {"size": 5}, False),
    "bilateral": (
        "bilateral",
        {"diameter": 9, "sigma_color": 75.0, "sigma_space": 75.0},
        False,
    ),
    "laplacian": ("laplacian", {"size": 1}, True),
    "sobel": ("sobel", {"dx": 1, "dy": 0, "size": 3}, True),
    "scharr": ("scharr", {"dx": 1, "dy": 0}, True),
    "unsharp": ("unsharp_mask", {"sigma": 1.0, "amount": 1.0}, False),
}

_OPTION_FLAGS = {
    "size": "--size",
    "sigma": "--sigma",
    "dx": "--dx",
    "dy": "--dy",
    "diameter": "--diameter",
    "sigma_color": "--sigma-color",
    "sigma_space": "--sigma-space",
    "amount": "--amount",
}


def _defaults_table() -> str:
    lines = []
    for name, (_, options, derivative) in _FILTERS.items():
        shown = " ".join(f"{_OPTION_FLAGS[k]} {v:g}" for k, v in options.items())
        lines.append(f"  {name:<10} {shown}{'  (derivative)' if derivative else ''}")
    return "\n".join(lines)


def register(subparsers: Any) -> None:
    """Add the `filter` subcommand."""
    parser = subparsers.add_parser(
        "filter",
        help="apply a classic filter (blur, median, bilateral, Sobel, ...) to an image",
        description=textwrap.fill(
            "Apply one filter to a PNG, JPEG or TIFF image, as OpenCV does by default. "
            "The output keeps the input's sample type (16-bit stays 16-bit; float TIFF "
            "stays float). Derivative filters give signed values: for integer images "
            "--scale says how they become samples.",
            width=78,
        ),
        epilog="filters and their options (with defaults):\n" + _defaults_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", metavar="NAME", choices=list(_FILTERS), help=", ".join(_FILTERS))
    parser.add_argument("input", metavar="INPUT", help="image file to read")
    parser.add_argument("output", metavar="OUTPUT", help="image file to write (.png .jpg .tif)")
    parser.add_argument("--size", type=int, help="kernel or window size (odd)")
    parser.add_argument("--sigma", type=float, help="Gaussian standard deviation")
    parser.add_argument("--dx", type=int, help="derivative order along columns (x)")
    parser.add_argument("--dy", type=int, help="derivative order along rows (y)")
    parser.add_argument("--diameter", type=int, help="bilateral neighbourhood diameter")
    parser.add_argument("--sigma-color", dest="sigma_color", type=float, help="bilateral")
    parser.add_argument("--sigma-space", dest="sigma_space", type=float, help="bilateral")
    parser.add_argument("--amount", type=float, help="unsharp-mask strength")
    parser.add_argument(
        "--mode", choices=MODES, default=None, help="border (default: the filter's, as OpenCV)"
    )
    parser.add_argument(
        "--scale",
        choices=_images.SCALES,
        default="abs",
        help="derivative filters on integer images: abs (|v| saturated, default), "
        "offset (v + mid-grey), rescale (|v| stretched to full range)",
    )
    parser.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    parser.set_defaults(func=run)


def _keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The filter's keyword arguments; options that do not apply are an error."""
    _, options, _ = _FILTERS[args.name]
    unused = [
        flag
        for key, flag in _OPTION_FLAGS.items()
        if key not in options and getattr(args, key) is not None
    ]
    if unused:
        raise UserError(
            f"{', '.join(unused)} do{'es' if len(unused) == 1 else ''} not apply to the "
            f"{args.name} filter; it takes "
            + (", ".join(_OPTION_FLAGS[k] for k in options) or "no options")
            + "."
        )
    keywords = {key: getattr(args, key) for key in options}
    keywords = {k: (options[k] if v is None else v) for k, v in keywords.items()}
    if args.mode is not None:
        keywords["mode"] = args.mode
    return keywords


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    from .. import filters

    name, _, derivative = _FILTERS[args.name]
    function: Callable[..., Any] = getattr(filters, name)
    keywords = _keywords(args)
    image = _images.load(args.input)
    floating = image.dtype.kind == "f"
    output = _images.check_output(
        args.output, force=args.force, floating=floating, source=args.input
    )
    try:
        result = np.asarray(function(image, **keywords))
    except (ValueError, TypeError) as exc:
        message = str(exc)
        for key, flag in _OPTION_FLAGS.items():  # name the command-line option
            message = message.replace(f"`{key}`", flag)
        raise UserError(f"{args.input}: {args.name} filter: {message}") from None
    if derivative:
        result = _images.derivative_to_dtype(result, image.dtype, args.scale)
    _images.save(output, result, args.input, force=args.force)
    return 0
