"""Compiled loops of the correlation engine: direct rows and separable rows.

Both kernels read the *unpadded* image, (rows, cols, channels) and C-contiguous, and
take the border from index maps: ``rmap[p]`` / ``cmap[q]`` is the image row / column
that padded row ``p`` / column ``q`` holds, or -1 where it holds the per-channel
``fill``. Output column ``j`` is *interior* when every tap of it reads an image
column straight (``j0 <= j < j1``): those run in tight loops over the flat row
(channels interleaved, so a column shift is a shift by ``channels`` samples); the few
border columns go through ``cmap``. Loop order: output rows, kernel taps, output
columns, so that the innermost loop is contiguous and vectorises; taps go up to eight to
a pass over the output row (one load and store of the accumulator per pass; the first
pass of a row writes it from 0). One-channel images with consecutive column taps (no
column dilation or stride, no fill row under a non-zero weight) take faster passes
instead: a whole 3x3 kernel in one pass over three rows (:func:`_taps3x3`), other sizes
one pass per kernel row whose offsets are constants (:func:`_row_taps`); these add zero
weights too (the footprint rule covers their non-finite samples), and their border
columns come after the rows, as long passes down a column-major block of the padded
samples they read (:func:`_edge_columns`), in the interior's order. Float images are
tested for NaN and infinities one image row at a time, as the rows are first read (the
caller applies the footprint rule when one was met); the one-channel passes test their
output rows instead, just written (they add every tap, zero weights included, so an
output is non-finite exactly when its footprint holds a NaN or an infinity, or its sum
overflowed: a false alarm that only costs the exact rule). The separable rows' column
pass, when every kernel row lies on an image row, is one dense pass of up to eight rows
that adds every tap and tests its sums the same way (:func:`_column_taps`); float
outputs are written in place by the row pass (no scratch row, no copy).
Loops index slices from 0, so numba knows no index is negative (no wraparound test
in the loop). Integers handed to another kernel start as ``np.intp(0)``, never the
literal ``0``: numba types a call with a literal argument (or a counter still typed as
its literal start) as a signature of its own and compiles the callee, and all the
callees below it, once more (on a cold cache that doubled the tap passes' compile time).
The tap passes (:func:`_pass8` .. :func:`_pass1`) are inlined into :func:`_sum_taps` by
numba (``inline="always"``, so ``_sum_taps`` carries their ``contract`` flag) rather than
compiled as kernels of their own: LLVM optimises a kernel's code once alone and again
in every kernel that links it, so four separate passes per dtype cost a first run
about 1 s more (same output bits either way). The callers (``convstack._methods``)
validate every shape and split rows over threads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._jit import kernel

__all__ = ["correlate_rows", "separable_rows"]


@kernel(fastmath={"reassoc"})
def _nonfinite_in(row: Any) -> bool:
    """Whether the 1-D float ``row`` holds a NaN or an infinity: ``sum(v - v)`` is 0
    when every ``v`` is finite, NaN otherwise (``reassoc`` vectorises the sum; without
    ``nnan``/``ninf``, ``v - v`` is not folded to 0)."""
    total = row[0] - row[0]
    for x in range(1, row.size):
        total += row[x] - row[x]
    return total != 0


@kernel(inline="always")
def _check_rows(flat: Any, rmap: Any, p_next: int, p_first: int, p_last: int) -> Any:
    """Check the image rows of padded rows ``max(p_next, p_first) .. p_last`` for a
    non-finite sample; return (found, next padded row to check). Fill rows (-1) are
    the caller's business."""
    p = max(p_next, p_first)
    while p <= p_last:
        r = rmap[p]
        if r >= 0 and _nonfinite_in(flat[r]):
            return True, p_last + 1
        p += 1
    return False, p


