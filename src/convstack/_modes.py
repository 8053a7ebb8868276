"""The one table of border-mode names and the index rule behind each.

=============  ======================  ===================  ====================
convstack      OpenCV                  numpy.pad            torch (F.pad)
=============  ======================  ===================  ====================
'constant'     BORDER_CONSTANT         'constant'           'constant'
'nearest'      BORDER_REPLICATE        'edge'               'replicate'
'reflect'      BORDER_REFLECT          'symmetric'          (none)
'mirror'       BORDER_REFLECT_101      'reflect'            'reflect'
'wrap'         BORDER_WRAP             'wrap'               'circular'
'mean'         (constant = mean)       'constant'           (none)
=============  ======================  ===================  ====================

'reflect' repeats the edge sample (``cba|abcd|dcb``); 'mirror' does not
(``dcb|abcd|cba``). 'mean' pads with the mean of the image (of each channel).
Names are SciPy's.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

MODES: tuple[str, ...] = ("constant", "nearest", "reflect", "mirror", "wrap", "mean")

#: OpenCV border-type constant names, for tests and docs.
OPENCV_BORDER: dict[str, str] = {
    "constant": "BORDER_CONSTANT",
    "nearest": "BORDER_REPLICATE",
    "reflect": "BORDER_REFLECT",
    "mirror": "BORDER_REFLECT_101",
    "wrap": "BORDER_WRAP",
}

#: numpy.pad mode names.
NUMPY_PAD: dict[str, str] = {
    "constant": "constant",
    "nearest": "edge",
    "reflect": "symmetric",
    "mirror": "reflect",
    "wrap": "wrap",
    "mean": "constant",
}

#: torch.nn.functional.pad mode names (None where torch has no equivalent).
TORCH_PAD: dict[str, str | None] = {
    "constant": "constant",
    "nearest": "replicate",
    "reflect": None,
    "mirror": "reflect",
    "wrap": "circular",
    "mean": None,
}

#: Modes whose padding does not depend on ``cval``.
IGNORES_CVAL: frozenset[str] = frozenset({"nearest", "reflect", "mirror", "wrap", "mean"})


def border_indices(n: int, before: int, after: int, mode: str) -> NDArray[np.intp]:
    """Source index for every position of an axis of length ``n`` padded by (before, after).

    Positions outside the image follow OpenCV's ``borderInterpolate`` (which, for
    pads wider than the image, reflects or wraps again as often as needed, like
    SciPy). Only meaningful for the index-based modes: nearest, reflect, mirror, wrap.
    """
    p = np.arange(-before, n + after, dtype=np.intp)
    if mode == "nearest":
        return np.clip(p, 0, n - 1)
    if mode == "wrap":
        return np.mod(p, n)
    if mode in ("reflect", "mirror"):
        if n == 1:
            return np.zeros_like(p)
        period = 2 * n if mode == "reflect" else 2 * n - 2
        q = np.mod(p, period)
        if mode == "reflect":
            return np.where(q < n, q, period - 1 - q)
        return np.where(q < n, q, period - q)
    raise ValueError(f"`mode` {mode!r} has no index rule.")
