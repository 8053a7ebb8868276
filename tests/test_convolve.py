"""correlate / convolve against hand calculation and independent oracles.

Oracles: the lab's worked example, OpenCV (``filter2D`` and the lab's ``cvconv``),
``scipy.ndimage.correlate`` / ``convolve`` and ``torch.nn.functional.conv2d``.
Every method (direct, separable, fft, auto) is checked on every case.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi

from convstack import convolve, correlate
from convstack._modes import OPENCV_BORDER

METHODS = ("direct", "separable", "fft", "auto")
SCIPY_MODES = ("constant", "nearest", "reflect", "mirror", "wrap")
KERNEL_SHAPES = [(1, 1), (3, 3), (4, 4), (2, 5), (5, 2), (1, 4), (3, 1), (7, 6)]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def tol(dtype: np.dtype) -> dict[str, float]:
    return {"rtol": 2e-5, "atol": 2e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10}


# --------------------------------------------------------------------------------------------
# The lab's examples, by hand and with its cvconv
# --------------------------------------------------------------------------------------------


def cvconv(f: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The lab's function, verbatim in behaviour: copyMakeBorder + filter2D + crop."""
    pad_v = (g.shape[0] - 1) // 2
    pad_h = (g.shape[1] - 1) // 2
    fb = cv2.copyMakeBorder(f, pad_v, pad_v, pad_h, pad_h, cv2.BORDER_CONSTANT, 0)
    fg_cv = cv2.filter2D(fb.astype(g.dtype), -1, g)
    return fg_cv[pad_v : fb.shape[0] - pad_v, pad_h : fb.shape[1] - pad_h]


@pytest.mark.parametrize("method", METHODS)
def test_lab_example_by_hand(method: str) -> None:
    # f = [1, 2, 3], g = [1, 0, 1], zero padding: [0*1+1*0+2*1, 1+3, 2+0] = [2, 4, 2]
    assert correlate([1, 2, 3], [1, 0, 1], method=method).tolist() == [2.0, 4.0, 2.0]
    assert convolve([1, 2, 3], [1, 0, 1], method=method).tolist() == [2.0, 4.0, 2.0]


