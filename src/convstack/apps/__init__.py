"""Applications built on convstack, apart from the library modules: the lab report.

Nothing in the library imports them; the command line runs them (``convstack lab``). The
demo's application is the command itself, ``convstack.cli._demo``.
"""

from __future__ import annotations

__all__: list[str] = []
