"""`convstack batch`: fuse every focus stack under a folder, here or on a Dask cluster."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _preload, _writer
from ..limits import memory_limit
from ..stack import DEFAULT_METHOD
from ..stack import batch as _batch
from . import _fuse
from ._allocator import keep_freed_memory
from ._common import UserError, progress_bar

__all__ = ["CommandWork", "register", "run"]


def register(subparsers: Any) -> None:
    """Add the `batch` subcommand."""
    parser = subparsers.add_parser(
        "batch",
        help="fuse every focus stack under a folder (here, in parallel, or on a Dask cluster)",
        description=(
            "Find the focus stacks under ROOT (each folder of two or more frames, or "
            "groups of one folder's frames with --group), fuse each one as `convstack "
            "fuse` does, and write OUTDIR mirroring ROOT's tree: ROOT/a/b/*.jpg gives "
            f"OUTDIR/a/b.jpg. A report (JSON lines, OUTDIR/{_batch.REPORT_NAME}) says how "
            "each stack went; the exit status is 1 if any failed. A rerun skips the "
            "stacks whose outputs exist."
        ),
    )
    parser.add_argument("root", metavar="ROOT", help="folder holding the stacks")
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUTDIR", help="folder for the results"
    )
    parser.add_argument(
        "--group",
        default="folder",
        metavar="RULE",
        help="how a folder's frames make stacks: 'folder' (all of them, the default), "
        "'prefix' (one stack per file-name prefix: beetle_001.jpg -> beetle), or "
        "'gap=SECONDS' (a new stack after a pause longer than SECONDS between capture "
        "times: EXIF DateTimeOriginal, else the file's modification time)",
    )
    parser.add_argument(
        "--format",
        choices=("png", "tif", "jpg"),
        help="format of the results (default: that of each stack's frames)",
    )
    parser.add_argument(
        "--depth-map", action="store_true", help="also write NAME.depth.png beside each result"
    )
    _fuse.add_merge_options(parser)
    parser.add_argument(
        "--save-steps",
        action="store_true",
        help="write each stack's intermediate images to the folder NAME.steps beside its result",
    )
    parser.add_argument(
        "--retouch",
        metavar="DIR",
        help="replay DIR/NAME.strokes.json (strokes saved by `convstack view`, in a tree "
        "mirroring ROOT) on the stacks that have one",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="stacks fused at once, each in its own process (default 1); with "
        "--scheduler local, the number of Dask workers",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the stacks on a Dask cluster: tcp://HOST:8786, or 'local' for a cluster "
        "of --jobs worker processes on this machine (needs convstack[cluster])",
    )
    parser.add_argument(
        "--report",
        metavar="FILE",
        help=f"where the report goes (default OUTDIR/{_batch.REPORT_NAME})",
    )
    parser.add_argument(
        "--force", action="store_true", help="redo the stacks whose outputs exist, replacing them"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _merge_option_names() -> list[str]:
    """The destinations of fuse's merge options (whatever fuse declares there)."""
    probe = argparse.ArgumentParser(add_help=False)
    _fuse.add_merge_options(probe)
    return list(vars(probe.parse_args([])))  # every option has a default


@dataclass(frozen=True)
class CommandWork:
    """Runs `convstack fuse` itself (its checks, writes and options) on one stack."""

    options: dict[str, Any]
    format: str | None = None
    depth_map: bool = False
    save_steps: bool = False
    retouch: str | None = None
    #: Whether the stacks run in processes this command started (its --jobs workers, or
    #: those of a local cluster), whose allocator it may tune as it tunes its own;
    #: not the workers of a cluster that others run.
    own_processes: bool = True
    naming: _batch.FuseWork = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "naming", _batch.FuseWork(depth_map=self.depth_map, format=self.format)
        )

    def outputs(self, stack: _batch.Stack, outdir: Path) -> _batch.Outputs:
        """``OUTDIR/NAME.EXT``, ``OUTDIR/NAME.depth.png``, ``OUTDIR/NAME.steps/``."""
        named = self.naming.outputs(stack, outdir)
        extra: tuple[Path, ...] = ()
        if self.save_steps:
            extra = (named.image.with_name(named.image.stem + ".steps"),)
        return _batch.Outputs(named.image, named.depth, extra)

    def strokes(self, stack: _batch.Stack) -> str | None:
        """The stack's strokes file under ``--retouch``, if it has one."""
        if self.retouch is None:
            return None
        path = Path(self.retouch).joinpath(*stack.name.split("/"))
        path = path.with_name(path.name + ".strokes.json")
        return str(path) if path.is_file() else None

    def kernels(self, stack: _batch.Stack) -> dict[str, Any]:
        """The kernels `convstack fuse` calls on ``stack`` (for ``load_ahead``)."""
        return _preload.fuse_kernels(
            stack.frames,
            align=self.options.get("align", "similarity"),
            method=self.options.get("method", DEFAULT_METHOD),
            focus_channel=self.options.get("focus_channel"),
        )

    def __call__(self, stack: _batch.Stack, outputs: _batch.Outputs, overwrite: bool) -> None:
        """Fuse ``stack`` into ``outputs`` by `convstack fuse`'s own code."""
        if self.own_processes:
            keep_freed_memory()  # as `main` does for the command's process (a few calls)
        args = argparse.Namespace(
            inputs=[str(frame) for frame in stack.frames],
            output=str(outputs.image),
            depth_map=None if outputs.depth is None else str(outputs.depth),
            save_steps=str(outputs.extra[0]) if outputs.extra else None,
            retouch=self.strokes(stack),
            force=overwrite,
            quiet=True,
            **self.options,
        )
        _fuse.run(args)


