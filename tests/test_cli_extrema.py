"""`convstack extrema`: the table against numpy.roots, and user errors as `error: ...`."""

import re

import numpy as np
import pytest

from convstack.cli import main

LAB = "0.001*(x+3)*x*(x-1)*(x-4)*(x-7)"


def _table(out):
    lines = out.strip().splitlines()
    assert lines[0].split() == ["kind", "x", "y"]
    return [(kind, float(x), float(y)) for kind, x, y in (line.split() for line in lines[1:])]


def test_lab_function_table_matches_roots_of_the_derivative(capsys):
    assert main(["extrema", LAB, "--from", "-3.5", "--to", "7.5", "--step", "0.001"]) == 0
    rows = _table(capsys.readouterr().out)
    poly = 0.001 * np.poly1d([-3, 0, 1, 4, 7], r=True)
    roots = np.sort(np.roots(poly.deriv().coeffs).real)
    assert [kind for kind, _, _ in rows] == ["max", "min", "max", "min"]
    np.testing.assert_allclose([x for _, x, _ in rows], roots, atol=1e-6)
    np.testing.assert_allclose([y for _, _, y in rows], poly(roots), rtol=1e-6)


def test_include_ends_and_expression_starting_with_minus(capsys):
    argv = [
        "extrema",
        "--from",
        "-1",
        "--to",
        "2",
        "--step",
        "0.5",
        "--include-ends",
        "--",
        "-x**2",
    ]
    assert main(argv) == 0
    rows = _table(capsys.readouterr().out)
    # samples -1, -0.5, 0, 0.5, 1, 1.5: end min at -1, max 0 at 0, end min at 1.5 (hand)
    assert rows == [("min", -1.0, -1.0), ("max", 0.0, 0.0), ("min", 1.5, -2.25)]


def test_no_extrema_message(capsys):
    assert main(["extrema", "exp(x)", "--from", "0", "--to", "1"]) == 0
    assert "no extrema" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["np.sin(x)"], r"error: `EXPR` may not contain calls of anything but .*'np.sin\(x\)'"),
        (["__import__('os')"], r"error: `EXPR` may only call .*got '__import__'"),
        (["x ^ 2"], r"use '\*\*' for powers"),
        (["sqrt(x)", "--from", "-1"], r"not finite .* first at x = -1"),
        (["x", "--to", "-5"], r"--to must be greater than --from"),
        (["x", "--step", "0"], r"--step must be > 0"),
        (["x", "--step", "1e-12"], r"the limit is"),
        (["x", "--step", "5"], r"need at least 3"),
    ],
)
def test_user_errors(capsys, argv, match):
    defaults = {"--from": "0", "--to": "10"}
    for flag, value in defaults.items():
        if flag not in argv:
            argv = [*argv, flag, value]
    assert main(["extrema", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    assert re.search(match, captured.err), captured.err
