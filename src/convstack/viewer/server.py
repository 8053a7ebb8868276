"""The viewer's web server: a Starlette app on 127.0.0.1, for the token holder only.

Security, stated once:

- It listens on 127.0.0.1 only, and every request must carry the random token made at
  start (``?token=`` in the URL, then the ``convstack_token_PORT`` cookie the page gets,
  or the ``X-Convstack-Token`` header); compared in constant time.
- The ``Host`` header must be ``127.0.0.1:PORT`` or ``localhost:PORT`` (a DNS-rebinding
  page has its own host name there), an ``Origin`` header must be the same origin,
  and a ``Sec-Fetch-Site`` other than ``same-origin`` or ``none`` is refused.
- No request names a file: images are addressed by fixed names (``result``, ``f3``,
  ``depth``) and numbers, the page's own files by a fixed table; the list of frames is
  fixed when the server starts. A save takes a bare file name, written beside the
  result through the project's one writer (no clobber unless asked, never over the
  result, a frame or the depth map, atomic).
"""

from __future__ import annotations

import hmac
import json
import math
import secrets
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import _writer
from ..stack import io as _io
from ..stack.errors import FrameMismatchError, OutputError, StackError
from . import retouch
from .tiles import TILE, ByteCache, Pyramid, encode_png, heat, reduce2

__all__ = ["Guard", "ViewStack", "make_app", "open_stack", "serve"]

#: Largest side of the overlays (depth, sharpness) and of the maps the click pick uses.
OVERLAY_SIDE = 1024
#: Bytes the tile cache may hold (levels and encoded tiles together).
CACHE_BYTES = 384 * 2**20
_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "brush.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


