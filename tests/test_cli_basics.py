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
