"""Review of correlate/convolve's plan cache (convstack.convolve._plan) and the direct
rows' cached border maps (convstack._methods._row_geometry).

Each test runs a call whose arguments differ from a cached one in a single respect
and compares it, bit for bit, with the same call planned afresh (caches emptied): a
plan or a border map reused for the wrong arguments shows as a difference.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy import ndimage as ndi

from convstack import convolve, correlate

engine = importlib.import_module("convstack.convolve")
methods = importlib.import_module("convstack._methods")


def _fresh(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call`` with every plan and border map forgotten first."""
    engine._PLANS.clear()
    methods._row_geometry.cache_clear()
    return call(*args, **kwargs)


def _same_bits(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    assert got.tobytes() == want.tobytes()


IMAGE = np.random.default_rng(0).random((11, 13))
KERNEL = np.random.default_rng(1).normal(size=(3, 5))

# (first call's arguments, second call's arguments): the second differs in one respect
PAIRS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("cval", {"mode": "constant", "cval": 0.0}, {"mode": "constant", "cval": 2.5}),
    ("cval sign", {"mode": "constant", "cval": 0.0}, {"mode": "constant", "cval": -0.0}),
    ("cval nan", {"mode": "constant", "cval": 1.0}, {"mode": "constant", "cval": np.nan}),
    ("mode", {"mode": "reflect"}, {"mode": "mirror"}),
    ("mode wrap", {"mode": "nearest"}, {"mode": "wrap"}),
    ("mode mean", {"mode": "constant"}, {"mode": "mean"}),
    ("padding", {"padding": "same"}, {"padding": "full"}),
    ("padding pairs", {"padding": ((1, 1), (2, 2))}, {"padding": [(1, 1), (2, 2)]}),
    ("padding int", {"padding": 2}, {"padding": (2, 3)}),
    ("stride", {"stride": 1}, {"stride": (2, 3)}),
    ("dilation", {"dilation": 1}, {"dilation": (2, 1)}),
    ("method direct", {"method": "separable"}, {"method": "direct"}),
    ("method fft", {"method": "direct"}, {"method": "fft"}),
]


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize(("name", "first", "second"), PAIRS, ids=[p[0] for p in PAIRS])
def test_a_call_after_a_cached_neighbour_matches_a_fresh_one(
    name: str, first: dict[str, Any], second: dict[str, Any], flip: bool
) -> None:
    call = convolve if flip else correlate
    want = _fresh(call, IMAGE, KERNEL, **second)
    engine._PLANS.clear()
    methods._row_geometry.cache_clear()
    call(IMAGE, KERNEL, **first)
    _same_bits(call(IMAGE, KERNEL, **second), want)
    call(IMAGE, KERNEL, **first)
    _same_bits(call(IMAGE, KERNEL, **second), want)


def _kernel_variants() -> list[tuple[str, np.ndarray]]:
    base = np.arange(1.0, 10.0).reshape(3, 3) / 45.0
    swapped = base.astype(base.dtype.newbyteorder())
    view = np.arange(1.0, 37.0).reshape(6, 6)[::2, 1::2] / 100.0  # a strided view
    same_bytes_int = base.view(np.int64)  # the same bytes, another dtype
    signed_zero = base.copy()
    signed_zero[1, 1] = -0.0
    zero = base.copy()
    zero[1, 1] = 0.0
    nan = base.copy()
    nan[0, 2] = np.nan
    inf = base.copy()
    inf[2, 0] = -np.inf
    return [
        ("base", base),
        ("transposed view", base.T),
        ("reshaped 1x9", base.reshape(1, 9)),
        ("reshaped 9x1", base.reshape(9, 1)),
        ("byte-swapped", swapped),
        ("strided view", view),
        ("same bytes as int64", same_bytes_int),
        ("float32", base.astype(np.float32)),
        ("-0.0 tap", signed_zero),
        ("0.0 tap", zero),
        ("nan tap", nan),
        ("inf tap", inf),
        ("int kernel", np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.int16)),
        ("bool kernel", np.array([[True, False, True], [False, True, False], [True] * 3])),
    ]


def test_kernels_with_equal_bytes_or_values_but_other_layouts_plan_apart() -> None:
    """Each kernel after all the others (cached) gives what it gives planned alone."""
    variants = _kernel_variants()
    image = np.random.default_rng(2).random((10, 12)).astype(np.float32)
    want = {name: _fresh(correlate, image, k, mode="wrap") for name, k in variants}
    engine._PLANS.clear()
    for _ in range(2):
        for name, k in variants + variants[::-1]:
            _same_bits(correlate(image, k, mode="wrap"), want[name])


def test_image_dtype_and_channel_layout_plan_apart() -> None:
    """The same values as float32 / float64 / uint8, channel-last, channel-first and
    a strided view: every call after the others matches its fresh self."""
    rng = np.random.default_rng(3)
    colour = (rng.random((9, 10, 3)) * 255).astype(np.uint8)
    kernel = rng.normal(size=(3, 3))
    cases: list[tuple[np.ndarray, int | None]] = [
        (colour, -1),
        (colour.astype(np.float32), -1),
        (colour.astype(np.float64), -1),
        (np.ascontiguousarray(np.moveaxis(colour, -1, 0)), 0),
        (np.moveaxis(colour, -1, 0), 0),  # channel-first view of channel-last data
        (colour[..., 0], None),
        (colour[:, ::-1, 1], None),
        (colour[..., :2], 2),
    ]
    want = [_fresh(correlate, img, kernel, channel_axis=ax, mode="mirror") for img, ax in cases]
    for _ in range(2):
        for (img, ax), w in zip(cases, want, strict=True):
            _same_bits(correlate(img, kernel, channel_axis=ax, mode="mirror"), w)
    for (img, ax), w in zip(cases, want, strict=True):  # and against SciPy per channel
        plane = np.moveaxis(np.asarray(img, dtype=np.float64), ax, 0) if ax is not None else None
        if plane is None:
            ref = ndi.correlate(np.asarray(img, dtype=np.float64), kernel, mode="mirror")
        else:
            ref = np.stack([ndi.correlate(p, kernel, mode="mirror") for p in plane])
            ref = np.moveaxis(ref, 0, ax)
        np.testing.assert_allclose(w, ref, rtol=1e-5, atol=1e-3)


