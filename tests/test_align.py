"""Alignment: the oracle is the transform used to render the moving frame.

Frames are sums of random cosines evaluated analytically at transformed
coordinates, so the moving frame is exact (no interpolation error) and its
Gaussian blur is exact too (each cosine's amplitude times exp(-2 pi^2 sigma^2 f^2)).
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi

from convstack.stack._registrar import Registrar
from convstack.stack._source import FrameSource
from convstack.stack.align import (
    WORK_PIXELS,
    estimate_gain,
    estimate_transform,
    gray_pyramid,
    to_gray,
    work_level,
)
from convstack.stack.depth import focus_gray
from convstack.stack.errors import AlignmentError
from convstack.stack.fusion import decimate
from convstack.warp import warp

SHAPE = (192, 256)


def _scene(seed: int, n: int = 60) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.01, 0.2, n)
    theta = rng.uniform(0.0, np.pi, n)
    phase = rng.uniform(0.0, 2.0 * np.pi, n)
    amp = rng.uniform(0.5, 1.0, n) / np.sqrt(n)
    return freq * np.cos(theta), freq * np.sin(theta), phase, amp


def _render(
    scene: tuple[np.ndarray, ...],
    to_moving: np.ndarray | None = None,
    *,
    shape: tuple[int, int] = SHAPE,
    sigma: float = 0.0,
    noise: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """The frame whose pixel ``to_moving @ p`` shows what the reference shows at ``p``."""
    fy, fx, phase, amp = scene
    inv = np.linalg.inv(np.eye(3) if to_moving is None else to_moving)
    r, c = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    w = inv[2, 0] * r + inv[2, 1] * c + inv[2, 2]
    y = (inv[0, 0] * r + inv[0, 1] * c + inv[0, 2]) / w
    x = (inv[1, 0] * r + inv[1, 1] * c + inv[1, 2]) / w
    out = np.zeros(shape)
    for k in range(len(fy)):
        a = amp[k] * np.exp(-2.0 * np.pi**2 * sigma**2 * (fy[k] ** 2 + fx[k] ** 2))
        out += a * np.cos(2.0 * np.pi * (fy[k] * y + fx[k] * x) + phase[k])
    if noise:
        out += np.random.default_rng(seed).normal(0.0, noise, shape)
    return out.astype(np.float32)


def _corner_rms(estimate: np.ndarray, truth: np.ndarray, shape: tuple[int, int] = SHAPE) -> float:
    h, w = shape
    pts = np.array([[0, 0, 1], [0, w - 1, 1], [h - 1, 0, 1], [h - 1, w - 1, 1]], float)
    a = pts @ estimate.T
    b = pts @ truth.T
    diff = a[:, :2] / a[:, 2:] - b[:, :2] / b[:, 2:]
    return float(np.sqrt((diff**2).sum(axis=1).mean()))


def _similarity(scale: float, degrees: float, shift: tuple[float, float]) -> np.ndarray:
    """Scale and rotation about the image centre, then a shift; (row, col) coordinates."""
    t = np.deg2rad(degrees)
    lin = scale * np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    centre = np.array([(SHAPE[0] - 1) / 2.0, (SHAPE[1] - 1) / 2.0])
    m = np.eye(3)
    m[:2, :2] = lin
    m[:2, 2] = centre - lin @ centre + np.asarray(shift)
    return m


TRUTHS = {
    "translation": np.array([[1.0, 0.0, 3.3], [0.0, 1.0, -17.6], [0.0, 0.0, 1.0]]),
    "similarity": _similarity(1.025, 1.7, (12.0, -8.5)),
    "affine": _similarity(0.98, -2.0, (9.0, 14.0))
    @ np.array([[1.0, 0.012, 0.0], [0.006, 1.01, 0.0], [0.0, 0.0, 1.0]]),
    "homography": _similarity(1.01, 1.0, (3.0, 4.0))
    @ np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1e-5, 2e-5, 1.0]]),
}


@pytest.mark.parametrize("model", list(TRUTHS))
@pytest.mark.parametrize(("sigma", "noise"), [(0.0, 0.0), (2.0, 0.02)])
def test_known_transform_is_recovered(model: str, sigma: float, noise: float) -> None:
    scene = _scene(1)
    truth = TRUTHS[model]
    reference = _render(scene)
    moving = _render(scene, truth, sigma=sigma, noise=noise, seed=5)
    estimate = estimate_transform(reference, moving, model=model)
    assert _corner_rms(estimate, truth) < 0.05
    assert estimate[2, 2] == 1.0


@pytest.mark.parametrize("seed", range(4))
def test_random_focus_breathing_is_recovered(seed: int) -> None:
    """Scale 0.97-1.03, rotation up to 2 degrees, shift up to 20 px, blur 2, noise."""
    rng = np.random.default_rng(100 + seed)
    truth = _similarity(
        rng.uniform(0.97, 1.03),
        rng.uniform(-2.0, 2.0),
        (rng.uniform(-20.0, 20.0), rng.uniform(-20.0, 20.0)),
    )
    scene = _scene(seed)
    reference = _render(scene)
    moving = _render(scene, truth, sigma=2.0, noise=0.02, seed=seed)
    # Either frame may be the sharper one.
    if seed % 2:
        estimate = estimate_transform(reference, moving)
        assert _corner_rms(estimate, truth) < 0.05
    else:
        estimate = estimate_transform(moving, reference)
        assert _corner_rms(estimate, np.linalg.inv(truth) / np.linalg.inv(truth)[2, 2]) < 0.05


def test_blur_matching_reduces_the_focus_bias() -> None:
    scene = _scene(0)
    truth = TRUTHS["homography"]
    reference = _render(scene)
    moving = _render(scene, truth, sigma=2.0)
    matched = _corner_rms(estimate_transform(reference, moving, model="homography"), truth)
    plain = _corner_rms(
        estimate_transform(reference, moving, model="homography", match_blur=False), truth
    )
    assert matched < plain


def test_identical_frames_give_the_identity() -> None:
    frame = _render(_scene(2))
    estimate = estimate_transform(frame, frame.copy(), model="affine")
    assert _corner_rms(estimate, np.eye(3)) < 1e-3


def test_model_none_is_the_identity() -> None:
    scene = _scene(2)
    reference = _render(scene)
    moving = _render(scene, TRUTHS["translation"])
    np.testing.assert_array_equal(estimate_transform(reference, moving, model="none"), np.eye(3))


def test_brightness_and_contrast_change_do_not_matter() -> None:
    scene = _scene(3)
    truth = TRUTHS["similarity"]
    reference = _render(scene)
    moving = 0.6 * _render(scene, truth) + 0.3
    assert _corner_rms(estimate_transform(reference, moving), truth) < 0.05


def test_colour_uint8_frames_and_inputs_unchanged() -> None:
    scene = _scene(4)
    truth = TRUTHS["similarity"]

    def colour(gray: np.ndarray) -> np.ndarray:
        rgb = np.stack([gray, 0.8 * gray, 1.2 * gray], axis=-1)
        return np.clip(rgb * 80 + 128, 0, 255).astype(np.uint8)

    reference = colour(_render(scene))
    moving = colour(_render(scene, truth))
    ref_copy, mov_copy = reference.copy(), moving.copy()
    estimate = estimate_transform(reference, moving)
    assert _corner_rms(estimate, truth) < 0.05
    np.testing.assert_array_equal(reference, ref_copy)
    np.testing.assert_array_equal(moving, mov_copy)


def test_initial_guess_and_mask() -> None:
    scene = _scene(5)
    truth = TRUTHS["similarity"]
    reference = _render(scene)
    moving = _render(scene, truth)
    mask = np.zeros(SHAPE, dtype=bool)
    mask[20:170, 30:220] = True
    start = truth.copy()
    start[:2, 2] += (2.0, -3.0)
    estimate = estimate_transform(reference, moving, initial=start, mask=mask)
    assert _corner_rms(estimate, truth) < 0.05


def test_warping_with_the_estimate_aligns_the_frames() -> None:
    scene = _scene(6)
    truth = TRUTHS["affine"]
    reference = _render(scene)
    moving = _render(scene, truth)
    estimate = estimate_transform(reference, moving, model="affine")
    aligned = warp(moving, estimate, mode="constant", cval=np.nan)
    ideal = warp(moving, truth, mode="constant", cval=np.nan)
    inside = np.isfinite(aligned) & np.isfinite(ideal)
    # Same resampling, transforms a few hundredths of a pixel apart: values agree to a
    # small fraction of the image's range (about +-2).
    assert float(np.abs(aligned - ideal)[inside].max()) < 0.05
    rms = float(np.sqrt(np.mean((aligned - reference)[inside] ** 2)))
    assert rms < 0.1 * float(np.std(reference))


def test_unrelated_frames_raise_an_alignment_error_naming_the_frame() -> None:
    rng = np.random.default_rng(0)
    a = ndi.gaussian_filter(rng.random(SHAPE), 2.0)
    b = ndi.gaussian_filter(rng.random(SHAPE), 2.0)
    with pytest.raises(AlignmentError, match="frame 'IMG_0042.JPG'"):
        estimate_transform(a, b, name="IMG_0042.JPG")


def test_flat_frame_raises_an_alignment_error() -> None:
    with pytest.raises(AlignmentError, match="frame 'flat.png'.*no texture"):
        estimate_transform(_render(_scene(1)), np.full(SHAPE, 7.0), name="flat.png")


def test_wild_initial_guess_raises_instead_of_returning_garbage() -> None:
    scene = _scene(1)
    start = np.diag([30.0, 30.0, 1.0])
    with pytest.raises(AlignmentError, match="the moving frame"):
        estimate_transform(_render(scene), _render(scene), initial=start)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": "rigid"}, ValueError, "`model` must be one of 'none', 'translation'"),
        ({"levels": 0}, ValueError, "`levels` must be an int >= 1 or None; got 0"),
        ({"finest_level": -1}, ValueError, "`finest_level` must be an int >= 0"),
        ({"iterations": 0}, ValueError, "`iterations` must be an int >= 1; got 0"),
        ({"tolerance": -1.0}, ValueError, r"`tolerance` must be .*> 0; got -1.0"),
        ({"min_correlation": 2.0}, ValueError, r"`min_correlation` must lie in \[-1, 1\]"),
        ({"initial": np.eye(2)}, ValueError, r"`initial` must have shape \(3, 3\)"),
        ({"mask": np.ones((3, 3), bool)}, ValueError, "`mask` must be a bool array of shape"),
        ({"mask": np.zeros(SHAPE, bool)}, ValueError, "`mask` must select at least one pixel"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    frame = _render(_scene(1))
    with pytest.raises(error, match=match):
        estimate_transform(frame, frame, **kwargs)


def test_bad_frames() -> None:
    frame = np.zeros(SHAPE)
    with pytest.raises(ValueError, match=r"`moving` must have the size of `reference` \(192 x 256"):
        estimate_transform(frame, np.zeros((10, 10)))
    with pytest.raises(ValueError, match="`reference` must be 2-D"):
        estimate_transform(np.zeros((4, 4, 5)), np.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match="`moving` must contain only finite values"):
        estimate_transform(frame, np.full(SHAPE, np.nan))


def test_to_gray_uses_bt601_weights() -> None:
    rgb = np.array([[[10.0, 20.0, 30.0]]])
    assert to_gray(rgb)[0, 0] == pytest.approx(0.299 * 10 + 0.587 * 20 + 0.114 * 30)
    assert to_gray(np.ones((2, 2, 2)) * [5.0, 255.0])[0, 0] == 5.0  # gray + alpha


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [3, 4])
def test_to_gray_scales_integer_colour_by_the_dtype_maximum(dtype: type, channels: int) -> None:
    top = np.iinfo(dtype).max
    rgb = np.random.default_rng(2).integers(0, top + 1, (5, 7, channels)).astype(dtype)
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    expected = (0.299 * r + 0.587 * g + 0.114 * b) / top  # alpha ignored
    gray = to_gray(rgb)
    assert gray.dtype == np.float32 and gray.shape == (5, 7)
    np.testing.assert_allclose(gray, expected, rtol=1e-6, atol=1e-7)


# --- stacks --------------------------------------------------------------------------


def _stack(seed: int, n: int = 5) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames with focus breathing; the blur grows with the distance to frame 0's focus."""
    scene = _scene(seed)
    rng = np.random.default_rng(seed)
    truths = []
    frames = []
    for k in range(n):
        step = k - n // 2
        truth = _similarity(1.0 + 0.006 * step, 0.2 * step, (1.5 * step, -2.0 * step))
        if step == 0:
            truth = np.eye(3)
        truths.append(truth)
        frames.append(_render(scene, truth, sigma=0.4 + 0.5 * k, noise=0.01, seed=k))
        rng.normal()
    return frames, truths


