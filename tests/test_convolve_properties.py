"""Hypothesis properties of correlate / convolve (small arrays, modest example counts)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from convstack import convolve, correlate

METHODS = ("direct", "separable", "fft", "auto")
INDEX_MODES = ("nearest", "reflect", "mirror", "wrap")
FAST = settings(max_examples=40, deadline=None)

values = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=64)


def images(min_side: int = 1, max_side: int = 9, ndim: int = 2) -> st.SearchStrategy:
    return hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=min_side, max_side=max_side),
        elements=values,
    )


def kernels(max_side: int = 5, ndim: int = 2) -> st.SearchStrategy:
    return hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=1, max_side=max_side),
        elements=values,
    )


def close(a: np.ndarray, b: np.ndarray, scale: float = 1.0) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * max(scale, 1.0))


@FAST
@given(
    data=st.data(),
    mode=st.sampled_from(("constant",) + INDEX_MODES + ("mean",)),
    method=st.sampled_from(METHODS),
    a=st.floats(-3, 3),
    b=st.floats(-3, 3),
)
def test_linearity(data, mode, method, a, b) -> None:
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=8))
    x = data.draw(hnp.arrays(np.float64, shape, elements=values))
    y = data.draw(hnp.arrays(np.float64, shape, elements=values))
    k = data.draw(kernels())
    lhs = correlate(a * x + b * y, k, mode=mode, method=method)
    rhs = a * correlate(x, k, mode=mode, method=method) + b * correlate(
        y, k, mode=mode, method=method
    )
    scale = float(np.abs(k).sum() * (np.abs(x).max() + np.abs(y).max()) * 6)
    close(lhs, rhs, scale)


@FAST
@given(k=kernels(max_side=6), method=st.sampled_from(METHODS), dilation=st.integers(1, 2))
def test_impulse_response(k, method, dilation) -> None:
    """convolve(delta) places the kernel, anchor k//2 on the impulse; correlate flips it."""
    kh, kw = k.shape
    n = 2 * dilation * max(kh, kw) + 3
    c = n // 2
    delta = np.zeros((n, n))
    delta[c, c] = 1.0
    got = convolve(delta, k, method=method, dilation=dilation)
    want = np.zeros((n, n))
    rows = c - dilation * (kh // 2) + dilation * np.arange(kh)
    cols = c - dilation * (kw // 2) + dilation * np.arange(kw)
    want[np.ix_(rows, cols)] = k
    close(got, want, float(np.abs(k).max()))
    got = correlate(delta, k, method=method, dilation=dilation)
    want = np.zeros((n, n))
    rows = c - dilation * (kh - 1 - kh // 2) + dilation * np.arange(kh)
    cols = c - dilation * (kw - 1 - kw // 2) + dilation * np.arange(kw)
    want[np.ix_(rows, cols)] = k[::-1, ::-1]
    close(got, want, float(np.abs(k).max()))


@FAST
@given(
    x=images(),
    col=hnp.arrays(np.float64, st.integers(1, 5), elements=values),
    row=hnp.arrays(np.float64, st.integers(1, 5), elements=values),
    mode=st.sampled_from(("constant",) + INDEX_MODES),
    method=st.sampled_from(METHODS),
)
def test_separable_equals_full_2d(x, col, row, mode, method) -> None:
    """An outer-product kernel equals a pass along rows then one along columns."""
    two_d = correlate(x, np.outer(col, row), mode=mode, method=method)
    passes = correlate(correlate(x, col[:, None], mode=mode), row[None, :], mode=mode)
    scale = float(np.abs(col).sum() * np.abs(row).sum() * np.abs(x).max())
    close(two_d, passes, scale)
    close(correlate(x, np.outer(col, row), mode=mode, method="separable"), two_d, scale)


@FAST
@given(
    x=images(),
    k=kernels(),
    shift=st.tuples(st.integers(-10, 10), st.integers(-10, 10)),
    method=st.sampled_from(METHODS),
    flip=st.booleans(),
)
def test_shift_equivariance_with_wrap(x, k, shift, method, flip) -> None:
    func = convolve if flip else correlate
    lhs = func(np.roll(x, shift, axis=(0, 1)), k, mode="wrap", method=method)
    rhs = np.roll(func(x, k, mode="wrap", method=method), shift, axis=(0, 1))
    close(lhs, rhs, float(np.abs(k).sum() * np.abs(x).max()))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 12),
    k=st.integers(1, 6),
    before=st.integers(0, 6),
    after=st.integers(0, 6),
    stride=st.integers(1, 4),
    dilation=st.integers(1, 3),
    method=st.sampled_from(METHODS),
)
def test_output_shape_formula(n, k, before, after, stride, dilation, method) -> None:
    span = dilation * (k - 1) + 1
    kwargs = {"stride": stride, "dilation": dilation, "method": method}
    if n + before + after < span:
        with pytest.raises(ValueError, match="`kernel` must fit inside the padded image"):
            correlate(np.ones(n), np.ones(k), padding=[(before, after)], **kwargs)
    else:
        out = correlate(np.ones(n), np.ones(k), padding=[(before, after)], **kwargs)
        assert out.shape == ((n + before + after - dilation * (k - 1) - 1) // stride + 1,)
    assert correlate(np.ones((n, 3)), np.ones((k, 1)), **kwargs).shape == (
        -(-n // stride),
        -(-3 // stride),
    )
    full = correlate(np.ones(n), np.ones(k), padding="full", **kwargs)
    assert full.shape == ((n + span - 2) // stride + 1,)


@FAST
@given(
    base=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=6),
        elements=st.floats(0, 200),
    ),
    dtype=st.sampled_from([np.float32, np.float64, np.uint8, np.int32, np.bool_]),
    k=kernels(max_side=4),
    mode=st.sampled_from(("constant",) + INDEX_MODES + ("mean",)),
    method=st.sampled_from(METHODS),
    flip=st.booleans(),
)
def test_input_unchanged(base, dtype, k, mode, method, flip) -> None:
    x = base.astype(dtype)
    x_before, k_before = x.copy(), k.copy()
    x.setflags(write=False)
    k.setflags(write=False)
    func = convolve if flip else correlate
    out = func(x, k, mode=mode, method=method, channel_axis=-1)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(k, k_before)
    assert out.shape == x.shape
    assert out.dtype == (np.float32 if x.dtype == np.float32 else np.float64)


@FAST
@given(
    x=images(max_side=10),
    k=kernels(max_side=5),
    mode=st.sampled_from(("constant",) + INDEX_MODES + ("mean",)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    flip=st.booleans(),
)
def test_methods_agree(x, k, mode, stride, dilation, flip) -> None:
    func = convolve if flip else correlate
    kwargs = {"mode": mode, "stride": stride, "dilation": dilation}
    reference = func(x, k, method="direct", **kwargs)
    scale = float(np.abs(k).sum() * max(np.abs(x).max(), 1.0))
    for method in METHODS[1:]:
        close(func(x, k, method=method, **kwargs), reference, scale)
