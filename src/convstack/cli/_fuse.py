"""`convstack fuse`: placeholder until its issue lands."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import UserError


def register(subparsers: Any) -> None:
    """Add the `fuse` subcommand."""
    parser = subparsers.add_parser("fuse", help="(not available yet)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    raise UserError("`convstack fuse` is not available in this build yet.")
