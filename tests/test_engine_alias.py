"""Outputs are placed away from their input modulo ALIAS_BYTES (see _methods.empty_apart)."""

from __future__ import annotations

import numpy as np
import pytest

from convstack import _methods, correlate
from convstack.filters import gaussian_blur


def _delta(out: np.ndarray, source: np.ndarray) -> int:
    return (_methods._address(out) - _methods._address(source)) % _methods.ALIAS_BYTES


def _apart(out: np.ndarray, source: np.ndarray) -> bool:
    gap, period = _methods.ALIAS_GAP, _methods.ALIAS_BYTES
    return gap <= _delta(out, source) <= period - gap


@pytest.mark.parametrize("offset", [-3 * 1024, -64, 0, 16, 48, 4096, 7 * 1024])
@pytest.mark.parametrize(("shape", "dtype"), [((512, 512), np.float32), ((300, 301, 3), np.uint8)])
def test_empty_apart_keeps_its_distance(offset, shape, dtype) -> None:
    """Whatever the allocator hands out, the array lies ALIAS_GAP or more from the
    source modulo ALIAS_BYTES; a source placed where the allocator's next block would
    alias it (the freed probe's address, give or take ``offset``) takes the padded
    branch. Shape, dtype, C order, alignment and writability as np.empty's."""
    period = _methods.ALIAS_BYTES
    probe = np.empty(shape, dtype)
    target = _methods._address(probe) - offset
    del probe
    room = np.empty(3 * period, np.uint8)
    start = (target - _methods._address(room)) % period
    source = room[start : start + 4096]
    out = _methods.empty_apart(shape, dtype, source)
    assert out.shape == shape and out.dtype == dtype
    assert out.flags.c_contiguous and out.flags.writeable
    assert _methods._address(out) % np.dtype(dtype).itemsize == 0
    assert _apart(out, source)
    out[...] = 7
    assert (out == 7).all()


def test_small_arrays_are_plain() -> None:
    source = np.zeros(16)
    out = _methods.empty_apart((10,), np.float64, source)
    assert out.base is None and out.shape == (10,)


def test_engine_outputs_after_their_input() -> None:
    """An image and its output allocated one after the other on the heap (the output
    lands right after the image: ``out - in`` is the image's size + 16 bytes, 0 modulo
    1 MiB for 512^2 float32): direct, separable and Gaussian outputs keep their
    distance, with the same values as before."""
    rng = np.random.default_rng(0)
    for _ in range(3):
        image = rng.random((512, 512), dtype=np.float32)
        kernel = rng.normal(size=(3, 3)).astype(np.float32)
        direct = correlate(image, kernel, mode="mirror", method="direct")
        assert _apart(direct, image)
        separable = correlate(image, np.outer([1, 2, 1], [1, 0, -1]), method="separable")
        assert _apart(separable, image)
        blurred = gaussian_blur(image, 5)
        assert _apart(blurred, image)
        colour = (rng.random((512, 512, 4)) * 255).astype(np.uint8)
        assert _apart(gaussian_blur(colour, 5), colour)
        expected = correlate(image.copy(), kernel, mode="mirror", method="direct")
        np.testing.assert_array_equal(direct, expected)
