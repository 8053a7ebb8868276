"""The viewer's server through Starlette's TestClient: token, Host and Origin checks,
traversal, tiles against a 2x2-mean oracle, overlays, pick, and saves that never
clobber and equal what `convstack fuse --retouch` replays; the command's Ctrl-C."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convstack.cli import main
from convstack.stack.io import read_image, write_image

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
from starlette.testclient import TestClient  # noqa: E402

from convstack.viewer.server import Guard, make_app, open_stack  # noqa: E402
from convstack.viewer.tiles import ByteCache, Pyramid, reduce2  # noqa: E402

PORT = 5123
TOKEN = "s3cret-token"
BASE = f"http://127.0.0.1:{PORT}"
AUTH = {"X-Convstack-Token": TOKEN}
ROWS, COLS = 300, 520


def oracle_reduce(level: np.ndarray) -> np.ndarray:
    """2x2 means by a plain loop (odd edge repeated), rounded half up."""
    rows, cols = (level.shape[0] + 1) // 2, (level.shape[1] + 1) // 2
    out = np.empty((rows, cols, *level.shape[2:]), dtype=level.dtype)
    for r in range(rows):
        for c in range(cols):
            rr = [min(2 * r, level.shape[0] - 1), min(2 * r + 1, level.shape[0] - 1)]
            cc = [min(2 * c, level.shape[1] - 1), min(2 * c + 1, level.shape[1] - 1)]
            total = sum(level[i, j].astype(np.int64) for i in rr for j in cc)
            out[r, c] = (total + 2) // 4
    return out


@pytest.fixture
def stack(tmp_path: Path) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    result = rng.integers(0, 256, (ROWS, COLS, 3), dtype=np.uint8)
    write_image(tmp_path / "result.png", result)
    (tmp_path / "frames").mkdir()
    frames = []
    for i in range(4):
        frame = np.full((ROWS, COLS, 3), 60 * i, dtype=np.uint8)
        if i == 1:  # sharp texture only in frame 1, in the top-left quarter
            frame[: ROWS // 2, : COLS // 2] = rng.integers(0, 256, (ROWS // 2, COLS // 2, 3))
        write_image(tmp_path / "frames" / f"f{i}.png", frame)
        frames.append(frame)
    depth = np.full((ROWS, COLS), round(2 / 3 * 65535), dtype=np.uint16)  # frame 2 of 0..3
    write_image(tmp_path / "depth.png", depth)
    return {"dir": tmp_path, "result": result, "frames": frames}


def client(stack: dict[str, Any], depth: bool = True) -> TestClient:
    view = open_stack(
        stack["dir"] / "result.png",
        str(stack["dir"] / "frames"),
        stack["dir"] / "depth.png" if depth else None,
    )
    return TestClient(make_app(view, token=TOKEN, port=PORT), base_url=BASE)


def test_every_request_needs_the_token(stack: dict[str, Any]) -> None:
    c = client(stack)
    assert c.get("/").status_code == 403
    assert c.get("/api/info").status_code == 403
    assert c.get("/api/info", headers={"X-Convstack-Token": "wrong"}).status_code == 403
    assert c.get("/api/tile/result/0/0/0").status_code == 403
    assert c.post("/api/save", json={}).status_code == 403
    assert c.get("/api/info", headers=AUTH).status_code == 200
    page = c.get(f"/?token={TOKEN}")
    assert page.status_code == 200 and "<canvas" in page.text
    assert f"convstack_token_{PORT}" in page.headers["set-cookie"]
    assert (
        "HttpOnly" in page.headers["set-cookie"] and "SameSite=strict" in page.headers["set-cookie"]
    )
    assert c.get("/api/info").status_code == 200  # the cookie now
    assert c.get("/static/app.js").status_code == 200
    other = TestClient(c.app, base_url=BASE)
    # a POST never takes the token from the URL (a form or a link cannot carry it)
    assert other.post(f"/api/save?token={TOKEN}", json={}).status_code == 403
    # the cookie of another port's viewer is not this one's
    other.cookies.set("convstack_token_9999", TOKEN)
    assert other.get("/api/info").status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.example:5123"},  # DNS rebinding: the attacker's name
        {"Host": "127.0.0.1:5124"},
        {"Host": "127.0.0.1"},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:8000"},
        {"Origin": "https://127.0.0.1:5123"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_other_hosts_and_origins_are_refused(
    stack: dict[str, Any], headers: dict[str, str]
) -> None:
    c = client(stack)
    response = c.get("/api/info", headers={**AUTH, **headers})
    assert response.status_code == 403
    assert c.post("/api/save", json={}, headers={**AUTH, **headers}).status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": f"localhost:{PORT}"},
        {"Origin": f"http://127.0.0.1:{PORT}"},
        {"Origin": f"http://localhost:{PORT}", "Host": f"localhost:{PORT}"},
        {"Sec-Fetch-Site": "same-origin"},
    ],
)
def test_own_origin_is_accepted(stack: dict[str, Any], headers: dict[str, str]) -> None:
    assert client(stack).get("/api/info", headers={**AUTH, **headers}).status_code == 200


def test_repeated_host_header_is_refused() -> None:
    guard = Guard(lambda *a: None, TOKEN, PORT)  # type: ignore[arg-type]
    scope = {
        "type": "http",
        "method": "GET",
        "headers": [(b"host", f"127.0.0.1:{PORT}".encode()), (b"host", b"evil.example")],
        "query_string": f"token={TOKEN}".encode(),
    }
    assert guard.refusal(scope) == "repeated header host"


@pytest.mark.parametrize(
    "path",
    [
        "/static/..%2F..%2Fcli%2F_view.py",
        "/static/%2e%2e%2fserver.py",
        "/static/%2E%2E/%2E%2E/pyproject.toml",
        "/static/..%5cserver.py",
        "/static/server.py",
        "/static/app.js%00.png",
        "/api/tile/..%2F..%2Fresult/0/0/0",
        "/api/tile/%2e%2e/0/0/0",
        "/api/thumb/..%2Fframes%2Ff0.png",
        "/api/thumb/%2Fetc%2Fpasswd",
        "/api/overlay/..%2Fdepth",
        "/frames/f0.png",
        "/result.png",
        "/static//etc/passwd",
    ],
)
def test_path_traversal_is_refused(stack: dict[str, Any], path: str) -> None:
    response = client(stack).get(path, headers=AUTH)
    assert response.status_code == 404
    assert b"import" not in response.content and b"\x89PNG" not in response.content


def test_tiles_are_the_right_size_and_the_2x2_means_of_the_image(stack: dict[str, Any]) -> None:
    c = client(stack)
    info = c.get("/api/info", headers=AUTH).json()
    assert (info["rows"], info["cols"], info["channels"], info["dtype"]) == (ROWS, COLS, 3, "uint8")
    assert info["levels"] == 3 and info["tile"] == 256 and info["depth"] is True
    assert [f["name"] for f in info["frames"]] == ["f0.png", "f1.png", "f2.png", "f3.png"]
    level = stack["result"]
    for k in range(info["levels"]):
        if k:
            level = oracle_reduce(level)
        rows, cols = -(-level.shape[0] // 256), -(-level.shape[1] // 256)
        for r in range(rows):
            for q in range(cols):
                response = c.get(f"/api/tile/result/{k}/{r}/{q}", headers=AUTH)
                assert (
                    response.status_code == 200 and response.headers["content-type"] == "image/png"
                )
                tile = read_image(io.BytesIO(response.content))
                expected = level[r * 256 : (r + 1) * 256, q * 256 : (q + 1) * 256]
                assert tile.shape == expected.shape  # edge tiles smaller
                assert np.array_equal(tile, expected), (k, r, q)
        assert c.get(f"/api/tile/result/{k}/{rows}/0", headers=AUTH).status_code == 404
    assert level.shape[:2] == (75, 130)
    assert c.get("/api/tile/result/3/0/0", headers=AUTH).status_code == 404
    assert c.get("/api/tile/f9/0/0/0", headers=AUTH).status_code == 404
    frame = read_image(io.BytesIO(c.get("/api/tile/f2/0/1/1", headers=AUTH).content))
    assert (frame == 120).all() and frame.shape == (ROWS - 256, 256, 3)
    thumb = read_image(io.BytesIO(c.get("/api/thumb/result", headers=AUTH).content))
    assert np.array_equal(thumb, level)


def test_16_bit_tiles_show_rint_of_x_over_257(tmp_path: Path) -> None:
    image = np.array([[0, 128, 129, 385, 386, 65535]], dtype=np.uint16)
    write_image(tmp_path / "r.png", image)
    c = TestClient(make_app(open_stack(tmp_path / "r.png"), token=TOKEN, port=PORT), base_url=BASE)
    tile = read_image(io.BytesIO(c.get("/api/tile/result/0/0/0", headers=AUTH).content))
    assert tile.tolist() == [[0, 0, 1, 1, 2, 255]]


def test_overlays_and_pick(stack: dict[str, Any]) -> None:
    c = client(stack)
    depth = read_image(io.BytesIO(c.get("/api/overlay/depth", headers=AUTH).content))
    assert depth.shape == (ROWS, COLS, 3)  # under the overlay size: full size, colour-mapped
    sharp = c.get("/api/overlay/sharpness?frame=1", headers=AUTH)
    assert sharp.status_code == 200 and read_image(io.BytesIO(sharp.content)).shape == (
        ROWS,
        COLS,
        3,
    )
    assert c.get("/api/overlay/sharpness?frame=4", headers=AUTH).status_code == 404
    assert c.get("/api/overlay/other", headers=AUTH).status_code == 404
    assert c.get("/api/pick?row=20&col=20", headers=AUTH).json() == {"frame": 2}  # the depth map
    assert c.get("/api/pick?row=x&col=1", headers=AUTH).status_code == 400
    assert c.get("/api/pick?row=nan&col=1", headers=AUTH).status_code == 400
    nodepth = client(stack, depth=False)
    assert nodepth.get("/api/overlay/depth", headers=AUTH).status_code == 404
    # without a depth map: the frame whose focus measure is largest there
    assert nodepth.get("/api/pick?row=30&col=40", headers=AUTH).json() == {"frame": 1}


def doc(strokes: list[dict[str, Any]], rows: int = ROWS, cols: int = COLS) -> dict[str, Any]:
    image = {"rows": rows, "cols": cols}
    return {"format": "convstack-strokes", "version": 1, "image": image, "strokes": strokes}


PAINT = {"frame": 3, "radius": 10.0, "hardness": 1.0, "erase": False, "points": [[50, 60]]}


def test_save_writes_a_new_file_and_never_clobbers(stack: dict[str, Any]) -> None:
    c = client(stack)
    folder = stack["dir"]
    response = c.post("/api/save", json={"strokes": doc([PAINT]), "name": "out.png"}, headers=AUTH)
    assert response.status_code == 200, response.text
    saved = read_image(folder / "out.png")
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    inside = (yy - 50) ** 2 + (xx - 60) ** 2 <= 100
    assert np.array_equal(saved[inside], stack["frames"][3][inside])
    assert np.array_equal(saved[~inside], stack["result"][~inside])
    sidecar = json.loads((folder / "out.strokes.json").read_text())
    assert sidecar["strokes"][0]["frame"] == 3 and sidecar["frames"][3] == "f3.png"
    before = (folder / "out.png").read_bytes()
    again = c.post("/api/save", json={"strokes": doc([]), "name": "out.png"}, headers=AUTH)
    assert again.status_code == 409 and again.json()["exists"] is True
    assert "already exists" in again.json()["error"]
    assert (folder / "out.png").read_bytes() == before
    # an existing sidecar alone refuses the save before the image is written
    (folder / "side.strokes.json").write_text("{}")
    refused = c.post("/api/save", json={"strokes": doc([]), "name": "side.png"}, headers=AUTH)
    assert refused.status_code == 409 and not (folder / "side.png").exists()
    # overwrite after the page's confirm
    replaced = c.post(
        "/api/save", json={"strokes": doc([]), "name": "out.png", "overwrite": True}, headers=AUTH
    )
    assert replaced.status_code == 200
    assert np.array_equal(read_image(folder / "out.png"), stack["result"])
    # the result itself is never written, overwrite or not
    original = (folder / "result.png").read_bytes()
    mine = {"strokes": doc([PAINT]), "name": "result.png", "overwrite": True}
    response = c.post("/api/save", json=mine, headers=AUTH)
    assert response.status_code == 400 and "is one of the inputs" in response.json()["error"]
    assert (folder / "result.png").read_bytes() == original
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_save_never_writes_a_frame_beside_the_result(tmp_path: Path) -> None:
    image = np.zeros((8, 8), dtype=np.uint8)
    for name in ("r.png", "f0.png", "f1.png"):
        write_image(tmp_path / name, image)
    view = open_stack(tmp_path / "r.png", str(tmp_path / "f*.png"))
    assert [p.name for p in view.frames] == ["f0.png", "f1.png"]
    c = TestClient(make_app(view, token=TOKEN, port=PORT), base_url=BASE)
    body = {"strokes": doc([], 8, 8), "name": "f1.png", "overwrite": True}
    response = c.post("/api/save", json=body, headers=AUTH)
    assert response.status_code == 400 and "never written" in response.json()["error"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../escape.png", "`name` must be a plain file name"),
        ("/tmp/abs.png", "`name` must be a plain file name"),
        ("sub/x.png", "`name` must be a plain file name"),
        ("..\\x.png", "`name` must be a plain file name"),
        (".hidden.png", "`name` must be a plain file name"),
        ("x.exe", "`name` must be a plain file name"),
        (None, "`name` must be a plain file name"),
    ],
)
def test_save_takes_only_a_plain_image_name(stack: dict[str, Any], name: Any, message: str) -> None:
    response = client(stack).post(
        "/api/save", json={"strokes": doc([PAINT]), "name": name}, headers=AUTH
    )
    assert response.status_code == 400 and message in response.json()["error"]
    assert not (stack["dir"].parent / "escape.png").exists()


def test_save_refuses_bad_requests(stack: dict[str, Any]) -> None:
    c = client(stack)
    bad_json = c.post(
        "/api/save", content=b"{", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400 and "must be JSON" in bad_json.json()["error"]
    assert c.post("/api/save", json=[1], headers=AUTH).status_code == 400
    small = c.post("/api/save", json={"strokes": doc([], 3, 3), "name": "a.png"}, headers=AUTH)
    assert small.status_code == 400 and "must match the image's size" in small.json()["error"]
    frame = c.post(
        "/api/save", json={"strokes": doc([{**PAINT, "frame": 4}]), "name": "a.png"}, headers=AUTH
    )
    assert frame.status_code == 400 and "frame index below 4" in frame.json()["error"]
    assert c.get("/api/save", headers=AUTH).status_code == 405


def test_page_save_equals_fuse_retouch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What the server saves from a --save-steps folder is what `fuse --retouch` replays:
    soft, hard, overlapping and erasing strokes on a 16-bit stack."""
    rng = np.random.default_rng(11)
    (tmp_path / "in").mkdir()
    for i in range(3):
        frame = (rng.random((64, 80, 3)) * 20000 + 15000 * i).astype(np.uint16)
        write_image(tmp_path / "in" / f"f{i}.png", frame)
    fused = tmp_path / "fused.png"
    argv = ["fuse", str(tmp_path / "in"), "--align", "none", "--quiet"]
    assert main([*argv, "-o", str(fused), "--save-steps", str(tmp_path / "steps")]) == 0
    view = open_stack(fused, str(tmp_path / "steps"))
    assert view.depth_path == tmp_path / "steps" / "depth.png" and len(view.frames) == 3
    strokes = [
        {"frame": 0, "radius": 9.5, "hardness": 0.3, "points": [[10, 10], [30, 50.5]]},
        {"frame": 2, "radius": 6, "hardness": 1, "points": [[20, 40], [22, 41], [40, 70]]},
        {"erase": True, "frame": None, "radius": 4, "hardness": 0.7, "points": [[25, 45]]},
    ]
    c = TestClient(make_app(view, token=TOKEN, port=PORT), base_url=BASE)
    body = {"strokes": doc(strokes, 64, 80), "name": "page.png"}
    assert c.post("/api/save", json=body, headers=AUTH).status_code == 200
    page = read_image(tmp_path / "page.png")
    original = read_image(fused)
    assert page.dtype == np.uint16 and not np.array_equal(page, original)
    replay = tmp_path / "replay.png"
    retouch = ["--retouch", str(tmp_path / "page.strokes.json")]
    assert main([*argv, "-o", str(replay), *retouch]) == 0
    assert np.array_equal(read_image(replay), page)
    capsys.readouterr()


