"""The batch of :mod:`convstack.stack.batch` on a Dask cluster (``convstack[cluster]``).

Each stack is one task (``pure=False``: run every time it is asked; ``retries=2``):
:func:`convstack.stack.batch.run_stack` runs on a worker, which reads the frames from
storage that the workers (and this process) share and writes the outputs there by the
one writer's rules. A worker lost mid-stack (killed, its machine gone) leaves at most
the writer's temporary file ``.NAME.XXXXXXXX.tmp`` beside the output, never a file
under the output's name; the scheduler gives the task to another worker, whose
``run_stack`` first removes such leftovers of that stack's outputs, and the end of the
batch removes any that remain. A stack whose task fails on every try is reported as
failed; the others go on.

Dask is imported here only, when a runner is made.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .batch import (
    Outputs,
    Record,
    Runner,
    Task,
    Work,
    run_stack,
    unset_worker_environment,
    worker_memory_limit,
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
        Times a stack's task is tried again after its worker was lost.
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
        import dask.config

        with contextlib.ExitStack() as stack:
            if scheduler == "local":
                # the workers' statistical profiler samples every 10 ms for a dashboard
                # that is not served: 0.3-1.0 s of CPU a 20-stack batch (bench/README)
                no_profiler = {"distributed.worker.profile.enabled": False}
                stack.enter_context(dask.config.set(no_profiler))
                cluster = stack.enter_context(
                    distributed.LocalCluster(
                        n_workers=workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,  # no dashboard; its HTTP server
                        # (health, metrics) on any free port, not 8787, which another
                        # cluster may hold (distributed warns and moves)
                        scheduler_kwargs={"dashboard_address": ":0"},
                        env={  # each worker's share of threads and of the memory limit
                            **unset_worker_environment(workers),
                            "CONVSTACK_MEMORY_LIMIT": str(worker_memory_limit(workers)),
                        },
                    )
                )
                client = stack.enter_context(distributed.Client(cluster))
            else:
                client = stack.enter_context(distributed.Client(scheduler))
            _submit_and_collect(
                distributed, client, work, tasks, force, done, retries, on_submitted
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
) -> None:
    """One task per stack; a record for each as it ends (a task that failed on every
    try, its worker lost each time, is recorded as failed)."""
    batch = uuid.uuid4().hex[:8]
    futures = {}
    for number, (stack, outputs) in zip(itertools.count(), _absolute(tasks), strict=False):
        future = client.submit(
            run_stack,
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
