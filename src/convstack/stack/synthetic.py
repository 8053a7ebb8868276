"""Synthetic focus stacks with known truth: a scene, its depth, and a rendered stack.

A :class:`Scene` is a few layers (textured planes and objects), each with a full colour
field, an anti-aliased coverage (alpha) and a distance ``z`` per pixel. Its
all-in-focus image and depth map are the truth a focus stacker should recover.

:func:`render_stack` photographs the scene with a thin-lens defocus model: a point at
distance ``z`` seen with the lens focused at ``z_f`` spreads over a disk (pillbox) of
radius ``aperture * |1/z - 1/z_f|`` pixels. Layers are cut into slabs of nearly equal
``1/z``; each slab's premultiplied colour and alpha are blurred with its disk (our
engine's FFT method) and composited back to front (``over``), so a blurred foreground
veils a sharp background and a sharp foreground cuts a blurred background, as through
a real lens. This is what produces halos in naive fusion. Then each frame is warped by
a magnification change (focus breathing) and a shift, and sensor noise is added.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _validate as v
from ..convolve import correlate

__all__ = ["Layer", "RenderedStack", "Scene", "SCENE_KINDS", "make_scene", "render_stack"]

#: Scene kinds understood by :func:`make_scene`.
SCENE_KINDS = ("default", "halo", "occlusion", "plane")

_F32 = NDArray[np.float32]


@dataclass(frozen=True)
class Layer:
    """One surface of a scene.

    Attributes
    ----------
    color : ndarray, (rows, cols, 3) float32
        Colour everywhere, also where the layer is hidden or absent.
    alpha : ndarray, (rows, cols) float32
        Coverage in [0, 1] (anti-aliased at the outline).
    depth : ndarray, (rows, cols) float32
        Distance ``z`` of the surface at each pixel (> 0).
    """

    color: _F32
    alpha: _F32
    depth: _F32


@dataclass(frozen=True)
class Scene:
    """A synthetic scene and its truth.

    Attributes
    ----------
    image : ndarray, (rows, cols, 3) float32
        The all-in-focus image, values in [0, 1].
    depth : ndarray, (rows, cols) float32
        Distance ``z`` of the visible surface at each pixel.
    layers : tuple of Layer
        The surfaces, back to front (what :func:`render_stack` blurs).
    """

    image: _F32
    depth: _F32
    layers: tuple[Layer, ...] = field(repr=False)


@dataclass(frozen=True)
class RenderedStack:
    """A focus stack rendered from a :class:`Scene`.

    Attributes
    ----------
    frames : ndarray, (frames, rows, cols, 3) float32
        The photographs, values in [0, 1].
    focus_distances : ndarray, (frames,) float64
        The distance each frame is focused at, nearest first by default.
    transforms : ndarray, (frames, 3, 3) float64
        For each frame, the matrix mapping scene (= reference frame) homogeneous
        ``(row, col, 1)`` coordinates to that frame's coordinates:
        ``frame[M @ p] == blurred_scene[p]``. The reference frame's is the identity.
    reference : int
        The frame with the identity transform (the middle one, ``n_frames // 2``).
    aperture : float
        Blur-disk radius in pixels per unit of ``|1/z - 1/z_focus|``.
    """

    frames: _F32
    focus_distances: NDArray[np.float64]
    transforms: NDArray[np.float64]
    reference: int
    aperture: float


# ------------------------------------------------------------------ textures


def _noise(rng: np.random.Generator, shape: tuple[int, int], beta: float) -> NDArray[np.float64]:
    """Zero-mean, unit-std noise with a 1/f**beta amplitude spectrum (cloud-like)."""
    rows, cols = shape
    white = rng.standard_normal(shape)
    fr = np.fft.fftfreq(rows)[:, None]
    fc = np.fft.rfftfreq(cols)[None, :]
    radius = np.sqrt(fr * fr + fc * fc)
    radius[0, 0] = 1.0
    spectrum = np.fft.rfft2(white) / radius**beta
    spectrum[0, 0] = 0.0
    field_ = np.fft.irfft2(spectrum, s=shape)
    return (field_ - field_.mean()) / (field_.std() + 1e-12)


def _squash(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Map a zero-mean field into (0, 1) smoothly."""
    return 0.5 + 0.5 * np.tanh(x)


def _stripes(
    shape: tuple[int, int], period: float, angle: float, phase: float
) -> NDArray[np.float64]:
    rows, cols = np.indices(shape, dtype=np.float64)
    u = rows * math.sin(angle) + cols * math.cos(angle)
    return np.sin(2 * math.pi * u / period + phase)


def _palette(rng: np.random.Generator, dark: bool = False) -> tuple[NDArray[Any], NDArray[Any]]:
    """Two colours to blend by a texture value."""
    hue = rng.random(3)
    low = 0.05 + 0.25 * hue * (0.4 if dark else 1.0)
    high = np.clip(low + 0.3 + 0.5 * rng.random(3) * (0.3 if dark else 1.0), 0, 1)
    return low, high


def _colourise(t: NDArray[np.float64], low: NDArray[Any], high: NDArray[Any]) -> _F32:
    t = np.clip(t, 0.0, 1.0)[..., None]
    return (low * (1.0 - t) + high * t).astype(np.float32)


def _texture(rng: np.random.Generator, shape: tuple[int, int], style: int) -> NDArray[np.float64]:
    """A textured field in [0, 1] with fine detail (so sharpness is measurable)."""
    coarse = _noise(rng, shape, 1.6)
    fine = _noise(rng, shape, 0.6)
    if style == 0:  # mottled: clouds with grain
        t = 0.6 * coarse + 0.5 * fine
    elif style == 1:  # fine stripes over clouds (fabric, wood grain)
        period = 3.0 + 4.0 * rng.random()
        t = 0.4 * coarse + 0.8 * _stripes(shape, period, rng.random() * math.pi, rng.random() * 6)
        t += 0.25 * fine
    else:  # speckles: bright dots on a mottled base (stone, bark)
        spots = (_noise(rng, shape, 0.2) > 1.6).astype(np.float64)
        t = 0.5 * coarse + 0.3 * fine + 1.5 * spots
    return _squash(t)


# ------------------------------------------------------------------ shapes


def _coverage(signed_distance: NDArray[np.float64]) -> _F32:
    """Anti-aliased alpha from a signed distance in pixels (negative inside)."""
    return np.clip(0.5 - signed_distance, 0.0, 1.0).astype(np.float32)


def _box_sd(
    rows: NDArray[Any], cols: NDArray[Any], centre: tuple[float, float], half: tuple[float, float]
) -> NDArray[np.float64]:
    qr = np.abs(rows - centre[0]) - half[0]
    qc = np.abs(cols - centre[1]) - half[1]
    outside = np.hypot(np.maximum(qr, 0), np.maximum(qc, 0))
    return outside + np.minimum(np.maximum(qr, qc), 0)


def _shape_sd(
    rng: np.random.Generator, shape: tuple[int, int], kind: str, scale: float
) -> NDArray[np.float64]:
    rows, cols = np.indices(shape, dtype=np.float64)
    centre = (shape[0] * (0.15 + 0.6 * rng.random()), shape[1] * (0.1 + 0.8 * rng.random()))
    radius = scale * (0.6 + 0.5 * rng.random())
    dr, dc = rows - centre[0], cols - centre[1]
    dist = np.hypot(dr, dc)
    if kind == "disk":
        return dist - radius
    if kind == "ring":
        return np.abs(dist - radius) - radius * 0.25
    if kind == "blob":
        theta = np.arctan2(dr, dc)
        lobes = int(rng.integers(3, 7))
        wobble = 1 + 0.25 * np.sin(lobes * theta + rng.random() * 6)
        return (dist - radius * wobble) / (1 + 0.25 * lobes * 0.5)
    if kind == "box":
        half = (radius * (0.5 + 0.6 * rng.random()), radius * (0.6 + 0.6 * rng.random()))
        return _box_sd(rows, cols, centre, half) - 0.15 * radius
    # "bar": a long thin stick, the classic halo maker
    angle = rng.random() * math.pi
    u = dr * math.cos(angle) - dc * math.sin(angle)
    w = dr * math.sin(angle) + dc * math.cos(angle)
    width = max(1.5, 0.04 * scale)
    return _box_sd(u, w, (0.0, 0.0), (width, radius * 2.0))


# ------------------------------------------------------------------ scenes


def _flat(shape: tuple[int, int], z: float) -> _F32:
    return np.full(shape, z, dtype=np.float32)


def _composite(layers: tuple[Layer, ...]) -> tuple[_F32, _F32]:
    """All-in-focus image (``over`` back to front) and the visible depth."""
    shape = layers[0].alpha.shape
    image = np.zeros((*shape, 3), dtype=np.float32)
    depth = np.zeros(shape, dtype=np.float32)
    for layer in layers:
        a = layer.alpha[..., None]
        image = image * (1.0 - a) + layer.color * a
        depth = np.where(layer.alpha >= 0.5, layer.depth, depth)
    return np.clip(image, 0.0, 1.0).astype(np.float32), depth.astype(np.float32)


def _default_layers(rng: np.random.Generator, shape: tuple[int, int]) -> list[Layer]:
    rows, cols = shape
    scale = min(rows, cols)
    r_idx = np.arange(rows, dtype=np.float64)[:, None]
    c_idx = np.arange(cols, dtype=np.float64)[None, :]
    layers: list[Layer] = []

    # Back wall, z = 4: textured, with a smooth sky-like gradient across its top.
    low, high = _palette(rng)
    wall_t = _texture(rng, shape, 0)
    sky = np.clip(1.0 - r_idx / (0.3 * rows), 0.0, 1.0) ** 0.7 * np.ones((1, cols))
    wall = _colourise(wall_t, low, high)
    sky_colour = np.array([0.55, 0.7, 0.9]) * (0.85 + 0.15 * (1 - r_idx / rows))[..., None]
    wall = (wall * (1 - sky[..., None]) + sky_colour * sky[..., None]).astype(np.float32)
    layers.append(Layer(wall, np.ones(shape, np.float32), _flat(shape, 4.0)))

    # Ground plane from the horizon (z = 3.6) down to the bottom row (z = 1.25):
    # inverse depth is linear in the row, as for a real tilted plane.
    horizon = 0.58 * rows
    frac = np.clip((r_idx - horizon) / (rows - 1 - horizon), 0.0, 1.0)
    inv_z = 1 / 3.6 + (1 / 1.25 - 1 / 3.6) * frac
    z = (1.0 / inv_z) * np.ones((1, cols))
    world_x = (c_idx - cols / 2) * z / cols
    tiles = np.tanh(3 * np.sin(2 * math.pi * world_x / 0.35)) * np.tanh(
        3 * np.sin(2 * math.pi * z / 0.35)
    )
    fade = np.clip(frac * 4, 0, 1)
    ground_t = _squash(0.9 * tiles * fade + 0.6 * _noise(rng, shape, 0.8))
    low, high = _palette(rng)
    ground_alpha = _coverage(horizon - r_idx + 0 * c_idx)
    layers.append(Layer(_colourise(ground_t, low, high), ground_alpha, z.astype(np.float32)))

    # Objects at various distances, drawn far to near.
    kinds = ["box", "disk", "blob", "ring", "box", "blob", "bar"]
    distances = np.sort(rng.uniform(1.0, 3.4, len(kinds)))[::-1]
    objects: list[Layer] = []
    for index, (kind, dist) in enumerate(zip(kinds, distances, strict=True)):
        sd = _shape_sd(rng, shape, kind, scale * (0.16 if kind != "bar" else 0.25))
        if index == 2:  # one smooth object: a shaded ball with faint grain
            shade = _squash(-(sd / (scale * 0.1)) - 0.5 + 0.15 * _noise(rng, shape, 0.6))
            colour = _colourise(shade, *_palette(rng))
        else:
            colour = _colourise(_texture(rng, shape, index % 3), *_palette(rng))
        alpha = _coverage(sd)
        lowest = int(np.flatnonzero(alpha.any(axis=1))[-1]) if alpha.any() else 0
        if lowest > horizon:  # it overlaps the ground: stand in front of it, not behind
            dist = min(float(dist), 0.95 * float(z[lowest, 0]))
        objects.append(Layer(colour, alpha, _flat(shape, float(dist))))
    objects.sort(key=lambda layer: -float(layer.depth[0, 0]))  # painter's order: far first
    return layers + objects


def _halo_layers(rng: np.random.Generator, shape: tuple[int, int]) -> list[Layer]:
    scale = min(shape)
    # Dark, finely textured background far away.
    t = _squash(0.5 * _noise(rng, shape, 1.4) + 0.6 * _noise(rng, shape, 0.5))
    back = _colourise(t, np.array([0.02, 0.02, 0.03]), np.array([0.22, 0.2, 0.25]))
    layers = [Layer(back, np.ones(shape, np.float32), _flat(shape, 5.0))]
    # Bright thin sticks just behind the main object.
    for _ in range(3):
        sd = _shape_sd(rng, shape, "bar", scale * 0.3)
        colour = _colourise(_texture(rng, shape, 1), np.array([0.7, 0.65, 0.5]), np.ones(3))
        layers.append(Layer(colour, _coverage(sd), _flat(shape, 1.15)))
    # A bright, sharp-edged object in front, with fine dark detail on it.
    rows, cols = np.indices(shape, dtype=np.float64)
    centre = (shape[0] / 2, shape[1] / 2)
    dr, dc = rows - centre[0], cols - centre[1]
    theta = np.arctan2(dr, dc)
    star = np.hypot(dr, dc) - scale * 0.24 * (1 + 0.3 * np.sin(5 * theta))
    t = _squash(1.5 + 0.8 * _stripes(shape, 4.0, 0.6, 0.0) + 0.5 * _noise(rng, shape, 0.6))
    colour = _colourise(t, np.array([0.35, 0.3, 0.2]), np.array([1.0, 0.97, 0.9]))
    layers.append(Layer(colour, _coverage(star / 1.2), _flat(shape, 1.0)))
    return layers


def _occlusion_layers(rng: np.random.Generator, shape: tuple[int, int]) -> list[Layer]:
    scale = min(shape)
    rows, cols = np.indices(shape, dtype=np.float64)
    # a textured wall far away
    wall = _colourise(_texture(rng, shape, 0), *_palette(rng))
    layers = [Layer(wall, np.ones(shape, np.float32), _flat(shape, 4.0))]
    # a ring in the middle distance, left of centre
    dist = np.hypot(rows - 0.55 * shape[0], cols - 0.42 * shape[1])
    radius = 0.3 * scale
    ring = np.abs(dist - radius) - 0.25 * radius
    colour = _colourise(_texture(rng, shape, 2), *_palette(rng))
    layers.append(Layer(colour, _coverage(ring), _flat(shape, 2.3)))
    # a thin stick near the lens, across the ring's left side (the demo's stick)
    angle = math.radians(25.0)
    dr, dc = rows - 0.5 * shape[0], cols - 0.36 * shape[1]
    along = dr * math.cos(angle) - dc * math.sin(angle)
    across = dr * math.sin(angle) + dc * math.cos(angle)
    half = (0.42 * shape[0], max(2.0, 0.01 * scale))
    stick = _box_sd(along, across, (0.0, 0.0), half)
    colour = _colourise(_texture(rng, shape, 1), *_palette(rng))
    layers.append(Layer(colour, _coverage(stick), _flat(shape, 1.07)))
    return layers


def _plane_layers(rng: np.random.Generator, shape: tuple[int, int]) -> list[Layer]:
    texture = 0.5 + 0.15 * (_texture(rng, shape, 0) - 0.5)  # mottled, low contrast
    colour = _colourise(texture, *_palette(rng))
    return [Layer(colour, np.ones(shape, np.float32), _flat(shape, 2.0))]


def make_scene(
    shape: tuple[int, int] = (480, 640), *, seed: int = 0, kind: str = "default"
) -> Scene:
    """Build a synthetic scene with known all-in-focus image and depth.

    Parameters
    ----------
    shape : (rows, cols)
        Image size, each at least 16.
    seed : int
        Seed of the random textures and placements (same seed, same scene).
    kind : {'default', 'halo', 'occlusion', 'plane'}
        'default': a textured back wall at z = 4 with a smooth sky band, a ground plane
        receding from z = 1.25 to 3.6, and seven textured objects (boxes, disks, a ring,
        blobs, a thin bar, one smooth shaded ball) between z = 1 and 3.4.
        'halo': a bright, finely textured star at z = 1 and bright thin sticks at
        z = 1.15 in front of a dark textured background at z = 5, the case where
        naive fusion leaves a glow around the object.
        'occlusion': a thin textured stick at z = 1.07 (its width 2 % of the shorter
        side, at least 4 px) across a textured ring at z = 2.3 before a textured wall
        at z = 4, at fixed places (the last layer is the stick): where the near layer
        must stay whole over the far one.
        'plane': one mottled, low-contrast plane at z = 2 (a flat region whose depth
        is one value; its depth span is zero, so pass ``render_stack`` an
        ``aperture`` or ``focus_distances``).

    Returns
    -------
    Scene
        ``image`` (rows, cols, 3) float32 in [0, 1], ``depth`` (rows, cols) float32
        distances, and the ``layers`` used for rendering.

    Examples
    --------
    >>> scene = make_scene((32, 48), seed=1)
    >>> scene.image.shape, scene.image.dtype.name, scene.depth.shape
    ((32, 48, 3), 'float32', (32, 48))
    """
    rows, cols = v.per_axis_ints(shape, "shape", 2, minimum=16)
    size = (rows, cols)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise v.fail("seed", "be an int", seed, kind=TypeError)
    v.choice(kind, "kind", SCENE_KINDS)
    rng = np.random.default_rng(int(seed))
    build = {
        "default": _default_layers,
        "halo": _halo_layers,
        "occlusion": _occlusion_layers,
        "plane": _plane_layers,
    }[kind]
    layers = build(rng, size)
    frozen = tuple(layers)
    image, depth = _composite(frozen)
    return Scene(image=image, depth=depth, layers=frozen)


# ------------------------------------------------------------------ rendering


def _pillbox(radius: float) -> _F32:
    """Uniform disk of ``radius`` pixels with partial-coverage edge weights; sums to 1."""
    half = int(math.ceil(radius + 0.5))
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    dist = np.hypot(offsets[:, None], offsets[None, :])
    weights = np.clip(radius + 0.5 - dist, 0.0, 1.0)
    return (weights / weights.sum()).astype(np.float32)


@dataclass
class _Slab:
    inv_z: float
    box: tuple[slice, slice]
    rgba: _F32  # premultiplied colour and alpha, cropped to ``box``


def _slabs(scene: Scene, step: float, margin: int) -> list[list[_Slab]]:
    """Cut each layer into slabs of nearly constant 1/z (bins of width ``step``).

    Returns one list of slabs per layer, layers back to front.
    """
    rows, cols = scene.image.shape[:2]
    groups: list[list[_Slab]] = []
    for layer in scene.layers:
        inv = 1.0 / layer.depth.astype(np.float64)
        present = layer.alpha > 0
        if not present.any():
            continue
        low = float(inv[present].min())
        bins = np.floor((inv - low) / step).astype(np.int64) if step > 0 else np.zeros_like(inv)
        slabs = []
        for b in np.unique(bins[present]):
            member = present & (bins == b)
            r_idx = np.flatnonzero(member.any(axis=1))
            c_idx = np.flatnonzero(member.any(axis=0))
            box = (
                slice(max(r_idx[0] - margin, 0), min(r_idx[-1] + margin + 1, rows)),
                slice(max(c_idx[0] - margin, 0), min(c_idx[-1] + margin + 1, cols)),
            )
            alpha = np.where(member, layer.alpha, 0.0)[box].astype(np.float32)
            rgba = np.concatenate([layer.color[box] * alpha[..., None], alpha[..., None]], axis=-1)
            slabs.append(_Slab(float(inv[member].mean()), box, rgba.astype(np.float32)))
        groups.append(slabs)
    return groups


def _defocus(
    groups: list[list[_Slab]], shape: tuple[int, int], inv_focus: float, aperture: float
) -> _F32:
    """Blur every slab by its disk and composite the layers back to front.

    The slabs of one layer partition its coverage, so their blurred premultiplied
    colours add up (a tilted plane stays seamless); whole layers are composited
    with ``over``. The result is divided by the accumulated coverage, which undoes
    the darkening that the zero border would cause at the image edges.
    """
    acc = np.zeros((*shape, 4), dtype=np.float32)
    for slabs in groups:
        layer = np.zeros((*shape, 4), dtype=np.float32) if len(slabs) > 1 else None
        for slab in slabs:
            radius = aperture * abs(slab.inv_z - inv_focus)
            rgba = slab.rgba
            if radius >= 0.5:
                kernel = _pillbox(radius)
                rgba = correlate(rgba, kernel, mode="constant", channel_axis=-1, method="fft")
            if layer is None:
                region = acc[slab.box]
                region *= 1.0 - np.clip(rgba[..., 3:], 0.0, 1.0)
                region += rgba
            else:
                layer[slab.box] += rgba
        if layer is not None:
            acc *= 1.0 - np.clip(layer[..., 3:], 0.0, 1.0)
            acc += layer
    coverage = np.maximum(acc[..., 3:], 1e-6)
    return np.clip(acc[..., :3] / coverage, 0.0, 1.0).astype(np.float32)


def _cubic_weights(t: NDArray[np.float64]) -> NDArray[np.float64]:
    """Keys cubic convolution weights (a = -0.5) for taps at -1, 0, 1, 2."""
    a = -0.5
    d = np.stack([1 + t, t, 1 - t, 2 - t], axis=-1)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, far)