@kernel(fastmath={"contract"}, inline="always")
def _pass8(
    dst: Any, src: Any, ws: Any, rs: Any, offs: Any, t: int, lo: int, m: int, init: bool
) -> None:
    """``dst[x] (+)= sum of taps t .. t+7`` in tap order; ``init``: from 0, not ``dst``."""
    w0, s0 = ws[t], src[rs[t], lo + offs[t] : lo + offs[t] + m]
    w1, s1 = ws[t + 1], src[rs[t + 1], lo + offs[t + 1] : lo + offs[t + 1] + m]
    w2, s2 = ws[t + 2], src[rs[t + 2], lo + offs[t + 2] : lo + offs[t + 2] + m]
    w3, s3 = ws[t + 3], src[rs[t + 3], lo + offs[t + 3] : lo + offs[t + 3] + m]
    w4, s4 = ws[t + 4], src[rs[t + 4], lo + offs[t + 4] : lo + offs[t + 4] + m]
    w5, s5 = ws[t + 5], src[rs[t + 5], lo + offs[t + 5] : lo + offs[t + 5] + m]
    w6, s6 = ws[t + 6], src[rs[t + 6], lo + offs[t + 6] : lo + offs[t + 6] + m]
    w7, s7 = ws[t + 7], src[rs[t + 7], lo + offs[t + 7] : lo + offs[t + 7] + m]
    if init:
        zero = dst.dtype.type(0)
        for x in range(m):
            v = zero + w0 * s0[x]  # not folded (no nsz flag): rounds as 0 + w0*s0 did
            v += w1 * s1[x]
            v += w2 * s2[x]
            v += w3 * s3[x]
            v += w4 * s4[x]
            v += w5 * s5[x]
            v += w6 * s6[x]
            dst[x] = v + w7 * s7[x]
    else:
        for x in range(m):
            v = dst[x] + w0 * s0[x]
            v += w1 * s1[x]
            v += w2 * s2[x]
            v += w3 * s3[x]
            v += w4 * s4[x]
            v += w5 * s5[x]
            v += w6 * s6[x]
            dst[x] = v + w7 * s7[x]


@kernel(fastmath={"contract"}, inline="always")
def _pass4(
    dst: Any, src: Any, ws: Any, rs: Any, offs: Any, t: int, lo: int, m: int, init: bool
) -> None:
    """As :func:`_pass8` for taps t .. t+3."""
    w0, s0 = ws[t], src[rs[t], lo + offs[t] : lo + offs[t] + m]
    w1, s1 = ws[t + 1], src[rs[t + 1], lo + offs[t + 1] : lo + offs[t + 1] + m]
    w2, s2 = ws[t + 2], src[rs[t + 2], lo + offs[t + 2] : lo + offs[t + 2] + m]
    w3, s3 = ws[t + 3], src[rs[t + 3], lo + offs[t + 3] : lo + offs[t + 3] + m]
    if init:
        zero = dst.dtype.type(0)
        for x in range(m):
            v = zero + w0 * s0[x]
            v += w1 * s1[x]
            v += w2 * s2[x]
            dst[x] = v + w3 * s3[x]
    else:
        for x in range(m):
            v = dst[x] + w0 * s0[x]
            v += w1 * s1[x]
            v += w2 * s2[x]
            dst[x] = v + w3 * s3[x]


@kernel(fastmath={"contract"}, inline="always")
def _pass2(
    dst: Any, src: Any, ws: Any, rs: Any, offs: Any, t: int, lo: int, m: int, init: bool
) -> None:
    """As :func:`_pass8` for taps t, t+1."""
    w0, s0 = ws[t], src[rs[t], lo + offs[t] : lo + offs[t] + m]
    w1, s1 = ws[t + 1], src[rs[t + 1], lo + offs[t + 1] : lo + offs[t + 1] + m]
    if init:
        zero = dst.dtype.type(0)
        for x in range(m):
            dst[x] = (zero + w0 * s0[x]) + w1 * s1[x]
    else:
        for x in range(m):
            dst[x] = (dst[x] + w0 * s0[x]) + w1 * s1[x]


@kernel(fastmath={"contract"}, inline="always")
def _pass1(
    dst: Any, src: Any, ws: Any, rs: Any, offs: Any, t: int, lo: int, m: int, init: bool
) -> None:
    """As :func:`_pass8` for tap t."""
    w0, s0 = ws[t], src[rs[t], lo + offs[t] : lo + offs[t] + m]
    if init:
        zero = dst.dtype.type(0)
        for x in range(m):
            dst[x] = zero + w0 * s0[x]
    else:
        for x in range(m):
            dst[x] += w0 * s0[x]