def _registrar(
    frames: list[np.ndarray], reference: int | None = None, model: str = "similarity"
) -> tuple[Registrar, list[int]]:
    """The registrar of fuse over ``frames``, and the list of frames it reads, in order."""
    source = FrameSource(frames)
    read: list[int] = []
    raw = source.raw

    def spy(index: int) -> np.ndarray:
        read.append(index)
        return raw(index)

    source.raw = spy  # type: ignore[method-assign]
    ref = len(frames) // 2 if reference is None else reference
    return Registrar(source, ref, model, focus_gray(None)), read


def _chain(registrar: Registrar) -> list[int]:
    """Register every frame in the registrar's order; the indices in that order."""
    seen = []
    for index, neighbour in registrar.order:
        registrar.register(index, neighbour)
        seen.append(index)
    return seen


def test_registrar_chains_each_frame_to_the_reference() -> None:
    frames, truths = _stack(7)
    registrar, read = _registrar(frames)
    assert _chain(registrar) == [2, 3, 4, 1, 0] == read  # every frame read once, outwards
    np.testing.assert_array_equal(registrar.transforms[2], np.eye(3))
    for estimate, truth in zip(registrar.transforms, truths, strict=True):
        assert _corner_rms(estimate, truth) < 0.05
    reports = registrar.reports()
    assert [r.status for r in reports] == ["aligned", "aligned", "reference", "aligned", "aligned"]
    assert [r.neighbour for r in reports] == [1, 2, None, 2, 3]


