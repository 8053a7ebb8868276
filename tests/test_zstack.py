"""One file as a focus stack: multi-page TIFF, ImageJ hyperstack, OME-TIFF (issue 15).

The oracle is the array each file was written from (tifffile writes it; reading goes
through :mod:`convstack.stack.zstack`, page by page), and ``fuse`` of the same planes
given as arrays.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

from convstack.cli import main
from convstack.stack import fuse
from convstack.stack.errors import FrameReadError
from convstack.stack.io import read_image
from convstack.stack.zstack import open_zstack, parse_index
from test_stack_fusion import two_depth_stack

RNG = np.random.default_rng(15)


def _planes(count: int, rows: int = 12, cols: int = 14, channels: int = 3, dtype=np.uint16):
    top = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 1.0
    return (RNG.random((count, channels, rows, cols)) * top).astype(dtype)  # Z C Y X


def _write(path: Path, kind: str, zcyx: np.ndarray) -> None:
    if kind == "pages":  # a plain multi-page TIFF, one grey page a plane
        with tifffile.TiffWriter(path) as tif:
            for plane in zcyx[:, 0]:
                tif.write(plane, metadata=None)
    elif kind == "rgb_pages":  # RGB pages (samples in the page)
        with tifffile.TiffWriter(path) as tif:
            for plane in np.moveaxis(zcyx, 1, -1):
                tif.write(plane, photometric="rgb", metadata=None)
    elif kind == "imagej":
        tifffile.imwrite(
            path, zcyx, imagej=True, metadata={"axes": "ZCYX", "spacing": 2.5, "unit": "um"}
        )
    else:
        tifffile.imwrite(
            path,
            zcyx,
            metadata={"axes": "ZCYX", "PhysicalSizeZ": 2.0, "Channel": {"Name": ["a", "b", "c"]}},
        )


KINDS = ["pages", "rgb_pages", "imagej", "ome"]


@pytest.mark.parametrize("kind", KINDS)
def test_planes_read_as_written(tmp_path, kind):
    zcyx = _planes(5)
    if kind == "pages":
        zcyx = zcyx[:, :1]
    path = tmp_path / ("z.ome.tif" if kind == "ome" else "z.tif")
    _write(path, kind, zcyx)
    stack = open_zstack(path)
    assert (stack.planes, stack.rows, stack.cols) == (5, 12, 14)
    for z in range(5):
        expected = np.moveaxis(zcyx[z], 0, -1)
        expected = expected[..., 0] if expected.shape[-1] == 1 else expected
        np.testing.assert_array_equal(stack.read(z), expected)


def test_calibration_and_channel_names(tmp_path):
    zcyx = _planes(3)
    _write(tmp_path / "ij.tif", "imagej", zcyx)
    _write(tmp_path / "z.ome.tif", "ome", zcyx)
    assert open_zstack(tmp_path / "ij.tif").z_step == 2.5
    ome = open_zstack(tmp_path / "z.ome.tif")
    assert ome.z_step == 2.0 and ome.channel_names == ("a", "b", "c")


def test_nanometre_spacing_is_converted(tmp_path):
    tifffile.imwrite(
        tmp_path / "z.ome.tif",
        _planes(3),
        metadata={"axes": "ZCYX", "PhysicalSizeZ": 500, "PhysicalSizeZUnit": "nm"},
    )
    assert open_zstack(tmp_path / "z.ome.tif").z_step == pytest.approx(0.5)


def test_fusing_the_file_equals_fusing_its_planes(tmp_path):
    frames, _ = two_depth_stack(rows=32, cols=40, count=4)
    zcyx = np.moveaxis(np.stack(frames), -1, 1).astype(np.uint16) * np.uint16(257)
    path = tmp_path / "z.ome.tif"
    _write(path, "ome", zcyx)
    planes = [np.moveaxis(p, 0, -1) for p in zcyx]
    expected = fuse(planes, align="none").image
    np.testing.assert_array_equal(fuse(path, align="none").image, expected)
    np.testing.assert_array_equal(fuse([str(path)], align="none").image, expected)
    out = tmp_path / "edf.tif"
    assert main(["fuse", str(path), "-o", str(out), "--align", "none", "--quiet"]) == 0
    with tifffile.TiffFile(out) as tif:  # an OME stack gives an OME-TIFF: CYX, names kept
        assert tif.is_ome and tif.series[0].axes == "CYX"
        assert 'Name="b"' in tif.ome_metadata
        np.testing.assert_array_equal(np.moveaxis(tif.asarray(), 0, -1), expected)
    png = tmp_path / "edf.png"  # three channels may go to PNG too
    assert main(["fuse", str(path), "-o", str(png), "--align", "none", "--quiet"]) == 0
    np.testing.assert_array_equal(read_image(png), expected)


def test_planes_are_read_one_at_a_time(tmp_path):
    """Memory does not scale with the planes: reading them all, one after the other,
    peaks at a few planes' bytes while the file holds 24."""
    zcyx = _planes(24, rows=64, cols=64)
    path = tmp_path / "z.ome.tif"
    _write(path, "ome", zcyx)
    stack = open_zstack(path)
    plane_bytes = zcyx[0].nbytes
    stack.read(0)  # (the file opened, its pages parsed)
    tracemalloc.start()
    try:
        for z in range(24):
            stack.read(z)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * plane_bytes, (peak, plane_bytes)  # the whole file: 24 planes


def _tzcyx(path: Path, ome: bool) -> np.ndarray:
    data = (RNG.random((2, 3, 2, 8, 10)) * 65535).astype(np.uint16)
    if ome:
        tifffile.imwrite(path, data, metadata={"axes": "TZCYX"})
    else:
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"})
    return data


