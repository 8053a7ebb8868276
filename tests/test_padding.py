"""pad() and the padding rules against numpy.pad and OpenCV copyMakeBorder."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from convstack import pad
from convstack._modes import NUMPY_PAD, OPENCV_BORDER, TORCH_PAD, border_indices
from convstack.padding import resolve_padding

INDEX_MODES = ("nearest", "reflect", "mirror", "wrap")


def test_lab_zero_padding_by_hand() -> None:
    assert pad([1, 2, 3], 1).tolist() == [0, 1, 2, 3, 0]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("constant", [0, 0, 1, 2, 3, 0, 0]),
        ("nearest", [1, 1, 1, 2, 3, 3, 3]),
        ("reflect", [2, 1, 1, 2, 3, 3, 2]),
        ("mirror", [3, 2, 1, 2, 3, 2, 1]),
        ("wrap", [2, 3, 1, 2, 3, 1, 2]),
        ("mean", [2, 2, 1, 2, 3, 2, 2]),
    ],
)
def test_modes_by_hand(mode: str, expected: list[int]) -> None:
    assert pad([1, 2, 3], 2, mode=mode).tolist() == expected


@pytest.mark.parametrize("mode", INDEX_MODES + ("constant",))
@pytest.mark.parametrize("pads", [((0, 0), (1, 2)), ((3, 1), (0, 4)), ((7, 5), (9, 2))])
def test_numpy_pad_parity(mode: str, pads) -> None:
    image = np.arange(12.0).reshape(3, 4)
    kwargs = {"constant_values": 0.0} if mode == "constant" else {}
    np.testing.assert_array_equal(
        pad(image, pads, mode=mode), np.pad(image, pads, mode=NUMPY_PAD[mode], **kwargs)
    )


@pytest.mark.parametrize("mode", INDEX_MODES + ("constant",))
@pytest.mark.parametrize("pads", [((1, 2), (0, 3)), ((5, 4), (6, 7))])
@pytest.mark.parametrize("channels", [None, 3])
def test_copymakeborder_parity(mode: str, pads, channels) -> None:
    shape = (3, 4) if channels is None else (3, 4, channels)
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    (top, bottom), (left, right) = pads
    cval = 1.5 if mode == "constant" else 0.0
    border = getattr(cv2, OPENCV_BORDER[mode])
    expected = cv2.copyMakeBorder(image, top, bottom, left, right, border, value=[cval] * 4)
    got = pad(image, pads, mode=mode, cval=cval, channel_axis=None if channels is None else -1)
    assert got.dtype == image.dtype
    np.testing.assert_array_equal(got, expected)


def test_torch_names() -> None:
    torch = pytest.importorskip("torch")
    image = torch.arange(12.0).reshape(1, 1, 3, 4)
    for mode, name in TORCH_PAD.items():
        if name is None:
            continue
        expected = torch.nn.functional.pad(image, (2, 1, 1, 2), mode=name)[0, 0].numpy()
        np.testing.assert_array_equal(
            pad(image[0, 0].numpy(), ((1, 2), (2, 1)), mode=mode), expected
        )


def test_mean_per_channel_and_axis() -> None:
    image = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 5.0)])  # channels first
    out = pad(image, 1, mode="mean", channel_axis=0)
    assert out.shape == (2, 4, 4)
    np.testing.assert_array_equal(out[0], 1.0)
    np.testing.assert_array_equal(out[1], 5.0)


def test_dtype_kept_and_input_untouched() -> None:
    image = np.arange(6, dtype=np.uint8).reshape(2, 3)
    image.setflags(write=False)
    out = pad(image, 0)
    assert out.dtype == np.uint8
    assert not np.shares_memory(out, image)
    np.testing.assert_array_equal(out, image)
    assert pad(image, (1, 0), mode="wrap").dtype == np.uint8


def test_one_axis_pair_is_before_after() -> None:
    assert pad([1, 2, 3], (1, 2), mode="nearest").tolist() == [1, 1, 2, 3, 3, 3]


@pytest.mark.parametrize("mode", INDEX_MODES)
def test_border_indices_long_pads_follow_numpy(mode: str) -> None:
    for n in (1, 2, 5):
        got = border_indices(n, 11, 13, mode)
        expected = np.pad(np.arange(n), (11, 13), mode=NUMPY_PAD[mode])
        np.testing.assert_array_equal(got, expected)


def test_border_indices_rejects_value_modes() -> None:
    with pytest.raises(ValueError, match="`mode` 'constant' has no index rule"):
        border_indices(3, 1, 1, "constant")


def test_resolve_padding_rules() -> None:
    assert resolve_padding("valid", (3, 4), (1, 1)) == ((0, 0), (0, 0))
    assert resolve_padding("full", (3, 4), (2, 1)) == ((4, 4), (3, 3))
    # 'same': anchor k//2 before, the rest after; convolution flips the anchor
    assert resolve_padding("same", (3, 4), (1, 1)) == ((1, 1), (2, 1))
    assert resolve_padding("same", (3, 4), (1, 1), flipped=True) == ((1, 1), (1, 2))
    assert resolve_padding("same", (4,), (3,)) == ((6, 3),)
    assert resolve_padding(2, (3, 3), (1, 1)) == ((2, 2), (2, 2))
    assert resolve_padding((1, 2), (3, 3), (1, 1)) == ((1, 1), (2, 2))
    assert resolve_padding([(1, 2), (0, 3)], (3, 3), (1, 1)) == ((1, 2), (0, 3))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"padding": "same"}, ValueError, r"`padding` must be an int, one int per axis"),
        ({"padding": -1}, ValueError, r"`padding` must be .* an int >= 0"),
        ({"padding": (1, 2, 3)}, TypeError, r"`padding` must be"),
        ({"padding": 1, "mode": "edge"}, ValueError, r"`mode` must be one of 'constant'"),
        (
            {"padding": 1, "mode": "reflect", "cval": 2},
            ValueError,
            r"`cval` must be 0 with mode='reflect'",
        ),
        ({"padding": 1, "channel_axis": 3}, ValueError, r"`channel_axis` must lie in"),
    ],
)
def test_pad_errors(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        pad(np.ones((3, 4)), **kwargs)


def test_pad_rejects_bad_arrays() -> None:
    with pytest.raises(ValueError, match="`image` must not be empty"):
        pad(np.ones((0, 2)), 1)
    with pytest.raises(TypeError, match="`image` must be an array of real numbers"):
        pad(np.ones(3, complex), 1)


def test_padding_does_not_import_the_engine():
    # issue 18: padding and the engine imported each other (one side lazily); the
    # border description and the block filler now live here and the engine imports them
    import ast
    import inspect

    from convstack import _methods, padding

    def imported(module):
        names = set()
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.ImportFrom):
                names.add(node.module or "")
                names.update(alias.name for alias in node.names)
        return names

    assert not {"_methods", "convolve"} & imported(padding)
    assert "padding" in imported(_methods)
    assert _methods.Border is padding.Border


@pytest.mark.parametrize("mode", ["constant", "nearest", "reflect", "mirror", "wrap"])
def test_fill_block_is_a_window_of_numpy_pad(mode):
    from convstack.padding import Border, fill_block

    image = np.arange(20.0).reshape(4, 5)
    pads = ((3, 6), (7, 2))
    border = Border(pads, mode, np.array([-1.5]))
    kwargs = {"constant_values": -1.5} if mode == "constant" else {}
    numpy_mode = {"nearest": "edge", "reflect": "symmetric", "mirror": "reflect"}.get(mode, mode)
    expected = np.pad(image, pads, mode=numpy_mode, **kwargs)
    maps = border.index_maps(image.shape)
    for rows, cols in (((0, 13), (0, 14)), ((2, 9), (5, 12)), ((10, 13), (0, 3))):
        out = np.full((rows[1] - rows[0], cols[1] - cols[0]), np.nan)
        fill_block(image, maps, border, 0, rows, cols, out)
        np.testing.assert_array_equal(out, expected[rows[0] : rows[1], cols[0] : cols[1]])
