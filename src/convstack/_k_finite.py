"""Compiled loop of the non-finite check (:func:`convstack._nonfinite.has_nonfinite`).

``sum(v * 0)`` over a flat array is 0 when every sample is finite and NaN as soon as
one is NaN or infinite (``inf * 0`` is NaN): an exact test that cannot overflow.
``reassoc`` lets LLVM vectorise the sum; NaN and infinities keep their IEEE meaning
(no ``nnan``/``ninf``), so the multiply by zero is not folded away.
"""

from __future__ import annotations

from typing import Any

from ._jit import kernel

__all__ = ["zero_sum"]


@kernel(fastmath={"reassoc"})
def zero_sum(flat: Any) -> Any:
    """``sum(flat * 0)``: 0 for finite samples, NaN if any is NaN or infinite."""
    total = flat[0] * 0
    for i in range(1, flat.shape[0]):
        total += flat[i] * 0
    return total
