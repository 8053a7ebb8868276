"""A forked child process that works beside this one, and memory the two share.

:func:`convstack.stack.fuse` reads, registers and (as the measured costs decide)
warps and measures frames in a child process while this one merges them. NumPy
releases the GIL only inside its loops, and registration is many small operations,
so two threads of one process mostly take turns, while two processes run side by
side.
The child is forked (a copy of this process: nothing to import, only results to
send back), so this is used only where ``fork`` is safe: Linux and the BSDs, with
no other thread running than convstack's own idle thread pools. The process and
its pipes are handled here with ``os.fork`` and ``pickle`` directly (the
``multiprocessing`` package would add its imports to every ``convstack fuse``).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

__all__ = ["Channel", "ForkedWorker", "can_fork", "fork_forced", "shared_array"]

#: Set this environment variable to "0" to keep all the work in one process, to "1" to
#: fork the reader whatever the frames' size (see :func:`fork_forced`).
ENVIRONMENT_SWITCH = "CONVSTACK_FORK"


def fork_forced() -> bool:
    """Whether ``CONVSTACK_FORK=1`` asks for a forked reader even for small frames."""
    return os.environ.get(ENVIRONMENT_SWITCH) == "1"


def can_fork() -> bool:
    """Whether a child process can be forked safely here and now."""
    if os.environ.get(ENVIRONMENT_SWITCH, "1") == "0":
        return False
    if sys.platform in ("win32", "darwin", "emscripten", "wasi") or not hasattr(os, "fork"):
        return False  # no fork, or fork unsafe with the system's frameworks
    # a lock held by another thread would stay held in the child; convstack's own
    # pools are idle outside their callers (the child makes new ones)
    here = threading.current_thread()
    return all(t is here or t.name.startswith("convstack") for t in threading.enumerate())


def shared_array(shape: tuple[int, ...], dtype: Any) -> NDArray[Any]:
    """A zeroed array in anonymous shared memory: a child forked later writes into the
    same pages (freed when the array and its views are gone)."""
    count = int(np.prod(shape, dtype=np.int64))
    buffer = mmap.mmap(-1, max(count * np.dtype(dtype).itemsize, 1))  # shared, anonymous
    return np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)


class Channel:
    """One direction of a pipe carrying pickled objects."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def send(self, message: Any) -> None:
        """Pickle ``message`` into the pipe (blocks while the pipe is full)."""
        pickle.dump(message, self._stream, protocol=pickle.HIGHEST_PROTOCOL)
        self._stream.flush()

    def recv(self) -> Any:
        """The next message; ``EOFError`` once the other end is closed."""
        return pickle.load(self._stream)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a broken pipe while flushing: the other end
            self._stream.close()  # is gone


class ForkedWorker:
    """``target(inbox, outbox)`` run in a forked child; messages both ways through pipes.

    The child reads what :meth:`send` sends from ``inbox`` and sends its results to
    ``outbox`` as ``("ok", payload)``; :meth:`receive` returns each payload in turn and
    raises again an exception that ended the child. Use as a context manager: the
    child is stopped on exit. Large messages go one way only: each side blocks while
    its pipe is full, so two large messages crossing would wait for each other (the
    pipeline hands frames back and forth through :func:`shared_array` slots instead).
    """

    def __init__(self, target: Callable[[Channel, Channel], None]) -> None:
        down_read, down_write = os.pipe()  # parent -> child
        up_read, up_write = os.pipe()  # child -> parent
        self._pid = os.fork()
        if self._pid == 0:  # the child: run the target, never return into the caller
            os.close(down_write)
            os.close(up_read)
            code = 1
            try:
                inbox = Channel(os.fdopen(down_read, "rb"))
                outbox = Channel(os.fdopen(up_write, "wb"))
                code = _run(target, inbox, outbox)
            finally:
                os._exit(code)  # no cleanup of the parent's state, no atexit handlers
        os.close(down_read)
        os.close(up_write)
        self._outbox = Channel(os.fdopen(down_write, "wb"))
        self._inbox = Channel(os.fdopen(up_read, "rb"))

    def send(self, message: Any) -> None:
        """Send ``message`` to the child's ``inbox``; if the child has ended, raise what
        ended it (as :meth:`receive` does), not the broken pipe."""
        try:
            self._outbox.send(message)
        except BrokenPipeError:
            while True:  # results it sent before are dropped; ends at its error or EOF
                self.receive()

    def receive(self) -> Any:
        """The child's next result (blocks); raises the exception that ended it, if any,
        or ``ChildProcessError`` if it ended without one (killed, out of memory)."""
        try:
            kind, payload = self._inbox.recv()
        except EOFError:
            raise ChildProcessError("the worker process ended unexpectedly.") from None
        if kind == "error":
            raise payload
        return payload

    def __enter__(self) -> ForkedWorker:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc_info: object) -> None:
        self.close(kill=kind is not None)

    @property
    def pid(self) -> int:
        """The child's process id (0 once it has been waited for)."""
        return self._pid

    def close(self, kill: bool = False) -> None:
        """Wait for the child to end (``kill``: end it at once) and release the pipes.

        Closing the pipes ends a child that waits for a message (end of file) or
        sends one (broken pipe); one that computes ends when it next does either.
        """
        if self._pid <= 0:
            return
        self._outbox.close()
        self._inbox.close()
        pid, self._pid = self._pid, 0
        if kill:  # the parent gave up on its work: no reason to wait for it
            with contextlib.suppress(ProcessLookupError):  # (it may have ended already)
                os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _run(target: Callable[[Channel, Channel], None], inbox: Channel, outbox: Channel) -> int:
    """The child's work: ``target``; an exception goes back to the parent to be raised
    there. Returns the exit status."""
    try:
        target(inbox, outbox)
        return 0
    except BaseException as exc:  # every failure is the parent's to report
        try:
            outbox.send(("error", exc))
        except (BrokenPipeError, EOFError, OSError):
            pass  # the parent stopped listening: it is ending anyway
        except Exception:  # an exception that cannot be pickled
            with contextlib.suppress(Exception):
                outbox.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
        return 1
    finally:
        outbox.close()
