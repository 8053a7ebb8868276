"""Pieces shared by the subcommands: the user-error type and small helpers."""

from __future__ import annotations


class UserError(Exception):
    """A mistake by the user (bad file, bad option): printed as ``error: ...``, no traceback."""
