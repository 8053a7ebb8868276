"""Calculus on samples: oracles are numpy.gradient, numpy.roots, SciPy, OpenCV and hand formulas."""

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st

from convstack import calculus as calculus_module
from convstack.apps.lab import LAB_SOFT_SQUARE
from convstack.calculus import (
    Extremum,
    derivative,
    extrema,
    gradient,
    gradient_direction,
    gradient_magnitude,
    laplace,
    second_derivatives,
)

RNG = np.random.default_rng(1234)

# ------------------------------------------------------------------ derivative


def test_lab_example_linear_function_has_derivative_minus_one():
    # The lab: x = 0..3, f = 3, 2, 1, 0 -> f' = -1 everywhere (hand calculation).
    for scheme in ("central", "forward", "backward"):
        np.testing.assert_allclose(derivative([3, 2, 1, 0], scheme=scheme), [-1, -1, -1, -1])
        np.testing.assert_allclose(
            derivative([3, 2, 1, 0], [0, 1, 2, 3], scheme=scheme), [-1, -1, -1, -1]
        )


def test_sine_derivative_is_cosine():
    t = np.arange(0.0, 4.0 * np.pi, 0.01)
    h = 0.01
    central = derivative(np.sin(t), t)
    # Truncation error of central differences: h**2/6 * max|f'''| (ends: h**2/3).
    assert np.max(np.abs(central - np.cos(t))) < h**2 / 3 + 1e-12
    forward = derivative(np.sin(t), t, scheme="forward")
    assert np.max(np.abs(forward - np.cos(t))) < h / 2 + 1e-12
    second = derivative(np.sin(t), t, order=2)
    assert np.max(np.abs(second[1:-1] + np.sin(t[1:-1]))) < h**2 / 12 + 1e-9
    assert np.max(np.abs(second + np.sin(t))) < 2 * h**2