@kernel(fastmath={"contract"})
def _sum_taps(
    dst: Any, src: Any, ws: Any, rs: Any, offs: Any, n: int, lo: int, m: int, init: bool
) -> None:
    """``dst[x] += sum_t ws[t] * src[rs[t], lo + offs[t] + x]`` for ``x < m``, ``t < n``
    (with ``init``: ``dst[x] = ...``, as from a zeroed ``dst``; then ``n`` >= 1).

    Up to eight taps per pass over ``dst`` (one load and store of ``dst`` per pass),
    each added in tap order, as a plain loop over the taps would (so a flat image
    under a zero-sum kernel gives exact zeros, as OpenCV's ``filter2D`` does). The
    passes are inlined here, and ``contract`` is theirs (fused multiply-adds).
    """
    t = np.intp(0)  # not the literal 0: see the module notes on literal arguments
    while t < n:
        k = n - t
        first = init and t == 0
        if k >= 8:
            _pass8(dst, src, ws, rs, offs, t, lo, m, first)
            t += 8
        elif k >= 4:
            _pass4(dst, src, ws, rs, offs, t, lo, m, first)
            t += 4
        elif k >= 2:
            _pass2(dst, src, ws, rs, offs, t, lo, m, first)
            t += 2
        else:
            _pass1(dst, src, ws, rs, offs, t, lo, m, first)
            t += 1


@kernel(fastmath={"contract"})
def _row_taps(dst: Any, row: Any, w: Any, m: int, init: bool) -> None:
    """``dst[x] (+)= sum_b w[b] * row[x + b]`` for ``x < m``: the taps of one kernel row
    on consecutive samples of one image row (one channel, no column dilation), in order.

    Eight, five, four, three, two or one taps a pass; the offsets within a pass are
    constants, so each pass addresses one row pointer (the generic passes above keep one
    pointer per tap: 1.1-1.9x the time at 5x5 to 21x21). ``init``: ``dst`` starts from 0
    (the first pass adds to 0 instead of reading ``dst``: no zeroing pass).
    """
    zero = dst.dtype.type(0)
    first = init
    n = w.size
    b = np.intp(0)  # not the literal 0: see the module notes
    while b < n:
        s = row[b:]
        if n - b >= 8:
            w0, w1, w2, w3 = w[b], w[b + 1], w[b + 2], w[b + 3]
            w4, w5, w6, w7 = w[b + 4], w[b + 5], w[b + 6], w[b + 7]
            for x in range(m):
                v = (zero if first else dst[x]) + w0 * s[x]
                v += w1 * s[x + 1]
                v += w2 * s[x + 2]
                v += w3 * s[x + 3]
                v += w4 * s[x + 4]
                v += w5 * s[x + 5]
                v += w6 * s[x + 6]
                dst[x] = v + w7 * s[x + 7]
            b += 8
            first = False
        elif n - b >= 5:
            w0, w1, w2, w3, w4 = w[b], w[b + 1], w[b + 2], w[b + 3], w[b + 4]
            for x in range(m):
                v = (zero if first else dst[x]) + w0 * s[x]
                v += w1 * s[x + 1]
                v += w2 * s[x + 2]
                v += w3 * s[x + 3]
                dst[x] = v + w4 * s[x + 4]
            b += 5
            first = False
        elif n - b == 4:
            w0, w1, w2, w3 = w[b], w[b + 1], w[b + 2], w[b + 3]
            for x in range(m):
                v = (zero if first else dst[x]) + w0 * s[x]
                v += w1 * s[x + 1]
                v += w2 * s[x + 2]
                dst[x] = v + w3 * s[x + 3]
            b += 4
            first = False
        elif n - b == 3:
            w0, w1, w2 = w[b], w[b + 1], w[b + 2]
            for x in range(m):
                dst[x] = (((zero if first else dst[x]) + w0 * s[x]) + w1 * s[x + 1]) + w2 * s[x + 2]
            b += 3
            first = False
        elif n - b == 2:
            w0, w1 = w[b], w[b + 1]
            for x in range(m):
                dst[x] = ((zero if first else dst[x]) + w0 * s[x]) + w1 * s[x + 1]
            b += 2
            first = False
        else:
            w0 = w[b]
            for x in range(m):
                dst[x] = (zero if first else dst[x]) + w0 * s[x]
            b += 1
            first = False
    for x in range(m if first else 0):  # (no taps)
        dst[x] = zero