def _resample_axis(image: _F32, coords: NDArray[np.float64], axis: int) -> _F32:
    """Sample ``image`` at fractional ``coords`` along ``axis`` (cubic, edge clamped)."""
    base = np.floor(coords)
    weights = _cubic_weights(coords - base).astype(np.float32)
    n = image.shape[axis]
    out = np.zeros(image.shape[:axis] + (coords.size,) + image.shape[axis + 1 :], np.float32)
    for tap in range(4):
        index = np.clip(base.astype(np.int64) + tap - 1, 0, n - 1)
        w_shape = [1] * image.ndim
        w_shape[axis] = coords.size
        out += np.take(image, index, axis=axis) * weights[:, tap].reshape(w_shape)
    return out


def _warp(image: _F32, matrix: NDArray[np.float64]) -> _F32:
    """``out[q] = image[M^-1 q]`` for an axis-aligned scale-and-shift matrix ``M``."""
    inverse = np.linalg.inv(matrix)
    rows = inverse[0, 0] * np.arange(image.shape[0]) + inverse[0, 2]
    cols = inverse[1, 1] * np.arange(image.shape[1]) + inverse[1, 2]
    return _resample_axis(_resample_axis(image, rows, 0), cols, 1)


def _transforms(
    n: int, shape: tuple[int, int], breathing: float, shift: float, rng: np.random.Generator
) -> NDArray[np.float64]:
    reference = n // 2
    centre = ((shape[0] - 1) / 2, (shape[1] - 1) / 2)
    mats = np.zeros((n, 3, 3))
    for k in range(n):
        s = (1.0 + breathing) ** (k - reference)
        offset = rng.uniform(-shift, shift, 2) if k != reference else np.zeros(2)
        mats[k] = [
            [s, 0.0, centre[0] * (1 - s) + offset[0]],
            [0.0, s, centre[1] * (1 - s) + offset[1]],
            [0.0, 0.0, 1.0],
        ]
    return mats


