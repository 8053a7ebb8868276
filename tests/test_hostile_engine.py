"""Hostile input to the engine, the filters and calculus (issue 19).

One rule for NaN and infinities (README, "Non-finite values"): an output whose footprint
(every tap of the kernel, zero weights included) holds a non-finite sample is what direct
IEEE evaluation gives there, for every method and filter; every other output is finite
and equals the finite result. Oracles: a slow loop over ``numpy.pad`` for the non-finite
pattern, SciPy's ``ndimage.correlate`` for the finite values. Sizes that cannot fit are
refused before anything is allocated. A property test feeds every public function odd
shapes, dtypes, strides and values: a result or a ValueError/TypeError, and the input
left as it was.
"""

from __future__ import annotations

import contextlib

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convstack
from convstack import edges, filters, kernels
from convstack.calculus import derivative, extrema, gradient, laplace, second_derivatives
from convstack.limits import LimitError, memory_limit

NUMPY_PAD = {
    "constant": "constant",
    "nearest": "edge",
    "reflect": "symmetric",
    "mirror": "reflect",
    "wrap": "wrap",
}
MODES = tuple(NUMPY_PAD)
METHODS = ("direct", "separable", "fft", "auto")
PLACES = {"centre": (4, 5), "edge": (0, 6), "corner": (8, 10)}
VALUES = {"nan": np.nan, "+inf": np.inf, "-inf": -np.inf}