def test_central_matches_numpy_gradient_even_and_uneven():
    y = RNG.normal(size=50)
    np.testing.assert_allclose(derivative(y), np.gradient(y, edge_order=2), rtol=1e-12, atol=1e-12)
    x = np.cumsum(RNG.uniform(0.1, 2.0, size=50))
    np.testing.assert_allclose(
        derivative(y, x), np.gradient(y, x, edge_order=2), rtol=1e-9, atol=1e-9
    )
    xe = 0.25 * np.arange(50) - 3
    np.testing.assert_allclose(
        derivative(y, xe), np.gradient(y, xe, edge_order=2), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("uneven", [False, True])
def test_forward_and_backward_are_difference_quotients(uneven):
    y = RNG.normal(size=20)
    x = np.cumsum(RNG.uniform(0.2, 1.5, size=20)) if uneven else np.arange(20) * 0.5
    quotient = np.diff(y) / np.diff(x)
    forward = derivative(y, x, scheme="forward")
    np.testing.assert_allclose(forward[:-1], quotient, rtol=1e-10)
    assert forward[-1] == pytest.approx(quotient[-1])
    backward = derivative(y, x, scheme="backward")
    np.testing.assert_allclose(backward[1:], quotient, rtol=1e-10)
    assert backward[0] == pytest.approx(quotient[0])


def test_second_order_forward_backward_on_even_grid_are_hand_stencils():
    y = RNG.normal(size=12)
    second = y[2:] - 2 * y[1:-1] + y[:-2]  # value of [1, -2, 1] over samples i..i+2
    forward = derivative(y, order=2, scheme="forward")
    np.testing.assert_allclose(forward[:-2], second, atol=1e-12)
    np.testing.assert_allclose(forward[-2:], second[-1], atol=1e-12)
    backward = derivative(y, order=2, scheme="backward")
    np.testing.assert_allclose(backward[2:], second, atol=1e-12)
    np.testing.assert_allclose(backward[:2], second[0], atol=1e-12)
    central = derivative(y, order=2)
    np.testing.assert_allclose(central[1:-1], second, atol=1e-12)
    # Ends: the four-point one-sided formula [2, -5, 4, -1] (hand).
    assert central[0] == pytest.approx(2 * y[0] - 5 * y[1] + 4 * y[2] - y[3])
    assert central[-1] == pytest.approx(2 * y[-1] - 5 * y[-2] + 4 * y[-3] - y[-4])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0.05, 3.0), min_size=5, max_size=30),
    st.floats(-3, 3),
    st.floats(-3, 3),
    st.floats(-3, 3),
)
def test_exact_for_quadratics_on_any_grid(steps, a, b, c):
    x = np.cumsum(steps)
    y = a * x**2 + b * x + c
    np.testing.assert_allclose(derivative(y, x), 2 * a * x + b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(derivative(y, x, order=2), 2 * a, rtol=1e-5, atol=1e-5)
    for scheme in ("forward", "backward"):
        np.testing.assert_allclose(
            derivative(y, x, order=2, scheme=scheme), 2 * a, rtol=1e-5, atol=1e-5
        )


def test_central_second_derivative_exact_for_cubics_with_even_steps():
    x = np.linspace(-2, 3, 11)
    y = 0.5 * x**3 - x**2 + 4
    np.testing.assert_allclose(derivative(y, x, order=2), 3 * x - 2, atol=1e-10)


def test_derivative_is_linear_and_keeps_float32():
    y1, y2 = RNG.normal(size=30), RNG.normal(size=30)
    x = np.cumsum(RNG.uniform(0.5, 1.0, size=30))
    np.testing.assert_allclose(
        derivative(2 * y1 - 3 * y2, x), 2 * derivative(y1, x) - 3 * derivative(y2, x), atol=1e-10
    )
    assert derivative(y1.astype(np.float32)).dtype == np.float32
    assert derivative(np.arange(5)).dtype == np.float64


def test_derivative_does_not_modify_input():
    y = RNG.normal(size=10)
    copy = y.copy()
    derivative(y, order=2, scheme="backward")
    np.testing.assert_array_equal(y, copy)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"y": [[1, 2], [3, 4]]}, ValueError, r"`y` must be 1-D"),
        ({"y": [1, 2, 3], "order": 3}, ValueError, r"`order` must be 1 or 2; got 3"),
        ({"y": [1, 2, 3], "scheme": "left"}, ValueError, r"`scheme` must be one of"),
        ({"y": [1, 2], "scheme": "central"}, ValueError, r"at least 3 samples"),
        ({"y": [1, 2, 3], "x": [0, 1]}, ValueError, r"same length as `y` \(3\); got length 2"),
        ({"y": [1, 2, 3], "x": [0, 2, 1]}, ValueError, r"strictly increasing; got x\[1\]"),
        ({"y": [1, 2, 3], "x": [0, np.nan, 1]}, ValueError, r"`x` must be finite"),
        ({"y": ["a", "b", "c"]}, TypeError, r"`y` must be an array of real numbers"),
    ],
)
def test_derivative_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        derivative(**kwargs)


# ------------------------------------------------------------------ extrema

LAB_ROOTS = (-3.0, 0.0, 1.0, 4.0, 7.0)


def _lab_polynomial():
    return 0.001 * np.poly1d(LAB_ROOTS, r=True)


def _analytic_extrema(poly, lo, hi):
    """Oracle: real roots of p' (numpy.roots) inside [lo, hi], kind from the sign of p''."""
    roots = np.roots(poly.deriv().coeffs)
    roots = np.sort(roots[np.abs(roots.imag) < 1e-12].real)
    roots = roots[(roots > lo) & (roots < hi)]
    kinds = ["max" if poly.deriv(2)(r) < 0 else "min" for r in roots]
    return roots, kinds


def test_lab_polynomial_extrema_match_roots_of_the_derivative():
    x = np.arange(-3.5, 7.5, 0.001)
    poly = _lab_polynomial()
    y = 0.001 * (x + 3) * x * (x - 1) * (x - 4) * (x - 7)
    found = extrema(y, x)
    roots, kinds = _analytic_extrema(poly, x[0], x[-1])
    assert len(found) == 4  # the lab's isclose test printed 9 values
    assert [e.kind for e in found] == kinds == ["max", "min", "max", "min"]
    np.testing.assert_allclose([e.x for e in found], roots, atol=1e-6)
    np.testing.assert_allclose([e.y for e in found], poly(roots), atol=1e-10)
    # the values quoted in the issue
    np.testing.assert_allclose([e.x for e in found], [-2.0756, 0.4812, 2.8112, 5.9831], atol=1e-4)


