"""`convstack extrema EXPR --from A --to B --step H`: turning points of a formula, as a table."""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np

from .._expr import FUNCTIONS, compile_expression
from ._common import UserError

#: Refuse grids larger than this many samples (memory: 8 bytes each, several arrays).
MAX_SAMPLES = 50_000_000


def register(subparsers: Any) -> None:
    """Add the `extrema` subcommand."""
    parser = subparsers.add_parser(
        "extrema",
        help="find the minima and maxima of a formula in x",
        description=(
            "Sample EXPR at x = A, A+H, A+2H, ... (< B), and print one line per local "
            "minimum or maximum, located between samples by a parabola through the three "
            "samples around it. EXPR may use numbers, x, pi, e, + - * / ** and "
            f"parentheses, and the functions {', '.join(sorted(FUNCTIONS))}."
        ),
        epilog="example: convstack extrema '0.001*(x+3)*x*(x-1)*(x-4)*(x-7)' "
        "--from -3.5 --to 7.5 --step 0.001",
    )
    parser.add_argument(
        "expr",
        metavar="EXPR",
        help="formula in x, e.g. 'x**3 - 3*x'; one starting with '-' goes last, after '--'",
    )
    parser.add_argument("--from", dest="start", type=float, required=True, metavar="A")
    parser.add_argument("--to", dest="stop", type=float, required=True, metavar="B")
    parser.add_argument(
        "--step", type=float, default=None, metavar="H", help="sample step (default: (B-A)/10000)"
    )
    parser.add_argument(
        "--include-ends",
        action="store_true",
        help="also report the end points of the interval when they are extreme",
    )
    parser.set_defaults(func=run)


def _grid(start: float, stop: float, step: float | None) -> np.ndarray:
    if not (math.isfinite(start) and math.isfinite(stop)):
        raise UserError(f"--from and --to must be finite; got {start} and {stop}.")
    if not stop > start:
        raise UserError(f"--to must be greater than --from; got --from {start} --to {stop}.")
    if step is None:
        step = (stop - start) / 10_000
    if not (math.isfinite(step) and step > 0):
        raise UserError(f"--step must be > 0; got {step}.")
    count = math.ceil((stop - start) / step)
    if count > MAX_SAMPLES:
        raise UserError(
            f"--step {step} gives {count} samples on [{start}, {stop}); "
            f"the limit is {MAX_SAMPLES}: use a larger step."
        )
    if count < 3:
        raise UserError(
            f"--step {step} gives only {count} sample(s) on [{start}, {stop}); need at least 3."
        )
    # numpy.arange's rule: start + i*step for i < ceil((stop - start) / step)
    return start + step * np.arange(count, dtype=np.float64)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    try:
        function = compile_expression(args.expr)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    x = _grid(args.start, args.stop, args.step)
    y = function(x)
    bad = ~np.isfinite(y)
    if bad.any():
        first = float(x[np.flatnonzero(bad)[0]])
        raise UserError(
            f"EXPR {args.expr!r} is not finite (nan or inf) at {int(bad.sum())} of {x.size} "
            f"samples, first at x = {first:.10g}; choose --from/--to inside its domain."
        )
    from ..calculus import extrema  # here: the other commands do not need it

    found = extrema(y, x, include_ends=args.include_ends)
    if not found:
        print(f"no extrema of {args.expr} on [{args.start:g}, {args.stop:g})")
        return 0
    print(f"{'kind':<4}  {'x':>16}  {'y':>16}")
    for e in found:
        print(f"{e.kind:<4}  {e.x:>16.8g}  {e.y:>16.8g}")
    return 0