def ieee_loop(image, kernel, mode, cval=0.0, dilation=(1, 1)):
    """'same' correlation by a loop over every tap of the padded image (the oracle)."""
    kh, kw = kernel.shape
    span = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
    before = ((kh // 2) * dilation[0], (kw // 2) * dilation[1])
    pads = [(b, s - 1 - b) for b, s in zip(before, span, strict=True)]
    if mode == "constant":
        padded = np.pad(image, pads, mode="constant", constant_values=cval)
    else:
        padded = np.pad(image, pads, mode=NUMPY_PAD[mode])
    out = np.empty(image.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        for r in range(image.shape[0]):
            for c in range(image.shape[1]):
                window = padded[r : r + span[0] : dilation[0], c : c + span[1] : dilation[1]]
                out[r, c] = np.sum(kernel * window)
    return out


def assert_rule(result, image, kernel, mode, *, rtol=1e-10, atol=1e-10):
    """Non-finite outputs as the IEEE loop; finite ones as SciPy on the image."""
    expected = ieee_loop(image, kernel, mode)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(result), np.isposinf(expected))
    np.testing.assert_array_equal(np.isneginf(result), np.isneginf(expected))
    finite = np.isfinite(expected)
    assert finite.any()
    with np.errstate(invalid="ignore"):
        reference = ndi.correlate(image, kernel, mode=mode)
    np.testing.assert_allclose(result[finite], reference[finite], rtol=rtol, atol=atol)


def hostile_image(place, value, shape=(9, 11), seed=0):
    image = np.random.default_rng(seed).normal(size=shape)
    image[PLACES[place]] = value
    return image


# A kernel with mixed signs and zero weights: inf under a zero weight is NaN.
KERNEL = np.array(
    [[0.5, -1.0, 0.0, 2.0, 0.25], [1.0, 0.0, 3.0, -0.5, 1.5], [0.0, 0.75, -2.0, 1.0, 0.0]]
)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("value", VALUES)
def test_engine_nonfinite_within_the_footprint(method, mode, place, value):
    image = hostile_image(place, VALUES[value])
    result = convstack.correlate(image, KERNEL, mode=mode, method=method)
    assert_rule(result, image, KERNEL, mode)


@pytest.mark.parametrize("method", METHODS)
def test_engine_rank_one_kernel_and_mixed_values(method):
    # a separable kernel (one SVD term) with NaN, +inf and -inf that meet in one footprint
    image = np.random.default_rng(1).normal(size=(20, 23))
    image[5, 5], image[6, 7], image[15, 3], image[10, 20] = np.inf, -np.inf, np.nan, np.inf
    kernel = np.outer([1.0, 2.0, 0.0, -1.0, 1.0], [0.5, 1.0, 2.0, 1.0, 0.5])
    for mode in MODES:
        assert_rule(
            convstack.correlate(image, kernel, mode=mode, method=method), image, kernel, mode
        )


@pytest.mark.parametrize("method", METHODS)
def test_engine_large_kernel_keeps_nan_local(method):
    # FFT tiles and SVD terms must not spread one NaN over the image
    image = np.random.default_rng(2).normal(size=(64, 70))
    image[30, 31] = np.nan
    kernel = np.random.default_rng(3).normal(size=(9, 9))
    result = convstack.correlate(image, kernel, mode="reflect", method=method)
    assert np.isnan(result).sum() == 81
    assert_rule(result, image, kernel, "reflect", rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_engine_nan_cval_and_dilation(method):
    image = np.random.default_rng(4).normal(size=(10, 12))
    image[3, 4] = np.inf
    kernel = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.5]])
    result = convstack.correlate(image, kernel, mode="constant", cval=np.nan, method=method)
    expected = ieee_loop(image, kernel, "constant", cval=np.nan)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(result), np.isinf(expected))
    dilated = convstack.correlate(image, kernel, dilation=(2, 3), mode="wrap", method=method)
    expected = ieee_loop(image, kernel, "wrap", dilation=(2, 3))
    np.testing.assert_array_equal(np.isnan(dilated), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(dilated), np.isposinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(dilated[finite], expected[finite], rtol=1e-10, atol=1e-10)


def test_engine_stride_and_1d_and_float32():
    image = hostile_image("centre", np.nan)
    full = convstack.correlate(image, KERNEL, mode="mirror", method="fft")
    strided = convstack.correlate(image, KERNEL, mode="mirror", stride=2, method="fft")
    np.testing.assert_array_equal(strided, full[::2, ::2])
    signal = np.arange(20.0)
    signal[7] = -np.inf
    out = convstack.correlate(signal, [1.0, 0.0, 2.0], method="fft")
    assert np.isposinf(out[6]) is np.False_ or True  # sign: 1 * x[i-1] ... checked below
    np.testing.assert_array_equal(np.isneginf(out), [i in (6, 8) for i in range(20)])
    assert np.isnan(out[7])  # -inf under the zero weight
    single = convstack.correlate(image.astype(np.float32), KERNEL, method="fft")
    assert single.dtype == np.float32
    np.testing.assert_array_equal(
        np.isnan(single),
        np.isnan(full) | np.isnan(convstack.correlate(image, KERNEL, method="direct")),
    )


@pytest.mark.parametrize("method", METHODS)
def test_nonfinite_kernel_finishes_without_svd(method):
    image = np.random.default_rng(5).normal(size=(40, 50))
    kernel = np.ones((3, 3))
    kernel[1, 1] = np.inf  # hung in np.linalg.svd
    result = convstack.correlate(image, kernel, method=method)
    expected = ieee_loop(image, kernel, "constant")
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(result), np.isposinf(expected))
    np.testing.assert_array_equal(np.isneginf(result), np.isneginf(expected))
    kernel[0, 2] = -np.inf  # elsewhere: was all zeros
    expected = ieee_loop(image, kernel, "mirror")
    result = convstack.correlate(image, kernel, mode="mirror", method=method)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(result), np.isinf(expected))
    kernel[2, 2] = np.nan  # was LinAlgError
    assert np.isnan(convstack.convolve(image, kernel, method=method)).all()


# ------------------------------------------------------------------------------ filters


def _gaussian(size, sigma):
    k = cv2.getGaussianKernel(size, sigma).ravel()
    return np.outer(k, k)


FILTERS = {
    "gaussian_blur": (lambda x, m: filters.gaussian_blur(x, 5, 1.2, mode=m), _gaussian(5, 1.2)),
    "box_blur": (lambda x, m: filters.box_blur(x, (3, 5), mode=m), np.full((3, 5), 1 / 15)),
    "sobel": (
        lambda x, m: filters.sobel(x, 1, 0, 3, mode=m),
        np.outer(*(k.ravel() for k in cv2.getDerivKernels(1, 0, 3)[::-1])),
    ),
    "sobel_dy": (
        lambda x, m: filters.sobel(x, 0, 2, 5, mode=m),
        np.outer(*(k.ravel() for k in cv2.getDerivKernels(0, 2, 5)[::-1])),
    ),
    "scharr": (
        lambda x, m: filters.scharr(x, 0, 1, mode=m),
        np.outer(*(k.ravel() for k in cv2.getDerivKernels(0, 1, -1)[::-1])),
    ),
    "laplacian": (
        lambda x, m: filters.laplacian(x, mode=m),
        np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]),
    ),
    "laplacian3": (
        lambda x, m: filters.laplacian(x, 3, mode=m),
        np.array([[2.0, 0.0, 2.0], [0.0, -8.0, 0.0], [2.0, 0.0, 2.0]]),
    ),
}


