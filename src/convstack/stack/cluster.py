"""The batch of :mod:`convstack.stack.batch` on a Dask cluster (``convstack[cluster]``).

Each stack is one task (``pure=False``: run every time it is asked; ``retries=2``):
:func:`convstack.stack.batch.run_stack` runs on a worker, which reads the frames from
storage that the workers (and this process) share and writes the outputs there by the
one writer's rules. A worker lost mid-stack (killed, its machine gone) leaves at most
the writer's temporary file ``.NAME.XXXXXXXX.tmp`` beside the output, never a file
under the output's name; the scheduler gives the task to another worker, whose
``run_stack`` first removes such leftovers of that stack's outputs, and the end of the
batch removes any that remain. The scheduler does so up to its
``distributed.scheduler.allowed-failures`` times (default 3) for a stack, then the task
fails with ``KilledWorker``: that stack is reported as failed; the others go on.
(``retries`` is another count: tries again of a task that raised on a worker, such as
one whose function could not be loaded there; ``run_stack`` itself never raises.)

``--scheduler local`` starts its workers as ``--jobs`` does (:func:`_local_cluster`):
forked from this process on Linux, with the pipeline and numba loaded here once, each
with its share of threads and of the memory limit, and Dask's scheduler handing a
worker its next stack only when it is free.

Dask is imported here only, when a runner is made.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ..limits import set_memory_limit
from .batch import (
    Outputs,
    Record,
    Runner,
    Task,
    Work,
    load_ahead,
    preload_for_workers,
    run_stack,
    temporary_environment,
    unset_worker_environment,
    worker_memory_limit,
    worker_start_method,
)

__all__ = ["dask_runner"]


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            f"`scheduler` needs dask.distributed: pip install 'convstack[cluster]' ({exc})."
        ) from None
    return distributed


def dask_runner(
    scheduler: str,
    *,
    workers: int = 2,
    retries: int = 2,
    on_submitted: Callable[[Any], None] | None = None,
) -> Runner:
    """A runner for :func:`convstack.stack.batch.run_batch` that sends each stack to a
    Dask cluster.

    Parameters
    ----------
    scheduler : str
        The scheduler's address (``'tcp://HOST:8786'``), or ``'local'``: a
        ``distributed.LocalCluster`` of ``workers`` worker processes (one thread each)
        on this machine, started for the batch and closed after it; each gets its
        share of the memory limit in force here
        (:func:`convstack.stack.batch.worker_memory_limit`).
    workers : int
        Worker processes of the local cluster (ignored for an address).
    retries : int
        Times a stack's task is tried again after it raised on a worker (its function
        could not be unpickled there, say). A task whose worker was lost is run again
        elsewhere by the scheduler, up to its ``distributed.scheduler.allowed-failures``
        (default 3), whatever this says.
    on_submitted : callable, optional
        Called with the ``distributed.Client`` once the tasks are submitted (tests use
        it to find the workers).

    Raises
    ------
    ImportError
        dask.distributed is not installed.
    ValueError
        ``scheduler`` is empty, ``workers`` < 1 or ``retries`` < 0.
    """
    _import_distributed()
    if not isinstance(scheduler, str) or not scheduler:
        raise ValueError(f"`scheduler` must be 'local' or an address; got {scheduler!r}.")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"`workers` must be an integer >= 1; got {workers!r}.")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"`retries` must be an integer >= 0; got {retries!r}.")

    def runner(
        work: Work, tasks: Sequence[Task], force: bool, done: Callable[[Record], None]
    ) -> None:
        distributed = _import_distributed()
        share = None
        with contextlib.ExitStack() as stack:
            if scheduler == "local":
                share = worker_memory_limit(workers)
                client = _local_cluster(distributed, stack, workers, share, (work, tasks))
            else:
                client = stack.enter_context(distributed.Client(scheduler))
            _submit_and_collect(
                distributed, client, work, tasks, force, done, retries, on_submitted, share
            )

    return runner


def _absolute(tasks: Sequence[Task]) -> list[Task]:
    """The tasks with absolute paths: a worker's working folder is not this one's."""
    return [
        (
            replace(stack, frames=tuple(path.absolute() for path in stack.frames)),
            Outputs(
                outputs.image.absolute(),
                None if outputs.depth is None else outputs.depth.absolute(),
                tuple(path.absolute() for path in outputs.extra),
            ),
        )
        for stack, outputs in tasks
    ]


def _submit_and_collect(
    distributed: Any,
    client: Any,
    work: Work,
    tasks: Sequence[Task],
    force: bool,
    done: Callable[[Record], None],
    retries: int,
    on_submitted: Callable[[Any], None] | None,
    share: int | None,
) -> None:
    """One task per stack, in the order of ``tasks`` (the scheduler runs the first
    submitted first); a record for each as it ends (a task that failed on every try,
    its worker lost each time, is recorded as failed)."""
    batch = uuid.uuid4().hex[:8]
    futures = {}
    for number, (stack, outputs) in zip(itertools.count(), _absolute(tasks), strict=False):
        future = client.submit(
            _run_with_share,
            share,
            work,
            stack,
            outputs,
            force,
            pure=False,
            retries=retries,
            key=f"convstack-batch-{batch}-{number}",
        )
        futures[future.key] = (future, stack)
    if on_submitted is not None:
        on_submitted(client)
    try:
        for future in distributed.as_completed([f for f, _ in futures.values()]):
            stack = futures[future.key][1]
            try:
                record = future.result()
            except Exception as exc:  # KilledWorker after the retries, a lost cluster
                record = Record(stack.name, len(stack.frames), "failed", note=stack.note)
                record.error = f"the cluster could not run it ({type(exc).__name__}: {exc})"
            done(record)
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel([f for f, _ in futures.values()], force=True)
        raise


def _run_with_share(
    share: int | None, work: Work, stack: Any, outputs: Outputs, force: bool
) -> Record:
    """:func:`convstack.stack.batch.run_stack` in a worker of the local cluster with its
    ``share`` of the memory limit (a forked worker holds the batch's whole limit); a
    remote worker (None) keeps its own."""
    if share is not None:
        set_memory_limit(share)
    return run_stack(work, stack, outputs, force)


#: Whether this process is starting local cluster workers (read by the fork hook).
_forking_workers = False
_hooked = False


def _local_cluster(
    distributed: Any,
    stack: contextlib.ExitStack,
    workers: int,
    share: int,
    batch: tuple[Work, Sequence[Task]],
) -> Any:
    """Start a ``distributed.LocalCluster`` of ``workers`` processes for the ``batch``
    (its work and tasks; closed with ``stack``) and return its client.

    As for ``--jobs``: on Linux, while no other thread runs, the workers are forked from
    this process with the pipeline and numba loaded (spawned, each imports distributed,
    the pipeline and numba again: 0.35 s more start-up a batch and 0.7 s of CPU a worker,
    bench/README "Batch"); each gets ``CONVSTACK_THREADS``, ``CONVSTACK_FORK`` and its
    share of ``CONVSTACK_MEMORY_LIMIT`` in its environment, set here while the cluster
    runs so that a forked worker (and one the nanny restarts) reads them at the fork.
    The scheduler gives a worker one stack at a time (``worker-saturation`` 1.0, not 1.1,
    which queues a second stack on each worker: at the end one worker can sit idle while
    the other holds two). The workers' statistical profiler is off (a dashboard nobody
    serves).
    """
    import dask.config

    method = worker_start_method()
    if method == "fork":
        preload_for_workers()
        load_ahead(*batch)  # the stacks' kernels, once, here: the workers inherit them
        _hook_fork()
    settings = {
        "distributed.worker.profile.enabled": False,
        "distributed.worker.multiprocessing-method": method,
        "distributed.scheduler.worker-saturation": 1.0,
    }
    env = {**unset_worker_environment(workers), "CONVSTACK_MEMORY_LIMIT": str(share)}
    stack.enter_context(dask.config.set(settings))
    stack.enter_context(temporary_environment(env))
    stack.enter_context(_starting_workers())
    cluster = stack.enter_context(
        distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,  # no dashboard; its HTTP server (health, metrics) on
            # any free port, not 8787, which another cluster may hold (distributed warns)
            scheduler_kwargs={"dashboard_address": ":0"},
            env=env,  # (a spawned worker's)
            # distributed's log quiet: a Ctrl-C closes the scheduler while a worker is in
            # a stack, and its tasks cancelled and heartbeat failed print tracebacks; a
            # stack's failure is in its record, a lost worker's in the stack's retry
            silence_logs=logging.CRITICAL,
        )
    )
    return stack.enter_context(distributed.Client(cluster))


@contextlib.contextmanager
def _starting_workers() -> Any:
    global _forking_workers
    _forking_workers = True
    try:
        yield
    finally:
        _forking_workers = False


def _hook_fork() -> None:
    """Register :func:`_forked_worker` to run in every child forked from here (once)."""
    global _hooked
    if not _hooked and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_forked_worker)
        _hooked = True


def _forked_worker() -> None:
    """In a local cluster's worker just forked from the batch's process: Ctrl-C is the
    batch's to handle (it closes the cluster, which ends the workers; a worker of its
    own would print distributed's tracebacks), SIGTERM and SIGHUP end it as they end a
    spawned worker (the command line turns them into an exception that would unwind the
    worker's event loop, not end it), and a new pool for distributed's offload thread
    (the parent's thread, if it had started, is not in the child)."""
    if not _forking_workers:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None:
            signal.signal(number, signal.SIG_DFL)
    from concurrent.futures import ThreadPoolExecutor

    import distributed.utils

    if hasattr(distributed.utils, "_offload_executor"):
        distributed.utils._offload_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="Dask-Offload"
        )
