"""`convstack serve` and the ``convstack`` program's hand-over to it (issue 13: the
command's start-up paid once)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_start_preload import write_frames

#: The ``convstack`` program as installed (its console script calls this).
PROGRAM = [sys.executable, "-c", "from convstack_launch import command; command()"]


class Server:
    """A `convstack serve` process on a socket of its own, and what it printed."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.log = socket.parent.parent / "serve.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [*PROGRAM, "serve", "--idle", "10", "--socket", str(socket)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 300  # (a cold numba cache compiles first)
        while not socket.exists():
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def served(self) -> list[str]:
        """The command lines the server ran, in order."""
        lines = self.log.read_text().splitlines()
        return [
            line.split(": ", 1)[1].rsplit(" (process", 1)[0] for line in lines if "(process" in line
        ]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path / "run" / "server.sock")
    try:
        yield running
    finally:
        running.stop()


def run(
    arguments: list[str], cwd: Path, socket: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """``convstack ARGUMENTS`` in ``cwd``, the server's socket at ``socket``."""
    environment = {**os.environ, "CONVSTACK_SERVER_SOCKET": str(socket), **env}
    return subprocess.run(
        [*PROGRAM, *arguments], cwd=cwd, env=environment, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def long_command(server: Server, tmp_path: Path) -> subprocess.Popen[str]:
    """A demo big enough (12 frames of 1600 x 2000) to be stopped midway, handed to
    ``server`` from ``tmp_path``."""
    return subprocess.Popen(
        [*PROGRAM, "demo", "--out", "d", "--size", "1600", "2000", "--frames", "12"],
        cwd=tmp_path,
        env={**os.environ, "CONVSTACK_SERVER_SOCKET": str(server.socket)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_fuse_runs_in_the_server_as_it_runs_here(server: Server, tmp_path: Path) -> None:
    """Relative paths from the caller's folder, the same bytes as a fuse run here, and
    the server ran it (fails if the program ran every command itself)."""
    write_frames(tmp_path / "in", "rgb8")
    there = run(["fuse", "in", "-o", "there.png", "--quiet"], tmp_path, server.socket)
    assert there.returncode == 0, there.stderr
    here = run(["fuse", "in", "-o", "here.png", "--quiet"], tmp_path, tmp_path / "none.sock")
    assert here.returncode == 0, here.stderr
    assert (tmp_path / "there.png").read_bytes() == (tmp_path / "here.png").read_bytes()
    assert server.served() == ["fuse in -o there.png --quiet"]


def test_an_error_comes_back_as_the_commands_status_and_message(
    server: Server, tmp_path: Path
) -> None:
    done = run(["fuse", "missing", "-o", "x.png"], tmp_path, server.socket)
    assert done.returncode == 1
    assert done.stderr == "error: missing: no such file or folder.\n"
    assert server.served() == ["fuse missing -o x.png"]
    assert not (tmp_path / "x.png").exists()


def test_other_settings_run_the_command_here(server: Server, tmp_path: Path) -> None:
    """A caller whose CONVSTACK_/NUMBA_ settings differ from the server's (read at
    import there) is refused, and runs the command itself."""
    write_frames(tmp_path / "in", "grey8")
    done = run(["fuse", "in", "-o", "t.png", "--quiet"], tmp_path, server.socket,
               CONVSTACK_THREADS="1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "t.png").exists()
    assert server.served() == []


def test_a_socket_in_a_folder_others_may_write_is_not_used(server: Server, tmp_path: Path) -> None:
    os.chmod(server.socket.parent, 0o755)
    try:
        done = run(["fuse", "missing", "-o", "x.png"], tmp_path, server.socket)
    finally:
        os.chmod(server.socket.parent, 0o700)
    assert done.returncode == 1 and "no such file" in done.stderr
    assert server.served() == []


def test_termination_reaches_the_command_in_the_server(server: Server, tmp_path: Path) -> None:
    """SIGTERM to the caller ends the command in the server as it ends one run here
    (exit status 128 + 15, its message); the server stays up."""
    caller = long_command(server, tmp_path)
    deadline = time.monotonic() + 60
    while not server.served():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    caller.send_signal(signal.SIGTERM)
    _, err = caller.communicate(timeout=60)
    assert caller.returncode == 128 + signal.SIGTERM, err
    assert "terminated (SIGTERM)" in err
    assert server.process.poll() is None
    assert run(["fuse", "missing", "-o", "x.png"], tmp_path, server.socket).returncode == 1
    assert len(server.served()) == 2


def test_no_server_runs_the_command_here(tmp_path: Path) -> None:
    done = run(["fuse", "missing", "-o", "x.png"], tmp_path, tmp_path / "none.sock")
    assert done.returncode == 1 and done.stderr == "error: missing: no such file or folder.\n"


def test_a_second_server_on_the_same_socket_is_refused(server: Server, tmp_path: Path) -> None:
    done = run(["serve", "--socket", str(server.socket)], tmp_path, server.socket)
    assert done.returncode == 1
    assert "a server is running on" in done.stderr


def test_the_program_imports_only_the_standard_library_to_hand_over() -> None:
    code = "import sys, convstack_launch; print(sorted(m for m in sys.modules if 'numpy' in m " \
           "or m.startswith('convstack') and m != 'convstack_launch'))"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_a_command_after_a_pause_runs_in_a_process_warmed_up_ahead(
    server: Server, tmp_path: Path
) -> None:
    """While no command runs the server readies a process (a small fuse done ahead);
    a command that finds it ready runs there (fails with a process forked per request
    only). The first command is served whether or not one is ready."""
    deadline = time.monotonic() + 120
    while "warmed up" not in server.log.read_text():
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.5)
        assert run(["fuse", "missing", "-o", "x.png"], tmp_path, server.socket).returncode == 1
    write_frames(tmp_path / "in", "rgb8")
    time.sleep(0.5)
    deadline = time.monotonic() + 120
    while True:  # (the next spare warms up after the last command ended)
        done = run(["fuse", "in", "-o", "w.png", "--quiet", "--force"], tmp_path, server.socket)
        assert done.returncode == 0, done.stderr
        if server.log.read_text().splitlines()[-1].endswith(", warmed up)"):
            break
        assert time.monotonic() < deadline
        time.sleep(1.0)
    here = run(["fuse", "in", "-o", "here.png", "--quiet"], tmp_path, tmp_path / "none.sock")
    assert here.returncode == 0, here.stderr
    assert (tmp_path / "w.png").read_bytes() == (tmp_path / "here.png").read_bytes()


def test_serve_says_where_it_cannot_run(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Without peer credentials (macOS, Windows) the server refuses to start, by name."""
    import socket as sockets

    from convstack.cli import main

    monkeypatch.delattr(sockets, "SO_PEERCRED", raising=False)
    assert main(["serve", "--socket", "/nonexistent/s.sock"]) == 1
    assert "convstack serve needs fork and Unix sockets" in capsys.readouterr().err


def test_a_readied_process_ended_by_a_signal_leaves_the_server_serving(
    server: Server, tmp_path: Path
) -> None:
    """SIGTERM to the process the server readied (a `pkill`) ends it alone: it must not
    unwind into the server's code, which would remove the server's socket (fails then)."""
    deadline = time.monotonic() + 120
    spare: list[int] = []
    while not spare:
        assert time.monotonic() < deadline
        time.sleep(0.2)
        children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
        if not children.exists():
            pytest.skip("no /proc/PID/task/TID/children here to find the readied process")
        spare = [int(pid) for pid in children.read_text().split()]
    os.kill(spare[0], signal.SIGTERM)
    time.sleep(1.0)
    assert server.socket.exists() and server.process.poll() is None
    # and it readies another: a command after a pause runs there
    deadline = time.monotonic() + 120
    while "warmed up" not in server.log.read_text():
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.5)
        assert run(["fuse", "missing", "-o", "x.png"], tmp_path, server.socket).returncode == 1


def test_serve_refuses_a_non_positive_idle_time(capsys) -> None:
    from convstack.cli import main

    assert main(["serve", "--idle", "0"]) == 1
    assert "--idle must be a positive number of minutes; got 0." in capsys.readouterr().err


def test_serve_refuses_a_socket_folder_others_may_enter(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder exists with mode 0755: refused by name, before the kernels load."""
    from convstack.cli import _serve, main

    loads: list[bool] = []
    monkeypatch.setattr(_serve, "_warm_up", lambda: loads.append(True))

    folder = tmp_path / "open"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    assert main(["serve", "--socket", str(folder / "s.sock")]) == 1
    err = capsys.readouterr().err
    assert f"--socket {folder / 's.sock'}: its folder must be yours and mode 0700." in err
    assert not (folder / "s.sock").exists() and loads == []


def test_a_served_process_killed_outright_is_reported_by_the_caller(
    server: Server, tmp_path: Path
) -> None:
    """SIGKILL to the command's process in the server (no status sent): the caller
    says so and exits 1, and the server goes on."""
    caller = long_command(server, tmp_path)
    deadline = time.monotonic() + 60
    while "(process" not in server.log.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    line = next(x for x in server.log.read_text().splitlines() if "(process" in x)
    os.kill(int(line.split("(process ")[1].split(")")[0].split(",")[0]), signal.SIGKILL)
    _, err = caller.communicate(timeout=60)
    assert caller.returncode == 1
    assert "convstack: the server's process ended without an exit status" in err
    assert server.process.poll() is None


def test_messages_sent_back_to_back_are_received_one_by_one() -> None:
    """The command's pid and its exit status can reach the caller in one read: each
    receive takes its own message's bytes only (the status was lost, and a fast command
    reported "ended without an exit status")."""
    import socket

    import convstack_launch as launch

    ours, theirs = socket.socketpair()
    theirs.settimeout(5.0)  # (a message lost is a timeout, not a hang)
    with ours, theirs:
        launch.send(ours, {"pid": 12})
        launch.send(ours, {"code": 1})
        assert launch.receive(theirs) == ({"pid": 12}, [])
        assert launch.receive(theirs) == ({"code": 1}, [])
        ours.shutdown(socket.SHUT_WR)
        assert launch.receive(theirs) == (None, [])
