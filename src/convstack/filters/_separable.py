"""Separable filtering on a pre-padded channel-last image, through the engine.

A colour image (rows, cols, C) is viewed as (rows, cols * C); the row pass then
uses ``dilation=C`` so that each channel only meets itself, with no transposes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._modes import border_indices
from ..convolve import correlate
from ._dtype import pad_image, strips

__all__ = ["filter_float", "separable_strips", "separable_valid", "strip_source"]


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


def strip_source(
    array: NDArray[Any],
    row_pads: tuple[int, int],
    col_pads: tuple[int, int],
    mode: str,
    dtype: Any,
) -> tuple[Any, Any, int, slice]:
    """Border handling for strip filters without a padded copy of the image.

    Returns ``load(start, stop)``, the rows ``start - before .. stop + after``
    of the image as ``(rows, cols, channels)`` in ``dtype`` (a view when they
    are inside the image and need no conversion), ``fill_border(buf, zero)``,
    which fills the border columns of a ``(rows, padded_cols, channels)`` strip
    buffer from its interior columns ``inner`` (a column-wise pass commutes
    with picking columns; ``zero`` is what a constant border holds by then),
    ``padded_cols`` and ``inner``. Mode 'mean' has no index rule: the image is
    padded once and the border columns come with the rows.
    """
    channels = array.shape[2] if array.ndim == 3 else 1
    rows, cols = array.shape[0], array.shape[1]
    (rb, ra), (cb, ca) = row_pads, col_pads
    padded_cols = cols + cb + ca
    if mode == "mean":
        padded = pad_image(array, (rb, cb), (ra, ca), mode)
        src = padded.reshape(rows + rb + ra, padded_cols, channels)
        row_index: NDArray[np.intp] | None = None
        inner = slice(0, padded_cols)
    else:
        src = array.reshape(rows, cols, channels)
        if mode == "constant":
            row_index = np.arange(-rb, rows + ra, dtype=np.intp)
            row_index[(row_index < 0) | (row_index >= rows)] = -1
        else:
            row_index = border_indices(rows, rb, ra, mode)
            col_index = border_indices(cols, cb, ca, mode) + cb
        inner = slice(cb, cb + cols)

    def load(start: int, stop: int) -> NDArray[Any]:
        if row_index is None:
            block = src[start : stop + rb + ra]
        elif start - rb >= 0 and stop + ra <= rows:
            block = src[start - rb : stop + ra]
        else:
            index = row_index[start : stop + rb + ra]
            valid = index >= 0
            block = src[np.where(valid, index, 0)].astype(dtype, copy=False)
            if not valid.all():
                block[~valid] = 0
        return block.astype(dtype, copy=False)

    def fill_border(buf: NDArray[Any], zero: Any) -> None:
        if row_index is None:
            return
        if mode == "constant":
            buf[:, :cb] = zero
            buf[:, cb + cols :] = zero
            return
        if cb:
            buf[:, :cb] = buf[:, col_index[:cb]]
        if ca:
            buf[:, cb + cols :] = buf[:, col_index[cb + cols :]]

    return load, fill_border, padded_cols, inner


def _tap_pass(get: Any, taps: list[Any], dst: NDArray[Any], tmp: NDArray[Any]) -> None:
    """``dst = sum(taps[i] * get(i))``, mirrored taps paired where they allow it.

    Equal mirrored taps (smoothing) cost an add and a multiply, opposite ones
    (derivatives) a subtract and a multiply; a multiply by 1 is skipped. All
    arrays and taps share ``dst``'s float dtype (same-type SIMD loops); adds
    into ``dst`` go through a contiguous accumulator when ``dst`` is a strided
    view (NumPy runs in-place adds on those through a buffered loop at half
    speed).
    """
    n = len(taps)
    c = n // 2
    steps: list[tuple[int, int, Any]] = []  # (i, j, tap): tap * (get(i) +- get(j))
    for i in range(c):
        a, b = taps[i], taps[n - 1 - i]
        if a == b and a != 0:
            steps.append((i, n - 1 - i, a))
        elif a == -b and a != 0:
            steps.append((n - 1 - i, -i - 1, b))  # b * (get(n-1-i) - get(i))
        else:
            steps.extend((k, -1 - n, taps[k]) for k in (i, n - 1 - i) if taps[k] != 0)
    acc = dst if dst.flags.c_contiguous or not steps else np.empty(dst.shape, dst.dtype)
    if taps[c] == 0:
        acc.fill(0)
    elif taps[c] == 1:
        np.copyto(acc, get(c))
    else:
        np.multiply(get(c), taps[c], out=acc)
    for k, (i, j, tap) in enumerate(steps):
        if j >= 0:
            np.add(get(i), get(j), out=tmp)
        elif j >= -n:
            np.subtract(get(i), get(-j - 1), out=tmp)
        if j < -n:  # a lone tap
            np.multiply(get(i), tap, out=tmp)
        elif tap != 1:
            tmp *= tap
        np.add(acc, tmp, out=dst if k == len(steps) - 1 else acc)


def separable_strips(
    array: NDArray[Any],
    terms: list[tuple[NDArray[Any], NDArray[Any]]],
    mode: str,
    dtype: Any,
) -> NDArray[Any]:
    """``sum(correlate(array, outer(ky, kx)) for kx, ky in terms)`` in ``dtype`` row strips.

    Every 1-D kernel has odd length and its anchor in the middle. For each
    term: columns first, straight from the image's rows (a view for inner
    strips when no conversion is needed, no padded copy of the image), into a
    strip buffer with room for the horizontal border, which is then filled
    from the buffer itself; then rows, on the interleaved channel-last rows
    (a horizontal tap is a shift by the channel count), into the output.
    """
    dtype = np.dtype(dtype)
    channels = array.shape[2] if array.ndim == 3 else 1
    rows, cols = array.shape[0], array.shape[1]
    rx = max(kx.size // 2 for kx, _ in terms)
    ry = max(ky.size // 2 for _, ky in terms)
    load, fill_border, padded_cols, inner = strip_source(array, (ry, ry), (rx, rx), mode, dtype)
    width = cols * channels
    out = np.empty((rows, width), dtype=dtype)
    taps = [
        (
            [dtype.type(t) for t in kx],
            [dtype.type(t) for t in ky],
            rx - kx.size // 2,
            ry - ky.size // 2,
        )
        for kx, ky in terms
    ]

    def work(start: int, stop: int) -> None:
        h = stop - start
        block = load(start, stop)
        vp = np.empty((h, padded_cols, channels), dtype=dtype)
        target = vp[:, inner]
        flat = vp.reshape(h, -1)
        dst = out[start:stop]
        scratch = np.empty((h, width), dtype) if len(terms) > 1 else dst
        for k, (tx, ty, ox, oy) in enumerate(taps):
            _tap_pass(
                lambda j, oy=oy: block[oy + j : oy + j + h],
                ty,
                target,
                np.empty(target.shape, dtype),
            )
            fill_border(vp, 0)
            into = dst if k == 0 else scratch
            _tap_pass(
                lambda i, ox=ox: flat[:, (ox + i) * channels : (ox + i) * channels + width],
                tx,
                into,
                np.empty((h, width), dtype),
            )
            if k:
                dst += scratch

    strips(rows, width * dtype.itemsize * 5, work, target=1 << 20)
    return out.reshape(array.shape)
