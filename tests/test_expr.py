"""The safe EXPR evaluator: values against NumPy written by hand, and every refusal."""

import builtins

import numpy as np
import pytest

from convstack._expr import compile_expression, evaluate

X = np.linspace(-3.0, 3.0, 13)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.001*(x+3)*x*(x-1)*(x-4)*(x-7)", 0.001 * (X + 3) * X * (X - 1) * (X - 4) * (X - 7)),
        ("x**2 - 2*x + 1", X**2 - 2 * X + 1),
        ("-x", -X),
        ("+x", X),
        ("-x**2", -(X**2)),  # ** binds tighter than unary minus, as in Python
        ("2**-1 * x", 0.5 * X),
        ("x / 4", X / 4),
        ("sin(x) + cos(2*x) - tan(x/4)", np.sin(X) + np.cos(2 * X) - np.tan(X / 4)),
        ("exp(-x**2/2) / sqrt(2*pi)", np.exp(-(X**2) / 2) / np.sqrt(2 * np.pi)),
        ("abs(x) + log(e) + log10(100) + log2(8)", np.abs(X) + 1 + 2 + 3),
        (
            "atan(x) + tanh(x) + sinh(x/3) + cosh(x/3)",
            np.arctan(X) + np.tanh(X) + np.sinh(X / 3) + np.cosh(X / 3),
        ),
        ("asin(x/3) + acos(x/3)", np.arcsin(X / 3) + np.arccos(X / 3)),
        (
            "floor(x) + ceil(x) + sign(x) + cbrt(x)",
            np.floor(X) + np.ceil(X) + np.sign(X) + np.cbrt(X),
        ),
        ("1e-3 * x", 1e-3 * X),
        ("  ( x )  ", X),
    ],
)
def test_values_match_numpy(text, expected):
    np.testing.assert_allclose(evaluate(text, X), expected, rtol=1e-12, atol=1e-15)


def test_constant_expression_is_broadcast_and_float64():
    out = evaluate("2", X)
    assert out.shape == X.shape and out.dtype == np.float64
    np.testing.assert_array_equal(out, 2.0)
    assert evaluate("x", np.arange(3)).dtype == np.float64


def test_invalid_values_become_nan_without_warnings():
    out = evaluate("log(x)", [-1.0, 0.0, 1.0])
    assert np.isnan(out[0]) and out[1] == -np.inf and out[2] == 0.0
    assert evaluate("1/x", [0.0])[0] == np.inf


def test_compiled_function_is_reusable():
    f = compile_expression("x**3")
    np.testing.assert_array_equal(f([1.0, 2.0]), [1.0, 8.0])
    np.testing.assert_array_equal(f([3.0]), [27.0])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("x.real", r"attribute access: 'x.real'"),
        ("np.sin(x)", r"calls of anything but .*: 'np.sin\(x\)'"),
        ("__import__('os').system('true')", r"calls of anything but .*: \"__import__"),
        ("__import__('os')", r"may only call .*; got '__import__'"),
        ("eval('1')", r"may only call .*; got 'eval'"),
        ("y + 1", r"only use the name 'x' .*got the name 'y'"),
        ("sin + 1", r"got the name 'sin' \(call it, e.g. sin\(x\)\)"),
        ("__builtins__", r"got the name '__builtins__'"),
        ("'abc'", r"may not contain strings: \"'abc'\""),
        ("lambda: 1", r"may not contain lambdas"),
        ("[x for x in (1, 2)]", r"may not contain comprehensions"),
        ("x if x else 1", r"'if \.\.\. else'"),
        ("x < 1", r"comparisons: 'x < 1'"),
        ("x[0]", r"subscripts: 'x\[0\]'"),
        ("(x, x)", r"tuples"),
        ("x ^ 2", r"'\^' \(use '\*\*' for powers\): 'x \^ 2'"),
        ("x // 2", r"'//'"),
        ("x % 2", r"'%'"),
        ("~x", r"this operator: '~x'"),
        ("not x", r"this operator"),
        ("True + x", r"this constant: 'True'"),
        ("1j * x", r"this constant: '1j'"),
        ("9**9**9", r"power beyond \+-1000: '9\*\*9\*\*9'"),
        ("x**2000", r"power beyond"),
        ("x**-(10**4)", r"power beyond"),
        ("1" + "0" * 400, r"a number this large"),
        ("sin(x, 2)", r"sin\(\) with other than one plain argument"),
        ("sin(x=1)", r"sin\(\) with other than one plain argument"),
        ("sin(*x)", r"'\*' unpacking|other than one plain argument"),
        ("(y := 2)", r"':='"),
        ("f'{x}'", r"strings"),
        ("x +", r"not a valid expression"),
        ("import os", r"not a valid expression"),
        ("x; x", r"not a valid expression"),
        ("", r"must not be empty"),
        ("x+" * 400 + "x", r"at most 500 parts"),
        ("x" * 3000, r"at most 2000 characters"),
        ("(" * 300 + "x" + ")" * 300, r"not a valid expression|nested too deeply|parts"),
    ],
)
def test_refusals_name_the_offending_piece(text, match):
    with pytest.raises(ValueError, match=match):
        compile_expression(text)


def test_non_string_is_a_type_error():
    with pytest.raises(TypeError, match=r"`EXPR` must be a string; got int"):
        compile_expression(3)  # type: ignore[arg-type]


def test_never_calls_eval(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    np.testing.assert_allclose(evaluate("sin(pi*x/2)", [1.0]), [1.0])
