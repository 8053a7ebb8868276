"""The command's kernel preload covers what fuse calls (issue 13): every kernel signature
that a fuse of the stack calls is loaded before it (none is loaded at first use in the
middle of the fuse), and none that it does not call; the read-ahead decodes PNG through
the compiled reader once that is loaded."""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from convstack.stack import io as stack_io
from test_startup import SIGNATURES, run_python


def write_frames(folder: Path, kind: str, count: int = 4) -> list[Path]:
    """``count`` shifted, half-blurred crops of one smooth random image (registration
    and merge both work): 'rgb8' / 'grey8' PNG, 'rgb16' TIFF, 'jpeg'."""
    rows, cols = 60, 80
    rng = np.random.default_rng(11)
    base = rng.random((rows + count, cols + count, 3))
    for _ in range(3):
        base = (base + np.roll(base, 1, 0) + np.roll(base, 1, 1)) / 3
    folder.mkdir()
    paths = []
    for i in range(count):
        frame = base[i : i + rows, i : i + cols].copy()
        side = slice(0, cols // 2) if i % 2 else slice(cols // 2, cols)
        frame[:, side] = (frame[:, side] + np.roll(frame[:, side], 1, 1)) / 2
        if kind == "rgb16":
            paths.append(folder / f"f{i}.tif")
            tifffile.imwrite(paths[-1], np.rint(frame * 65535).astype(np.uint16))
            continue
        image = Image.fromarray(np.rint(frame * 255).astype(np.uint8))
        if kind == "grey8":
            image = image.convert("L")
        paths.append(folder / (f"f{i}.jpg" if kind == "jpeg" else f"f{i}.png"))
        image.save(paths[-1], quality=95)
    return paths


def kernels_of(paths: list[Path], align: str) -> dict[str, object]:
    """What the command asks ``load_fuse_kernels`` for, for these frames."""
    from convstack.cli import _fuse

    args = argparse.Namespace(align=align, method="pyramid")
    science = argparse.Namespace(focus_channel=None)
    return _fuse._fuse_kernels(args, list(paths), science)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["rgb8", "grey8", "rgb16", "jpeg"])
@pytest.mark.parametrize("align", ["similarity", "none"])
def test_the_preload_loads_exactly_the_signatures_fuse_calls(
    tmp_path: Path, kind: str, align: str
) -> None:
    """A fuse in one process (CONVSTACK_FORK=0, so that all its calls are seen) after the
    command's preload for its frames loads nothing more, and calls every signature
    loaded (fails without the preload of the frames' warp, the pyramid or the PNG
    reader: the fuse loads them itself)."""
    paths = write_frames(tmp_path / "in", kind)
    kernels = kernels_of(paths, align)
    assert kernels["png"] == (kind in ("rgb8", "grey8"))
    if kernels["frame"] is not None:
        shape, dtype = kernels["frame"]  # type: ignore[misc]
        kernels["frame"] = (tuple(shape), str(dtype))
    out = run_python(
        SIGNATURES
        + f"""
    import os
    os.environ["CONVSTACK_FORK"] = "0"
    import numpy as np
    from convstack import _preload
    from convstack.stack import fuse
    kernels = {kernels!r}
    if kernels["frame"] is not None:
        shape, dtype = kernels["frame"]
        kernels["frame"] = (shape, np.dtype(dtype))
    _preload.load_fuse_kernels(**kernels)
    loaded = signatures()
    fuse({[str(p) for p in paths]!r}, align={align!r})
    print(len(loaded), sorted(signatures() - loaded))
    import convstack._k_warp as w
    print(sorted(str(s[0]) for s in w.planes_rows.signatures))
    """
    ).splitlines()
    count, extra = out[0].split(" ", 1)
    assert int(count) >= 4  # the correlation, the pyramid's (and more)
    assert extra == "[]"  # nothing left to load in the middle of the fuse
    if align != "none":  # the frames' own dtype: uint16 frames warp through uint16 planes
        dtype = "uint16" if kind == "rgb16" else "uint8"
        assert f"array({dtype}, 3d, C)" in out[1]
    fused = run_python(
        SIGNATURES
        + f"""
    import os
    os.environ["CONVSTACK_FORK"] = "0"
    from convstack.stack import fuse
    fuse({[str(p) for p in paths]!r}, align={align!r})
    print("\\n".join(sorted(signatures())))
    """
    ).splitlines()
    loaded = run_python(
        SIGNATURES
        + f"""
    import numpy as np
    from convstack import _preload
    kernels = {kernels!r}
    if kernels["frame"] is not None:
        shape, dtype = kernels["frame"]
        kernels["frame"] = (shape, np.dtype(dtype))
    _preload.load_fuse_kernels(**kernels)
    print("\\n".join(sorted(signatures())))
    """
    ).splitlines()
    assert set(loaded) == set(fused)


