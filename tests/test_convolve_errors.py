"""Every bad input to correlate / convolve gets a clear error naming the argument."""

from __future__ import annotations

import numpy as np
import pytest

from convstack import convolve, correlate

IMG = np.ones((4, 5))
K = np.ones((2, 3))


@pytest.mark.parametrize("func", [correlate, convolve])
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        # kernel larger than the padded image
        (
            {"kernel": np.ones((5, 3)), "padding": "valid"},
            ValueError,
            r"`kernel` must fit inside the padded image: along spatial axis 0 .* spans 5 .* has 4",
        ),
        (
            {"kernel": np.ones((2, 4)), "padding": 0, "dilation": (1, 2)},
            ValueError,
            r"`kernel` must fit inside the padded image: along spatial axis 1 .* spans 7",
        ),
        # stride / dilation
        ({"stride": 0}, ValueError, r"`stride` must be >= 1 for every axis; got \(0, 0\)"),
        ({"stride": (1, -2)}, ValueError, r"`stride` must be >= 1 for every axis; got \(1, -2\)"),
        ({"dilation": (1, 0)}, ValueError, r"`dilation` must be >= 1 for every axis"),
        ({"stride": 1.5}, TypeError, r"`stride` must be an int or a sequence of 2 ints"),
        ({"dilation": (1, 1, 1)}, TypeError, r"`dilation` must be an int or a sequence of 2"),
        ({"stride": True}, TypeError, r"`stride` must be an int"),
        # mode / method / cval
        ({"mode": "symmetric"}, ValueError, r"`mode` must be one of 'constant', .*'symmetric'"),
        ({"mode": None}, ValueError, r"`mode` must be one of"),
        ({"method": "fast"}, ValueError, r"`method` must be one of 'auto', .*; got 'fast'"),
        (
            {"mode": "wrap", "cval": 1.0},
            ValueError,
            r"`cval` must be 0 with mode='wrap', which ignores it; got 1.0",
        ),
        ({"mode": "nearest", "cval": -2}, ValueError, r"`cval` must be 0 with mode='nearest'"),
        ({"mode": "mean", "cval": 3}, ValueError, r"`cval` must be 0 with mode='mean'"),
        ({"cval": "x"}, TypeError, r"`cval` must be a real number; got 'x'"),
        # kernel rank and channel axis
        (
            {"kernel": np.ones(3)},
            ValueError,
            r"`kernel` must have one axis per spatial axis of `image` \(2\); got a 1-D kernel",
        ),
        ({"kernel": np.ones((2, 2, 2))}, ValueError, r"`kernel` must have one axis per spatial"),
        (
            {"kernel": np.ones((2, 2)), "channel_axis": -1},
            ValueError,
            r"`kernel` must have one axis per spatial axis of `image` \(1\)",
        ),
        ({"channel_axis": 2}, ValueError, r"`channel_axis` must lie in \[-2, 1\]"),
        ({"channel_axis": 1.0}, TypeError, r"`channel_axis` must be an int or None"),
        # empty, complex, object, string
        ({"image": np.ones((0, 3))}, ValueError, r"`image` must not be empty"),
        ({"kernel": np.ones((0, 2))}, ValueError, r"`kernel` must not be empty"),
        ({"image": IMG * 1j}, TypeError, r"`image` must be an array of real numbers .*complex"),
        ({"kernel": K.astype(complex)}, TypeError, r"`kernel` must be an array of real.*complex"),
        ({"image": np.array([[1, None]])}, TypeError, r"`image` must be .*got dtype object"),
        ({"image": [[1, 2], [3]]}, TypeError, r"`image` must be an array of real numbers"),
        ({"image": np.array([["a"]])}, TypeError, r"`image` must be an array of real numbers"),
        ({"image": 5.0, "kernel": np.ones(1)}, ValueError, r"`image` must have at least one"),
        # padding
        ({"padding": -1}, ValueError, r"`padding` must be 'same', 'valid', 'full', an int >= 0"),
        ({"padding": ((1, 2), (3, -1))}, ValueError, r"`padding` must be .*; got \(\(1, 2\)"),
        ({"padding": "half"}, ValueError, r"`padding` must be one of 'same', 'valid', 'full'"),
        ({"padding": (1, 2, 3)}, TypeError, r"`padding` must be .* per spatial axis"),
        ({"padding": 1.5}, TypeError, r"`padding` must be .*; got 1.5"),
        ({"padding": True}, TypeError, r"`padding` must be .*; got True"),
        ({"padding": ((1, 2, 3), (0, 0))}, TypeError, r"`padding` must be"),
    ],
)
def test_bad_input(func, kwargs, error, match) -> None:
    kwargs = dict(kwargs)
    image = kwargs.pop("image", IMG)
    kernel = kwargs.pop("kernel", K)
    with pytest.raises(error, match=match):
        func(image, kernel, **kwargs)


def test_padding_lets_a_large_kernel_fit() -> None:
    """The same kernel that is too large for 'valid' is fine once padding makes room."""
    with pytest.raises(ValueError, match="`kernel` must fit"):
        correlate(np.ones(3), np.ones(6), padding="valid")
    assert correlate(np.ones(3), np.ones(6), padding=(2, 1)).shape == (1,)
    assert correlate(np.ones(3), np.ones(6)).shape == (3,)