@kernel(fastmath={"contract"}, inline="always")
def _taps3x3(dst: Any, s0: Any, s1: Any, s2: Any, w: Any, m: int) -> None:
    """``dst[x] = sum_ab w[a, b] * s_a[x + b]`` for ``x < m``: a whole 3x3 kernel in one
    pass over three image rows (one channel), taps in order from 0. One load and FMA
    per tap and one store per output (2.7x faster than a pass per row at 512^2)."""
    w00, w01, w02 = w[0, 0], w[0, 1], w[0, 2]
    w10, w11, w12 = w[1, 0], w[1, 1], w[1, 2]
    w20, w21, w22 = w[2, 0], w[2, 1], w[2, 2]
    zero = dst.dtype.type(0)
    for x in range(m):
        v = zero + w00 * s0[x]
        v += w01 * s0[x + 1]
        v += w02 * s0[x + 2]
        v += w10 * s1[x]
        v += w11 * s1[x + 1]
        v += w12 * s1[x + 2]
        v += w20 * s2[x]
        v += w21 * s2[x + 1]
        dst[x] = v + w22 * s2[x + 2]


@kernel
def _fill_tap(acc: Any, w: Any, fill: Any, n_oc: int, ch: int) -> None:
    """``acc += w * fill`` on every column: a tap that lies on a fill row."""
    for j in range(n_oc):
        for c in range(ch):
            acc[j * ch + c] += w * fill[c]


@kernel
def _strided_columns(
    acc: Any, row: Any, w: Any, ch: int, j0: int, j1: int, stride: int, offset: int
) -> None:
    """``acc[j] += w * row[j * stride + offset]`` for the interior columns (stride > 1)."""
    for j in range(j0, j1):
        s = (j * stride + offset) * ch
        for c in range(ch):
            acc[j * ch + c] += w * row[s + c]


@kernel(fastmath={"contract"})
def _edge_columns(
    res: Any,
    src_flat: Any,
    n_c: int,
    rmap: Any,
    cmap: Any,
    fill: Any,
    weights: Any,
    r0: int,
    r1: int,
    step: int,
    dil: int,
    c_lo: int,
    m: int,
    fast: Any,
) -> bool:
    """Output columns ``c_lo .. c_lo + m`` of the rows ``r0 + t`` with ``fast[t]`` (one
    channel, consecutive column taps): every tap in order from 0, as the interior.
    Returns whether one of those outputs is NaN or infinite.

    The padded samples they read are gathered once into a block stored column-major, so
    that each tap is a long vectorised pass down the rows, instead of one short sum per
    output (latency-bound: 2.2 us a row for the ten border columns of an 11x11 kernel).
    Kernel rows on fill rows add their weights times the fill too: in a fast row those
    weights are 0 (and the fill finite), and adding a zero to a sum that started at +0
    leaves every bit as it is.
    """
    kh, kw = weights.shape
    n = r1 - r0
    if m <= 0 or n <= 0:
        return False
    p_lo = r0 * step
    rows = (n - 1) * step + (kh - 1) * dil + 1
    block = np.empty((m + kw - 1, rows), dtype=fill.dtype)
    for p in range(rows):
        r = rmap[p_lo + p]
        for c in range(m + kw - 1):
            q = cmap[c_lo + c]
            block[c, p] = src_flat[r * n_c + q] if r >= 0 and q >= 0 else fill[0]
    acc = np.zeros((m, n), dtype=fill.dtype)
    for a in range(kh):
        for b in range(kw):
            w = weights[a, b]
            for x in range(m):
                col = block[x + b, a * dil :]
                out = acc[x]
                for t in range(n):
                    out[t] += w * col[t * step]
    bad = False
    for t in range(n):
        if fast[t]:
            for x in range(m):
                v = acc[x, t]
                res[r0 + t, c_lo + x] = v
                bad = bad or v - v != 0
    return bad


@kernel(fastmath={"contract"}, inline="always")
def _kernel_rows(dst: Any, flat: Any, rmap: Any, p0: int, dil: int, weights: Any, m: int) -> None:
    """``dst[x] = sum_ab weights[a, b] * flat[rmap[p0 + a * dil], x + b]`` for ``x < m``,
    over the kernel rows on image rows (``rmap >= 0``), each a pass of :func:`_row_taps`,
    in order, from 0."""
    first = m > 0  # (not the literal True: see the module notes)
    for a in range(weights.shape[0]):
        r = rmap[p0 + a * dil]
        if r >= 0:
            _row_taps(dst, flat[r], weights[a], m, first)
            first = False
    for x in range(m if first else 0):
        dst[x] = 0


