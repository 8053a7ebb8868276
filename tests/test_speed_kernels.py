"""The fuse stages' compiled loops, restructured for speed, against obviously-correct
NumPy passes: the same float32 operations in the same order, so the same bits."""

from __future__ import annotations

import numpy as np
import pytest

from convstack import _k_pyramid


def _power(values: np.ndarray, whole: int) -> np.ndarray:
    """``values ** whole`` in float32 by repeated squaring, the products in the order
    the pyramid merge documents (square while even; else multiply in the odd bits)."""
    values = values.copy()
    if whole & (whole - 1) == 0:
        while whole > 1:
            values = values * values
            whole >>= 1
        return values
    square = values.copy()
    whole -= 1
    while whole:
        if whole & 1:
            values = values * square
        whole >>= 1
        if whole:
            square = square * square
    return values


def _soft_merge_reference(
    energy: np.ndarray,
    band: np.ndarray,
    top: np.ndarray,
    weight: np.ndarray,
    total: np.ndarray,
    scale: np.float32,
    whole: int,
    start: int,
    stop: int,
    offset: int,
) -> None:
    """The soft merge's documented formula, whole-array NumPy passes, in place."""
    rows = slice(start + offset, stop + offset)
    base = energy[start:stop] * scale
    base = base + np.float32(1.0)
    t = top[rows]
    largest = np.where(t >= base, t, base)
    old = _power(t / largest, whole)
    new = _power(base / largest, whole)
    top[rows] = largest
    weight[rows] = weight[rows] * old + new
    total[:, rows] = total[:, rows] * old + band[:, start:stop] * new


@pytest.mark.parametrize("whole", [1, 2, 3, 5, 7, 8, 13, 16, 31, 63, 64])
@pytest.mark.parametrize("planes", [1, 3, 4])
def test_soft_merge_rows_is_the_formula_bit_for_bit(whole: int, planes: int) -> None:
    rng = np.random.default_rng(whole * 10 + planes)
    rows, cols, offset = 11, 37, 2
    energy = (10 ** rng.uniform(-4, 2, (rows, cols))).astype(np.float32)
    band = rng.standard_normal((planes, rows, cols)).astype(np.float32)
    scale = np.float32(rng.uniform(0.5, 50.0))
    top = (1 + 10 ** rng.uniform(-4, 3, (rows + offset, cols))).astype(np.float32)
    top[offset : offset + 3] = energy[:3] * scale + np.float32(1.0)  # ties with the base
    weight = rng.uniform(1, 3, (rows + offset, cols)).astype(np.float32)
    total = rng.standard_normal((planes, rows + offset, cols)).astype(np.float32)
    inputs = (energy.copy(), band.copy())
    expected = [top.copy(), weight.copy(), total.copy()]
    _soft_merge_reference(energy, band, *expected, scale, whole, 1, rows - 1, offset)
    got = [top.copy(), weight.copy(), total.copy()]
    _k_pyramid.soft_merge_rows(energy, band, *got, scale, whole, 1, rows - 1, offset)
    for g, e in zip(got, expected, strict=True):
        assert g.tobytes() == e.tobytes()
    # rows outside start:stop untouched, inputs unchanged
    assert got[0][offset].tobytes() == top[offset].tobytes()
    assert got[2][:, -1].tobytes() == total[:, -1].tobytes()
    assert energy.tobytes() == inputs[0].tobytes() and band.tobytes() == inputs[1].tobytes()
