"""Dask arrays through the engine and the filters: lazy, and equal to the in-memory call."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import scipy.ndimage as ndi

import convstack as cs
from convstack import filters

da = pytest.importorskip("dask.array")


@pytest.fixture(autouse=True)
def _synchronous_scheduler() -> Any:
    """Compute in the test's own thread: dask's threaded scheduler keeps its pool alive for
    good, and a process with foreign threads no longer forks (``forked.can_fork``), so every
    fork test later in the same run would skip."""
    import dask

    with dask.config.set(scheduler="synchronous"):
        yield


MODES = ["constant", "nearest", "reflect", "mirror", "wrap", "mean"]
#: ours -> scipy.ndimage ('mean' has no SciPy name)
SCIPY_MODES = {
    "constant": "constant",
    "nearest": "nearest",
    "reflect": "reflect",
    "mirror": "mirror",
    "wrap": "wrap",
}

#: (name, function, arguments): the windows of box 9, median 9 and the sigma-2 Gaussian
#: (17 taps) are larger than the 5 x 7 chunks
FILTERS: list[tuple[str, Any, tuple[Any, ...]]] = [
    ("box", filters.box_blur, (9,)),
    ("box-even", filters.box_blur, ((4, 6),)),
    ("gaussian", filters.gaussian_blur, ((7, 3), 1.5)),
    ("gaussian-auto", filters.gaussian_blur, (0, 2.0)),
    ("median", filters.median_blur, (9,)),
    ("median-3", filters.median_blur, (3,)),
    ("bilateral", filters.bilateral, (7, 30.0, 3.0)),
    ("sobel", filters.sobel, (1, 1, 5)),
    ("scharr", filters.scharr, (0, 1)),
    ("laplacian", filters.laplacian, (3,)),
    ("laplacian-1", filters.laplacian, (1,)),
    ("unsharp", filters.unsharp_mask, (1.5, 0.7)),
]


def _image(dtype: Any, channels: int | None, shape: tuple[int, int] = (23, 31)) -> np.ndarray:
    rng = np.random.default_rng(7)
    full = shape + ((channels,) if channels else ())
    if np.dtype(dtype).kind == "f":
        return (rng.random(full) * 200 - 50).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, full, endpoint=True).astype(dtype)


def _same(lazy: Any, eager: np.ndarray) -> None:
    assert type(lazy).__module__.startswith("dask."), type(lazy)
    got = lazy.compute()
    assert got.dtype == eager.dtype
    assert got.shape == eager.shape
    if eager.dtype.kind == "f":
        np.testing.assert_allclose(got, eager, rtol=1e-5, atol=1e-4)
    else:
        np.testing.assert_array_equal(got, eager)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("name", "func", "args"), FILTERS, ids=[f[0] for f in FILTERS])
@pytest.mark.parametrize(
    ("dtype", "channels"), [(np.uint8, 3), (np.float32, None)], ids=["u8x3", "f32"]
)
def test_filter_equals_in_memory(
    name: str, func: Any, args: tuple[Any, ...], mode: str, dtype: Any, channels: int | None
) -> None:
    image = _image(dtype, channels)
    lazy = func(da.from_array(image, chunks=(5, 7, -1)[: image.ndim]), *args, mode=mode)
    _same(lazy, func(image, *args, mode=mode))


@pytest.mark.parametrize("mode", ["mirror", "wrap", "reflect", "mean"])
@pytest.mark.parametrize(("name", "func", "args"), FILTERS[:6], ids=[f[0] for f in FILTERS[:6]])
def test_filter_window_wider_than_image(
    name: str, func: Any, args: tuple[Any, ...], mode: str
) -> None:
    """Pads wider than the image reflect and wrap again, as the in-memory call does."""
    image = _image(np.uint16, 2, shape=(4, 6))
    lazy = func(da.from_array(image, chunks=(2, 3, 2)), *args, mode=mode)
    _same(lazy, func(image, *args, mode=mode))


@pytest.mark.parametrize("mode", ["constant", "mirror"])
@pytest.mark.parametrize("shape", [(1, 40), (40, 1)])
def test_gaussian_one_row_keeps_opencv_rule(shape: tuple[int, int], mode: str) -> None:
    """OpenCV drops the Gaussian along an axis of length 1 (not for 'constant')."""
    image = _image(np.uint8, None, shape=shape)
    dimage = da.from_array(image, chunks=6)
    _same(
        filters.gaussian_blur(dimage, 5, 1.0, mode=mode),
        filters.gaussian_blur(image, 5, 1.0, mode=mode),
    )
    _same(filters.unsharp_mask(dimage, 1.0, mode=mode), filters.unsharp_mask(image, 1.0, mode=mode))


def test_float_bilateral_uses_the_whole_image_range() -> None:
    """Float bilateral bins colour distances over the image's range: chunks whose own
    ranges differ widely (and a NaN and an infinity) still give the whole-image result."""
    image = _image(np.float64, 3, shape=(20, 24))
    image[:10] *= 1e-3  # the top chunks hold a much narrower range than the image
    image[15, 3, 0] = np.nan
    image[2, 20, 1] = np.inf
    lazy = filters.bilateral(da.from_array(image, chunks=(5, 6, 3)), 5, 20.0, 2.0)
    eager = filters.bilateral(image, 5, 20.0, 2.0)
    got = lazy.compute()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(eager))
    np.testing.assert_allclose(got, eager, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["correlate", "convolve"])
def test_engine_equals_in_memory_and_scipy(name: str, mode: str) -> None:
    """Colour image (channel axis in the middle), an even kernel taller than a chunk,
    dilation: against the in-memory call and SciPy (for the modes SciPy has)."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (21, 3, 26)).astype(np.uint8)
    kernel = rng.normal(size=(8, 3))
    func = getattr(cs, name)
    options = {"mode": mode, "dilation": (1, 2), "channel_axis": 1}
    lazy = func(da.from_array(image, chunks=(4, 2, 5)), kernel, **options)
    eager = func(image, kernel, **options)
    _same(lazy, eager)
    if mode in SCIPY_MODES:
        dilated = np.zeros((8, 5))
        dilated[:, ::2] = kernel
        oracle = getattr(ndi, name)  # the same anchors, even sizes included
        for c in range(3):
            want = oracle(image[:, c].astype(np.float64), dilated, mode=SCIPY_MODES[mode])
            np.testing.assert_allclose(lazy[:, c].compute(), want, rtol=1e-10, atol=1e-9)


