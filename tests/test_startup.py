"""Start-up: what `import convstack` and the command line load, and the compiler started
before `fuse` forks its reader child (issue 13)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convstack.cli import main


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter; its stdout (a failure shows its stderr)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_and_help_do_not_load_numba() -> None:
    out = run_python(
        """
        import contextlib, io, sys
        import convstack
        print("numba" in sys.modules)
        from convstack.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            main(["--help"])
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            main(["fuse", "--help"])
        print("numba" in sys.modules)
        """
    )
    assert out.split() == ["False", "False"]


def test_start_compiler_loads_numba_once() -> None:
    out = run_python(
        """
        import sys, time
        from convstack import _preload
        print("numba" in sys.modules)
        _preload.start_compiler()
        print("numba" in sys.modules)
        started = time.perf_counter()
        _preload.start_compiler()
        print(time.perf_counter() - started < 0.1)
        """
    )
    assert out.split() == ["False", "True", "True"]


def test_a_child_forked_after_start_compiler_computes_right() -> None:
    """The child inherits the parent's compiler: its kernels (one it never called in
    the parent) give the loop's numbers and see NaN."""
    out = run_python(
        """
        import os, pickle
        import numpy as np
        from convstack import _preload, correlate
        from convstack._nonfinite import has_nonfinite
        from convstack.stack.forked import can_fork
        if not can_fork():
            print("skip"); raise SystemExit
        _preload.start_compiler()
        image = np.random.default_rng(3).random((50, 41)).astype(np.float32)
        kernel = np.array([[1, 2, 0], [0, -1, 3], [2, 0, 1]], np.float32)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            bad = np.ones(100_000, np.float32)
            bad[77_777] = np.nan
            good = np.ones(100_000, np.float32)
            result = (correlate(image, kernel, mode="nearest", method="direct"),
                      has_nonfinite(bad), has_nonfinite(good))
            with os.fdopen(write, "wb") as f:
                pickle.dump(result, f)
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as f:
            got, bad, good = pickle.load(f)
        os.waitpid(pid, 0)
        padded = np.pad(image.astype(np.float64), 1, mode="edge")
        expected = np.zeros(image.shape)
        for r in range(image.shape[0]):
            for c in range(image.shape[1]):
                expected[r, c] = (padded[r:r + 3, c:c + 3] * kernel).sum()
        print(np.abs(got - expected).max() < 1e-5, bad, good)
        """
    )
    if out.strip() == "skip":
        pytest.skip("no fork here")
    assert out.split() == ["True", "True", "False"]


def write_stack(folder: Path, count: int = 4, shape: tuple[int, int] = (60, 80)) -> Path:
    """``count`` RGB frames of ``shape``: crops of one textured image, each shifted by
    a pixel and blurred differently in its halves (registration and merge both work)."""
    rows, cols = shape
    rng = np.random.default_rng(7)
    base = rng.random((rows + count, cols + count, 3))
    for _ in range(3):  # smooth it a little: registration needs gradients
        base = (base + np.roll(base, 1, 0) + np.roll(base, 1, 1)) / 3
    folder.mkdir()
    for i in range(count):
        frame = base[i : i + rows, i : i + cols].copy()
        side = slice(0, cols // 2) if i % 2 else slice(cols // 2, cols)
        frame[:, side] = (frame[:, side] + np.roll(frame[:, side], 1, 1)) / 2
        Image.fromarray(np.rint(frame * 255).astype(np.uint8)).save(folder / f"f{i}.png")
    return folder


def test_fuse_gives_the_same_bits_with_the_compiler_started_before_the_fork(
    tmp_path: Path,
) -> None:
    """`fuse` (which forks its reader for more than two frames) in two fresh processes,
    one started cold and one after ``start_compiler``: identical results."""
    folder = write_stack(tmp_path / "in")
    code = """
        import sys
        import numpy as np
        from pathlib import Path
        from convstack import _preload
        from convstack.stack import fuse
        from convstack.stack.forked import can_fork
        if sys.argv[2] == "1":
            _preload.start_compiler()
        frames = sorted(Path(sys.argv[1]).glob("*.png"))
        result = fuse(frames, align="similarity")
        np.save(sys.argv[3], np.stack([result.image.astype(np.float64),
                                       np.repeat(result.depth[..., None], 3, axis=2)]))
        print(can_fork())
        """
    outputs = []
    for started in ("0", "1"):
        target = tmp_path / f"out{started}.npy"
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), str(folder), started, str(target)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(np.load(target))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert outputs[0][0].std() > 0  # a real image, not a constant


