"""What if the pyramid's noise floor measured the noise on the flattest blocks? (issue 16)

    python bench/noise_floor.py            # bench/fusion.py's eight scored stacks (~5 min)
    python bench/noise_floor.py --cases bug bug-none

``fuse(noise_floor=z)`` averages the frames where no frame's detail stands z sigmas of the
sensor noise above it. ``PyramidAccumulator`` measures that sigma as the MAD of the first
frame's finest-level luma coefficients over the whole frame, which counts texture as noise
on a detailed frame (the clean synthetic stacks: 0.0077 where their only noise is 8-bit
rounding), so the floor averages real detail away and costs the rendered stacks up to
0.46 dB. This script runs bench/fusion.py with, besides ``pyramid`` and ``pyramid-nf3``,
``nfZ-blk``: ``noise_floor=Z`` with the variance measured instead as the 10 % quantile of
the 16 x 16 block means of those squared coefficients (the flattest tenth of the frame,
which holds noise only): 0.0014 on the clean stacks, 0.0065 on the noise-0.01 ones (their
luma noise: 0.0067), 0.018 on the bug set (MAD 0.021).

It swaps ``convstack.stack.fusion._quantile``'s median call (the only one with q = 0.5) for
the block estimate while a method runs: a measurement of a proposed change to fusion.py,
not a supported use of its private names; delete it once fusion.py measures so itself.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

from convstack.stack import fusion

ROOT = Path(__file__).resolve().parents[1]
BLOCK, QUANTILE = 16, 0.1
CASES = ["aligned-0", "aligned-3", "breathing-1", "breathing-4", "halo-2", "halo-5", "bug"]
CASES.append("bug-none")


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_fusion", ROOT / "bench" / "fusion.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    bench = _bench()
    median_quantile = fusion._quantile

    def flattest_blocks(values: np.ndarray, q: float, *, in_place: bool = False) -> float:
        if q != 0.5 or values.ndim != 2:
            return median_quantile(values, q, in_place=in_place)
        rows, cols = (values.shape[0] // BLOCK) * BLOCK, (values.shape[1] // BLOCK) * BLOCK
        blocks = values[:rows, :cols].reshape(rows // BLOCK, BLOCK, cols // BLOCK, BLOCK)
        # the caller multiplies the median of squares by the MAD's factor squared
        return float(np.quantile(blocks.mean(axis=(1, 3)), QUANTILE)) / fusion._MAD_TO_SIGMA**2

    def blocks(z: float) -> Any:
        run = bench.ours("pyramid", noise_floor=z)

        def measured(paths: Any, out: Any, align: str) -> None:
            fusion._quantile = flattest_blocks
            try:
                run(paths, out, align)
            finally:
                fusion._quantile = median_quantile

        return measured

    every = bench.available_methods

    def methods() -> dict[str, Any]:
        chosen = {k: v for k, v in every().items() if k in ("pyramid", "pyramid-nf3")}
        for z in (2.0, 3.0, 4.0):
            chosen[f"nf{z:g}-blk"] = blocks(z)
        return chosen

    bench.available_methods = methods
    args = list(sys.argv[1:] if argv is None else argv)
    return int(bench.main(args if "--cases" in args else [*args, "--cases", *CASES]))


if __name__ == "__main__":
    sys.exit(main())