@kernel(fastmath={"contract"})
def correlate_rows(
    src: Any,
    out: Any,
    weights: Any,
    rmap: Any,
    cmap: Any,
    fill: Any,
    r0: int,
    r1: int,
    stride: Any,
    dilation: Any,
    before: int,
    j0: int,
    j1: int,
    ws: Any,
    rs: Any,
    offs: Any,
    check: bool,
) -> bool:
    """Output rows ``r0 .. r1`` of the direct correlation of ``src`` with ``weights``.

    ``src`` (rows, cols, ch), ``out`` (out_rows, out_cols, ch) of the float working
    dtype, ``weights`` (kh, kw) of that dtype; ``stride`` and ``dilation`` are
    (rows, cols) pairs; ``before`` is the number of padded columns before the image.
    ``ws``, ``rs`` and ``offs`` are scratch vectors of ``kh * kw`` taps (weights, image
    rows, offsets in samples). Zero weights are skipped (as ``0 * x`` would be, except
    for non-finite ``x``). With ``check`` (float images), every image row that a tap
    of these output rows reads is tested for a NaN or an infinity just before it is
    used (while it is in cache), or, in the one-channel passes, every output row just
    after it is written (see the module notes); the return value says whether one was
    met (the caller then applies the footprint rule, :mod:`convstack._nonfinite`).
    """
    n_r, n_c, ch = src.shape
    n_or, n_oc, _ = out.shape
    kh, kw = weights.shape
    flat = src.reshape(n_r, n_c * ch)
    src_flat = src.reshape(n_r * n_c * ch)
    res = out.reshape(n_or, n_oc * ch)
    lo, m = j0 * ch, (j1 - j0) * ch
    # one channel, stride 1, no column dilation: rows whose kernel rows with a non-zero
    # weight all lie on image rows skip the tap list (``used``: those kernel rows)
    one = stride[1] == 1 and ch == 1 and dilation[1] == 1 and j1 > j0
    used = np.zeros(kh, np.bool_)
    for a in range(kh):
        for b in range(kw):
            used[a] = used[a] or weights[a, b] != 0
    fast_rows = np.zeros(max(r1 - r0, 0), np.bool_)
    found, p_next = False, 0
    for i in range(r0, r1):
        acc = res[i]
        p0 = i * stride[0]
        fast = one
        for a in range(kh if one else 0):
            if used[a] and rmap[p0 + a * dilation[0]] < 0:
                fast = False
        if fast:  # border columns after the rows (_edge_columns), interior here
            fast_rows[i - r0] = True
            dst = acc[j0:j1]  # interior: image column j - j0 + b (j0 == before here)
            r_0 = r_1 = r_2 = np.intp(-1)
            if kh == 3 and kw == 3:
                r_0, r_1, r_2 = rmap[p0], rmap[p0 + dilation[0]], rmap[p0 + 2 * dilation[0]]
            if min(r_0, r_1, r_2) >= 0:
                _taps3x3(dst, flat[r_0], flat[r_1], flat[r_2], weights, j1 - j0)
            else:
                _kernel_rows(dst, flat, rmap, p0, dilation[0], weights, j1 - j0)
            if check and not found:  # every tap added: non-finite output <=> footprint
                found = _nonfinite_in(dst)
            continue
        if check and not found:
            found, p_next = _check_rows(flat, rmap, p_next, p0, p0 + (kh - 1) * dilation[0])
        n, n_fill = np.intp(0), 0
        for a in range(kh):
            r = rmap[i * stride[0] + a * dilation[0]]
            for b in range(kw):
                w = weights[a, b]
                if w == 0:
                    continue
                if r < 0:
                    n_fill += 1
                    continue
                ws[n] = w
                rs[n] = r
                offs[n] = b * dilation[1]  # padded column of output column 0
                n += 1
        # the interior pass starts from 0 itself unless fill rows or strides come first
        init = n_fill == 0 and stride[1] == 1 and n > 0
        if init:
            for x in range(lo):
                acc[x] = 0
            for x in range(lo + m, acc.size):
                acc[x] = 0
        else:
            for x in range(acc.size):
                acc[x] = 0
        for a in range(kh if n_fill else 0):  # taps on fill rows: first, in tap order
            if rmap[i * stride[0] + a * dilation[0]] < 0:
                for b in range(kw):
                    if weights[a, b] != 0:
                        _fill_tap(acc, weights[a, b], fill, n_oc, ch)
        # border columns, through the column map (one channel: a plain scalar loop)
        for e in range(j0 + n_oc - j1):
            j = e if e < j0 else j1 + e - j0
            if ch == 1:
                total = acc[j]
                for t in range(n):
                    s = cmap[j * stride[1] + offs[t]]
                    total += ws[t] * (src_flat[rs[t] * n_c + s] if s >= 0 else fill[0])
                acc[j] = total
                continue
            for t in range(n):
                s = cmap[j * stride[1] + offs[t]]
                for c in range(ch):
                    v = flat[rs[t], s * ch + c] if s >= 0 else fill[c]
                    acc[j * ch + c] += ws[t] * v
        if stride[1] == 1:
            for t in range(n):
                offs[t] = (offs[t] - before) * ch
            _sum_taps(acc[lo : lo + m], flat, ws, rs, offs, n, lo, m, init)
        else:
            for t in range(n):
                _strided_columns(acc, flat[rs[t]], ws[t], ch, j0, j1, stride[1], offs[t] - before)
    if fast_rows.any():  # (both edges: one column range each, maybe empty)
        bad_left = _edge_columns(
            res, src_flat, n_c, rmap, cmap, fill, weights, r0, r1, stride[0], dilation[0],
            np.intp(0), j0, fast_rows,
        )  # fmt: skip
        bad_right = _edge_columns(
            res, src_flat, n_c, rmap, cmap, fill, weights, r0, r1, stride[0], dilation[0],
            j1, n_oc - j1, fast_rows,
        )  # fmt: skip
        found = found or (check and (bad_left or bad_right))
    return found