def test_fuse_command_starts_the_compiler_before_fuse_and_not_on_a_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from convstack import _preload
    from convstack.cli import _fuse

    calls: list[str] = []
    monkeypatch.setattr(
        _preload, "load_fuse_kernels", lambda warp, **_: calls.append(f"warp={warp}")
    )
    real_fuse = _fuse.fuse

    def fuse(*args: object, **kwargs: object) -> object:
        calls.append("fuse")
        return real_fuse(*args, **kwargs)

    monkeypatch.setattr(_fuse, "fuse", fuse)
    folder = write_stack(tmp_path / "in", count=3)
    out = tmp_path / "out.png"
    assert main(["fuse", str(folder), "-o", str(out), "--quiet"]) == 0
    assert calls == ["warp=True", "fuse"]
    calls.clear()
    out.unlink()
    assert main(["fuse", str(folder), "-o", str(out), "--quiet", "--align", "none"]) == 0
    assert calls == ["warp=False", "fuse"]
    calls.clear()
    assert main(["fuse", str(folder), "-o", str(out), "--quiet"]) == 1  # exists: refused
    assert "exists" in capsys.readouterr().err
    assert calls == []


SIGNATURES = """
    import sys
    def signatures():
        found = set()
        for name, module in list(sys.modules.items()):
            if name.startswith("convstack._k_"):
                for attr, obj in vars(module).items():
                    if hasattr(obj, "py_func") and hasattr(obj, "signatures"):
                        found |= {f"{attr}{[str(t) for t in s]}" for s in obj.signatures}
        return found
"""


@pytest.mark.parametrize("grey", [False, True])
@pytest.mark.parametrize("align", ["similarity", "none"])
def test_load_fuse_kernels_loads_only_signatures_fuse_calls(
    tmp_path: Path, grey: bool, align: str
) -> None:
    """Every kernel signature loaded before the fork is one that fuse calls itself
    (on a cold cache a stray one would compile for seconds, for nothing); fuse in one
    process (CONVSTACK_FORK=0) so that all its calls are seen."""
    folder = write_stack(tmp_path / "in")
    if grey:
        for path in folder.glob("*.png"):
            Image.open(path).convert("L").save(path)
    fused = run_python(
        SIGNATURES
        + f"""
    import os
    os.environ["CONVSTACK_FORK"] = "0"
    from pathlib import Path
    from convstack.stack import fuse
    fuse(sorted(Path({str(folder)!r}).glob("*.png")), align={align!r})
    print("\\n".join(sorted(signatures())))
    """
    ).splitlines()
    loaded = run_python(
        SIGNATURES
        + f"""
    from convstack import _preload
    _preload.load_fuse_kernels(warp={align != "none"})
    print("\\n".join(sorted(signatures())))
    """
    ).splitlines()
    assert any(s.startswith("correlate_rows") for s in loaded)
    assert any(s.startswith("two_pass_rows") for s in loaded) == (align != "none")
    assert set(loaded) <= set(fused)


@pytest.mark.parametrize("method", ["pyramid", "maxabs"])
def test_the_pyramid_kernels_loaded_are_those_its_method_calls(tmp_path: Path, method: str) -> None:
    """The merge's kernels loaded before the fork (``pyramid``; the classic rule's for
    'maxabs') are all called by a fuse with that method: none compiles for nothing on
    a cold cache (the soft merge's for 'maxabs' did not, before ``classic``)."""
    folder = write_stack(tmp_path / "in")
    fused = run_python(
        SIGNATURES
        + f"""
    import os
    os.environ["CONVSTACK_FORK"] = "0"
    from pathlib import Path
    from convstack.stack import fuse
    fuse(sorted(Path({str(folder)!r}).glob("*.png")), align="none", method={method!r})
    print("\\n".join(sorted(signatures())))
    """
    ).splitlines()
    loaded = run_python(
        SIGNATURES
        + f"""
    from convstack import _preload
    _preload.load_fuse_kernels(warp=False, pyramid=True, classic={method == "maxabs"})
    print("\\n".join(sorted(signatures())))
    """
    ).splitlines()
    assert set(loaded) <= set(fused), set(loaded) - set(fused)
    assert any(s.startswith("luma_squared_rows") for s in loaded)


