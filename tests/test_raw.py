"""Camera RAW frames through LibRaw (issue 15): a small DNG that the test writes itself.

The DNG is a 16-bit Bayer mosaic (RGGB) with the tags LibRaw reads (NewSubFileType,
PhotometricInterpretation 32803 = CFA, CFARepeatPatternDim, CFAPattern, DNGVersion,
UniqueCameraModel, WhiteLevel, BlackLevel, ColorMatrix1, AsShotNeutral). Oracles:
the white balance and linearity the file's own tags imply.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from convstack.cli import main
from convstack.stack.errors import FrameReadError
from convstack.stack.io import list_frames, read_image

rawpy = pytest.importorskip("rawpy")

WHITE = 4095
NEUTRAL = (0.5, 1.0, 0.25)  # as-shot neutral: a grey object gives R, G, B in these ratios


def write_dng(path, grey):
    """A DNG of a scene whose grey levels ``grey`` (rows, cols in [0, 1]) a camera with
    the as-shot neutral :data:`NEUTRAL` recorded through an RGGB mosaic."""
    rows, cols = grey.shape
    mosaic = np.empty((rows, cols))
    mosaic[0::2, 0::2] = grey[0::2, 0::2] * NEUTRAL[0]  # R
    mosaic[0::2, 1::2] = grey[0::2, 1::2] * NEUTRAL[1]  # G
    mosaic[1::2, 0::2] = grey[1::2, 0::2] * NEUTRAL[1]  # G
    mosaic[1::2, 1::2] = grey[1::2, 1::2] * NEUTRAL[2]  # B
    identity = (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1)  # 3x3 SRATIONAL
    tags = [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: R G / G B
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50708, "s", 0, "convstack test camera", True),  # UniqueCameraModel
        (50717, "I", 1, WHITE, True),  # WhiteLevel
        (50714, "I", 1, 0, True),  # BlackLevel
        (50721, "2i", 9, identity, True),  # ColorMatrix1 (XYZ -> camera)
        (50728, "2I", 3, (1, 2, 1, 1, 1, 4), True),  # AsShotNeutral 1/2, 1, 1/4
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1 D65
    ]
    tifffile.imwrite(
        path,
        np.rint(mosaic * WHITE).astype(np.uint16),
        photometric=32803,  # CFA
        subfiletype=0,
        extratags=tags,
        metadata=None,
    )


def test_dng_reads_as_linear_white_balanced_rgb(tmp_path):
    grey = np.full((32, 48), 0.2)
    grey[:, 24:] = 0.4  # twice as bright on the right
    write_dng(tmp_path / "frame.dng", grey)
    image = read_image(tmp_path / "frame.dng")
    assert image.dtype == np.uint16 and image.shape == (32, 48, 3)
    left = image[8:24, 4:18].reshape(-1, 3).mean(0)
    right = image[8:24, 30:44].reshape(-1, 3).mean(0)
    # the camera's white balance makes the grey object grey ...
    np.testing.assert_allclose(left, left.mean(), rtol=0.02)
    np.testing.assert_allclose(right, right.mean(), rtol=0.02)
    # ... and the data stay linear (gamma 1, no brightening): twice the light, twice the value
    np.testing.assert_allclose(right / left, 2.0, rtol=0.02)
    assert 0.1 * 65535 < left.mean() < 0.9 * 65535


def test_a_folder_of_dng_frames_is_a_stack(tmp_path):
    rng = np.random.default_rng(0)
    texture = rng.random((32, 48)) * 0.5 + 0.1
    for k in range(3):
        write_dng(tmp_path / f"f{k}.dng", texture)
    assert [p.name for p in list_frames(tmp_path)] == ["f0.dng", "f1.dng", "f2.dng"]
    out = tmp_path / "out.tif"
    assert main(["fuse", str(tmp_path), "-o", str(out), "--align", "none", "--quiet"]) == 0
    fused = read_image(out)
    assert fused.dtype == np.uint16 and fused.shape == (32, 48, 3)


def test_undecodable_raw_is_a_named_error(tmp_path, capsys):
    (tmp_path / "broken.nef").write_bytes(b"not a raw file at all" * 10)
    with pytest.raises(FrameReadError, match=r"broken\.nef: LibRaw cannot decode it"):
        read_image(tmp_path / "broken.nef")
    write_dng(tmp_path / "good.dng", np.full((32, 48), 0.3))
    out = tmp_path / "out.png"
    code = main(["fuse", str(tmp_path / "good.dng"), str(tmp_path / "broken.nef"), "-o", str(out)])
    err = capsys.readouterr().err
    assert code != 0 and "broken.nef: LibRaw cannot decode it" in err and "Traceback" not in err
    assert not out.exists()


def test_missing_rawpy_is_named(tmp_path, monkeypatch):
    import sys

    write_dng(tmp_path / "frame.dng", np.full((16, 16), 0.3))
    monkeypatch.setitem(sys.modules, "rawpy", None)  # (import rawpy raises ImportError)
    with pytest.raises(FrameReadError, match=r"needs rawpy \(LibRaw\): pip install"):
        read_image(tmp_path / "frame.dng")
