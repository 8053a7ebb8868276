"""`convstack edges INPUT OUTPUT [--method ...]`: an edge or focus map of an image file.

The map is gray, on [0, 1], written in the input's sample type (see ``cli/_images.py``).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from .._modes import MODES
from . import _images
from ._common import UserError

METHODS = ("laplacian", "sobel", "focus")


def register(subparsers: Any) -> None:
    """Add the `edges` subcommand."""
    parser = subparsers.add_parser(
        "edges",
        help="write the edge map (Laplacian or Sobel) or focus map of an image",
        description=(
            "Write a gray map on [0, 1] of the edges of INPUT, stretched to full range and "
            "stored in the input's sample type (8-bit, 16-bit, or float TIFF). "
            "laplacian: the lab's |4-neighbour Laplacian|; sobel: Sobel gradient "
            "magnitude; focus: mean squared Laplacian over a --size window (the focus "
            "stacker's sharpness), divided by its maximum."
        ),
    )
    parser.add_argument("input", metavar="INPUT", help="image file to read")
    parser.add_argument("output", metavar="OUTPUT", help="image file to write (.png .jpg .tif)")
    parser.add_argument("--method", choices=METHODS, default="laplacian")
    parser.add_argument("--size", type=int, default=None, help="focus window side (odd, 9)")
    parser.add_argument("--mode", choices=MODES, default="mirror", help="border (mirror)")
    parser.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    from .. import edges

    if args.method != "focus" and args.size is not None:
        raise UserError(f"--size applies to --method focus only; got --method {args.method}.")
    image = _images.load(args.input)
    output = _images.check_output(
        args.output, force=args.force, floating=image.dtype.kind == "f", source=args.input
    )
    try:
        if args.method == "laplacian":
            result = edges.laplacian_edges(image, mode=args.mode)
        elif args.method == "sobel":
            result = edges.sobel_magnitude(image, mode=args.mode, rescale=True)
        else:
            result = edges.focus_measure(
                image, size=9 if args.size is None else args.size, mode=args.mode
            )
            peak = float(result.max())
            result = result / peak if peak > 0 else np.zeros_like(result)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{args.input}: {exc}") from None
    _images.save(output, _images.unit_to_dtype(result, image.dtype), args.input, force=args.force)
    return 0
