"""The compiled correlation kernels against a slow, obviously-correct loop.

The oracle below walks every output and every tap in Python and finds each padded
sample by the border rule written out here (not the library's index maps), so it
covers what no other library shares with us: strides and dilations in every mode,
'mean', pads wider than the image, every input dtype and layout.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from convstack import _methods, convolve, correlate

METHODS = ("direct", "separable", "auto")
MODES = ("constant", "nearest", "reflect", "mirror", "wrap", "mean")


def source_index(p: int, n: int, mode: str) -> int | None:
    """Image index of padded position ``p`` (0 = first image sample); None: the fill."""
    if 0 <= p < n:
        return p
    if mode in ("constant", "mean"):
        return None
    if mode == "nearest":
        return min(max(p, 0), n - 1)
    if mode == "wrap":
        return p % n
    if mode == "reflect":  # abc|cba: period 2n
        q = p % (2 * n)
        return q if q < n else 2 * n - 1 - q
    if n == 1:  # mirror: abc|ba, period 2n - 2
        return 0
    q = p % (2 * n - 2)
    return q if q < n else 2 * n - 2 - q


def oracle(image, kernel, pads, mode, cval, stride, dilation):
    """Correlation of a 2-D image by loops, in float64 (see the module docstring)."""
    image = np.asarray(image, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    fill = image.mean() if mode == "mean" else cval
    (n_r, n_c), (kh, kw) = image.shape, kernel.shape
    (rb, ra), (cb, ca) = pads
    out_r = (n_r + rb + ra - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_c = (n_c + cb + ca - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((out_r, out_c))
    for i, j in itertools.product(range(out_r), range(out_c)):
        total = 0.0
        for a, b in itertools.product(range(kh), range(kw)):
            r = source_index(i * stride[0] + a * dilation[0] - rb, n_r, mode)
            c = source_index(j * stride[1] + b * dilation[1] - cb, n_c, mode)
            value = fill if r is None or c is None else image[r, c]
            total += kernel[a, b] * value
        out[i, j] = total
    return out


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_oracle_by_hand() -> None:
    # [1, 2, 3] * [1, 0, 1] with zero padding: [2, 4, 2]; 'wrap': [2+3, 1+3, 2+1]
    one = np.array([[1.0, 2.0, 3.0]])
    k = np.array([[1.0, 0.0, 1.0]])
    assert oracle(one, k, ((0, 0), (1, 1)), "constant", 0.0, (1, 1), (1, 1)).tolist() == [
        [2.0, 4.0, 2.0]
    ]
    assert oracle(one, k, ((0, 0), (1, 1)), "wrap", 0.0, (1, 1), (1, 1)).tolist() == [
        [5.0, 4.0, 3.0]
    ]
    # mirror of [1, 2, 3] with 2 on each side: 3 2 | 1 2 3 | 2 1
    assert [source_index(p, 3, "mirror") for p in range(-2, 5)] == [2, 1, 0, 1, 2, 1, 0]
    assert [source_index(p, 3, "reflect") for p in range(-2, 5)] == [1, 0, 0, 1, 2, 2, 1]


SHAPES = [(1, 1), (1, 7), (7, 1), (5, 3), (13, 17)]
KERNELS = [(1, 1), (3, 3), (2, 5), (4, 1), (6, 7)]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kshape", KERNELS)
def test_same_padding_every_mode_and_shape(method, mode, shape, kshape) -> None:
    """'same' padding, including kernels much larger than the image (1-pixel images)."""
    image = rng(1).random(shape)
    kernel = rng(2).normal(size=kshape)
    cval = 1.25 if mode == "constant" else 0.0
    pads = tuple((k // 2, k - 1 - k // 2) for k in kshape)
    expected = oracle(image, kernel, pads, mode, cval, (1, 1), (1, 1))
    got = correlate(image, kernel, mode=mode, cval=cval, method=method)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


STRIDE_DILATION = [((2, 1), (1, 1)), ((1, 3), (2, 1)), ((3, 2), (2, 3)), ((1, 1), (4, 2))]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("stride", "dilation"), STRIDE_DILATION)
@pytest.mark.parametrize("pads", [((0, 0), (0, 0)), ((2, 1), (3, 4)), ((9, 0), (1, 11))])
def test_stride_dilation_and_padding_every_mode(method, mode, stride, dilation, pads) -> None:
    """Always-present oracle for strided and dilated outputs (pads wider than the image too)."""
    image = rng(3).random((11, 9))
    kernel = rng(4).normal(size=(3, 3))
    expected = oracle(image, kernel, pads, mode, 0.0, stride, dilation)
    got = correlate(
        image, kernel, padding=pads, mode=mode, stride=stride, dilation=dilation, method=method
    )
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


DTYPES = [
    np.bool_,
    np.uint8,
    np.int8,
    np.uint16,
    np.int16,
    np.uint32,
    np.int32,
    np.int64,
    np.float16,
    np.float32,
    np.float64,
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype(method, dtype) -> None:
    if dtype is np.bool_:
        image = rng(5).random((9, 12)) > 0.5
    elif np.dtype(dtype).kind in "ui":
        info = np.iinfo(dtype)
        image = rng(5).integers(max(info.min, -100), min(info.max, 100), (9, 12)).astype(dtype)
    else:
        image = rng(5).random((9, 12)).astype(dtype)
    kernel = rng(6).normal(size=(3, 5))
    expected = oracle(image, kernel, ((1, 1), (2, 2)), "mirror", 0.0, (1, 1), (1, 1))
    got = correlate(image, kernel, mode="mirror", method=method)
    wanted = np.float32 if dtype in (np.float16, np.float32) else np.float64
    assert got.dtype == wanted
    tol = 1e-5 * max(1.0, np.abs(expected).max()) if wanted == np.float32 else 1e-10
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


def _views():
    base = rng(7).random((24, 30, 3))
    return {
        "steps": base[::2, ::3, 0],
        "negative": base[::-1, ::-2, 1],
        "transpose": base[:, :, 2].T,
        "fortran": np.asfortranarray(base[..., 0]),
        "big-endian": base[..., 1].astype(">f8"),
        "float32 steps": base[1::3, ::-1, 2].astype(np.float32)[:, ::2],
    }


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(_views()))
def test_non_contiguous_views(method, name) -> None:
    image = _views()[name]
    before = image.copy()
    kernel = rng(8).normal(size=(4, 3))
    expected = oracle(image, kernel, ((2, 1), (1, 1)), "reflect", 0.0, (1, 1), (1, 1))
    got = correlate(image, kernel, mode="reflect", method=method)
    tol = 1e-5 if image.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize("layout", ["contiguous", "view"])
def test_channels_never_mix(method, mode, axis, layout) -> None:
    """Channel-last (interleaved in the kernels) and channel-first, per-channel oracle."""
    base = rng(9).random((16, 14, 3))
    image = base if layout == "contiguous" else base[::-1, 1::2]
    if axis == 0:
        image = np.ascontiguousarray(np.moveaxis(image, -1, 0))
    kernel = rng(10).normal(size=(3, 2))
    got = correlate(
        image, kernel, mode=mode, stride=(1, 2), dilation=(2, 1), channel_axis=axis, method=method
    )
    for c in range(3):
        plane = np.take(image, c, axis=axis)
        expected = oracle(plane, kernel, ((2, 2), (1, 0)), mode, 0.0, (1, 2), (2, 1))
        np.testing.assert_allclose(np.take(got, c, axis=axis), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_1d_signals_and_convolve(method) -> None:
    signal = rng(11).random(23)
    kernel = rng(12).normal(size=6)
    for mode in MODES:
        expected = oracle(signal[None], kernel[None], ((0, 0), (3, 2)), mode, 0.0, (1, 1), (1, 1))
        got = correlate(signal, kernel, mode=mode, method=method)
        np.testing.assert_allclose(got, expected[0], rtol=1e-12, atol=1e-12)
        flipped = oracle(
            signal[None], kernel[None, ::-1], ((0, 0), (2, 3)), mode, 0.0, (1, 1), (1, 1)
        )
        got = convolve(signal, kernel, mode=mode, method=method)
        np.testing.assert_allclose(got, flipped[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("threads", [2, 5])
def test_rows_split_over_threads(monkeypatch, threads) -> None:
    monkeypatch.setattr(_methods, "THREADS", threads)
    monkeypatch.setattr(_methods, "THREAD_MIN_WORK", 0)
    image = rng(13).random((37, 29, 2))
    kernel = rng(14).normal(size=(5, 4))
    for method in ("direct", "separable"):
        got = correlate(image, kernel, mode="wrap", channel_axis=-1, method=method)
        for c in range(2):
            expected = oracle(image[..., c], kernel, ((2, 2), (2, 1)), "wrap", 0.0, (1, 1), (1, 1))
            np.testing.assert_allclose(got[..., c], expected, rtol=1e-12, atol=1e-12)


def test_float32_matches_the_float64_oracle() -> None:
    image = rng(15).random((64, 70)).astype(np.float32)
    kernel = rng(16).normal(size=(7, 7)).astype(np.float32)
    expected = oracle(image, kernel, ((3, 3), (3, 3)), "nearest", 0.0, (1, 1), (1, 1))
    for method in ("direct", "separable"):
        got = correlate(image, kernel, mode="nearest", method=method)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)


def test_kernel_runs_in_a_forked_child() -> None:
    """numba kernels (and their row threads) keep working in a child forked after a run."""
    from convstack.stack import forked

    if not forked.can_fork():
        pytest.skip("no fork here")
    image = rng(18).random((300, 200)).astype(np.float32)
    kernel = rng(19).normal(size=(5, 5)).astype(np.float32)
    old = _methods.THREAD_MIN_WORK
    _methods.THREAD_MIN_WORK = 0
    try:
        parent = correlate(image, kernel, mode="mirror", method="direct")
        assert forked.can_fork()

        def child(inbox: forked.Channel, outbox: forked.Channel) -> None:
            outbox.send(
                (
                    "ok",
                    (
                        correlate(image, kernel, mode="mirror", method="direct"),
                        correlate(image, kernel, mode="mirror", method="separable"),
                    ),
                )
            )

        with forked.ForkedWorker(child) as worker:
            direct, separable = worker.receive()
    finally:
        _methods.THREAD_MIN_WORK = old
    np.testing.assert_array_equal(direct, parent)
    np.testing.assert_allclose(separable, parent, rtol=1e-4, atol=1e-4)
    expected = oracle(image[:12], kernel, ((2, 2), (2, 2)), "mirror", 0.0, (1, 1), (1, 1))
    np.testing.assert_allclose(direct[:10], expected[:10], rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("method", ["direct", "separable"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_image_under_zero_sum_kernel_is_exactly_zero(method, dtype) -> None:
    """Taps are added in order, so a Laplacian of a flat image is 0, not a rounding residue
    (by hand: -a - a + 4a - a - a = 0 with every partial sum exact)."""
    flat = np.full((40, 37), 7 / 255, dtype=dtype)
    laplace = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], dtype=dtype)
    assert not correlate(flat, laplace, mode="mirror", method="direct").any()
    sobel = np.outer([1, 2, 1], [-1, 0, 1]).astype(dtype)
    assert not correlate(flat, sobel, mode="nearest", method=method).any()


@pytest.mark.parametrize(
    ("mode", "cval"), [(m, 0.0) for m in MODES] + [("constant", 3.0), ("constant", 1.25)]
)
def test_uint8_integer_taps_separable(mode, cval) -> None:
    """uint8 images under integer rank-1 kernels (the column pass in uint16 lanes when
    the fill is a uint8 value too), every mode, against the loop."""
    image = rng(20).integers(0, 256, (19, 23, 3)).astype(np.uint8)
    kernel = np.outer([1, 4, 6, 4, 1], [1, 2, 1])
    got = correlate(image, kernel, mode=mode, cval=cval, channel_axis=-1, method="separable")
    for c in range(3):
        expected = oracle(image[..., c], kernel, ((2, 2), (1, 1)), mode, cval, (1, 1), (1, 1))
        np.testing.assert_allclose(got[..., c], expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("method", ["direct", "separable"])
@pytest.mark.parametrize("taps", range(0, 16))
def test_every_tap_count_and_zero_pattern(method, taps) -> None:
    """0 to 15 non-zero taps (passes of 8, 4, 2 and 1 taps; the first pass of a row
    writes it from 0 unless fill rows or column strides came first), zero rows and
    columns, fill rows ('constant' with a cval), a column stride, float32 and float64."""
    kernel = np.zeros(15)
    kernel[:taps] = rng(20 + taps).normal(size=taps)
    kernel = kernel.reshape(3, 5)[:, ::-1]  # zeros on the left, then whole zero rows
    pads = ((2, 2), (2, 2))
    for dtype, mode, cval, stride in (
        (np.float64, "constant", 0.75, (1, 1)),
        (np.float64, "mirror", 0.0, (1, 1)),
        (np.float64, "constant", -2.0, (2, 3)),
        (np.float32, "wrap", 0.0, (1, 1)),
    ):
        image = rng(5).random((7, 6)).astype(dtype)
        expected = oracle(image, kernel, pads, mode, cval, stride, (1, 1))
        got = correlate(
            image, kernel, padding=pads, mode=mode, cval=cval, stride=stride, method=method
        )
        assert got.dtype == dtype
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


_LITERAL_SIGNATURES = """
import numpy as np
from numba.core import types
from convstack import _k_correlate, correlate
image = np.arange(64.0).reshape(8, 8)
correlate(image, np.arange(9.0).reshape(3, 3), mode="nearest", method="direct")
correlate(image, np.outer([1.0, 2.0, 1.0], [1.0, 0.0, -1.0]), mode="wrap", method="separable")
for name in dir(_k_correlate):
    function = getattr(_k_correlate, name)
    for signature in getattr(function, "signatures", ()):
        if any(isinstance(arg, types.Literal) for arg in signature):
            print(name, signature)
