"""``convstack view``: a local web page to inspect a fused image and retouch it.

The replay of retouch strokes (:mod:`convstack.viewer.retouch`) needs only NumPy and
is what ``convstack fuse --retouch`` uses; the server (:mod:`convstack.viewer.server`)
needs the ``view`` extra (Starlette and uvicorn) and is imported only when asked for.
"""

from __future__ import annotations

from .retouch import FORMAT, Stroke, apply_strokes, load_strokes, parse_strokes, strokes_document

__all__ = ["FORMAT", "Stroke", "apply_strokes", "load_strokes", "parse_strokes", "strokes_document"]