@pytest.mark.parametrize("method", METHODS)
def test_lab_example_by_hand_asymmetric_kernel(method: str) -> None:
    # correlate: out[t] = f[t-1]*1 + f[t]*2 + f[t+1]*0 -> [2, 5, 8]
    got = correlate([1, 2, 3], [1, 2, 0], method=method)
    np.testing.assert_allclose(got, [2.0, 5.0, 8.0], atol=1e-12)
    # convolve flips: kernel [0, 2, 1] -> out[t] = 2 f[t] + f[t+1] -> [4, 7, 6]
    np.testing.assert_allclose(convolve([1, 2, 3], [1, 2, 0], method=method), [4, 7, 6], atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_lab_cvconv_1d(method: str) -> None:
    f = np.array([[1, 2, 3]], np.uint8)
    g = np.array([[1, 0, 1]], np.uint8)
    expected = cvconv(f, g)
    assert expected.tolist() == [[2, 4, 2]]
    np.testing.assert_allclose(correlate(f, g, method=method), expected, atol=1e-12)
    # the lab's derivative: a float32 [-1, 1] kernel on a sampled sine
    t = np.arange(0.0, 4.0 * np.pi, 0.01)
    s = np.sin(t)[np.newaxis].astype(np.float32)
    der = np.array([[-1, 1]], np.float32)
    want = cvconv(s, der)  # no copyMakeBorder pad for a 2-tap kernel: filter2D's default
    got = correlate(s, der, mode="mirror", method=method)  # border, REFLECT_101, acts
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kshape", [(3, 3), (5, 5), (3, 5), (1, 7)])
def test_lab_cvconv_2d(method: str, kshape: tuple[int, int]) -> None:
    f = rng(1).integers(0, 256, size=(11, 13)).astype(np.float64)
    g = rng(2).normal(size=kshape)
    expected = cvconv(f, g)
    np.testing.assert_allclose(correlate(f, g, method=method), expected, atol=1e-9)


# --------------------------------------------------------------------------------------------
# OpenCV filter2D for every border
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", ["constant", "nearest", "reflect", "mirror"])
@pytest.mark.parametrize("kshape", KERNEL_SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_filter2d_parity(method: str, mode: str, kshape: tuple[int, int], dtype: type) -> None:
    image = rng(3).random((12, 10)).astype(dtype)
    kernel = rng(4).normal(size=kshape).astype(dtype)
    border = getattr(cv2, OPENCV_BORDER[mode])
    expected = cv2.filter2D(image, -1, kernel, borderType=border)
    got = correlate(image, kernel, mode=mode, method=method)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, **tol(np.dtype(dtype)))


def test_filter2d_refuses_wrap() -> None:
    """cv2 5.x filter2D rejects BORDER_WRAP; wrap is checked via copyMakeBorder below."""
    with pytest.raises(cv2.error):
        cv2.filter2D(np.zeros((5, 5), np.float32), -1, np.ones((3, 3)), borderType=cv2.BORDER_WRAP)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", ["constant", "nearest", "reflect", "mirror", "wrap"])
@pytest.mark.parametrize("kshape", [(3, 3), (4, 4), (2, 5), (7, 6)])
def test_copymakeborder_then_filter2d(method: str, mode: str, kshape: tuple[int, int]) -> None:
    """Pad with copyMakeBorder (anchor k//2), filter2D, keep the region of the image."""
    image = rng(5).random((9, 8))
    kernel = rng(6).normal(size=kshape)
    (kh, kw), cval = kshape, 2.5 if mode == "constant" else 0.0
    top, left = kh // 2, kw // 2
    bottom, right = kh - 1 - top, kw - 1 - left
    border = getattr(cv2, OPENCV_BORDER[mode])
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, border, value=cval)
    full = cv2.filter2D(padded, -1, kernel, anchor=(left, top), borderType=cv2.BORDER_CONSTANT)
    expected = full[top : top + 9, left : left + 8]
    got = correlate(image, kernel, mode=mode, cval=cval, method=method)
    np.testing.assert_allclose(got, expected, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("channels", [2, 3, 4])
def test_filter2d_colour_channels_never_mix(method: str, channels: int) -> None:
    image = rng(7).random((10, 11, channels)).astype(np.float32)
    kernel = rng(8).normal(size=(5, 3)).astype(np.float32)
    expected = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    got = correlate(image, kernel, mode="mirror", channel_axis=-1, method=method)
    assert got.shape == image.shape
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)
    # channels first gives the same per-channel answer
    first = correlate(np.moveaxis(image, -1, 0), kernel, mode="mirror", channel_axis=0)
    np.testing.assert_allclose(np.moveaxis(first, 0, -1), expected, rtol=2e-5, atol=2e-5)
    # an impulse in one channel stays in that channel
    impulse = np.zeros((10, 11, channels))
    impulse[5, 5, 0] = 1.0
    out = correlate(impulse, kernel, channel_axis=2, method=method)
    assert np.abs(out[..., 1:]).max() < 1e-12


# --------------------------------------------------------------------------------------------
# scipy.ndimage for every mode
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", SCIPY_MODES)
@pytest.mark.parametrize("kshape", KERNEL_SHAPES)
def test_scipy_parity_2d(method: str, mode: str, kshape: tuple[int, int]) -> None:
    image = rng(9).random((9, 8))
    kernel = rng(10).normal(size=kshape)
    cval = -1.5 if mode == "constant" else 0.0
    np.testing.assert_allclose(
        correlate(image, kernel, mode=mode, cval=cval, method=method),
        ndi.correlate(image, kernel, mode=mode, cval=cval),
        atol=1e-10,
    )
    np.testing.assert_allclose(
        convolve(image, kernel, mode=mode, cval=cval, method=method),
        ndi.convolve(image, kernel, mode=mode, cval=cval),
        atol=1e-10,
    )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", SCIPY_MODES)
@pytest.mark.parametrize("ksize", [1, 2, 3, 4, 5, 8])
def test_scipy_parity_1d(method: str, mode: str, ksize: int) -> None:
    image = rng(11).random(7)
    kernel = rng(12).normal(size=ksize)
    np.testing.assert_allclose(
        correlate(image, kernel, mode=mode, method=method),
        ndi.correlate(image, kernel, mode=mode),
        atol=1e-10,
    )
    np.testing.assert_allclose(
        convolve(image, kernel, mode=mode, method=method),
        ndi.convolve(image, kernel, mode=mode),
        atol=1e-10,
    )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", SCIPY_MODES)
