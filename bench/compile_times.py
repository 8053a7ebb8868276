"""Compile time of every numba kernel signature a command compiles (issue 13).

    NUMBA_CACHE_DIR=$(mktemp -d) python bench/compile_times.py demo --out d1
    NUMBA_CACHE_DIR=$(mktemp -d) python bench/compile_times.py tests -q -x tests/test_convolve.py

Listens to numba's ``numba:compile`` events and prints, per (kernel, signature), the
seconds inclusive of the kernels it compiled in turn, and its own (self) seconds, largest
first, to stderr. Run it on an empty ``NUMBA_CACHE_DIR`` (a cold cache, as on a fresh
install): kernels loaded from the disk cache raise no compile event. Compiles in forked or
spawned children are not seen. Signatures with ``Literal[...]`` arguments or read-only
(``'C', True``) arrays are extra variants of a kernel.
"""

from __future__ import annotations

import atexit
import contextlib
import resource
import sys
import threading
import time
from typing import Any

from numba.core import event

_STACK = threading.local()
_ROWS: list[tuple[str, str, float, float]] = []


class _Recorder(event.Listener):  # type: ignore[misc]
    def on_start(self, ev: Any) -> None:
        if not hasattr(_STACK, "frames"):
            _STACK.frames = []
        _STACK.frames.append([time.perf_counter(), 0.0])

    def on_end(self, ev: Any) -> None:
        start, children = _STACK.frames.pop()
        seconds = time.perf_counter() - start
        if _STACK.frames:
            _STACK.frames[-1][1] += seconds
        function = ev.data["dispatcher"].py_func
        name = function.__module__.rsplit(".", 1)[-1] + "." + function.__name__
        _ROWS.append((name, str(ev.data["args"]), seconds, seconds - children))


def report() -> None:
    """Print the table: inclusive s, self s, kernel, signature."""
    table: dict[tuple[str, str], list[float]] = {}
    for name, signature, seconds, own in _ROWS:
        row = table.setdefault((name, signature), [0.0, 0.0])
        row[0] += seconds
        row[1] += own
    total = sum(own for _, own in table.values())
    print(f"# compile (self) {total:.2f} s, {len(table)} signatures", file=sys.stderr)
    for (name, signature), (seconds, own) in sorted(table.items(), key=lambda kv: -kv[1][0]):
        short = signature.replace("Array(", "A(").replace(", aligned=True", "")
        print(f"{seconds:7.2f} {own:7.2f}  {name}  {short}", file=sys.stderr)


def main() -> None:
    event.register("numba:compile", _Recorder())
    atexit.register(report)
    what, rest = sys.argv[1], sys.argv[2:]
    start = time.perf_counter()
    if what == "demo":
        from convstack.cli import main as cli

        with contextlib.suppress(SystemExit):
            cli(["demo", *rest])
    else:
        import pytest

        pytest.main(rest)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    cpu_children = children.ru_utime + children.ru_stime
    wall = time.perf_counter() - start
    print(
        f"# {what}: wall {wall:.2f} s, CPU {cpu:.2f} s (children {cpu_children:.2f} s)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
