"""A cold numba cache (the first run after a fresh install): kernels compile in a second
process beside the first (``convstack._preload.compile_aside``, issue 13's first demo)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from convstack import _preload

# Runs the demo on a small stack in this process, listening to numba's compile events:
# prints each kernel this process compiled (module.function), one a line.
_DEMO_COMPILES = """
    import contextlib
    import io
    import sys
    from numba.core import event
    compiled = []

    class Listener(event.Listener):
        def on_start(self, ev):
            function = ev.data["dispatcher"].py_func
            compiled.append(function.__module__ + "." + function.__name__)

        def on_end(self, ev):
            pass

    event.register("numba:compile", Listener())
    from convstack.cli import main
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["demo", "--out", sys.argv[1], "--size", "64", "80", "--frames", "3",
                     "--quiet"])
    assert code == 0, code
    print("\\n".join(sorted(set(compiled))))
"""


# `convstack fuse` of argv[1] into argv[2] in this process, printing as _DEMO_COMPILES.
_FUSE_COMPILES = _DEMO_COMPILES.replace(
    """main(["demo", "--out", sys.argv[1], "--size", "64", "80", "--frames", "3",
                     "--quiet"])""",
    """main(["fuse", sys.argv[1], "-o", sys.argv[2], "--quiet"])""",
)


def run_cold(code: str, cache: Path, *args: str) -> str:
    """Run ``code`` in a fresh interpreter whose numba cache is ``cache``; its stdout."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_a_cold_demo_has_its_warps_compiled_in_a_second_process(tmp_path: Path) -> None:
    """On an empty cache the demo's own process compiles its correlation, pyramid and
    PNG kernels but not one warp: the second process compiled those into the same
    cache (fails with the warps compiled in the demo's process, as before)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    out = run_cold(_DEMO_COMPILES, cache, str(tmp_path / "demo"))
    compiled = out.split()
    assert "convstack._k_correlate.correlate_rows" in compiled  # the cache was cold
    assert "convstack._k_pyramid.soft_merge_rows" in compiled
    assert not [name for name in compiled if name.startswith("convstack._k_warp.")]
    assert any(path.name.startswith("_k_warp.") for path in cache.rglob("*.nbi"))
    # warm now: a second demo compiles nothing, in either process
    assert run_cold(_DEMO_COMPILES, cache, str(tmp_path / "again")).split() == []


def test_cold_cache_tells_an_empty_cache_from_a_filled_one(tmp_path: Path) -> None:
    out = run_cold(
        """
        import numpy as np
        from convstack import _k_finite, _preload
        print(_preload.cold_cache(_k_finite.zero_sum))
        _k_finite.zero_sum(np.zeros(4))
        print(_preload.cold_cache(_k_finite.zero_sum))
        """,
        tmp_path,
    )
    assert out.split() == ["True", "False"]


def test_cold_cache_is_false_where_it_cannot_tell() -> None:
    assert _preload.cold_cache(len) is False


def test_compile_aside_runs_the_function_in_another_process(tmp_path: Path) -> None:
    target = tmp_path / "made"
    wait = _preload.compile_aside("pathlib", "Path.touch", str(target))
    assert wait() != 0  # Path.touch is no module-level function: the child fails ...
    assert not target.exists()
    wait = _preload.compile_aside("os", "mkdir", str(target))
    assert wait() == 0 and target.is_dir()  # ... os.mkdir is, and ran there


def test_compile_aside_ends_a_process_that_outlasts_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_preload, "ASIDE_TIMEOUT", 0.5)
    wait = _preload.compile_aside("time", "sleep", "x")  # a TypeError: ends at once
    assert wait() == 1
    wait = _preload.compile_aside("signal", "pause")  # waits for a signal forever
    assert wait() == -signal.SIGKILL


@pytest.mark.slow
def test_the_second_process_compiles_only_warps(tmp_path: Path) -> None:
    """What the demo's and fuse's second process compiles on a cold cache is the warp
    module's kernels only: the demo's own process compiles other modules' at the same time, and
    two processes compiling one kernel at once could file their code under one number
    in numba's index (fails if the warps called, say, the correlation)."""
    out = run_cold(
        """
        from numba.core import event
        seen = set()

        class Listener(event.Listener):
            def on_start(self, ev):
                seen.add(ev.data["dispatcher"].py_func.__module__)

            def on_end(self, ev):
                pass

        event.register("numba:compile", Listener())
        from convstack import _preload
        from convstack.cli import _demo
        _demo._load_warps()
        for dtype in ("|u1", "<u2", ""):  # fuse's, of uint8, uint16 and float frames
            _preload._load_warps_of(dtype)
        print("\\n".join(sorted(m for m in seen if m.startswith("convstack"))))
        """,
        tmp_path,
    )
    assert out.split() == ["convstack._k_warp"]


@pytest.mark.slow
def test_a_cold_fuse_has_its_warps_compiled_in_a_second_process(tmp_path: Path) -> None:
    """``convstack fuse`` with alignment on an empty cache: its process compiles no warp
    (the second process did), and writes the same bytes as a warm run after it."""
    from test_start_preload import write_frames

    assert "sys.argv[2]" in _FUSE_COMPILES
    write_frames(tmp_path / "in", "rgb8")
    cache = tmp_path / "cache"
    cache.mkdir()
    cold = run_cold(_FUSE_COMPILES, cache, str(tmp_path / "in"), str(tmp_path / "cold.png"))
    compiled = cold.split()
    assert "convstack._k_correlate.correlate_rows" in compiled  # the cache was cold
    assert not [name for name in compiled if name.startswith("convstack._k_warp.")]
    warm = run_cold(_FUSE_COMPILES, cache, str(tmp_path / "in"), str(tmp_path / "warm.png"))
    assert not [name for name in warm.split() if name.startswith("convstack._k_warp.")]
    assert (tmp_path / "cold.png").read_bytes() == (tmp_path / "warm.png").read_bytes()


def test_compile_aside_starts_nothing_in_a_frozen_application(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frozen application's ``sys.executable`` is the application, not Python."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    wait = _preload.compile_aside("os", "mkdir", str(tmp_path / "made"))
    assert wait() is None and not (tmp_path / "made").exists()
