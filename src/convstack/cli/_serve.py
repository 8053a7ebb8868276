"""`convstack serve`: a resident process that runs later ``convstack`` commands.

A command's own start (Python's imports, numba's set-up, the kernels' loads) costs
0.2-0.35 s, a third to a half of a small stack's fuse. The server pays it once, then
forks a process per command that the ``convstack`` program hands over
(``convstack_launch``): the child takes the caller's arguments, working folder, umask,
environment and standard streams (its file descriptors, passed over the socket), runs
the command as a fresh process would, and sends back the exit status. The caller
forwards Ctrl-C and termination to it.

Safety: the socket lives in a folder made mode 0700, and each connection's peer must be
this user (``SO_PEERCRED``); a caller whose package files or settings differ from the
server's is refused, and runs the command itself.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import socket
import struct
import sys
import time
from typing import Any

import convstack_launch as launch

from ._common import UserError

#: Minutes without a command after which the server ends (default of ``--idle``).
IDLE_MINUTES = 60.0


def register(subparsers: Any) -> None:
    """Add the `serve` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="stay running and start later convstack commands at once (no start-up)",
        description=(
            "Load convstack (NumPy, numba, the compiled kernels) once and wait: later "
            "`convstack` commands of this user, with the same installation and "
            "CONVSTACK_/NUMBA_/PYTHON settings, run in a process forked from this one, "
            "0.2-0.35 s sooner. Ctrl-C stops it; it also ends after --idle minutes "
            "without a command."
        ),
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=IDLE_MINUTES,
        metavar="MINUTES",
        help=f"end after this many minutes without a command (default {IDLE_MINUTES:g})",
    )
    parser.add_argument(
        "--socket",
        metavar="PATH",
        help="the socket to listen on (default: $CONVSTACK_SERVER_SOCKET, else "
        "convstack/server.sock in $XDG_RUNTIME_DIR or /tmp/convstack-UID); its folder "
        "is made mode 0700",
    )
    parser.set_defaults(func=run)


def _warm_up() -> None:
    """What a fresh command would import and load, done once here: the fuse command's
    modules and kernels (8- and 16-bit frames, grey and colour, PNG)."""
    import numpy as np

    from .. import _preload
    from . import _fuse  # noqa: F401  (imported for the children)

    for dtype in (np.uint8, np.uint16):
        for shape in ((16, 16, 3), (16, 16)):
            _preload.load_fuse_kernels(frame=(shape, np.dtype(dtype)), pyramid=True, png=True)
    gc.collect()
    gc.freeze()  # (the children's collections never walk what is loaded here)


def _claim(path: str) -> None:
    """Check, before anything loads, that ``path`` may be listened on: its folder this
    user's only (made so if missing), no server there already (a socket left by one
    that ended is removed)."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, mode=0o700, exist_ok=True)
    if not launch.private_folder(path):
        raise UserError(f"--socket {path}: its folder must be yours and mode 0700.")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        if os.path.exists(path):
            os.unlink(path)  # a server that ended without removing it
    else:
        raise UserError(f"a server is running on {path} already.")
    finally:
        probe.close()


def _listen(path: str) -> socket.socket:
    """The listening socket at ``path`` (checked by :func:`_claim`)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    server.settimeout(0.1)  # (the loop reaps ended commands and readies a spare)
    return server


def _peer_is_me(connection: socket.socket) -> bool:
    """Whether the process at the other end runs as this user."""
    size = struct.calcsize("3i")
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size)
    _, uid, _ = struct.unpack("3i", credentials)
    return uid == os.getuid()


class _Spare:
    """A command's process forked ahead of its request, while no command runs: it warms
    up (:func:`_warm_child`, 0.3 s of one core) and then waits on a socket pair for the
    request and the caller's connection and streams. A request that comes before it is
    ready gets a process forked at once, as without it."""

    def __init__(self, server: socket.socket) -> None:
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # never returns: nothing unwinds into the server's code
            try:
                server.close()
                self.channel.close()
                os.setpgid(0, 0)  # Ctrl-C at the server's terminal is not the command's
                _spare_life(theirs)
            finally:
                os._exit(1)
        theirs.close()
        self.channel.setblocking(False)

    def ready(self) -> bool:
        """Whether it has warmed up (it sends a byte then)."""
        try:
            return self.channel.recv(1) == b"."
        except BlockingIOError:
            return False

    def take(self, request: dict[str, Any], connection: socket.socket, fds: list[int]) -> int:
        """Hand it the request, the caller's connection and streams; its pid."""
        self.channel.setblocking(True)
        launch.send(self.channel, request, [connection.fileno(), *fds])
        self.channel.close()
        return self.pid

    def end(self) -> None:
        """Send it away unused (it ends when its channel closes)."""
        self.channel.close()


