"""Linear smoothing: box (mean) blur, Gaussian blur and unsharp masking, as OpenCV."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _validate as v
from .. import kernels
from .._modes import border_indices
from .._nonfinite import has_nonfinite, run_filter
from ..limits import check_memory
from ._dtype import check_image, check_mode, pad_image, saturate, strips
from ._separable import separable_filter, strip_source

__all__ = ["box_blur", "gaussian_blur", "unsharp_mask"]


# ----------------------------------------------------------------------------- box


def _window_sum(
    a: NDArray[Any], k: int, axis: int, out: NDArray[Any] | None = None
) -> NDArray[Any]:
    """Sums of ``k`` consecutive samples along ``axis`` (valid part), into ``out`` if given.

    Up to 4 samples: plain adds. Longer windows by doubling: sums over windows
    of 2, 4, 8, ... samples built from each other (one add each), the binary
    digits of ``k`` picking which to add: about ``log2(k) + popcount(k)`` adds,
    exact for integers, at most ``log2(k)`` roundings per output for floats.
    Along the rows (the contiguous axis) this is what ``box_blur`` uses for
    every size: a running sum there is a scalar loop (NumPy's ``cumsum``, ~8x
    slower per element than a vectorised add), and one that advances 32
    pixels per step from sums of 32 pixels (``log2(32)`` doublings, a
    subtraction, and adds of (rows, 32) blocks) measured 2x slower than
    doubling up to k=511 at 2048x2048. Down the columns ``_running_rows`` wins
    for long windows.
    """
    n_out = a.shape[axis] - k + 1

    def part(arr: NDArray[Any], start: int, length: int) -> NDArray[Any]:
        index: list[Any] = [slice(None)] * arr.ndim
        index[axis] = slice(start, start + length)
        return arr[tuple(index)]

    if k == 1:
        if out is None:
            return a.copy()
        np.copyto(out, a, casting="unsafe")
        return out
    if k <= 4:
        # NumPy runs an in-place add on a strided view (``out`` inside a padded
        # strip buffer) through a buffered loop at half speed: accumulate in a
        # contiguous array and write ``out`` only with the last add
        if k == 2 or out is None or out.flags.c_contiguous:
            acc = np.add(part(a, 0, n_out), part(a, 1, n_out), out=out if k == 2 else None)
        else:
            acc = np.add(part(a, 0, n_out), part(a, 1, n_out))
        if k == 2:
            return acc
        for i in range(2, k - 1):
            acc += part(a, i, n_out)
        return np.add(acc, part(a, k - 1, n_out), out=out)
    result: NDArray[Any] | None = None
    owned = False  # whether ``result`` is an array of our own yet (not a view of a piece)
    power, width, offset = a, 1, 0
    bit = 1
    last = 1 << (k.bit_length() - 1)
    while bit <= k:
        if k & bit:
            piece = part(power, offset, n_out)
            if result is None:
                if bit == last and out is not None:  # k is a power of two: one piece
                    np.copyto(out, piece)
                    return out
                result = piece  # no copy: the next add makes a new array
            elif bit == last and out is not None:
                np.add(result, piece, out=out)
                return out
            elif owned:
                np.add(result, piece, out=result)
            else:
                result = np.add(result, piece)
                owned = True
            offset += width
        if bit * 2 <= k:
            length = power.shape[axis] - width
            power = part(power, 0, length) + part(power, width, length)
            width *= 2
        bit *= 2
    assert result is not None
    if out is not None:
        np.copyto(out, result)
        return out
    return result if owned else result.copy()


# Running sums down the rows: the cost per output is the same for every window size.
_CALL = 6000  # NumPy's cost per call, in element-adds (~1.5 us at ~0.25 ns per add)
_ROW_CHUNK = 4  # running sums down the rows advance this many rows per step (not float32)


def _doubling_adds(k: int) -> int:
    """Adds (passes over the data) ``_window_sum`` spends on a window of ``k``."""
    if k <= 4:
        return k - 1
    return k.bit_length() - 1 + bin(k).count("1")


def _wide(dtype: np.dtype[Any]) -> Any:
    """Accumulator dtype of a running sum: float32 runs in float64.

    A float running sum carries the rounding error of every value it has passed
    over: in float32, a window that leaves a bright region (1e4) for a dark one
    (1e-2) came out 7.5 % wrong. In float64 the sums of a few float32 values
    and their differences are exact (up to exponent spreads of ~2**29), so the
    values that enter a running sum leave it again without a trace. Integer
    sums wrap around in their unsigned dtype and come back exact as long as
    the final sums fit.
    """
    return np.float64 if dtype == np.float32 else dtype


def _pair_sums(a: NDArray[Any], m: int, step: int, wide: Any) -> NDArray[Any]:
    """Sums of ``m`` (a power of two) samples ``step`` apart along axis 0, in ``wide``."""
    width = 1
    while width < m:
        shift = width * step
        a = np.add(a[:-shift], a[shift:], dtype=wide)
        width *= 2
    return a


def _running_rows(block: NDArray[Any], k: int, out: NDArray[Any]) -> None:
    """``out[i] = sum(block[i : i + k])`` by a running sum down the rows.

    ``S[i + m] = S[i] + (W[i + k] - W[i])`` with ``W`` the sums of
    ``m = _ROW_CHUNK`` rows: ``log2(m)`` passes for ``W``, one subtraction
    pass, and one or two NumPy calls per ``m`` rows, whatever ``k`` (``m``
    rows per call keep the calls few: the strips run on threads, and each
    call hands the GIL over).
    """
    h = out.shape[0]
    wide = _wide(block.dtype)
    # float32 one row per step: float64 sums of m rows cost more than the calls they save
    m = _ROW_CHUNK if h >= _ROW_CHUNK and wide is block.dtype else 1
    wins = _pair_sums(block, m, 1, wide)  # h + k - m rows
    q, r = divmod(k, m)
    state = np.add.reduce(wins[: q * m].reshape(q, m, *wins.shape[1:]), axis=0, dtype=wide)
    for t in range(q * m, k):  # the r rows left over
        state += block[t : t + m]
    diff = np.subtract(wins[k : k + h - m], wins[: h - m], dtype=wide)
    if wide is block.dtype:  # integers, float64: the sums themselves are the state
        np.copyto(out[:m], state)
        for i in range(m, h, m):
            w = min(m, h - i)
            np.add(out[i - m : i - m + w], diff[i - m : i - m + w], out=out[i : i + w])
        return
    np.copyto(out[:m], state, casting="same_kind")
    for i in range(m, h, m):
        w = min(m, h - i)
        part = state[:w]
        part += diff[i - m : i - m + w]
        np.copyto(out[i : i + w], part, casting="same_kind")


def _box_divide_u8(sums: NDArray[Any], area: int) -> NDArray[np.uint8]:
    """OpenCV's 8-bit mean for windows of <= 256 samples: a 16-bit reciprocal multiply.

    ``(s + delta) * m >> 16`` with ``m`` close to ``2**16 / area``: exact rounding
    for odd areas, OpenCV's own rounding (neither ties-to-even nor ties-up) for even ones.
    """
    scale = 65536.0 / area
    mult = math.floor(scale)
    delta = area // 2
    if scale - mult < 0.5:
        delta += 1
    else:
        mult += 1
    work = sums.astype(np.uint32)
    work += delta
    work *= mult
    work >>= 16
    return work.astype(np.uint8)


def box_blur(
    image: ArrayLike, size: int | tuple[int, int], *, mode: str = "mirror"
) -> NDArray[Any]:
    """Mean of the ``size`` window around each pixel: ``cv2.blur(image, (cols, rows))``.

    Parameters
    ----------
    image : array_like
        (rows, cols) or (rows, cols, channels); uint8, uint16, float32 or float64.
    size : int or (int, int)
        Window size, one int or (rows, cols), each >= 1. Even sizes put the
        anchor at ``k // 2`` as OpenCV does.
    mode : str
        Border mode; the default 'mirror' is OpenCV's BORDER_REFLECT_101.

    Returns
    -------
    ndarray
        Same shape and dtype; integers rounded as OpenCV rounds them.

    Notes
    -----
    Window sums along the rows are built by doubling (windows of 2, 4, 8, ...
    samples: ``log2(size) + popcount(size)`` passes). Down the columns, long
    windows use a running sum instead (``S[i + 1] = S[i] + x[i + k] - x[i]``,
    one vectorised call per row or per 4 rows), whose cost does not depend on
    the size; short ones use doubling, whichever is cheaper. Integer sums are
    exact (running sums wrap around in their unsigned dtype and come back
    exact). Float sums restart on every row strip, so there is no
    summed-area-table drift; float32 running sums accumulate in float64, so a
    window that leaves a bright region for a dark one keeps no trace of it
    (float32 stays within ~1e-6 relative of the local values). uint8 means
    are the exact sums rounded to nearest, except even windows of <= 256
    samples, which use OpenCV's 16-bit reciprocal multiply. OpenCV itself
    (through its IPP back end) rounds some window shapes differently, so a few
    pixels may differ by one grey level; odd square windows match it exactly.

    Examples
    --------
    >>> import numpy as np
    >>> box_blur(np.array([[0, 0, 9, 0, 0]], dtype=np.uint8), (1, 3)).tolist()
    [[0, 3, 3, 3, 0]]
    """
    array = check_image(image)
    mode = check_mode(mode)
    kr, kc = v.per_axis_ints(size, "size", 2, minimum=1)
    area = kr * kc
    if area == 1:
        return array.copy()
    channels = array.shape[2] if array.ndim == 3 else 1
    rows, cols = array.shape[0], array.shape[1]
    # NaN/inf: the footprint rule (README "Non-finite values"), not running sums' spread
    nonfinite = has_nonfinite(array)
    strip_bytes = 8.0 * channels * ((kr + 64.0) * cols * 4 + 64.0 * (cols + kc) * 4)
    check_memory(
        8.0 * channels * rows * cols * 3 + strip_bytes + 16.0 * area * nonfinite,
        f"box_blur of an image of shape {array.shape} with size {(kr, kc)}",
    )
    if nonfinite:
        return run_filter(
            array,
            lambda: np.full((kr, kc), 1.0 / area),
            mode,
            lambda a: box_blur(a, size, mode=mode),
        )
    if array.dtype == np.uint8:
        acc: Any = np.uint16 if area <= 257 else np.uint32
    elif array.dtype == np.uint16:
        acc = np.uint32 if area <= 65537 else np.uint64
    else:
        acc = array.dtype  # float32 sums over one strip stay within ~1e-6 relative
    load, fill_border, padded_cols, inner = strip_source(
        array, (kr // 2, kr - 1 - kr // 2), (kc // 2, kc - 1 - kc // 2), mode, acc
    )
    out = np.empty((rows, cols, channels), dtype=array.dtype)
    scale = 1.0 / area
    # down the rows, doubling or a running sum, whichever costs less: a
    # running sum costs about as much as ``passes`` doubling adds plus its
    # NumPy calls (float32: two per row; others: one per _ROW_CHUNK rows).
    # Fitted to interleaved 2048x2048 timings of whole blurs on the strip
    # threads, where every short call hands the GIL over: running sums win
    # from 9 adds on (k=51: level, k=101: 20 vs 27 ms float32, 18 vs 30 ms
    # uint8) and lose below (k=21: 20 vs 17 ms). Along the rows always
    # doubling (see _window_sum).
    width = (inner.stop - inner.start) * channels
    if array.dtype == np.float32:
        passes, call_cost = 3, 2 * _CALL
    else:
        passes, call_cost = 8, _CALL // _ROW_CHUNK
    row_running = _doubling_adds(kr) * width > passes * width + call_cost

    def work(start: int, stop: int) -> None:
        h = stop - start
        block = load(start, stop)
        vp = np.empty((h, padded_cols, channels), dtype=acc)
        if row_running:
            _running_rows(block, kr, vp[:, inner])
        else:
            _window_sum(block, kr, 0, out=vp[:, inner])
        fill_border(vp, 0)
        # rows as one flat run of pixels: a horizontal tap is a shift by one
        # pixel (1-D contiguous loops, ~20 % faster than 2-D views); windows
        # straddling two rows land in the border columns, which are dropped
        pixels = vp.reshape(-1, channels)
        valid = pixels.shape[0] - kc + 1
        flat_sums = np.empty(pixels.shape, dtype=acc)
        _window_sum(pixels, kc, 0, out=flat_sums[:valid])
        sums = flat_sums.reshape(vp.shape)[:, :cols]
        if array.dtype == np.uint8 and area <= 256 and area % 2 == 0:
            out[start:stop] = _box_divide_u8(sums, area)
        elif array.dtype.kind == "u" and area <= 32768:
            # float32 is exact enough here (and is what OpenCV's 16-bit path uses);
            # a mean never leaves the dtype's range, so no clipping pass
            mean = np.multiply(sums, np.float32(scale), dtype=np.float32)
            np.rint(mean, out=mean)
            np.copyto(out[start:stop], mean, casting="unsafe")
        elif array.dtype.kind == "f":
            np.multiply(sums, scale, out=out[start:stop], casting="same_kind")
        else:
            out[start:stop] = saturate(sums * scale, array.dtype)

    # a running sum starts each strip with a direct sum of ``kr`` rows: strips
    # of at least ``kr`` rows keep that at most one pass (up to 64 MB strips)
    target = 2 << 20
    if row_running:
        target = min(max(target, kr * cols * channels * 24), 64 << 20)
    strips(rows, cols * channels * 24, work, target=target)
    return out.reshape(array.shape)


# ------------------------------------------------------------------------ gaussian

def _fixed_point(kernel: NDArray[np.float64], bits: int) -> list[int]:
    """OpenCV's integer version of a symmetric kernel: ``bits`` fraction bits, exact sum.

    Side taps are rounded (ties to even) with the rounding error carried to the
    next tap; the centre tap takes what is left so that the taps sum to ``2**bits``.
    """
    n = kernel.size
    one = 1 << bits
    taps = [0] * n
    err = 0.0
    total = 0
    for i in range(n // 2):
        adjusted = float(kernel[i]) * one + err
        q = round(adjusted)
        err = adjusted - q
        taps[i] = taps[n - 1 - i] = q
        total += q
    taps[n // 2] = one - 2 * total
    return taps


def _gaussian_exact(
    array: NDArray[Any], fx: list[int], fy: list[int], mode: str, bits: int
) -> NDArray[Any]:
    """Bit-exact uint8 / uint16 Gaussian: OpenCV's fixed-point arithmetic, exactly.

    ``fx`` and ``fy`` are the taps with ``bits`` fraction bits (each sums to
    ``2**bits``, none negative). The result is
    ``(sum_i fx[i] * sum_j fy[j] * x + 2**(2 bits - 1)) >> 2 bits``, computed by the
    engine's separable rows in float32 for uint8 (every partial sum is an integer
    below ``255 * 2**16 < 2**24``, so exact) and float64 for uint16 (below ``2**48``);
    the cast of the non-negative, exact ``(sum + 2**(2 bits - 1)) * 2**-(2 bits)``
    truncates, which is the shift.
    """
    acc = np.float32 if bits == 8 else np.float64
    out = np.empty_like(array)
    terms = [(np.array(fx, dtype=np.float64), np.array(fy, dtype=np.float64))]
    separable_filter(
        array, terms, mode, acc, out=out, bias=2.0 ** (2 * bits - 1), scale=2.0 ** (-2 * bits)
    )
    return out


def _auto_size(sigma: float, dtype: np.dtype[Any]) -> int:
    return int(round(sigma * (3 if dtype == np.uint8 else 4) * 2 + 1)) | 1


#: Largest 2-D Gaussian (taps) that gray float images take through the engine as one
#: kernel; wider ones run as two 1-D passes (the outer product alone would be huge).
_OUTER_TAPS = 1 << 20


def _check_gaussian(array: NDArray[Any], kr: int, kc: int, sx: float, sy: float) -> None:
    """Refuse, before building the kernel, a Gaussian whose passes exceed the memory limit.

    Counted in float64 bytes: the two 1-D kernels, the result, a finite copy of the
    image (NaN path), the strip buffers (rows of the image plus the kernel height,
    rows of the width plus the kernel width) and the 2-D kernel of the footprint rule.
    """
    rows, cols = array.shape[0], array.shape[1]
    chans = array.shape[2] if array.ndim == 3 else 1
    pixels = float(rows) * cols * chans
    strips = (64.0 + kr) * cols * chans + 64.0 * (cols + kc) * chans
    footprint = 0.0  # the NaN path's 2-D footprint, checked only when it is large
    if float(kr) * kc > _OUTER_TAPS and has_nonfinite(array):
        footprint = float(kr) * kc
    need = 8.0 * (kr + kc + 3 * pixels + 3 * strips + 2 * footprint)
    check_memory(
        need,
        f"gaussian_blur of an image of shape {array.shape} with a {kr} x {kc} kernel "
        f"(sigma={sx!r}, sigma_y={sy!r})",
    )


def gaussian_blur(
    image: ArrayLike,
    size: int | tuple[int, int],
    sigma: float = 0.0,
    *,
    sigma_y: float | None = None,
    mode: str = "mirror",
) -> NDArray[Any]:
    """Gaussian blur: ``cv2.GaussianBlur(image, (cols, rows), sigma, sigmaY=sigma_y)``.

    Parameters
    ----------
    image : array_like
        (rows, cols) or (rows, cols, channels); uint8, uint16, float32 or float64.
    size : int or (int, int)
        Odd kernel size, one int or (rows, cols). 0 derives it from the sigma as
        OpenCV does (``round(sigma * (3 for uint8 else 4) * 2 + 1) | 1``).
    sigma : float
        Standard deviation along the columns (x). 0 or less: OpenCV's rule
        ``0.3 * ((size - 1) * 0.5 - 1) + 0.8`` (see ``kernels.gaussian``).
    sigma_y : float, optional
        Standard deviation along the rows; None (or <= 0) means ``sigma``.
    mode : str
        Border mode; default 'mirror' = OpenCV's BORDER_REFLECT_101.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``.

    Notes
    -----
    uint8 and uint16 images are filtered in integers exactly as OpenCV's
    bit-exact path: the 1-D kernels become integers with 8 (uint8) or 16
    (uint16) fraction bits, both passes are exact, and the result is rounded
    once (``(v + 2**(b-1)) >> b``), so the output is identical to OpenCV's.
    The kernel sums to 1, so the mean brightness is kept. The lab's task 3
    normalised its Gaussian by the maximum tap instead: a 21x21 kernel with
    sigma 3 then sums to about 57, multiplying every pixel's brightness by 57
    (everything saturates in uint8), which is why the lab had to rescale the
    result afterwards.

    Every dtype runs as the engine's compiled separable rows (a column pass
    then a row pass per output row, channels interleaved, the border from index
    maps), split over the filters' thread pool.

    Examples
    --------
    >>> import numpy as np
    >>> gaussian_blur(np.array([[0, 0, 16, 0, 0]], dtype=np.uint8), (1, 3)).tolist()
    [[0, 4, 8, 4, 0]]
    """
    array = check_image(image)
    mode = check_mode(mode)
    sx = v.finite_float(sigma, "sigma")
    sy = sx if sigma_y is None else v.finite_float(sigma_y, "sigma_y")
    if sy <= 0:
        sy = sx
    kr, kc = v.per_axis_ints(size, "size", 2, minimum=0)
    for name, value in (("sigma", sx), ("sigma_y", sy)):
        if value * 8 + 1 > 2.0**53:  # its kernel alone exceeds any memory limit
            check_memory(8.0 * (value * 8 + 1), f"gaussian_blur with {name}={value!r}")
    if kc == 0 and sx > 0:
        kc = _auto_size(sx, array.dtype)
    if kr == 0 and sy > 0:
        kr = _auto_size(sy, array.dtype)
    if kr % 2 == 0 or kc % 2 == 0:
        raise v.fail("size", "be odd for every axis (or 0 with a positive sigma)", (kr, kc))
    if mode != "constant":  # OpenCV drops the kernel along an axis of length 1
        kr = 1 if array.shape[0] == 1 else kr
        kc = 1 if array.shape[1] == 1 else kc
    _check_gaussian(array, kr, kc, sx, sy)
    kx = kernels.gaussian(kc, max(sx, 0.0), ndim=1)
    ky = kernels.gaussian(kr, max(sy, 0.0), ndim=1)
    if kr == 1 and kc == 1:
        return array.copy()
    if array.dtype.kind == "f":

        def compute(a: NDArray[Any]) -> NDArray[Any]:
            return separable_filter(a, [(kx, ky)], mode, a.dtype)

        return run_filter(array, lambda: np.outer(ky, kx), mode, compute)
    if array.dtype in (np.uint8, np.uint16):
        bits = 8 * array.dtype.itemsize
        return _gaussian_exact(array, _fixed_point(kx, bits), _fixed_point(ky, bits), mode, bits)
    raise AssertionError(array.dtype)  # pragma: no cover - check_image allows no other dtype


# ------------------------------------------------------------------------- unsharp


def unsharp_mask(
    image: ArrayLike, sigma: float = 1.0, amount: float = 1.0, *, mode: str = "mirror"
) -> NDArray[Any]:
    """Sharpen: ``image + amount * (image - gaussian(image, sigma))``.

    Parameters
    ----------
    image : array_like
        (rows, cols) or (rows, cols, channels); uint8, uint16, float32 or float64.
    sigma : float
        Standard deviation of the blur, > 0. The kernel spans
        ``round(8 * sigma + 1) | 1`` taps, as OpenCV's ``GaussianBlur`` with
        size 0 on float data (and SciPy's ``truncate=4``).
    amount : float
        Strength; 0 returns the image unchanged.
    mode : str
        Border mode for the blur; default 'mirror' (BORDER_REFLECT_101).

    Returns
    -------
    ndarray
        Same shape and dtype; integer results rounded and clipped to the dtype's
        range, float results not clipped.

    Examples
    --------
    >>> import numpy as np
    >>> unsharp_mask(np.full((4, 4), 7, dtype=np.uint8)).tolist()[0]
    [7, 7, 7, 7]
    """
    array = check_image(image)
    mode = check_mode(mode)
    s = v.positive_float(sigma, "sigma")
    k = v.finite_float(amount, "amount")
    work = array if array.dtype.kind == "f" else array.astype(np.float64)
    blurred = gaussian_blur(work, 0, s, mode=mode)
    sharp = work + k * (work - blurred)
    return saturate(sharp, array.dtype)
