"""The one place that configures numba, the compiler of the hot loops.

Kernels are small Python loops in private ``_k_*`` modules that ``import`` this one and
decorate their loops with :func:`kernel`. The public functions import those modules
inside their bodies, so ``import convstack`` and ``convstack --help`` never load numba
(about 0.5 s) and nothing is compiled at import: a kernel compiles on its first call and
is cached on disk (``cache=True``). numba writes its cache beside the module, or under the
user's cache folder when the package folder is read-only (``NUMBA_CACHE_DIR`` moves it).

Threads: every kernel is compiled serial with the GIL released (``nogil=True``), and the
callers split rows between the project's own thread pools. numba's parallel threading
layers are not used: the default one on Linux (GNU OpenMP) kills a child forked after a
parallel kernel ran, and ``fuse`` forks. In case a future kernel asks for ``parallel=True``
anyway, the layer is pinned here to ``workqueue``, which survives a fork.

Vectors: on a CPU with AVX-512, LLVM's tuning for most Intel models keeps loops in
256-bit vectors ("prefer-256-bit"). The compute-bound kernels (the bilateral weights,
wide correlations) run up to ~15 % faster in 512-bit ones, so that preference is turned
off here, unless the user chose numba's target (``NUMBA_CPU_NAME`` or
``NUMBA_CPU_FEATURES``, for example a portable cache). numba keys its disk cache by the
target's features, so kernels cached either way never mix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numba

__all__ = ["kernel"]

numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]


def _prefer_512_bit_vectors() -> None:
    """Let LLVM use 512-bit vectors where the CPU has AVX-512 and the user set no target."""
    config: Any = numba.config
    if config.CPU_NAME is not None or config.CPU_FEATURES is not None:
        return
    from numba.core import codegen

    features = codegen.get_host_cpu_features()
    if "+avx512f" in features.split(","):
        config.CPU_FEATURES = features + ",-prefer-256-bit"


_prefer_512_bit_vectors()

F = TypeVar("F", bound=Callable[..., Any])


def kernel(function: F | None = None, /, **options: Any) -> Any:
    """Compile ``function`` with numba: serial, GIL released, cached on disk.

    Used bare (``@kernel``) or with numba options (``@kernel(fastmath=True)``). Kernels
    check no bounds: their public callers validate every shape and index first.
    """
    settings = {"nogil": True, "cache": True, "boundscheck": False, **options}
    if function is None:
        return lambda f: numba.njit(**settings)(f)
    return numba.njit(**settings)(function)
