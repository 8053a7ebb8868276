import subprocess
import sys

import convstack
from convstack.cli import main


def test_version_flag_prints_package_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert convstack.__version__ in capsys.readouterr().out


def test_help_lists_subcommands():
    result = subprocess.run(
        [sys.executable, "-m", "convstack.cli", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for command in ("demo", "fuse", "filter", "edges", "extrema"):
        assert command in result.stdout


def test_stack_error_from_a_command_is_reported_without_traceback(capsys, monkeypatch):
    from convstack.cli import _demo
    from convstack.stack.errors import FrameReadError

    def failing_run(args):
        raise FrameReadError("frame_001.tif: cannot be read (truncated file).")

    monkeypatch.setattr(_demo, "run", failing_run)
    assert main(["demo"]) == 1
    captured = capsys.readouterr()
    assert captured.err == "error: frame_001.tif: cannot be read (truncated file).\n"
    assert "Traceback" not in captured.err


def test_start_up_imports_only_what_the_command_needs():
    # `convstack fuse` must not pay for the filters, calculus, SciPy, TIFF or PNG-16
    # libraries
    code = (
        "import sys; from convstack.cli import build_parser; build_parser();"
        "import convstack.stack.pipeline;"
        "print(' '.join(m for m in ('convstack.filters', 'convstack.calculus', 'scipy',"
        " 'tifffile', 'png', 'imagecodecs') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_every_public_name_resolves():
    for name in convstack.__all__:
        assert getattr(convstack, name) is not None, name
    assert set(convstack.__all__) <= set(dir(convstack))


def test_convolve_is_the_function_whatever_was_imported_first():
    code = (
        "import convstack.stack.pipeline, convstack.convolve as m;"
        "from convstack import convolve; print(callable(convolve), type(convolve).__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["True", "function"], result.stderr


def test_the_command_keeps_freed_memory_where_glibc_allows(monkeypatch):
    import platform

    from convstack import cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(1))
    assert main(["extrema", "x**2 - 1", "--from", "-1", "--to", "1"]) == 0
    assert calls == []  # main(argv) from Python: the caller's process is left alone
    code = "from convstack.cli._allocator import keep_freed_memory as k; print(k())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert out.stdout.strip() == str(glibc)


_EXTREMA = ["extrema", "x**2 - 1", "--from", "-1", "--to", "1"]


def test_the_command_flushes_its_output_and_keeps_the_exit_code(capsys, tmp_path):
    # the program ends with os._exit (no interpreter teardown): what main prints must
    # still arrive in full through a pipe, and main's exit code must be the process's
    assert main(_EXTREMA) == 0
    expected = capsys.readouterr().out
    run = [sys.executable, "-m", "convstack.cli"]
    ok = subprocess.run([*run, *_EXTREMA], capture_output=True, text=True)
    assert (ok.returncode, ok.stdout) == (0, expected), ok.stderr
    missing = str(tmp_path / "missing.png")
    bad = subprocess.run(
        [*run, "fuse", missing, missing, "-o", str(tmp_path / "out.png"), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: ") and "missing.png" in bad.stderr


def test_the_command_skips_the_teardown_unless_a_tracer_needs_its_exit_handlers():
    code = (
        "import atexit, sys; atexit.register(print, 'exit handlers ran');"
        "sys.settrace(lambda *args: None) if sys.argv[1] == 'traced' else None;"
        f"sys.argv = ['convstack', *{_EXTREMA!r}];"
        "from convstack.cli import command; command()"
    )
    for mode, ran in (("plain", False), ("traced", True)):
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert ("exit handlers ran" in out.stdout) == ran, mode
