"""Compiled loops of the depth map's step refinement (``stack.depth.snap_depth_steps``).

``step_distance``: a two-pass chamfer distance (steps 1 and sqrt 2) to the nearest
pixel of a depth step. ``snap_rows``: each pixel near a step takes the depth of the
side whose colours it resembles most, measured on the pixels well away from any step.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._jit import kernel

__all__ = ["snap_rows", "step_distance"]


@kernel
def step_distance(depth: Any, step: float, cap: float) -> Any:
    """Chamfer distance of each pixel to the nearest step pixel, at most ``cap``.

    A step pixel is one whose 3 x 3 neighbourhood (clamped at the border) spans
    ``step`` or more in depth.
    """
    rows, cols = depth.shape
    dist = np.full((rows, cols), np.float32(cap))
    for r in range(rows):
        r0, r1 = max(r - 1, 0), min(r + 2, rows)
        for c in range(cols):
            c0, c1 = max(c - 1, 0), min(c + 2, cols)
            low = depth[r, c]
            high = low
            for rr in range(r0, r1):
                for cc in range(c0, c1):
                    value = depth[rr, cc]
                    low = min(low, value)
                    high = max(high, value)
            if high - low >= step:
                dist[r, c] = 0.0
    diagonal = np.float32(math.sqrt(2.0))
    one = np.float32(1.0)
    for r in range(rows):  # forward: from above and the left
        for c in range(cols):
            d = dist[r, c]
            if c > 0:
                d = min(d, dist[r, c - 1] + one)
            if r > 0:
                d = min(d, dist[r - 1, c] + one)
                if c > 0:
                    d = min(d, dist[r - 1, c - 1] + diagonal)
                if c + 1 < cols:
                    d = min(d, dist[r - 1, c + 1] + diagonal)
            dist[r, c] = d
    for r in range(rows - 1, -1, -1):  # backward: from below and the right
        for c in range(cols - 1, -1, -1):
            d = dist[r, c]
            if c + 1 < cols:
                d = min(d, dist[r, c + 1] + one)
            if r + 1 < rows:
                d = min(d, dist[r + 1, c] + one)
                if c > 0:
                    d = min(d, dist[r + 1, c - 1] + diagonal)
                if c + 1 < cols:
                    d = min(d, dist[r + 1, c + 1] + diagonal)
            dist[r, c] = d
    return dist


@kernel(fastmath=True)
def snap_rows(
    depth: Any,
    labels: Any,
    dist: Any,
    image: Any,
    margin: Any,
    other: Any,
    start: int,
    stop: int,
    band: float,
    inner: float,
    radius: int,
    stride: int,
    inv_two_var: float,
    count: int,
) -> None:
    """Rows ``start:stop``: for each pixel nearer than ``band`` to a step, how much
    better its own side explains its colour than the best other side (``margin``) and
    that side's depth (``other``); elsewhere ``margin`` stays as it came (0).

    Sides are the labels of the pixels at ``inner`` or more from every step within
    ``radius`` (sampled every ``stride``); each scores the mean of
    ``exp(-|I(p) - I(q)|^2 * inv_two_var)`` over its pixels, and its depth is their
    weighted mean. A pixel whose own side has no such pixel nearby (a structure
    thinner than the band), or that no other side reaches, gets a margin of 1.
    """
    rows, cols = depth.shape
    channels = image.shape[2]
    weight = np.zeros(count)
    number = np.zeros(count)
    total = np.zeros(count)
    for r in range(start, stop):
        for c in range(cols):
            if dist[r, c] >= band:
                continue
            weight[:] = 0.0
            number[:] = 0.0
            total[:] = 0.0
            for rr in range(max(r - radius, 0), min(r + radius + 1, rows), stride):
                for cc in range(max(c - radius, 0), min(c + radius + 1, cols), stride):
                    if dist[rr, cc] < inner:
                        continue
                    squared = 0.0
                    for k in range(channels):
                        t = image[r, c, k] - image[rr, cc, k]
                        squared += t * t
                    w = math.exp(-squared * inv_two_var)
                    label = labels[rr, cc]
                    weight[label] += w
                    number[label] += 1.0
                    total[label] += w * depth[rr, cc]
            own = labels[r, c]
            best = -1
            score = -1.0
            for k in range(count):
                if k != own and number[k] > 0.0 and weight[k] / number[k] > score:
                    score = weight[k] / number[k]
                    best = k
            if best < 0 or number[own] == 0.0 or weight[best] <= 0.0:
                margin[r, c] = 1.0
            else:
                margin[r, c] = weight[own] / number[own] - score
                other[r, c] = total[best] / weight[best]
