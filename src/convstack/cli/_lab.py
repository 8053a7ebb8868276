"""`convstack lab`: run every section and task of lab 3 and write an HTML report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .. import _writer
from ._common import UserError


def register(subparsers: Any) -> None:
    """Add the `lab` subcommand."""
    parser = subparsers.add_parser(
        "lab",
        help="run the convolution lab on built-in data and write an HTML report",
        description=(
            "Run every section and task of lab 3 (convolution) with convstack on built-in "
            "data and write OUT/report.html with its figures in OUT/figures. "
            'Needs matplotlib: pip install "convstack[plots]".'
        ),
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder of the report")
    parser.add_argument(
        "--bug", metavar="DIR", help="the lab's bug set (b_bigbug*.png, result.png) for Task 4"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing report")
    parser.add_argument("--small", action="store_true", help="small images: a quick run")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(func=run)


def _check_folders(out: Path) -> None:
    """Refuse, before the work, a report folder (or its figures folder) that exists and
    cannot be written to; a missing one is made by ``run_lab`` at once."""
    for folder in (out, out / "figures"):
        if folder.exists():
            try:
                _writer.check_folder(folder, what=f"--out {out}")
            except _writer.OutputRefusedError as exc:
                raise UserError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    from ..apps.lab import run_lab

    def progress(stage: str, done: int, total: int) -> None:
        if done < total:
            print(f"[{done + 1}/{total}] {stage}", file=sys.stderr, flush=True)

    _check_folders(Path(args.out))
    try:
        path = run_lab(
            args.out,
            bug=args.bug,
            small=args.small,
            overwrite=args.force,
            progress=None if args.quiet else progress,
        )
    except (FileExistsError, FileNotFoundError, ImportError) as exc:
        raise UserError(str(exc)) from exc
    print(path)
    return 0