@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("channels", [None, 2])
def test_filters_nonfinite_within_the_footprint(name, mode, value, channels):
    function, kernel = FILTERS[name]
    image = np.random.default_rng(6).normal(size=(9, 11))
    image[4, 5] = VALUES[value]
    image[0, 0] = -VALUES[value]
    image[8, 3] = VALUES[value]
    if channels is None:
        assert_rule(function(image, mode), image, kernel, mode, rtol=1e-7, atol=1e-9)
        return
    colour = np.dstack([image, image[::-1].copy()])
    result = function(colour, mode)
    for c in range(2):
        assert_rule(result[..., c], colour[..., c], kernel, mode, rtol=1e-7, atol=1e-9)


def test_unsharp_mask_is_its_formula_on_the_ruled_blur():
    image = np.random.default_rng(7).normal(size=(12, 13))
    image[5, 6], image[0, 12] = np.inf, np.nan
    blur = ieee_loop(image, _gaussian(9, 1.0), "mirror")
    with np.errstate(invalid="ignore"):
        expected = image + 0.7 * (image - blur)
    result = filters.unsharp_mask(image, 1.0, 0.7)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(result), np.isposinf(expected))
    np.testing.assert_array_equal(np.isneginf(result), np.isneginf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(result[finite], expected[finite], rtol=1e-9, atol=1e-9)


def test_float32_filters_keep_nan_local():
    image = np.random.default_rng(8).random((40, 50)).astype(np.float32)
    image[20, 25] = np.nan
    assert np.isnan(filters.box_blur(image, 5)).sum() == 25  # running sums spread it before
    assert np.isnan(filters.gaussian_blur(image, 0, 2.0)).sum() == 17 * 17


# ------------------------------------------------------------------------------- limits


@pytest.mark.parametrize(
    "call",
    [
        lambda: convstack.correlate(np.ones((40, 50)), np.ones((3, 3)), dilation=10**6),
        lambda: convstack.correlate(np.ones((40, 50)), np.ones((3, 3)), padding=10**6),
        lambda: convstack.convolve(np.ones(5), np.ones(3), dilation=10**9),
        lambda: convstack.correlate(np.ones((4, 4, 4)), np.ones((3, 3, 3)), padding=10**4),
        lambda: convstack.pad(np.ones((10, 10)), 10**6),
        lambda: kernels.gaussian(size=10**9),
        lambda: kernels.box((10**6, 10**6)),
        lambda: kernels.disk(1e300),
        lambda: filters.gaussian_blur(np.ones((40, 50)), 0, sigma=1e9),
        lambda: filters.gaussian_blur(np.ones((40, 50), np.uint8), 0, sigma=1e308),
        lambda: filters.unsharp_mask(np.ones((40, 50)), sigma=1e300),
        lambda: filters.box_blur(np.ones((40, 50)), 10**9),
    ],
)
def test_enormous_sizes_are_refused_before_allocating(call):
    with memory_limit("1GiB"), pytest.raises(LimitError, match=r"needs about .* memory limit"):
        call()


def test_limit_error_says_what_and_how():
    with memory_limit("1GiB"), pytest.raises(ValueError) as info:
        convstack.correlate(np.ones((40, 50)), np.ones((3, 3)), dilation=10**6)
    message = str(info.value)
    assert "correlate of an image of shape (40, 50)" in message
    assert "dilation (1000000, 1000000)" in message
    assert "CONVSTACK_MEMORY_LIMIT" in message


def test_derivative_kernel_sizes_are_checked():
    with pytest.raises(ValueError, match=r"`size` must be <= 1025"):
        kernels.derivative_1d(1, 10**6)
    with pytest.raises(ValueError, match=r"`order` must be >= 0; got -1"):
        kernels.derivative_1d(-1, 3)
    with pytest.raises(TypeError, match=r"`size` must be an int; got 3.0"):
        kernels.derivative_1d(1, 3.0)


def test_calculus_nonfinite_without_warnings():
    image = np.random.default_rng(9).normal(size=(8, 9))
    image[3, 3], image[5, 6] = np.inf, -np.inf
    rows, cols = gradient(image)  # one-sided borders: inf - inf is NaN, no RuntimeWarning
    assert np.isnan(rows[3, 3]) and np.isneginf(rows[4, 3]) and np.isposinf(rows[2, 3])
    assert np.isfinite(rows[0, 0])
    assert np.isinf(gradient(np.ones((5, 5)), spacing=1e-320)[0]).sum() == 0  # 0 / tiny = 0
    assert np.isneginf(laplace(image)[3, 3])  # -4 * inf (hand)
    d_rr, d_cc, d_rc = second_derivatives(image)
    assert np.isneginf(d_rr[3, 3]) and np.isneginf(d_cc[3, 3])
    assert np.isnan(d_rc[3, 3])  # inf under the cross kernel's zero centre
    signal = np.arange(10.0)
    signal[4] = np.nan
    d = derivative(signal)
    np.testing.assert_array_equal(np.isnan(d), [i in (3, 4, 5) for i in range(10)])


# ---------------------------------------------------------------------- property test

DTYPES = [
    np.bool_,
    np.int8,
    np.uint8,
    np.int16,
    np.uint16,
    np.int32,
    np.uint32,
    np.int64,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
    np.complex128,
    object,
    ">f8",  # big-endian: reductions reject a byte order
    ">f4",
    ">u2",
]


@st.composite
def arrays(draw, ndim=None):
    ndim = draw(st.sampled_from([0, 1, 2, 2, 2, 2, 3, 3, 4, 5])) if ndim is None else ndim
    limit = 7 if ndim <= 2 else 3
    low = 0 if draw(st.integers(0, 4)) == 0 else 1
    shape = tuple(draw(st.integers(low, limit)) for _ in range(ndim))
    # every dtype, the filters' own (uint8, uint16, float32, float64) more often
    dtype = np.dtype(
        draw(st.sampled_from(DTYPES + [np.uint8, np.uint16, np.float32] + 3 * [np.float64]))
    )
    size = int(np.prod(shape))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = rng.normal(scale=draw(st.sampled_from([1.0, 100.0, 1e300])), size=size)
    if dtype.kind in "fc" and size:
        for value in draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), max_size=3)):
            base[rng.integers(size)] = value
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        native = dtype.newbyteorder("=")
        base = rng.integers(info.min, info.max, size=size, endpoint=True, dtype=native)
    with np.errstate(all="ignore"):
        array = base.astype(dtype).reshape(shape)
    view = draw(st.sampled_from(["plain", "reversed", "strided", "transposed"]))
    if view == "reversed" and ndim:
        array = array[::-1]
    elif view == "strided" and ndim:
        array = np.repeat(array, 2, axis=-1)[..., ::2]
    elif view == "transposed":
        array = array.T
    return array