@kernel(fastmath={"contract"})
def _column_taps(dst: Any, flat: Any, w: Any, rmap: Any, p0: int, dil: int, m: int) -> bool:
    """``dst[x] = sum_a w[a] * flat[rmap[p0 + a * dil], x]`` for ``x < m``: a column pass
    whose every kernel row lies on an image row, each tap added in order from +0, zero
    weights too. Returns whether a sum met a NaN or an infinity (tested as written).

    Eight, five, four, three, two or one rows a pass (a 5-tap column in one pass
    instead of four and one). Adding every tap makes the test exact for the footprint:
    a non-finite sample under any tap, a zero weight included (``0 * inf`` is NaN),
    leaves its column sum non-finite, and a finite sum stays finite unless it
    overflowed (a false alarm that only costs the footprint rule). Adding ``0 * x`` for
    a finite ``x`` changes no bit of a sum that started from +0 (it is never -0).
    """
    zero = dst.dtype.type(0)
    n = w.size
    first = True
    bad = False
    a = np.intp(0)  # not the literal 0: see the module notes
    while a < n:
        k = n - a
        q = rmap[p0 + a * dil :: dil]  # the image rows of kernel rows a, a + 1, ...
        s0 = flat[q[0]]
        if k >= 8:
            s1, s2, s3, s4 = flat[q[1]], flat[q[2]], flat[q[3]], flat[q[4]]
            s5, s6, s7 = flat[q[5]], flat[q[6]], flat[q[7]]
            w0, w1, w2, w3 = w[a], w[a + 1], w[a + 2], w[a + 3]
            w4, w5, w6, w7 = w[a + 4], w[a + 5], w[a + 6], w[a + 7]
            for x in range(m):
                v = (zero if first else dst[x]) + w0 * s0[x]
                v += w1 * s1[x]
                v += w2 * s2[x]
                v += w3 * s3[x]
                v += w4 * s4[x]
                v += w5 * s5[x]
                v += w6 * s6[x]
                v += w7 * s7[x]
                dst[x] = v
                bad |= v - v != 0
            a += 8
        elif k >= 5:
            s1, s2, s3, s4 = flat[q[1]], flat[q[2]], flat[q[3]], flat[q[4]]
            w0, w1, w2, w3, w4 = w[a], w[a + 1], w[a + 2], w[a + 3], w[a + 4]
            for x in range(m):
                v = (zero if first else dst[x]) + w0 * s0[x]
                v += w1 * s1[x]
                v += w2 * s2[x]
                v += w3 * s3[x]
                v += w4 * s4[x]
                dst[x] = v
                bad |= v - v != 0
            a += 5
        elif k == 4:
            s1, s2, s3 = flat[q[1]], flat[q[2]], flat[q[3]]
            w0, w1, w2, w3 = w[a], w[a + 1], w[a + 2], w[a + 3]
            for x in range(m):
                v = (zero if first else dst[x]) + w0 * s0[x]
                v += w1 * s1[x]
                v += w2 * s2[x]
                v += w3 * s3[x]
                dst[x] = v
                bad |= v - v != 0
            a += 4
        elif k == 3:
            s1, s2 = flat[q[1]], flat[q[2]]
            w0, w1, w2 = w[a], w[a + 1], w[a + 2]
            for x in range(m):
                v = (zero if first else dst[x]) + w0 * s0[x]
                v += w1 * s1[x]
                v += w2 * s2[x]
                dst[x] = v
                bad |= v - v != 0
            a += 3
        elif k == 2:
            s1 = flat[q[1]]
            w0, w1 = w[a], w[a + 1]
            for x in range(m):
                v = ((zero if first else dst[x]) + w0 * s0[x]) + w1 * s1[x]
                dst[x] = v
                bad |= v - v != 0
            a += 2
        else:
            w0 = w[a]
            for x in range(m):
                v = (zero if first else dst[x]) + w0 * s0[x]
                dst[x] = v
                bad |= v - v != 0
            a += 1
        first = False
    for x in range(m if first else 0):  # (no taps)
        dst[x] = zero
    return bad