def test_image_smaller_than_kernel(method: str, mode: str) -> None:
    """'same' padding lets a 9x7 kernel run over a 3x2 image (pads wider than the image)."""
    image = rng(13).random((3, 2))
    kernel = rng(14).normal(size=(9, 7))
    np.testing.assert_allclose(
        correlate(image, kernel, mode=mode, method=method),
        ndi.correlate(image, kernel, mode=mode),
        atol=1e-10,
    )


@pytest.mark.parametrize("method", METHODS)
def test_3d_image(method: str) -> None:
    image = rng(15).random((5, 6, 7))
    kernel = rng(16).normal(size=(3, 2, 3))
    np.testing.assert_allclose(
        correlate(image, kernel, mode="reflect", method=method),
        ndi.correlate(image, kernel, mode="reflect"),
        atol=1e-10,
    )


@pytest.mark.parametrize("method", METHODS)
def test_mean_mode_is_constant_with_the_mean(method: str) -> None:
    image = rng(17).random((8, 9, 3))
    kernel = rng(18).normal(size=(5, 5))
    got = correlate(image, kernel, mode="mean", channel_axis=-1, method=method)
    for c in range(3):
        m = image[..., c].mean()
        expected = ndi.correlate(image[..., c], kernel, mode="constant", cval=m)
        np.testing.assert_allclose(got[..., c], expected, atol=1e-10)


# --------------------------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("dtype", "out_dtype"),
    [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.float16, np.float32),
        (np.uint8, np.float64),
        (np.int16, np.float64),
        (np.bool_, np.float64),
    ],
)
def test_dtypes(method: str, dtype: type, out_dtype: type) -> None:
    base = rng(19).integers(0, 2 if dtype is np.bool_ else 200, size=(10, 9))
    image = base.astype(dtype)
    kernel = rng(20).normal(size=(3, 4))
    got = correlate(image, kernel, mode="nearest", method=method)
    assert got.dtype == out_dtype
    expected = ndi.correlate(base.astype(np.float64), kernel, mode="nearest")
    atol = 1e-3 if out_dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, expected, atol=atol)


def test_uint8_does_not_saturate() -> None:
    image = np.full((5, 5), 200, np.uint8)
    got = correlate(image, np.ones((3, 3), np.uint8), mode="nearest")
    np.testing.assert_allclose(got, np.full((5, 5), 1800.0), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# torch conv2d: stride, dilation, padding
# --------------------------------------------------------------------------------------------

TORCH_CASES = [
    # kernel, stride, dilation, padding
    ((3, 3), 1, 1, 0),
    ((3, 3), 2, 1, 1),
    ((3, 3), (2, 3), 1, (1, 2)),
    ((5, 4), 1, 2, 3),
    ((5, 4), (3, 1), (1, 2), (0, 4)),
    ((2, 2), 2, 2, 0),
    ((4, 3), 3, (2, 3), (2, 1)),
    ((1, 5), (1, 2), (1, 3), (0, 6)),
    ((7, 7), 2, 1, 3),
]


def _torch_reference(image, kernel, stride, dilation, padding, pad_mode="constant"):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float64))
    x = x.permute(2, 0, 1)[None] if image.ndim == 3 else x[None, None]
    channels = x.shape[1]
    w = torch.from_numpy(np.ascontiguousarray(kernel, dtype=np.float64))[None, None]
    w = w.expand(channels, 1, *kernel.shape).contiguous()
    if isinstance(padding, int):
        padding = (padding, padding)
    rows, cols = (p if isinstance(p, tuple) else (p, p) for p in padding)
    x = F.pad(x, (cols[0], cols[1], rows[0], rows[1]), mode=pad_mode)
    y = F.conv2d(x, w, stride=stride, dilation=dilation, groups=channels)
    y = y[0].permute(1, 2, 0) if image.ndim == 3 else y[0, 0]
    return y.numpy()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("kshape", "stride", "dilation", "padding"), TORCH_CASES)