@dataclass
class ViewStack:
    """What one viewer serves: the result, its frames and depth map, fixed at start."""

    result: Path
    image: NDArray[Any]
    frames: list[Path] = field(default_factory=list)
    depth_path: Path | None = None
    cache: ByteCache = field(default_factory=lambda: ByteCache(CACHE_BYTES))

    def __post_init__(self) -> None:
        self.shape: tuple[int, ...] = tuple(self.image.shape)
        self.pyramids: dict[str, Pyramid] = {
            "result": Pyramid("result", self.shape, lambda: self.image, self.cache)
        }
        for index in range(len(self.frames)):
            self.pyramids[f"f{index}"] = Pyramid(
                f"f{index}", self.shape, self._frame_loader(index), self.cache
            )
        self.depth_small: NDArray[Any] | None = None
        self.depth_top = 1.0
        if self.depth_path is not None:
            depth = _io.read_image(self.depth_path)
            if depth.ndim != 2 or depth.shape != self.shape[:2]:
                raise ValueError(
                    f"`--depth-map` {self.depth_path} must be a grey image of the result's "
                    f"size {self.shape[0]} x {self.shape[1]}; got shape {depth.shape}."
                )
            self.depth_top = float(np.iinfo(depth.dtype).max) if depth.dtype.kind == "u" else 1.0
            while max(depth.shape) > OVERLAY_SIDE:
                depth = reduce2(depth)
            self.depth_small = depth
        self._lock = threading.Lock()

    def warm(self) -> threading.Thread:
        """Make the result's levels in a background thread (the page's first view
        needs a coarse one, made from all finer ones)."""
        pyramid = self.pyramids["result"]
        thread = threading.Thread(
            target=pyramid.level,
            args=(pyramid.levels - 1,),
            name="convstack-view-warm",
            daemon=True,
        )
        thread.start()
        return thread

    def _frame_loader(self, index: int) -> Callable[[], NDArray[Any]]:
        def load() -> NDArray[Any]:
            return self.read_frame(index)

        return load

    def read_frame(self, index: int) -> NDArray[Any]:
        """Frame ``index`` at full resolution, checked against the result's shape."""
        path = self.frames[index]
        array = _io.read_image(path)
        if array.shape != self.shape:
            raise FrameMismatchError(
                f"frame {path} must have the result's shape {self.shape}; got {array.shape} "
                "(give the aligned frames: the --save-steps folder of `convstack fuse`)."
            )
        return array

    def info(self) -> dict[str, Any]:
        """What the page needs to know, as JSON."""
        pyramid = self.pyramids["result"]
        stem, suffix = self.result.stem, self.result.suffix
        return {
            "name": self.result.name,
            "rows": self.shape[0],
            "cols": self.shape[1],
            "channels": 1 if len(self.shape) == 2 else self.shape[2],
            "dtype": str(self.image.dtype),
            "tile": TILE,
            "levels": pyramid.levels,
            "frames": [{"index": i, "name": p.name} for i, p in enumerate(self.frames)],
            "depth": self.depth_small is not None,
            "save_name": f"{stem}_retouched{suffix}",
        }

    def sharpness_small(self, index: int) -> NDArray[np.float32]:
        """The focus measure of frame ``index`` at overlay size (cached)."""
        key = ("sharpness", index)
        found = self.cache.get(key)
        if found is not None:
            return found
        from ..stack.sharpness import sharpness

        small = self.pyramids[f"f{index}"].smallest(OVERLAY_SIDE)
        measure = sharpness(small, measure="log_energy", sigma=1.0, window=2.0)
        self.cache.put(key, measure, measure.nbytes)
        return measure

    def overlay(self, kind: str, index: int = 0) -> bytes:
        """A colour-mapped overlay PNG: ``depth``, or ``sharpness`` of a frame."""
        key = ("overlay", kind, index)
        found = self.cache.get(key)
        if found is not None:
            return found
        if kind == "depth":
            if self.depth_small is None:
                raise LookupError("no depth map")
            values = self.depth_small.astype(np.float32) / np.float32(self.depth_top)
        else:
            measure = self.sharpness_small(index)
            top = float(np.percentile(measure, 99.5)) if measure.size else 0.0
            values = measure / np.float32(top) if top > 0 else measure
            values = np.sqrt(np.clip(values, 0.0, 1.0))
        data = encode_png(heat(values))
        self.cache.put(key, data, len(data))
        return data

    def pick(self, row: float, col: float) -> int:
        """The frame sharpest at image point (row, col): from the depth map if there is
        one, else the largest focus measure in a 5x5 window there."""
        count = len(self.frames)
        if count == 0:
            raise LookupError("no frames")
        if self.depth_small is not None:
            small = self.depth_small
            r, c = self._scaled(small.shape, row, col)
            value = float(small[r, c]) / self.depth_top * (count - 1)
            return int(min(count - 1, max(0, round(value))))
        best, chosen = -1.0, 0
        for index in range(count):
            measure = self.sharpness_small(index)
            r, c = self._scaled(measure.shape, row, col)
            window = measure[max(0, r - 2) : r + 3, max(0, c - 2) : c + 3]
            score = float(window.mean())
            if score > best:
                best, chosen = score, index
        return chosen

    def _scaled(self, shape: tuple[int, ...], row: float, col: float) -> tuple[int, int]:
        r = int(row * shape[0] / self.shape[0])
        c = int(col * shape[1] / self.shape[1])
        return min(shape[0] - 1, max(0, r)), min(shape[1] - 1, max(0, c))

    def inputs(self) -> _writer.Inputs:
        """The files a save may never write."""
        paths = [self.result, *self.frames]
        if self.depth_path is not None:
            paths.append(self.depth_path)
        return _writer.Inputs(paths)

    def save(self, document: Any, name: Any, overwrite: bool) -> dict[str, Any]:
        """Apply the strokes to the full-resolution result and write it beside the
        result as ``name``, with the strokes as ``<stem>.strokes.json``."""
        if not isinstance(name, str) or not _plain_name(name):
            raise ValueError(
                "`name` must be a plain file name (no folder, not hidden) ending in "
                f"{', '.join(_io.IMAGE_EXTENSIONS)}; got {name!r}."
            )
        strokes = retouch.parse_strokes(document, self.shape, len(self.frames))
        target = self.result.parent / name
        sidecar = target.with_name(target.stem + ".strokes.json")
        inputs = self.inputs()
        _io.check_output(target, overwrite=overwrite, inputs=inputs)
        try:
            _writer.check_target(sidecar, overwrite=overwrite, inputs=inputs)
        except _writer.OutputRefusedError as exc:
            raise OutputError(str(exc)) from None
        loaded: dict[int, NDArray[Any]] = {}

        def frame(index: int) -> NDArray[Any]:
            if index not in loaded:
                loaded.clear()  # one full frame at a time (strokes mostly reuse one)
                loaded[index] = self.read_frame(index)
            return loaded[index]

        with self._lock:
            image = retouch.apply_strokes(self.image, strokes, frame)
            names = [p.name for p in self.frames]
            text = json.dumps(retouch.strokes_document(strokes, self.shape, names), indent=1)
            metadata = _io.read_metadata(self.result)
            _io.write_image(target, image, overwrite=overwrite, metadata=metadata, inputs=inputs)
            try:
                _writer.write_bytes(
                    sidecar, text.encode("utf-8"), overwrite=overwrite, inputs=inputs
                )
            except _writer.OutputRefusedError as exc:
                raise OutputError(str(exc)) from None
        return {"saved": str(target), "strokes": str(sidecar), "count": len(strokes)}