def _scheduler_runner(args: argparse.Namespace) -> _batch.Runner | None:
    if args.scheduler is None:
        return None
    try:
        from ..stack import cluster
    except ImportError as exc:  # pragma: no cover - the extra is part of the test set-up
        raise UserError(f"--scheduler needs convstack[cluster] (dask.distributed): {exc}") from None
    try:
        return cluster.dask_runner(args.scheduler, workers=args.jobs)
    except ImportError as exc:
        raise UserError(str(exc)) from None


def _splits_budget(args: argparse.Namespace) -> bool:
    """Whether ``--memory-limit`` is this machine's budget for the whole batch (its
    stacks run here, or on a local cluster), rather than each stack's on a cluster's
    machines."""
    return getattr(args, "memory_limit", None) is not None and args.scheduler in (None, "local")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; 0 if every stack was fused or skipped, else 1.

    ``--memory-limit`` on this machine bounds the whole batch: it becomes the limit in
    force while the batch runs, which each of the ``--jobs`` workers (or local cluster
    workers) gets its share of, and a stack's fuse plans within that share.
    """
    if not _splits_budget(args):
        return _run(args)
    with memory_limit(args.memory_limit):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    root, outdir = Path(args.root), Path(args.output)
    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1; got {args.jobs}.")
    try:
        grouping = _batch.parse_group(args.group)
    except ValueError as exc:
        raise UserError(f"--group: {exc}") from None
    if not root.is_dir():
        raise UserError(f"{root}: is not a folder (ROOT must be the folder holding the stacks).")
    if outdir.exists() and not outdir.is_dir():
        raise UserError(f"-o {outdir}: is a file, not a folder.")
    if args.retouch is not None and not Path(args.retouch).is_dir():
        raise UserError(f"--retouch {args.retouch}: is not a folder.")
    stacks = _batch.find_stacks(root, group=grouping, exclude=[outdir])
    if not stacks:
        raise UserError(f"{root}: holds no focus stack (a folder of two or more frames).")
    runner = _scheduler_runner(args)
    outdir.mkdir(parents=True, exist_ok=True)
    report = Path(args.report) if args.report else outdir / _batch.REPORT_NAME
    frames = _writer.Inputs(frame for stack in stacks for frame in stack.frames)
    try:  # refused now rather than after the work
        _writer.check_target(report, overwrite=True, inputs=frames)
    except _writer.OutputRefusedError as exc:
        raise UserError(f"--report {exc}") from None
    work = CommandWork(
        options={
            name: None if name == "memory_limit" and _splits_budget(args) else getattr(args, name)
            for name in _merge_option_names()
        },
        format=args.format,
        depth_map=args.depth_map,
        save_steps=args.save_steps,
        retouch=None if args.retouch is None else str(Path(args.retouch).absolute()),
        own_processes=args.scheduler in (None, "local"),
    )
    ended: dict[str, _batch.Record] = {}
    try:
        records = _batch.run_batch(
            stacks,
            outdir,
            work,
            jobs=args.jobs,
            force=args.force,
            runner=runner,
            progress=progress_bar(args.quiet),
            on_record=lambda record: ended.__setitem__(record.stack, record),
        )
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the report of what ended, then exit
        _report_interrupted([ended[s.name] for s in stacks if s.name in ended], report, frames)
        raise
    _batch.write_report(records, report, inputs=frames)
    counts = {status: sum(r.status == status for r in records) for status in ("done", "skipped")}
    failed = [r for r in records if r.status == "failed"]
    for record in failed:
        print(f"failed: {record.stack}: {record.error}", file=sys.stderr)
    print(
        f"batch: {counts['done']} fused, {counts['skipped']} skipped, {len(failed)} failed "
        f"of {len(records)} stacks; report: {os.fspath(report)}",
        file=sys.stderr,
    )
    return 1 if failed else 0


def _report_interrupted(records: list[_batch.Record], report: Path, frames: _writer.Inputs) -> None:
    """Write the report of an interrupted batch: the stacks that ended, and the others
    marked 'interrupted' (:func:`convstack.stack.batch.run_batch` adds them)."""
    _batch.write_report(records, report, inputs=frames)
    fused = sum(r.status == "done" for r in records)
    stopped = sum(r.status == "interrupted" for r in records)
    print(
        f"batch interrupted: {fused} fused, {stopped} not finished (left no output); "
        f"report: {os.fspath(report)}",
        file=sys.stderr,
    )
