"""The pyramid merge in strips (issue 14 part 3) equals the whole-frame merge, bit for bit.

The reference is the whole-frame ``PyramidAccumulator.add`` and ``result`` as they were
before strips (kept here verbatim, calling the same pyramid primitives): every strip
size, split level, shape, option and output dtype must give the same bits.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from convstack.stack import fusion as F
from convstack.stack import strips as S


class WholeFrame(F.PyramidAccumulator):
    """The accumulator before strips: each frame's whole pyramid at once (the oracle)."""

    def add(self, index: int, frame: NDArray[Any]) -> None:
        """Take in frame ``index`` (float32, aligned)."""
        if self.bands is None:
            self.levels = F.pyramid_levels(frame.shape, self.levels_arg)
        if frame.ndim == 3:  # planar inside: per-pixel weights broadcast over channels
            frame = np.ascontiguousarray(np.moveaxis(frame, 2, 0))
        self.axes = (1, 2) if frame.ndim == 3 else (0, 1)
        gauss = F.gaussian_pyramid(frame, self.levels, self.axes)
        for check in self._envelope_levels():
            if check not in self.low:
                self.low[check] = gauss[check].copy()
            else:
                np.minimum(self.low[check], gauss[check], out=self.low[check])
            if check not in F.ENVELOPE_FLOOR_ONLY:
                if check not in self.high:
                    self.high[check] = gauss[check].copy()
                else:
                    np.maximum(self.high[check], gauss[check], out=self.high[check])
        bands = F._bands(gauss, self.axes)
        del gauss
        first = self.bands is None or self.energy is None
        if first:  # the first frame's arrays become the running sums (no zeros to add to)
            self.bands, self.energy, self.weight = [], [], []
        assert self.bands is not None and self.energy is not None
        for k, band in enumerate(bands[:-1]):
            focus = self.focus
            squared = F._luma_squared(band) if focus is None else F._focus_squared(band, focus)
            energy = F._blur5(squared)
            if first:
                # soft levels: the running largest weight base 1 + E / tau, and the sum
                # of weights relative to it (1); the others: the running largest energy
                if k < self.soft_levels:
                    self.tau.append(self._noise_floor(k, squared, energy))
                    F._sharpened(energy, self.tau[k], self._edge(k))  # the default rule
                    energy *= np.float32(1.0 / self.tau[k])
                    energy += np.float32(1.0)
                    self.weight.append(np.ones(energy.shape, np.float32))
                self.energy.append(energy)
                self.bands.append(band)
                continue
            if k < self.soft_levels:
                # weights (1 + E/tau)**power, summed relative to the running largest
                # (as an online softmax): (base / top)**power <= 1 stays finite whatever
                # the ratios. Powers of ratios rather than exponentials of log-weights:
                # NumPy's float32 log1p and exp are scalar code on CPUs without AVX-512
                # (log1p alone took 55 ms on a 3 MP level there)
                scale = np.float32(1.0 / self.tau[k])
                F._sharpened(energy, self.tau[k], self._edge(k))
                power = self._power(k)
                if F._soft_merge(
                    energy, band, self.energy[k], self.weight[k], self.bands[k], scale, power
                ):
                    continue
                base = energy
                base *= np.float32(1.0 / self.tau[k])
                base += np.float32(1.0)
                top = np.maximum(self.energy[k], base)
                old = np.divide(self.energy[k], top, out=self.energy[k])
                F._power_in_place(old, power)
                new = np.divide(base, top, out=base)
                F._power_in_place(new, power)
                self.energy[k] = top
                self.weight[k] *= old
                self.weight[k] += new
                self.bands[k] *= old
                band *= new
                self.bands[k] += band
                continue
            better = energy > self.energy[k]
            np.maximum(self.energy[k], energy, out=self.energy[k])
            np.copyto(self.bands[k], band, where=better)
        base = bands[-1]  # the frame itself when there is one level: keep a copy
        self.bases[index] = base.copy() if np.may_share_memory(base, frame) else base

    def result(self, depth: NDArray[Any] | None = None, dtype: Any = None) -> NDArray[Any]:
        """Collapse; the base is blended by ``F.frame_weight(depth, i)`` or evenly.

        ``depth``: the depth map, or it already reduced by :meth:`base_depth`;
        ``dtype``: the result is converted to it as :func:`from_unit_float` does with
        ``clip=True`` (default: float32 as collapsed).
        """
        assert self.bands is not None and self.energy is not None
        details = list(self.bands)
        for k, total in enumerate(self.weight):
            details[k] = details[k] / total
        order = sorted(self.bases)
        base = np.zeros_like(self.bases[order[0]])
        if depth is None:
            for i in order:
                base += self.bases[i] / np.float32(len(order))
        else:
            grid = base.shape[-2:]
            coarse = depth if depth.shape == grid else self.base_depth(depth)
            for i in order:
                base += self.bases[i] * F.frame_weight(coarse, i)
        checks = self._envelope_levels()
        # colour: the channels, collapsed apart, are converted into one interleaved array
        full = details[0].shape if details else base.shape  # planar: (channels, rows, cols)
        out = np.empty(full[1:] + full[:1], dtype) if dtype is not None and base.ndim == 3 else None

        def channel(c: Any) -> NDArray[Any] | None:
            """Collapse and envelope-check one channel (``c``: an index, or ``...``); None
            once written into ``out``."""
            image = F.collapse([*(d[c] for d in details), base[c]])
            bounds = []
            for check in checks:
                high = self.high.get(check)
                bounds.append((check, self.low[check][c], None if high is None else high[c]))
            image = F.clamp_local_means(image, bounds)
            if out is not None:
                out[..., c] = F.from_unit_float(image, out.dtype, clip=True)
                return None  # nothing more to keep
            return image

        if base.ndim == 2:
            image = channel(...)
            assert image is not None
            return image if dtype is None else F.from_unit_float(image, np.dtype(dtype), clip=True)
        # channels are independent here: a thread each (NumPy releases the GIL)
        with ThreadPoolExecutor(max_workers=base.shape[0]) as pool:
            planes = [
                plane for plane in pool.map(channel, range(base.shape[0])) if plane is not None
            ]
        return np.stack(planes, axis=-1) if out is None else out