def test_engine_mean_float_and_cval() -> None:
    image = np.random.default_rng(1).random((30, 17))
    kernel = np.ones((13, 13)) / 169.0  # larger than the 6 x 4 chunks
    dimage = da.from_array(image, chunks=(6, 4))
    _same(cs.correlate(dimage, kernel, mode="mean"), cs.correlate(image, kernel, mode="mean"))
    _same(
        cs.convolve(dimage, kernel, mode="constant", cval=2.5),
        cs.convolve(image, kernel, mode="constant", cval=2.5),
    )


def test_engine_1d_and_3d() -> None:
    rng = np.random.default_rng(2)
    line = rng.random(50)
    _same(cs.correlate(da.from_array(line, chunks=7), [1, 2, 3]), cs.correlate(line, [1, 2, 3]))
    volume = rng.random((9, 10, 11))
    kernel = rng.random((3, 5, 2))
    _same(
        cs.convolve(da.from_array(volume, chunks=4), kernel, mode="wrap"),
        cs.convolve(volume, kernel, mode="wrap"),
    )


def test_nan_spreads_over_its_footprint_across_chunks() -> None:
    image = np.zeros((12, 12))
    image[4, 5] = np.nan  # on a chunk edge (chunks of 5)
    lazy = cs.correlate(da.from_array(image, chunks=5), np.ones((3, 3)))
    np.testing.assert_array_equal(
        np.isnan(lazy.compute()), np.isnan(cs.correlate(image, np.ones((3, 3))))
    )


