"""Row arithmetic of the pyramid merge in strips (issue 14, bounded memory).

:class:`convstack.stack.fusion.PyramidAccumulator` walks a frame in horizontal strips
of rows, each with the halo that makes its coefficients exactly those of the whole
frame: this module says which rows of which pyramid level a strip needs, and how many
rows a strip may have for a memory budget. Pure integer arithmetic, no arrays.

A pyramid level of ``n`` rows reduces to ``(n + 1) // 2``. Row ``i`` of the next
Gaussian level reads rows ``2i - 2 .. 2i + 2`` (the 5-tap binomial), row ``r`` of an
expanded level reads rows ``r // 2 - 1 .. r // 2 + 1`` of the coarser one, and the
5-tap energy window reads ``r - 2 .. r + 2``; borders are mirrored only at a level's
real first and last rows, so a strip computed from the rows it reads is exact.
"""

from __future__ import annotations

__all__ = [
    "STRIP_LEVEL",
    "STRIP_WORKERS",
    "expand_source",
    "level_sizes",
    "reduce_source",
    "rows_for_budget",
    "state_bytes",
    "strip_bytes",
    "strip_needs",
    "strip_step",
]

#: The finest ``STRIP_LEVEL`` levels (0 .. STRIP_LEVEL - 1) are made strip by strip;
#: level ``STRIP_LEVEL`` (1/64 of a frame) and the coarser ones whole. The halo a strip
#: needs grows like ``2 ** STRIP_LEVEL`` (about 30 rows on each side at 3).
STRIP_LEVEL = 3

#: Strips in work at once (threads of their own; the compiled loops inside them split
#: rows on the shared pools): the small levels' loops and NumPy's passes of one strip
#: run on one core, two strips keep both busy (6 MP colour: 0.92x the whole frame's
#: merge time with two, 1.04x with one, strips of 160 rows).
STRIP_WORKERS = 2

#: Bytes of strip temporaries per row, column and colour channel, and per row and
#: column whatever the channels: traced peaks of ``add`` and ``result`` on 3000-column
#: frames, grey and colour (``result``, a thread per channel, about 12.7 a sample;
#: ``add`` about 7.3 a sample and 10 a pixel), rounded up.
_BYTES_PER_SAMPLE = 13
_BYTES_PER_PIXEL = 10


def level_sizes(n: int, levels: int) -> list[int]:
    """Sizes of an axis of ``n`` samples on pyramid levels ``0 .. levels - 1``."""
    sizes = [n]
    for _ in range(levels - 1):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def reduce_source(lo: int, hi: int, rows: int) -> tuple[int, int]:
    """Rows of a level of ``rows`` rows that rows ``lo:hi`` of the next Gaussian level read.

    The start is even (so the strip's own reduction keeps the level's even rows)."""
    return max(0, 2 * lo - 2), min(rows, 2 * hi + 1)