def render_stack(
    scene: Scene,
    n_frames: int = 7,
    *,
    focus_distances: Any = None,
    aperture: float | None = None,
    breathing: float = 0.0,
    shift: float = 0.0,
    noise: float = 0.0,
    seed: int = 0,
    resample: Callable[[_F32, NDArray[np.float64]], _F32] | None = None,
) -> RenderedStack:
    """Photograph ``scene`` at several focus distances.

    Parameters
    ----------
    scene : Scene
        From :func:`make_scene`.
    n_frames : int
        Number of frames (ignored when ``focus_distances`` is given).
    focus_distances : sequence of float, optional
        Distance each frame is focused at. Default: ``n_frames`` steps even in
        ``1/z`` from the nearest to the farthest point of the scene.
    aperture : float, optional
        Blur-disk radius in pixels per unit of ``|1/z - 1/z_focus|``. Default: such
        that the largest possible blur (near end focused, far end seen) is
        ``min(rows, cols) / 48`` pixels (10 px at 480 rows); for a flat scene, that
        the frames focused farthest apart see that blur. 0 gives a pinhole.
    breathing : float
        Relative magnification change per frame: frame ``k`` is magnified by
        ``(1 + breathing) ** (k - reference)`` about the image centre.
    shift : float
        Each frame but the reference is shifted by a random ``(d_row, d_col)`` drawn
        uniformly from ``[-shift, shift]`` pixels.
    noise : float
        Standard deviation of Gaussian sensor noise (image range is [0, 1]).
    seed : int
        Seed of the shifts and the noise.
    resample : callable, optional
        ``resample(image, matrix)``: the defocused scene (rows, cols, 3) float32 seen
        through a frame's transform (``out[q] = image[matrix^-1 q]``, edges repeated),
        for the frames that move. Default: the renderer's separable Keys cubic, which
        softens fine detail (at half-pixel phases by up to a third) as no camera does;
        a sharper one (a bench passes SciPy's quintic spline) models a camera better.

    Returns
    -------
    RenderedStack
        Frames (frames, rows, cols, 3) float32 in [0, 1], focus distances, and the
        true transforms (scene -> frame coordinates; the reference frame,
        ``n_frames // 2``, is the identity).

    Notes
    -----
    Blur happens in scene coordinates, then each frame is resampled (Keys cubic,
    edges clamped) by its transform, so a few border pixels of magnified-out frames
    repeat the edge. Layers are cut into slabs of ``1/z`` so narrow that blur radii
    within one differ by at most 0.5 px.

    Examples
    --------
    >>> stack = render_stack(make_scene((32, 32), seed=0), 3, seed=0)
    >>> stack.frames.shape, stack.reference
    ((3, 32, 32, 3), 1)
    """
    if not isinstance(scene, Scene):
        raise v.fail("scene", "be a Scene from make_scene", scene, kind=TypeError)
    shape = scene.image.shape[:2]
    inv_depth = 1.0 / scene.depth.astype(np.float64)
    inv_near, inv_far = float(inv_depth.max()), float(inv_depth.min())
    if focus_distances is None:
        if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)):
            raise v.fail("n_frames", "be an int", n_frames, kind=TypeError)
        if n_frames < 1:
            raise v.fail("n_frames", "be >= 1", n_frames)
        inv_focus = np.linspace(inv_near, inv_far, int(n_frames))
        distances = 1.0 / inv_focus
    else:
        distances = np.atleast_1d(v.as_real_array(focus_distances, "focus_distances"))
        distances = distances.astype(np.float64)
        if distances.ndim != 1 or not np.all(np.isfinite(distances)) or np.any(distances <= 0):
            raise v.fail("focus_distances", "be a 1-D sequence of distances > 0", distances)
        inv_focus = 1.0 / distances
    if aperture is None:
        span = inv_near - inv_far
        if span < 1e-6:  # a flat scene: the blur's scale comes from the focus range
            span = float(np.ptp(inv_focus))
        aperture = min(shape) / 48.0 / span if span >= 1e-6 else 0.0
    aperture = v.positive_float(aperture, "aperture", allow_zero=True)
    shift = v.positive_float(shift, "shift", allow_zero=True)
    noise = v.positive_float(noise, "noise", allow_zero=True)
    breathing = v.real_number(breathing, "breathing")
    if not (math.isfinite(breathing) and -0.5 < breathing < 0.5):
        raise v.fail("breathing", "lie in (-0.5, 0.5)", breathing)
    if resample is not None and not callable(resample):
        raise v.fail("resample", "be a callable or None", resample, kind=TypeError)
    rng = np.random.default_rng(int(seed))

    n = distances.size
    max_radius = aperture * float(np.max(np.abs(inv_focus[:, None] - [inv_near, inv_far])))
    step = 0.5 / aperture if aperture > 0 else 0.0
    groups = _slabs(scene, step, margin=int(math.ceil(max_radius)) + 2)
    transforms = _transforms(n, shape, breathing, shift, rng)
    frames = np.empty((n, *shape, 3), dtype=np.float32)
    identity = np.eye(3)
    for k in range(n):
        frame = _defocus(groups, shape, float(inv_focus[k]), aperture)
        if not np.allclose(transforms[k], identity):
            frame = (_warp if resample is None else resample)(frame, transforms[k])
        if noise > 0:
            frame = frame + rng.normal(0.0, noise, frame.shape).astype(np.float32)
        frames[k] = np.clip(frame, 0.0, 1.0)
    return RenderedStack(
        frames=frames,
        focus_distances=distances,
        transforms=transforms,
        reference=n // 2,
        aperture=float(aperture),
    )
