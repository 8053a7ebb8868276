"""`convstack lab`: the report runs end to end, its HTML parses, every picture it shows exists,
and the numbers it prints come from the lab's own examples."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402

from convstack.apps import lab  # noqa: E402
from convstack.cli import main  # noqa: E402

LAB_HEADINGS = [
    "Convolution",
    "Task 1",
    "Derivative",
    "Task 2",
    "2D derivative",
    "2nd order derivative",
    "Laplacian",
    "OpenCV-like filters",
    "Task 3",
    "Edge detection",
    "Task 4",
]


class ReportParser(HTMLParser):
    """Collects headings, image sources and table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.images: list[str] = []
        self.cells: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag in ("h1", "h2", "h3", "td"):
            self._in = tag
            if tag != "td":
                self.headings.append("")
            else:
                self.cells.append("")
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in in ("h1", "h2", "h3"):
            self.headings[-1] += data
        elif self._in == "td":
            self.cells[-1] += data


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lab") / "report"
    # A stale report and figure first: --force must replace both.
    (out / "figures").mkdir(parents=True)
    (out / "report.html").write_text("old")
    (out / "figures" / "conv.gif").write_text("old")
    assert main(["lab", "--out", str(out), "--small", "--quiet", "--force"]) == 0
    return out


def parse(report: Path) -> ReportParser:
    parser = ReportParser()
    parser.feed((report / "report.html").read_text("utf-8"))
    parser.close()
    return parser


def test_report_has_every_lab_heading_in_order(report):
    headings = parse(report).headings
    positions = [headings.index(h) for h in LAB_HEADINGS]
    assert positions == sorted(positions)


def test_every_referenced_image_exists_and_is_relative(report):
    images = parse(report).images
    assert len(images) >= 20
    for src in images:
        assert not os.path.isabs(src) and not src.startswith(("http:", "https:", "file:"))
        path = report / src
        assert path.is_file() and path.stat().st_size > 500, src
        with Image.open(path) as image:
            assert image.format in ("PNG", "GIF")


def test_every_figure_file_is_referenced(report):
    referenced = {Path(src).name for src in parse(report).images}
    on_disk = {p.name for p in (report / "figures").iterdir()}
    assert on_disk == referenced


def test_animations_have_the_lab_frame_counts(report):
    # Dumoulin & Visin's cases: 5x5 input, 3x3 kernel -> 3x3, 5x5 (padding 1), 2x2 (stride 2);
    # 7x7 input, dilation 2 -> 3x3 (output sizes worked out by hand).
    expected = {"conv": 9, "conv_padding": 25, "conv_stride": 4, "conv_dilated": 9}
    for name, frames in expected.items():
        with Image.open(report / "figures" / f"{name}.gif") as gif:
            assert gif.n_frames == frames, name


def test_report_shows_the_lab_example_and_extrema(report):
    cells = parse(report).cells
    text = " ".join(cells)
    assert "2 4 2" in text  # f * g = [2, 4, 2], worked out by hand in the lab
    # Task 2: extrema of the lab's quintic, roots of its derivative by numpy.roots.
    poly = np.poly1d(np.poly([-3, 0, 1, 4, 7])) * 0.001  # coefficients from the roots
    roots = np.sort(np.roots(np.polyder(poly)).real)
    numbers = []
    for cell in cells:
        with contextlib.suppress(ValueError):
            numbers.append(float(cell))
    for root in roots:
        assert any(abs(n - root) < 1e-3 for n in numbers), root


def test_task4_reports_psnr_and_ssim(report):
    html = (report / "report.html").read_text("utf-8")
    assert "PSNR (dB)" in html and "SSIM" in html


def test_existing_report_is_kept_without_force(report, capsys):
    before = (report / "report.html").read_bytes()
    assert main(["lab", "--out", str(report), "--small", "--quiet"]) == 1
    assert "--force" in capsys.readouterr().err
    assert (report / "report.html").read_bytes() == before


def test_force_replaced_the_stale_report(report):
    assert (report / "report.html").read_text("utf-8").startswith("<!DOCTYPE html>")
    assert (report / "figures" / "conv.gif").read_bytes().startswith(b"GIF8")


def test_missing_bug_folder_is_a_user_error(tmp_path, capsys):
    code = main(["lab", "--out", str(tmp_path / "r"), "--bug", str(tmp_path / "nope"), "--small"])
    assert code == 1
    assert "`bug` must be a folder" in capsys.readouterr().err


def test_naive_loop_matches_the_lab_example():
    f = np.array([[1, 2, 3]], np.float64)
    g = np.array([[1, 0, 1]], np.float64)
    np.testing.assert_array_equal(lab.naive_correlate(f, g), [[2, 4, 2]])


def test_downscale_averages_blocks():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    np.testing.assert_array_equal(lab.downscale(image, 2), [[2, 4], [10, 12]])  # round half even


CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_report_renders_in_headless_chromium(report, tmp_path):
    shot = tmp_path / "shot.png"
    result = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            (report / "report.html").resolve().as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1200, 2000)
        # a rendered page, not a blank one: several distinct colours
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50


def test_cli_module_runs_lab_help():
    result = subprocess.run(
        [sys.executable, "-m", "convstack.cli", "lab", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "--bug" in result.stdout


@pytest.mark.slow
def test_bug_set_section(shared_data, tmp_path):
    bug = shared_data / "bug"
    if not bug.is_dir():
        pytest.skip("the bug set is not present")
    out = lab.run_lab(tmp_path / "r", bug=bug, small=True)
    parser = parse(out.parent)
    assert "The bug set" in parser.headings
    bug_images = [src for src in parser.images if "task4_bug" in src]
    assert len(bug_images) == 4
    for src in bug_images:
        assert (out.parent / src).stat().st_size > 500


def test_stale_figures_are_kept_without_force(tmp_path):
    figures = tmp_path / "r" / "figures"
    figures.mkdir(parents=True)
    (figures / "mine.png").write_text("keep")
    with pytest.raises(FileExistsError, match="`out` must not hold a report or figures"):
        lab.run_lab(tmp_path / "r", small=True)
    assert (figures / "mine.png").read_text() == "keep"
    assert not (tmp_path / "r" / "report.html").exists()
