"""A small, safe evaluator for one-variable expressions such as ``"0.001*(x+3)*x*(x-1)"``.

The text is parsed with :mod:`ast` and only a whitelist of node types is accepted:
numbers, the name ``x`` (and the constants ``pi`` and ``e``), ``+ - * / **``, unary
minus/plus, parentheses, and calls of a few NumPy functions by bare name. Everything
else (attribute access, other names, keyword arguments, strings, comparisons, lambdas,
comprehensions, subscripts, huge exponents...) is refused with a ``ValueError`` that
quotes the offending piece. Nothing is ever passed to :func:`eval` or :func:`exec`:
the tree is walked and each node is computed with NumPy on float64 arrays.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["FUNCTIONS", "compile_expression", "evaluate"]

#: Functions EXPR may call (one argument each), by the name the user types.
FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "exp": np.exp,
    "log": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "sqrt": np.sqrt,
    "cbrt": np.cbrt,
    "abs": np.abs,
    "sign": np.sign,
    "floor": np.floor,
    "ceil": np.ceil,
}

#: Named constants EXPR may use.
CONSTANTS: dict[str, float] = {"pi": float(np.pi), "e": float(np.e)}

#: The variable.
VARIABLE = "x"

MAX_LENGTH = 2000  # characters
MAX_NODES = 500
MAX_EXPONENT = 1000.0

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.Pow: np.power,
}

_REFUSED_OPERATORS = {
    ast.BitXor: "'^' (use '**' for powers)",
    ast.FloorDiv: "'//'",
    ast.Mod: "'%'",
    ast.MatMult: "'@'",
    ast.LShift: "'<<'",
    ast.RShift: "'>>'",
    ast.BitAnd: "'&'",
    ast.BitOr: "'|'",
}

_NODE_NAMES = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts",
    ast.Compare: "comparisons",
    ast.BoolOp: "'and'/'or'",
    ast.IfExp: "'if ... else'",
    ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Set: "sets",
    ast.Dict: "dicts",
    ast.NamedExpr: "':='",
    ast.JoinedStr: "strings",
    ast.Starred: "'*' unpacking",
    ast.Await: "'await'",
    ast.Yield: "'yield'",
    ast.YieldFrom: "'yield'",
    ast.Slice: "slices",
}


class _Checker:
    """Walk a parsed tree and refuse anything outside the grammar."""

    def __init__(self, text: str) -> None:
        self.text = text

    def piece(self, node: ast.AST) -> str:
        segment = ast.get_source_segment(self.text, node)
        return repr(segment if segment is not None else ast.dump(node))

    def refuse(self, what: str, node: ast.AST) -> ValueError:
        return ValueError(f"`EXPR` may not contain {what}: {self.piece(node)} in {self.text!r}.")

    def check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                kind = "strings" if isinstance(value, (str, bytes)) else "this constant"
                raise self.refuse(kind, node)
            try:
                number = float(value)
            except OverflowError:
                raise self.refuse("a number this large", node) from None
            if not np.isfinite(number):
                raise self.refuse("a number this large", node)
        elif isinstance(node, ast.Name):
            if node.id != VARIABLE and node.id not in CONSTANTS:
                hint = " (call it, e.g. sin(x))" if node.id in FUNCTIONS else ""
                raise ValueError(
                    f"`EXPR` may only use the name 'x' and the constants pi, e; got the name "
                    f"{node.id!r}{hint} in {self.text!r}."
                )
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                raise self.refuse("this operator", node)
            self.check(node.operand)
        elif isinstance(node, ast.BinOp):
            if type(node.op) in _REFUSED_OPERATORS:
                raise self.refuse(_REFUSED_OPERATORS[type(node.op)], node)
            if type(node.op) not in _BINARY:
                raise self.refuse("this operator", node)
            self.check(node.left)
            self.check(node.right)
            if isinstance(node.op, ast.Pow) and VARIABLE not in _names(node.right):
                exponent = _evaluate(node.right, np.zeros(1))
                if not np.all(np.abs(exponent) <= MAX_EXPONENT):
                    raise ValueError(
                        f"`EXPR` may not raise to a power beyond +-{MAX_EXPONENT:g}: "
                        f"{self.piece(node)} in {self.text!r}."
                    )
        elif isinstance(node, ast.Call):
            function = node.func
            if not isinstance(function, ast.Name):
                raise self.refuse("calls of anything but " + _function_list(), node)
            if function.id not in FUNCTIONS:
                raise ValueError(
                    f"`EXPR` may only call {_function_list()}; got {function.id!r} in "
                    f"{self.text!r}."
                )
            if node.keywords or len(node.args) != 1:
                raise self.refuse(f"{function.id}() with other than one plain argument", node)
            self.check(node.args[0])
        else:
            what = _NODE_NAMES.get(type(node), type(node).__name__)
            raise self.refuse(what, node)


def _function_list() -> str:
    return ", ".join(sorted(FUNCTIONS))


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _evaluate(node: ast.AST, x: NDArray[np.float64]) -> Any:
    """Compute a checked node (errstate is set by the caller)."""
    if isinstance(node, ast.Constant):
        return np.float64(float(node.value))  # type: ignore[arg-type]
    if isinstance(node, ast.Name):
        return x if node.id == VARIABLE else np.float64(CONSTANTS[node.id])
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, x)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, x), _evaluate(node.right, x))
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        return FUNCTIONS[node.func.id](_evaluate(node.args[0], x))
    raise AssertionError(f"unchecked node {ast.dump(node)}")  # pragma: no cover


def _parse(text: str) -> ast.expr:
    if not isinstance(text, str):
        raise TypeError(f"`EXPR` must be a string; got {type(text).__name__}.")
    if not text.strip():
        raise ValueError("`EXPR` must not be empty.")
    if len(text) > MAX_LENGTH:
        raise ValueError(f"`EXPR` must be at most {MAX_LENGTH} characters; got {len(text)}.")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ValueError(f"`EXPR` is not a valid expression{where}: {text!r}.") from None
    except (RecursionError, MemoryError):
        raise ValueError(f"`EXPR` is nested too deeply: {text[:60]!r}...") from None
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        raise ValueError(f"`EXPR` must have at most {MAX_NODES} parts; got {count}.")
    with np.errstate(all="ignore"):
        _Checker(text.strip()).check(tree.body)
    return tree.body


def compile_expression(text: str) -> Callable[[ArrayLike], NDArray[np.float64]]:
    """Check ``text`` once; return a function of ``x`` that evaluates it with NumPy.

    The returned function gives a float64 array of the shape of ``x`` (a constant
    expression is broadcast). Invalid values (log of a negative number, division by
    zero) give NaN or inf without warnings; the caller decides what to do with them.

    Raises
    ------
    ValueError
        If ``text`` is not an expression of the allowed grammar; the message quotes
        the offending piece.

    Examples
    --------
    >>> f = compile_expression("0.5*x**2 - sin(pi*x)")
    >>> f([0.0, 1.0, 2.0]).round(12)
    array([0. , 0.5, 2. ])
    >>> compile_expression("x.real")
    Traceback (most recent call last):
    ...
    ValueError: `EXPR` may not contain attribute access: 'x.real' in 'x.real'.
    """
    body = _parse(text)

    def function(x: ArrayLike) -> NDArray[np.float64]:
        values = np.asarray(x, dtype=np.float64)
        with np.errstate(all="ignore"):
            result = _evaluate(body, values)
        return np.broadcast_to(np.asarray(result, dtype=np.float64), values.shape).copy()

    return function


def evaluate(text: str, x: ArrayLike) -> NDArray[np.float64]:
    """Evaluate the expression ``text`` at ``x``; see :func:`compile_expression`.

    Examples
    --------
    >>> evaluate("abs(x) + 1", [-2.0, 3.0])
    array([3., 4.])
    """
    return compile_expression(text)(x)