def test_fuse_retouch_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    for i in range(2):
        write_image(tmp_path / "in" / f"f{i}.png", np.full((16, 16), 50 * i, np.uint8))
    argv = ["fuse", str(tmp_path / "in"), "-o", str(tmp_path / "o.png"), "--align", "none"]
    argv += ["--quiet", "--retouch"]
    cases = {
        "missing.json": "cannot read it",
        "bad.json": "not a JSON document",
        "frame.json": "`strokes[0].frame` must be a frame index below 2",
        "size.json": "`image` must match the image's size 16 x 16",
    }
    (tmp_path / "bad.json").write_text("[")
    paint = {"frame": 5, "radius": 2, "points": [[1, 1]]}
    (tmp_path / "frame.json").write_text(json.dumps(doc([paint], 16, 16)))
    (tmp_path / "size.json").write_text(json.dumps(doc([], 10, 16)))
    for name, message in cases.items():
        assert main([*argv, str(tmp_path / name)]) == 1
        assert message in capsys.readouterr().err
        assert not (tmp_path / "o.png").exists()


def test_cache_stays_within_its_bytes_while_panning(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    cache = ByteCache(4 * 2**20)
    pyramid = Pyramid("big", image.shape, lambda: image, cache)
    peak = 0
    for k in range(pyramid.levels):
        down, across = pyramid.tiles(k)
        for r in range(down):
            for q in range(across):
                pyramid.tile(k, r, q)
                peak = max(peak, cache.used)
    assert peak <= cache.limit and len(cache) > 0
    assert np.array_equal(pyramid.level(1), reduce2(image))
    with pytest.raises(ValueError, match=r"`level` must lie in \[0, 3\]; got 4"):
        pyramid.level(4)
    with pytest.raises(ValueError, match=r"`tile` must lie in level"):
        pyramid.tile(0, 0, 6)


def test_open_stack_errors(stack: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`RESULT` must be the fused image, not a folder"):
        open_stack(stack["dir"])
    with pytest.raises(ValueError, match="`--frames`"):
        open_stack(stack["dir"] / "result.png", str(tmp_path / "nothing*.png"))
    write_image(tmp_path / "small.png", np.zeros((4, 4), np.uint16))
    with pytest.raises(ValueError, match="`--depth-map` .* must be a grey image of the result's"):
        open_stack(stack["dir"] / "result.png", None, tmp_path / "small.png")


def test_frame_of_another_size_is_named(stack: dict[str, Any], tmp_path: Path) -> None:
    write_image(tmp_path / "frames" / "f9.png", np.zeros((5, 5, 3), np.uint8))
    c = client(stack)
    response = c.get("/api/tile/f4/0/0/0", headers=AUTH)
    assert response.status_code == 500 and "must have the result's shape" in response.text


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["view", str(tmp_path / "none.png"), "--no-browser"]) == 1
    assert "none.png" in capsys.readouterr().err
    assert main(["view", "x.png", "--port", "70000", "--no-browser"]) == 1
    assert "--port must lie in [0, 65535]; got 70000." in capsys.readouterr().err


def _get(url: str) -> int:
    """The status of a GET (urllib: no client library beyond the standard one)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_command_prints_the_url_serves_and_stops_on_ctrl_c(stack: dict[str, Any]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "convstack.cli", "view", str(stack["dir"] / "result.png")]
        + ["--frames", str(stack["dir"] / "frames"), "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url
        base, token = url.split("/?token=")
        assert len(token) >= 32
        assert _get(url) == 200
        assert _get(base + "/api/info") == 403
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 130
        assert "interrupted" in process.communicate()[1]
        with pytest.raises(urllib.error.URLError):
            _get(url)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_websockets_are_closed(stack: dict[str, Any]) -> None:
    from starlette.websockets import WebSocketDisconnect

    c = client(stack)
    with pytest.raises(WebSocketDisconnect) as caught, c.websocket_connect("/ws", headers=AUTH):
        pass
    assert caught.value.code == 1008


def test_the_browser_opens_unless_told_not_to(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import webbrowser

    from convstack.viewer import server

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    monkeypatch.setattr(server, "serve", lambda view, port, on_ready: on_ready("http://u/?token=t"))
    result = str(stack["dir"] / "result.png")
    assert main(["view", result]) == 0
    assert opened == ["http://u/?token=t"]
    assert capsys.readouterr().out == "convstack view: http://u/?token=t\n"
    assert main(["view", result, "--no-browser"]) == 0
    assert opened == ["http://u/?token=t"]


def test_a_port_in_use_is_a_clear_error(
    stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        argv = ["view", str(stack["dir"] / "result.png"), "--port", str(port), "--no-browser"]
        assert main(argv) == 1
    assert (
        f"--port {port}: cannot listen there (Address already in use)." in capsys.readouterr().err
    )