def _spare_life(channel: socket.socket) -> None:
    """The spare's life: warm up, say so, wait for the request, run it."""
    with contextlib.suppress(Exception):  # only lost time: the command runs all the same
        _warm_child()
    try:
        channel.sendall(b".")
        request, fds = launch.receive(channel, fds=4)
    except OSError:
        os._exit(0)
    if request is None or len(fds) != 4:
        os._exit(0)  # the server ended, or sent it away
    connection = socket.socket(fileno=fds[0])
    _run_command(connection, request, fds[1:])


def _warm_child() -> None:
    """A fuse in memory of nine 480 x 640 colour frames (registration, warp, pyramid,
    depth, PNG encoding; output to nowhere), as a small stack's command would run.

    A command's first fuse in a forked process ran 0.03-0.05 s slower than the next
    (breathing-1: 0.35 s against 0.30): its allocations reuse heap memory freed in the
    server, shared with it until written, so each page is copied at first write
    (20k page faults against 1.4k). Done here, ahead, those pages are the spare's own;
    touching fresh memory or a tiny fuse did not help (other blocks), a stack of about
    the command's size did. Stacks of 1 MP frames and more showed no such difference.
    """
    from pathlib import Path

    import numpy as np

    from ..stack import fuse
    from ..stack import io as stack_io

    rows, cols, count = 480, 640, 9
    rng = np.random.default_rng(0)
    base = rng.random((rows + count, cols + count, 3))
    for _ in range(3):
        base = (base + np.roll(base, 1, 0) + np.roll(base, 1, 1)) / 3
    frames = [
        np.rint(base[i : i + rows, i : i + cols] * 255).astype(np.uint8) for i in range(count)
    ]
    result = fuse(frames)
    stack_io._encode(result.image, "PNG", Path("warm-up.png"), None, 95)


def _serve_one(
    server: socket.socket, connection: socket.socket, expected: list[Any], spare: _Spare | None
) -> int | None:
    """Take one request; hand it to ``spare`` if it is ready, else fork its process
    (its pid; None if refused)."""
    if not _peer_is_me(connection):  # (before reading a byte of it)
        return None
    request, fds = launch.receive(connection, fds=3)
    try:
        if request is None or len(fds) != 3:
            return None
        if request.get("fingerprint") != expected:
            launch.send(connection, {"refused": "another installation or settings"})
            return None
        how = ""
        if spare is not None and spare.ready():
            pid, how = spare.take(request, connection, fds), ", warmed up"
        else:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the command's process: never returns
                try:
                    server.close()
                    os.setpgid(0, 0)
                    _run_command(connection, request, fds)
                finally:
                    os._exit(1)
        print(f"convstack serve: {' '.join(request['argv'])} (process {pid}{how})", flush=True)
        return pid
    finally:
        for fd in fds:
            os.close(fd)


def _run_command(connection: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become the caller's command, run it, send its status."""
    code = 1
    try:
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        os.environ.clear()
        os.environ.update(request["env"])
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        launch.send(connection, {"pid": os.getpid()})
        sys.argv = ["convstack", *request["argv"]]
        from . import main

        code = main()
    except BaseException:  # the command's own errors are printed by main
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            launch.send(connection, {"code": code})
        finally:
            os._exit(code)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    if args.idle <= 0:
        raise UserError(f"--idle must be a positive number of minutes; got {args.idle:g}.")
    if not (hasattr(os, "fork") and hasattr(socket, "SO_PEERCRED") and hasattr(socket, "AF_UNIX")):
        raise UserError("convstack serve needs fork and Unix sockets with peer credentials "
                        "(Linux); commands run as usual without it.")  # fmt: skip
    path = args.socket or launch.socket_path()
    _claim(path)  # (refused in a moment, not after the loads)
    _warm_up()
    expected = launch.fingerprint()
    server = _listen(path)
    children: set[int] = set()
    spare: _Spare | None = None
    print(f"convstack serve: listening on {path} (Ctrl-C to stop)", flush=True)
    last = time.monotonic()
    try:
        while children or time.monotonic() - last < args.idle * 60.0:
            while True:  # reap the commands that ended (and a readied process ended)
                try:
                    ended, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:  # no child at all
                    break
                if ended == 0:
                    break
                children.discard(ended)
                if spare is not None and ended == spare.pid:  # (a signal): ready another
                    spare.end()
                    spare = None
            if spare is None and not children:  # (warming up beside no command)
                spare = _Spare(server)
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                last = time.monotonic()
                pid = _serve_one(server, connection, expected, spare)
                if pid is not None:
                    children.add(pid)
                if spare is not None and pid == spare.pid:  # taken
                    spare = None
    finally:
        if spare is not None:
            spare.end()
        server.close()
        if os.path.exists(path):
            os.unlink(path)
    return 0