def test_lab_polynomial_on_an_uneven_grid():
    x = np.sort(RNG.uniform(-3.5, 7.5, size=11000))
    poly = _lab_polynomial()
    found = extrema(poly(x), x)
    roots, kinds = _analytic_extrema(poly, x[0], x[-1])
    assert [e.kind for e in found] == kinds
    np.testing.assert_allclose([e.x for e in found], roots, atol=1e-5)


def test_extremum_record():
    (e,) = extrema([0.0, 1.0, 0.0])
    assert isinstance(e, Extremum)
    assert (e.x, e.y, e.kind) == (1.0, 1.0, "max")
    x, y, kind = e
    assert kind == "max"


@settings(max_examples=50, deadline=None)
@given(st.floats(2.5, 17.5), st.floats(0.1, 10), st.sampled_from([-1.0, 1.0]))
def test_parabola_vertex_found_exactly_between_samples(vertex, width, sign):
    # Three samples around the vertex determine a parabola exactly: no step error.
    x = np.linspace(0, 20, 41)
    y = sign * width * (x - vertex) ** 2 + 3.0
    (e,) = extrema(y, x)
    assert e.kind == ("min" if sign > 0 else "max")
    assert e.x == pytest.approx(vertex, abs=1e-9)
    assert e.y == pytest.approx(3.0, abs=1e-9)


def test_plateau_reported_once_at_its_centre():
    y = [0, 1, 2, 2, 2, 1, 0, 3, 3, 5]
    x = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10]
    found = extrema(y, x)
    # plateau x = 2..5 -> centre 3.5; the min: parabola through (6, 1), (7, 0), (8, 3) is
    # 2t**2 + t with t = x - 7, vertex t = -1/4, value -1/8 (hand). The staircase step
    # (3, 3 between 0 and 5) is not an extremum.
    assert found == [Extremum(3.5, 2.0, "max"), Extremum(6.75, -0.125, "min")]


def test_ends_only_on_request():
    t = np.arange(0.0, 4 * np.pi, 0.01)
    found = extrema(np.cos(t), t)
    assert [e.kind for e in found] == ["min", "max", "min"]
    np.testing.assert_allclose([e.x for e in found], [np.pi, 2 * np.pi, 3 * np.pi], atol=1e-6)
    with_ends = extrema(np.cos(t), t, include_ends=True)
    assert with_ends[1:-1] == found
    assert with_ends[0] == Extremum(0.0, 1.0, "max")
    assert with_ends[-1].x == t[-1] and with_ends[-1].kind == "max"  # cos rises after 3 pi


def test_constant_and_monotonic_data_have_no_turning_points():
    assert extrema([2.0, 2.0, 2.0]) == []
    assert extrema(np.arange(10)) == []
    assert extrema([5]) == []
    assert [e.kind for e in extrema(np.arange(10), include_ends=True)] == ["min", "max"]


def test_extrema_errors():
    with pytest.raises(ValueError, match=r"`y` must be finite; got nan at index 1"):
        extrema([0.0, np.nan, 1.0])
    with pytest.raises(ValueError, match=r"`x` must be strictly increasing"):
        extrema([0, 1, 0], [0, 0, 1])
    with pytest.raises(ValueError, match=r"`y` must be 1-D"):
        extrema(np.zeros((3, 3)))


# ------------------------------------------------------------------ 2-D


def test_gradient_matches_numpy_gradient():
    f = RNG.normal(size=(7, 9))
    d_rows, d_cols = gradient(f, spacing=(0.5, 2.0))
    ref_rows, ref_cols = np.gradient(f, 0.5, 2.0)
    np.testing.assert_allclose(d_rows, ref_rows, atol=1e-12)
    np.testing.assert_allclose(d_cols, ref_cols, atol=1e-12)
    np.testing.assert_allclose(gradient_magnitude(f), np.hypot(*np.gradient(f)), atol=1e-12)
    np.testing.assert_allclose(gradient_direction(f), np.arctan2(*np.gradient(f)), atol=1e-12)


@pytest.mark.parametrize("channel_axis", [0, -1])
def test_gradient_colour_channels_are_independent(channel_axis):
    f = RNG.normal(size=(3, 6, 5)) if channel_axis == 0 else RNG.normal(size=(6, 5, 3))
    spatial = (1, 2) if channel_axis == 0 else (0, 1)
    d_rows, d_cols = gradient(f, channel_axis=channel_axis)
    ref_rows, ref_cols = np.gradient(f, axis=spatial)
    np.testing.assert_allclose(d_rows, ref_rows, atol=1e-12)
    np.testing.assert_allclose(d_cols, ref_cols, atol=1e-12)


