"""Calibrated height maps, focus channels (issue 15).

Oracles: a plain loop over the whole focus curve (argmax, the parabola through its
neighbours by hand), the synthetic scene's true depth, and fusing the same frames
given as separate PNG files.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from convstack.cli import main
from convstack.metrics import psnr
from convstack.stack import fuse
from convstack.stack.height import FocusCurve, parse_length, subframe_height
from convstack.stack.io import read_image, write_image
from convstack.stack.synthetic import make_scene, render_stack

RNG = np.random.default_rng(150)


# ------------------------------------------------------------------ lengths
@pytest.mark.parametrize(
    ("text", "micrometres"),
    [("2.5um", 2.5), ("2.5 µm", 2.5), ("2.5μm", 2.5), ("500nm", 0.5), ("0.01mm", 10.0), ("3", 3.0)],
)
def test_parse_length(text, micrometres):
    assert parse_length(text) == pytest.approx(micrometres)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0um", r"`z_step` must be a finite length > 0; got 0.0 um"),
        ("-2um", r"`z_step` must be a finite length > 0; got -2.0 um"),
        ("2.5 furlong", r"`z_step` must be in a known unit \(um, µm, nm, mm\); got 'furlong'"),
        ("um", r"`z_step` must be a length such as 2.5um or 500nm; got 'um'"),
    ],
)
def test_bad_lengths_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_length(text)


# ------------------------------------------------------------------ the focus curve
def _loop_peak(curves: np.ndarray) -> np.ndarray:
    """The slow, obvious peak: argmax of each pixel's curve, then the parabola vertex."""
    n, rows, cols = curves.shape
    out = np.empty((rows, cols))
    for r in range(rows):
        for c in range(cols):
            s = [float(x) for x in curves[:, r, c]]
            k = max(range(n), key=lambda i: (s[i], -i))  # first of equal maxima
            offset = 0.0
            if 0 < k < n - 1:
                a, b, d = s[k - 1], s[k], s[k + 1]
                if 2 * b - a - d > 0:
                    offset = min(0.5, max(-0.5, (d - a) / (2 * (2 * b - a - d))))
            out[r, c] = k + offset
    return out


@pytest.mark.parametrize("reference", [0, 3, 6])
def test_focus_curve_peak_equals_a_loop_in_any_order(reference):
    n = 7
    curves = RNG.random((n, 5, 6)).astype(np.float32)
    order = [reference, *range(reference + 1, n), *range(reference - 1, -1, -1)]
    curve = FocusCurve()
    for i in order:
        curve.add(i, curves[i])
        assert len(curve.kept) <= 3  # memory does not grow with the frames
    peak, confidence = curve.peak(n)
    np.testing.assert_allclose(peak, _loop_peak(curves), atol=1e-5)
    expected = 1 - curves.mean(0) / curves.max(0)
    np.testing.assert_allclose(confidence, expected, atol=1e-5)


def test_parabola_finds_a_sampled_peak():
    """A Gaussian focus curve sampled at whole frames peaks at its centre (the parabola
    through three samples of exp(-x^2/8) is within 0.05 frames of it)."""
    centre = np.array([[2.3, 4.7], [3.0, 1.5]])
    frames = np.arange(7.0)[:, None, None]
    curves = np.exp(-((frames - centre) ** 2) / 8.0).astype(np.float32)
    curve = FocusCurve()
    for i in range(7):
        curve.add(i, curves[i])
    np.testing.assert_allclose(curve.peak(7)[0], centre, atol=0.05)


def test_subframe_height_falls_back_to_the_depth_map():
    peak = np.array([[1.2, 5.0]], np.float32)
    depth = np.array([[1.0, 2.0]], np.float32)
    np.testing.assert_allclose(subframe_height(peak, depth), [[1.2, 2.0]], rtol=1e-6)
    with pytest.raises(ValueError, match=r"`peak` must have the shape of `depth` \(1, 2\)"):
        subframe_height(peak[:, :1], depth)


# ------------------------------------------------------------------ the target
FRAMES, STEP_UM, PX_PER_FRAME = 9, 2.5, 1.25


