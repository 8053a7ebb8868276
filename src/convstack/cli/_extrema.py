"""`convstack extrema EXPR --from A --to B --step H`: turning points of a formula, as a table."""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._expr import FUNCTIONS, compile_expression
from ..limits import check_memory
from ._common import UserError

#: Refuse grids larger than this many samples. Memory: 8 bytes a sample (the values;
#: abscissae and the expression's temporaries are made one chunk at a time, and the
#: extremum search streams), so 400 MB at the limit.
MAX_SAMPLES = 50_000_000
#: Samples evaluated at a time.
CHUNK = 1 << 20
#: Refuse to list more turning points than this: each costs a Python object and a line
#: (sin(x) on 50 million samples has 16 million: over a minute and ~2 GB before).
MAX_EXTREMA = 1_000_000


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


def _grid(start: float, stop: float, step: float | None) -> tuple[float, int]:
    """Check the interval and the step; return the step and the number of samples.

    Nothing here can overflow: the span and the ratio span/step are checked for
    finiteness before the count is rounded, and the step must exceed the spacing of
    floats at the interval's magnitude (else samples would repeat).
    """
    for flag, value in (("--from", start), ("--to", stop)):
        if not math.isfinite(value):
            raise UserError(f"{flag} must be a finite number; got {value}.")
    if not stop > start:
        raise UserError(f"--to must be greater than --from; got --from {start} --to {stop}.")
    span = stop - start
    if not math.isfinite(span):
        raise UserError(
            f"--to minus --from must be a finite number; got --from {start} --to {stop}, "
            "whose difference overflows."
        )
    if step is None:
        step = span / 10_000
    if not (math.isfinite(step) and step > 0):
        raise UserError(f"--step must be > 0 and finite; got {step}.")
    ratio = span / step
    if not ratio <= MAX_SAMPLES:  # also catches an infinite ratio (a tiny step)
        raise UserError(
            f"--step {step} gives {ratio:.4g} samples on [{start}, {stop}); "
            f"the limit is {MAX_SAMPLES}: use a larger step."
        )
    count = math.ceil(ratio)
    if count < 3:
        raise UserError(
            f"--step {step} gives only {count} sample(s) on [{start}, {stop}); need at least 3."
        )
    spacing = float(np.spacing(max(abs(start), abs(stop))))
    if step < 4 * spacing:
        raise UserError(
            f"--step must be at least {4 * spacing:.6g} near {max(abs(start), abs(stop)):g}, "
            f"where floats are {spacing:.6g} apart (smaller steps repeat samples); got {step}."
        )
    return step, count


def _samples(
    function: Any, expr: str, start: float, step: float, count: int
) -> NDArray[np.float64]:
    """``EXPR`` at ``start + i * step`` for ``i < count``, evaluated chunk by chunk.

    Only ``y`` is kept whole (8 bytes a sample): the abscissae and the expression's
    temporaries exist for one chunk at a time.
    """
    check_memory(8.0 * count + 64.0 * CHUNK, f"extrema of {expr!r} on {count} samples")
    y = np.empty(count, dtype=np.float64)
    bad_count, first = 0, 0.0
    for lo in range(0, count, CHUNK):
        x = start + step * np.arange(lo, min(lo + CHUNK, count), dtype=np.float64)
        y[lo : lo + x.size] = function(x)
        bad = ~np.isfinite(y[lo : lo + x.size])
        if bad.any():
            first = first if bad_count else float(x[np.flatnonzero(bad)[0]])
            bad_count += int(bad.sum())
    if bad_count:
        raise UserError(
            f"EXPR {expr!r} is not finite (nan or inf) at {bad_count} of {count} "
            f"samples, first at x = {first:.10g}; choose --from/--to inside its domain."
        )
    return y


def _count_turns(y: NDArray[np.float64]) -> int:
    """How many turning points :func:`convstack.calculus.extrema` will list in ``y``
    (sign changes of the non-zero forward differences, a plateau counted once),
    counted chunk by chunk before any object is made."""
    count, last = 0, 0.0
    for lo in range(0, y.shape[0] - 1, CHUNK):
        hi = min(lo + CHUNK, y.shape[0] - 1)
        signs = np.sign(y[lo + 1 : hi + 1] - y[lo:hi])
        signs = signs[signs != 0]
        if signs.size == 0:
            continue
        count += int(last != 0 and signs[0] != last)
        count += int(np.count_nonzero(signs[1:] != signs[:-1]))
        last = float(signs[-1])
    return count


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    try:
        function = compile_expression(args.expr)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    step, count = _grid(args.start, args.stop, args.step)
    y = _samples(function, args.expr, args.start, step, count)
    turns = _count_turns(y)
    if turns > MAX_EXTREMA:
        raise UserError(
            f"EXPR {args.expr!r} has {turns} turning points on [{args.start}, {args.stop}) "
            f"with --step {step}; at most {MAX_EXTREMA} are listed: narrow --from/--to "
            "or use a larger --step."
        )
    from ..calculus import extrema  # here: the other commands do not need it

    # in sample units, then x = start + t * step: the grid is affine in t
    found = extrema(y, include_ends=args.include_ends)
    if not found:
        print(f"no extrema of {args.expr} on [{args.start:g}, {args.stop:g})")
        return 0
    print(f"{'kind':<4}  {'x':>16}  {'y':>16}")
    for e in found:
        x = args.start + step * e.x
        print(f"{e.kind:<4}  {x:>16.8g}  {e.y:>16.8g}")
    return 0