def _median(x):
    return filters.median_blur(x, 3)


def _bilateral(x):
    return filters.bilateral(x, 5, 10.0, 10.0)


CALLS = {
    "correlate": lambda x, k: convstack.correlate(x, k),
    "convolve_fft": lambda x, k: convstack.convolve(x, k, method="fft", mode="wrap"),
    "correlate_separable": lambda x, k: convstack.correlate(x, k, method="separable"),
    "correlate_stride": lambda x, k: convstack.correlate(x, k, stride=2, dilation=2, mode="mirror"),
    "pad": lambda x, k: convstack.pad(x, 2, mode="reflect"),
    "gaussian_blur": lambda x, k: filters.gaussian_blur(x, 3, 1.0),
    "box_blur": lambda x, k: filters.box_blur(x, 3),
    "sobel": lambda x, k: filters.sobel(x, 1, 1),
    "scharr": lambda x, k: filters.scharr(x, 0, 1),
    "laplacian": lambda x, k: filters.laplacian(x, 3),
    "unsharp_mask": lambda x, k: filters.unsharp_mask(x, 1.0, 2.0),
    "median_blur": lambda x, k: _median(x),
    "bilateral": lambda x, k: _bilateral(x),
    "derivative": lambda x, k: derivative(x),
    "extrema": lambda x, k: extrema(x),
    "gradient": lambda x, k: gradient(x),
    "laplace": lambda x, k: laplace(x, mode="wrap"),
    "laplacian_edges": lambda x, k: edges.laplacian_edges(x),
    "sobel_magnitude": lambda x, k: edges.sobel_magnitude(x, rescale=True),
    "focus_measure": lambda x, k: edges.focus_measure(x, size=3),
}


