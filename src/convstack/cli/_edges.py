"""`convstack edges`: placeholder until its issue lands."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import UserError


def register(subparsers: Any) -> None:
    """Add the `edges` subcommand."""
    parser = subparsers.add_parser("edges", help="(not available yet)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand."""
    raise UserError("`convstack edges` is not available in this build yet.")
