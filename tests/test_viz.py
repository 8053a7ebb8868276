"""convstack.viz: every figure function returns a Figure and writes a non-empty PNG; the
convolution animation has one frame per output cell, counted here independently by sliding
the dilated kernel over the padded input by hand."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from convstack import viz  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

RNG = np.random.default_rng(7)
GRAY = RNG.random((24, 32))
COLOUR = (RNG.random((24, 32, 3)) * 255).astype(np.uint8)

FIGURES = {
    "array_table": lambda path: viz.array_table([[1, 2, 3]], title="f", path=path),
    "array_table_cmap": lambda path: viz.array_table(GRAY[:4, :5] - 0.5, cmap="RdBu_r", path=path),
    "surface": lambda path: viz.surface(GRAY[:8, :8], title="s", path=path),
    "signal_plot": lambda path: viz.signal_plot(
        np.linspace(0, 6, 50),
        np.sin(np.linspace(0, 6, 50)),
        np.cos(np.linspace(0, 6, 50)),
        [SimpleNamespace(x=np.pi / 2, y=1.0, kind="max")],
        path=path,
    ),
    "image_grid": lambda path: viz.image_grid(
        [GRAY, COLOUR, GRAY - 0.5], ["gray", "colour", "signed"], colorbar=True, path=path
    ),
    "sharpness_maps": lambda path: viz.sharpness_maps(np.stack([GRAY, GRAY**2]), path=path),
    "depth_map": lambda path: viz.depth_map(RNG.integers(0, 4, (24, 32)), path=path),
    "kernel_plot": lambda path: viz.kernel_plot([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], path=path),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_function_returns_figure_and_writes_png(tmp_path, name):
    path = tmp_path / f"{name}.png"
    fig = FIGURES[name](path)
    assert isinstance(fig, Figure)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    with Image.open(path) as image:
        assert image.size[0] > 50 and image.size[1] > 20
    assert not list(tmp_path.glob(".*")), "no temporary file may be left behind"


def test_figure_without_path_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert isinstance(viz.surface(GRAY[:5, :5]), Figure)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_kept_unless_overwrite(tmp_path):
    path = tmp_path / "t.png"
    path.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="`path` must not exist"):
        viz.array_table([1, 2], path=path)
    assert path.read_bytes() == b"keep"
    viz.array_table([1, 2], path=path, overwrite=True)
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="existing folder"):
        viz.array_table([1, 2], path=tmp_path / "nope" / "t.png")


def test_inputs_are_not_modified():
    image = GRAY.copy()
    viz.image_grid([image], ["x"])
    viz.surface(image)
    np.testing.assert_array_equal(image, GRAY)


def test_array_table_writes_each_value():
    fig = viz.array_table([[2, 4, 2], [0.5, -1.25, 3]])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["2", "4", "2", "0.50", "-1.25", "3"]


def test_image_grid_keeps_colour_and_scales_uint8():
    fig = viz.image_grid([COLOUR], ["c"])
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(shown, COLOUR / 255.0)


def test_sharpness_maps_share_one_scale():
    fig = viz.sharpness_maps([GRAY, 2 * GRAY])
    limits = {im.get_clim() for ax in fig.axes for im in ax.images}
    assert len(limits) == 1
    assert limits.pop()[1] == pytest.approx(2 * GRAY.max())


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: viz.surface([1, 2, 3]), "`z` must be a 2-D array"),
        (lambda: viz.array_table(np.zeros((2, 2, 2))), "`a` must be a 1-D or 2-D array"),
        (lambda: viz.image_grid([]), "`images` must hold at least one image"),
        (lambda: viz.image_grid([GRAY], ["a", "b"]), "`titles` must have one entry per image"),
        (lambda: viz.signal_plot([1, 2], [1, 2, 3]), "`y` must have the length of `x`"),
        (lambda: viz.depth_map([1, 2]), "`depth` must be a 2-D array"),
        (lambda: viz.sharpness_maps([GRAY, GRAY[:3]]), r"`maps\[1\]` must be 2-D"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_missing_matplotlib_asks_for_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "convstack\[plots\]"'):
        viz.array_table([1, 2])


# ---------------------------------------------------------------- the animation


def independent_frame_count(n, k, before, after, stride, dilation):
    """Positions where every dilated tap lands inside the padded input, by brute force."""
    padded = n + before + after
    span = dilation * (k - 1)
    return len([start for start in range(0, padded, stride) if start + span < padded])


CASES = [
    # (input, kernel, padding as (before, after) per axis, stride, dilation)
    ((5, 5), (3, 3), ((0, 0), (0, 0)), (1, 1), (1, 1)),
    ((5, 5), (3, 3), ((1, 1), (1, 1)), (1, 1), (1, 1)),
    ((5, 5), (3, 3), ((0, 0), (0, 0)), (2, 2), (1, 1)),
    ((7, 7), (3, 3), ((0, 0), (0, 0)), (1, 1), (2, 2)),
    ((6, 5), (3, 2), ((1, 2), (0, 1)), (2, 1), (1, 2)),
    ((4, 7), (2, 3), ((2, 2), (1, 1)), (3, 2), (2, 1)),
]


@pytest.mark.parametrize(("shape", "kshape", "pads", "stride", "dilation"), CASES)
def test_animation_has_one_frame_per_output_cell(tmp_path, shape, kshape, pads, stride, dilation):
    path = viz.convolution_animation(
        shape,
        kshape,
        padding=pads,
        stride=stride,
        dilation=dilation,
        path=tmp_path / "a.gif",
    )
    expected = 1
    for n, k, (b, a), s, d in zip(shape, kshape, pads, stride, dilation, strict=True):
        expected *= independent_frame_count(n, k, b, a, s, d)
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == expected


def test_animation_one_dimensional_and_same_padding(tmp_path):
    path = viz.convolution_animation(7, 3, padding="same", stride=2, path=tmp_path / "a.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == independent_frame_count(7, 3, 1, 1, 2, 1) == 4


def test_sweep_taps_follow_stride_and_dilation():
    geometry = viz.sweep((7, 7), (2, 2), padding=0, stride=2, dilation=3)
    assert geometry.output_shape == (2, 2)
    assert geometry.taps(1, 1) == [(2, 2), (2, 5), (5, 2), (5, 5)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_shape": (3, 3), "kernel_shape": (5, 5)}, "must fit inside the padded input"),
        ({"input_shape": (3, 3), "kernel_shape": (3,)}, "`kernel_shape` must have as many axes"),
        ({"input_shape": (3, 3, 3), "kernel_shape": (1, 1, 1)}, "`input_shape` must be 1 or 2"),
        ({"input_shape": (5, 5), "kernel_shape": (3, 3), "stride": 0}, "`stride` must be >= 1"),
        ({"input_shape": (64, 64), "kernel_shape": (1, 1)}, "at most 1024 frames"),
    ],
)
def test_animation_bad_input(tmp_path, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        viz.convolution_animation(**kwargs, path=tmp_path / "a.gif")
    assert not (tmp_path / "a.gif").exists()


def test_image_grid_value_ranges():
    gray8 = np.array([[10, 20], [30, 40]], np.uint8)
    signed = np.array([[-1.0, 0.5], [0.0, 0.25]])
    labels = np.array([[0, 1], [2, 3]], np.int64)
    fig = viz.image_grid([gray8, signed, labels])
    limits = [ax.images[0].get_clim() for ax in fig.axes]
    assert limits == [(0.0, 255.0), (-1.0, 1.0), (0.0, 3.0)]


def test_kernel_plot_constant_kernel_is_drawn_against_zero():
    fig = viz.kernel_plot(np.full((3, 3), 1 / 9))
    assert fig.axes[0].images[0].get_clim() == (0.0, pytest.approx(1 / 9))
