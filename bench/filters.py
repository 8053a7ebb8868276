"""Time convstack.filters against OpenCV and SciPy / scikit-image, in one run.

    python bench/filters.py            # 512x512 and 2048x2048 gray, 4096x4096 colour
    python bench/filters.py --quick    # 512x512 and 2048x2048 gray only
    python bench/filters.py --only median bilateral
    python bench/filters.py --box-sweep --baseline c80a938   # box_blur k=3..101, old vs new
    python bench/filters.py --targets  # issue 13's median, box and bilateral targets
    python bench/filters.py --bilateral --baseline 5d92420  # bilateral uint8, old vs new

Every time is the minimum over repeats (after a warm-up call), convstack and OpenCV
called alternately so both see the same background load; ratios are
``ours / cv2`` (below 1: convstack is faster) and ``peer / ours`` (how many times
faster than SciPy or scikit-image), all measured in the same run. ``maxdiff`` is
the largest difference from OpenCV's output (grey levels for integers). A peer
whose estimated time is above ``SKIP_ABOVE_S`` (extrapolated from the smaller
image by pixel count) is skipped and marked ``skip``.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from convstack import filters

SKIP_ABOVE_S = 6.0


def best_time(func: Callable[[], Any], repeats: int = 5, budget: float = 1.5) -> float:
    """Minimum wall time over ``repeats`` calls (fewer if the budget runs out)."""
    func()
    times = []
    start = time.perf_counter()
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget and len(times) >= 2:
            break
    return min(times)


def alternated_times(
    funcs: list[Callable[[], Any]], repeats: int, budget: float = float("inf")
) -> list[float]:
    """Minimum wall times of functions called in turn, ``repeats`` rounds (after a warm-up
    each; fewer rounds, at least two, once ``budget`` seconds have passed).

    Alternating puts all under the same background load, which on a shared
    machine moves single timings by tens of per cent.
    """
    for func in funcs:
        func()
    best = [float("inf")] * len(funcs)
    start = time.perf_counter()
    for done in range(repeats):
        for k, func in enumerate(funcs):
            gc.collect()
            t0 = time.perf_counter()
            func()
            best[k] = min(best[k], time.perf_counter() - t0)
        if time.perf_counter() - start > budget and done >= 1:
            break
    return best


def paired_times(
    ours: Callable[[], Any], theirs: Callable[[], Any], repeats: int, budget: float = 3.0
) -> tuple[float, float]:
    """Minimum wall times of two functions called alternately (:func:`alternated_times`)."""
    best = alternated_times([ours, theirs], repeats, budget)
    return best[0], best[1]


def cases(cv2: Any, ndi: Any, skr: Any) -> list[tuple[str, str, Callable, Callable, Any]]:
    """(name, dtype, ours(img), cv2(img), (peer name, peer(img)) or None)."""

    def per_channel(f: Callable) -> Callable:
        """SciPy's filters take no channel axis: run them channel by channel."""

        def run(img: np.ndarray) -> np.ndarray:
            if img.ndim == 2:
                return f(img)
            return np.dstack([f(img[..., c]) for c in range(img.shape[2])])

        return run

    return [
        (
            "box_blur 3",
            "uint8",
            lambda im: filters.box_blur(im, 3),
            lambda im: cv2.blur(im, (3, 3)),
            ("ndimage.uniform_filter", per_channel(lambda x: ndi.uniform_filter(x, 3))),
        ),
        (
            "box_blur 3",
            "float32",
            lambda im: filters.box_blur(im, 3),
            lambda im: cv2.blur(im, (3, 3)),
            ("ndimage.uniform_filter", per_channel(lambda x: ndi.uniform_filter(x, 3))),
        ),
        (
            "box_blur 21",
            "float32",
            lambda im: filters.box_blur(im, 21),
            lambda im: cv2.blur(im, (21, 21)),
            ("ndimage.uniform_filter", per_channel(lambda x: ndi.uniform_filter(x, 21))),
        ),
        (
            "box_blur 31",
            "uint8",
            lambda im: filters.box_blur(im, 31),
            lambda im: cv2.blur(im, (31, 31)),
            ("ndimage.uniform_filter", per_channel(lambda x: ndi.uniform_filter(x, 31))),
        ),
        (
            "gaussian_blur 5",
            "uint8",
            lambda im: filters.gaussian_blur(im, 5),
            lambda im: cv2.GaussianBlur(im, (5, 5), 0),
            (
                "ndimage.gaussian_filter",
                per_channel(lambda x: ndi.gaussian_filter(x, 1.1, truncate=2 / 1.1)),
            ),
        ),
        (
            "gaussian_blur 11",
            "uint8",
            lambda im: filters.gaussian_blur(im, 11),
            lambda im: cv2.GaussianBlur(im, (11, 11), 0),
            (
                "ndimage.gaussian_filter",
                per_channel(lambda x: ndi.gaussian_filter(x, 2.0, truncate=5 / 2.0)),
            ),
        ),
        (
            "gaussian_blur 5",
            "float32",
            lambda im: filters.gaussian_blur(im, 5),
            lambda im: cv2.GaussianBlur(im, (5, 5), 0),
            (
                "ndimage.gaussian_filter",
                per_channel(lambda x: ndi.gaussian_filter(x, 1.1, truncate=2 / 1.1)),
            ),
        ),
        (
            "gaussian_blur 11",
            "float32",
            lambda im: filters.gaussian_blur(im, 11),
            lambda im: cv2.GaussianBlur(im, (11, 11), 0),
            (
                "ndimage.gaussian_filter",
                per_channel(lambda x: ndi.gaussian_filter(x, 2.0, truncate=5 / 2.0)),
            ),
        ),
        (
            "sobel dx=1",
            "uint8",
            lambda im: filters.sobel(im, 1, 0),
            lambda im: cv2.Sobel(im, cv2.CV_32F, 1, 0),
            ("ndimage.sobel", per_channel(lambda x: ndi.sobel(x.astype(np.float32), axis=1))),
        ),
        (
            "laplacian 1",
            "uint8",
            lambda im: filters.laplacian(im),
            lambda im: cv2.Laplacian(im, cv2.CV_32F),
            ("ndimage.laplace", per_channel(lambda x: ndi.laplace(x.astype(np.float32)))),
        ),
        (
            "median_blur 3",
            "uint8",
            lambda im: filters.median_blur(im, 3),
            lambda im: cv2.medianBlur(im, 3),
            ("ndimage.median_filter", per_channel(lambda x: ndi.median_filter(x, 3))),
        ),
        (
            "median_blur 5",
            "uint8",
            lambda im: filters.median_blur(im, 5),
            lambda im: cv2.medianBlur(im, 5),
            ("ndimage.median_filter", per_channel(lambda x: ndi.median_filter(x, 5))),
        ),
        (
            "bilateral 9,75,75",
            "uint8",
            lambda im: filters.bilateral(im, 9, 75, 75),
            lambda im: cv2.bilateralFilter(im, 9, 75, 75),
            (
                "skimage denoise_bilateral",
                lambda im: skr.denoise_bilateral(
                    im,
                    win_size=9,
                    sigma_color=75 / 255,
                    sigma_spatial=75,
                    channel_axis=-1 if im.ndim == 3 else None,
                ),
            ),
        ),
    ]


