"""The shared input checks and their one message style."""

from __future__ import annotations

import numpy as np
import pytest

from convstack import _validate as v


def test_fail_message_style() -> None:
    err = v.fail("sigma", "be >= 0 for every axis", (-1.0, 2.0))
    assert isinstance(err, ValueError)
    assert str(err) == "`sigma` must be >= 0 for every axis; got (-1.0, 2.0)."
    assert isinstance(v.fail("x", "be an int", 1.5, kind=TypeError), TypeError)
    long = str(v.fail("x", "be short", "a" * 200))
    assert long.endswith("...'.") or long.endswith("....")
    assert "shape (2, 3) and dtype float64" in str(v.fail("x", "r", np.zeros((2, 3))))


def test_as_real_array() -> None:
    assert v.as_real_array([1, 2], "image").dtype.kind == "i"
    assert v.as_real_array(np.array([True]), "image").dtype == np.bool_
    with pytest.raises(TypeError, match=r"`image` must be an array of real numbers .*complex"):
        v.as_real_array([1j], "image")
    with pytest.raises(TypeError, match=r"`kernel` must be .*got dtype object"):
        v.as_real_array(np.array([None]), "kernel")
    with pytest.raises(TypeError, match=r"`image` must be an array of real numbers; got"):
        v.as_real_array([[1], [1, 2]], "image")
    with pytest.raises(ValueError, match=r"`image` must not be empty"):
        v.as_real_array([], "image")


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.float16, np.float32),
        (np.uint8, np.float64),
        (np.int64, np.float64),
        (np.bool_, np.float64),
        (">f4", np.float32),
        (">f8", np.float64),
        (np.longdouble, np.float64),
    ],
)
def test_float_dtype(dtype, expected) -> None:
    assert v.float_dtype(np.zeros(1, dtype)) == expected


def test_per_axis_ints() -> None:
    assert v.per_axis_ints(2, "stride", 3, minimum=1) == (2, 2, 2)
    assert v.per_axis_ints((1, np.int64(2)), "stride", 2, minimum=1) == (1, 2)
    with pytest.raises(ValueError, match=r"`stride` must be >= 1 for every axis; got \(0, 1\)"):
        v.per_axis_ints((0, 1), "stride", 2, minimum=1)
    for bad in (1.0, True, "2", (1,), (1, 2.0), None):
        with pytest.raises(TypeError, match=r"`stride` must be an int or a sequence of 2 ints"):
            v.per_axis_ints(bad, "stride", 2, minimum=1)


def test_positive_float() -> None:
    assert v.positive_float("1.5", "sigma") == 1.5
    assert v.positive_float(0, "sigma", allow_zero=True) == 0.0
    with pytest.raises(ValueError, match=r"`sigma` must be a finite number > 0; got 0"):
        v.positive_float(0, "sigma")
    with pytest.raises(ValueError, match=r"`sigma` must be a finite number >= 0; got -1"):
        v.positive_float(-1, "sigma", allow_zero=True)
    with pytest.raises(ValueError, match=r"`sigma` must be a finite number > 0; got inf"):
        v.positive_float(float("inf"), "sigma")
    with pytest.raises(TypeError, match=r"`sigma` must be a real number; got 'a'"):
        v.positive_float("a", "sigma")


def test_channel_axis_index() -> None:
    assert v.channel_axis_index(None, 3) is None
    assert v.channel_axis_index(-1, 3) == 2
    assert v.channel_axis_index(np.int64(0), 3) == 0
    with pytest.raises(ValueError, match=r"`channel_axis` must lie in \[-3, 2\] for a 3-D"):
        v.channel_axis_index(3, 3)
    with pytest.raises(TypeError, match=r"`channel_axis` must be an int or None; got True"):
        v.channel_axis_index(True, 3)


def test_choice() -> None:
    assert v.choice("fft", "method", ("fft", "direct")) == "fft"
    with pytest.raises(ValueError, match=r"`method` must be one of 'fft', 'direct'; got 'x'"):
        v.choice("x", "method", ("fft", "direct"))
    with pytest.raises(ValueError, match=r"`method` must be one of .*; got 3"):
        v.choice(3, "method", ("fft",))


def test_real_number_and_finite_float_messages() -> None:

    assert v.real_number("2.5", "x") == 2.5
    assert np.isnan(v.real_number(float("nan"), "x"))
    with pytest.raises(TypeError, match=r"`x` must be a real number; got 'a'\."):
        v.real_number("a", "x")
    assert v.finite_float(-1, "y") == -1.0
    with pytest.raises(ValueError, match=r"`y` must be finite; got inf\."):
        v.finite_float(float("inf"), "y")
    with pytest.raises(TypeError, match=r"`y` must be a real number; got None\."):
        v.finite_float(None, "y")
