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