def test_registrar_with_another_reference() -> None:
    frames, truths = _stack(8)
    registrar, read = _registrar(frames, reference=1)
    assert _chain(registrar) == [1, 2, 3, 4, 0] == read
    to_ref1 = np.linalg.inv(truths[1])
    for estimate, truth in zip(registrar.transforms, truths, strict=True):
        expected = truth @ to_ref1
        assert _corner_rms(estimate, expected / expected[2, 2]) < 0.05


def test_registrar_holds_no_frame() -> None:
    # streaming: the registrar keeps pyramids, never a frame it read and handed back
    frames, _ = _stack(10, n=7)
    registrar, _ = _registrar(frames)
    raw = registrar.source.raw
    alive: list[weakref.ref] = []  # type: ignore[type-arg]

    def fresh(index: int) -> np.ndarray:
        frame = raw(index).copy()  # a fresh array, as if read from disk
        alive.append(weakref.ref(frame))
        return frame

    registrar.source.raw = fresh  # type: ignore[method-assign]
    for index, neighbour in registrar.order:
        registrar.register(index, neighbour)
        gc.collect()
        assert sum(ref() is not None for ref in alive) == 0


def test_registrar_leaves_out_a_flat_frame_and_names_it() -> None:
    frames, truths = _stack(9, n=3)
    frames[2] = np.full(SHAPE, 3.0, dtype=np.float32)
    registrar, _ = _registrar(frames)
    _chain(registrar)
    reports = registrar.reports()
    assert reports[2].status == "rejected" and reports[2].name == "frames[2]"
    assert registrar.stand_in(2) == 1  # its neighbour is merged in its place
    np.testing.assert_array_equal(registrar.transforms[2], registrar.transforms[1])
    assert _corner_rms(registrar.transforms[0], truths[0]) < 0.05


