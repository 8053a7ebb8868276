import errno
import signal
import subprocess
import sys

import pytest

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


def test_the_commands_allocator_hands_large_blocks_back_under_a_tight_budget(monkeypatch):
    import platform

    from convstack import _libc
    from convstack.stack import _strip_major

    # a library process: no hook, the strip-major merge's trim leaves its allocator alone
    code = "import convstack.stack, convstack._libc as c; print(c.bounded_heap)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"
    # the command's tuning installs the hook that undoes it, and the hook applies
    code = (
        "from convstack.cli import _allocator as a; from convstack import _libc;"
        "print(a.keep_freed_memory(), _libc.bounded_heap is a.hand_back_large_blocks,"
        " a.hand_back_large_blocks())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    glibc = str(sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc")
    assert out.stdout.split() == [glibc, glibc, glibc]
    # the strip-major merge calls it each time it hands freed memory back
    calls = []
    monkeypatch.setattr(_libc, "bounded_heap", lambda: calls.append(1))
    _strip_major.release_freed_memory()
    _strip_major.release_freed_memory()
    assert calls == [1, 1]


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


# ---------------------------------------------------------------- errors as one line


def _failing_demo(monkeypatch, exc):
    from convstack.cli import _demo

    def failing_run(args):
        raise exc

    monkeypatch.setattr(_demo, "run", failing_run)


def _limit_error():
    from convstack.limits import LimitError

    return LimitError(
        "`kernel` would need 29.0 TiB; the limit is 8.0 GiB (CONVSTACK_MEMORY_LIMIT)."
    )


def _stack_error():
    from convstack.stack.errors import OutputError

    return OutputError("/out/a.png: already exists (use --force)")


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (
            PermissionError(errno.EACCES, "Permission denied", "/out/fused.png"),
            "error: /out/fused.png: permission denied.",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "/out/.fused.png.1234.tmp"),
            "error: /out/.fused.png.1234.tmp: no space left on device.",
        ),
        (
            OSError(errno.EXDEV, "Invalid cross-device link", "/a/x.png", None, "/b/x.png"),
            "error: /a/x.png -> /b/x.png: invalid cross-device link.",
        ),
        (OSError(errno.EIO, "Input/output error"), "error: Input/output error."),
        (ChildProcessError("the worker process ended unexpectedly."), "error: the worker"),
        (
            MemoryError("Unable to allocate 29.0 TiB for an array"),
            "error: out of memory (Unable to allocate 29.0 TiB for an array); try smaller",
        ),
        (MemoryError(), "error: out of memory (MemoryError)"),
        (ValueError("`sigma` must be >= 0; got -1.0."), "error: `sigma` must be >= 0; got -1.0."),
        (_limit_error(), "error: `kernel` would need 29.0 TiB; the limit is 8.0 GiB"),
        (_stack_error(), "error: /out/a.png: already exists (use --force)"),
    ],
)
def test_expected_failures_become_one_error_line(capsys, monkeypatch, exc, line):
    _failing_demo(monkeypatch, exc)
    assert main(["demo"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1, err
    assert "Traceback" not in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_too(capsys, monkeypatch, where):
    _failing_demo(monkeypatch, PermissionError(errno.EACCES, "Permission denied", "/o.png"))
    argv = ["--debug", "demo"] if where == "before" else ["demo", "--debug"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "failing_run" in err
    assert err.endswith("error: /o.png: permission denied.\n")


def test_a_bug_keeps_its_traceback(monkeypatch):
    _failing_demo(monkeypatch, ZeroDivisionError("division by zero"))
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        main(["demo"])


def test_a_bug_in_a_real_process_prints_a_traceback(tmp_path):
    code = (
        "import sys; from convstack.cli import _demo;"
        "_demo.run = lambda args: 1 / 0;"
        "sys.argv = ['convstack', 'demo']; from convstack.cli import command; command()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ZeroDivisionError" in result.stderr


def test_terminated_exits_with_128_plus_the_signal(capsys, monkeypatch):
    from convstack.cli import Terminated

    _failing_demo(monkeypatch, Terminated(signal.SIGTERM))
    assert main(["demo"]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "terminated (SIGTERM)\n"
    _failing_demo(monkeypatch, KeyboardInterrupt())
    assert main(["demo"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_signal_handlers_raise_and_leave_ignored_signals_ignored():
    from convstack.cli import Terminated, handle_signals

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        handle_signals()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        with pytest.raises(Terminated) as caught:
            handler(signal.SIGTERM, None)
        assert caught.value.signum == signal.SIGTERM
        assert isinstance(caught.value, KeyboardInterrupt)
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


@pytest.mark.parametrize("name", ["CONVSTACK_MEMORY_LIMIT", "CONVSTACK_MAX_PIXELS"])
def test_malformed_limit_variable_is_named_before_the_work(tmp_path, capsys, monkeypatch, name):
    # the variable's error was reported as the first frame's ("f0.png: cannot read the
    # image (`CONVSTACK_MEMORY_LIMIT` must be ...)") after the frames were listed
    import numpy as np

    from convstack import limits
    from convstack.stack.io import write_image

    for i in range(2):
        write_image(tmp_path / f"f{i}.png", np.full((8, 8), 40 * i, np.uint8))
    monkeypatch.setattr(limits, "_limit", None)
    monkeypatch.setenv(name, "garbage")
    code = main(["fuse", str(tmp_path), "-o", str(tmp_path / "out.png"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"error: `{name}` must be a size such as 2GiB"), err
    assert "f0.png" not in err and not (tmp_path / "out.png").exists()