def test_torch_parity(method, kshape, stride, dilation, padding) -> None:
    image = rng(21).random((13, 12))
    kernel = rng(22).normal(size=kshape)
    expected = _torch_reference(image, kernel, stride, dilation, padding)
    got = correlate(image, kernel, padding=padding, stride=stride, dilation=dilation, method=method)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("mode", "torch_mode"), [("nearest", "replicate"), ("mirror", "reflect"), ("wrap", "circular")]
)
def test_torch_parity_padding_modes_and_colour(method, mode, torch_mode) -> None:
    image = rng(23).random((11, 10, 3)).astype(np.float32)
    kernel = rng(24).normal(size=(3, 4)).astype(np.float32)
    padding = ((2, 1), (3, 2))
    expected = _torch_reference(image, kernel, (2, 1), (1, 2), padding, pad_mode=torch_mode)
    got = correlate(
        image,
        kernel,
        padding=padding,
        mode=mode,
        stride=(2, 1),
        dilation=(1, 2),
        channel_axis=-1,
        method=method,
    )
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_torch_same_matches_for_odd_kernels() -> None:
    torch = pytest.importorskip("torch")
    image = rng(25).random((9, 10))
    kernel = rng(26).normal(size=(5, 3))
    y = torch.nn.functional.conv2d(
        torch.from_numpy(image)[None, None],
        torch.from_numpy(kernel)[None, None],
        padding="same",
        dilation=2,
    )[0, 0].numpy()
    np.testing.assert_allclose(correlate(image, kernel, dilation=2), y, atol=1e-10)


# --------------------------------------------------------------------------------------------
# padding keywords and stride/dilation with every method on every mode
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", SCIPY_MODES + ("mean",))
@pytest.mark.parametrize("padding", ["same", "valid", "full", 2, (1, 3), ((0, 2), (3, 1))])
@pytest.mark.parametrize("stride", [1, 2, (3, 1)])
@pytest.mark.parametrize("dilation", [1, (2, 1)])
def test_methods_agree(mode, padding, stride, dilation) -> None:
    image = rng(27).random((2, 11, 12))
    kernel = rng(28).normal(size=(3, 4))
    results = {
        m: convolve(
            image,
            kernel,
            padding=padding,
            mode=mode,
            stride=stride,
            dilation=dilation,
            channel_axis=0,
            method=m,
        )
        for m in METHODS
    }
    for m in METHODS[1:]:
        np.testing.assert_allclose(results[m], results["direct"], atol=1e-10, err_msg=m)


@pytest.mark.parametrize("method", METHODS)
def test_same_with_stride_gives_ceil(method: str) -> None:
    out = correlate(np.ones((10, 7)), np.ones((3, 3)), stride=(3, 2), method=method)
    assert out.shape == (4, 4)


@pytest.mark.parametrize("method", METHODS)
def test_full_padding_is_numpy_convolve(method: str) -> None:
    a, k = rng(29).random(9), rng(30).normal(size=4)
    np.testing.assert_allclose(
        convolve(a, k, padding="full", method=method), np.convolve(a, k, "full"), atol=1e-12
    )
    np.testing.assert_allclose(
        correlate(a, k, padding="valid", method=method), np.correlate(a, k, "valid"), atol=1e-12
    )


@pytest.mark.parametrize("method", METHODS)
def test_rank_two_kernel_separable(method: str) -> None:
    """A rank-2 kernel (sum of two outer products) is exact with the SVD terms."""
    k = np.outer([1, 2, 1], [-1, 0, 1]) + np.outer([0, 1, 0], [1, -4, 1])
    image = rng(31).random((10, 10))
    np.testing.assert_allclose(
        correlate(image, k, mode="mirror", method=method),
        ndi.correlate(image, k, mode="mirror"),
        atol=1e-10,
    )


@pytest.mark.parametrize("method", METHODS)
def test_zero_kernel_and_constant_image(method: str) -> None:
    assert not correlate(rng(32).random((6, 6)), np.zeros((3, 3)), method=method).any()
    out = correlate(np.full((6, 7), 2.0), np.full((3, 3), 1 / 9), mode="nearest", method=method)
    np.testing.assert_allclose(out, 2.0, atol=1e-12)


