"""Separable filtering on a pre-padded channel-last image, through the engine.

A colour image (rows, cols, C) is viewed as (rows, cols * C); the row pass then
uses ``dilation=C`` so that each channel only meets itself, with no transposes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..convolve import correlate

__all__ = ["filter_float", "separable_valid"]


def filter_float(
    image: NDArray[Any], kernel: NDArray[Any], mode: str, *, method: str = "separable"
) -> NDArray[Any]:
    """Correlate a float channel-last image with a 2-D kernel through the engine.

    The engine pads strip by strip and splits a rank-1 kernel into two 1-D
    passes itself, so nothing image-sized is built here.
    """
    channel_axis = 2 if image.ndim == 3 else None
    return correlate(image, kernel, mode=mode, channel_axis=channel_axis, method=method)


def separable_valid(
    padded: NDArray[Any],
    row_kernel: NDArray[Any] | None,
    col_kernel: NDArray[Any] | None,
) -> NDArray[Any]:
    """Valid correlation of ``padded`` (rows, cols[, C]) with ``col_kernel`` ⊗ ``row_kernel``.

    ``row_kernel`` runs along each row (across columns), ``col_kernel`` down each
    column. The result has the engine's float dtype and the padded shape minus
    the kernel spans. ``method="direct"`` keeps integer-valued sums exact (the
    bit-exact integer Gaussians rely on it); FFT rounding would not.
    """
    channels = padded.shape[2] if padded.ndim == 3 else 1
    flat = padded.reshape(padded.shape[0], -1)
    out = flat
    if row_kernel is not None and row_kernel.size > 1:
        out = correlate(
            out, row_kernel[None, :], padding="valid", dilation=(1, channels), method="direct"
        )
    if col_kernel is not None and col_kernel.size > 1:
        out = correlate(out, col_kernel[:, None], padding="valid", method="direct")
    if out is flat:
        out = correlate(out, np.ones((1, 1)), padding="valid", method="direct")
    for k in (row_kernel, col_kernel):  # single taps that are not 1 (e.g. fixed-point one)
        if k is not None and k.size == 1 and k.item() != 1:
            out = out * k.item()
    cols = out.shape[1] // channels
    return out.reshape((out.shape[0], cols, channels) if padded.ndim == 3 else out.shape)