def test_cached_arrays_are_not_written_by_the_calls_that_use_them() -> None:
    """The plan's taps and border fill and the border maps, shared by every later
    call, are unchanged after calls with NaN images, non-finite fills and each method."""
    rng = np.random.default_rng(4)
    kernel = rng.normal(size=(5, 5))
    engine._PLANS.clear()
    methods._row_geometry.cache_clear()
    calls = [
        {"mode": m, "method": meth}
        for m in ("constant", "reflect", "wrap")
        for meth in ("direct", "separable", "fft")
    ] + [{"mode": "constant", "cval": np.inf}, {"mode": "constant", "cval": np.nan}]
    image = rng.random((16, 17))
    for kwargs in calls:
        correlate(image, kernel, **kwargs)
    saved = {
        key: (plan.taps.copy(), None if plan.border is None else plan.border.fill.copy())
        for key, plan in engine._PLANS.items()
    }
    cached = _row_geometry_values()
    maps = [(v[0].copy(), v[1].copy()) for v in cached]
    dirty = image.copy()
    dirty[3, 4] = np.nan
    dirty[8, 0] = np.inf
    for kwargs in calls:
        correlate(dirty, kernel, **kwargs)
        correlate(dirty.astype(np.float32)[None], kernel[None], **kwargs)
    for key, (taps, fill) in saved.items():
        plan = engine._PLANS[key]
        _same_bits(plan.taps, taps)
        if fill is not None:
            _same_bits(plan.border.fill, fill)
    for (rmap, cmap), then, now in zip(maps, cached, _row_geometry_values(), strict=True):
        assert now is then  # the cached entry itself
        _same_bits(now[0], rmap)
        _same_bits(now[1], cmap)


def _row_geometry_values() -> list[Any]:
    """The direct rows' border maps of the 16x17 'same' 5x5 calls (the cached entries:
    ``lru_cache`` hands out the same objects for the same arguments)."""
    out = []
    for shape, pads, mode in [((16, 17), ((2, 2), (2, 2)), m) for m in ("reflect", "wrap")]:
        out.append(methods._row_geometry(shape, pads, mode, (5, 5), (1, 1), (1, 1), 17))
    return out


def test_threads_calling_at_once_get_their_own_results() -> None:
    """Eight threads, each with its own kernel, mode and image dtype, calling in turn
    while the cache is cleared and refilled under them."""
    rng = np.random.default_rng(5)
    image = rng.random((24, 20))
    jobs = [
        (image.astype(dt), rng.normal(size=(3, 3)), mode)
        for dt in (np.float32, np.float64)
        for mode in ("constant", "reflect", "wrap", "mean")
    ]
    want = [_fresh(correlate, img, k, mode=mode) for img, k, mode in jobs]
    errors: list[str] = []
    start = threading.Barrier(len(jobs) + 1)

    def work(i: int) -> None:
        img, k, mode = jobs[i]
        start.wait()
        for _ in range(40):
            got = correlate(img, k, mode=mode)
            if got.tobytes() != want[i].tobytes():
                errors.append(f"job {i} ({img.dtype}, {mode}) differs")
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    start.wait()
    for _ in range(40):
        engine._PLANS.clear()
        methods._row_geometry.cache_clear()
    for t in threads:
        t.join()
    assert errors == []


def test_a_kernel_changed_in_place_through_a_view_is_seen() -> None:
    """A kernel that is a view of a larger array, changed through the base."""
    base = np.zeros((7, 7))
    kernel = base[2:5, 2:5]
    kernel[1, 1] = 1.0
    image = np.random.default_rng(6).random((9, 9))
    _same_bits(correlate(image, kernel, mode="nearest"), image)
    base[3, 3] = 2.0
    np.testing.assert_array_equal(correlate(image, kernel, mode="nearest"), 2.0 * image)
    base[2, 3] = 1.0  # the tap above the centre: out[i, j] += image[i - 1, j]
    want = 2.0 * image + np.vstack([image[:1], image[:-1]])
    np.testing.assert_allclose(correlate(image, kernel, mode="nearest"), want, rtol=1e-15)


def test_the_plans_hold_a_bounded_number_of_kernel_bytes() -> None:
    """A plan holds its kernel twice (the key's bytes, the taps in the working float
    dtype): 64 KiB uint8 kernels had taps of 512 KiB each, 72 MiB for a full cache."""
    image = np.random.default_rng(7).random((40, 40))
    engine._PLANS.clear()
    for seed in range(engine._PLANS_MAX + 2):
        kernel = np.random.default_rng(seed).integers(0, 3, (256, 256), dtype=np.uint8)
        correlate(image, kernel, method="fft")
        correlate(image.astype(np.float32), kernel[:90, :90].astype(np.float32), method="fft")
    held = sum(plan.taps.nbytes + len(key[4]) for key, plan in engine._PLANS.items())
    assert held <= engine._PLANS_MAX * 2 * engine.PLAN_KERNEL_BYTES
