"""The ``convstack`` command: argument parsing and dispatch to one module per subcommand.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and
sets ``func`` to a callable taking the parsed namespace and returning an exit code.
No maths lives here.

Errors, stated once: a user's mistake or the machine's refusal (``UserError``, the
``StackError`` family, ``OSError``, ``MemoryError``, ``ValueError`` with
``LimitError``) that escapes a command is printed as one ``error: ...`` line naming
the path or argument, and the exit status is 1; ``--debug`` prints the traceback
before it. Any other exception is a bug and keeps its traceback. Ctrl-C exits with
130; SIGTERM and SIGHUP unwind the same way (``finally`` blocks run, so no temporary
file is left) and exit with 128 + the signal number.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import Any, NoReturn

from .. import _preload
from ..stack.errors import StackError
from ._allocator import keep_freed_memory
from ._common import UserError
from ._startup import hold_collector, start_up_done

__all__ = ["Terminated", "build_parser", "command", "describe", "handle_signals", "main"]

#: Each subcommand's module, by the name it registers, in the order of the help. A
#: command imports only its own (`convstack filter` none of focus stacking's modules,
#: `convstack fuse` not the batch's, the demo's or the viewer's); the help, all.
_COMMANDS = {
    "demo": "_demo",
    "fuse": "_fuse",
    "batch": "_batch",
    "filter": "_filter",
    "edges": "_edges",
    "extrema": "_extrema",
    "lab": "_lab",
    "view": "_view",
    "serve": "_serve",
}


class _Version(argparse.Action):
    """``--version``, the installed version looked up only when asked (it is slow)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from .. import __version__

        print(f"convstack {__version__}")  # on stdout, as argparse's own version action
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand registered, or only
    ``command`` if it names one."""
    parser = argparse.ArgumentParser(
        prog="convstack",
        description="Convolution, classic filters and focus stacking in NumPy.",
    )
    parser.add_argument("--version", action=_Version, help="show the version and exit")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in [command] if command in _COMMANDS else list(_COMMANDS):
        importlib.import_module(f"{__name__}.{_COMMANDS[name]}").register(subparsers)
    for subparser in subparsers.choices.values():  # also after the command's name
        subparser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP
        )
    return parser


_DEBUG_HELP = "on an error, show the full traceback as well as the message"


class Terminated(KeyboardInterrupt):
    """The process was asked to end (SIGTERM, SIGHUP): unwinds as Ctrl-C does, so that
    every ``finally`` block runs (temporary files are removed, children stopped)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def handle_signals() -> None:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` in this process (Ctrl-C is
    Python's ``KeyboardInterrupt`` already). A signal the process was started to
    ignore (``nohup``) stays ignored."""
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, _terminate)


def describe(exc: BaseException) -> str:
    """The one-line message for an error: the path and the reason for an ``OSError``.

    >>> describe(PermissionError(13, "Permission denied", "/out/a.png"))
    '/out/a.png: permission denied.'
    >>> describe(MemoryError())
    'out of memory (MemoryError); try smaller images, or lower CONVSTACK_MEMORY_LIMIT.'
    """
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        where = os.fsdecode(exc.filename)
        if exc.filename2 is not None:
            where += f" -> {os.fsdecode(exc.filename2)}"
        reason = exc.strerror[:1].lower() + exc.strerror[1:]
        return f"{where}: {reason}."
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}."
    if isinstance(exc, MemoryError):
        what = str(exc) or type(exc).__name__
        return f"out of memory ({what}); try smaller images, or lower CONVSTACK_MEMORY_LIMIT."
    return str(exc) or type(exc).__name__


def _check_limit_variables() -> None:
    """Refuse a malformed CONVSTACK_MEMORY_LIMIT or CONVSTACK_MAX_PIXELS before the work,
    by its name, rather than as the failure of whatever first reads it (a frame's read
    said "FRAME: cannot read the image (`CONVSTACK_MEMORY_LIMIT` must be ...)")."""
    from ..limits import get_memory_limit, max_image_pixels

    get_memory_limit()
    max_image_pixels()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    if argv is None:  # the command's own process, not a caller's (tests call main(argv))
        handle_signals()
        keep_freed_memory()
        _preload.lean_numba_start()  # numba without what our kernels never use
        hold_collector()  # until the start-up ends: the command's, or start_up_done below
    arguments = sys.argv[1:] if argv is None else list(argv)
    # the command is the first word that is not an option (the top level's take no value)
    parser = build_parser(next((a for a in arguments if not a.startswith("-")), None))
    args = parser.parse_args(arguments)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    if not getattr(args, "ends_start_up", False):  # (fuse ends it once numba is up)
        start_up_done()
    try:
        _check_limit_variables()
        return int(args.func(args) or 0)
    except (UserError, StackError, OSError, MemoryError, ValueError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {describe(exc)}", file=sys.stderr)
        return 1
    except Terminated as exc:
        print(f"terminated ({signal.Signals(exc.signum).name})", file=sys.stderr)
        return 128 + exc.signum
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