def test_the_command_asks_for_the_frames_dtype_and_no_png_reader_for_tiff(
    tmp_path: Path,
) -> None:
    paths = write_frames(tmp_path / "in", "rgb16")
    kernels = kernels_of(paths, "similarity")
    assert kernels["warp"] is True and kernels["pyramid"] is True and kernels["png"] is False
    shape, dtype = kernels["frame"]  # type: ignore[misc]
    assert (tuple(shape), np.dtype(dtype)) == ((60, 80, 3), np.dtype(np.uint16))
    from convstack.cli import _fuse

    args = argparse.Namespace(align="none", method="weighted")
    science = argparse.Namespace(focus_channel=None)
    other = _fuse._fuse_kernels(args, list(paths), science)  # type: ignore[arg-type]
    assert other["warp"] is False and other["pyramid"] is False
    focus = argparse.Namespace(focus_channel=1)
    args = argparse.Namespace(align="none", method="pyramid")
    assert _fuse._fuse_kernels(args, list(paths), focus)["pyramid"] is False  # type: ignore[arg-type]


def test_the_tiny_png_reads_as_pillow_reads_it() -> None:
    """The preload's 1 x 1 PNG is a valid file (Pillow, the oracle, reads it)."""
    import io

    from convstack import _preload

    data = _preload._tiny_png()
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "L" and image.size == (1, 1)
        assert np.asarray(image).tolist() == [[128]]
    assert zlib.decompress(data[data.index(b"IDAT") + 4 : -16]) == b"\x00\x80"


def test_the_read_ahead_switches_to_the_compiled_png_reader_once_it_is_loaded(
    tmp_path: Path,
) -> None:
    """In the read-ahead thread, PNG is read by libpng until the command loaded the
    compiled reader, then by it: the same pixels as Pillow's either way (fails with the
    read-ahead kept on libpng: the second read would not be compiled)."""
    paths = write_frames(tmp_path / "in", "rgb8", count=2)
    out = run_python(
        f"""
        import threading
        import numpy as np
        from PIL import Image
        from convstack import _preload
        from convstack.stack import io
        seen = []
        def read(path):
            seen.append((io._compiled_png(), io.read_image(path)))
        def in_read_ahead(path):
            thread = threading.Thread(target=read, args=(path,), name=io._READ_AHEAD_THREAD)
            thread.start()
            thread.join()
        in_read_ahead({str(paths[0])!r})
        _preload.load_fuse_kernels(warp=False, png=True)
        in_read_ahead({str(paths[1])!r})
        for (compiled, image), path in zip(seen, {[str(p) for p in paths]!r}):
            print(compiled, np.array_equal(image, np.asarray(Image.open(path))))
        """
    )
    assert out.split() == ["False", "True", "True", "True"]


@pytest.mark.parametrize("budget", [1 << 30, 60 * 80 * 3 * 2])
def test_read_ahead_says_whether_it_decoded_every_file(tmp_path: Path, budget: int) -> None:
    paths = write_frames(tmp_path / "in", "rgb8", count=3)
    ahead = stack_io.ReadAhead(paths, budget)
    ahead._thread.join()
    try:
        assert ahead.complete() == (budget > 3 * 60 * 80 * 3)
        assert stack_io.read_ahead_bytes() == (3 if ahead.complete() else 2) * 60 * 80 * 3
    finally:
        ahead.stop()
        stack_io.drop_read_ahead()