@kernel
def _column_edges(
    mid: Any, col_taps: Any, t: int, fill: Any, cmap: Any, before: int, after: int, ch: int
) -> None:
    """The ``before`` and ``after`` border columns of the column-pass row ``mid`` (one
    call for both: a compiled call costs ~50 ns a row): copies of its interior (a column
    pass commutes with picking columns) or the column pass of the fill."""
    n_pc = cmap.size
    lo = before * ch
    for e in range(before + after):
        q = e if e < before else n_pc - after + e - before
        s = cmap[q]
        for c in range(ch):
            if s >= 0:
                mid[q * ch + c] = mid[lo + s * ch + c]
            else:
                v = 0.0
                for a in range(col_taps.shape[1]):
                    v += col_taps[t, a] * fill[c]
                mid[q * ch + c] = v


@kernel
def _column_pass_u16(
    dst: Any, flat: Any, col16: Any, t: int, rmap: Any, fill: Any, i: int, step: int, dil: int
) -> None:
    """``dst = sum_a col16[t, a] * image_row(i * step + a * dil)`` in uint16 (exact: the
    caller checked that no sum reaches ``2**16``); fill rows hold ``fill`` per channel."""
    m = dst.size
    ch = fill.size
    for x in range(m):
        dst[x] = 0
    for a in range(col16.shape[1]):
        w = col16[t, a]
        if w == 0:
            continue
        r = rmap[i * step + a * dil]
        if r < 0:
            for x in range(m):
                dst[x] = np.uint16(dst[x] + w * np.uint16(fill[x % ch]))
            continue
        row = flat[r]
        for x in range(m):
            dst[x] = np.uint16(dst[x] + w * row[x])


