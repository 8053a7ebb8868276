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
        # issue 19: OverflowError and a calculus traceback before
        (["x", "--step", "1e-320"], r"--step 1e-320 gives inf samples .* the limit is"),
        (["x", "--from=-1e308", "--to=1e308"], r"--to minus --from must be a finite number"),
        (
            ["x", "--from", "1e16", "--to", "1.0000000000000004e16", "--step", "1"],
            r"--step must be at least 8 near 1e\+16, where floats are 2 apart",
        ),
        (["x", "--step", "nan"], r"--step must be > 0 and finite; got nan"),
        (["x", "--step", "inf"], r"--step must be > 0 and finite; got inf"),
        (["x", "--from", "nan"], r"--from must be a finite number; got nan"),
        (["x", "--to", "inf"], r"--to must be a finite number; got inf"),
    ],
)
def test_user_errors(capsys, argv, match):
    defaults = {"--from": "0", "--to": "10"}
    for flag, value in defaults.items():
        if not any(a == flag or a.startswith(flag + "=") for a in argv):
            argv = [*argv, flag, value]
    assert main(["extrema", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    assert re.search(match, captured.err), captured.err


def test_chunked_evaluation_matches_one_pass(capsys, monkeypatch):
    # the expression and the search run in chunks; tiny chunks must give the same table,
    # and a plateau and a turning point that straddle chunk edges are found once
    from convstack import calculus
    from convstack.cli import _extrema

    argv = ["extrema", "floor(4*sin(x))", "--from", "0", "--to", "13", "--step", "0.01"]
    assert main(argv) == 0
    whole = capsys.readouterr().out
    monkeypatch.setattr(_extrema, "CHUNK", 7)
    monkeypatch.setattr(calculus, "_CHUNK", 5)
    assert main(argv) == 0
    assert capsys.readouterr().out == whole
    rows = _table(whole)
    # plateaus of 3 around pi/2 and 5pi/2, of -4 around 3pi/2 and 7pi/2 (hand)
    assert [kind for kind, _, _ in rows] == ["max", "min", "max", "min"]
    np.testing.assert_allclose(
        [x for _, x, _ in rows], [np.pi / 2, 1.5 * np.pi, 2.5 * np.pi, 3.5 * np.pi], atol=0.01
    )


def test_too_many_turning_points_refused_before_listing(capsys, monkeypatch):
    # sin(x) on [0, 100) turns at pi/2 + k*pi: 32 turning points (hand count); a limit
    # of 31 refuses with the count, a limit of 32 lists them all
    from convstack.cli import _extrema

    argv = ["extrema", "sin(x)", "--from", "0", "--to", "100", "--step", "0.01"]
    monkeypatch.setattr(_extrema, "MAX_EXTREMA", 31)
    monkeypatch.setattr(_extrema, "CHUNK", 7)  # the count carries across chunks
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert re.search(r"error: EXPR 'sin\(x\)' has 32 turning points .* at most 31", captured.err)
    monkeypatch.setattr(_extrema, "MAX_EXTREMA", 32)
    assert main(argv) == 0
    assert len(_table(capsys.readouterr().out)) == 32


def test_turning_point_count_counts_a_plateau_once():
    from convstack.cli import _extrema

    y = np.array([0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 2.0, 3.0])  # max plateau, min plateau
    assert _extrema._count_turns(y) == 2
