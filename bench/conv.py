"""Time convstack.correlate against cv2.filter2D, scipy.ndimage, scipy.signal and torch.

    python bench/conv.py            # 512, 2048, 4096 squared; kernels 3 5 11 21 51 + gauss
    python bench/conv.py --quick    # 512 and 2048 only
    python bench/conv.py --sizes 1024 --kernels 3 5 --methods auto direct fft
    python bench/conv.py --targets  # issue 13's cases (also gaussian_blur), alternated
    python bench/conv.py --against fb320e3 --repeats 15   # compiled rows then vs now
    python bench/conv.py --engine 5d92420 --repeats 15    # the whole engine then vs now

Float32 images, dense random kernels (and a separable Gaussian). Every time is the
minimum over repeats; each ratio is ``ours / peer`` (below 1: convstack is
faster), measured in the same run. A missing peer is skipped. Slow
peers (scipy.ndimage with large kernels on large images) get fewer repeats or are
skipped with a note, so the full table stays within a few minutes.
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

import convstack

#: Estimated peer seconds above which it is skipped (time budget of the table).
SKIP_ABOVE_S = 8.0


def best_time(func: Callable[[], Any], repeats: int, budget: float = 1.5) -> float:
    """Minimum wall time over ``repeats`` calls (fewer if the budget runs out)."""
    t0 = time.perf_counter()
    func()  # warm-up: caches, FFT plans; also the measurement when one call is slow
    first = time.perf_counter() - t0
    if first > budget:
        return first
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


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()
    return np.outer(g, g).astype(np.float32)


def peers() -> dict[str, Callable[[np.ndarray, np.ndarray], Callable[[], Any]] | None]:
    table: dict[str, Callable[[np.ndarray, np.ndarray], Callable[[], Any]] | None] = {}
    try:
        import cv2

        cv2.setNumThreads(os.cpu_count() or 1)
        table["cv2"] = lambda img, k: lambda: cv2.filter2D(img, -1, k)  # BORDER_REFLECT_101
    except ImportError:
        table["cv2"] = None
    try:
        import scipy.ndimage as ndi
        import scipy.signal as sig

        table["ndimage"] = lambda img, k: lambda: ndi.correlate(img, k, mode="mirror")
        table["fftconv"] = lambda img, k: lambda: sig.fftconvolve(img, k[::-1, ::-1], "same")
    except ImportError:
        table["ndimage"] = table["fftconv"] = None
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)

        def torch_case(img: np.ndarray, k: np.ndarray) -> Callable[[], Any]:
            x = torch.from_numpy(img)[None, None]
            w = torch.from_numpy(np.ascontiguousarray(k))[None, None]
            pad = (k.shape[0] // 2, k.shape[1] // 2)

            def run() -> Any:
                with torch.no_grad():
                    return torch.nn.functional.conv2d(x, w, padding=pad)

            return run

        table["torch"] = torch_case
    except ImportError:
        table["torch"] = None
    return table


def calibrate(repeats: int) -> None:
    """Measure the constants of convstack's cost model (method="auto") on this machine."""
    import importlib

    import scipy.fft

    from convstack import _methods

    engine = importlib.import_module("convstack.convolve")  # the module, not the function

    rng = np.random.default_rng(1)
    image = rng.random((2048, 2048), dtype=np.float32)
    outputs = float(image.size)

    def timed(kernel: np.ndarray, method: str) -> float:
        return best_time(
            lambda: convstack.correlate(image, kernel, mode="mirror", method=method), repeats
        )

    # wall times of calls whose rows run on THREADS threads; the constants are the
    # CPU time of one thread (OUT_NS stays wall: allocation and first touch)
    threads = _methods.THREADS
    t3 = timed(rng.standard_normal((3, 3)).astype(np.float32), "direct")
    t9 = timed(rng.standard_normal((9, 9)).astype(np.float32), "direct")
    tap = (t9 - t3) / ((81 - 9) * outputs)
    out = (t3 - 9 * tap * outputs) / outputs
    print(
        f"TAP_NS = {tap * threads * 1e9:.3f}  (direct 3x3 {t3 * 1e3:.1f} ms, "
        f"9x9 {t9 * 1e3:.1f} ms, {threads} threads)"
    )
    print(f"OUT_NS = {out * 1e9:.3f}  (the 3x3 time less its taps, per output)")
    g5, g25 = (
        np.outer(w, w).astype(np.float32) for w in (np.hanning(7)[1:-1], np.hanning(27)[1:-1])
    )
    s5, s25 = timed(g5, "separable"), timed(g25, "separable")
    grid = 2 * outputs + 2048.0 * 20  # column-pass samples (padded width) + row-pass samples
    sep_tap = (s25 - s5) / (20 * grid) * threads  # CPU s of one thread per tap and sample
    taps5 = 5 * (outputs + 2048.0 * 4) + 5 * outputs
    sep_out = ((s5 - _methods.OUT_NS * 1e-9 * outputs) * threads - sep_tap * taps5) / outputs
    print(
        f"SEP_TAP_NS = {sep_tap * 1e9:.3f}  SEP_OUT_NS = {sep_out * 1e9:.3f}  "
        f"(separable 5x5 {s5 * 1e3:.1f} ms, 25x25 {s25 * 1e3:.1f} ms)"
    )
    for k in (11, 21, 51):
        kernel = rng.standard_normal((k, k)).astype(np.float32)
        measured = timed(kernel, "fft")
        full = (2048, 2048)
        model = engine._costs(
            full, (kernel.shape, kernel.dtype.str, kernel.tobytes()), full,
            ((k // 2, k // 2),) * 2, (1, 1), (1, 1),
        )  # fmt: skip
        print(
            f"{k}x{k}: fft {measured * 1e3:.1f} ms, model {model['fft'] * 1e-6:.1f} ms; "
            f"direct model {model['direct'] * 1e-6:.1f} ms"
        )
    for n in (128, 256, 512, 1024, 2048):
        tile = rng.random((n, n), dtype=np.float32)
        spec = scipy.fft.rfft2(tile)

        def one(tile: np.ndarray = tile, spec: np.ndarray = spec, n: int = n) -> Any:
            s = scipy.fft.rfft2(tile, workers=1)
            s *= spec
            return scipy.fft.irfft2(s, s=(n, n), workers=1)

        t = best_time(one, repeats * 3)
        print(
            f"FFT tile {n:>4}: {t * 1e3:8.3f} ms = {t * 1e9 / (n * n * np.log2(n * n)):.3f} "
            "ns per n log2 n"
        )
    print(
        f"(current constants: TAP {_methods.TAP_NS}, SEP_TAP {_methods.SEP_TAP_NS}, "
        f"SEP_OUT {_methods.SEP_OUT_NS}, "
        f"OUT {_methods.OUT_NS}, FFT {_methods.FFT_NS}, tile {_methods.FFT_TILE_NS} ns, "
        f"{_methods.THREADS} threads)"
    )


def targets(repeats: int) -> None:
    """The issue's target cases, ours and OpenCV called alternately (min of ``repeats`` pairs)."""
    import cv2

    from convstack import filters

    cv2.setNumThreads(os.cpu_count() or 1)
    rng = np.random.default_rng(3)

    def pair(ours: Callable[[], Any], theirs: Callable[[], Any]) -> tuple[float, float]:
        ours(), theirs()
        a, b = [], []
        for _ in range(repeats):
            for func, into in ((ours, a), (theirs, b)):
                gc.collect()
                t0 = time.perf_counter()
                func()
                into.append(time.perf_counter() - t0)
        return min(a), min(b)

    print("# case, ours ms, cv2 ms, ours/cv2 (ours and OpenCV alternately, min of pairs)")
    for size, ks in ((2048, (3, 5, 11, 21, 51)), (512, (3, 5))):
        image = rng.random((size, size), dtype=np.float32)
        for k in ks:
            kernel = rng.standard_normal((k, k)).astype(np.float32)
            a, b = pair(
                lambda image=image, kernel=kernel: convstack.correlate(
                    image, kernel, mode="mirror"
                ),
                lambda image=image, kernel=kernel: cv2.filter2D(image, -1, kernel),
            )
            label = f"correlate float32 {size}^2 {k}x{k}"
            print(f"{label:<40} {a * 1e3:8.2f} {b * 1e3:8.2f} {a / b:6.2f}", flush=True)
    for shape, dtype, k in (
        ((2048, 2048, 3), np.uint8, 5),
        ((2048, 2048, 3), np.uint8, 11),
        ((2048, 2048), np.float32, 5),
        ((2048, 2048, 3), np.float32, 5),
    ):
        image = (rng.random(shape) * 255).astype(dtype)
        a, b = pair(
            lambda image=image, k=k: filters.gaussian_blur(image, k),
            lambda image=image, k=k: cv2.GaussianBlur(image, (k, k), 0),
        )
        same = np.array_equal(filters.gaussian_blur(image, k), cv2.GaussianBlur(image, (k, k), 0))
        label = f"gaussian_blur {np.dtype(dtype).name} {'x'.join(map(str, shape))} {k}x{k}"
        exact = " bit-exact" if same else ""
        print(f"{label:<40} {a * 1e3:8.2f} {b * 1e3:8.2f} {a / b:6.2f}{exact}", flush=True)


def kernels_at(revision: str) -> Any:
    """``convstack._k_correlate`` as it was at a git ``revision``, imported from a copy."""
    import importlib.util
    import subprocess
    import tempfile

    source = subprocess.run(
        ["git", "show", f"{revision}:src/convstack/_k_correlate.py"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    source = source.replace("from ._jit import kernel", "from convstack._jit import kernel")
    path = os.path.join(tempfile.mkdtemp(prefix="convstack-ab-"), "k_at_revision.py")
    with open(path, "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("k_at_revision", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def against(revision: str, repeats: int) -> None:
    """The compiled rows of ``revision`` against today's, both inside today's engine:
    ``correlate`` and ``gaussian_blur`` on the targets' images, alternated with OpenCV;
    minimum wall time and process CPU time (all threads) of ``repeats`` rounds."""
    import cv2

    from convstack import _methods, filters

    cv2.setNumThreads(os.cpu_count() or 1)
    old, new = kernels_at(revision), _methods._compiled()
    rng = np.random.default_rng(3)
    cases: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = []
    for size, k in ((2048, 3), (2048, 5), (2048, 11), (512, 3), (512, 5)):
        image = rng.random((size, size), dtype=np.float32)
        kernel = rng.standard_normal((k, k)).astype(np.float32)
        cases.append((
            f"correlate float32 {size}^2 {k}x{k}",
            lambda i=image, k=kernel: convstack.correlate(i, k, mode="mirror", method="direct"),
            lambda i=image, k=kernel: cv2.filter2D(i, -1, k),
        ))  # fmt: skip
    for shape, dtype in (((2048, 2048), np.float32), ((2048, 2048, 3), np.uint8)):
        image = (rng.random(shape) * 255).astype(dtype)
        cases.append((
            f"gaussian_blur {np.dtype(dtype).name} {'x'.join(map(str, shape))} 5x5",
            lambda i=image: filters.gaussian_blur(i, 5),
            lambda i=image: cv2.GaussianBlur(i, (5, 5), 0),
        ))  # fmt: skip
    print(f"# {revision} / today's compiled rows, and each / cv2: min wall (min CPU) of {repeats}")
    for label, ours, theirs in cases:

        def at(module: Any, ours: Callable[[], Any] = ours) -> Callable[[], Any]:
            def run() -> Any:
                _methods._KERNELS = module
                return ours()

            return run

        calls = (at(old), at(new), theirs)
        for call in calls:
            call()
        wall: list[list[float]] = [[], [], []]
        cpu: list[list[float]] = [[], [], []]
        for _ in range(repeats):
            for call, w, c in zip(calls, wall, cpu, strict=True):
                gc.collect()
                t0, c0 = time.perf_counter(), time.process_time()
                call()
                w.append(time.perf_counter() - t0)
                c.append(time.process_time() - c0)
        (wo, wn, wc), (co, cn, cc) = ([min(x) for x in t] for t in (wall, cpu))
        print(
            f"{label:<38} new/old {wn / wo:5.2f} ({cn / co:4.2f} CPU)  "
            f"old/cv2 {wo / wc:5.2f}  new/cv2 {wn / wc:5.2f} ({cn / cc:4.2f} CPU)",
            flush=True,
        )
    _methods._KERNELS = new


def engine_at(revision: str) -> Any:
    """The whole ``convstack`` package as it was at git ``revision``, imported from an
    exported copy as ``convstack_at_revision`` (its own numba cache beside it)."""
    import importlib.util
    import subprocess
    import tempfile

    root = tempfile.mkdtemp(prefix="convstack-engine-")
    archive = subprocess.run(
        ["git", "archive", revision, "src/convstack"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", root], input=archive, check=True)
    package = os.path.join(root, "src", "convstack")
    spec = importlib.util.spec_from_file_location(
        "convstack_at_revision", os.path.join(package, "__init__.py"),
        submodule_search_locations=[package],
    )  # fmt: skip
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["convstack_at_revision"] = module
    spec.loader.exec_module(module)
    return module


def engine_against(revision: str, repeats: int) -> None:
    """The whole engine of ``revision`` (Python set-up and compiled rows) against
    today's and OpenCV, one process, called in turn with ``gc.collect()`` before each
    call as ``--targets`` does; minimum wall time of ``repeats`` rounds."""
    import importlib

    import cv2

    from convstack import filters

    cv2.setNumThreads(os.cpu_count() or 1)
    old = engine_at(revision)
    old_filters = importlib.import_module("convstack_at_revision.filters")
    rng = np.random.default_rng(3)
    cases: list[tuple[str, Callable[[], Any], Callable[[], Any], Callable[[], Any]]] = []
    for n, k in ((512, 3), (512, 5), (2048, 3), (2048, 5), (2048, 11), (2048, 51)):
        image = rng.random((n, n), dtype=np.float32)
        kernel = rng.standard_normal((k, k)).astype(np.float32)
        cases.append((
            f"correlate float32 {n}^2 {k}x{k}",
            lambda i=image, w=kernel: old.correlate(i, w, mode="mirror"),
            lambda i=image, w=kernel: convstack.correlate(i, w, mode="mirror"),
            lambda i=image, w=kernel: cv2.filter2D(i, -1, w),
        ))  # fmt: skip
    box = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]).astype(np.float32) / 16
    image = rng.random((512, 512), dtype=np.float32)
    cases.append((
        "correlate float32 512^2 3x3 rank-1",
        lambda: old.correlate(image, box, mode="mirror"),
        lambda: convstack.correlate(image, box, mode="mirror"),
        lambda: cv2.filter2D(image, -1, box),
    ))  # fmt: skip
    grey = (rng.random((2048, 2048)) * 255).astype(np.float32)
    cases.append((
        "gaussian_blur float32 2048^2 5x5",
        lambda: old_filters.gaussian_blur(grey, 5),
        lambda: filters.gaussian_blur(grey, 5),
        lambda: cv2.GaussianBlur(grey, (5, 5), 0),
    ))  # fmt: skip
    print(f"# {revision} / today's engine, and each / cv2: min wall of {repeats}, gc between")
    for label, then, now, theirs in cases:
        calls = (then, now, theirs)
        for call in calls:
            call()
        wall: list[list[float]] = [[], [], []]
        for _ in range(repeats):
            for call, into in zip(calls, wall, strict=True):
                gc.collect()
                t0 = time.perf_counter()
                call()
                into.append(time.perf_counter() - t0)
        wo, wn, wc = (min(w) for w in wall)
        print(
            f"{label:<36} new/old {wn / wo:5.2f}  old/cv2 {wo / wc:5.2f}  new/cv2 {wn / wc:5.2f}",
            flush=True,
        )


def memory() -> None:
    """Peak memory traced by tracemalloc during one call, against the output's size."""
    import tracemalloc

    rng = np.random.default_rng(2)
    for size in (512, 2048):
        image = rng.random((size, size), dtype=np.float32)
        for name in ("3", "5", "11", "21", "51", "gauss"):
            kernel = (
                gaussian_kernel(19, 3.0)
                if name == "gauss"
                else rng.standard_normal((int(name), int(name))).astype(np.float32)
            )
            convstack.correlate(image, kernel, mode="mirror")  # plans and caches
            tracemalloc.start()
            convstack.correlate(image, kernel, mode="mirror")
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            extra = (peak - image.nbytes) / image.nbytes
            print(
                f"{size:>5} {name:>6}: peak {peak / 2**20:7.2f} MiB, "
                f"extra beyond the output {extra:.2f} x output"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512 and 2048 only")
    parser.add_argument("--sizes", type=int, nargs="+", help="image sides (default 512 2048 4096)")
    parser.add_argument("--kernels", nargs="+", default=["3", "5", "11", "21", "51", "gauss"])
    parser.add_argument("--methods", nargs="+", default=["auto"], help="convstack methods")
    parser.add_argument("--peers", nargs="+", default=["cv2", "ndimage", "fftconv", "torch"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calibrate", action="store_true", help="measure cost-model constants")
    parser.add_argument("--memory", action="store_true", help="peak memory of method='auto'")
    parser.add_argument("--targets", action="store_true", help="issue 13's cases, alternated")
    parser.add_argument("--against", metavar="REV", help="compiled rows of git REV vs today's")
    parser.add_argument("--engine", metavar="REV", help="the whole engine of git REV vs today's")
    args = parser.parse_args(argv)
    if args.calibrate:
        calibrate(args.repeats)
        return 0
    if args.memory:
        memory()
        return 0
    if args.targets:
        targets(args.repeats)
        return 0
    if args.against:
        against(args.against, args.repeats)
        return 0
    if args.engine:
        engine_against(args.engine, args.repeats)
        return 0
    sizes = args.sizes or ([512, 2048] if args.quick else [512, 2048, 4096])
    available = peers()
    names = [p for p in args.peers if available.get(p) is not None]
    missing = [p for p in args.peers if available.get(p) is None]
    rng = np.random.default_rng(0)
    print(f"# convstack {convstack.__version__}, numpy {np.__version__}, {os.cpu_count()} cores")
    if missing:
        print(f"# skipped (not installed): {', '.join(missing)}")
    cols = [f"ours:{m}" for m in args.methods] + names
    head = f"{'size':>5} {'kernel':>8} " + " ".join(f"{c:>12}" for c in cols)
    head += "  " + " ".join(f"{'/' + n:>9}" for n in names)
    print("# times in ms (min of repeats); /peer = ours (first method) / peer, < 1 is faster")
    print(head)
    notes: list[str] = []
    for size in sizes:
        image = rng.random((size, size), dtype=np.float32)
        for name in args.kernels:
            if name == "gauss":
                kernel, label = gaussian_kernel(19, 3.0), "gauss19"
            else:
                k = int(name)
                kernel, label = rng.standard_normal((k, k)).astype(np.float32), f"{k}x{k}"
            times: dict[str, float | None] = {}
            for m in args.methods:
                times[f"ours:{m}"] = best_time(
                    lambda m=m, image=image, kernel=kernel: convstack.correlate(
                        image, kernel, mode="mirror", method=m
                    ),
                    args.repeats,
                )
            for n in names:
                factory = available[n]
                assert factory is not None
                taps = kernel.size * size * size
                if n == "ndimage" and taps > 2e9:  # ~0.6 ns per tap on this machine
                    est = taps * 0.6e-9
                    if est > SKIP_ABOVE_S:
                        times[n] = None
                        notes.append(f"ndimage {size} {label}: skipped (~{est:.0f} s a call)")
                        continue
                    times[n] = best_time(factory(image, kernel), 1, budget=0)
                    continue
                times[n] = best_time(factory(image, kernel), args.repeats)
            ours = times[f"ours:{args.methods[0]}"]
            row = f"{size:>5} {label:>8} " + " ".join(
                f"{times[c] * 1e3:>12.2f}" if times[c] is not None else f"{'-':>12}" for c in cols
            )
            ratios = " ".join(
                f"{ours / times[n]:>9.2f}" if times[n] and ours else f"{'-':>9}" for n in names
            )
            print(row + "  " + ratios, flush=True)
    for note in notes:
        print("# " + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
