"""Input checks shared by every public entry point, with one error-message style.

Messages follow "`name` must <rule>; got <value>." so that a user sees which
argument was wrong, what was expected, and what arrived.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _short(value: Any) -> str:
    """Return a short repr of ``value`` for an error message."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def fail(name: str, rule: str, value: Any, *, kind: type[Exception] = ValueError) -> Exception:
    """Build the standard error: "`name` must <rule>; got <value>."."""
    return kind(f"`{name}` must {rule}; got {_short(value)}.")


def as_real_array(value: ArrayLike, name: str) -> NDArray[Any]:
    """Return ``value`` as a non-empty real (bool, integer or float) ndarray.

    Raises
    ------
    TypeError
        If the array is complex, object, string or otherwise not real numbers.
    ValueError
        If the array is empty.
    """
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise fail(name, "be an array of real numbers", value, kind=TypeError) from exc
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"`{name}` must be an array of real numbers (bool, integer or float); "
            f"got dtype {array.dtype}."
        )
    if array.size == 0:
        raise fail(name, "not be empty", array)
    return array


def float_dtype(array: NDArray[Any]) -> np.dtype[Any]:
    """Working dtype (native byte order): float16 and float32 compute in float32, every
    other real dtype (float64, longdouble, integers, bool) in float64."""
    if array.dtype.kind == "f" and array.dtype.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def per_axis_ints(value: Any, name: str, ndim: int, *, minimum: int) -> tuple[int, ...]:
    """Expand an int or a sequence of ``ndim`` ints to a tuple, each >= ``minimum``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values: tuple[int, ...] = (int(value),) * ndim
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != ndim or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
        ):
            raise fail(name, f"be an int or a sequence of {ndim} ints", value, kind=TypeError)
        values = tuple(int(v) for v in value)
    else:
        raise fail(name, f"be an int or a sequence of {ndim} ints", value, kind=TypeError)
    if any(v < minimum for v in values):
        raise fail(name, f"be >= {minimum} for every axis", values)
    return values


def real_number(value: Any, name: str) -> float:
    """Return ``value`` as a float (NaN and infinities pass); TypeError if it is none."""
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise fail(name, "be a real number", value, kind=TypeError) from exc


def finite_float(value: Any, name: str) -> float:
    """Return ``value`` as a finite float."""
    number = real_number(value, name)
    if not np.isfinite(number):
        raise fail(name, "be finite", value)
    return number


def positive_float(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite float that is > 0 (or >= 0 with ``allow_zero``)."""
    number = real_number(value, name)
    if not np.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise fail(
            name, "be a finite number >= 0" if allow_zero else "be a finite number > 0", value
        )
    return number


def channel_axis_index(channel_axis: int | None, ndim: int) -> int | None:
    """Normalise ``channel_axis`` against an array of ``ndim`` dimensions."""
    if channel_axis is None:
        return None
    if not isinstance(channel_axis, (int, np.integer)) or isinstance(channel_axis, bool):
        raise fail("channel_axis", "be an int or None", channel_axis, kind=TypeError)
    if not -ndim <= channel_axis < ndim:
        raise fail(
            "channel_axis", f"lie in [-{ndim}, {ndim - 1}] for a {ndim}-D image", channel_axis
        )
    return int(channel_axis) % ndim


def choice(value: Any, name: str, options: Sequence[str]) -> str:
    """Check that ``value`` is one of ``options``."""
    if not isinstance(value, str) or value not in options:
        raise fail(name, "be one of " + ", ".join(repr(o) for o in options), value)
    return value