def test_registrar_fails_when_only_the_reference_is_kept() -> None:
    frames, _ = _stack(9, n=3)
    frames[0] = frames[2] = np.full(SHAPE, 3.0, dtype=np.float32)
    registrar, _ = _registrar(frames)
    _chain(registrar)
    with pytest.raises(AlignmentError, match="alignment of every frame but the reference"):
        registrar.reports()


def test_registrar_model_none_keeps_the_identity() -> None:
    frames, _ = _stack(9, n=3)
    registrar, read = _registrar(frames, model="none")
    _chain(registrar)
    assert read == [1, 2, 0]
    assert all(np.array_equal(t, np.eye(3)) for t in registrar.transforms)
    assert [r.status for r in registrar.reports()] == ["identity", "reference", "identity"]


def test_registrar_refuses_a_frame_that_is_not_finite() -> None:
    frames, _ = _stack(9, n=3)
    frames[0] = frames[0].copy()
    frames[0][5, 5] = np.nan
    registrar, _ = _registrar(frames)
    # (refused as it is read, before the registrar's own check; with or without alignment)
    with pytest.raises(ValueError, match=r"frames\[0\]: 1 sample is NaN or infinite"):
        _chain(registrar)


def test_one_finest_level_policy() -> None:
    # fuse registers (and estimate_transform refines) down to the first level with at
    # most WORK_PIXELS pixels: a loop over the levels is the oracle
    for shape in [(100, 100), (500, 1000), (707, 708), (1000, 2000), (1001, 2000), (4000, 6000)]:
        level = 0
        while shape[0] * shape[1] / 4**level > WORK_PIXELS:
            level += 1
        assert work_level(shape) == level
        if shape[0] * shape[1] <= 2_000_000:
            assert gray_pyramid(np.zeros(shape, np.float32)).finest == level
    # half a megapixel: 1 MP frames are registered at half, 6 MP at quarter resolution
    assert (work_level((1000, 1000)), work_level((2000, 3000))) == (1, 2)


