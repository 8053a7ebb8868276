"""`convstack view` in a real headless Chromium: draw, zoom, paint from frame 3, save.

Debian's ``chromium`` driven by Playwright's sync API through ``executable_path``
(``playwright install`` is never run); skipped where either is missing. The server is
the real command (``convstack view --no-browser``) in a child process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convstack.cli import main
from convstack.stack.io import read_image, write_image

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")


def _chromium() -> str | None:
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")

ROWS, COLS, COUNT = 240, 320, 5


def make_frames(folder: Path) -> list[np.ndarray]:
    """Five frames that differ everywhere (a per-frame blue level and checker phase)."""
    folder.mkdir()
    rows, cols = np.mgrid[0:ROWS, 0:COLS]
    frames = []
    for i in range(COUNT):
        frame = np.empty((ROWS, COLS, 3), dtype=np.uint8)
        frame[..., 0] = cols * 255 // COLS
        frame[..., 1] = rows * 255 // ROWS
        frame[..., 2] = 30 + 45 * i
        frame[((cols + 7 * i) // 16 + rows // 16) % 2 == 0] //= 2
        write_image(folder / f"frame_{i}.png", frame)
        frames.append(frame)
    return frames


class Viewer:
    """``convstack view`` in a child process; ``url`` is the page's."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "convstack.cli", "view", *argv, "--no-browser"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "http://" not in line:
            self.process.kill()
            raise AssertionError(f"no URL printed: {line!r} {self.process.stderr}")
        self.url = line.split()[-1]

    def stop(self) -> int:
        self.process.send_signal(2)  # SIGINT, as Ctrl-C
        try:
            return self.process.wait(timeout=10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def open_page(browser: Any, url: str, size: tuple[int, int] = (900, 640)) -> Any:
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.goto(url)
    page.evaluate("() => window.__viewer.ready")
    page.wait_for_function("() => window.__viewer.firstPaintMs !== null", timeout=20000)
    return page


def canvas_block(page: Any, x: int, y: int, w: int, h: int) -> np.ndarray:
    data = page.evaluate(
        """([x, y, w, h]) => Array.from(document.getElementById('view').getContext('2d')
            .getImageData(x, y, w, h).data)""",
        [x, y, w, h],
    )
    return np.array(data, dtype=np.uint8).reshape(h, w, 4)


def settle(page: Any) -> None:
    """Wait until no tile is loading and a frame has been drawn since."""
    page.wait_for_function("() => window.__viewer.missingTiles === 0", timeout=20000)
    count = page.evaluate("() => window.__viewer.renderCount")
    page.evaluate("() => window.__viewer.render()")
    page.wait_for_function(f"() => window.__viewer.renderCount > {count}")


def distance_to_polyline(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Distance of every pixel centre to the polyline, point by point along densely
    sampled segments (an oracle independent of the brush code)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    best = np.full(shape, np.inf)
    for a, b in zip(points[:-1], points[1:], strict=True):
        for t in np.linspace(0.0, 1.0, int(np.hypot(*(b - a)) * 8) + 2):
            p = a + t * (b - a)
            best = np.minimum(best, np.hypot(rows - p[0], cols - p[1]))
    return best


def test_draw_zoom_paint_from_frame_3_and_save(
    tmp_path: Path, browser: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = make_frames(tmp_path / "frames")
    steps, result_path = tmp_path / "steps", tmp_path / "fused.png"
    argv = ["fuse", str(tmp_path / "frames"), "-o", str(result_path), "--align", "none"]
    assert main([*argv, "--save-steps", str(steps), "--quiet"]) == 0
    capsys.readouterr()
    result = read_image(result_path)
    viewer = Viewer([str(result_path), "--frames", str(steps)])
    try:
        page = open_page(browser, viewer.url)
        # the image draws: the canvas centre shows the result (fit view, so a mean of it)
        info = page.evaluate("() => window.__viewer.state.info")
        assert (info["rows"], info["cols"], len(info["frames"])) == (ROWS, COLS, COUNT)
        # 1:1 with the image's pixel (100, 150) at the canvas centre: pixels exactly equal
        page.evaluate("() => window.__viewer.zoomTo(1, 100, 150)")
        settle(page)
        state = page.evaluate("() => window.__viewer.state")
        ox, oy = int(state["ox"]), int(state["oy"])
        assert state["s"] == 1 and (ox, oy) == (state["ox"], state["oy"])
        block = canvas_block(page, 130 - ox, 80 - oy, 60, 40)  # image rows 80-119, cols 130-189
        assert np.array_equal(block[..., :3], result[80:120, 130:190])
        assert (block[..., 3] == 255).all()

        # before/after: the split at 0 shows the compared frame (1) over the whole view
        page.select_option("#compare", "1")
        page.eval_on_selector("#split", "e => { e.value = 0; e.dispatchEvent(new Event('input')) }")
        settle(page)
        block = canvas_block(page, 130 - ox, 80 - oy, 60, 40)
        assert np.array_equal(block[..., :3], frames[1][80:120, 130:190])
        page.select_option("#compare", "")
        # the depth map overlay changes what is drawn
        page.select_option("#overlay", "depth")
        page.wait_for_function("() => window.__viewer.state.overlayImage !== null")
        settle(page)
        block = canvas_block(page, 130 - ox, 80 - oy, 60, 40)
        assert not np.array_equal(block[..., :3], result[80:120, 130:190])
        page.select_option("#overlay", "")
        # a click with the pick tool chooses the frame the depth map names there
        page.click("input[name=tool][value=pick]")
        point = page.evaluate("() => window.__viewer.clientPoint(60, 60)")
        page.mouse.click(point["x"], point["y"])
        page.wait_for_function(
            "() => document.getElementById('status').textContent.includes('is the sharpest there')"
        )
        assert page.evaluate("() => window.__viewer.state.tool") == "paint"

        # paint from frame 3: its thumbnail in the list, hardness 1, radius 12
        page.click(".frame[data-index='3']")
        page.eval_on_selector(
            "#hardness", "e => { e.value = 100; e.dispatchEvent(new Event('input')) }"
        )
        page.eval_on_selector(
            "#radius", "e => { e.value = 12; e.dispatchEvent(new Event('input')) }"
        )
        start = page.evaluate("() => window.__viewer.clientPoint(80, 120)")
        end = page.evaluate("() => window.__viewer.clientPoint(130, 190)")
        page.mouse.move(start["x"], start["y"])
        page.mouse.down()
        page.mouse.move(end["x"], end["y"], steps=12)
        page.mouse.up()
        settle(page)
        stroke_ms = page.evaluate("() => window.__viewer.lastRenderMs")
        strokes = page.evaluate("() => window.__viewer.state.strokes")
        assert len(strokes) == 1 and strokes[0]["frame"] == 3 and strokes[0]["radius"] == 12
        # the preview: at the stroke's start the canvas shows frame 3
        x, y = 120 - ox, 80 - oy
        assert np.array_equal(
            canvas_block(page, x - 2, y - 2, 5, 5)[..., :3], frames[3][78:83, 118:123]
        )

        # undo and redo
        page.keyboard.press("Control+z")
        assert page.evaluate("() => window.__viewer.state.strokes.length") == 0
        page.keyboard.press("Control+Shift+z")
        assert page.evaluate("() => window.__viewer.state.strokes.length") == 1

        page.fill("#save-name", "painted.png")
        page.click("#save")
        page.wait_for_function(
            "() => document.getElementById('status').textContent.startsWith('saved')"
        )
        saved_path = tmp_path / "painted.png"
        saved = read_image(saved_path)
        document = json.loads((tmp_path / "painted.strokes.json").read_text())
        points = np.array(document["strokes"][0]["points"])
        d = distance_to_polyline(points, (ROWS, COLS))
        inside, outside = d < 12 - 1e-6, d > 12 + 1e-6
        assert inside.sum() > 1500
        assert np.array_equal(saved[inside], frames[3][inside])
        assert np.array_equal(saved[outside], result[outside])
        assert saved.dtype == result.dtype

        # saving again over it asks; dismissed, nothing is written
        before = saved_path.stat().st_mtime_ns
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.click("#save")
        page.wait_for_function(
            "() => document.getElementById('status').textContent.startsWith('not saved')"
        )
        assert saved_path.stat().st_mtime_ns == before
        page.close()
    finally:
        code = viewer.stop()
    assert code in (0, 130)

    # the command line replays the sidecar to the same pixels
    replay = tmp_path / "replay.png"
    retouch = ["--retouch", str(tmp_path / "painted.strokes.json"), "--quiet"]
    assert (
        main(["fuse", str(tmp_path / "frames"), "-o", str(replay), "--align", "none", *retouch])
        == 0
    )
    assert np.array_equal(read_image(replay), saved)
    print(f"\nviewer: stroke preview rendered in {stroke_ms:.1f} ms (small image)")


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def test_first_paint_of_a_24_mp_result(tmp_path: Path, browser: Any) -> None:
    """Measured, not asserted: first paint of a 6000 x 4000 result and a stroke's render."""
    rows, cols = 4000, 6000
    r = np.arange(rows, dtype=np.uint16)[:, None]
    c = np.arange(cols, dtype=np.uint16)[None, :]
    image = np.empty((rows, cols, 3), dtype=np.uint8)
    image[..., 0] = (c // 24).astype(np.uint8)
    image[..., 1] = (r // 16).astype(np.uint8)
    image[..., 2] = ((r // 64 + c // 64) % 2 * 200).astype(np.uint8)
    write_image(tmp_path / "big.png", image)
    frame = image.copy()
    frame[..., 2] = 255 - frame[..., 2]
    (tmp_path / "frames").mkdir()
    write_image(tmp_path / "frames" / "f0.png", frame)
    write_image(tmp_path / "frames" / "f1.png", image)
    started = time.perf_counter()  # the peer: one decode of the result in this process
    read_image(tmp_path / "big.png")
    decode = time.perf_counter() - started
    viewer = Viewer([str(tmp_path / "big.png"), "--frames", str(tmp_path / "frames")])
    try:
        started = time.perf_counter()
        page = open_page(browser, viewer.url, (1280, 800))
        first_paint = page.evaluate("() => window.__viewer.firstPaintMs")
        wall = time.perf_counter() - started
        page.evaluate(
            "() => { window.__viewer.zoomTo(1, 2000, 3000); window.__viewer.setSource(0); }"
        )
        settle(page)
        page.evaluate("() => { window.__viewer.setTool('paint'); window.__viewer.setRadius(60); }")
        a = page.evaluate("() => window.__viewer.clientPoint(1900, 2800)")
        b = page.evaluate("() => window.__viewer.clientPoint(2100, 3200)")
        page.mouse.move(a["x"], a["y"])
        page.mouse.down()
        page.mouse.move(b["x"], b["y"], steps=20)
        page.mouse.up()
        settle(page)
        stroke_ms = page.evaluate(  # as while painting: a point added, its mask made again
            """() => { const v = window.__viewer, p = v.state.strokes[0].points;
            p.push([...p[p.length - 1]]); v.render(); return v.lastRenderMs; }"""
        )
        # 40 more strokes over the view: the whole retouch redrawn
        page.evaluate(
            """() => { const v = window.__viewer;
            for (let i = 0; i < 40; i++) v.state.strokes.push({frame: i % 2, radius: 40,
              hardness: 0.5, erase: i % 7 === 6, points: Array.from({length: 15},
              (_, k) => [1700 + 15 * i, 2500 + 70 * k])}); v.render(); }"""
        )
        many_ms = page.evaluate("() => window.__viewer.lastRenderMs")
        page.evaluate(  # one more stroke on top of them, as while painting
            """() => { const v = window.__viewer; v.state.strokes.push({frame: 0, radius: 60,
              hardness: 0.5, erase: false, points: [[1900, 2800], [2100, 3200]]}); v.render(); }"""
        )
        one_more_ms = page.evaluate("() => window.__viewer.lastRenderMs")
        # pan at 1:1 along a diagonal and a row: the server's memory after each view
        rss = [_rss_mib(viewer.process.pid)]
        for step in range(16):
            row = 400 + step * 200 if step < 8 else 3400
            col = 600 + step * 300
            page.evaluate(f"() => window.__viewer.zoomTo(1, {row}, {col})")
            settle(page)
            rss.append(_rss_mib(viewer.process.pid))
        page.close()
    finally:
        viewer.stop()
    print(
        f"\nviewer, 24 MP result (6000 x 4000 RGB), 1280 x 800 page: first paint "
        f"{first_paint:.0f} ms after navigation ({wall:.2f} s page load to painted, as seen "
        f"by the test; {first_paint / 1000 / decode:.2f}x one decode of the PNG, "
        f"{decode * 1000:.0f} ms); stroke (radius 60, 21 points) rendered in {stroke_ms:.1f} ms, "
        f"41 strokes in {many_ms:.1f} ms (masks made), a 42nd on them in {one_more_ms:.1f} ms; "
        f"server RSS while panning 16 views at 1:1: {rss[0]:.0f} -> max {max(rss):.0f} -> "
        f"last {rss[-1]:.0f} MiB"
    )
    assert first_paint > 0