def _plain_name(name: str) -> bool:
    return (
        0 < len(name) <= 255
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
        and not name.startswith(".")
        and Path(name).suffix.lower() in _io.IMAGE_EXTENSIONS
    )


def _steps_frames(folder: Path) -> list[Path]:
    return sorted(folder.glob("aligned_[0-9][0-9][0-9].png"), key=lambda p: _io.natural_key(p.name))


def open_stack(
    result: str | Path,
    frames: Sequence[str] | str | None = None,
    depth_map: str | Path | None = None,
    *,
    cache_bytes: int = CACHE_BYTES,
) -> ViewStack:
    """Read the result and list the frames (a folder, a glob, or the folder that
    ``convstack fuse --save-steps`` wrote: its ``aligned_NNN.png`` and ``depth.png``)."""
    path = Path(result)
    if path.is_dir():
        raise ValueError(
            f"`RESULT` must be the fused image, not a folder; got {path} "
            "(give a --save-steps folder with --frames)."
        )
    image = _io.read_image(path)
    frame_paths: list[Path] = []
    depth = Path(depth_map) if depth_map is not None else None
    if frames is not None:
        entries = [frames] if isinstance(frames, str) else list(frames)
        folder = Path(entries[0]) if len(entries) == 1 else None
        if folder is not None and folder.is_dir() and _steps_frames(folder):
            frame_paths = _steps_frames(folder)
            if depth is None and (folder / "depth.png").is_file():
                depth = folder / "depth.png"
        else:
            try:
                frame_paths = _io.list_frames(entries)
            except StackError as exc:
                raise ValueError(f"`--frames` {exc}") from None
        resolved = path.resolve()
        frame_paths = [p for p in frame_paths if p.resolve() != resolved]
    return ViewStack(path, image, frame_paths, depth, ByteCache(cache_bytes))