def test_output_is_contiguous_and_new() -> None:
    image = rng(33).random((6, 5, 3))
    for m in METHODS:
        out = correlate(image, np.ones((1, 1)), channel_axis=-1, method=m)
        assert out.flags.c_contiguous
        assert not np.shares_memory(out, image)
        np.testing.assert_allclose(out, image, atol=1e-12)


@pytest.mark.parametrize("mode", SCIPY_MODES + ("mean",))
@pytest.mark.parametrize(("stride", "dilation"), [(1, 1), ((2, 1), (1, 3)), (3, 2)])
def test_many_strips_tiles_and_threads(monkeypatch, mode, stride, dilation) -> None:
    """Rows split over threads and small FFT tiles give the same answer as scipy."""
    from convstack import _methods

    monkeypatch.setattr(_methods, "THREAD_MIN_WORK", 0)
    monkeypatch.setattr(_methods, "THREADS", 2)
    monkeypatch.setattr(_methods, "_sides", lambda span, n: [(32, 32 - span + 1)])
    image = rng(34).random((2, 101, 87)).astype(np.float32)
    kernel = rng(35).normal(size=(5, 6)).astype(np.float32)
    reference = convolve(
        image.astype(np.float64),
        kernel,
        mode=mode,
        stride=stride,
        dilation=dilation,
        channel_axis=0,
        method="direct",
    )
    if stride == 1 and dilation == 1 and mode != "mean":
        for c in range(2):
            np.testing.assert_allclose(
                reference[c],
                ndi.convolve(image[c].astype(np.float64), kernel, mode=mode),
                atol=1e-9,
            )
    for method in METHODS:
        got = convolve(
            image,
            kernel,
            mode=mode,
            stride=stride,
            dilation=dilation,
            channel_axis=0,
            method=method,
        )
        np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4, err_msg=method)


@pytest.mark.parametrize("method", METHODS)
def test_non_contiguous_and_odd_layouts(method: str) -> None:
    """Views with steps, negative strides, Fortran order and big-endian data all work."""
    base = rng(36).random((30, 40, 3))
    kernel = rng(37).normal(size=(3, 5))
    for image in (
        base[::2, ::-3, 1],
        np.asfortranarray(base[..., 0]),
        base[..., 2].astype(">f8"),
        base[:, :, 0].T,
    ):
        expected = ndi.correlate(np.array(image, dtype=np.float64), kernel, mode="wrap")
        got = correlate(image, kernel, mode="wrap", method=method)
        np.testing.assert_allclose(got, expected, atol=1e-10)


@pytest.mark.parametrize("method", ["direct", "separable"])
def test_nan_stays_local_without_warnings(method: str) -> None:
    image = np.ones((9, 9))
    image[4, 4] = np.nan
    out = correlate(image, np.ones((3, 3)), mode="nearest", method=method)
    assert np.isnan(out[3:6, 3:6]).all()
    assert np.isfinite(np.delete(np.delete(out, [3, 4, 5], 0), [3, 4, 5], 1)).all()
    assert np.isnan(correlate(image, np.ones((3, 3)), method="fft")).any()


@pytest.mark.parametrize("mode", SCIPY_MODES + ("mean",))
@pytest.mark.parametrize("kshape", [(3, 3), (4, 5), (1, 6), (7, 2), (2, 1)])
@pytest.mark.parametrize("dilation", [1, (2, 3)])
@pytest.mark.parametrize("threads", [1, 3])
def test_direct_rows_over_threads(monkeypatch, mode, kshape, dilation, threads) -> None:
    """Output rows split over 1 or 3 threads agree with scipy (float64 and float32)."""
    from convstack import _methods

    monkeypatch.setattr(_methods, "THREAD_MIN_WORK", 0)
    monkeypatch.setattr(_methods, "THREADS", threads)
    image = rng(38).random((3, 40, 37))
    kernel = rng(39).normal(size=kshape)
    kwargs = {"mode": mode, "dilation": dilation, "channel_axis": 0, "method": "direct"}
    got = convolve(image, kernel, **kwargs)
    got32 = convolve(image.astype(np.float32), kernel, **kwargs)
    np.testing.assert_allclose(got32, got, rtol=1e-4, atol=1e-4)
    if dilation == 1 and mode != "mean":
        for c in range(3):
            expected = ndi.convolve(image[c], kernel, mode=mode)
            np.testing.assert_allclose(got[c], expected, atol=1e-10)