def test_estimate_gain_is_robust_to_outliers() -> None:
    rng = np.random.default_rng(3)
    warped = rng.random((50, 60)) * 100
    reference = 1.3 * warped - 7.0
    reference[::10, ::10] = 1e4  # speculars, misregistered edges...
    warped_nan = warped.copy()
    warped_nan[:3] = np.nan  # outside a 'constant' warp
    gain, offset = estimate_gain(reference, warped_nan)
    assert gain == pytest.approx(1.3, rel=1e-6)
    assert offset == pytest.approx(-7.0, abs=1e-4)


# --- real frames -----------------------------------------------------------------------


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    x = a[ok] - a[ok].mean()
    y = b[ok] - b[ok].mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def test_real_pcb_frames_correlate_better_after_alignment(shared_data: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    folder = shared_data / "pcb" / "pcb"
    if not (folder / "pcb_001.jpg").is_file():
        pytest.skip("the PCB frames are not present")

    def load(name: str) -> np.ndarray:
        with image_module.open(folder / name) as im:
            return np.asarray(im.convert("L").reduce(4), dtype=np.float32)  # 512 x 384

    reference = load("pcb_004.jpg")
    for name in ("pcb_001.jpg", "pcb_003.jpg"):
        moving = load(name)
        estimate = estimate_transform(reference, moving, model="affine", name=name)
        before = _ncc(reference, moving)
        after = _ncc(reference, warp(moving, estimate, mode="constant", cval=np.nan))
        assert after > before + 0.02
        # Oracle: OpenCV's ECC (Evangelidis & Psarakis) in its (x, y) convention.
        cv2 = pytest.importorskip("cv2")
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
        _, xy = cv2.findTransformECC(
            reference, moving, np.eye(2, 3, dtype=np.float32), cv2.MOTION_AFFINE, criteria, None, 5
        )
        swap = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        theirs = swap @ np.vstack([xy, [0.0, 0.0, 1.0]]) @ swap
        assert _corner_rms(estimate, theirs, reference.shape) < 0.15


def test_reused_pyramids_give_the_same_chain_as_estimate_transform() -> None:
    # the pipeline builds each frame's pyramid once and uses it for two pairs
    from convstack.stack import align as A

    scene = _scene(21)
    truths = [_similarity(1.0 + 0.004 * k, 0.05 * k, (0.7 * k, -0.5 * k)) for k in range(3)]
    frames = [_render(scene, m) for m in truths]
    pyramids = [A.gray_pyramid(f) for f in frames]
    for k in (1, 2):
        direct = estimate_transform(frames[k - 1], frames[k])
        reused = A._register_pyramids(pyramids[k - 1], pyramids[k], model="similarity")
        np.testing.assert_array_equal(reused, direct)
        expected = truths[k] @ np.linalg.inv(truths[k - 1])
        assert _corner_rms(reused, expected) < 0.05


@pytest.mark.parametrize("shape", [(37, 53), (5, 6), (8, 9)])
def test_edge_decimation_equals_smoothing_then_subsampling(shape: tuple[int, int]) -> None:
    # the registration pyramid skips the full-size smoothing of levels it does not keep
    image = np.random.default_rng(4).random(shape).astype(np.float32)
    taps = np.array([1, 4, 6, 4, 1], np.float32) / 16
    padded = np.pad(image.astype(np.float64), 2, mode="edge")  # 'nearest' borders
    smooth = sum(
        taps[i] * taps[j] * padded[i : i + shape[0], j : j + shape[1]]
        for i in range(5)
        for j in range(5)
    )
    decimated = decimate(decimate(image, 0, "edge"), 1, "edge")
    np.testing.assert_allclose(decimated, smooth[::2, ::2], atol=1e-6)


def test_registrar_puts_frames_on_the_grid_as_fuse_does_by_default() -> None:
    # a Registrar not told its interpolation resamples as fuse's default does: the
    # quintic spline in two passes, not Keys cubic (fuse passes its own default)
    import inspect

    from convstack.stack import fuse

    default = inspect.signature(fuse).parameters["interpolation"].default
    frames, _ = _stack(3)
    registrar, _ = _registrar(frames)
    assert registrar.warp_order == {"cubic": 3, "quintic": 5}[default] == 5
    _chain(registrar)
    moved = registrar.transforms[0]
    raw = registrar.source.raw(0)  # (float frames come scaled to [0, 1])
    expected = warp(raw, moved, order=5, mode="nearest", separable=True)
    np.testing.assert_array_equal(registrar.on_grid(0), expected.astype(np.float32))
    cubic = warp(raw, moved, order=3, mode="nearest")
    assert not np.array_equal(registrar.on_grid(0), cubic.astype(np.float32))


@pytest.mark.parametrize("shape", [(61, 87), (2, 9), (1, 1), (5, 2), (128, 130)])
def test_registration_pyramid_halves_as_the_numpy_decimation(shape: tuple[int, int]) -> None:
    # the levels below the finest registered one are made by one compiled pass: the same
    # bits as fusion.decimate down the rows then along them, edges repeated
    from convstack.stack import align as A
    from convstack.stack.align import Pyramid

    gray = np.random.default_rng(sum(shape)).random(shape).astype(np.float32)
    before = gray.copy()
    pyramid = Pyramid(gray, levels=3, finest=2)
    expected = gray
    for _ in range(2):
        expected = decimate(decimate(expected, 0, "edge"), 1, "edge")
    got = pyramid.levels[2]
    assert got is not None
    np.testing.assert_array_equal(got, A._smooth(expected))
    np.testing.assert_array_equal(gray, before)
    # (a float64 luma takes the NumPy passes)
    wide = Pyramid(gray.astype(np.float64), levels=2, finest=1).levels[1]
    assert wide is not None
    expected64 = decimate(decimate(gray.astype(np.float64), 0, "edge"), 1, "edge")
    np.testing.assert_array_equal(wide, A._smooth(expected64))
