"""`convstack view`: a local web page to inspect a fused image and retouch it."""

from __future__ import annotations

import argparse
import sys
import webbrowser
from typing import Any

from ..stack.errors import StackError
from ._common import UserError

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the `view` subcommand."""
    parser = subparsers.add_parser(
        "view",
        help="inspect and retouch a fused image in the browser (local page)",
        description=(
            "Serve a page on 127.0.0.1 (a free port, a random token in the URL) to zoom "
            "and pan the fused image, compare it with any frame, overlay the depth map or "
            "a frame's sharpness, and paint from a frame where the fusion chose badly. "
            "Save writes a new image beside the result and the strokes as a JSON file "
            "that `convstack fuse ... --retouch FILE` replays. Ctrl-C stops it."
        ),
    )
    parser.add_argument("result", metavar="RESULT", help="the fused image")
    parser.add_argument(
        "--frames",
        nargs="+",
        metavar="DIR|GLOB",
        help="the aligned frames: the --save-steps folder of `convstack fuse` (its "
        "aligned_NNN.png and depth.png), or files, a folder or a glob",
    )
    parser.add_argument("--depth-map", metavar="FILE", help="the depth map `fuse` wrote")
    parser.add_argument(
        "--port", type=int, default=0, metavar="N", help="port on 127.0.0.1 (default: a free one)"
    )
    parser.add_argument("--no-browser", action="store_true", help="only print the URL")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand: serve until Ctrl-C."""
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must lie in [0, 65535]; got {args.port}.")
    try:
        from ..viewer import server
    except ImportError as exc:
        raise UserError(
            f"convstack view needs the 'view' extra ({exc.name} is missing): "
            "pip install 'convstack[view]'."
        ) from None
    try:
        stack = server.open_stack(args.result, args.frames, args.depth_map)
    except (StackError, ValueError) as exc:
        raise UserError(str(exc)) from None

    def ready(url: str) -> None:
        print(f"convstack view: {url}", flush=True)
        print("Ctrl-C to stop.", file=sys.stderr, flush=True)
        if not args.no_browser:
            webbrowser.open(url)

    try:
        server.serve(stack, port=args.port, on_ready=ready)
    except OSError as exc:
        if exc.strerror and args.port:
            raise UserError(f"--port {args.port}: cannot listen there ({exc.strerror}).") from None
        raise
    return 0
