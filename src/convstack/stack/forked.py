"""A forked child process that works beside this one, and memory the two share.

:func:`convstack.stack.fuse` reads, registers and (as the measured costs decide)
warps and measures frames in a child process while this one merges them. NumPy
releases the GIL only inside its loops, and registration is many small operations,
so two threads of one process mostly take turns: on 480 x 640 stacks a threaded
fuse was 5 % faster than a single thread, while two processes run side by side.
The child is forked (a copy of this process: nothing to import, only results to
send back), so this is used only where ``fork`` is safe: Linux and the BSDs, with
no other thread running than convstack's own idle thread pools.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["ForkedWorker", "can_fork", "shared_array"]

#: Set this environment variable to "0" to keep all the work in one process.
ENVIRONMENT_SWITCH = "CONVSTACK_FORK"


def can_fork() -> bool:
    """Whether a child process can be forked safely here and now."""
    if os.environ.get(ENVIRONMENT_SWITCH, "1") == "0":
        return False
    if sys.platform in ("win32", "darwin", "emscripten", "wasi"):
        return False  # no fork, or fork unsafe with the system's frameworks
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    # a lock held by another thread would stay held in the child; convstack's own
    # pools are idle outside their callers (the child makes new ones)
    here = threading.current_thread()
    return all(t is here or t.name.startswith("convstack") for t in threading.enumerate())


def shared_array(shape: tuple[int, ...], dtype: Any) -> NDArray[Any]:
    """A zeroed array in anonymous shared memory: a child forked later writes into the
    same pages (freed when the array and its views are gone)."""
    size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    buffer = mmap.mmap(-1, max(size, 1))  # MAP_SHARED | MAP_ANONYMOUS
    return np.frombuffer(buffer, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


def _child(
    target: Callable[[Connection, Connection], None], inbox: Connection, outbox: Connection
) -> None:
    """The child: run ``target``; an exception goes back to the parent to be raised there."""
    try:
        target(inbox, outbox)
    except BaseException as exc:  # every failure is the parent's to report
        try:
            outbox.send(("error", exc))
        except (BrokenPipeError, EOFError, OSError):
            pass  # the parent stopped listening: it is ending anyway
        except Exception:  # an exception that cannot be pickled
            outbox.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    finally:
        outbox.close()


class ForkedWorker:
    """``target(inbox, outbox)`` run in a forked child; messages both ways through pipes.

    The child reads what :meth:`send` sends from ``inbox`` and sends its results to
    ``outbox`` as ``("ok", payload)``; :meth:`receive` returns each payload in turn and
    raises again an exception that ended the child. Use as a context manager: the
    child is stopped on exit.
    """

    def __init__(self, target: Callable[[Connection, Connection], None]) -> None:
        context = multiprocessing.get_context("fork")
        child_inbox, self._outbox = context.Pipe(duplex=False)
        self._inbox, child_outbox = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child, args=(target, child_inbox, child_outbox), daemon=True
        )
        self._process.start()
        child_inbox.close()  # the child holds its own copies: EOF reaches each side
        child_outbox.close()  # when the other ends

    def send(self, message: Any) -> None:
        """Send ``message`` to the child's ``inbox``."""
        self._outbox.send(message)

    def receive(self) -> Any:
        """The child's next result (blocks); raises the exception that ended it, if any."""
        try:
            kind, payload = self._inbox.recv()
        except EOFError:
            raise RuntimeError("the worker process ended unexpectedly.") from None
        if kind == "error":
            raise payload
        return payload

    def __enter__(self) -> ForkedWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the child if it still runs, and release the pipes."""
        self._outbox.close()  # a child waiting for a message sees EOF and ends,
        self._inbox.close()  # one sending a result sees a broken pipe
        self._process.join(timeout=5.0)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._process.close()