@pytest.mark.parametrize("ome", [True, False], ids=["ome", "imagej"])
def test_time_axis_is_refused_or_picked(tmp_path, ome):
    path = tmp_path / ("t.ome.tif" if ome else "t.tif")
    data = _tzcyx(path, ome)
    with pytest.raises(FrameReadError, match=r"t\..*tif: axes other than Z, Y, X .*: T \(2\)"):
        open_zstack(path)
    stack = open_zstack(path, index="T=1")
    for z in range(3):
        np.testing.assert_array_equal(stack.read(z), np.moveaxis(data[1, z], 0, -1))


def test_time_axis_refused_by_the_cli(tmp_path, capsys):
    path = tmp_path / "t.ome.tif"
    _tzcyx(path, True)
    out = tmp_path / "out.tif"
    assert main(["fuse", str(path), "-o", str(out), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error:") and "T (2)" in err and "--index" in err
    assert "Traceback" not in err and not out.exists()
    assert main(["fuse", str(path), "-o", str(out), "--index", "T=0", "--align", "none"]) == 0


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ("Q=0", r"--index names axis Q, which the file does not have \(its axes: TZCYX"),
        ("T=2", r"--index T=2 is out of range; axis T has 2 entries"),
    ],
)
def test_bad_index_is_named(tmp_path, index, message):
    path = tmp_path / "t.ome.tif"
    _tzcyx(path, True)
    with pytest.raises(FrameReadError, match=rf"t\.ome\.tif: {message}"):
        open_zstack(path, index=index)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("T0", r"`index` entries must read AXIS=N \(as T=0\); got 'T0'"),
        ("TT=1", r"`index` axes must be single letters"),
        ("T=-1", r"`index` T must be an integer >= 0; got '-1'"),
        ("T=x", r"`index` T must be an integer >= 0; got 'x'"),
    ],
)
def test_index_syntax(text, message):
    with pytest.raises(ValueError, match=message):
        parse_index(text)
    assert parse_index("t=0, P=3") == {"T": 0, "P": 3}


def test_pages_of_different_sizes_are_refused(tmp_path):
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tif:
        for cols in (10, 10, 12):
            tif.write(np.zeros((8, cols), np.uint16), metadata=None)
    with pytest.raises(FrameReadError, match=r"mixed\.tif: its pages differ in size or dtype"):
        open_zstack(tmp_path / "mixed.tif")
    with pytest.raises(FrameReadError, match=r"mixed\.tif: its pages differ in size or dtype"):
        fuse(tmp_path / "mixed.tif")


def test_pages_of_different_dtypes_are_refused(tmp_path):
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tif:
        tif.write(np.zeros((8, 10), np.uint16), metadata=None)
        tif.write(np.zeros((8, 10), np.uint16), metadata=None)
        tif.write(np.zeros((8, 10), np.uint8), metadata=None)
    with pytest.raises(FrameReadError, match=r"mixed\.tif: .*uint16, 8 x 10 uint8.*same size"):
        open_zstack(tmp_path / "mixed.tif")


def test_one_plane_along_z_is_refused(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "one.ome.tif", _planes(1), metadata={"axes": "ZCYX"})
    with pytest.raises(FrameReadError, match=r"one\.ome\.tif: a Z axis of 1 plane"):
        open_zstack(tmp_path / "one.ome.tif")


def test_index_needs_one_zstack_file(tmp_path, capsys):
    frames, _ = two_depth_stack(rows=16, cols=16, count=2, colour=False)
    for i, frame in enumerate(frames):
        tifffile.imwrite(tmp_path / f"f{i}.tif", frame)
    code = main(["fuse", str(tmp_path), "-o", str(tmp_path / "o.tif"), "--index", "T=0"])
    assert code != 0 and "--index picks planes of one z-stack file" in capsys.readouterr().err


def test_a_folder_of_zstack_files_is_a_batch(tmp_path):
    """Each z-stack file under the folder is a stack of its own; plain frames beside them
    still make their folder's stack."""
    from convstack.stack.batch import find_stacks

    scans = tmp_path / "scans"
    scans.mkdir()
    expected = {}
    for k in range(2):
        frames, _ = two_depth_stack(rows=24, cols=32, count=3, seed=k)
        zcyx = np.moveaxis(np.stack(frames), -1, 1).astype(np.uint16) * np.uint16(257)
        _write(scans / f"s{k}.ome.tif", "ome", zcyx)
        expected[f"s{k}"] = fuse(scans / f"s{k}.ome.tif", align="none").image
    frames, _ = two_depth_stack(rows=24, cols=32, count=2)
    for i, frame in enumerate(frames):
        tifffile.imwrite(scans / f"frame{i}.tif", frame)
    names = sorted(stack.name for stack in find_stacks(tmp_path))
    assert names == ["scans", "scans/s0", "scans/s1"]
    out = tmp_path / "fused"
    assert main(["batch", str(tmp_path), "-o", str(out), "--align", "none", "--quiet"]) == 0
    for name, image in expected.items():  # (OME in, OME out: channel planes)
        written = tifffile.imread(out / "scans" / f"{name}.tif")
        np.testing.assert_array_equal(np.moveaxis(written, 0, -1), image)


@pytest.mark.parametrize("imagej", [False, True], ids=["ome", "imagej"])
def test_big_endian_file_reads_in_native_order(tmp_path, imagej):
    zcyx = _planes(3, channels=2)
    path = tmp_path / ("be.tif" if imagej else "be.ome.tif")
    options = {"imagej": True} if imagej else {}
    tifffile.imwrite(path, zcyx, byteorder=">", metadata={"axes": "ZCYX"}, **options)
    stack = open_zstack(path)
    for z in range(3):
        plane = stack.read(z)
        assert plane.dtype.isnative
        np.testing.assert_array_equal(plane, np.moveaxis(zcyx[z], 0, -1))