@pytest.fixture(scope="module")
def ome_stack(tmp_path_factory):
    """A 16-bit, 3-channel OME-TIFF z-stack of a synthetic scene with known depth: 9
    planes 2.5 um apart, blur growing 1.25 px a plane (as the demo's 480-row scenes)."""
    folder = tmp_path_factory.mktemp("ome")
    scene = make_scene((192, 256), seed=0)
    inv = 1.0 / scene.depth.astype(np.float64)
    span = inv.max() - inv.min()
    stack = render_stack(scene, FRAMES, aperture=PX_PER_FRAME * (FRAMES - 1) / span, noise=0.005)
    # frame k is focused at 1/z_k, evenly spaced from the nearest to the farthest
    truth = (inv.max() - inv) / span * (FRAMES - 1)
    frames = np.rint(stack.frames * 65535).astype(np.uint16)
    path = folder / "stack.ome.tif"
    tifffile.imwrite(
        path,
        np.moveaxis(frames, -1, 1),
        metadata={
            "axes": "ZCYX",
            "PhysicalSizeZ": STEP_UM,
            "PhysicalSizeX": 0.65,
            "PhysicalSizeY": 0.65,
            "Channel": {"Name": ["red", "green", "blue"]},
        },
    )
    pngs = []
    for k, frame in enumerate(frames):
        pngs.append(folder / f"frame_{k}.png")
        write_image(pngs[-1], frame)
    return path, pngs, truth, np.rint(scene.image * 65535).astype(np.uint16)


def test_height_map_error_and_fused_psnr_on_an_ome_zstack(ome_stack, tmp_path):
    """Measured: height MAE 0.238 planes (the regularised depth map: 0.323); PSNR the
    same as from the PNGs (the same pixels: 0 dB apart)."""
    path, pngs, truth, sharp = ome_stack
    height_file = tmp_path / "height.tif"
    out = tmp_path / "edf.tif"
    code = main(["fuse", str(path), "-o", str(out), "--height-map", str(height_file), "--quiet"])
    assert code == 0
    heights = read_image(height_file)
    assert heights.dtype == np.float32
    error = np.abs(heights / STEP_UM - truth)
    assert error.mean() <= 0.26, error.mean()  # target 0.30 z-steps
    with tifffile.TiffFile(out) as tif:
        fused = np.moveaxis(tif.asarray(), 0, -1)
        assert 'Name="green"' in tif.ome_metadata and 'PhysicalSizeX="0.65"' in tif.ome_metadata
    from_pngs = fuse(pngs).image
    assert (
        abs(psnr(sharp, fused, data_range=65535) - psnr(sharp, from_pngs, data_range=65535)) < 0.1
    )
    np.testing.assert_array_equal(fused, from_pngs)  # (in fact the same)


def test_height_map_is_the_peak_times_the_z_step(ome_stack, tmp_path):
    path, _, _, _ = ome_stack
    result = fuse(path, height=True)
    assert result.height is not None and result.height_confidence is not None
    files = {name: tmp_path / f"{name}.tif" for name in ("h", "c")}
    code = main(
        ["fuse", str(path), "-o", str(tmp_path / "o.png"), "--z-step", "500nm", "--quiet"]
        + ["--height-map", str(files["h"]), "--confidence", str(files["c"])]
    )
    assert code == 0
    np.testing.assert_allclose(read_image(files["h"]), result.height * np.float32(0.5), rtol=1e-6)
    np.testing.assert_array_equal(read_image(files["c"]), result.height_confidence)
    assert fuse(path).height is None  # (only when asked)


def _pages(path):
    with tifffile.TiffWriter(path) as tif:
        for _ in range(3):
            tif.write((RNG.random((16, 16)) * 255).astype(np.uint8), metadata=None)


