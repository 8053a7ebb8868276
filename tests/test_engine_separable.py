"""The separable rows' dense column pass and in-place row pass against a padded-array loop.

The oracle pads the image with ``numpy.pad`` (its own border rules, not the engine's index
maps) and adds ``weight * shifted image`` tap by tap in float64, with IEEE semantics for
NaN and infinities (``0 * inf`` is NaN), which is the footprint rule's definition.
"""

from __future__ import annotations

import numpy as np
import pytest

from convstack import _methods, correlate
from convstack.filters import gaussian_blur

NUMPY_MODES = {"mirror": "reflect", "reflect": "symmetric", "nearest": "edge", "wrap": "wrap"}


def oracle(image, kernel, pads, mode, cval=0.0, dilation=(1, 1)):
    """Correlation by explicit padding and a sum over the taps, float64."""
    image = np.asarray(image, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    if mode == "constant":
        padded = np.pad(image, pads, mode="constant", constant_values=cval)
    else:
        padded = np.pad(image, pads, mode=NUMPY_MODES[mode])
    kh, kw = kernel.shape
    out_r = padded.shape[0] - dilation[0] * (kh - 1)
    out_c = padded.shape[1] - dilation[1] * (kw - 1)
    out = np.zeros((out_r, out_c))
    with np.errstate(invalid="ignore", over="ignore"):
        for a in range(kh):
            for b in range(kw):
                r, c = a * dilation[0], b * dilation[1]
                out += kernel[a, b] * padded[r : r + out_r, c : c + out_c]
    return out


def same_pads(kshape, dilation=(1, 1)):
    return tuple(
        (d * (k // 2), d * (k - 1 - k // 2)) for k, d in zip(kshape, dilation, strict=True)
    )


def test_oracle_by_hand() -> None:
    # [1, 2, 3] * [1, 0, 1]: zero padding [2, 4, 2]; mirror 3 2 | 1 2 3 | 2 1: [4, 4, 4]
    one = np.array([[1.0, 2.0, 3.0]])
    k = np.array([[1.0, 0.0, 1.0]])
    assert oracle(one, k, ((0, 0), (1, 1)), "constant").tolist() == [[2.0, 4.0, 2.0]]
    assert oracle(one, k, ((0, 0), (1, 1)), "mirror").tolist() == [[4.0, 4.0, 4.0]]
    with np.errstate(invalid="ignore"):
        nan = oracle(np.array([[np.inf, 1.0, 1.0]]), k, ((0, 0), (1, 1)), "constant")
    assert np.isnan(nan[0, 0]) and nan[0, 1] == np.inf and nan[0, 2] == 1.0


@pytest.mark.parametrize("kh", range(1, 18))
def test_dense_column_pass_every_height(kh) -> None:
    """Kernel heights 1 to 17 (passes of 8, 5, 4, 3, 2 and 1 rows), zero weights inside
    the column, two rank terms, row dilation, every image dtype the engine reads and
    'constant' with a cval (rows near the edges take the fill path, the others the dense
    pass), against the loop."""
    col = np.random.default_rng(kh).normal(size=kh)
    col[1::3] = 0.0
    row = np.array([0.5, -1.0, 2.0, 0.25, 1.0])
    kernel = np.outer(col, row) + np.outer(col[::-1] + 0.5, row[::-1])
    for dtype, mode, cval, dilation in (
        (np.float64, "mirror", 0.0, (1, 1)),
        (np.float32, "wrap", 0.0, (2, 1)),
        (np.float64, "constant", 1.5, (1, 1)),
        (np.uint8, "reflect", 0.0, (1, 1)),
        (np.uint16, "nearest", 0.0, (3, 1)),
    ):
        scale = 200 if dtype in (np.uint8, np.uint16) else 1
        image = (np.random.default_rng(100 + kh).random((3 * kh + 4, 13)) * scale).astype(dtype)
        pads = same_pads(kernel.shape, dilation)
        expected = oracle(image, kernel, pads, mode, cval, dilation)
        got = correlate(
            image, kernel, padding=pads, mode=mode, cval=cval, dilation=dilation,
            method="separable",
        )  # fmt: skip
        tol = 2e-5 * max(1.0, np.abs(expected).max()) if got.dtype == np.float32 else 1e-9
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_column_pass_finds_non_finite_under_zero_weights(bad, dtype) -> None:
    """A NaN or an infinity that only zero weights of the column reach still gives
    those outputs their IEEE value (``0 * inf`` is NaN, the footprint rule), as under
    the non-zero weights; every other output stays finite and right."""
    col = np.array([0.0, 1.0, 2.0, 1.0, 0.0])
    row = np.array([1.0, 3.0, 1.0])
    kernel = np.outer(col, row)
    image = np.random.default_rng(7).random((15, 12)).astype(dtype)
    image[7, 5] = bad
    pads = same_pads(kernel.shape)
    expected = oracle(image, kernel, pads, "mirror")
    got = correlate(image, kernel, mode="mirror", method="separable")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(expected))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected))
    assert np.isnan(expected[5, 5]) and np.isnan(got[5, 5])  # reached by a zero weight only
    finite = np.isfinite(expected)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got[finite], expected[finite], rtol=tol, atol=tol)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_gaussian_blur_non_finite_under_underflowed_taps(bad) -> None:
    """A 7-tap Gaussian of sigma 0.2 has end taps that underflow to 0 in float32 (not in
    float64): a non-finite sample three rows from an output is under a zero float32
    weight there, yet found, and the footprint rule (float64 kernel) gives that output
    its IEEE value; every other output stays finite."""
    from convstack import kernels

    image = np.random.default_rng(8).random((20, 20)).astype(np.float32)
    image[10, 10] = bad
    got = gaussian_blur(image, 7, 0.2)
    k1 = kernels.gaussian(7, 0.2, ndim=1)
    assert np.float32(k1[0]) == 0.0 and k1[0] > 0  # the premise: float32 taps underflow
    expected = oracle(image, np.outer(k1, k1), same_pads((7, 7)), "mirror")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    assert not np.isfinite(got[7, 10]) and not np.isfinite(got[10, 13])
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [None, 3])
def test_rows_written_in_place_over_threads(dtype, channels, monkeypatch) -> None:
    """Float outputs are written in place by each thread's rows: split over 1, 2 and 5
    threads the result is the same to the bit, and the input is unchanged."""
    shape = (37, 29) if channels is None else (37, 29, channels)
    image = np.random.default_rng(9).random(shape).astype(dtype)
    before = image.copy()
    monkeypatch.setattr(_methods, "THREAD_MIN_WORK", 0)
    results = []
    for threads in (1, 2, 5):
        monkeypatch.setattr(_methods, "THREADS", threads)
        results.append(gaussian_blur(image, (7, 5), 1.3))
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
    np.testing.assert_array_equal(image, before)
    kernel = np.outer(*(np.asarray(k) for k in _gaussian_pair()))
    for c in range(1 if channels is None else channels):
        plane = image if channels is None else image[..., c]
        got = results[0] if channels is None else results[0][..., c]
        expected = oracle(plane, kernel, same_pads((7, 5)), "mirror")
        tol = 2e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


def _gaussian_pair():
    """The (7, 5) Gaussian of sigma 1.3 by its formula (normalised exp(-x^2 / 2 s^2))."""
    taps = []
    for n in (7, 5):
        x = np.arange(n) - n // 2
        g = np.exp(-(x**2) / (2 * 1.3**2))
        taps.append(g / g.sum())
    return taps
