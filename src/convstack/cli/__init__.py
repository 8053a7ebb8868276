"""The ``convstack`` command: argument parsing and dispatch to one module per subcommand.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and
sets ``func`` to a callable taking the parsed namespace and returning an exit code.
No maths lives here.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from ..stack.errors import StackError
from . import _demo, _edges, _extrema, _filter, _fuse, _lab
from ._allocator import keep_freed_memory
from ._common import UserError

__all__ = ["command", "main"]

_COMMANDS = (_demo, _fuse, _filter, _edges, _extrema, _lab)


class _Version(argparse.Action):
    """``--version``, the installed version looked up only when asked (it is slow)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from .. import __version__

        print(f"convstack {__version__}")  # on stdout, as argparse's own version action
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="convstack",
        description="Convolution, classic filters and focus stacking in NumPy.",
    )
    parser.add_argument("--version", action=_Version, help="show the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    if argv is None:  # the command's own process, not a caller's (tests call main(argv))
        keep_freed_memory()
        # what is imported by now lives as long as the process: the cyclic garbage
        # collector need not walk it again (and a forked child shares its pages)
        gc.freeze()
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, StackError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def command() -> NoReturn:
    """The ``convstack`` program: :func:`main`, then the process ends at once.

    By the time :func:`main` returns, every output file is written, closed and in
    place; what is left is Python's own teardown (clearing every module and object),
    30-50 ms after a ``convstack fuse``. So the standard streams are flushed and the
    process exits with ``os._exit``, unless a tracer (coverage, a debugger) is active,
    whose exit handlers must run.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe: leave the reporting to Python's normal exit
        sys.exit(code)
    if sys.gettrace() is None and sys.getprofile() is None and "coverage" not in sys.modules:
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    command()
