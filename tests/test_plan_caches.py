"""The engine's memo caches stay within their byte budgets, and a NaN ``cval`` finds its plan."""

from __future__ import annotations

import gc
import importlib
import tracemalloc

import numpy as np
import pytest

from convstack import _methods, correlate
from convstack.padding import CACHED_MAP_POSITIONS, Border

engine = importlib.import_module("convstack.convolve")  # the module, not the function


def _held_by(run) -> int:
    """Bytes still allocated (traced) after ``run()`` returned, its garbage collected."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_bounded_cache_by_count_and_bytes() -> None:
    calls = []

    def build(n: int) -> np.ndarray:
        calls.append(n)
        return np.zeros(n, dtype=np.uint8)

    cache = _methods.BoundedCache(build, 3, 100, lambda args, result: result.nbytes)
    assert cache(10) is cache(10) and calls == [10]  # a hit returns the kept result
    for n in (20, 30, 40):
        cache(n)
    assert len(cache) <= 3 and cache.held_bytes() <= 100
    assert cache.held_bytes() == 90  # 20 + 30 + 40: the oldest, 10, went (count)
    cache(30)  # used: now the newest
    cache(50)  # 20 + 40 + 30 + 50: 20 (count), then 40 (bytes) go, not 30
    assert cache.held_bytes() == 80
    calls.clear()
    cache(30)
    assert calls == []
    big = cache(101)  # over the budget alone: returned, not kept
    assert big.nbytes == 101 and cache.held_bytes() == 80
    cache.cache_clear()
    assert len(cache) == 0 and cache.held_bytes() == 0


def test_cost_model_cache_bounded_by_bytes() -> None:
    """Forty distinct 300x300 float64 kernels (720 KB each) leave the cost model's cache
    within MEMO_BYTES (before: 256 entries, 29 MB here and up to 184 MB)."""
    engine._costs.cache_clear()
    rng = np.random.default_rng(0)
    kernels = [np.outer(rng.random(300), rng.random(300)) for _ in range(40)]  # (rank 1: quick)

    def run() -> None:
        for kernel in kernels:
            engine.choose_method((400, 400), kernel, (400, 400), ((150, 149),) * 2, (1, 1), (1, 1))

    held = _held_by(run)
    assert engine._costs.held_bytes() <= _methods.MEMO_BYTES
    assert held <= _methods.MEMO_BYTES + (1 << 20)
    assert len(engine._costs) >= 10  # still caches: the newest kernels
    engine._costs.cache_clear()


def test_row_geometry_and_index_maps_bounded_by_bytes() -> None:
    """Border maps of twenty distinct very wide images (1.6 MB each): the direct rows'
    geometry cache stays within MEMO_BYTES and maps that long are not kept at all."""
    _methods._row_geometry.cache_clear()
    widths = [200_000 + i for i in range(20)]

    def run() -> None:
        for n in widths:
            _methods._row_geometry((3, n), ((1, 1), (1, 1)), "mirror", (3, 3), (1, 1), (1, 1), n)

    held = _held_by(run)
    assert _methods._row_geometry.held_bytes() <= _methods.MEMO_BYTES
    assert held <= _methods.MEMO_BYTES + (1 << 20)
    _methods._row_geometry.cache_clear()
    assert _held_by(lambda: Border(((0, 0),), "wrap", np.zeros(1)).index_maps((300_000,))) < 4096
    short = Border(((2, 2),), "wrap", np.zeros(1)).index_maps((CACHED_MAP_POSITIONS - 4,))[0]
    assert (
        short is Border(((2, 2),), "wrap", np.zeros(1)).index_maps((CACHED_MAP_POSITIONS - 4,))[0]
    )


@pytest.mark.parametrize(
    "make_nan", [lambda: float("nan"), lambda: -float("nan"), lambda: np.float32("nan")]
)
def test_nan_cval_finds_its_plan(make_nan) -> None:
    """A NaN ``cval`` made anew for each call is planned once (before: a plan per call,
    each evicting another), and the cached plan gives a fresh call's bits."""
    image = np.random.default_rng(1).random((20, 23))
    kernel = np.random.default_rng(2).normal(size=(3, 3))
    engine._PLANS.clear()
    first = correlate(image, kernel, mode="constant", cval=make_nan())
    count = len(engine._PLANS)
    for _ in range(5):
        again = correlate(image, kernel, mode="constant", cval=make_nan())
        np.testing.assert_array_equal(again.view(np.uint64), first.view(np.uint64))
    assert len(engine._PLANS) == count
    assert np.isnan(first[0]).all() and np.isfinite(first[5:-5, 5:-5]).all()


def test_nan_cvals_of_other_bits_or_types_plan_apart() -> None:
    """NaNs of another sign or float type are other keys: each call still gives a fresh
    call's bits (the fill's NaN is the one given)."""
    image = np.random.default_rng(3).random((9, 9))
    kernel = np.ones((3, 3))
    engine._PLANS.clear()
    values = [float("nan"), -float("nan"), np.float32("nan"), np.float64("nan")]
    for value in values:
        correlate(image, kernel, mode="constant", cval=value)
    assert len(engine._PLANS) == 4  # float and np.float64: other types, as for 1.0
    for value in values:
        cached = correlate(image, kernel, mode="constant", cval=value)
        engine._PLANS.clear()
        fresh = correlate(image, kernel, mode="constant", cval=value)
        np.testing.assert_array_equal(cached.view(np.uint64), fresh.view(np.uint64))


def test_kernel_spectra_bounded_by_bytes(monkeypatch) -> None:
    """FFT kernel spectra are kept within SPECTRUM_BYTES (before: 16 of any size, the
    N-D path's as large as the image); the FFT result does not depend on what is kept."""
    _methods._spectrum_cached.cache_clear()
    rng = np.random.default_rng(4)
    image = rng.random((6, 40, 40))  # 3-D: whole-array spectra, 8 x 45 x 23 complex128
    kernels = [rng.normal(size=(3, 3, 3)) for _ in range(3)]
    first = [correlate(image, kernel, method="fft") for kernel in kernels]
    assert len(_methods._spectrum_cached) == 3
    monkeypatch.setattr(_methods._spectrum_cached, "_max_bytes", 300_000)  # 2 of 132 KB
    _methods._spectrum_cached.cache_clear()
    again = [correlate(image, kernel, method="fft") for kernel in kernels]
    assert _methods._spectrum_cached.held_bytes() <= 300_000
    assert len(_methods._spectrum_cached) == 2
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    _methods._spectrum_cached.cache_clear()