class Guard:
    """ASGI middleware: the token, Host, Origin and Sec-Fetch-Site checks of every request."""

    def __init__(self, app: ASGIApp, token: str, port: int) -> None:
        self.app = app
        self.token = token.encode("ascii")
        self.cookie = f"convstack_token_{port}"
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        self.origins = {f"http://{host}" for host in self.hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # a WebSocket: the viewer has none
            await send({"type": "websocket.close", "code": 1008})
            return
        reason = self.refusal(scope)
        if reason is not None:
            response = PlainTextResponse(reason, status_code=403)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> str | None:
        """Why a request is refused, or None."""
        headers: dict[str, str] = {}
        for key, value in scope.get("headers", []):
            name = key.decode("latin-1").lower()
            if name in headers:  # a repeated Host, Origin, ... is never honest
                return f"repeated header {name}"
            headers[name] = value.decode("latin-1")
        if headers.get("host") not in self.hosts:
            return "wrong host"
        origin = headers.get("origin")
        if origin is not None and origin not in self.origins:
            return "wrong origin"
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return "cross-site request"
        if not self.token_ok(scope, headers):
            return "missing or wrong token"
        return None

    def token_ok(self, scope: Scope, headers: dict[str, str]) -> bool:
        """Whether the request carries the token (header, cookie, or ?token= on a GET)."""
        given = [headers.get("x-convstack-token", "")]
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie:
                given.append(value)
        if scope.get("method") == "GET":
            from urllib.parse import parse_qs

            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given.extend(query.get("token", []))
        return any(
            hmac.compare_digest(value.encode("latin-1", "replace"), self.token)
            for value in given
            if value
        )


#: The page's own scripts, styles and images only; never inside another site's frame.
_POLICY = (
    "default-src 'self'; img-src 'self' blob:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def _static(name: str) -> bytes:
    return (resources.files("convstack.viewer") / "static" / name).read_bytes()


def make_app(stack: ViewStack, *, token: str, port: int) -> ASGIApp:
    """The viewer's ASGI app for ``stack``, guarded by :class:`Guard`."""
    cookie = f"convstack_token_{port}"

    async def index(request: Request) -> Response:
        response = Response(_static("index.html"), media_type=_STATIC["index.html"])
        response.set_cookie(cookie, token, httponly=True, samesite="strict", path="/")
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = _POLICY
        response.headers["Referrer-Policy"] = "no-referrer"  # the URL holds the token
        return response

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return PlainTextResponse("not found", status_code=404)
        return Response(
            _static(name), media_type=_STATIC[name], headers={"X-Content-Type-Options": "nosniff"}
        )

    async def info(request: Request) -> Response:
        return JSONResponse(stack.info())

    def png(data: bytes) -> Response:
        return Response(data, media_type="image/png", headers={"Cache-Control": "private"})

    def pyramid(request: Request) -> Pyramid | None:
        return stack.pyramids.get(request.path_params["source"])

    async def tile(request: Request) -> Response:
        found = pyramid(request)
        if found is None:
            return PlainTextResponse("no such image", status_code=404)
        p = request.path_params
        try:
            data = await run_in_threadpool(found.tile, p["level"], p["row"], p["col"])
        except StackError as exc:  # a frame that cannot be read, or of another size
            return PlainTextResponse(str(exc), status_code=500)
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        return png(data)

    async def thumb(request: Request) -> Response:
        found = pyramid(request)
        if found is None:
            return PlainTextResponse("no such image", status_code=404)
        try:
            level = await run_in_threadpool(found.smallest, TILE)
        except StackError as exc:
            return PlainTextResponse(str(exc), status_code=500)
        return png(await run_in_threadpool(encode_png, level))

    async def overlay(request: Request) -> Response:
        kind = request.path_params["kind"]
        index = int(request.query_params.get("frame", "0") or 0)
        if kind not in ("depth", "sharpness") or (
            kind == "sharpness" and not 0 <= index < len(stack.frames)
        ):
            return PlainTextResponse("no such overlay", status_code=404)
        try:
            return png(await run_in_threadpool(stack.overlay, kind, index))
        except LookupError as exc:
            return PlainTextResponse(str(exc), status_code=404)

    async def pick(request: Request) -> Response:
        try:
            row = float(request.query_params["row"])
            col = float(request.query_params["col"])
        except (KeyError, ValueError):
            return JSONResponse({"error": "`row` and `col` must be numbers."}, status_code=400)
        if not (math.isfinite(row) and math.isfinite(col)):
            return JSONResponse({"error": "`row` and `col` must be finite."}, status_code=400)
        try:
            return JSONResponse({"frame": await run_in_threadpool(stack.pick, row, col)})
        except LookupError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)

    async def save(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the request must be JSON."}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the request must be a JSON object."}, status_code=400)
        overwrite = body.get("overwrite") is True
        try:
            done = await run_in_threadpool(
                stack.save, body.get("strokes"), body.get("name"), overwrite
            )
        except OutputError as exc:
            exists = "already exists" in str(exc)
            status = 409 if exists else 400
            return JSONResponse({"error": str(exc), "exists": exists}, status_code=status)
        except (ValueError, TypeError, StackError, OSError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(done)

    routes = [
        Route("/", index),
        Route("/static/{name}", static),
        Route("/api/info", info),
        Route("/api/tile/{source}/{level:int}/{row:int}/{col:int}", tile),
        Route("/api/thumb/{source}", thumb),
        Route("/api/overlay/{kind}", overlay),
        Route("/api/pick", pick),
        Route("/api/save", save, methods=["POST"]),
    ]
    return Guard(Starlette(routes=routes), token, port)


def bind(port: int = 0) -> socket.socket:
    """A listening TCP socket on 127.0.0.1 (``port`` 0: a free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return sock


def serve(
    stack: ViewStack,
    *,
    port: int = 0,
    on_ready: Callable[[str], object] | None = None,
) -> None:
    """Serve ``stack`` on 127.0.0.1 until interrupted (Ctrl-C ends it cleanly).

    ``on_ready(url)`` is called once the socket listens, with the page's URL (token
    included).
    """
    import uvicorn

    sock = bind(port)
    try:
        actual = sock.getsockname()[1]
        token = secrets.token_urlsafe(24)
        app = make_app(stack, token=token, port=actual)
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", access_log=False, server_header=False
        )
        server = uvicorn.Server(config)
        stack.warm()
        if on_ready is not None:
            on_ready(f"http://127.0.0.1:{actual}/?token={token}")
        server.run(sockets=[sock])
    finally:
        sock.close()