"""


@pytest.mark.slow
def test_no_kernel_compiles_a_literal_argument_variant(tmp_path) -> None:
    """On a cold cache (as on a fresh install), no correlation kernel is compiled for a
    literal argument type (``Literal[int](0)``): each such signature is one more compile
    of that kernel and of every kernel below it (seconds on a first run)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", _LITERAL_SIGNATURES],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert result.stdout == ""


@pytest.mark.parametrize("kw", range(1, 22))
def test_one_channel_row_passes_every_kernel_width(kw) -> None:
    """One-channel images with consecutive column taps run one pass per kernel row
    (8, 5, 4, 3, 2 or 1 taps a pass) or, for 3x3, one pass for the whole kernel: every
    width from 1 to 21 over 1 to 4 kernel rows, zero weights included, a zero kernel row
    on the fill ('constant'), odd image sizes, 1-pixel images, every kernel dtype."""
    for kh in (1, 2, 3, 4):
        kernel = rng(30 + kw + kh).normal(size=(kh, kw))
        kernel[:, ::3] = 0  # zero weights inside the passes
        for shape, mode, cval, dtype in (
            ((9, 2 * kw + 5), "mirror", 0.0, np.float64),
            ((7, kw + 1), "nearest", 0.0, np.float32),
            ((5, 3 * kw), "constant", 1.5, np.float64),
            ((1, 1), "reflect", 0.0, np.float64),
            ((6, kw + 8), "wrap", 0.0, np.uint8),
            ((4, kw + 3), "mean", 0.0, np.int16),
        ):
            image = (rng(kw).random(shape) * 50).astype(dtype)
            pads = ((kh // 2, kh - 1 - kh // 2), (kw // 2, kw - 1 - kw // 2))
            expected = oracle(image, kernel, pads, mode, cval, (1, 1), (1, 1))
            got = correlate(image, kernel, mode=mode, cval=cval, method="direct")
            tol = 2e-5 * max(1.0, np.abs(expected).max()) if got.dtype == np.float32 else 1e-10
            np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
    top_zero = np.vstack([np.zeros((1, kw)), rng(kw).normal(size=(2, kw))])
    image = rng(3).random((6, kw + 4))
    pads = ((1, 1), (kw // 2, kw - 1 - kw // 2))
    expected = oracle(image, top_zero, pads, "constant", 2.0, (1, 1), (1, 1))
    got = correlate(image, top_zero, mode="constant", cval=2.0, method="direct")
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kshape", [(3, 3), (3, 11), (2, 5)])
def test_one_channel_row_passes_non_finite_footprints(kshape) -> None:
    """The one-channel passes add zero weights too; a NaN or an infinity under any tap
    of an output's footprint (zero weights included) still gives that output its IEEE
    value by the footprint rule, and every other output stays finite."""
    kernel = rng(40).normal(size=kshape)
    kernel[0, 0] = 0.0
    for bad in (np.nan, np.inf, -np.inf):
        image = rng(41).random((12, 17)).astype(np.float32)
        image[5, 8] = bad
        got = correlate(image, kernel, mode="mirror", method="direct")
        pads = ((kshape[0] // 2, kshape[0] - 1 - kshape[0] // 2),) + (
            (kshape[1] // 2, kshape[1] - 1 - kshape[1] // 2),
        )
        with np.errstate(invalid="ignore"):
            expected = oracle(image, kernel, pads, "mirror", 0.0, (1, 1), (1, 1))
        footprint = ~np.isfinite(expected) | np.isnan(expected)
        # zero-weight taps on the bad sample: 0 * inf is NaN in the footprint rule
        assert np.isfinite(got[~footprint]).all()
        assert (~np.isfinite(got[footprint])).all()
        finite = np.isfinite(expected)
        np.testing.assert_allclose(got[finite], expected[finite], rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("kw", range(1, 22))
def test_separable_one_channel_row_pass_every_width(kw) -> None:
    """The separable row pass of a one-channel image is one pass per term over its
    padded row buffer (8, 5, 4, 3, 2 or 1 taps a pass): every width 1 to 21, zero
    weights, two rank terms, float32 and float64, against the loop."""
    row = rng(50 + kw).normal(size=kw)
    row[1::4] = 0
    kernel = np.outer([1.0, -2.0, 0.5], row) + np.outer([0.0, 1.0, 3.0], row[::-1])
    for dtype, mode in ((np.float64, "reflect"), (np.float32, "constant"), (np.float64, "wrap")):
        image = rng(kw).random((8, kw + 6)).astype(dtype)
        pads = ((1, 1), (kw // 2, kw - 1 - kw // 2))
        expected = oracle(image, kernel, pads, mode, 0.0, (1, 1), (1, 1))
        got = correlate(image, kernel, mode=mode, method="separable")
        tol = 2e-5 * max(1.0, np.abs(expected).max()) if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("kshape", [(3, 3), (5, 5), (4, 6), (11, 11), (1, 7)])
@pytest.mark.parametrize("threads", [1, 3])
def test_border_columns_add_in_the_interior_order(kshape, threads, monkeypatch) -> None:
    """Under 'wrap', rolling the image along its columns rolls the output exactly (every
    bit): an output that is a border column in one call is an interior column in the
    other, so both paths add the same products in the same order (one channel, float32,
    rows split over threads)."""
    monkeypatch.setattr(_methods, "THREADS", threads)
    monkeypatch.setattr(_methods, "THREAD_MIN_WORK", 0)
    image = rng(80).normal(size=(19, 23)).astype(np.float32)
    kernel = rng(81).normal(size=kshape).astype(np.float32)
    base = correlate(image, kernel, mode="wrap", method="direct")
    for shift in (1, kshape[1] // 2, 7):
        rolled = correlate(np.roll(image, shift, axis=1), kernel, mode="wrap", method="direct")
        np.testing.assert_array_equal(rolled, np.roll(base, shift, axis=1))


@pytest.mark.parametrize(
    ("stride", "dilation"), [((1, 1), (1, 1)), ((2, 1), (1, 1)), ((1, 1), (3, 1)), ((3, 1), (2, 1))]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_fast_and_fill_rows_mixed_with_row_steps(stride, dilation, dtype, monkeypatch) -> None:
    """'constant' with a non-zero kernel row reaching the fill: the rows near the top
    and bottom take the tap lists, the others the one-channel passes, whose border
    columns come after the rows; row strides and dilations, rows over threads."""
    monkeypatch.setattr(_methods, "THREADS", 3)
    monkeypatch.setattr(_methods, "THREAD_MIN_WORK", 0)
    image = (rng(82).random((17, 14)) * 200).astype(dtype)
    for kshape in ((3, 3), (5, 4), (2, 7)):
        kernel = rng(83).normal(size=kshape)
        pads = tuple(
            (d * (k // 2), d * (k - 1) - d * (k // 2))
            for k, d in zip(kshape, dilation, strict=True)
        )
        expected = oracle(image, kernel, pads, "constant", 1.5, stride, dilation)
        got = correlate(
            image, kernel, mode="constant", cval=1.5, stride=stride, dilation=dilation,
            method="direct",
        )  # fmt: skip
        tol = 2e-5 * max(1.0, np.abs(expected).max()) if got.dtype == np.float32 else 1e-10
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("kshape", [(3, 3), (5, 4)])
def test_one_channel_rows_overflow_is_no_footprint_hit(kshape) -> None:
    """The one-channel passes test their outputs: a float32 sum that overflows to inf
    from finite samples is a false alarm for the footprint rule, which then finds no
    non-finite sample and leaves the IEEE sums as they are (+inf, -inf where the
    kernel is negative), with no warning; a NaN in the same image still wins its
    footprint."""
    image = np.full((9, 12), 3e38, dtype=np.float32)
    kernel = np.ones(kshape, dtype=np.float32)
    got = correlate(image, kernel, mode="nearest", method="direct")
    assert np.isposinf(got).all()
    assert np.isneginf(correlate(image, -kernel, mode="nearest", method="direct")).all()
    image[4, 6] = np.nan
    got = correlate(image, kernel, mode="nearest", method="direct")
    hit = np.zeros(got.shape, dtype=bool)
    kh, kw = kshape
    hit[4 - (kh - 1 - kh // 2) : 4 + kh // 2 + 1, 6 - (kw - 1 - kw // 2) : 6 + kw // 2 + 1] = True
    assert np.isnan(got[hit]).all()
    assert np.isposinf(got[~hit]).all()