@pytest.mark.parametrize("mode", ["constant", "nearest", "reflect", "mirror", "wrap"])
def test_padding_modes_match_scipy(mode):
    f = RNG.normal(size=(6, 7))
    d_rows, d_cols = gradient(f, mode=mode)
    half = [-0.5, 0.0, 0.5]
    np.testing.assert_allclose(d_rows, ndi.correlate1d(f, half, axis=0, mode=mode), atol=1e-12)
    np.testing.assert_allclose(d_cols, ndi.correlate1d(f, half, axis=1, mode=mode), atol=1e-12)
    d_rr, d_cc, d_rc = second_derivatives(f, mode=mode)
    np.testing.assert_allclose(d_rr, ndi.correlate1d(f, [1, -2, 1], axis=0, mode=mode), atol=1e-12)
    np.testing.assert_allclose(d_cc, ndi.correlate1d(f, [1, -2, 1], axis=1, mode=mode), atol=1e-12)
    cross = np.array([[1, 0, -1], [0, 0, 0], [-1, 0, 1]]) / 4
    np.testing.assert_allclose(d_rc, ndi.correlate(f, cross, mode=mode), atol=1e-12)
    np.testing.assert_allclose(laplace(f, mode=mode), ndi.laplace(f, mode=mode), atol=1e-12)


def test_second_derivatives_exact_for_quadratic_images_borders_included():
    r, c = np.mgrid[0:6, 0:8].astype(float)
    f = 1.5 * r**2 - 0.5 * c**2 + 0.75 * r * c + 2 * r - c + 3
    d_rr, d_cc, d_rc = second_derivatives(f, spacing=1.0)
    np.testing.assert_allclose(d_rr, 3.0, atol=1e-12)
    np.testing.assert_allclose(d_cc, -1.0, atol=1e-12)
    np.testing.assert_allclose(d_rc, 0.75, atol=1e-12)
    np.testing.assert_allclose(laplace(f), 2.0, atol=1e-12)
    # d_rc in one-sided mode is numpy.gradient of numpy.gradient
    g = RNG.normal(size=(5, 6))
    np.testing.assert_allclose(
        second_derivatives(g)[2], np.gradient(np.gradient(g, axis=1), axis=0), atol=1e-12
    )


def test_spacing_scales_second_derivatives():
    r, c = np.mgrid[0:5, 0:5].astype(float)
    h_r, h_c = 0.5, 0.25
    f = (r * h_r) ** 2 + 3 * (c * h_c) ** 2
    d_rr, d_cc, _ = second_derivatives(f, spacing=(h_r, h_c))
    np.testing.assert_allclose(d_rr, 2.0, atol=1e-10)
    np.testing.assert_allclose(d_cc, 6.0, atol=1e-10)
    np.testing.assert_allclose(laplace(f, spacing=(h_r, h_c), mode="nearest")[1:-1, 1:-1], 8.0)


# The lab's image (section "2nd order derivative").
LAB_S = LAB_SOFT_SQUARE


def _cvconv(f, g):
    # The lab's cvconv for odd kernels: zero padding, OpenCV filter2D (a correlation).
    return cv2.filter2D(f, -1, g, borderType=cv2.BORDER_CONSTANT)


def test_lab_second_derivative_and_laplacian_kernels():
    d_rr, d_cc, _ = second_derivatives(LAB_S, mode="constant")
    np.testing.assert_allclose(d_cc, _cvconv(LAB_S, np.array([[1, -2, 1]], np.float32)), atol=1e-6)
    np.testing.assert_allclose(
        d_rr, _cvconv(LAB_S, np.array([[1], [-2], [1]], np.float32)), atol=1e-6
    )
    lab_kernel = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float32)
    np.testing.assert_allclose(
        -laplace(LAB_S, mode="constant"), _cvconv(LAB_S, lab_kernel), atol=1e-6
    )
    assert laplace(LAB_S).dtype == np.float32
    # OpenCV's own Laplacian (ksize=1 is the 4-neighbour kernel, border mirror)
    np.testing.assert_allclose(
        laplace(LAB_S, mode="mirror"), cv2.Laplacian(LAB_S, cv2.CV_32F, ksize=1), atol=1e-6
    )