def test_in_background_runs_in_a_thread_and_raises_its_error_in_the_caller() -> None:
    import threading

    from convstack import _preload

    seen: list[str] = []
    wait = _preload.in_background(lambda: seen.append(threading.current_thread().name))
    wait()
    assert seen == ["convstack-preload"]

    def fail() -> None:
        raise ValueError("`x` must be >= 0; got -1.")

    wait = _preload.in_background(fail)
    with pytest.raises(ValueError, match="`x` must be >= 0"):
        wait()
    assert not any(t.name == "convstack-preload" for t in threading.enumerate())


def test_demo_scores_a_frame_warped_into_planes_as_into_pixels() -> None:
    """The demo warps frames for its scores into planar frames (the kernel signature
    fuse compiles already): the same numbers as the default interleaved output."""
    from convstack.cli import _demo
    from convstack.warp import warp

    frame = np.random.default_rng(5).random((40, 50, 3)).astype(np.float32)
    matrix = np.array([[1.001, 0.003, 0.7], [-0.003, 1.001, -1.2], [0.0, 0.0, 1.0]])
    planar = _demo._planar(frame.shape)
    assert np.moveaxis(planar, -1, 0).flags.c_contiguous
    warp(frame, matrix, order=3, out=planar)
    np.testing.assert_array_equal(planar, warp(frame, matrix, order=3))


def test_each_command_registers_under_its_table_name_and_the_help_lists_all() -> None:
    from convstack.cli import _COMMANDS, build_parser

    def commands(parser: object) -> set[str]:
        actions = parser._subparsers._group_actions  # type: ignore[attr-defined]
        return set(actions[0].choices)

    for name in _COMMANDS:
        assert commands(build_parser(name)) == {name}
    assert commands(build_parser()) == set(_COMMANDS)
    assert commands(build_parser("no-such-command")) == set(_COMMANDS)


def test_a_command_imports_only_its_own_module(tmp_path: Path) -> None:
    folder = write_stack(tmp_path / "in", count=3)
    out = run_python(
        f"""
        import sys
        from convstack.cli import main
        assert main(["--debug", "fuse", {str(folder)!r}, "-o", {str(tmp_path / "o.png")!r},
                     "--quiet"]) == 0
        print(" ".join(sorted(m for m in sys.modules if m.startswith("convstack.cli._")
                              and m not in ("convstack.cli._common", "convstack.cli._allocator",
                                            "convstack.cli._startup"))))
        """
    )
    assert out.split() == ["convstack.cli._fuse"]


def test_an_unknown_command_is_refused_naming_the_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["fusee", "x"])
    err = capsys.readouterr().err
    assert "invalid choice: 'fusee'" in err and "'fuse'" in err and "'view'" in err


def pillow_metadata(path: Path) -> tuple[bytes | None, bytes | None]:
    """EXIF and ICC of a JPEG as Pillow reads them (the oracle)."""
    with Image.open(path) as im:
        exif = im.info.get("exif") or None
        return exif, im.info.get("icc_profile") or None


@pytest.mark.parametrize("exif", [False, True])
@pytest.mark.parametrize("icc_size", [0, 3000, 150_000])  # 150 kB: three APP2 segments
def test_jpeg_metadata_read_without_pillow_as_pillow_reads_it(
    tmp_path: Path, exif: bool, icc_size: int
) -> None:
    from convstack.stack.io import read_metadata

    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (24, 32, 3), np.uint8))
    options: dict[str, object] = {}
    if exif:
        tags = Image.Exif()
        tags[0x010F] = "convstack test camera"  # Make
        tags[0x0110] = "x" * 300  # Model
        options["exif"] = tags.tobytes()
    if icc_size:
        options["icc_profile"] = np.random.default_rng(2).bytes(icc_size)
    path = tmp_path / "frame.jpg"
    image.save(path, quality=90, **options)
    want_exif, want_icc = pillow_metadata(path)
    assert (want_exif is not None) == exif and (want_icc is not None) == bool(icc_size)
    got = read_metadata(path)
    assert got.exif == want_exif
    assert got.icc_profile == want_icc


