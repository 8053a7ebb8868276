"""The one rule for NaN and infinities: propagate within the kernel's footprint.

An output whose footprint (every tap of the kernel, zero weights included, at its
dilated position in the padded image) holds a NaN or an infinity gets the value that
direct IEEE evaluation of ``sum(weight * sample)`` gives there (NaN, +inf or -inf);
every other output is the finite result, whatever the method (direct, separable, FFT)
or the filter's own passes (running sums, separable strips) would have done with the
non-finite samples.

How: the fast path runs on a copy of the image with its non-finite samples set to 0
(:func:`finite_copy`), so that nothing spreads; then :func:`overwrite` finds, with a few
passes of the engine over 0/1 indicator images, which outputs have a NaN, a +inf or a
-inf term, and writes their IEEE outcome. Finite images pay one summing pass
(:func:`has_nonfinite`), except under the engine's direct and separable rows, which test
each image row as they first read it (the one-channel direct passes, which add every tap,
test each output row as they write it): there the method runs on the image as it is (each
output reads only its footprint) and the overwrite follows only when a row held a
non-finite sample (:func:`run_local_filter`, ``convstack.convolve``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .padding import Border

__all__ = ["finite_copy", "has_nonfinite", "overwrite", "run_filter", "run_local_filter"]

Shape = tuple[int, ...]
Pads = tuple[tuple[int, int], ...]


#: Samples from which :func:`has_nonfinite` uses its compiled loop.
COMPILED_MIN = 1 << 16


#: The memory block (address, bytes, dtype) that :func:`run_filter` has just found
#: finite: the engine called inside its ``compute`` does not scan it again.
_KNOWN_FINITE: ContextVar[tuple[int, int, str] | None] = ContextVar("finite", default=None)


def _block(array: NDArray[Any]) -> tuple[int, int, str] | None:
    """(address, bytes, dtype) of a contiguous array; None for other layouts."""
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        return None
    return (int(array.__array_interface__["data"][0]), int(array.nbytes), array.dtype.str)


def has_nonfinite(array: NDArray[Any]) -> bool:
    """Whether a float ``array`` holds a NaN or an infinity (False for other dtypes).

    One pass, with no temporary. Large C-contiguous float32/float64 arrays go through a
    compiled loop that sums ``v * 0`` (exact, single-threaded, about 3x faster than
    ``np.add.reduce``); others through ``np.add.reduce``, where a finite sum that
    overflows is a false alarm that only costs the exact path.
    """
    if array.dtype.kind not in "fc" or array.size == 0:
        return False
    known = _KNOWN_FINITE.get()
    if known is not None and known == _block(array):
        return False
    if (
        array.size >= COMPILED_MIN
        and array.dtype in (np.float32, np.float64)
        and array.flags.c_contiguous
    ):
        from ._k_finite import zero_sum

        return not bool(np.isfinite(zero_sum(array.reshape(-1))))
    native = array.dtype.newbyteorder("=")  # reductions take no byte order
    dtype = np.float32 if native.kind == "f" and native.itemsize <= 4 else native
    with np.errstate(over="ignore", invalid="ignore"):
        return not bool(np.isfinite(np.add.reduce(array, axis=None, dtype=dtype)))


def finite_copy(array: NDArray[Any], dtype: Any = None) -> NDArray[Any]:
    """A copy of ``array`` (in ``dtype``) with every NaN and infinity replaced by 0."""
    with np.errstate(over="ignore", invalid="ignore"):  # casts to float32 may overflow
        out = np.array(array, dtype=dtype if dtype is not None else array.dtype, copy=True)
    out[~np.isfinite(out)] = 0
    return out


def _count(
    indicator: NDArray[np.bool_],
    border: Any,
    fill: NDArray[np.bool_],
    selection: NDArray[np.bool_],
    dilation: Shape,
    stride: Shape,
    out_shape: Shape,
) -> NDArray[np.bool_]:
    """Outputs with at least one tap of the 0/1 kernel ``selection`` on a True sample.

    ``indicator`` (batch, *spatial) is padded as the image is (``border``'s pads and
    mode; ``fill`` per item for the constant border). The count runs through the
    engine in float64: separable for a full box (rank 1, exact), direct for small
    selections, FFT for large ones (rounding far below the 0.5 threshold).
    """
    from . import _methods

    weights = selection.astype(np.float64)
    taps = int(selection.sum())
    if selection.ndim == 2 and taps == selection.size:
        method = "separable"
    else:
        method = "direct" if taps <= 64 else "fft"
    pad = Border(border.pads, border.mode, fill.astype(np.float64))
    with np.errstate(invalid="ignore", over="ignore"):
        counts = _methods.METHODS[method](
            indicator.astype(np.float64), pad, weights, dilation, stride, out_shape
        )
    return np.asarray(counts > 0.5)


class _Classes:
    """Masks of the sample classes of ``values`` ('nan', '+inf', '-inf', 'inf', '+fin',
    '-fin', 'zero'), each computed on first use (most calls need only a few)."""

    def __init__(self, values: NDArray[Any]) -> None:
        self.values = values if values.dtype.kind == "f" else values.astype(np.float64)
        self.masks: dict[str, NDArray[np.bool_]] = {}

    def __getitem__(self, name: str) -> NDArray[np.bool_]:
        if name not in self.masks:
            v = self.values
            if name == "nan":
                mask = np.isnan(v)
            elif name == "+inf":
                mask = np.isposinf(v)
            elif name == "-inf":
                mask = np.isneginf(v)
            elif name == "inf":
                mask = np.isinf(v)
            elif name == "zero":
                mask = v == 0
            else:  # '+fin', '-fin'
                with np.errstate(invalid="ignore"):
                    mask = np.isfinite(v) & ((v > 0) if name == "+fin" else (v < 0))
            self.masks[name] = np.asarray(mask)
        return self.masks[name]

    def any(self, name: str) -> bool:
        """Whether class ``name`` has a member (+inf and -inf only if 'inf' has)."""
        if name in ("+inf", "-inf") and not self["inf"].any():
            return False
        return bool(self[name].any())


def overwrite(
    out: NDArray[Any],
    work: NDArray[Any],
    border: Any,
    kernel: NDArray[Any],
    dilation: Shape,
    stride: Shape,
) -> None:
    """Give every output whose sum has a non-finite term its IEEE value (NaN, +-inf).

    The IEEE outcome of ``sum(weight * sample)`` over a footprint that holds a
    non-finite term depends only on three facts: whether some term is NaN, some
    +inf, some -inf (finite terms cannot change a non-finite sum; +inf and -inf
    together give NaN). A term is NaN for a NaN sample or weight, an infinity
    times a zero; it is infinite for an infinity times a non-zero, with the sign
    of the product. Each fact is whether some tap of a 0/1 kernel (the weights of
    one class) falls on a sample of one class, a count that the engine itself
    computes (:func:`_count`): a few filter passes, however many non-finite
    samples there are. Outputs with no non-finite term are left as they are.

    Parameters
    ----------
    out : ndarray
        (batch, *out_shape) float result of the fast path on the image with its
        non-finite samples set to 0; written in place. With a non-finite kernel
        every output has a non-finite term and is written.
    work : ndarray
        (batch, *spatial) image as given (with its non-finite samples).
    border : convstack.padding.Border
        The padding: pads, mode ('constant' for 'mean') and constant fill per item.
    kernel : ndarray
        Weights oriented for correlation, one axis per spatial axis.
    dilation, stride : tuple of int
        Per spatial axis.
    """
    if np.isnan(kernel).any():
        out[...] = np.nan
        return
    out_shape = out.shape[1:]
    constant = border.mode == "constant"

    x, edge = _Classes(work), _Classes(border.fill)
    w_finite = np.isfinite(kernel)
    w = {
        "all": np.ones(kernel.shape, dtype=bool),
        "+": kernel > 0,
        "-": kernel < 0,
        "zero": kernel == 0,
        "+inf": np.isposinf(kernel),
        "-inf": np.isneginf(kernel),
        "inf": ~w_finite,
    }

    def under(weights: str, samples: str) -> NDArray[np.bool_] | None:
        selection = w[weights]
        if not selection.any():
            return None
        if not (x.any(samples) or (constant and edge.any(samples))):
            return None
        image = x[samples]
        fill = edge[samples] if constant else np.zeros(border.fill.shape, dtype=bool)
        return _count(image, border, fill, selection, dilation, stride, out_shape)

    def either(*pairs: tuple[str, str]) -> NDArray[np.bool_] | None:
        found = [m for m in (under(a, b) for a, b in pairs) if m is not None]
        return np.logical_or.reduce(found) if found else None

    nan = either(("all", "nan"), ("zero", "inf"), ("inf", "zero"))
    pos = either(("+", "+inf"), ("-", "-inf"), ("+inf", "+fin"), ("-inf", "-fin"))
    neg = either(("-", "+inf"), ("+", "-inf"), ("-inf", "+fin"), ("+inf", "-fin"))
    if pos is not None:
        out[pos] = np.inf
    if neg is not None:
        out[neg] = -np.inf
    if nan is not None:
        out[nan] = np.nan
    if pos is not None and neg is not None:
        out[pos & neg] = np.nan


def run_filter(
    array: NDArray[Any],
    kernel: NDArray[Any] | Callable[[], NDArray[Any]],
    mode: str,
    compute: Callable[[NDArray[Any]], NDArray[Any]],
) -> NDArray[Any]:
    """Run a filter's ``compute`` under the rule, for a channel-last 2-D filter.

    ``array`` is (rows, cols[, channels]); ``kernel`` the filter's 2-D weights (or a
    function that builds them, called only for images with non-finite samples) with
    the anchor at ``k // 2``; ``compute(image)`` returns the filter's (rows,
    cols[, channels]) result. Finite images go straight to ``compute``; others go
    with their non-finite samples set to 0, then :func:`overwrite` gives the outputs
    whose footprint holds one their IEEE value.
    """
    if not has_nonfinite(array):
        token = _KNOWN_FINITE.set(_block(array))
        try:
            return compute(array)
        finally:
            _KNOWN_FINITE.reset(token)
    result = compute(finite_copy(array))
    _footprint_rule(array, result, kernel, mode)
    return result


def run_local_filter(
    array: NDArray[Any],
    kernel: NDArray[Any] | Callable[[], NDArray[Any]],
    mode: str,
    compute: Callable[[NDArray[Any], list[bool]], NDArray[Any]],
) -> NDArray[Any]:
    """:func:`run_filter` for a ``compute`` that finds non-finite samples itself.

    ``compute(image, found)`` must read, for each output, only the samples of its
    footprint (the engine's direct and separable rows do), and append to ``found``
    whether it met a NaN or an infinity (the rows test each image row as they first
    read it, or an output that sums every tap as they write it). It runs on the image
    as it is, with no separate scan; the outputs whose footprint holds a non-finite
    sample then get their IEEE value from :func:`overwrite`, the others are already
    what the finite path gives.
    """
    found: list[bool] = []
    result = compute(array, found)
    if any(found):
        _footprint_rule(array, result, kernel, mode)
    return result


def _footprint_rule(
    array: NDArray[Any],
    result: NDArray[Any],
    kernel: NDArray[Any] | Callable[[], NDArray[Any]],
    mode: str,
) -> None:
    """Overwrite the outputs of a channel-last filter whose footprint holds a non-finite."""
    if callable(kernel):
        kernel = kernel()
    work = array[None] if array.ndim == 2 else np.moveaxis(array, 2, 0)
    target = result[None] if result.ndim == 2 else np.moveaxis(result, 2, 0)
    pads = tuple((k // 2, k - 1 - k // 2) for k in kernel.shape)
    fill = np.zeros(work.shape[0], dtype=result.dtype)
    if mode == "mean":
        with np.errstate(invalid="ignore", over="ignore"):
            means = work.reshape(work.shape[0], -1).mean(axis=1, dtype=np.float64)
        fill, mode = means.astype(result.dtype), "constant"
    weights = np.asarray(kernel, dtype=np.float64)
    ones = (1,) * kernel.ndim
    overwrite(target, work, Border(pads, mode, fill), weights, ones, ones)
