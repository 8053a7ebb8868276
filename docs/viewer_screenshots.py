"""Screenshots of `convstack view` for docs/viewer.md, in Debian's chromium.

Usage (after `convstack fuse FRAMES -o bug.png --save-steps steps`)::

    python docs/viewer_screenshots.py bug.png steps docs/img
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright


def main(result: str, steps: str, out: str) -> None:
    folder = Path(out)
    process = subprocess.Popen(
        [sys.executable, "-m", "convstack.cli", "view", result, "--frames", steps, "--no-browser"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().split()[-1]
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=shutil.which("chromium"), args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            page.goto(url)
            page.evaluate("() => window.__viewer.ready")
            page.wait_for_function("() => window.__viewer.firstPaintMs !== null")
            page.wait_for_function(  # the thumbnails
                "() => [...document.querySelectorAll('.frame img')].every(i => i.complete)",
                timeout=60000,
            )
            shot(page, folder / "viewer-overview.jpg")

            page.select_option("#overlay", "depth")
            page.eval_on_selector(
                "#opacity", "e => { e.value = 65; e.dispatchEvent(new Event('input')) }"
            )
            page.wait_for_function("() => window.__viewer.state.overlayImage !== null")
            page.wait_for_timeout(300)
            shot(page, folder / "viewer-depth.jpg")
            page.select_option("#overlay", "")

            page.evaluate("() => window.__viewer.zoomTo(1, 430, 700)")
            page.select_option("#compare", "2")
            page.wait_for_timeout(1200)
            shot(page, folder / "viewer-compare.jpg")
            page.select_option("#compare", "")

            page.click(".frame[data-index='12']")
            page.evaluate("() => window.__viewer.setRadius(45)")
            a = page.evaluate("() => window.__viewer.clientPoint(330, 560)")
            b = page.evaluate("() => window.__viewer.clientPoint(470, 800)")
            page.wait_for_timeout(800)
            page.mouse.move(a["x"], a["y"])
            page.mouse.down()
            page.mouse.move(b["x"], b["y"], steps=25)
            page.mouse.up()
            page.mouse.move(b["x"] + 60, b["y"] + 30)
            page.wait_for_timeout(600)
            shot(page, folder / "viewer-retouch.jpg")
            browser.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)


def shot(page: object, path: Path) -> None:
    page.screenshot(path=str(path), type="jpeg", quality=82)  # type: ignore[attr-defined]
    print(path)


if __name__ == "__main__":
    main(*sys.argv[1:4])
