"""Strided and dilated outputs against a slow, obviously-correct loop (no torch needed).

The oracle pads explicitly (one sample at a time, folding an index back into the image
the way each border mode is defined), then visits every output sample and every tap in
plain Python. Positions come from the definitions in convolve's docstring, not from
the engine's helpers:

- correlate: ``out[i] = sum_j w[j] * X[i * stride + (j - c) * dilation]`` for "same"
  (``c = k // 2``, the anchor), ``X[i * stride + j * dilation - before]`` with
  ``before`` 0 ("valid"), ``dilation * (k - 1)`` ("full") or the given padding;
- convolve: the kernel mirrored about its anchor, ``X[i * stride - (j - c) * dilation]``
  for "same", ``X[i * stride + (k - 1 - j) * dilation - before]`` otherwise ("full"
  is then the textbook ``sum_j w[j] x[i - j]`` of ``numpy.convolve``);

with the output lengths ``ceil(n / stride)`` ("same") and ``floor((n + before + after -
dilation * (k - 1) - 1) / stride) + 1`` otherwise, worked out by hand per case below.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

from convstack import convolve, correlate
from test_compiled_correlate import source_index  # the border fold, one oracle for both

METHODS = ("direct", "separable", "fft", "auto")
MODES = ("constant", "nearest", "reflect", "mirror", "wrap", "mean")


def _pads(padding: Any, ndim: int) -> list[tuple[int, int]] | None:
    """(before, after) per axis for explicit paddings; None for the named ones."""
    if isinstance(padding, str):
        return None
    if isinstance(padding, int):
        return [(padding, padding)] * ndim
    if ndim == 1 and len(padding) == 2 and all(isinstance(p, int) for p in padding):
        return [tuple(padding)]  # a 1-D image's pair is (before, after)
    return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


def _axis_positions(
    n: int, k: int, s: int, d: int, padding: Any, pads: tuple[int, int] | None, flip: bool
) -> list[list[int]]:
    """For each output sample along one axis, the image position read by each tap."""
    c = k // 2
    span = d * (k - 1)
    if padding == "same":
        count = math.ceil(n / s)
        sign = -1 if flip else 1
        return [[i * s + sign * (j - c) * d for j in range(k)] for i in range(count)]
    if padding == "valid":
        before, after = 0, 0
    elif padding == "full":
        before, after = span, span
    else:
        assert pads is not None
        before, after = pads
    count = (n + before + after - span - 1) // s + 1
    taps = [(k - 1 - j) if flip else j for j in range(k)]
    return [[i * s + t * d - before for t in taps] for i in range(count)]


def oracle(
    image: np.ndarray,
    kernel: np.ndarray,
    *,
    flip: bool,
    padding: Any = "same",
    mode: str = "constant",
    cval: float = 0.0,
    stride: int | tuple[int, ...] = 1,
    dilation: int | tuple[int, ...] = 1,
) -> np.ndarray:
    """One channel (no channel axis), float64, by a loop over outputs and taps."""
    x = np.asarray(image, dtype=np.float64)
    w = np.asarray(kernel, dtype=np.float64)
    ndim = x.ndim
    strides = (stride,) * ndim if isinstance(stride, int) else tuple(stride)
    dilations = (dilation,) * ndim if isinstance(dilation, int) else tuple(dilation)
    pads = _pads(padding, ndim)
    fill = float(x.mean()) if mode == "mean" else cval
    positions = [
        _axis_positions(
            x.shape[a],
            w.shape[a],
            strides[a],
            dilations[a],
            padding,
            None if pads is None else pads[a],
            flip,
        )
        for a in range(ndim)
    ]
    out = np.zeros(tuple(len(p) for p in positions))
    for index in itertools.product(*(range(len(p)) for p in positions)):
        total = 0.0
        for tap in itertools.product(*(range(k) for k in w.shape)):
            where = [
                source_index(positions[a][index[a]][tap[a]], x.shape[a], mode) for a in range(ndim)
            ]
            value = fill if None in where else x[tuple(where)]
            total += w[tap] * value
        out[index] = total
    return out


def _check(got: np.ndarray, expected: np.ndarray, image: np.ndarray, kernel: np.ndarray) -> None:
    assert got.shape == expected.shape
    scale = float(np.abs(kernel).sum()) * max(1.0, float(np.abs(image).max()))
    tolerance = (1e-5 if got.dtype == np.float32 else 1e-11) * scale
    np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance)


def _check_every_method(
    image: np.ndarray, kernel: np.ndarray, flip: bool, options: dict[str, Any]
) -> None:
    """convolve (``flip``) or correlate by every method against the oracle."""
    expected = oracle(image, kernel, flip=flip, **options)
    run = convolve if flip else correlate
    for method in METHODS:
        _check(run(image, kernel, method=method, **options), expected, image, kernel)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------------------------
# the oracle itself, on cases worked out by hand
# --------------------------------------------------------------------------------------------


def test_fold_matches_numpy_pad_names() -> None:
    # reflect = numpy 'symmetric', mirror = numpy 'reflect', nearest = 'edge', wrap = 'wrap';
    # pads longer than the image fold again
    x = np.arange(3)
    for ours, numpys in (
        ("reflect", "symmetric"),
        ("mirror", "reflect"),
        ("nearest", "edge"),
        ("wrap", "wrap"),
    ):
        folded = [x[source_index(p, 3, ours)] for p in range(-7, 10)]
        assert folded == np.pad(x, 7, mode=numpys)[:17].tolist(), ours


def test_oracle_on_hand_values() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # the lab's example, and stride 2 / dilation 2 by hand
    assert oracle([1, 2, 3], [1, 0, 1], flip=False).tolist() == [2.0, 4.0, 2.0]
    assert oracle(x, [1, 0, -1], flip=False, stride=2).tolist() == [-2.0, -2.0, 4.0]
    assert oracle(x, [1, 1], flip=False, dilation=2, padding="valid").tolist() == [4.0, 6.0, 8.0]
    # convolve 'full' is numpy.convolve, with stride: every second sample of it
    w = np.array([1.0, -2.0, 0.5])
    assert oracle(x, w, flip=True, padding="full").tolist() == np.convolve(x, w).tolist()
    assert (
        oracle(x, w, flip=True, padding="full", stride=2).tolist()
        == np.convolve(x, w)[::2].tolist()
    )
    # explicit (before, after) with wrap: [5 | 1 2 3 4 5 | 1 2], taps [1, 10]
    wrapped = oracle(x, [1, 10], flip=False, padding=(1, 2), mode="wrap", stride=3)
    assert wrapped.tolist() == [5 + 10 * 1, 3 + 10 * 4, 1 + 10 * 2]


# --------------------------------------------------------------------------------------------
# the engine against the oracle
# --------------------------------------------------------------------------------------------

STRIDE_DILATION = [((2, 1), 1), (1, (2, 3)), ((2, 3), (3, 2)), (3, 2)]
PADDINGS_2D = ["same", "valid", "full", 2, (1, 3), ((0, 3), (4, 1))]


@pytest.mark.parametrize("flip", [False, True], ids=["correlate", "convolve"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding", PADDINGS_2D, ids=str)
@pytest.mark.parametrize(("stride", "dilation"), STRIDE_DILATION, ids=str)
def test_2d_every_mode_padding_stride_dilation(flip, mode, padding, stride, dilation) -> None:
    image = rng(1).random((13, 17))  # odd, unequal sides
    kernel = rng(2).normal(size=(3, 4))  # one odd and one even side: the anchor matters
    options = {"padding": padding, "mode": mode, "stride": stride, "dilation": dilation}
    _check_every_method(image, kernel, flip, options)


@pytest.mark.parametrize("flip", [False, True], ids=["correlate", "convolve"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding", ["same", "valid", "full", 3, (0, 5), (4, 1)], ids=str)
@pytest.mark.parametrize(("stride", "dilation"), [(2, 1), (1, 3), (3, 2), (4, 4)], ids=str)
def test_1d(flip, mode, padding, stride, dilation) -> None:
    image = rng(3).normal(size=23)
    kernel = rng(4).normal(size=4)
    options = {"padding": padding, "mode": mode, "stride": stride, "dilation": dilation}
    _check_every_method(image, kernel, flip, options)


@pytest.mark.parametrize("flip", [False, True], ids=["correlate", "convolve"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channel_axis", [-1, 0])
def test_colour_channels_each_alone(flip, mode, channel_axis) -> None:
    planes = [rng(5 + c).random((9, 11)) * (c + 1) for c in range(3)]  # different means
    image = np.stack(planes, axis=channel_axis)
    kernel = rng(8).normal(size=(4, 3))
    options: dict[str, Any] = {
        "padding": ((2, 1), (0, 3)),
        "mode": mode,
        "stride": (2, 3),
        "dilation": (2, 1),
    }
    expected = np.stack([oracle(p, kernel, flip=flip, **options) for p in planes], channel_axis)
    run = convolve if flip else correlate
    for method in METHODS:
        got = run(image, kernel, channel_axis=channel_axis, method=method, **options)
        _check(got, expected, image, kernel)


@pytest.mark.parametrize("flip", [False, True], ids=["correlate", "convolve"])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.uint16, np.int16])
def test_dtypes_and_cval(flip, dtype) -> None:
    image = rng(9).integers(0, 200, (12, 10)).astype(dtype)
    kernel = rng(10).normal(size=(3, 3))
    options: dict[str, Any] = {"mode": "constant", "cval": 7.5, "stride": (3, 2), "dilation": 2}
    expected = oracle(image, kernel, flip=flip, **options)
    run = convolve if flip else correlate
    for method in METHODS:
        got = run(image, kernel, method=method, **options)
        assert got.dtype == (np.float32 if dtype == np.float32 else np.float64)
        _check(got, expected, image.astype(np.float64), kernel)


@pytest.mark.parametrize("flip", [False, True], ids=["correlate", "convolve"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("shape", "kshape", "padding", "stride", "dilation"),
    [
        ((1, 9), (1, 3), "same", (1, 2), (1, 3)),  # one row
        ((7, 1), (3, 1), "full", (2, 1), (2, 1)),  # one column
        ((3, 4), (5, 5), "full", 2, 1),  # kernel larger than the image
        ((3, 2), (2, 2), (7, 6), (3, 2), (2, 3)),  # padding longer than the image: folds again
        ((5, 6), (2, 3), "same", (5, 6), 1),  # stride as long as the image: one sample
        ((1, 1), (3, 3), "same", 1, 2),  # one sample
    ],
    ids=str,
)
def test_odd_shapes(flip, mode, shape, kshape, padding, stride, dilation) -> None:
    image = rng(11).random(shape)
    kernel = rng(12).normal(size=kshape)
    options: dict[str, Any] = {
        "padding": padding,
        "mode": mode,
        "stride": stride,
        "dilation": dilation,
    }
    _check_every_method(image, kernel, flip, options)


@pytest.mark.parametrize("flip", [False, True], ids=["correlate", "convolve"])
@pytest.mark.parametrize("mode", ["constant", "reflect", "mirror", "wrap"])
@pytest.mark.parametrize("padding", ["same", "valid", ((1, 0), (2, 2), (0, 3))], ids=str)
def test_3d(flip, mode, padding) -> None:
    image = rng(13).random((6, 7, 5))
    kernel = rng(14).normal(size=(2, 3, 2))
    options: dict[str, Any] = {
        "padding": padding,
        "mode": mode,
        "stride": (2, 1, 3),
        "dilation": (1, 2, 2),
    }
    expected = oracle(image, kernel, flip=flip, **options)
    run = convolve if flip else correlate
    for method in ("direct", "fft", "auto"):
        _check(run(image, kernel, method=method, **options), expected, image, kernel)
