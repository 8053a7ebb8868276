"""The ``convstack`` program's entry point: hand the command to a running
``convstack serve`` if there is one, else run it here.

A command started here imports NumPy, numba and the pipeline and loads its compiled
kernels, 0.2-0.35 s before any work (bench/README.md, First run); ``convstack serve``
has done that once and forks a ready process per command. This module imports only
the standard library, so the hand-over costs a few milliseconds. It is a module of
its own, outside the package: importing anything in ``convstack`` runs the package's
``__init__``, which imports NumPy.

The server is used only where it runs the same code in the same settings: the same
interpreter and package files (paths, sizes, modification times) and the same
``CONVSTACK_*``, ``NUMBA_*`` and ``PYTHON*`` environment variables (read once, at
import, by the modules it holds); else, or when its socket is missing or refuses, the
command runs here as ever. The socket lives in a folder of the user's own, mode 0700,
and the server serves only its own user (the peer's credentials).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # (typing's import, 6 ms, would cost more than the hand-over)
if TYPE_CHECKING:
    import socket
    from typing import Any, NoReturn

__all__ = ["command", "fingerprint", "receive", "send", "socket_path"]

#: The server's socket (default: see :func:`socket_path`).
SOCKET_VARIABLE = "CONVSTACK_SERVER_SOCKET"

#: Commands never handed over: the server itself.
_LOCAL = ("serve",)


def socket_path() -> str:
    """The server's socket: ``$CONVSTACK_SERVER_SOCKET``, else ``convstack/server.sock``
    in ``$XDG_RUNTIME_DIR``, else in ``/tmp/convstack-UID``."""
    chosen = os.environ.get(SOCKET_VARIABLE)
    if chosen:
        return chosen
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    folder = os.path.join(runtime, "convstack") if runtime else f"/tmp/convstack-{os.getuid()}"
    return os.path.join(folder, "server.sock")


def private_folder(path: str) -> bool:
    """Whether ``path``'s folder is this user's own, writable by no one else."""
    try:
        info = os.lstat(os.path.dirname(path) or ".")
    except OSError:
        return False
    return info.st_uid == os.getuid() and info.st_mode & 0o777 == 0o700


def fingerprint() -> list[Any]:
    """What must match between this process and the server: the interpreter, the
    package's files (path, size, modification time) and the settings its modules read
    at import."""
    import importlib.util

    spec = importlib.util.find_spec("convstack")
    root = spec.submodule_search_locations[0] if spec and spec.submodule_search_locations else ""
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(s for s in subfolders if s != "__pycache__")
        for name in sorted(names):
            if name.endswith(".py"):
                info = os.stat(os.path.join(folder, name))
                files.append([os.path.relpath(os.path.join(folder, name), root), info.st_size,
                              info.st_mtime_ns])  # fmt: skip
    settings = sorted(
        [key, value]
        for key, value in os.environ.items()
        if key.startswith(("CONVSTACK_", "NUMBA_", "PYTHON")) and key != SOCKET_VARIABLE
    )
    return [sys.executable, sys.version, root, files, settings]


def send(connection: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    """Send one message, a dict of plain values: its length (4 bytes), then its
    ``marshal`` bytes (with ``fds``). Both ends are this user's own processes."""
    import marshal
    import socket

    data = marshal.dumps(message)
    data = len(data).to_bytes(4, "big") + data
    sent = socket.send_fds(connection, [data], fds) if fds else 0
    connection.sendall(data[sent:])


def receive(connection: socket.socket, fds: int = 0) -> tuple[dict[str, Any] | None, list[int]]:
    """Receive one message of :func:`send` (None at the end of the stream, or if it
    is not a dict) and up to ``fds`` file descriptors sent with it. Reads that message's
    bytes only: the next one stays for the next call."""
    import marshal
    import socket

    received: list[int] = []
    if fds:
        first, received, _, _ = socket.recv_fds(connection, 4, fds)
    else:
        first = connection.recv(4)
    header = _exactly(connection, first, 4)
    if header is None:
        return None, received
    data = _exactly(connection, b"", int.from_bytes(header, "big"))
    if data is None:
        return None, received
    try:
        message = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None, received
    return (message if isinstance(message, dict) else None), received


def _exactly(connection: socket.socket, data: bytes, size: int) -> bytes | None:
    """``data`` completed to ``size`` bytes from ``connection`` (None if it ends first)."""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _hand_over(arguments: list[str]) -> int | None:
    """Run the command in the server; its exit status, or None to run it here."""
    path = socket_path()
    if not os.path.exists(path) or not private_folder(path):
        return None
    import signal
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        try:
            connection.connect(path)
            mask = os.umask(0)
            os.umask(mask)
            request = {
                "argv": arguments,
                "cwd": os.getcwd(),
                "umask": mask,
                "env": dict(os.environ),
                "fingerprint": fingerprint(),
            }
            send(connection, request, [0, 1, 2])
            reply, _ = receive(connection)
        except OSError:
            return None
        if reply is None or "pid" not in reply:
            return None  # refused (another version or settings): here, as ever
        pid = int(reply["pid"])

        def forward(signum: int, frame: object) -> None:
            try:  # noqa: SIM105  (contextlib's import: more time than this)
                os.kill(pid, signum)
            except OSError:  # it has ended
                pass

        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            number = getattr(signal, name)
            if signal.getsignal(number) is not signal.SIG_IGN:
                signal.signal(number, forward)
        try:
            done, _ = receive(connection)
        except OSError:
            done = None
    if done is None:
        print("convstack: the server's process ended without an exit status", file=sys.stderr)
        return 1
    return int(done["code"])


def command() -> NoReturn:
    """The ``convstack`` program."""
    arguments = sys.argv[1:]
    word = next((a for a in arguments if not a.startswith("-")), None)
    if word is not None and word not in _LOCAL:
        code = _hand_over(arguments)
        if code is not None:
            sys.exit(code)
    from convstack.cli import command as run_here

    run_here()
