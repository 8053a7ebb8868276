"""The height map as a PLY surface (issue 15), read back by a small PLY parser here."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from convstack.cli import main
from convstack.stack.errors import OutputError
from convstack.stack.mesh import mesh_colours, write_ply

_TYPES = {"float": "f4", "uchar": "u1", "int": "i4", "uint": "u4", "double": "f8"}


def read_ply(path):
    """(vertices as a dict of columns, faces (n, 3)): the PLY spec's header, then the
    elements in binary little-endian or ASCII, written independently of the writer."""
    data = path.read_bytes()
    head, body = data.split(b"end_header\n", 1)
    lines = head.decode("ascii").splitlines()
    assert lines[0] == "ply"
    form = lines[1].split()[1]
    elements = []
    for line in lines[2:]:
        words = line.split()
        if words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            elements[-1][2].append(words[1:])
    vertex_props = next(props for name, _, props in elements if name == "vertex")
    n_vertices = next(count for name, count, _ in elements if name == "vertex")
    n_faces = next(count for name, count, _ in elements if name == "face")
    names = [p[1] for p in vertex_props]
    if form == "ascii":
        rows = body.decode("ascii").splitlines()
        table = np.array([[float(x) for x in row.split()] for row in rows[:n_vertices]])
        vertices = {name: table[:, i] for i, name in enumerate(names)}
        faces = np.array([[int(x) for x in row.split()] for row in rows[n_vertices:]])
        assert np.all(faces[:, 0] == 3)
        return vertices, faces[:, 1:], n_faces
    assert form == "binary_little_endian"
    dtype = np.dtype([(p[1], "<" + _TYPES[p[0]]) for p in vertex_props])
    table = np.frombuffer(body, dtype, count=n_vertices)
    rest = body[n_vertices * dtype.itemsize :]
    faces = np.frombuffer(rest, np.dtype([("n", "u1"), ("v", "<i4", (3,))]), count=n_faces)
    assert np.all(faces["n"] == 3)
    assert len(rest) == n_faces * 13
    return {name: table[name] for name in names}, faces["v"], n_faces


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "ascii"])
def test_mesh_vertices_faces_and_colours(tmp_path, binary):
    rows, cols = 4, 5
    height = np.arange(rows * cols, dtype=np.float32).reshape(rows, cols) * 0.5
    image = np.zeros((rows, cols, 3), np.uint16)
    image[1, 2] = (65535, 0, 32896)  # -> (255, 0, 128)
    path = tmp_path / "m.ply"
    write_ply(path, height, image, pixel_size=(2.0, 0.5), binary=binary)
    vertices, faces, n_faces = read_ply(path)
    assert vertices["x"].size == rows * cols and n_faces == 2 * (rows - 1) * (cols - 1)
    # vertex of pixel (r, c) is r * cols + c: x = c * 0.5, y = (rows - 1 - r) * 2, z = height
    v = 1 * cols + 2
    assert (vertices["x"][v], vertices["y"][v], vertices["z"][v]) == (1.0, 4.0, height[1, 2])
    assert (vertices["red"][v], vertices["green"][v], vertices["blue"][v]) == (255, 0, 128)
    last = rows * cols - 1
    assert (vertices["x"][last], vertices["y"][last]) == (2.0, 0.0)
    # every triangle faces up (+z) over the flat xy grid, and every quad has two
    xy = np.stack([vertices["x"], vertices["y"]], axis=1)
    a, b, c = xy[faces[:, 0]], xy[faces[:, 1]], xy[faces[:, 2]]
    cross = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    np.testing.assert_allclose(cross, 0.5 * 2.0)  # twice the area of half a quad
    assert faces.max() == last and len({tuple(sorted(f)) for f in faces}) == n_faces


def test_mesh_step_decimates(tmp_path):
    height = np.random.default_rng(0).random((9, 13)).astype(np.float32)
    path = tmp_path / "m.ply"
    write_ply(path, height, step=4)
    vertices, _, n_faces = read_ply(path)
    assert vertices["x"].size == 3 * 4 and n_faces == 2 * 2 * 3
    np.testing.assert_array_equal(vertices["z"].reshape(3, 4), height[::4, ::4])
    assert set(vertices["red"]) == {200}


def test_mesh_colours_scale_each_dtype():
    np.testing.assert_array_equal(mesh_colours(np.array([[0.5]], np.float32)), [[[128] * 3]])
    np.testing.assert_array_equal(mesh_colours(np.array([[[255, 0]]], np.uint8)), [[[255, 0, 0]]])


def test_existing_ply_is_refused(tmp_path):
    path = tmp_path / "m.ply"
    path.write_bytes(b"mine")
    with pytest.raises(OutputError, match=r"m\.ply: already exists"):
        write_ply(path, np.zeros((2, 2)))
    assert path.read_bytes() == b"mine"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"height": np.zeros((1, 5))}, r"`height` must have at least 2 x 2 vertices"),
        ({"height": np.full((2, 2), np.nan)}, r"`height` must be finite everywhere"),
        ({"step": 0}, r"`step` must be an int >= 1; got 0"),
        ({"pixel_size": (0.0, 1.0)}, r"`pixel_size` must be two lengths > 0"),
        ({"colours": np.zeros((3, 3, 3))}, r"`colours` must have the size of `height` \(2, 2\)"),
    ],
)
def test_bad_mesh_arguments(tmp_path, kwargs, message):
    arguments = {"height": np.zeros((2, 2)), **kwargs}
    with pytest.raises(ValueError, match=message):
        write_ply(tmp_path / "m.ply", **arguments)
    assert not (tmp_path / "m.ply").exists()


def test_cli_mesh_from_an_ome_zstack(tmp_path, capsys):
    rng = np.random.default_rng(3)
    planes = (rng.random((3, 2, 16, 20)) * 65535).astype(np.uint16)
    path = tmp_path / "z.ome.tif"
    tifffile.imwrite(
        path,
        planes,
        metadata={"axes": "ZCYX", "PhysicalSizeZ": 2.0, "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
    )
    mesh = tmp_path / "m.ply"
    args = ["fuse", str(path), "-o", str(tmp_path / "o.tif"), "--mesh", str(mesh), "--quiet"]
    assert main([*args, "--align", "none"]) == 0
    vertices, _, _ = read_ply(mesh)
    assert vertices["x"].size == 16 * 20 and vertices["x"].max() == 19 * 0.5
    assert vertices["z"].min() >= 0.0 and vertices["z"].max() <= 2 * 2.0  # 3 planes 2 um apart
    # a second run: the mesh exists, refused before any work (no output written)
    code = main(["fuse", str(path), "-o", str(tmp_path / "o2.tif"), "--mesh", str(mesh)])
    err = capsys.readouterr().err
    assert code != 0 and "m.ply: already exists" in err
    assert not (tmp_path / "o2.tif").exists()


@pytest.mark.parametrize("step", ["0", "-2"])
def test_cli_mesh_step_below_one_is_refused(tmp_path, capsys, step):
    # --mesh-step 0 was read as 1 (``or 1``) and the mesh written
    path = tmp_path / "z.ome.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint16), metadata={"axes": "ZYX"})
    mesh = tmp_path / "m.ply"
    argv = ["fuse", str(path), "-o", str(tmp_path / "o.tif"), "--mesh", str(mesh)]
    code = main([*argv, "--z-step", "1um", f"--mesh-step={step}", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and f"error: --mesh-step must be >= 1; got {step}." in err
    assert "Traceback" not in err and not mesh.exists()
