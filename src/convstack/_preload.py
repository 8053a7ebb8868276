"""Start numba before ``fuse`` forks, so that its reader child inherits a ready compiler.

The first call of any compiled kernel in a process costs far more than loading that
kernel from the disk cache: numba is imported (~0.3 s on the development VM) and its
compiler set up (~0.45 s quiet, 0.75-1.1 s under load: the typing and lowering
registries, among them an import of ``scipy.linalg`` that numba makes to find BLAS).
:func:`convstack.stack.fuse` forks a child that reads and registers frames, and
until now both processes paid that set-up separately, each on its own first kernel
call. Done once in the parent before the fork, the child gets it as a copy of the
parent's memory: nothing to import or build.

Called by the command line (``convstack fuse``), never at ``import convstack``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["start_compiler"]


def start_compiler() -> None:
    """Import numba and set up its compiler in this process (idempotent, ~1 ms after
    the first time).

    One tiny call of a kernel that every focus stack uses (the non-finite check of
    the float32 images that correlate sees) does it: it loads that kernel from the
    disk cache, or compiles it on a cold cache, as the stack would anyway.
    """
    from ._k_finite import zero_sum

    zero_sum(np.zeros(1, dtype=np.float32))