def test_jpeg_metadata_of_the_pcb_frames_as_pillow(shared_data: Path) -> None:
    from convstack.stack.io import read_metadata

    frames = sorted((shared_data / "pcb" / "pcb").glob("*.jpg"))[:3]
    if not frames:
        pytest.skip("no PCB frames")
    for path in frames:
        got = read_metadata(path)
        assert (got.exif, got.icc_profile) == pillow_metadata(path)


def test_jpeg_metadata_does_not_import_pillow(tmp_path: Path) -> None:
    path = tmp_path / "frame.jpg"
    tags = Image.Exif()
    tags[0x010F] = "camera"
    Image.new("RGB", (16, 16)).save(path, exif=tags.tobytes())
    out = run_python(
        f"""
        import sys
        from convstack.stack.io import read_metadata
        print(len(read_metadata({str(path)!r}).exif) > 0, "PIL" in sys.modules)
        """
    )
    assert out.split() == ["True", "False"]


def test_jpeg_metadata_of_a_damaged_header_falls_back_to_pillow(tmp_path: Path) -> None:
    """A segment length running past the end: the walk gives up, Pillow decides (it
    finds nothing either: metadata absent, no error)."""
    from convstack.stack.io import _jpeg_metadata, read_metadata

    path = tmp_path / "frame.jpg"
    tags = Image.Exif()
    tags[0x010F] = "camera"
    Image.new("RGB", (16, 16)).save(path, exif=tags.tobytes())
    data = path.read_bytes()
    cut = data[:2] + b"\xff\xe1\xff\xf0" + data[6:40]  # APP1 claiming 65520 bytes
    assert _jpeg_metadata(cut) is None
    path.write_bytes(cut)
    got = read_metadata(path)
    assert (got.exif, got.icc_profile) == (None, None)


def test_the_command_sets_numba_up_without_scipy_yaml_or_blas() -> None:
    out = run_python(
        """
        import sys
        import numpy as np
        from convstack import _preload
        _preload.lean_numba_start()
        _preload.start_compiler()
        print("numba" in sys.modules, "scipy" in sys.modules, "scipy.linalg" in sys.modules,
              "yaml" in sys.modules)
        import scipy.linalg, yaml  # still import as usual afterwards
        print(float(scipy.linalg.det(np.eye(3) * 2.0)), yaml.safe_load("a: 1")["a"])
        from convstack.convolve import correlate
        image = np.arange(25, dtype=np.float32).reshape(5, 5)
        print(float(correlate(image, np.ones((3, 3), np.float32), mode="constant")[2, 2]))
        """
    )
    # 6 + 7 + 8 + 11 + 12 + 13 + 16 + 17 + 18 = 108 (the 3 x 3 around the centre, 12)
    assert out.split() == ["True", "False", "False", "False", "8.0", "1", "108.0"]


def test_a_lean_start_leaves_an_imported_scipy_linalg_alone() -> None:
    out = run_python(
        """
        import sys
        import scipy.linalg
        from convstack import _preload
        _preload.lean_numba_start()
        _preload.start_compiler()
        from numba.np import arraymath
        print(sys.modules["scipy.linalg"] is scipy.linalg, arraymath._HAVE_BLAS)
        """
    )
    assert out.split() == ["True", "True"]


def test_a_lean_start_reads_numbas_config_file_where_there_is_one(tmp_path: Path) -> None:
    """numba reads ``.numba_config.yaml`` from the working folder with PyYAML: kept."""
    (tmp_path / ".numba_config.yaml").write_text("debug_cache: 1\n")
    code = """
        import sys
        from convstack import _preload
        _preload.lean_numba_start()
        _preload.start_compiler()
        import numba
        print("yaml" in sys.modules, numba.config.DEBUG_CACHE)
        """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["True", "1"]


