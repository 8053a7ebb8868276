"""Compiled loops of ``bilateral``: OpenCV's weighted window average, one offset at a time.

Each kernel fills the output rows ``start:stop``; the offsets of the window are visited
in turn, and each updates running sums of weights and weighted samples in loops along
the rows that the compiler vectorises. uint8 (``bilateral_u8_rows``): flat channel
planes, one weight per pair of opposite offsets, the colour weight computed in the loop
(``_exp2``). Float (``bilateral_float_rows``): OpenCV's interpolated colour table, its
two entries around each sample computed (``_table_weight``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._jit import kernel

__all__ = [
    "EXP2_POLY",
    "bilateral_float_offsets",
    "bilateral_float_rows",
    "bilateral_u8_rows",
]


@kernel(fastmath={"contract"})
def _exp2(e: Any, poly: Any, magic: Any) -> Any:
    """``2**e`` in float32 for ``e <= 0``; ``2**-126`` for ``e`` below -126.

    ``2**e = 2**n * 2**f`` with ``n`` the integer nearest ``e`` and ``|f| <= 1/2``:
    ``t = e + magic`` (``magic = 1.5 * 2**23 + 127``) rounds, and leaves ``n + 127`` in
    the low bits of ``t``, which shifted into the exponent field are the float32
    ``2**n`` (np.floor runs a libm call, which keeps a loop scalar); ``2**f`` by Cephes'
    polynomial (relative error below 2e-7).
    """
    e = max(e, np.float32(-126.0))
    t = e + magic
    f = e - (t - magic)
    q = poly[0] * f + poly[1]
    q = q * f + poly[2]
    q = q * f + poly[3]
    q = q * f + poly[4]
    q = q * f + poly[5]
    scale = np.int32(np.float32(t).view(np.int32) << 23).view(np.float32)
    return (np.float32(1.0) + f * q) * scale


#: Cephes' ``exp2f`` polynomial: ``2**f ~ 1 + f * P(f)`` for ``|f| <= 1/2``, highest first.
EXP2_POLY = np.array(
    [
        1.535336188319500e-4,
        1.339887440266574e-3,
        9.618437357674640e-3,
        5.550332471162809e-2,
        2.402264791363012e-1,
        6.931472028550421e-1,
    ],
    dtype=np.float32,
)


@kernel(error_model="numpy", fastmath={"contract"})
def _pair_weights(
    flt: Any, reach: int, o: int, log2_space: Any, coeff: Any, poly: Any, magic: Any, weight: Any
) -> None:
    """``weight[t] = 2**(log2_space - coeff * D**2)`` of the pairs ``(q, q + o)``.

    ``flt`` (channels, n + 2 ``reach``) holds the samples from ``reach`` before the
    first anchor on; the anchors are ``q = reach - o + t`` for ``t < n + o``, and ``D``
    is the L1 distance over the channels.
    """
    cn = flt.shape[0]
    m = flt.shape[1] - 2 * reach + o
    if cn == 1:
        lo0, hi0 = flt[0, reach - o :], flt[0, reach:]
        for t in range(m):
            d = abs(lo0[t] - hi0[t])
            weight[t] = _exp2(log2_space - d * d * coeff, poly, magic)
    elif cn == 3:
        lo0, hi0 = flt[0, reach - o :], flt[0, reach:]
        lo1, hi1 = flt[1, reach - o :], flt[1, reach:]
        lo2, hi2 = flt[2, reach - o :], flt[2, reach:]
        for t in range(m):
            d = abs(lo0[t] - hi0[t]) + abs(lo1[t] - hi1[t]) + abs(lo2[t] - hi2[t])
            weight[t] = _exp2(log2_space - d * d * coeff, poly, magic)
    else:
        for t in range(m):
            weight[t] = 0
        for ch in range(cn):
            lo, hi = flt[ch, reach - o :], flt[ch, reach:]
            for t in range(m):
                weight[t] += abs(lo[t] - hi[t])
        for t in range(m):
            d = weight[t]
            weight[t] = _exp2(log2_space - d * d * coeff, poly, magic)


@kernel(error_model="numpy", fastmath={"contract"})
def _add_pair(planes: Any, base: int, o: int, weight: Any, wsum: Any, acc: Any) -> None:
    """Add the pairs ``(p, p + o)`` and ``(p - o, p)`` (weights from ``_pair_weights``)
    to the sums of the outputs ``p = base + t``."""
    n = wsum.shape[0]
    ahead = weight[o:]  # p sees p + o: the pair anchored at p
    for t in range(n):
        wsum[t] += ahead[t] + weight[t]  # and p sees p - o: anchored at p - o
    for ch in range(planes.shape[0]):
        xa, xb = planes[ch, base + o :], planes[ch, base - o :]
        a = acc[ch]
        for t in range(n):
            a[t] = (a[t] + ahead[t] * np.float32(xa[t])) + weight[t] * np.float32(xb[t])


@kernel(error_model="numpy", fastmath={"contract"})
def _add_two_pairs(
    planes: Any, base: int, o: int, u: int, wo: Any, wu: Any, wsum: Any, acc: Any
) -> None:
    """``_add_pair`` for offsets ``o`` and ``u`` in one pass over the sums (gray or colour).

    The sums' loop is bound by memory (a float32 sum read and written per channel,
    per offset): two offsets a pass halve that traffic.
    """
    n = wsum.shape[0]
    oa, ua = wo[o:], wu[u:]
    xa0, xb0 = planes[0, base + o :], planes[0, base - o :]
    ya0, yb0 = planes[0, base + u :], planes[0, base - u :]
    a0 = acc[0]
    if planes.shape[0] == 1:
        for t in range(n):
            wa, wb, va, vb = oa[t], wo[t], ua[t], wu[t]
            wsum[t] += (wa + wb) + (va + vb)
            r = (a0[t] + wa * np.float32(xa0[t])) + wb * np.float32(xb0[t])
            a0[t] = (r + va * np.float32(ya0[t])) + vb * np.float32(yb0[t])
        return
    xa1, xb1 = planes[1, base + o :], planes[1, base - o :]
    ya1, yb1 = planes[1, base + u :], planes[1, base - u :]
    xa2, xb2 = planes[2, base + o :], planes[2, base - o :]
    ya2, yb2 = planes[2, base + u :], planes[2, base - u :]
    a1, a2 = acc[1], acc[2]
    for t in range(n):
        wa, wb, va, vb = oa[t], wo[t], ua[t], wu[t]
        wsum[t] += (wa + wb) + (va + vb)
        r = (a0[t] + wa * np.float32(xa0[t])) + wb * np.float32(xb0[t])
        a0[t] = (r + va * np.float32(ya0[t])) + vb * np.float32(yb0[t])
        r = (a1[t] + wa * np.float32(xa1[t])) + wb * np.float32(xb1[t])
        a1[t] = (r + va * np.float32(ya1[t])) + vb * np.float32(yb1[t])
        r = (a2[t] + wa * np.float32(xa2[t])) + wb * np.float32(xb2[t])
        a2[t] = (r + va * np.float32(ya2[t])) + vb * np.float32(yb2[t])


@kernel(fastmath={"contract"})
def _table_weight(alpha: Any, inv_scale: Any, log2_coeff: Any, magic: Any, poly: Any) -> Any:
    """OpenCV's float colour weight: its table linearly interpolated at ``alpha``.

    The table's entries, ``float32(exp(coeff * (i * inv_scale)**2))``, are computed at
    ``i = floor(alpha)`` and ``i + 1`` (``2**(log2_coeff * v**2)`` by ``_exp2``), not
    looked up: a table lookup, a gather, keeps the loop scalar. ``magic`` (1.5 times
    2**23 or 2**52, in the working dtype) rounds; ``log2_coeff`` is finite.
    """
    unit = magic / magic
    # floor(alpha) in the working dtype: round by the magic number, step down where
    # that went up (np.floor runs a libm call)
    whole = (alpha + magic) - magic
    whole = whole if whole <= alpha else whole - unit
    v0 = whole * inv_scale
    v1 = v0 + inv_scale
    magic_exp = np.float32(12582912.0 + 127.0)
    c0 = _exp2(np.float32(log2_coeff * v0 * v0), poly, magic_exp)
    c1 = _exp2(np.float32(log2_coeff * v1 * v1), poly, magic_exp)
    return c0 + (alpha - whole) * (c1 - c0)


@kernel(error_model="numpy", fastmath={"contract"})
def _strip_planes(
    image: Any, cn: int, first: int, rowmap: Any, colmap: Any, fill: Any, planes: Any
) -> None:
    """Padded rows ``first``, ... of ``image`` (rows, cols * ``cn``) as flat channel planes.

    ``rowmap`` and ``colmap`` give the image row / column of each padded row / column
    (the border rule), -1 where the border is the constant ``fill[channel]``. ``planes``
    (cn, k * padded width) receives ``k`` padded rows.
    """
    wp = colmap.shape[0]
    cols = image.shape[1] // cn
    left = (wp - cols) // 2  # the pads' width
    for r in range(planes.shape[1] // wp):
        source = rowmap[first + r]
        at = r * wp
        for ch in range(cn):
            line = planes[ch, at : at + wp]
            if source < 0:
                for c in range(wp):
                    line[c] = fill[ch]
                continue
            row = image[source, ch:]
            for c in range(left):
                line[c] = row[colmap[c] * cn] if colmap[c] >= 0 else fill[ch]
            for c in range(left + cols, wp):
                line[c] = row[colmap[c] * cn] if colmap[c] >= 0 else fill[ch]
            inner = line[left:]
            if cn == 1:
                for j in range(cols):
                    inner[j] = row[j]
            elif cn == 3:
                for j in range(cols):
                    inner[j] = row[3 * j]
            else:
                for j in range(cols):
                    inner[j] = row[j * cn]


@kernel(error_model="numpy", fastmath={"contract"})
def bilateral_u8_rows(
    image: Any,
    out: Any,
    start: int,
    stop: int,
    radius: int,
    rowmap: Any,
    colmap: Any,
    fill: Any,
    shifts: Any,
    log2_space: Any,
    color_coeff: float,
    poly: Any,
) -> None:
    """OpenCV's 8-bit bilateral: ``w = space(o) * exp(coeff * D**2)``, ``D = sum_c |dx_c|``.

    ``image`` is (rows, cols * channels), ``out`` likewise; the image padded by
    ``radius`` (``rowmap``, ``colmap``, ``fill``: see ``_strip_planes``) is laid out
    as flat channel planes of padded rows of ``wp`` pixels, so that an offset ``o`` is
    a shift by ``shifts[k]`` samples (the longest last: ``radius`` rows, ``radius *
    wp``). Only one offset of each pair ``+-o`` is listed: the weight of ``p + o`` seen
    from ``p`` is that of ``p`` seen from ``p + o``, so one weight serves both.
    Outputs are computed over whole padded rows (the border columns, whose windows
    straddle two rows, are dropped); the centre has weight 1. Sums in float32, then
    ``sum / wsum`` (gray) or ``sum * (1 / wsum)`` (colour), rounded to nearest as
    ``cvRound``.

    The strip lays out the padded rows it reads, ``start`` to ``stop + 2 radius``, in
    uint8 and float32. The weight is ``2**(log2_space[k] - color_coeff * D**2)``,
    computed in the loop by ``_exp2`` (a table lookup per pixel, a gather, keeps the
    loop scalar). That loop is bound by arithmetic and reads the float32 planes; the
    sums' loop, bound by memory, reads the uint8 planes, two offsets a pass (gray and
    colour). Exponents below -126 give ``2**-126``, which adds nothing next to the
    centre's weight 1.
    """
    wp = colmap.shape[0]
    cn = fill.shape[0]
    cols = out.shape[1] // cn
    h = stop - start
    n = h * wp
    pairs = shifts.shape[0]
    reach = radius * wp  # shifts[-1]: the offset (radius, 0)
    planes = np.empty((cn, n + 2 * reach), dtype=np.uint8)
    flt = np.empty((cn, n + 2 * reach), dtype=np.float32)
    wsum = np.empty(n, dtype=np.float32)
    acc = np.empty((cn, n), dtype=np.float32)
    weights = np.empty((2, n + reach), dtype=np.float32)
    coeff = np.float32(color_coeff)
    magic = np.float32(12582912.0)  # 1.5 * 2**23: x + magic - magic rounds, ties to even
    magic_exp = np.float32(12582912.0 + 127.0)
    _strip_planes(image, cn, start, rowmap, colmap, fill, planes)
    for t in range(n):
        wsum[t] = 1
    for ch in range(cn):
        p, f = planes[ch], flt[ch]
        for t in range(n + 2 * reach):
            f[t] = p[t]
        a = acc[ch]
        f = flt[ch, reach:]
        for t in range(n):
            a[t] = f[t]
    step = 2 if cn == 1 or cn == 3 else 1
    for k in range(0, pairs, step):
        if k + 1 < pairs and step == 2:
            o, u = shifts[k], shifts[k + 1]
            _pair_weights(flt, reach, o, log2_space[k], coeff, poly, magic_exp, weights[0])
            _pair_weights(flt, reach, u, log2_space[k + 1], coeff, poly, magic_exp, weights[1])
            _add_two_pairs(planes, reach, o, u, weights[0], weights[1], wsum, acc)
        else:
            o = shifts[k]
            _pair_weights(flt, reach, o, log2_space[k], coeff, poly, magic_exp, weights[0])
            _add_pair(planes, reach, o, weights[0], wsum, acc)
    for i in range(h):
        dst = out[start + i]
        row = i * wp + radius
        w = wsum[row:]
        if cn == 1:
            a = acc[0, row:]
            for j in range(cols):
                dst[j] = (a[j] / w[j] + magic) - magic
        elif cn == 3:
            a0, a1, a2 = acc[0, row:], acc[1, row:], acc[2, row:]
            for j in range(cols):
                r = np.float32(1) / w[j]
                dst[3 * j] = (a0[j] * r + magic) - magic
                dst[3 * j + 1] = (a1[j] * r + magic) - magic
                dst[3 * j + 2] = (a2[j] * r + magic) - magic
        else:
            for j in range(cols):
                w[j] = np.float32(1) / w[j]
            for ch in range(cn):
                a = acc[ch, row:]
                for j in range(cols):
                    dst[j * cn + ch] = (a[j] * w[j] + magic) - magic


@kernel(error_model="numpy", fastmath={"contract"})
def bilateral_float_rows(
    image: Any,
    out: Any,
    start: int,
    stop: int,
    radius: int,
    rowmap: Any,
    colmap: Any,
    fill: Any,
    shifts: Any,
    space: Any,
    scale_index: Any,
    inv_scale: Any,
    log2_coeff: Any,
    magic: Any,
    poly: Any,
) -> None:
    """OpenCV's float bilateral: the colour weight interpolated in a table.

    ``alpha = sum_c |x_c(q) - x_c(p)| * scale_index``; the weight is ``space[k] *
    (color[i] + (alpha - i) * (color[i + 1] - color[i]))`` with ``i = floor(alpha)``,
    the table's entries computed (``_table_weight``). Laid out as ``bilateral_u8_rows``
    (the strip's padded rows as flat channel planes, one weight per pair of opposite
    offsets, ``shifts``, centre excluded; whole padded rows of outputs); the sums start
    at weight 1 and the centre's value. ``image``, ``out``, ``space``, ``scale_index``,
    ``inv_scale``, ``log2_coeff`` and ``magic`` (1.5 times 2**23 or 2**52, a rounding
    constant) have the working float dtype (float32 or float64).
    """
    wp = colmap.shape[0]
    cn = fill.shape[0]
    cols = out.shape[1] // cn
    h = stop - start
    n = h * wp
    base = radius * wp  # shifts[-1], the offset (radius, 0): the strip's first output
    planes = np.empty((cn, n + 2 * base), dtype=out.dtype)
    _strip_planes(image, cn, start, rowmap, colmap, fill, planes)
    longest = n + shifts[shifts.shape[0] - 1] if shifts.shape[0] else n
    wsum = np.empty(n, dtype=out.dtype)
    acc = np.empty((cn, n), dtype=out.dtype)
    weight = np.empty(longest, dtype=out.dtype)
    for t in range(n):
        wsum[t] = 1
    for ch in range(cn):
        x = planes[ch, base:]
        a = acc[ch]
        for t in range(n):
            a[t] = x[t]
    for k in range(shifts.shape[0]):
        o = shifts[k]
        m = n + o
        sw = space[k]
        # anchors q = base - o + t, t < n + o: the pairs (q, q + o)
        for t in range(m):
            weight[t] = 0
        for ch in range(cn):
            lo, hi = planes[ch, base - o :], planes[ch, base:]
            for t in range(m):
                weight[t] += abs(lo[t] - hi[t])
        for t in range(m):
            alpha = weight[t] * scale_index
            weight[t] = _table_weight(alpha, inv_scale, log2_coeff, magic, poly) * sw
        ahead = weight[o:]  # p sees p + o: the pair anchored at p
        for t in range(n):
            wsum[t] += ahead[t] + weight[t]  # and p sees p - o: anchored at p - o
        for ch in range(cn):
            x_ahead = planes[ch, base + o :]
            x_behind = planes[ch, base - o :]
            a = acc[ch]
            for t in range(n):
                a[t] += ahead[t] * x_ahead[t] + weight[t] * x_behind[t]
    for i in range(h):
        dst = out[start + i]
        row = i * wp + radius
        w = wsum[row:]
        for ch in range(cn):
            a = acc[ch, row:]
            for j in range(cols):
                dst[j * cn + ch] = a[j] / w[j]


@kernel(error_model="numpy", fastmath={"contract"})
def bilateral_float_offsets(
    padded: Any,
    out: Any,
    start: int,
    stop: int,
    radius: int,
    cn: int,
    rows_off: Any,
    cols_off: Any,
    space: Any,
    scale_index: Any,
    inv_scale: Any,
    log2_coeff: Any,
    magic: Any,
    poly: Any,
) -> None:
    """``bilateral_float_rows`` one offset at a time, for windows wider than the image.

    ``padded`` is (rows, cols * cn), the image padded by ``radius``. Each offset of
    ``rows_off``, ``cols_off`` (OpenCV's order) updates the sums of one output row: no
    sharing between opposite offsets, but no work on the padding either, which the flat
    layout of ``bilateral_float_rows`` does (4001 on a 40x50 image: 20 s there, 5 here).
    The centre is not among the offsets: the sums start at weight 1 and the centre's
    value. ``out`` and the sums have the working float dtype (float32 or float64), as
    have ``scale_index``, ``inv_scale``, ``log2_coeff`` and ``magic``.
    """
    width = out.shape[1]
    cols = width // cn
    wsum = np.empty(cols, dtype=out.dtype)
    for i in range(start, stop):
        centre = padded[i + radius, radius * cn :]
        dst = out[i]
        for j in range(cols):
            wsum[j] = 1
        for j in range(width):
            dst[j] = centre[j]
        for k in range(space.shape[0]):
            nb = padded[i + radius + rows_off[k], (radius + cols_off[k]) * cn :]
            sw = space[k]
            for j in range(cols):
                d = abs(nb[j * cn] - centre[j * cn])
                for c in range(1, cn):
                    d += abs(nb[j * cn + c] - centre[j * cn + c])
                w = _table_weight(d * scale_index, inv_scale, log2_coeff, magic, poly) * sw
                wsum[j] += w
                for c in range(cn):
                    dst[j * cn + c] += w * nb[j * cn + c]
        for j in range(cols):
            for c in range(cn):
                dst[j * cn + c] /= wsum[j]