def _frames(shape: tuple[int, ...], count: int = 3, seed: int = 0) -> list[np.ndarray]:
    """Random float32 frames, some samples outside [0, 1] (the clip and the envelope act)."""
    rng = np.random.default_rng(seed)
    frames = [rng.random(shape).astype(np.float32) * 1.2 - 0.1 for _ in range(count)]
    frames[1][: shape[0] // 3] *= np.float32(0.2)  # flat rows: a frame stands out elsewhere
    return frames


def _both(
    shape: tuple[int, ...], strip_rows: Any, count: int = 3, **options: Any
) -> tuple[Any, Any]:
    """The whole-frame oracle and the strip accumulator, fed the same frames."""
    whole = WholeFrame(**options)
    strips = F.PyramidAccumulator(strip_rows=strip_rows, **options)
    for i, frame in enumerate(_frames(shape, count)):
        whole.add(i, frame)
        strips.add(i, frame)
    return whole, strips


def _assert_same_state(whole: Any, strips: Any) -> None:
    assert whole.levels == strips.levels
    assert whole.tau == strips.tau and whole.sigma2 == strips.sigma2
    for name in ("bands", "energy", "weight"):
        for a, b in zip(getattr(whole, name), getattr(strips, name), strict=True):
            np.testing.assert_array_equal(a, b)
    assert sorted(whole.low) == sorted(strips.low) and sorted(whole.high) == sorted(strips.high)
    for k in whole.low:
        np.testing.assert_array_equal(whole.low[k], strips.low[k])
    for k in whole.high:
        np.testing.assert_array_equal(whole.high[k], strips.high[k])
    for i in whole.bases:
        np.testing.assert_array_equal(whole.bases[i], strips.bases[i])


OPTIONS = [
    {},
    {"envelope": False},
    {"noise": 3.0},
    {"soft_levels": 0, "envelope": False},  # maxabs: the hard rule on every level
    {"soft_levels": 2, "power": 2.5},  # the NumPy soft passes, then hard levels
    {"focus": 0},
    {"levels": 6},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "default")
@pytest.mark.parametrize("shape", [(301, 131, 3), (150, 263), (97, 140, 3)])
@pytest.mark.parametrize("strip_rows", [1, 16, 40, 1000])
def test_strips_give_the_whole_frame_bits(
    shape: tuple[int, ...], strip_rows: int, options: dict[str, Any]
) -> None:
    # odd and even sizes, grey and colour; 1000 rows: one strip (the whole-frame path)
    whole, strips = _both(shape, strip_rows, **options)
    _assert_same_state(whole, strips)
    depth = (np.random.default_rng(1).random(shape[:2]) * 2).astype(np.float32)
    for dtype in (None, np.uint8, np.uint16, np.float32):
        for d in (None, depth):
            expected = whole.result(d, dtype)
            got = strips.result(d, dtype)
            assert got.dtype == expected.dtype and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("split", [1, 2, 3, 4])
@pytest.mark.parametrize("colour", [False, True])
def test_every_strip_boundary_position(
    split: int, colour: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every strip height of the split level's grid up to the image, at split levels 1-4:
    # the strip boundaries fall on every row parity and every offset of the coarser grids
    monkeypatch.setattr(F, "STRIP_LEVEL", split)
    shape = (77, 90, 3) if colour else (77, 90)
    frames = _frames(shape, 2, seed=split)
    whole = WholeFrame()
    for i, frame in enumerate(frames):
        whole.add(i, frame)
    expected = whole.result(None, np.uint16)
    for strip_rows in range(1, 80, 1 << split):
        acc = F.PyramidAccumulator(strip_rows=strip_rows)
        for i, frame in enumerate(frames):
            acc.add(i, frame)
        _assert_same_state(whole, acc)
        np.testing.assert_array_equal(acc.result(None, np.uint16), expected)


@pytest.mark.parametrize("levels", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("rows", [1, 2, 3, 9, 17, 40])
def test_levels_and_tiny_images(levels: int, rows: int) -> None:
    # fewer levels than the split level, and images of a few rows (smaller than a strip
    # or than the halo): the same bits
    whole, strips = _both((rows, 37, 3), 8, levels=levels)
    _assert_same_state(whole, strips)
    np.testing.assert_array_equal(strips.result(None, np.uint8), whole.result(None, np.uint8))
    np.testing.assert_array_equal(strips.result(), whole.result())


def test_first_frame_taus_come_from_the_whole_level() -> None:
    # tau of a strip-made level is the quantile of the whole level's energy: a strip
    # holding only flat rows must not decide it (here the first 100 rows are flat but
    # for faint noise, which the noise floor's flattest blocks then measure)
    shape = (300, 200)
    rng = np.random.default_rng(3)
    frame = rng.random(shape).astype(np.float32)
    frame[:100] = 0.5 + 0.002 * rng.random((100, 200)).astype(np.float32)
    whole, strips = WholeFrame(noise=2.0), F.PyramidAccumulator(strip_rows=16, noise=2.0)
    whole.add(0, frame)
    strips.add(0, frame)
    assert strips.tau == whole.tau and strips.sigma2 == whole.sigma2 > 0
    # an independent look: tau of level 0 is 4 x the 10 % quantile of the whole energy
    band = frame - F._expand(F._reduce(frame), frame.shape)
    energy = F._blur5(band * band)
    assert strips.tau[0] >= 4.0 * float(np.quantile(energy, 0.1))


def test_fuse_in_strips_equals_fuse_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    # the pipeline's accumulator (strip_rows='auto'): tiny strips through a tiny budget
    # give the same fused image and depth map as one strip
    from convstack.stack import fuse
    from test_stack_fusion import two_depth_stack

    frames, _ = two_depth_stack(rows=140, cols=150, count=4)
    monkeypatch.setattr(F, "STRIP_BUDGET", 1 << 60)
    whole = fuse(frames, align="none")
    monkeypatch.setattr(F, "STRIP_BUDGET", 1)
    strips = fuse(frames, align="none")
    np.testing.assert_array_equal(strips.image, whole.image)
    np.testing.assert_array_equal(strips.depth, whole.depth)


def test_result_leaves_the_state_and_add_the_frame() -> None:
    frames = _frames((90, 70, 3), 3)
    copies = [f.copy() for f in frames]
    acc = F.PyramidAccumulator(strip_rows=8)
    for i, frame in enumerate(frames):
        acc.add(i, frame)
    for frame, copy in zip(frames, copies, strict=True):
        np.testing.assert_array_equal(frame, copy)
    first = acc.result(None, np.uint8)
    np.testing.assert_array_equal(acc.result(None, np.uint8), first)


def test_strips_hold_no_full_size_temporary() -> None:
    # traced peak of add (a later frame) and of result, beyond what they keep: the
    # whole-frame oracle needs more than two frames' worth (2.3 and 3.0 measured)
    import tracemalloc

    shape = (512, 384, 3)
    # stored channel by channel, as the pipeline hands them over (no planar copy)
    frames = [
        np.moveaxis(np.ascontiguousarray(np.moveaxis(f, -1, 0)), 0, -1) for f in _frames(shape, 2)
    ]
    frame_bytes = frames[0].nbytes

    def peaks(acc: Any) -> tuple[int, int]:
        acc.add(0, frames[0])
        tracemalloc.start()
        acc.add(1, frames[1])
        added = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        tracemalloc.start()
        out = acc.result(None, np.uint8)
        made = tracemalloc.get_traced_memory()[1] - out.nbytes
        tracemalloc.stop()
        return added, made

    whole = peaks(WholeFrame())
    strips = peaks(F.PyramidAccumulator(strip_rows=32))
    assert whole[0] > 2 * frame_bytes and whole[1] > 2 * frame_bytes  # the oracle does
    # measured 0.42 and 0.65 of a frame here (strips of 32 rows + halos, of 512 rows)
    assert strips[0] < 0.6 * frame_bytes  # two strips' levels, level 3 of the frame
    assert strips[1] < 0.8 * frame_bytes  # image levels 1-2 (1/4 + 1/16), one strip


def test_strip_rows_is_checked() -> None:
    with pytest.raises(ValueError, match=r"`strip_rows` must be >= 1; got 0\."):
        F.PyramidAccumulator(strip_rows=0)
    with pytest.raises(
        TypeError, match=r"`strip_rows` must be an int, 'auto' or None; got float\."
    ):
        F.PyramidAccumulator(strip_rows=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"got bool"):
        F.PyramidAccumulator(strip_rows=True)


# ------------------------------------------------------------------ strips.py arithmetic
@pytest.mark.parametrize("split", [1, 2, 3])
@pytest.mark.parametrize("rows", [1, 7, 8, 33, 64, 101])
def test_owned_rows_tile_every_level_and_needs_cover_the_reads(split: int, rows: int) -> None:
    sizes = S.level_sizes(rows, split + 1)
    step = S.strip_step(rows, 1, split)
    plans = [S.strip_needs(sizes, a, min(rows, a + step), split) for a in range(0, rows, step)]
    for k in range(split + 1):
        covered = [r for _, owns in plans for r in range(*owns[k])]
        assert covered == list(range(sizes[k]))  # each row once, in order
    for needs, owns in plans:
        for k in range(split):
            # a hand check of the reads: reduce reads 2i-2..2i+2, expand r//2-1..r//2+1,
            # the energy window r-2..r+2 (clipped to the level)
            lo, hi = needs[k + 1]
            assert needs[k][0] <= max(0, 2 * lo - 2) and needs[k][1] >= min(sizes[k], 2 * hi + 1)
            band = max(0, owns[k][0] - 2), min(sizes[k], owns[k][1] + 2)
            assert needs[k][0] <= band[0] and needs[k][1] >= band[1]
            assert lo <= max(0, band[0] // 2 - 1) and hi >= min(
                sizes[k + 1], (band[1] - 1) // 2 + 2
            )


def test_rows_for_budget() -> None:
    colour = S.rows_for_budget((4000, 6000, 3), 256 << 20)
    grey = S.rows_for_budget((4000, 6000), 256 << 20)
    assert colour % (1 << S.STRIP_LEVEL) == 0 and grey > colour > 64
    assert S.rows_for_budget((4000, 6000, 3), 512 << 20) > 1.9 * colour
    assert S.rows_for_budget((10, 10**6, 3), 1) == 1 << S.STRIP_LEVEL  # at least one unit
    with pytest.raises(ValueError, match=r"`budget` must be > 0; got 0\."):
        S.rows_for_budget((10, 10), 0)
    with pytest.raises(ValueError, match=r"`shape` must be \(rows, cols\[, channels\]\)"):
        S.rows_for_budget((10,), 1 << 20)


@pytest.mark.parametrize("shape", [(150, 140, 3), (131, 130)])
@pytest.mark.parametrize("envelope", [True, False])
def test_state_bytes_counts_the_running_state(shape: tuple[int, ...], envelope: bool) -> None:
    acc = F.PyramidAccumulator(strip_rows=16, envelope=envelope)
    for i, frame in enumerate(_frames(shape, 2)):
        acc.add(i, frame)
    held = sum(a.nbytes for name in ("bands", "energy", "weight") for a in getattr(acc, name))
    held += sum(a.nbytes for a in (*acc.low.values(), *acc.high.values()))
    channels = shape[2] if len(shape) == 3 else 1
    levels12 = sum(acc.bands[k].nbytes // channels * channels for k in (1, 2))  # the image's
    assert S.state_bytes(shape, acc.levels, envelope=envelope) == held + levels12