def test_result_is_lazy_and_keeps_chunks() -> None:
    image = da.from_array(_image(np.uint8, None), chunks=(5, 7))
    out = filters.median_blur(image, 5)
    assert out.chunks == image.chunks
    out = cs.correlate(image, np.ones((3, 3)))
    assert out.chunks == image.chunks
    assert out.dtype == np.float64


def test_engine_refuses_stride_and_other_padding() -> None:
    image = da.zeros((10, 10), chunks=5)
    with pytest.raises(ValueError, match=r"`stride` must be 1 for a dask `image`; got 2"):
        cs.correlate(image, np.ones((3, 3)), stride=2)
    with pytest.raises(
        ValueError, match=r"`padding` must be 'same' for a dask `image`; got 'valid'"
    ):
        cs.convolve(image, np.ones((3, 3)), padding="valid")
    with pytest.raises(ValueError, match=r"`padding` must be 'same' for a dask `image`"):
        cs.correlate(image, np.ones((3, 3)), padding=1)


def test_bad_arguments_raise_at_call_time() -> None:
    image = da.zeros((10, 10), chunks=5, dtype=np.uint8)
    with pytest.raises(ValueError, match="`size` must be an odd int"):
        filters.median_blur(image, 4)
    with pytest.raises(ValueError, match="`mode`"):
        filters.box_blur(image, 3, mode="bogus")
    with pytest.raises(TypeError, match="`image` must have dtype"):
        filters.box_blur(da.zeros((10, 10), chunks=5, dtype=np.int64), 3)
    with pytest.raises(ValueError, match="`image` must be 2-D"):
        filters.sobel(da.zeros((10,), chunks=5), 1, 0)
    with pytest.raises(ValueError, match="`kernel` must have one axis per spatial axis"):
        cs.correlate(image, np.ones(3))
    with pytest.raises(ValueError, match="`dilation`"):
        cs.correlate(image, np.ones((3, 3)), dilation=0)


def test_import_never_loads_dask() -> None:
    code = (
        "import sys, numpy as np, convstack\n"
        "from convstack import filters\n"
        "filters.gaussian_blur(np.zeros((8, 8), np.uint8), 3, 1.0)\n"
        "convstack.correlate(np.zeros((8, 8)), np.ones((3, 3)))\n"
        "loaded = sorted(m for m in sys.modules if m == 'dask' or m.startswith('dask.'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_channels_split_over_chunks() -> None:
    """Bilateral weighs the colour distance over every channel: chunks split the channels."""
    image = _image(np.uint8, 3, shape=(12, 14))
    lazy = filters.bilateral(da.from_array(image, chunks=(5, 5, 1)), 5, 40.0, 3.0)
    _same(lazy, filters.bilateral(image, 5, 40.0, 3.0))
    _same(filters.box_blur(da.from_array(image, chunks=(5, 5, 2)), 3), filters.box_blur(image, 3))


def test_unknown_chunk_sizes_are_refused() -> None:
    image = da.from_array(np.arange(40.0).reshape(8, 5), chunks=(3, 5))
    unknown = image[image[:, 0] > 10]  # boolean indexing: rows per chunk unknown
    with pytest.raises(ValueError, match=r"`image` must have known chunk sizes"):
        filters.box_blur(unknown, 3)
    with pytest.raises(ValueError, match=r"`image` must have known chunk sizes"):
        cs.correlate(unknown, np.ones((3, 3)))


def test_other_dask_collections_are_refused() -> None:
    bag = pytest.importorskip("dask.bag")
    with pytest.raises(TypeError, match=r"`image` must be a dask array .*; got Bag"):
        filters.box_blur(bag.from_sequence([1, 2, 3]), 3)
