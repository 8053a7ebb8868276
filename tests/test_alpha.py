"""Frames with alpha keep it (the union of their coverage), and float32 outputs (issue 15).

Oracles: ``np.maximum.reduce`` of the frames' alphas, and ``fuse`` of the colour alone.
"""

from __future__ import annotations

import imagecodecs
import numpy as np
import pytest
import tifffile

from convstack.cli import main
from convstack.stack import fuse
from convstack.stack.alpha import fuse_with_alpha, read_alpha
from convstack.stack.io import read_image
from test_stack_fusion import two_depth_stack


def _rgba(dtype=np.uint8):
    frames, _ = two_depth_stack(rows=32, cols=48, count=3)
    top = np.iinfo(dtype).max
    out = []
    for i, frame in enumerate(frames):
        alpha = np.zeros(frame.shape[:2], dtype)
        alpha[:, i * 10 : i * 10 + 20] = top
        alpha[4, 40] = top // 2  # a half-covered pixel in one frame
        colour = frame.astype(dtype) * dtype(257) if dtype == np.uint16 else frame
        out.append(np.dstack([colour, alpha]))
    return out


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_alpha_is_the_union_of_coverage(dtype):
    frames = _rgba(dtype)
    result = fuse_with_alpha(frames, align="none")
    assert result.image.shape == (32, 48, 4) and result.image.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(
        result.image[..., 3], np.maximum.reduce([f[..., 3] for f in frames])
    )
    np.testing.assert_array_equal(
        result.image[..., :3], fuse([f[..., :3] for f in frames], align="none").image
    )


def test_alpha_from_files_and_the_cli(tmp_path):
    frames = _rgba()
    paths = []
    for i, frame in enumerate(frames):
        paths.append(tmp_path / f"f{i}.png")
        paths[-1].write_bytes(imagecodecs.png_encode(frame))
    tifffile.imwrite(tmp_path / "opaque.tif", frames[0][..., :3])  # no alpha: covers all
    assert read_alpha(tmp_path / "opaque.tif") is None
    np.testing.assert_array_equal(read_alpha(paths[1]), frames[1][..., 3])
    expected = fuse_with_alpha(frames, align="none").image
    np.testing.assert_array_equal(fuse_with_alpha(paths, align="none").image, expected)
    for suffix in (".png", ".tif"):
        out = tmp_path / f"out{suffix}"
        args = ["fuse", *map(str, paths), "-o", str(out), "--alpha", "--align", "none", "--quiet"]
        assert main(args) == 0
        written = (
            tifffile.imread(out) if suffix == ".tif" else imagecodecs.png_decode(out.read_bytes())
        )
        np.testing.assert_array_equal(written, expected)
    mixed = fuse_with_alpha([*paths[:2], tmp_path / "opaque.tif"], align="none").image
    assert np.all(mixed[..., 3] == 255)


def test_float32_output(tmp_path):
    frames, _ = two_depth_stack(rows=24, cols=32, count=3)
    paths = []
    for i, frame in enumerate(frames):
        paths.append(tmp_path / f"f{i}.png")
        paths[-1].write_bytes(imagecodecs.png_encode(frame))
    out = tmp_path / "out.tif"
    assert main(["fuse", *map(str, paths), "-o", str(out), "--float32", "--quiet"]) == 0
    written = read_image(out)
    assert written.dtype == np.float32
    expected = fuse(paths).image / np.float32(255)
    np.testing.assert_allclose(written, expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("options", "output", "message"),
    [
        (["--alpha"], "out.jpg", "--alpha needs a .png or .tif output (JPEG holds no alpha)"),
        (["--float32"], "out.png", "--float32 writes a float32 TIFF: give a .tif output"),
    ],
)
def test_output_format_must_hold_it(tmp_path, capsys, options, output, message):
    frames = _rgba()
    paths = []
    for i, frame in enumerate(frames):
        paths.append(tmp_path / f"f{i}.png")
        paths[-1].write_bytes(imagecodecs.png_encode(frame))
    assert main(["fuse", *map(str, paths), "-o", str(tmp_path / output), *options]) != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / output).exists()


def test_array_frames_need_alpha():
    frames, _ = two_depth_stack(rows=16, cols=16, count=2)
    with pytest.raises(ValueError, match=r"`frames\[0\]` must be \(rows, cols, 2 or 4\)"):
        fuse_with_alpha(frames, align="none")
