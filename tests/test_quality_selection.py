"""The pyramid merge's default soft rule (issue 16): the finest level's weights
``(1 + E / tau) ** 8 * (1 + E / (EDGE_FLOOR * tau)) ** 8``, the coarser levels'
``(1 + E / tau) ** 32``; a sharper selection between nearly equal frames on clean
detail, the same averaging of noise near the floor."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from convstack.stack import fusion as F

_BINOMIAL = np.array([1, 4, 6, 4, 1], np.float64) / 16


def _window(values: np.ndarray) -> np.ndarray:
    """The energy window (5-tap binomial, mirrored borders) in float64, by SciPy."""
    once = ndi.correlate1d(values, _BINOMIAL, 0, mode="mirror")
    return ndi.correlate1d(once, _BINOMIAL, 1, mode="mirror")


def _texture(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Fine texture in [0.1, 0.9]: uniform noise smoothed a little (no flat areas)."""
    rng = np.random.default_rng(seed)
    return (0.1 + 0.8 * ndi.gaussian_filter(rng.random(shape), 0.7, mode="wrap")).astype(np.float32)


def _fused(frames: list[np.ndarray], power: float | None = None, **options: object) -> np.ndarray:
    acc = F.PyramidAccumulator(power=power, **options)  # type: ignore[arg-type]
    for i, frame in enumerate(frames):
        acc.add(i, frame)
    return np.asarray(acc.result(), np.float64)


def test_default_rule_is_the_documented_weighted_mean() -> None:
    # Computed directly in float64 (log-weights, SciPy's window) against the running
    # float32 sums, with a frame whose detail is 1000x stronger in a corner (energies
    # far above EDGE_FLOOR * tau there, near tau elsewhere)
    rng = np.random.default_rng(11)
    frames = [rng.random((40, 56)).astype(np.float32) * (0.2 + 0.3 * i) for i in range(4)]
    frames[2][:12, :16] *= 1000.0
    levels = 3
    got = _fused(frames, levels=levels, envelope=False)
    pyramids = [F.laplacian_pyramid(f, levels) for f in frames]
    fused = []
    for k in range(levels - 1):
        bands = [p[k].astype(np.float64) for p in pyramids]
        energy = [_window(b * b) for b in bands]
        tau = max(4.0 * float(np.quantile(energy[0].astype(np.float32), 0.1)), 1e-12)
        if k == 0:
            logs = [8 * np.log1p(e / tau) + 8 * np.log1p(e / (1024 * tau)) for e in energy]
        else:
            logs = [32 * np.log1p(e / tau) for e in energy]
        top = np.max(logs, axis=0)
        weights = [np.exp(lw - top) for lw in logs]
        fused.append(sum(w * b for w, b in zip(weights, bands, strict=True)) / sum(weights))
    fused.append(np.mean([p[-1].astype(np.float64) for p in pyramids], axis=0))
    expected = F.collapse([f.astype(np.float32) for f in fused]).astype(np.float64)
    # relative to the local magnitude (the corner is 1000x): the old rule (power 8
    # everywhere) is 3e-2 off, float32 rounding about 1e-6
    local = ndi.maximum_filter(np.abs(expected), size=13, mode="nearest")
    relative = float((np.abs(got - expected) / local).max())
    assert relative < 1e-5, relative
    old = _fused(frames, 8.0, levels=levels, envelope=False)
    assert float((np.abs(old - expected) / local).max()) > 1e-3


def test_sharp_frame_wins_over_its_slightly_blurred_copies() -> None:
    # One sharp textured image and copies blurred by 1 and 0.5 px (taken in first: the
    # first frame's energies set tau) (the best frame's neighbours in a stack: their fine
    # energies are close to the sharp one's): the result is the sharp image, closer
    # to it than the plain eighth power gets
    inner = (slice(8, -8), slice(8, -8))
    for seed in (3, 4):
        sharp = _texture((96, 128), seed)
        frames = [ndi.gaussian_filter(sharp, s, mode="wrap") for s in (1.0, 0.5)] + [sharp]

        def error(image: np.ndarray, sharp: np.ndarray = sharp) -> float:
            return float(np.sqrt(np.mean((image[inner] - sharp[inner]) ** 2)))

        blurred = error(frames[1])
        default, old = error(_fused(frames)), error(_fused(frames, 8.0))
        # measured: default 0.041-0.044 of the 0.5-px copy's error, the eighth power
        # 0.073-0.077 (default / old 0.57)
        assert default < 0.06 * blurred, default / blurred
        assert default < 0.7 * old, (default, old)


def test_noise_near_the_floor_is_averaged_as_before() -> None:
    # Flat grey with independent noise in every frame: every energy is near tau, far
    # below EDGE_FLOOR * tau, so the finest level averages as the eighth power did
    # (the bug set's out-of-focus background stays as grainy as before, not more)
    rng = np.random.default_rng(5)
    frames = [np.float32(0.5) + rng.normal(0, 0.02, (96, 128)).astype(np.float32) for _ in range(6)]
    fine = (slice(8, -8), slice(8, -8))

    def grain(image: np.ndarray) -> float:
        return float(ndi.laplace(image)[fine].std())

    single = float(np.median([grain(f.astype(np.float64)) for f in frames]))
    default = grain(_fused(frames, envelope=False))
    old = grain(_fused(frames, 8.0, envelope=False))
    # measured: default / median frame 0.838, the eighth power 0.836
    assert default < 0.9 * single, default / single  # still below any one frame
    assert default < 1.02 * old, default / old


@pytest.mark.parametrize("power", [8.0, 3.0])
def test_a_given_power_is_the_plain_rule_on_every_level(power: float) -> None:
    # power=p: (1 + E / tau) ** p everywhere, no edge factor (the rule before issue 16's
    # default): levels 0 and 1 weighted alike
    acc = F.PyramidAccumulator(power=power)
    assert [acc._power(k) for k in range(3)] == [power] * 3
    assert all(np.isinf(acc._edge(k)) for k in range(3))
    default = F.PyramidAccumulator()
    assert [default._power(k) for k in range(3)] == [F.FINE_POWER, *[F.COARSE_POWER] * 2]
    assert default._edge(0) == F.EDGE_FLOOR and np.isinf(default._edge(1))