def expand_source(lo: int, hi: int, coarse_rows: int) -> tuple[int, int]:
    """Rows of a level of ``coarse_rows`` rows that rows ``lo:hi`` of it expanded read."""
    return max(0, lo // 2 - 1), min(coarse_rows, (hi - 1) // 2 + 2)


def _hull(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return min(a[0], b[0]), max(a[1], b[1])


def strip_needs(
    sizes: list[int], start: int, stop: int, split: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The rows a strip reads and owns on levels ``0 .. split``.

    ``sizes``: rows per level (:func:`level_sizes`); ``start:stop``: the strip's rows of
    level 0, ``start`` a multiple of ``2 ** split``, ``stop`` too or the last row.
    Returns ``(needs, owns)``: per level the Gaussian rows the strip computes, and the
    rows it owns (whose bands, energies and envelope it merges; the owned rows of
    consecutive strips tile each level). Every level ``k < split`` takes its band on
    the owned rows plus 2 (the energy window), which reads level ``k + 1`` through the
    expansion; every level's needs cover what the next level's reduction reads.
    """
    last = stop >= sizes[0]
    owns = [(start >> k, sizes[k] if last else stop >> k) for k in range(split + 1)]
    needs = list(owns)
    for k in range(split - 1, -1, -1):
        band = max(0, owns[k][0] - 2), min(sizes[k], owns[k][1] + 2)
        needs[k + 1] = _hull(needs[k + 1], expand_source(*band, sizes[k + 1]))
        needs[k] = _hull(band, reduce_source(*needs[k + 1], sizes[k]))
    return needs, owns


def strip_step(rows: int, strip_rows: int | None, split: int) -> int:
    """Rows of level 0 per strip: ``strip_rows`` rounded up to a multiple of
    ``2 ** split``; ``rows`` (one strip) for None."""
    if strip_rows is None:
        return rows
    unit = 1 << split
    return max(unit, -(-int(strip_rows) // unit) * unit)


def rows_for_budget(shape: tuple[int, ...], budget: int) -> int:
    """Rows per strip so that the temporaries of the ``STRIP_WORKERS`` strips in work
    take about ``budget`` bytes.

    Parameters
    ----------
    shape : tuple of int
        A frame's shape, (rows, cols) or (rows, cols, channels).
    budget : int
        Bytes for the strips' temporaries (the merge's full-size running state,
        :func:`state_bytes`, comes on top).

    Returns
    -------
    int
        Rows per strip, at least ``2 ** STRIP_LEVEL`` (pass it as
        ``PyramidAccumulator(strip_rows=...)``).

    Raises
    ------
    ValueError
        If ``shape`` is not 2-D or 3-D, or ``budget`` is not positive.

    Examples
    --------
    >>> rows_for_budget((4000, 6000, 3), 256 << 20)
    392
    """
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"`shape` must be (rows, cols[, channels]) of sizes >= 1; got {shape}.")
    if budget <= 0:
        raise ValueError(f"`budget` must be > 0; got {budget}.")
    channels = shape[2] if len(shape) == 3 else 1
    per_row = shape[1] * (_BYTES_PER_SAMPLE * channels + _BYTES_PER_PIXEL)
    unit = 1 << STRIP_LEVEL
    halo = 8 << STRIP_LEVEL  # the rows on both sides that a strip computes again
    rows = max(unit, int(budget) // STRIP_WORKERS // per_row - halo)
    return rows // unit * unit


def strip_bytes(shape: tuple[int, ...], strip_rows: int) -> int:
    """Bytes of the temporaries of the ``STRIP_WORKERS`` strips in work with strips of
    ``strip_rows`` rows (halo included): what :func:`rows_for_budget` keeps near its
    budget.

    Examples
    --------
    >>> strip_bytes((4000, 6000, 3), 392) <= 256 << 20
    True
    """
    channels = shape[2] if len(shape) == 3 else 1
    per_row = shape[1] * (_BYTES_PER_SAMPLE * channels + _BYTES_PER_PIXEL)
    rows = min(int(strip_rows), int(shape[0])) + (8 << STRIP_LEVEL)
    return STRIP_WORKERS * rows * per_row


def state_bytes(shape: tuple[int, ...], levels: int, *, envelope: bool = True) -> int:
    """Bytes the pyramid merge holds whatever the strips, for frames of ``shape``.

    The running state (float32: every detail level's weighted sum, its largest weight
    base and sum of weights; with ``envelope`` the frames' minimum of Gaussian levels 1
    and 2 and maximum of level 2) and the image's levels 1 and 2 that ``result``
    collapses through; not the result itself, nor the few-kilobyte bases.

    Examples
    --------
    >>> state_bytes((4000, 6000, 3), 8) / (4000 * 6000)  # bytes a pixel, colour
    34.9...
    """
    rows, cols = level_sizes(shape[0], levels), level_sizes(shape[1], levels)
    channels = shape[2] if len(shape) == 3 else 1
    area = [r * c for r, c in zip(rows, cols, strict=True)]
    total = sum(area[:-1]) * 4 * (channels + 2)  # sums, largest base, weight sum
    if envelope:
        total += sum(area[k] * 4 * channels for k in (1, 2, 2) if k < levels)
    total += sum(area[k] * 4 * channels for k in (1, 2) if k < levels)
    return total