@pytest.fixture(scope="module")
def compiled():
    """Call everything once per dtype, rank and layout first: numba compiles a kernel
    per signature on first use (seconds on a cold cache), which is not what the
    deadline below is about."""
    for call in CALLS.values():
        for dtype in (np.uint8, np.uint16, np.float32, np.float64):
            for shape in ((6, 7), (6, 7, 3)):
                image = np.ones(shape, dtype=dtype)
                for view in (image, image[::-1], np.repeat(image, 2, axis=-1)[..., ::2]):
                    with contextlib.suppress(ValueError, TypeError):
                        call(view, np.ones((3,) * image.ndim))


@settings(
    max_examples=200,
    deadline=5000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(name=st.sampled_from(sorted(CALLS)), image=arrays(), data=st.data())
def test_public_functions_give_a_result_or_a_clear_error(compiled, name, image, data):
    # kernels of the image's rank most of the time, any rank otherwise
    same_rank = data.draw(st.integers(0, 3)) > 0
    kernel = data.draw(arrays(ndim=image.ndim if same_rank else None))
    image_copy, kernel_copy = image.copy(), kernel.copy()
    with contextlib.suppress(ValueError, TypeError):
        CALLS[name](image, kernel)
    for given_array, copy in ((image, image_copy), (kernel, kernel_copy)):
        if given_array.dtype == object:
            assert all(
                a is b or a == b or a != a for a, b in zip(given_array.flat, copy.flat, strict=True)
            )
        else:
            np.testing.assert_array_equal(given_array, copy)


def test_format_size_of_absurd_requests_stays_short():
    from convstack.limits import format_size

    assert format_size(1536) == "1.5 KiB"  # hand: 1536 / 1024
    assert format_size(3 * 1024**5) == "3.0 PiB"
    assert format_size(1e300) == f"{1e300 / 1024**5:.3g} PiB"
    assert format_size(float("inf")) == "inf B"


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, ">f8", np.longdouble])
@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (17, 33), (5, 130, 3)])
def test_the_finite_check_sees_every_position(dtype, shape, compiled, monkeypatch):
    from convstack import _nonfinite
    from convstack._nonfinite import has_nonfinite

    monkeypatch.setattr(_nonfinite, "COMPILED_MIN", 1 if compiled else 1 << 62)
    if dtype in (np.float32, np.float64):  # the compiled sum has no overflow false alarms
        big = np.full(9, np.finfo(dtype).max, dtype=dtype)
        assert has_nonfinite(big) is not compiled

    x = np.random.default_rng(10).random(shape).astype(dtype)
    assert not has_nonfinite(x) and not has_nonfinite(x.T)
    for index in list(np.ndindex(shape))[:: max(1, x.size // 60)]:
        for value in (np.nan, np.inf, -np.inf):
            y = x.copy()
            y[index] = value
            assert (
                has_nonfinite(y) and has_nonfinite(y.T) and has_nonfinite(y[::-1] if y.ndim else y)
            )


@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
def test_values_beyond_the_working_dtype_are_infinities(method):
    # longdouble works in float64 and float32 kernels of float32 images: what does not
    # fit becomes inf once, then follows the rule (no RuntimeWarning, no NaN tiles)
    image = np.ones((4, 5), dtype=np.longdouble)
    image[1, 1] = np.longdouble("1e400")
    result = convstack.correlate(image, np.ones((3, 3)), method=method)
    expected = np.zeros((4, 5), dtype=bool)
    expected[0:3, 0:3] = True
    np.testing.assert_array_equal(np.isposinf(result), expected)
    assert result[3, 4] == 4.0  # hand: four ones under the 3x3 box at the corner
    small = convstack.correlate(np.ones((2, 2), np.float32), [[0.0, 1e299, 0.0]], method=method)
    assert small.dtype == np.float32 and np.isposinf(small).all()  # inf * 1 at the centre


def test_edge_maps_keep_nonfinite_and_rescale_the_rest():
    image = np.random.default_rng(11).random((9, 10))
    image[4, 4] = np.nan
    image[0, 9] = np.inf
    plain = np.abs(ieee_loop(image, kernels.laplacian(4), "mirror"))  # oracle before rescaling
    result = edges.laplacian_edges(image)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(plain))
    np.testing.assert_array_equal(np.isposinf(result), np.isposinf(plain))
    finite = np.isfinite(plain)
    low, high = plain[finite].min(), plain[finite].max()
    np.testing.assert_allclose(result[finite], (plain[finite] - low) / (high - low), atol=1e-12)
    colour = np.dstack([image, -image, image])  # inf - inf in the gray conversion: NaN
    assert np.isnan(edges.sobel_magnitude(colour)[0, 9])


def _ieee_taps(image, kernel, mode, stride=(1, 1), dilation=(1, 1)):
    """'same' correlation as a sum over every tap (zero weights included) of shifted
    views of the numpy-padded image in float64: the IEEE outcome of each footprint."""
    kh, kw = kernel.shape
    before = ((kh // 2) * dilation[0], (kw // 2) * dilation[1])
    span = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
    pads = [(b, s - 1 - b) for b, s in zip(before, span, strict=True)]
    padded = np.pad(image.astype(np.float64), pads, mode=NUMPY_PAD[mode])
    n_r, n_c = image.shape
    out = np.zeros(((n_r - 1) // stride[0] + 1, (n_c - 1) // stride[1] + 1))
    with np.errstate(invalid="ignore", over="ignore"):
        for a in range(kh):
            for b in range(kw):
                r, c = a * dilation[0], b * dilation[1]
                window = padded[r : r + n_r : stride[0], c : c + n_c : stride[1]]
                out += kernel[a, b] * window
    return out


@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", [((1, 1), (1, 1)), ((2, 1), (1, 2))])
def test_engine_nonfinite_at_every_position_and_in_every_strip(
    method, mode, dtype, geometry, monkeypatch
):
    # The compiled rows test the image rows they read for NaN/inf themselves: a single
    # non-finite sample at any position (corners, edges, the rows where one thread's
    # range of output rows meets the next) must reach exactly its footprint, with the
    # rest finite and right; rows split over three threads whatever the size.
    from convstack import _methods

    monkeypatch.setattr(_methods, "THREAD_MIN_WORK", 0)
    monkeypatch.setattr(_methods, "THREADS", 3)
    stride, dilation = geometry
    kernel = np.array([[0.5, -1.0, 0.0, 2.0], [1.0, 0.0, 3.0, -0.5], [0.25, 0.75, -2.0, 1.0]])
    base = np.random.default_rng(7).normal(size=(12, 10)).astype(dtype)
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    for index, position in enumerate(np.ndindex(base.shape)):
        image = base.copy()
        image[position] = (np.nan, np.inf, -np.inf)[index % 3]
        kept = image.copy()
        result = convstack.correlate(
            image, kernel, mode=mode, method=method, stride=stride, dilation=dilation
        )
        np.testing.assert_array_equal(image, kept)
        assert result.dtype == dtype
        expected = _ieee_taps(image, kernel.astype(dtype), mode, stride, dilation)
        for test in (np.isnan, np.isposinf, np.isneginf):
            np.testing.assert_array_equal(test(result), test(expected), err_msg=str(position))
        finite = np.isfinite(expected)
        assert finite.any()
        np.testing.assert_allclose(result[finite], expected[finite], rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("method", ["direct", "separable"])
def test_engine_nonfinite_found_by_one_strip_only(method, monkeypatch):
    # one NaN in the last row range, one -inf in the first: each strip's flag counts
    from convstack import _methods

    monkeypatch.setattr(_methods, "THREAD_MIN_WORK", 0)
    monkeypatch.setattr(_methods, "THREADS", 3)
    kernel = np.outer([1.0, 2.0, 1.0], [1.0, -2.0, 3.0])
    for places in ([(29, 4)], [(0, 9)], [(0, 9), (29, 4)], [(15, 0)]):
        image = np.random.default_rng(8).normal(size=(30, 20))
        for k, place in enumerate(places):
            image[place] = (np.nan, -np.inf)[k % 2]
        result = convstack.correlate(image, kernel, mode="nearest", method=method)
        expected = _ieee_taps(image, kernel, "nearest")
        np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(result), np.isinf(expected))
        finite = np.isfinite(expected)
        np.testing.assert_allclose(result[finite], expected[finite], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
def test_engine_nonfinite_in_channels_and_1d(method):
    # channel-last colour (interleaved rows) and a 1-D signal, a non-finite sample each
    image = np.random.default_rng(9).normal(size=(9, 8, 3)).astype(np.float32)
    image[0, 7, 2], image[4, 0, 0] = np.inf, np.nan
    kernel = np.array([[1.0, 0.0, 2.0], [-1.0, 0.5, 1.0], [0.0, 1.0, 1.0]])
    result = convstack.correlate(image, kernel, mode="wrap", channel_axis=-1, method=method)
    for c in range(3):
        expected = _ieee_taps(image[..., c], kernel, "wrap")
        np.testing.assert_array_equal(np.isnan(result[..., c]), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(result[..., c]), np.isinf(expected))
        finite = np.isfinite(expected)
        np.testing.assert_allclose(result[..., c][finite], expected[finite], rtol=1e-5, atol=1e-5)
    signal = np.arange(15.0)
    signal[0], signal[14] = -np.inf, np.nan
    out = convstack.correlate(signal, [2.0, 0.0, 1.0], mode="mirror", method=method)
    expected = _ieee_taps(signal[None], np.array([[2.0, 0.0, 1.0]]), "mirror")[0]
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isneginf(out), np.isneginf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(out[finite], expected[finite])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [0, 3])
@pytest.mark.parametrize("size_sigma", [(5, 0.0), (11, 0.12)])
def test_gaussian_nonfinite_at_borders_and_strip_edges(
    mode, dtype, channels, size_sigma, monkeypatch
):
    # gaussian_blur's separable rows find NaN/inf themselves (no scan first): one sample
    # on each border row and column and on the rows where the filters' strips meet.
    # sigma 0.12 makes the outer taps exactly 0 (inf there is NaN by the rule; the
    # rows skip zero taps, so only the rule's overwrite gets it right)
    from convstack import _methods

    monkeypatch.setattr(_methods, "THREAD_MIN_WORK", 0)  # strips of 2**18 bytes: 3 here
    size, sigma = size_sigma
    step = (1 << 18) // (9 * max(channels, 1) * np.dtype(dtype).itemsize * (2 * size + 2))
    n = 3 * step - 5
    shape = (n, 9) + ((channels,) if channels else ())
    base = np.random.default_rng(11).random(shape).astype(dtype)
    taps = cv2.getGaussianKernel(size, sigma).ravel()  # OpenCV's taps
    kernel = np.outer(taps, taps)
    rows = sorted(
        {0, 1, 2, n - 3, n - 2, n - 1} | {s + d for s in (step, 2 * step) for d in (-3, 0, 2)}
    )
    for index, (r, c) in enumerate((r, c) for r in rows for c in (0, 1, 4, 7, 8)):
        image = base.copy()
        image[r, c] = (np.nan, np.inf, -np.inf)[index % 3]
        result = filters.gaussian_blur(image, size, sigma, mode=mode)
        planes = [image] if not channels else [image[..., k] for k in range(channels)]
        outs = [result] if not channels else [result[..., k] for k in range(channels)]
        for plane, got in zip(planes, outs, strict=True):
            expected = _ieee_taps(plane, kernel, mode)
            for test in (np.isnan, np.isposinf, np.isneginf):
                np.testing.assert_array_equal(test(got), test(expected), err_msg=f"{r, c}")
            finite = np.isfinite(expected)
            np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
@pytest.mark.parametrize("dtype", [">f8", np.float16, np.longdouble])
def test_engine_nonfinite_in_cast_dtypes(method, dtype):
    # the compiled rows test the array they read (cast to native float32/float64)
    image = np.random.default_rng(12).random((9, 7)).astype(dtype)
    image[0, 3], image[8, 6], image[4, 0] = np.nan, np.inf, -np.inf
    kernel = np.array([[1.0, 0.0, 2.0], [0.5, 1.0, -1.0], [1.0, 1.0, 0.0]])
    result = convstack.correlate(image, kernel, mode="mirror", method=method)
    expected = _ieee_taps(image.astype(np.float64), kernel, "mirror")
    for test in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(test(result), test(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(result[finite], expected[finite], rtol=1e-6, atol=1e-6)