def test_height_needs_a_z_step(tmp_path, capsys):
    _pages(tmp_path / "z.tif")  # plain pages: no spacing
    code = main(
        ["fuse", str(tmp_path / "z.tif"), "-o", str(tmp_path / "o.png")]
        + ["--height-map", str(tmp_path / "h.tif")]
    )
    err = capsys.readouterr().err
    assert code != 0 and "--height-map and --mesh need the z-step" in err
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("0um", r"--z-step must be a finite length > 0; got 0.0 um"),
        ("2.5parsec", r"--z-step must be in a known unit"),
    ],
)
def test_bad_z_step_on_the_cli(tmp_path, capsys, option, message):
    _pages(tmp_path / "z.tif")
    code = main(
        ["fuse", str(tmp_path / "z.tif"), "-o", str(tmp_path / "o.png"), "--z-step", option]
        + ["--height-map", str(tmp_path / "h.tif")]
    )
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("error:")
    assert pytest.importorskip("re").search(message, err), err


# ------------------------------------------------------------------ focus channels
def _crossed_stack(dtype, channels: int):
    """Channel 0 sharp on the left in frame 0 and on the right in frame 1; channel 1 the
    other way round; the other channels flat. Returns frames and the sharp channels."""
    rows, cols = 32, 48
    rng = np.random.default_rng(channels)  # its own draw: the same whatever ran before
    sharp = ndi.gaussian_filter(rng.random((channels, rows, cols)), (0, 1, 1))
    sharp = (sharp - sharp.min()) / (sharp.max() - sharp.min())
    soft = ndi.gaussian_filter(sharp, (0, 3, 3))
    left = np.arange(cols) < cols // 2
    frame0, frame1 = soft.copy(), soft.copy()
    frame0[0][:, left], frame1[0][:, ~left] = sharp[0][:, left], sharp[0][:, ~left]
    frame0[1][:, ~left], frame1[1][:, left] = sharp[1][:, ~left], sharp[1][:, left]
    top = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 1.0
    frames = [np.moveaxis(f * top, 0, -1).astype(dtype) for f in (frame0, frame1)]
    return frames, np.moveaxis(sharp * top, 0, -1)


@pytest.mark.parametrize(("dtype", "channels"), [(np.uint8, 2), (np.uint16, 5), (np.float32, 8)])
def test_focus_channel_decides_for_every_channel(dtype, channels):
    frames, sharp = _crossed_stack(dtype, channels)
    top = float(sharp.max())
    scores = {}
    for choice in (0, 1):
        image = fuse(frames, align="none", focus_channel=choice).image
        assert image.dtype == np.dtype(dtype) and image.shape == frames[0].shape
        scores[choice] = [psnr(sharp[..., c], image[..., c], data_range=top) for c in (0, 1)]
    # channel c fuses sharp when focus is decided on it, soft when on the other one
    # (measured 22.8-28.0 dB apart on these seeded draws, the least 22.8: uint8, channel 1)
    assert scores[0][0] > scores[1][0] + 22 and scores[1][1] > scores[0][1] + 22, scores
    weights = [1.0] + [0.0] * (channels - 1)
    np.testing.assert_array_equal(
        fuse(frames, align="none", focus_channel=weights).image,
        fuse(frames, align="none", focus_channel=0).image,
    )


@pytest.mark.parametrize(
    ("choice", "message"),
    [
        (2, r"`focus_channel` must be a channel index in \[0, 1\]; got 2"),
        ([1.0, 1.0, 1.0], r"`focus_channel` must give one weight for each of the 2 channels"),
        ([-1.0, 2.0], r"`focus_channel` must be weights >= 0 with a sum > 0"),
    ],
)
def test_bad_focus_channel(choice, message):
    frames, _ = _crossed_stack(np.uint8, 2)
    with pytest.raises(ValueError, match=message):
        fuse(frames, align="none", focus_channel=choice)


def test_focus_channel_out_of_range_on_the_cli(ome_stack, tmp_path, capsys):
    path = ome_stack[0]
    code = main(["fuse", str(path), "-o", str(tmp_path / "o.tif"), "--focus-channel", "3"])
    err = capsys.readouterr().err
    assert code != 0 and "--focus-channel must be a channel index in [0, 2]; got 3." in err
    code = main(["fuse", str(path), "-o", str(tmp_path / "o.tif"), "--focus-channel", "1,2"])
    err = capsys.readouterr().err
    assert code != 0 and "one weight for each of the 3 channels; got 2" in err
