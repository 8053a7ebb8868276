"""Lab 3 on convolution, run with convstack and written up as one HTML report.

`run_lab` works through every section and task of the lab (``shared/seed/lab3-convolution.txt``)
on built-in data, with convstack doing every computation, and writes ``report.html`` in a
folder, each section under the lab's own heading with its figures and numbers:

- Convolution: the lab's ``[1, 2, 3] * [1, 0, 1]`` example as tables, and the four
  convolution-arithmetic animations (no padding, padding, stride 2, dilation 2);
- Task 1: a 2-D convolution with zero padding, checked against a plain loop;
- Derivative and Task 2: sin(x) and its derivative; the extrema of the lab's quintic;
- 2D derivative, 2nd order derivative, Laplacian: the lab's two 8x8 arrays as surfaces;
- OpenCV-like filters, Task 3, Edge detection: on a synthetic photograph-like image;
- Task 4: the demo's synthetic focus stack (sharpness maps, the lab's merge and ours against
  the truth, PSNR/SSIM), and the lab's bug set when its folder is given.

Pictures are PNG (and GIF) files in ``figures/`` next to ``report.html``, referenced by
relative paths, so the folder is self-contained: move or zip it whole. Needs matplotlib
(the ``plots`` extra).
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..color import to_gray as _unit_gray
from ..edges import LAB_LAPLACIAN
from ..progress import ProgressCallback, report

__all__ = ["LAB_SQUARE", "LAB_SOFT_SQUARE", "photo_like_image", "run_lab"]

#: The lab's first 8x8 test image ("2D derivative").
LAB_SQUARE = np.array(
    [
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 0, 0, 0, 0],
        [0, 1, 1, 1, 1, 1, 0, 0],
        [0, 1, 1, 1, 1, 1, 0, 0],
        [0, 1, 1, 1, 1, 1, 0, 0],
        [0, 1, 1, 1, 1, 1, 0, 0],
        [0, 1, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
    ],
    np.float32,
)

#: The lab's second 8x8 test image, with soft edges ("2nd order derivative").
LAB_SOFT_SQUARE = np.array(
    [
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 1, 0.8, 0.5, 0.1, 0, 0],
        [0, 1, 1, 0.8, 0.6, 0.2, 0, 0],
        [0, 1, 1, 1, 0.7, 0.3, 0.05, 0],
        [0, 1, 1, 1, 0.7, 0.3, 0.05, 0],
        [0, 1, 1, 1, 0.5, 0.3, 0, 0],
        [0, 1, 1, 1, 0.3, 0.1, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
    ],
    np.float32,
)

CSS = """
body { font-family: sans-serif; max-width: 1300px; margin: 2em auto; padding: 0 1em;
       line-height: 1.45; color: #222; }
h1 { border-bottom: 2px solid #444; }
h2 { margin-top: 2.2em; border-bottom: 1px solid #bbb; }
figure { display: inline-block; margin: 0.6em 1em 0.6em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figure.third { width: 31%; }
figure.half { width: 47%; }
figcaption { font-size: 0.9em; color: #444; max-width: 560px; }
table.array, table.array td { border: 1px solid black; border-collapse: collapse;
       background-color: rgb(250,250,250); min-width: 24px; height: 24px; text-align: center;
       padding: 0 4px; }
table.array { display: inline-table; margin: 5px 1.5em 5px 0; vertical-align: middle; }
table.numbers { border-collapse: collapse; margin: 0.6em 0; }
table.numbers th, table.numbers td { border: 1px solid #999; padding: 3px 10px; text-align: right; }
table.numbers th { background: #eee; }
code { background: #f3f3f3; padding: 0 3px; }
.note { color: #555; font-size: 0.92em; }
"""


# ----------------------------------------------------------------- data


def photo_like_image(size: int = 256, *, seed: int = 1) -> NDArray[np.uint8]:
    """A synthetic colour "photograph" in place of the lab's Lenna: the demo's scene.

    `convstack.stack.synthetic.make_scene` in focus everywhere: textured wall and ground,
    a sky band, objects with sharp and soft edges, rounded to uint8.

    Parameters
    ----------
    size : int
        Rows and columns (>= 32).
    seed : int
        Seed of the scene.

    Returns
    -------
    ndarray of uint8, shape (size, size, 3)

    Examples
    --------
    >>> photo_like_image(64).shape
    (64, 64, 3)
    """
    from ..stack.synthetic import make_scene

    if not isinstance(size, int) or isinstance(size, bool) or size < 32:
        raise ValueError(f"`size` must be an int >= 32; got {size!r}.")
    # Rendered at twice the size and shrunk, as a camera's resampling would: the fine
    # textures settle into photograph-like grain.
    image = downscale(make_scene((2 * size, 2 * size), seed=seed).image, 2)
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def gray_uint8(image: NDArray[Any]) -> NDArray[np.uint8]:
    """RGB uint8 to gray uint8: :func:`convstack.color.to_gray` (BT.601) rounded to 0-255."""
    return np.clip(np.round(_unit_gray(image) * 255.0), 0, 255).astype(np.uint8)


def downscale(image: NDArray[Any], factor: int) -> NDArray[Any]:
    """Shrink by an integer factor, averaging each factor x factor block (same dtype)."""
    if factor == 1:
        return image
    rows, cols = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    cut = image[:rows, :cols].astype(np.float64)
    shape = (rows // factor, factor, cols // factor, factor) + image.shape[2:]
    mean = cut.reshape(shape).mean(axis=(1, 3))
    if image.dtype.kind in "ui":
        return np.round(mean).astype(image.dtype)
    return mean.astype(image.dtype)


def naive_correlate(f: NDArray[Any], g: NDArray[Any]) -> NDArray[np.float64]:
    """The lab's Task 1 by plain loops: zero padding, stride 1, no dilation ('same' size)."""
    pad_r, pad_c = g.shape[0] // 2, g.shape[1] // 2
    padded = np.zeros((f.shape[0] + g.shape[0] - 1, f.shape[1] + g.shape[1] - 1))
    padded[pad_r : pad_r + f.shape[0], pad_c : pad_c + f.shape[1]] = f
    out = np.zeros(f.shape)
    for i in range(f.shape[0]):
        for j in range(f.shape[1]):
            out[i, j] = float(np.sum(padded[i : i + g.shape[0], j : j + g.shape[1]] * g))
    return out


# ----------------------------------------------------------------- report assembly


def _fmt(value: float, decimals: int = 4) -> str:
    if not np.isfinite(value):
        return str(value)
    rounded = round(float(value), decimals)
    if rounded.is_integer() and abs(rounded) < 1e12:
        return str(int(rounded))
    return f"{value:.{decimals}f}"


def array_html(a: ArrayLike, decimals: int = 2) -> str:
    """An array as the lab's bordered HTML table (no header, no index)."""
    array = np.atleast_2d(np.asarray(a, dtype=np.float64))
    rows = "".join(
        "<tr>" + "".join(f"<td>{_fmt(float(x), decimals)}</td>" for x in row) + "</tr>"
        for row in array
    )
    return f'<table class="array">{rows}</table>'


def _cell(x: Any) -> str:
    return _fmt(float(x)) if isinstance(x, (float, np.floating)) else html.escape(str(x))


def numbers_html(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table of numbers with a header row."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(x)}</td>" for x in row) + "</tr>" for row in rows)
    return f'<table class="numbers"><tr>{head}</tr>{body}</table>'


@dataclass
class Section:
    """One heading of the report and its HTML body."""

    heading: str
    level: int = 2
    body: list[str] = field(default_factory=list)

    def text(self, *paragraphs: str) -> None:
        """Add paragraphs (trusted HTML written by this module)."""
        self.body.extend(f"<p>{p}</p>" for p in paragraphs)

    def html(self, fragment: str) -> None:
        """Add a raw HTML fragment written by this module."""
        self.body.append(fragment)


class Report:
    """The sections, and the figures saved next to ``report.html``."""

    def __init__(self, out: Path, overwrite: bool, progress: ProgressCallback | None) -> None:
        self.out = out
        self.figures = out / "figures"
        self.overwrite = overwrite
        self.sections: list[Section] = []
        self.progress = progress

    def section(self, heading: str, level: int = 2) -> Section:
        """Start a new section."""
        section = Section(heading, level)
        self.sections.append(section)
        return section

    def figure(
        self,
        section: Section,
        name: str,
        draw: Callable[[Path], Any],
        caption: str,
        *,
        suffix: str = ".png",
        width: str = "",
    ) -> None:
        """Save a figure as ``figures/<name><suffix>`` via ``draw(path)`` and show it
        (``width`` "third" or "half" of the page, or its natural size)."""
        path = self.figures / f"{name}{suffix}"
        result = draw(path)
        if hasattr(result, "clear"):  # a Figure: free it now, the report is long
            result.clear()
        rel = f"figures/{path.name}"
        section.html(
            f'<figure class="{width}"><img src="{html.escape(rel)}" alt="{html.escape(caption)}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )

    def write(self, title: str, intro: str) -> Path:
        """Write ``report.html`` atomically; return its path."""
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{CSS}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            intro,
            "<nav><ul>",
        ]
        for i, s in enumerate(self.sections):
            if s.level == 2:
                parts.append(f'<li><a href="#s{i}">{html.escape(s.heading)}</a></li>')
        parts.append("</ul></nav>")
        for i, s in enumerate(self.sections):
            parts.append(f'<h{s.level} id="s{i}">{html.escape(s.heading)}</h{s.level}>')
            parts.extend(s.body)
        parts.append("</body></html>")
        target = self.out / "report.html"
        from ..viz._common import atomic_write

        atomic_write(
            target,
            lambda temp: Path(temp).write_text("\n".join(parts), "utf-8"),
            overwrite=self.overwrite,
        )
        return target


@contextmanager
def _stage(rep: Report, name: str, index: int, total: int) -> Iterator[None]:
    report(rep.progress, name, index, total)
    yield
    if index + 1 == total:
        report(rep.progress, name, total, total)


# ----------------------------------------------------------------- the sections


def _convolution(rep: Report) -> None:
    from .. import correlate, viz

    s = rep.section("Convolution")
    s.text(
        "A convolution of <i>f</i> and <i>g</i> slides <i>g</i> over <i>f</i> and sums the "
        "products; <b>padding</b> extends <i>f</i> at its borders, <b>stride</b> skips "
        "positions, <b>dilation</b> spreads the taps of <i>g</i>. convstack follows PyTorch's "
        "output-shape rule <code>floor((n + before + after - dilation*(k-1) - 1) / stride) + 1"
        "</code>, which gives the number of frames of each animation below."
    )
    g = rep.section("Graphic interpretation", 3)
    g.text(
        "After Dumoulin and Visin, <i>A guide to convolution arithmetic for deep learning</i> "
        "(2016). Blue: the input <i>f</i>; dashed cells: padding; dark cells: the taps of the "
        "3x3 kernel <i>g</i> (the dotted box is their span); green: the output <i>f * g</i>, "
        "the dark cell being written."
    )
    cases = [
        ("conv", "Convolution without padding, stride 1, dilation 1: 5x5 input, 3x3 output.",
         (5, 5), {"padding": 0}),
        ("conv_padding", "Padding 1, stride 1, dilation 1: the output keeps the 5x5 size.",
         (5, 5), {"padding": 1}),
        ("conv_stride", "No padding, stride 2, dilation 1: a 2x2 output.",
         (5, 5), {"stride": 2}),
        ("conv_dilated", "No padding, stride 1, dilation 2 on a 7x7 input (as Dumoulin and "
         "Visin draw it; on 5x5 the dilated 3x3 kernel spans the whole input and there is a "
         "single step): a 3x3 output.", (7, 7), {"dilation": 2}),
    ]  # fmt: skip
    for name, caption, shape, kwargs in cases:
        geometry = viz.sweep(shape, (3, 3), **kwargs)
        frames = geometry.output_shape[0] * geometry.output_shape[1]

        def draw(path: Path, shape: Any = shape, kwargs: Any = kwargs) -> Path:
            return viz.convolution_animation(
                shape, (3, 3), path=path, overwrite=rep.overwrite, **kwargs
            )

        rep.figure(g, name, draw, f"{caption} {frames} frames.", suffix=".gif")

    e = rep.section("Example", 3)
    f = np.array([1, 2, 3])
    k = np.array([1, 0, 1])
    padded = np.pad(f, 1)
    fg = correlate(f, k, padding="same", mode="constant")
    e.text(
        "For <i>f</i> = [1, 2, 3] and <i>g</i> = [1, 0, 1] with zero padding, stride 1 and "
        "dilation 1 the lab works out <i>f * g</i> = [2, 4, 2] by hand. convstack "
        "(<code>convstack.correlate(f, g, padding='same', mode='constant')</code>; <i>g</i> is "
        "symmetric so convolve gives the same) returns:"
    )
    e.html(
        "<div>f: " + array_html(f) + " g: " + array_html(k) + " f padded: " + array_html(padded)
        + " f * g: " + array_html(fg) + "</div>"
    )  # fmt: skip
    for name, array, title in (
        ("example_f", f, "f"),
        ("example_g", k, "g"),
        ("example_padded", padded, "f after zero padding"),
        ("example_fg", fg, "f * g"),
    ):

        def table(path: Path, a: NDArray[Any] = array, t: str = title) -> Any:
            return viz.array_table(a, title=t, path=path, overwrite=rep.overwrite)

        rep.figure(e, name, table, title)


def _task1(rep: Report) -> None:
    from .. import convolve, correlate, viz

    s = rep.section("Task 1")
    f = np.arange(1, 26, dtype=np.float64).reshape(5, 5) % 7
    g = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64)
    ours = correlate(f, g, padding="same", mode="constant")
    loop = naive_correlate(f, g)
    conv = convolve(f, g, padding="same", mode="constant")
    s.text(
        "The lab asks for a 2-D convolution with zero padding and stride 1. convstack's "
        "<code>correlate(f, g, padding='same', mode='constant')</code> is what the lab's "
        "<code>cv2.filter2D</code> computes (a correlation: the kernel is not flipped); "
        "<code>convolve</code> flips the kernel first. Checked here against a plain double "
        f"loop over the zero-padded input: largest difference {np.abs(ours - loop).max():g}. "
        "The input is never modified (the lab's Note 1)."
    )
    s.html(
        "<div>f: " + array_html(f) + " g: " + array_html(g) + " correlate(f, g): "
        + array_html(ours) + " convolve(f, g): " + array_html(conv) + "</div>"
    )  # fmt: skip
    rep.figure(
        s,
        "task1_f",
        lambda p: viz.array_table(f, title="f (5x5)", path=p, overwrite=rep.overwrite),
        "f",
    )
    rep.figure(s, "task1_g", lambda p: viz.kernel_plot(g, path=p, overwrite=rep.overwrite), "g")
    rep.figure(
        s,
        "task1_fg",
        lambda p: viz.array_table(
            ours, title="correlate(f, g), zero padding", cmap="RdBu_r", path=p,
            overwrite=rep.overwrite,
        ),
        "f * g (correlation, as filter2D)",
    )  # fmt: skip


def _derivative(rep: Report) -> None:
    from .. import correlate, derivative, viz

    s = rep.section("Derivative")
    t = np.arange(0.0, 4.0 * np.pi, 0.01)
    y = np.sin(t)
    # The lab's way: correlate with [-1, 1] and divide by the step.
    lab_way = correlate(y, np.array([-1.0, 1.0]), mode="constant") / (t[1] - t[0])
    ours = derivative(y, t)
    err_lab = float(np.abs(lab_way[1:] - np.cos(t[1:] - 0.005)).max())
    err_ours = float(np.abs(ours - np.cos(t)).max())
    s.text(
        "sin(x) sampled every 0.01 on [0, 4&pi;). The lab correlates with [-1, 1] and divides "
        "by the step: that difference is the slope half a step to the left of each sample "
        f"(largest error against cos there: {err_lab:.2e}, first sample excluded, it sees the "
        "zero padding). <code>convstack.derivative(y, x)</code> uses the central difference "
        f"at every sample: largest error against cos(x) {err_ours:.2e}."
    )
    rep.figure(
        s,
        "derivative_sin",
        lambda p: viz.signal_plot(
            t, y, ours, title="sin(x) and its derivative", label="sin(x)",
            derivative_label="convstack.derivative (= cos x)", path=p, overwrite=rep.overwrite,
        ),
        "sin(x) and its derivative by convolution.",
    )  # fmt: skip


def _task2(rep: Report) -> None:
    from .. import derivative, extrema, viz

    s = rep.section("Task 2")
    x = np.arange(-3.5, 7.5, 0.001)
    y = 0.001 * (x + 3) * x * (x - 1) * (x - 4) * (x - 7)
    found = extrema(y, x)
    dy = derivative(y, x)
    s.text(
        "Extrema of <i>y</i> = 0.001 (x+3) x (x-1) (x-4) (x-7) sampled every 0.001 on "
        "[-3.5, 7.5). The lab's tolerance test on the derivative printed nine x values for "
        "four extrema; <code>convstack.extrema(y, x)</code> reports each once, located between "
        "samples (a parabola through the samples around the sign change of the derivative)."
    )
    s.html(
        numbers_html(
            ["x", "y", "kind"],
            [(float(e.x), float(e.y), e.kind) for e in found],
        )
    )
    rep.figure(
        s,
        "task2_extrema",
        lambda p: viz.signal_plot(
            x, y, dy, found, title="y and y' with the extrema found by convstack.extrema",
            label="y", derivative_label="y' (convstack.derivative)", path=p,
            overwrite=rep.overwrite,
        ),
        "The quintic, its derivative and its four extrema.",
    )  # fmt: skip


def _surfaces(rep: Report) -> None:
    from .. import correlate, viz

    def surface(section: Section, name: str, z: NDArray[Any], title: str) -> None:
        rep.figure(
            section,
            name,
            lambda p: viz.surface(z, title=title, path=p, overwrite=rep.overwrite),
            title,
            width="third",
        )

    s = rep.section("2D derivative")
    s.text(
        "The lab's binary 8x8 image, and its derivatives along the columns (kernel [[-1, 1]]) "
        "and along the rows (kernel [[-1], [1]]), by <code>convstack.correlate</code> with zero "
        "padding. The derivative is non-zero exactly where the intensity changes. (The lab "
        "divides these by the step of its sine samples, 0.01; an image's step is 1 pixel, so "
        "we do not.)"
    )
    s.html("<div>" + array_html(LAB_SQUARE, 0) + "</div>")
    d_col = correlate(LAB_SQUARE, [[-1, 1]], mode="constant")
    d_row = correlate(LAB_SQUARE, [[-1], [1]], mode="constant")
    surface(s, "d2_image", LAB_SQUARE, "the binary image s")
    surface(s, "d2_dcol", d_col, "d s / d col  ([[-1, 1]])")
    surface(s, "d2_drow", d_row, "d s / d row  ([[-1], [1]])")

    s2 = rep.section("2nd order derivative")
    s2.text(
        "The lab's image with softer edges, and its second differences along the columns "
        "([[1, -2, 1]]) and the rows ([[1], [-2], [1]]): the second derivative is largest where "
        "the first changes fastest, at the edges."
    )
    s2.html("<div>" + array_html(LAB_SOFT_SQUARE) + "</div>")
    surface(s2, "d2nd_image", LAB_SOFT_SQUARE, "the soft image s")
    surface(
        s2, "d2nd_col", correlate(LAB_SOFT_SQUARE, [[1, -2, 1]], mode="constant"),
        "d2 s / d col2  ([[1, -2, 1]])",
    )  # fmt: skip
    surface(
        s2, "d2nd_row", correlate(LAB_SOFT_SQUARE, [[1], [-2], [1]], mode="constant"),
        "d2 s / d row2  ([[1], [-2], [1]])",
    )  # fmt: skip

    s3 = rep.section("Laplacian")
    lap = correlate(LAB_SOFT_SQUARE, LAB_LAPLACIAN, mode="constant")
    s3.text(
        "Adding the two second differences (with the lab's sign) gives the Laplacian kernel "
        "[[0, -1, 0], [-1, 4, -1], [0, -1, 0]], which finds edges in both directions at once. "
        "Its result on the soft image, and the absolute value:"
    )
    rep.figure(
        s3, "laplacian_kernel",
        lambda p: viz.kernel_plot(LAB_LAPLACIAN, title="the lab's Laplacian kernel", path=p,
                                  overwrite=rep.overwrite),
        "The Laplacian kernel (sum 0).",
    )  # fmt: skip
    surface(s3, "laplacian", lap, "Laplacian of s")
    surface(s3, "laplacian_abs", np.abs(lap), "|Laplacian of s|")


def _filters(rep: Report, image: NDArray[np.uint8]) -> None:
    from .. import filters, viz

    s = rep.section("OpenCV-like filters")
    gray = gray_uint8(image)
    results = [
        (gray, "gray input"),
        (filters.box_blur(gray, 3), "box_blur(3)"),
        (filters.gaussian_blur(gray, 5), "gaussian_blur(5)"),
        (filters.laplacian(gray), "laplacian (float32)"),
        (filters.sobel(gray, 1, 0), "sobel(dx=1, dy=0) (float32)"),
        (filters.median_blur(gray, 5), "median_blur(5)"),
        (filters.bilateral(gray, 9, 75, 75), "bilateral(9, 75, 75)"),
    ]
    s.text(
        "The lab's OpenCV calls, done by <code>convstack.filters</code> with OpenCV's defaults "
        "(border BORDER_REFLECT_101 = our 'mirror'; median: replicate) on the gray synthetic "
        "photograph. Smoothing filters keep uint8; laplacian and sobel return signed floats, "
        "shown over their own range with a colour bar."
    )
    rep.figure(
        s,
        "filters",
        lambda p: viz.image_grid(
            [r[0] for r in results], [r[1] for r in results], cols=4, colorbar=True,
            panel_width=2.6, path=p, overwrite=rep.overwrite,
        ),
        "box, Gaussian, Laplacian, Sobel, median and bilateral filters.",
    )  # fmt: skip


def _task3(rep: Report, image: NDArray[np.uint8]) -> None:
    from .. import convolve, kernels, viz

    s = rep.section("Task 3")
    g1 = kernels.box(11)
    g2 = kernels.gaussian(21, 3.0)
    blur1 = convolve(image, g1, mode="mirror", channel_axis=-1)
    blur2 = convolve(image, g2, mode="mirror", channel_axis=-1)
    shown = [image, np.clip(np.round(blur1), 0, 255).astype(np.uint8),
             np.clip(np.round(blur2), 0, 255).astype(np.uint8)]  # fmt: skip
    s.text(
        "A box kernel <i>g1</i> of 11x11 and a Gaussian <i>g2</i> of 21x21 (sigma 3, as the lab) "
        "from <code>convstack.kernels</code>, convolved with each colour channel of the image "
        "(<code>channel_axis=-1</code>, border 'mirror'). Our Gaussian sums to 1 "
        f"(sum {g2.sum():.6f}), so the result keeps the image's brightness; the lab's kernel "
        "was scaled to a peak of 1 and needed <code>rescale_intensity</code> afterwards. "
        f"Mean intensity: input {image.mean():.2f}, box {blur1.mean():.2f}, "
        f"Gaussian {blur2.mean():.2f}."
    )
    rep.figure(
        s, "task3_kernels_box",
        lambda p: viz.kernel_plot(g1, title="g1: box 11x11, every weight 1/121", path=p,
                                  overwrite=rep.overwrite),
        "g1",
    )  # fmt: skip
    rep.figure(
        s, "task3_kernels_gauss",
        lambda p: viz.kernel_plot(g2, title=f"g2: Gaussian 21x21, sigma 3, sum {g2.sum():.3f}",
                                  path=p, overwrite=rep.overwrite),
        "g2",
    )  # fmt: skip
    rep.figure(
        s, "task3",
        lambda p: viz.image_grid(shown, ["input (RGB)", "g1: box 11", "g2: Gaussian 21"],
                                 path=p, overwrite=rep.overwrite),
        "The colour image, blurred by g1 and by g2.",
    )  # fmt: skip


def _edges(rep: Report, image: NDArray[np.uint8]) -> None:
    from .. import correlate, viz

    s = rep.section("Edge detection")
    gray = gray_uint8(image) / 255.0
    edges = correlate(gray, LAB_LAPLACIAN, mode="mirror")
    magnitude = np.abs(edges)
    scaled = (magnitude - magnitude.min()) / max(float(np.ptp(magnitude)), 1e-12)
    s.text(
        "The gray image (scaled to [0, 1]) correlated with the Laplacian kernel, as the lab's "
        "<code>filter2D</code> (border 'mirror'): values near 0 where the image is flat, large "
        "of both signs at edges; their absolute value, rescaled to [0, 1], is an edge map. "
        f"Laplacian range [{edges.min():.3f}, {edges.max():.3f}]."
    )
    rep.figure(
        s, "edges",
        lambda p: viz.image_grid(
            [gray, edges, scaled], ["gray / 255", "Laplacian (signed)", "|Laplacian| rescaled"],
            colorbar=True, path=p, overwrite=rep.overwrite,
        ),
        "Edges by the Laplacian.",
    )  # fmt: skip


def _stack_section(
    rep: Report,
    s: Section,
    prefix: str,
    frames: Sequence[NDArray[Any]],
    truth: NDArray[Any] | None,
    reference: NDArray[Any] | None,
    truth_depth: NDArray[Any] | None,
) -> None:
    """Sharpness maps, the lab's merge and convstack's fusion of one stack, with numbers."""
    from .. import metrics, viz
    from ..stack import fuse, sharpness_mask, weighted_merge

    masks = [sharpness_mask(f) for f in frames]
    lab = weighted_merge(frames, masks)
    fused = fuse(list(frames))
    ours = np.asarray(fused.image)
    mean = np.mean(np.stack(frames).astype(np.float64), axis=0)
    if frames[0].dtype.kind in "ui":
        mean = np.round(mean)
    mean = mean.astype(frames[0].dtype)
    titles = [f"frame {i}" for i in range(len(frames))]
    rep.figure(
        s, f"{prefix}_frames",
        lambda p: viz.image_grid(list(frames), titles, cols=4, panel_width=2.6, path=p,
                                 overwrite=rep.overwrite),
        "The frames, each focused at another depth.",
    )  # fmt: skip
    rep.figure(
        s, f"{prefix}_sharpness",
        lambda p: viz.sharpness_maps(masks, titles, cols=4, label="lab sharpness mask",
                                     scale="sqrt", path=p, overwrite=rep.overwrite),
        "The lab's sharpness mask per frame (|Laplacian| of the gray frame rescaled to [0, 1]), "
        "on one colour scale (square-root spaced, so that weak detail shows).",
    )  # fmt: skip
    last = float(len(frames) - 1)

    def depth(path: Path, d: NDArray[Any], title: str) -> Any:
        return viz.depth_map(
            d, title=title, label="frame index in focus", vmin=0.0, vmax=last, path=path,
            overwrite=rep.overwrite,
        )  # fmt: skip

    rep.figure(
        s, f"{prefix}_depth", lambda p: depth(p, np.asarray(fused.depth), "convstack depth map"),
        "convstack's depth map: which frame is sharpest at each pixel (fractional index).",
    )  # fmt: skip
    if truth_depth is not None:
        rep.figure(
            s, f"{prefix}_depth_truth", lambda p: depth(p, truth_depth, "true depth"),
            "The true depth, as the index of the frame focused at each pixel's distance.",
        )  # fmt: skip
    panels = [mean, lab, ours]
    names = ["plain mean of the frames", "the lab's weighted merge", "convstack.stack.fuse"]
    if truth is not None:
        panels.insert(0, truth)
        names.insert(0, "truth (all in focus)")
    if reference is not None:
        panels.insert(0, reference)
        names.insert(0, "authors' composite result.png")
    rep.figure(
        s, f"{prefix}_results",
        lambda p: viz.image_grid(panels, names, cols=2, panel_width=5.0, path=p,
                                 overwrite=rep.overwrite),
        "Fusion results side by side.",
    )  # fmt: skip
    if truth is not None:
        peak = 255.0 if truth.dtype == np.uint8 else 65535.0 if truth.dtype == np.uint16 else 1.0
        axis = -1 if truth.ndim == 3 else None
        rows = []
        for name, image in zip(names[1:], panels[1:], strict=True):
            rows.append(
                (
                    name,
                    metrics.psnr(truth, image, data_range=peak),
                    metrics.ssim(truth, image, data_range=peak, channel_axis=axis),
                )
            )
        s.html(numbers_html(["image vs truth", "PSNR (dB)", "SSIM"], rows))


def _task4(rep: Report, small: bool, bug: Path | None) -> None:
    s = rep.section("Task 4")
    s.text(
        "The lab's bug challenge: fuse photographs focused at different depths into one image "
        "sharp everywhere. The lab weights each frame by its sharpness mask (|Laplacian|) and "
        "takes the weighted mean; <code>convstack.stack.fuse</code> is the product's method. "
        "First on the demo's synthetic stack, whose all-in-focus truth is known, so the "
        "results are scored by PSNR and SSIM against it."
    )
    frames, truth, truth_depth = synthetic_stack(small)
    _stack_section(rep, s, "task4_synthetic", list(frames), truth, None, truth_depth)
    if bug is not None:
        b = rep.section("The bug set", 3)
        from ..stack.io import list_frames, read_image

        paths = [p for p in list_frames(bug) if p.name != "result.png"]
        factor = 6 if small else 3
        bug_frames = [downscale(read_image(p), factor) for p in paths]
        reference_path = bug / "result.png"
        reference = (
            downscale(read_image(reference_path), factor) if reference_path.exists() else None
        )
        b.text(
            f"The lab's {len(bug_frames)} frames from <code>{html.escape(str(bug))}</code>, shrunk "
            f"{factor}x by block averaging. <code>result.png</code> is the authors' blended "
            "composite in its own geometry, not a truth, so it is shown, not scored."
        )
        _stack_section(rep, b, "task4_bug", bug_frames, None, reference, None)


def synthetic_stack(small: bool) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
    """The demo's kind of synthetic focus stack: frames, all-in-focus truth, true depth index.

    The true depth is given as the (fractional) index of the frame focused at each pixel's
    distance, interpolated in 1/z, so that it compares with a fused depth map.
    """
    from ..stack import synthetic

    size = (96, 128) if small else (240, 320)
    count = 5 if small else 7
    scene = synthetic.make_scene(size, seed=1)
    stack = synthetic.render_stack(scene, count, breathing=0.004, shift=1.5, noise=0.004, seed=1)
    inverse = 1.0 / np.asarray(stack.focus_distances, dtype=np.float64)
    order = np.argsort(inverse)
    index = np.interp(
        1.0 / scene.depth.astype(np.float64), inverse[order], np.arange(count, dtype=float)[order]
    )
    return np.asarray(stack.frames), np.asarray(scene.image), index


# ----------------------------------------------------------------- entry point


def run_lab(
    out: str | os.PathLike[str],
    *,
    bug: str | os.PathLike[str] | None = None,
    small: bool = False,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """Run every section and task of the lab and write ``out/report.html``.

    Parameters
    ----------
    out : path-like
        Folder of the report (created if missing); figures go to ``out/figures``.
    bug : path-like, optional
        Folder of the lab's bug set (``b_bigbug*.png`` and ``result.png``) for Task 4.
    small : bool
        Smaller images and stacks: a quick run for tests.
    overwrite : bool
        Replace an existing report and its figures.
    progress : callable, optional
        ``progress(stage, done, total)`` after each section.

    Returns
    -------
    pathlib.Path
        The path of ``report.html``.

    Raises
    ------
    FileExistsError
        ``out/report.html`` or files in ``out/figures`` exist and ``overwrite`` is False.
    FileNotFoundError
        ``bug`` is not a folder.
    ImportError
        matplotlib (the ``plots`` extra) is not installed.
    """
    folder = Path(out)
    target = folder / "report.html"
    figures = folder / "figures"
    if not overwrite and (target.exists() or (figures.is_dir() and any(figures.iterdir()))):
        raise FileExistsError(
            f"`out` must not hold a report or figures already (overwrite=True, or --force "
            f"on the command line, replaces them); got '{folder}'."
        )
    bug_dir = None if bug is None else Path(bug)
    if bug_dir is not None and not bug_dir.is_dir():
        raise FileNotFoundError(f"`bug` must be a folder of the bug set; got '{bug_dir}'.")
    from ..viz._common import new_figure

    new_figure(1, 1)  # fail early, before any work, when matplotlib is missing
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    rep = Report(folder, overwrite, progress)
    image = photo_like_image(128 if small else 256)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("convolution", lambda: _convolution(rep)),
        ("task 1", lambda: _task1(rep)),
        ("derivative", lambda: _derivative(rep)),
        ("task 2", lambda: _task2(rep)),
        ("2d derivative", lambda: _surfaces(rep)),
        ("filters", lambda: _filters(rep, image)),
        ("task 3", lambda: _task3(rep, image)),
        ("edges", lambda: _edges(rep, image)),
        ("task 4", lambda: _task4(rep, small, bug_dir)),
    ]
    for index, (name, step) in enumerate(steps):
        with _stage(rep, name, index, len(steps)):
            step()
    intro = (
        "<p>Lab 3 (convolution), every section and task computed by convstack on built-in "
        "data: a synthetic photograph-like image instead of Lenna (the demo's scene, all in "
        "focus), and the demo's synthetic focus stack"
        + (" and the lab's bug set" if bug_dir is not None else "")
        + ". Pictures are in <code>figures/</code> beside this file.</p>"
    )
    return rep.write("convstack: Lab 3, convolution", intro)