def test_gradient_direction_conventions():
    down = np.repeat(np.arange(4.0)[:, None], 4, axis=1)  # grows down the rows
    np.testing.assert_allclose(gradient_direction(down), np.pi / 2)
    np.testing.assert_allclose(gradient_direction(down.T), 0.0)
    np.testing.assert_allclose(gradient_direction(-down.T), np.pi)
    assert np.all(gradient_direction(np.ones((3, 3))) == 0.0)


def test_2d_input_unchanged_and_integer_input_is_float64():
    f = RNG.integers(0, 255, size=(5, 5)).astype(np.uint8)
    copy = f.copy()
    d_rows, _ = gradient(f)
    assert d_rows.dtype == np.float64
    assert d_rows.min() < 0 or np.all(np.gradient(f.astype(float), axis=0) >= 0)
    np.testing.assert_array_equal(f, copy)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: gradient(np.zeros((3, 3, 3))), ValueError, r"`image` must be 2-D"),
        (lambda: gradient(np.zeros(5)), ValueError, r"`image` must be 2-D"),
        (lambda: gradient(np.zeros((3, 3)), mode="edge"), ValueError, r"`mode` must be one of"),
        (lambda: gradient(np.zeros((3, 3)), spacing=0), ValueError, r"`spacing` must be > 0"),
        (lambda: gradient(np.zeros((3, 3)), spacing="1"), TypeError, r"`spacing` must be"),
        (lambda: gradient(np.zeros((1, 3))), ValueError, r"at least 2 rows"),
        (lambda: laplace(np.zeros((3, 2))), ValueError, r"at least 3 cols"),
        (lambda: gradient(np.zeros((3, 3)), cval=1.0), ValueError, r"`cval` must be 0"),
    ],
)
def test_2d_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@settings(max_examples=40, deadline=None)
@given(st.floats(-4, -0.5), st.floats(0.5, 4), st.floats(0.2, 3), st.sampled_from([-1.0, 1.0]))
def test_cubic_turning_points_match_numpy_roots(r1, r2, scale, sign):
    # p' = sign*scale*(x - r1)(x - r2): turning points at r1 and r2 exactly.
    dpoly = sign * scale * np.poly1d([r1, r2], r=True)
    poly = dpoly.integ()
    x = np.arange(-5.0, 5.0, 0.01)
    found = extrema(poly(x), x)
    roots, kinds = _analytic_extrema(poly, x[0], x[-1])
    np.testing.assert_allclose(roots, [r1, r2], atol=1e-9)
    assert [e.kind for e in found] == kinds
    # three-point vertex error is about h**2 * |p'''| / (6 |p''|) <= 4e-5 here
    np.testing.assert_allclose([e.x for e in found], roots, atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(0, 3), min_size=1, max_size=40),
    chunk=st.integers(1, 6),
    include_ends=st.booleans(),
)
def test_extrema_streamed_in_chunks_equals_the_brute_force_loop(values, chunk, include_ends):
    # extrema streams its runs of equal samples in chunks; the oracle is a plain loop
    # over the runs (integers make many plateaus, some across chunk edges)
    y = np.array(values, dtype=float)
    runs = []  # [start, stop, value]
    for i, value in enumerate(values):
        if runs and runs[-1][2] == value:
            runs[-1][1] = i
        else:
            runs.append([i, i, value])
    expected = []
    for k in range(1, len(runs) - 1):
        before, (start, stop, value), after = runs[k - 1][2], runs[k], runs[k + 1][2]
        if before < value > after or before > value < after:
            kind = "max" if value > before else "min"
            expected.append((kind, start == stop, (start + stop) / 2, value))
    if include_ends and len(runs) > 1:
        first, last = runs[0], runs[-1]
        head = (
            "max" if first[2] > runs[1][2] else "min",
            False,
            (first[0] + first[1]) / 2,
            first[2],
        )
        tail = ("max" if last[2] > runs[-2][2] else "min", False, (last[0] + last[1]) / 2, last[2])
        expected = [head, *expected, tail]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(calculus_module, "_CHUNK", chunk)
        found = extrema(y, include_ends=include_ends)
    assert [e.kind for e in found] == [kind for kind, _, _, _ in expected]
    for e, (_, single, x, value) in zip(found, expected, strict=True):
        if single:  # the parabola's vertex lies within half a sample of the turning sample
            assert abs(e.x - x) <= 0.5
        else:
            assert e.x == x and e.y == value