def test_a_lean_start_compiles_a_kernel_missing_from_the_cache_then_loads_it(
    tmp_path: Path,
) -> None:
    """Cached kernels load without numba's registries; a kernel not in the cache still
    compiles (numba's compiler installs them itself), and the next process loads it:
    both give the loop's numbers (math functions, an array allocated in the kernel)."""
    (tmp_path / "lean_kernel.py").write_text(
        textwrap.dedent(
            """
            import math
            import numpy as np
            from convstack._jit import kernel

            @kernel
            def softplus(x):
                out = np.empty(x.shape[0])
                for i in range(x.shape[0]):
                    out[i] = math.log1p(math.exp(x[i]))
                return out
            """
        )
    )
    code = f"""
        import sys
        import numpy as np
        from convstack import _preload
        _preload.lean_numba_start()
        _preload.start_compiler()
        sys.path.insert(0, {str(tmp_path)!r})
        from lean_kernel import softplus
        got = softplus(np.array([0.0, 1.0, -2.0]))
        stats = softplus.stats
        print(sum(stats.cache_misses.values()), sum(stats.cache_hits.values()))
        print(" ".join(repr(float(v)) for v in got))
        """
    runs = [run_python(code).splitlines() for _ in range(2)]
    assert runs[0][0].split() == ["1", "0"]  # compiled
    assert runs[1][0].split() == ["0", "1"]  # loaded from the cache
    expected = [math.log1p(math.exp(v)) for v in (0.0, 1.0, -2.0)]
    for run in runs:
        assert [float(v) for v in run[1].split()] == pytest.approx(expected, rel=1e-15)


def test_convstack_fuse_never_imports_scipy_linalg(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frames = []
    for i in range(2):
        path = tmp_path / f"f{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 48), dtype=np.uint8)).save(path)
        frames.append(str(path))
    out = tmp_path / "out.png"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "convstack.cli", "fuse", *frames,
         "-o", str(out), "--quiet", "--align", "none"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "numba" in imported  # numba was set up ...
    assert "scipy.linalg" not in imported  # ... without its BLAS look-up
    assert out.is_file()


def test_the_command_holds_the_collector_until_numba_is_up(tmp_path: Path) -> None:
    """In the command's own process: no collection during the imports and numba's
    set-up; then what exists is frozen and collection resumes before the fuse (and
    before any other command's work); a caller of ``main(argv)`` keeps its collector."""
    folder = write_stack(tmp_path / "in", count=3)
    code = f"""
        import gc, sys
        from convstack import cli
        from convstack.cli import _fuse
        seen = []
        load, fuse = _fuse._preload.load_fuse_kernels, _fuse.fuse
        def loading(**options):
            seen.append(("preload", gc.isenabled(), gc.get_freeze_count() > 0))
            load(**options)
        def fusing(*args, **options):
            seen.append(("fuse", gc.isenabled(), gc.get_freeze_count() > 10000))
            return fuse(*args, **options)
        _fuse._preload.load_fuse_kernels, _fuse.fuse = loading, fusing
        sys.argv = ["convstack", "fuse", {str(folder)!r}, "-o", {str(tmp_path / "o.png")!r},
                    "--quiet"]
        assert cli.main() == 0
        print(seen)
        """
    assert run_python(code).strip() == "[('preload', False, False), ('fuse', True, True)]"
    other = """
        import gc, sys
        from convstack import cli
        from convstack.cli import _edges
        seen = []
        run = _edges.run
        def running(args):
            seen.append(gc.isenabled())
            return 0
        _edges.run = running
        sys.argv = ["convstack", "edges", "in.png", "out.png"]
        cli.main()
        print(seen, gc.isenabled())
        """
    assert run_python(other).strip() == "[True] True"
    caller = """
        import gc
        from convstack.cli import main
        main(["fuse", "--quiet", "-o", "x.png", "missing-folder"])
        print(gc.isenabled(), gc.get_freeze_count())
        """
    assert run_python(caller).strip() == "True 0"


def test_a_lean_start_in_another_thread_blocks_no_import() -> None:
    """sys.modules is the whole process's: started from a thread other than the main
    one (the demo renders meanwhile), numba imports as usual, and its kernels still
    load lean."""
    out = run_python(
        """
        import sys
        from convstack import _preload
        _preload.lean_numba_start()
        _preload.in_background(_preload.start_compiler)()
        from numba.core import caching
        print("scipy" in sys.modules, caching.Cache._convstack_lean)
        """
    )
    assert out.split() == ["True", "True"]