def baseline_module(
    rev: str,
    path: str,
    name: str,
    *,
    package: str = "convstack.filters",
    rename: tuple[str, str] | None = None,
) -> Any:
    """``path`` (a module of ``package``) as it was at git revision ``rev``.

    ``rename``: (old, new) text replaced in the source (an import of another module
    loaded from ``rev``). The source is left in a new temporary folder (numba caches
    the module's kernels beside it; a deleted source broke its cache).
    """
    import importlib.util
    import subprocess
    import tempfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=root, check=True, capture_output=True, text=True
    ).stdout
    if rename is not None:
        source = source.replace(*rename)
    filename = os.path.join(tempfile.mkdtemp(prefix="convstack-baseline-"), f"{name}.py")
    with open(filename, "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(f"{package}.{name}", filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def bilateral_sweep(cv2: Any, baseline: str | None, repeats: int = 9) -> None:
    """bilateral 9, 75, 75 on uint8 1024x1024x3 and 2048x2048: ours (and the baseline
    revision's), OpenCV, called in turn; min of ``repeats`` rounds, ms."""
    old = None
    if baseline:
        baseline_module(
            baseline, "src/convstack/_k_bilateral.py", "_old_k_bilateral", package="convstack"
        )
        old = baseline_module(
            baseline,
            "src/convstack/filters/bilateral.py",
            "_old_bilateral",
            rename=(
                "from .. import _k_bilateral\n",
                "from .. import _old_k_bilateral as _k_bilateral\n",
            ),
        )
    rng = np.random.default_rng(0)
    print("| image | baseline ms | ours ms | cv2 ms | ours/cv2 | baseline/cv2 | ours/baseline |")
    print("|---|---|---|---|---|---|---|")
    for shape in ((1024, 1024, 3), (2048, 2048)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        funcs = [
            lambda im=image: filters.bilateral(im, 9, 75, 75),
            lambda im=image: cv2.bilateralFilter(im, 9, 75, 75),
        ]
        if old is not None:
            funcs.append(lambda im=image: old.bilateral(im, 9, 75, 75))
        best = alternated_times(funcs, repeats)
        label = "x".join(str(s) for s in shape)
        ours, theirs = best[0], best[1]
        if old is None:
            print(f"| {label} | - | {ours * 1e3:.1f} | {theirs * 1e3:.1f} | {ours / theirs:.2f}x |")
            continue
        print(
            f"| {label} | {best[2] * 1e3:.1f} | {ours * 1e3:.1f} | {theirs * 1e3:.1f} "
            f"| {ours / theirs:.2f}x | {best[2] / theirs:.2f}x | {ours / best[2]:.2f} |",
            flush=True,
        )


def box_sweep(cv2: Any, baseline: str | None, repeats: int = 7) -> None:
    """box_blur at k = 3, 21, 51, 101 on 2048x2048 float32 and uint8: ours (and the
    baseline revision's), OpenCV, called in turn; min of ``repeats`` rounds, ms."""
    old = None
    if baseline:
        old = baseline_module(baseline, "src/convstack/filters/smoothing.py", "_old_smoothing")
    rng = np.random.default_rng(0)
    print(f"| dtype   | k   | {'baseline' if old else '':>8} | ours     | cv2      | ours/cv2 |")
    print("|---------|-----|----------|----------|----------|----------|")
    for dtype in ("float32", "uint8"):
        if dtype == "uint8":
            image = rng.integers(0, 256, (2048, 2048), dtype=np.uint8)
        else:
            image = rng.random((2048, 2048), dtype=np.float32)
        for k in (3, 21, 51, 101):
            funcs = [
                lambda k=k, im=image: filters.box_blur(im, k),
                lambda k=k, im=image: cv2.blur(im, (k, k)),
            ]
            if old is not None:
                funcs.append(lambda k=k, im=image: old.box_blur(im, k))
            best = alternated_times(funcs, repeats)
            base = f"{best[2] * 1e3:8.1f}" if old is not None else " " * 8
            print(
                f"| {dtype:<7} | {k:<3} | {base} | {best[0] * 1e3:8.1f} | {best[1] * 1e3:8.1f} "
                f"| {best[0] / best[1]:7.2f}x |",
                flush=True,
            )


#: Issue 13's targets for the compiled filters: (name, image shape, ours, OpenCV, most ours/cv2).
TARGETS = [
    ("median_blur 5 uint8", (2048, 2048), "median", 2.0),
    ("box_blur 31 uint8", (2048, 2048), "box", 1.2),
    ("bilateral 9,75,75 uint8", (1024, 1024, 3), "bilateral", 1.5),
]


def targets(cv2: Any, repeats: int = 15) -> None:
    """Issue 13's filter targets: ours and OpenCV alternately, min of ``repeats`` rounds."""
    rng = np.random.default_rng(0)
    calls = {
        "median": (lambda im: filters.median_blur(im, 5), lambda im: cv2.medianBlur(im, 5)),
        "box": (lambda im: filters.box_blur(im, 31), lambda im: cv2.blur(im, (31, 31))),
        "bilateral": (
            lambda im: filters.bilateral(im, 9, 75, 75),
            lambda im: cv2.bilateralFilter(im, 9, 75, 75),
        ),
    }
    print("| case | image | ours ms | cv2 ms | ours/cv2 | target | met |")
    print("|---|---|---|---|---|---|---|")
    for name, shape, key, most in TARGETS:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        ours, theirs = calls[key]
        t_ours, t_cv = paired_times(
            lambda f=ours, im=image: f(im),
            lambda f=theirs, im=image: f(im),
            repeats=repeats,
            budget=8.0,
        )
        ratio = t_ours / t_cv
        label = "x".join(str(s) for s in shape)
        print(
            f"| {name} | {label} | {t_ours * 1e3:.2f} | {t_cv * 1e3:.2f} | {ratio:.2f}x "
            f"| <= {most}x | {'yes' if ratio <= most else 'no'} |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="gray 512 and 2048 only")
    parser.add_argument("--only", nargs="*", help="filter names to keep (substring match)")
    parser.add_argument(
        "--box-sweep", action="store_true", help="box_blur k=3, 21, 51, 101 at 2048x2048 only"
    )
    parser.add_argument(
        "--bilateral", action="store_true", help="bilateral 9,75,75 uint8 only (and --baseline's)"
    )
    parser.add_argument(
        "--baseline", help="git revision to time against (--box-sweep, --bilateral)"
    )
    parser.add_argument(
        "--targets", action="store_true", help="issue 13's median, box and bilateral targets only"
    )
    args = parser.parse_args(argv)

    import cv2
    import scipy.ndimage as ndi
    import skimage.restoration as skr

    cv2.setNumThreads(os.cpu_count() or 1)
    if args.box_sweep:
        box_sweep(cv2, args.baseline)
        return 0
    if args.targets:
        targets(cv2)
        return 0
    if args.bilateral:
        bilateral_sweep(cv2, args.baseline)
        return 0
    rng = np.random.default_rng(0)
    shapes = [(512, 512), (2048, 2048)] + ([] if args.quick else [(4096, 4096, 3)])
    table = cases(cv2, ndi, skr)
    if args.only:
        table = [c for c in table if any(word in c[0] for word in args.only)]
    print(
        f"# convstack.filters vs OpenCV {cv2.__version__} and SciPy/scikit-image; "
        f"{os.cpu_count()} CPUs; min of repeats, ms"
    )
    header = (
        f"| {'filter':<18} | {'dtype':<7} | {'image':<14} | {'ours':>8} | {'cv2':>8} "
        f"| {'ours/cv2':>8} | {'maxdiff':>7} | {'peer':<25} | {'peer ms':>9} | {'peer/ours':>9} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(p)) for p in header.split("|")[1:-1]) + "|")
    peer_rate: dict[tuple[str, str], float] = {}  # seconds per pixel at the smaller size
    for shape in shapes:
        for name, dtype, ours, theirs, peer in table:
            if dtype == "uint8":
                image = rng.integers(0, 256, shape, dtype=np.uint8)
            else:
                image = rng.random(shape, dtype=np.float32)
            t_ours, t_cv = paired_times(
                lambda ours=ours, image=image: ours(image),
                lambda theirs=theirs, image=image: theirs(image),
                repeats=25 if image.size <= 512 * 512 else 7,
            )
            a = np.asarray(ours(image), dtype=np.float64)
            b = np.asarray(theirs(image), dtype=np.float64)
            diff = float(np.abs(a - b).max())
            peer_name, peer_ms, peer_ratio = "-", "-", "-"
            if peer is not None:
                peer_name = peer[0]
                key = (name, dtype)
                estimate = peer_rate.get(key, 0.0) * image.size
                if estimate > SKIP_ABOVE_S:
                    peer_ms, peer_ratio = f"skip~{estimate:.0f}s", "-"
                else:
                    t_peer = best_time(lambda image=image, f=peer[1]: f(image), repeats=3)
                    peer_rate[key] = t_peer / image.size
                    peer_ms, peer_ratio = f"{t_peer * 1e3:.1f}", f"{t_peer / t_ours:.1f}x"
            label = "x".join(str(s) for s in shape)
            print(
                f"| {name:<18} | {dtype:<7} | {label:<14} | {t_ours * 1e3:8.2f} | "
                f"{t_cv * 1e3:8.2f} | {t_ours / t_cv:7.2f}x | {diff:7.2g} | {peer_name:<25} "
                f"| {peer_ms:>9} | {peer_ratio:>9} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
