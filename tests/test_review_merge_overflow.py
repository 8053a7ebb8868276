"""Review: the default soft rule's finest-level factor must not overflow float32.

The finest level's weight base is ``(1 + E / tau) * (1 + E / (1024 tau))``: about
``(E / tau) ** 2 / 1024``. With a first frame whose 10 % energy quantile is exactly 0
(a black background) ``tau`` is its floor (then 1e-12), and float frames in 16-bit units
(values up to 65535, accepted as they are) reach ``E / tau ~ 1e21``: the base
overflowed to inf and ``inf / inf`` made the weights, and most of the result, NaN
(the plain eighth power, the rule before, stayed finite there).
"""

from __future__ import annotations

import numpy as np
import pytest

from convstack.stack import fusion as F


def _frames(scale: float, shape: tuple[int, ...] = (96, 112)) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    first = np.zeros(shape, np.float32)
    first[:, shape[1] // 2 :] = rng.random((shape[0], shape[1] - shape[1] // 2) + shape[2:])
    second = rng.random(shape).astype(np.float32)
    third = (0.5 * rng.random(shape)).astype(np.float32)
    return [f * np.float32(scale) for f in (first, second, third)]


@pytest.mark.parametrize("scale", [1.0, 255.0, 65535.0, 1e6])
def test_pyramid_merge_of_large_float_frames_is_finite(scale: float) -> None:
    frames = _frames(scale)
    result = F.pyramid_merge(frames)
    assert np.isfinite(result).all(), int(np.isnan(result).sum())  # fails before: NaN


@pytest.mark.parametrize("strip_rows", [None, 16])
def test_accumulator_paths_are_finite_and_the_same_bits(strip_rows: int | None) -> None:
    # the whole-frame add, the strips' add and the strip-major merge (add_coarse +
    # merge_strips) on 1e6-unit frames over a black first frame
    frames = _frames(1e6, (130, 97, 3))
    whole = F.PyramidAccumulator(strip_rows=strip_rows)
    major = F.PyramidAccumulator(strip_rows=strip_rows or 24)
    planar = []
    for i, frame in enumerate(frames):
        whole.add(i, frame)
        major.add_coarse(i, frame)
        planar.append(np.moveaxis(frame, 2, 0))
    # the floor (the first frame's quantile is 0): TAU_FLOOR of its largest energy
    # (~1e11 here), the same in every path
    assert 0 < whole.tau[0] == major.tau[0] < 1.0
    expected = whole.result(None, np.uint16)
    got = major.merge_strips(
        lambda i, lo, hi, p=planar: p[i][..., lo:hi, :].copy(), [0, 1, 2], None, np.uint16
    )
    np.testing.assert_array_equal(got, expected)
    values = whole.result()
    assert np.isfinite(values).all()


def test_weight_base_is_finite_ordered_and_unchanged_below_overflow() -> None:
    tau = 1e-12
    energy = np.array(
        [0.0, 1e-13, 1e-9, 1.0, 1e3, 1e6, 1e8, 1e9, 3e9, 1e12, 1e20, 3e38, np.inf], np.float32
    )
    base = energy.copy()
    F._to_weight_base(base, tau, F.EDGE_FLOOR)
    assert np.isfinite(base).all()
    assert (np.diff(base) >= 0).all()  # larger energy, never a smaller weight
    # below the overflow, the documented float32 steps exactly (hand-written here)
    e = energy[:7]
    factor = e * np.float32(1.0 / (F.EDGE_FLOOR * tau)) + np.float32(1.0 + 1.0 / F.EDGE_FLOOR)
    want = (e * factor) * np.float32(1.0 / tau) + np.float32(1.0)
    np.testing.assert_array_equal(base[:7], want)
    # the base is still the product of the two factors there (float64)
    e64 = e.astype(np.float64)
    np.testing.assert_allclose(base[:7], (1 + e64 / tau) * (1 + e64 / (1024 * tau)), rtol=1e-6)