@kernel(fastmath={"contract"})
def separable_rows(
    src: Any,
    out: Any,
    col_taps: Any,
    row_taps: Any,
    rmap: Any,
    cmap: Any,
    fill: Any,
    r0: int,
    r1: int,
    stride: Any,
    dilation: Any,
    before: int,
    mid: Any,
    acc: Any,
    into_out: bool,
    bias: float,
    scale: float,
    ws: Any,
    rs: Any,
    offs: Any,
    col16: Any,
    mid16: Any,
    check: bool,
) -> bool:
    """Output rows ``r0 .. r1`` of ``sum_t correlate(src, outer(col_taps[t], row_taps[t]))``.

    Per output row and rank term: a column pass over ``kh`` image rows into ``mid``
    (one padded row, of the accumulator dtype) whose border columns are then filled
    (:func:`_column_edges`), then a row pass of ``mid`` into the accumulator row.
    With ``into_out``, ``acc`` is ``out`` itself as (out_rows, width), of the
    accumulator dtype, and the row pass writes each output row in place (the float
    filters: no bias, no scale; sums start from +0, so never -0, as ``acc + 0.0``
    would give). Otherwise ``acc`` is one scratch row (1, width) and finally
    ``out = (acc + bias) * scale``, cast to ``out``'s dtype: a rounding offset and a
    power of two for the exact integer path (whose sums are
    exact integers, so that the cast's truncation is the floor). ``ws``, ``rs`` and
    ``offs`` are scratch vectors of ``max(kh, kw)`` taps. When ``mid16`` is not empty
    (uint8 images with integer column taps whose column sums stay below ``2**16``: the
    exact uint8 Gaussian), the column pass runs in uint16 lanes (twice as many per
    vector, no conversion per tap) with the taps ``col16``, and is converted once.
    ``check``: as for :func:`correlate_rows`, the image rows read are tested for a
    non-finite sample as they are first used; the return value says whether one was.
    """
    n_r, n_c, ch = src.shape
    n_or, n_oc, _ = out.shape
    n_terms, kh = col_taps.shape
    kw = row_taps.shape[1]
    n_pc = cmap.shape[0]
    flat = src.reshape(n_r, n_c * ch)
    res = out.reshape(n_or, n_oc * ch)
    rows = mid.reshape(1, mid.size)
    width = n_oc * ch
    lo, hi = before * ch, (before + n_c) * ch
    found, p_next = False, 0
    zero = np.intp(0)
    for i in range(r0, r1):
        p0 = i * stride[0]
        # every kernel row on an image row: the dense column pass, which tests its sums
        dense = mid16.size == 0
        for a in range(kh if dense else 0):
            dense = dense and rmap[p0 + a * dilation[0]] >= 0
        if check and not found and not dense:
            found, p_next = _check_rows(flat, rmap, p_next, p0, p0 + (kh - 1) * dilation[0])
        acc_row = acc[i if into_out else 0]
        for t in range(n_terms):
            inner = mid[lo:hi]
            n, n_fill = np.intp(0), 0
            if mid16.size:
                _column_pass_u16(mid16, flat, col16, t, rmap, fill, i, stride[0], dilation[0])
                for x in range(hi - lo):
                    inner[x] = mid16[x]
            elif dense:  # (every tap: the first term's test covers the footprint)
                bad = _column_taps(inner, flat, col_taps[t], rmap, p0, dilation[0], hi - lo)
                found = found or (check and t == 0 and bad)
            else:
                for a in range(kh):
                    w = col_taps[t, a]
                    if w == 0:
                        continue
                    r = rmap[i * stride[0] + a * dilation[0]]
                    if r < 0:
                        n_fill += 1
                        continue
                    ws[n] = w
                    rs[n] = r
                    offs[n] = 0
                    n += 1
                if n_fill or n == 0:  # fill rows first, in tap order, from 0
                    for x in range(hi - lo):
                        inner[x] = 0
                    for a in range(kh if n_fill else 0):
                        if col_taps[t, a] != 0 and rmap[i * stride[0] + a * dilation[0]] < 0:
                            _fill_tap(inner, col_taps[t, a], fill, n_c, ch)
                # (only here: a call with no taps costs ~100 ns a row, 10 % of a 5x5 row)
                _sum_taps(inner, flat, ws, rs, offs, n, zero, hi - lo, n_fill == 0 and n > 0)
            _column_edges(mid, col_taps, t, fill, cmap, before, n_pc - before - n_c, ch)
            n = np.intp(0)
            for b in range(kw):
                if row_taps[t, b] != 0:
                    n += 1
            init = t == 0 and stride[1] == 1 and n > 0  # the row pass starts from 0 itself
            if t == 0 and not init:
                for x in range(width):
                    acc_row[x] = 0
            if stride[1] == 1 and ch == 1 and dilation[1] == 1 and n > 0:
                _row_taps(acc_row, mid, row_taps[t], width, init)  # consecutive taps: one row
                continue
            n = np.intp(0)
            for b in range(kw):
                w = row_taps[t, b]
                if w == 0:
                    continue
                if stride[1] == 1:
                    ws[n] = w
                    rs[n] = 0
                    offs[n] = b * dilation[1] * ch
                    n += 1
                else:
                    _strided_columns(acc_row, mid, w, ch, zero, n_oc, stride[1], b * dilation[1])
            _sum_taps(acc_row, rows, ws, rs, offs, n, zero, width, init)
        if not into_out:
            row_out = res[i]
            for x in range(width):
                row_out[x] = (acc_row[x] + bias) * scale
    return found