@pytest.mark.parametrize("mode", SCIPY_MODES)
@pytest.mark.parametrize(("stride", "dilation"), [(1, 1), (3, 2)])
def test_long_1d_signal(mode, stride, dilation) -> None:
    """A long 1-D signal: every method agrees, and with scipy at stride 1."""
    signal = rng(40).random(1000)
    kernel = rng(41).normal(size=7)
    whole = {
        m: correlate(signal, kernel, mode=mode, stride=stride, dilation=dilation, method=m)
        for m in METHODS
    }
    for m in METHODS:
        np.testing.assert_allclose(whole[m], whole["direct"], atol=1e-12, err_msg=m)
    if stride == 1 and dilation == 1:
        np.testing.assert_allclose(
            whole["direct"], ndi.correlate(signal, kernel, mode=mode), atol=1e-10
        )


def test_fast_lengths_match_scipy() -> None:
    # the cost model's FFT lengths, computed without importing scipy.fft
    import scipy.fft

    from convstack._methods import next_fast_len

    for n in [*range(1, 3000), 4097, 10007, 65537, 1_000_003]:
        assert next_fast_len(n) == scipy.fft.next_fast_len(n, real=True), n


def test_small_kernels_do_not_import_scipy_fft() -> None:
    # a subprocess, so that the modules this test session imported do not count
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, convstack;"
        "convstack.correlate(np.ones((64, 64), np.float32), np.ones((5, 5)));"
        "print('scipy.fft' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cost_model_picks_by_kernel_size_and_rank(monkeypatch) -> None:
    """The measured cost model (constants in convstack._methods): direct for small dense
    kernels and 3x3 rank-1 ones, separable for a 19x19 rank-1 Gaussian, FFT for a 51x51
    dense kernel at 2048^2,
    and direct for every size on a tiny image; FFT tiles count in rounds of THREADS."""
    import importlib

    from convstack import _methods

    engine = importlib.import_module("convstack.convolve")  # the module, not the function
    choose_method = engine.choose_method
    monkeypatch.setattr(_methods, "THREADS", 2)
    engine._costs.cache_clear()
    r = rng(60)
    pads = lambda k: ((k // 2, k // 2),) * 2  # noqa: E731
    for n, k, wanted in ((2048, 3, "direct"), (2048, 51, "fft"), (16, 9, "direct")):
        kernel = r.normal(size=(k, k)).astype(np.float32)
        assert choose_method((n, n), kernel, (n, n), pads(k), (1, 1), (1, 1)) == wanted
    g = np.hanning(21)[1:-1]
    gauss = np.outer(g, g).astype(np.float32)
    got = choose_method((2048, 2048), gauss, (2048, 2048), pads(19), (1, 1), (1, 1))
    assert got == "separable"
    # a 3x3 rank-1 kernel (box, Gaussian): direct's one pass over three rows beats two
    # passes and the padded row between them (measured 1.9-2.8x), at every size
    g3 = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]).astype(np.float32) / 16
    for n in (64, 512, 2048, 4096):
        assert choose_method((n, n), g3, (n, n), pads(3), (1, 1), (1, 1)) == "direct"
    # by hand: 3 tiles on 2 threads take 2 rounds; small work stays on one thread
    assert _methods.wall_ns(300.0, 1e9, 3) == 200.0
    assert _methods.wall_ns(300.0, 1e9, 4) == 150.0
    assert _methods.wall_ns(300.0, 10.0, 4) == 300.0
    monkeypatch.setattr(_methods, "THREADS", 1)
    assert _methods.wall_ns(300.0, 1e9, 4) == 300.0
    engine._costs.cache_clear()


@pytest.mark.parametrize(("k", "n"), [(11, 2048), (21, 2048), (51, 2048), (51, 512), (5, 300)])
def test_fft_plan_tiles_are_fast_lengths_in_whole_rounds(k, n) -> None:
    """Overlap-save tiles: 2-3-5-smooth lengths, each keeping ``length - k + 1`` outputs
    (or the whole axis), covering the image; on two threads the 2048^2 plans come in
    whole rounds (an even number of tiles)."""
    from convstack import _methods

    def smooth(m: int) -> bool:
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    (len_r, t_r), (len_c, t_c), ns = _methods.fft_plan((k, k), (n, n), 2)
    assert ns > 0
    for length, kept in ((len_r, t_r), (len_c, t_c)):
        assert smooth(length)
        assert kept == n or kept == length - k + 1
        assert kept >= min(n, 16)
    tiles = -(-n // t_r) * -(-n // t_c)
    if n == 2048:
        assert tiles % 2 == 0


# --------------------------------------------------------------------------------------------
# Plans of repeated calls (convstack.convolve._plan): cached by argument types and values
# --------------------------------------------------------------------------------------------


def test_repeated_calls_plan_by_type_and_value() -> None:
    """A call planned once answers the same arguments from the cache, but a value equal
    to a cached one and of another type (1.0, True, np.int64 for stride 1) is checked
    afresh: the wrong types still raise, the right ones give the same result."""
    image = rng(70).random((9, 8)).astype(np.float32)
    kernel = rng(71).normal(size=(3, 3)).astype(np.float32)
    want = ndi.correlate(image.astype(np.float64), kernel.astype(np.float64), mode="mirror")
    for stride in (1, (1, 1), [1, 1], np.int64(1), (np.int64(1), 1)):
        got = correlate(image, kernel, mode="mirror", stride=stride)
        np.testing.assert_allclose(got, want, **tol(np.dtype(np.float32)))
    for bad in (1.0, True, (1, 1.0), (1, True)):
        with pytest.raises(TypeError, match=r"`stride` must be an int or a sequence of 2 ints"):
            correlate(image, kernel, mode="mirror", stride=bad)
    with pytest.raises(TypeError, match=r"`padding` must be 'same', 'valid', 'full'"):
        correlate(image, kernel, mode="mirror", padding=1.0)
    with pytest.raises(ValueError, match=r"`cval` must be 0 with mode='mirror'"):
        correlate(image, kernel, mode="mirror", cval=1)


def test_repeated_calls_see_new_kernel_values_image_means_and_limits() -> None:
    """The cache keys the kernel's values (a kernel changed in place between calls is
    used as it is now), 'mean' takes each image's own mean, the memory limit in force
    at each call applies, and neither the kernel nor the image is modified."""
    from convstack.limits import LimitError, memory_limit

    image = rng(72).random((12, 10))
    kernel = rng(73).normal(size=(3, 4))
    before_image, before_kernel = image.copy(), kernel.copy()
    for _ in range(2):
        for mode, scipy_mode in (("mirror", "mirror"), ("mean", "constant")):
            for scale in (1.0, 3.0):
                img = image * scale
                cval = img.mean() if mode == "mean" else 0.0
                want = ndi.correlate(img, kernel, mode=scipy_mode, cval=cval)
                got = correlate(img, kernel, mode=mode)
                np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
        np.testing.assert_array_equal(image, before_image)
        np.testing.assert_array_equal(kernel, before_kernel)
        kernel[1, 2] += 5.0  # the same array, new values: the next round must use them
        before_kernel = kernel.copy()
    correlate(image, kernel)
    with memory_limit("1KiB"), pytest.raises(LimitError, match=r"needs about .* memory limit"):
        correlate(image, kernel)
    np.testing.assert_allclose(
        correlate(image, kernel), ndi.correlate(image, kernel, mode="constant")
    )


def test_plan_cache_stays_bounded_and_skips_large_kernels() -> None:
    """Many distinct calls keep at most ``_PLANS_MAX`` plans; kernels over
    ``PLAN_KERNEL_BYTES`` are planned every call and never held by the cache."""
    import importlib

    engine = importlib.import_module("convstack.convolve")
    image = rng(74).random((40, 40))
    for size in range(1, 12):
        for cval in range(15):
            correlate(image, np.ones((size, 1)), cval=float(cval))
    assert 0 < len(engine._PLANS) <= engine._PLANS_MAX
    big = np.ones((95, 95)) / 95**2  # 72 KB of float64
    assert big.nbytes > engine.PLAN_KERNEL_BYTES
    count = len(engine._PLANS)
    got = correlate(image, big, mode="wrap")
    assert len(engine._PLANS) == count
    np.testing.assert_allclose(got, ndi.correlate(image, big, mode="wrap"), rtol=1e-9, atol=1e-12)
