"""Stage 5: depth from focus, its regularisation and the depth image."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from convstack.stack import depth as D
from test_stack_fusion import two_depth_stack


@pytest.mark.parametrize("smooth_depth", [True, False])
def test_depth_finds_the_focused_frame(smooth_depth: bool) -> None:
    frames, _ = two_depth_stack(count=4)
    d = D.depth_map(frames, smooth_depth=smooth_depth)
    assert d.dtype == np.float32 and d.shape == (48, 64)
    assert np.abs(d[:, 4:24] - 0).max() < 0.5
    assert np.abs(d[:, 40:60] - 3).max() < 0.5
    assert d.min() >= 0 and d.max() <= 3


def test_regularize_fills_flat_areas_from_confident_neighbours() -> None:
    index = np.zeros((40, 40))
    index[:, 20:] = 3
    confidence = np.zeros((40, 40))
    confidence[:, 8:12] = 1.0  # only a strip on the left is trusted
    index[:, :8] = 2  # untrusted noise left of it
    d = D.regularize_depth(index, confidence, count=4)
    assert np.abs(d[:, :20]).max() < 0.05  # the trusted strip's depth spreads
    assert np.abs(d[:, 20:]).max() < 0.05  # there is no trusted 3 anywhere


def test_regularize_constant_and_empty() -> None:
    d = D.regularize_depth(np.full((9, 9), 2), np.ones((9, 9)), count=5)
    np.testing.assert_allclose(d, 2.0, atol=1e-5)
    d = D.regularize_depth(np.full((9, 9), 2), np.zeros((9, 9)), count=5)
    np.testing.assert_allclose(d, 2.0)  # nothing trusted: the middle frame


def test_regularize_shape_check() -> None:
    with pytest.raises(ValueError, match="`confidence` must be 2-D with the shape"):
        D.regularize_depth(np.zeros((4, 4)), np.zeros((4, 5)), count=2)


def test_guided_filter_properties() -> None:
    rng = np.random.default_rng(5)
    src = rng.random((30, 30)).astype(np.float32)
    flat = np.full((30, 30), 0.5, np.float32)
    # a flat guide gives a = 0, b = box(p): the output is box(box(p)) (SciPy 'reflect')
    once = ndi.uniform_filter(src.astype(np.float64), 5, mode="reflect")
    expected = ndi.uniform_filter(once, 5, mode="reflect")
    np.testing.assert_allclose(D.guided_filter(flat, src, 2, 1e-3), expected, atol=1e-4)
    # the guide itself passes through when eps is tiny
    np.testing.assert_allclose(D.guided_filter(src, src, 2, 1e-8), src, atol=1e-3)


def test_smooth_matches_gaussian() -> None:
    rng = np.random.default_rng(6)
    image = ndi.gaussian_filter(rng.random((128, 160)), 4).astype(np.float32)
    for sigma in (2.0, 12.0):
        expected = ndi.gaussian_filter(image, sigma, mode="mirror")
        got = D.smooth(image, sigma)
        assert np.abs(got - expected)[16:-16, 16:-16].max() < 0.02 * np.ptp(image)


def test_depth_to_image_16bit() -> None:
    got = D.depth_to_image(np.array([[0.0, 2.0, 4.0]]), 5, np.uint16)
    np.testing.assert_array_equal(got, [[0, 32768, 65535]])
    with pytest.raises(TypeError, match="`dtype` must be uint8 or uint16"):
        D.depth_to_image(np.zeros((2, 2)), 2, np.float32)


def test_focus_accumulator_is_a_running_argmax() -> None:
    rng = np.random.default_rng(7)
    maps = rng.random((5, 6, 7)).astype(np.float32)
    acc = D.FocusAccumulator()
    for i, m in enumerate(maps):
        acc.add(i, m)
    np.testing.assert_array_equal(acc.raw_depth(), maps.argmax(axis=0))
    np.testing.assert_allclose(acc.confidence(), maps.max(0) - maps.mean(0), atol=1e-6)


def test_zoom_is_bilinear_resize() -> None:
    from skimage.transform import resize

    small = np.random.default_rng(8).random((13, 17)).astype(np.float32)
    expected = resize(small, (52, 68), order=1, mode="edge", anti_aliasing=False)
    np.testing.assert_allclose(D.zoom_bilinear(small, 4), expected, atol=1e-5)
    np.testing.assert_allclose(D._resize_bilinear(small, (52, 68)), expected, atol=1e-5)


def test_regularize_large_map_fills_and_keeps_steps() -> None:
    """The decimated coarse scales (maps >= 64 px) behave as the direct ones."""
    index = np.zeros((128, 160))
    index[:, 80:] = 3
    confidence = np.zeros((128, 160))
    confidence[:, 20:30] = 1.0
    confidence[:, 120:130] = 1.0
    d = D.regularize_depth(index, confidence, count=4)
    assert np.abs(d[:, :70]).max() < 0.05
    assert np.abs(d[:, 90:] - 3).max() < 0.05


def test_regularize_decimated_path_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 2x-decimated voting used for large maps gives nearly the same depth."""
    rng = np.random.default_rng(13)
    index = np.zeros((96, 128))
    index[:, 64:] = 4
    index[40:60, 20:40] = 2
    noisy = np.where(rng.random(index.shape) < 0.1, rng.integers(0, 5, index.shape), index)
    confidence = rng.random(index.shape) + 0.5
    full = D.regularize_depth(noisy, confidence, count=5)
    monkeypatch.setattr(D, "_HALF_VOTE_PIXELS", 1)
    half = D.regularize_depth(noisy, confidence, count=5)
    assert np.mean(np.abs(full - half) < 0.5) > 0.95
    assert np.abs(half[:, 70:] - 4).max() < 0.5 and np.abs(half[45:55, 25:35] - 2).max() < 0.5


def test_regularize_removes_a_confident_speckle_but_keeps_a_region() -> None:
    # frame 2 everywhere with low confidence; a 5x5 blob claims frame 6 with high
    # confidence (a blurred edge spread into a flat area), a 40-pixel-wide band
    # claims frame 5 the same way: the blob is a speckle, the band is a region
    index = np.full((96, 96), 2)
    confidence = np.full((96, 96), 0.1)
    index[20:25, 20:25] = 6
    confidence[20:25, 20:25] = 1.0
    index[:, 56:] = 5
    confidence[:, 56:] = 1.0
    d = D.regularize_depth(index, confidence, count=8)
    assert np.abs(d[20:25, 20:25] - 2.0).max() < 0.5
    assert np.abs(d[:, 64:] - 5.0).max() < 0.5
    assert np.abs(d[60:90, 5:40] - 2.0).max() < 0.5
    # without the speckle removal the blob's confidence wins (the test can fail)
    off = D.regularize_depth(index, confidence, count=8, outlier=0.0)
    assert np.abs(off[21:24, 21:24] - 6.0).max() < 0.5


@pytest.mark.parametrize("guided", [False, True])
@pytest.mark.parametrize("decimated", [False, True])
def test_depth_map_equals_the_depth_fuse_returns(
    guided: bool, decimated: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from convstack.stack import fuse

    if decimated:  # the path of frames of 1 MP and more, on a small stack
        monkeypatch.setattr(D, "_HALF_VOTE_PIXELS", 100)
    frames, _ = two_depth_stack(count=4)
    from_fuse = fuse(frames, align="none").depth
    alone = D.depth_map(frames, guided=guided)
    if guided:  # the guided filter changes the map at the depth step, not away from it
        assert not np.array_equal(alone, from_fuse)
        for inner in (np.s_[:, 4:24], np.s_[:, 40:60]):
            assert np.abs(alone[inner] - from_fuse[inner]).max() < 0.5
    else:
        np.testing.assert_array_equal(alone, from_fuse)


def test_regularize_maps_from_a_decimated_grid() -> None:
    index = np.zeros((20, 30))
    index[:, 15:] = 3
    d = D.regularize_depth(index, np.ones((20, 30)), count=4, shape=(40, 59))
    assert d.shape == (40, 59) and d.dtype == np.float32
    assert np.abs(d[:, :26]).max() < 0.05 and np.abs(d[:, 34:] - 3).max() < 0.05
    message = "`shape` must be the size of `index` \\(20, 30\\) times two"
    with pytest.raises(ValueError, match=message):
        D.regularize_depth(index, np.ones((20, 30)), count=4, shape=(40, 62))


def test_large_frames_measure_focus_on_the_voting_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    # frames of 1 MP and more are measured on a grid decimated by two (the votes run
    # there anyway); shrink the threshold to take that path on a small stack
    from convstack.stack import fuse

    frames, _ = two_depth_stack(count=4)
    full = fuse(frames, align="none")
    monkeypatch.setattr(D, "_HALF_VOTE_PIXELS", 100)
    half = fuse(frames, align="none")
    assert half.depth.shape == full.depth.shape == half.confidence.shape
    assert np.abs(half.depth[:, 4:24]).max() < 0.5 and np.abs(half.depth[:, 40:60] - 3).max() < 0.5
    assert np.mean(np.abs(half.image.astype(int) - full.image.astype(int))) < 1.0


def _plane_depth(seed: int, outlier: float | None = None) -> tuple[np.ndarray, float]:
    """The regularised depth of a rendered flat, weakly textured plane (7 frames, noise
    0.02) and its true frame index (frame k focused at 1/z = 1 - k/8; the plane at z = 2)."""
    from convstack.stack.synthetic import make_scene, render_stack

    scene = make_scene((128, 160), seed=seed, kind="plane")
    inv_focus = np.linspace(1.0, 0.25, 7)
    stack = render_stack(scene, focus_distances=1 / inv_focus, aperture=10.0, noise=0.02, seed=seed)
    truth = float(np.interp(1 / 2.0, inv_focus[::-1], np.arange(7)[::-1]))
    acc = D.FocusAccumulator()
    for k, frame in enumerate(stack.frames):
        acc.add(k, D.voting_measure(D.to_gray(frame)))
    options = {} if outlier is None else {"outlier": outlier}
    depth = D.regularize_depth(acc.raw_depth(), acc.confidence(), count=7, **options)
    return depth, truth


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_flat_textured_plane_has_no_depth_islands(seed: int) -> None:
    depth, truth = _plane_depth(seed)
    assert truth == 4.0  # the oracle: 1/z = 0.5 lies at frame 4
    wrong = np.abs(depth - truth) > 0.5
    assert ndi.label(wrong)[1] == 0
    # the speckle removal is what keeps them out (the test can fail)
    off, _ = _plane_depth(seed, outlier=0.0)
    assert ndi.label(np.abs(off - truth) > 0.5)[1] >= 10


def test_speckle_threshold_default_removes_what_half_leaves() -> None:
    # on this plane the former default, 0.5, leaves islands that 0.65 removes
    half, truth = _plane_depth(1, outlier=0.5)
    assert ndi.label(np.abs(half - truth) > 0.5)[1] >= 1


def test_flat_scene_takes_its_blur_scale_from_the_focus_range() -> None:
    from convstack.stack.synthetic import make_scene, render_stack

    scene = make_scene((32, 40), seed=0, kind="plane")
    assert np.ptp(scene.depth) == 0
    wide = render_stack(scene, focus_distances=[1.0, 4.0])
    assert wide.aperture == pytest.approx(32 / 48 / 0.75)  # the rows/48 px rule, by hand
    pinhole = render_stack(scene, 3)  # every frame focused on the plane: nothing blurs
    assert pinhole.aperture == 0.0
    np.testing.assert_allclose(pinhole.frames, np.broadcast_to(scene.image, (3, 32, 40, 3)))


@pytest.fixture(scope="module")
def occlusion_stack() -> tuple:
    """The 'occlusion' scene (a 5 px stick at frame 0 across a ring, before a wall),
    7 frames with noise 0.01, fused without alignment; and the stick's true mask."""
    from convstack.stack import fuse
    from convstack.stack.synthetic import make_scene, render_stack

    scene = make_scene((240, 320), seed=0, kind="occlusion")
    stack = render_stack(scene, 7, noise=0.01, seed=0)
    result = fuse(list(stack.frames), align="none")
    stick = scene.layers[-1].alpha >= 0.5  # the oracle: the scene's own stick
    assert float(scene.depth[stick].max()) < float(scene.depth[~stick].min())  # the nearest
    return result, stick


def _stick_excess(depth: np.ndarray, stick: np.ndarray) -> tuple[float, float]:
    """Median and 90th percentile, over the rows the stick crosses, of the depth map's
    frame-0 pixels near the stick minus the stick's true pixels in that row."""
    rows = np.flatnonzero(stick.sum(axis=1) >= 2)[10:-10]
    near = ndi.binary_dilation(stick, iterations=20)
    extra = ((depth < 1.5) & near)[rows].sum(axis=1) - stick[rows].sum(axis=1)
    return float(np.median(extra)), float(np.percentile(extra, 90))


def test_snap_brings_the_stick_to_its_true_width(occlusion_stack: tuple) -> None:
    result, stick = occlusion_stack
    median, _ = _stick_excess(result.depth, stick)
    assert median >= 5  # the focus window's reach: the stick grows on both sides
    snapped = D.snap_depth_steps(result.depth, result.image, count=7)
    median, high = _stick_excess(snapped, stick)
    assert abs(median) <= 2 and high <= 5
    # only pixels near a depth step change
    far_from_step = ndi.binary_erosion(np.abs(ndi.laplace(result.depth)) < 0.5, iterations=12)
    np.testing.assert_array_equal(snapped[far_from_step], result.depth[far_from_step])


def test_fuse_snap_depth_snaps_only_the_returned_depth() -> None:
    # fuse(snap_depth=True): the same image, the depth map snapped on it, the stick
    # brought to its true width
    from convstack.stack import fuse
    from convstack.stack.synthetic import make_scene, render_stack

    scene = make_scene((240, 320), seed=0, kind="occlusion")
    frames = list(render_stack(scene, 7, noise=0.01, seed=0).frames)
    plain = fuse(frames, align="none")
    snapped = fuse(frames, align="none", snap_depth=True, height=True)
    np.testing.assert_array_equal(snapped.image, plain.image)
    expected = D.snap_depth_steps(plain.depth, plain.image, count=7)
    np.testing.assert_array_equal(snapped.depth, expected)
    stick = scene.layers[-1].alpha >= 0.5
    median, high = _stick_excess(snapped.depth, stick)
    assert abs(median) <= 2 and high <= 5
    assert snapped.height is not None and snapped.height.shape == snapped.depth.shape


def test_snap_keeps_a_structure_thinner_than_its_band() -> None:
    # a 3 px line at frame 0 (its depth already true): no pixel of it lies 5 px from
    # the step, so it has no deciding pixels of its own side and is kept whole
    image = np.zeros((30, 30, 3), np.float32)
    image[:, 14:17] = 1.0
    depth = np.full((30, 30), 6.0, np.float32)
    depth[:, 14:17] = 0.0
    np.testing.assert_array_equal(D.snap_depth_steps(depth, image, count=7), depth)


def test_snap_depth_steps_input_unchanged_and_errors() -> None:
    depth = np.full((12, 12), 3.0)
    depth[:, 6:] = 0.0
    image = np.zeros((12, 12), np.uint8)
    before = depth.copy()
    D.snap_depth_steps(depth, image, count=4)
    np.testing.assert_array_equal(depth, before)
    with pytest.raises(ValueError, match="`depth` must be 2-D"):
        D.snap_depth_steps(np.zeros((2, 3, 4)), image, count=4)
    with pytest.raises(ValueError, match="`depth` must be finite"):
        D.snap_depth_steps(np.where(depth > 1, np.nan, depth), image, count=4)
    with pytest.raises(ValueError, match="`image` must be \\(rows, cols\\[, channels\\]\\)"):
        D.snap_depth_steps(depth, np.zeros((12, 11)), count=4)
    with pytest.raises(ValueError, match="`count` must be an int >= 1; got 0"):
        D.snap_depth_steps(depth, image, count=0)
    with pytest.raises(ValueError, match="`reach` must be > 0; got -1"):
        D.snap_depth_steps(depth, image, count=4, reach=-1)
    with pytest.raises(ValueError, match="`smooth` must be >= 0; got -0.5"):
        D.snap_depth_steps(depth, image, count=4, smooth=-0.5)
    with pytest.raises(ValueError, match="`stride` must be an int >= 1; got 0"):
        D.snap_depth_steps(depth, image, count=4, stride=0)


@pytest.mark.parametrize("half", [False, True])
def test_snap_moves_a_grown_step_onto_the_edge(half: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # a textured far side (frame 5) and a flat near side (frame 0) whose depth has grown
    # 4 px past the true edge at column 40; maps of 1 MP and more take the path on
    # the grid decimated by two (forced here on a small map)
    if half:
        monkeypatch.setattr(D, "_HALF_VOTE_PIXELS", 100)
    rng = np.random.default_rng(3)
    image = np.empty((48, 80, 3), np.float32)
    image[:, :40] = 0.3 + 0.1 * rng.random((48, 40, 1))
    image[:, 40:] = 0.8
    depth = np.zeros((48, 80), np.float32)
    depth[:, :36] = 5.0
    snapped = D.snap_depth_steps(depth, image, count=6)
    columns = np.flatnonzero(np.median(snapped, axis=0) < 2.5)
    assert abs(int(columns[0]) - 40) <= (1 if half else 0)
    assert columns[-1] == 79


def _whole_half_measure(gray: np.ndarray, measure: str) -> np.ndarray:
    """The voting measure of a big frame, whole: the energy (``sharpness`` without its
    window), its 2 x 2 block means (edge-padded, summed down then across, as the
    voting grid's), then the window (sigma 1 on the half grid) over the whole map."""
    from convstack.stack.sharpness import gaussian_window, sharpness

    energy = sharpness(gray, measure=measure, window=0.0)
    padded = np.pad(energy, ((0, energy.shape[0] % 2), (0, energy.shape[1] % 2)), mode="edge")
    rows = padded[0::2] + padded[1::2]
    half = (rows[:, 0::2] + rows[:, 1::2]) * np.float32(0.25)
    return half if measure == "laplacian" else gaussian_window(half, 1.0)


@pytest.mark.parametrize("measure", ["log_energy", "laplacian_energy", "tenengrad", "laplacian"])
@pytest.mark.parametrize(
    ("shape", "rows"),
    [((37, 29), 4), ((38, 31), 6), ((51, 40), 10), ((5, 17), 2), ((64, 24), 64), ((9, 9), 3)],
)
def test_strip_measure_equals_the_whole_frames(
    measure: str, shape: tuple[int, int], rows: int
) -> None:
    # strips of rows with their halo: the same bits as the whole frame measured at
    # once, for odd sizes, strips that do not divide the frame, one strip, tiny frames
    rng = np.random.default_rng(sum(shape) + rows)
    gray = rng.random(shape, dtype=np.float32)
    gray[shape[0] // 3 :] *= np.float32(0.25)  # a step: the energy is not flat
    kept = gray.copy()
    got = D._half_measure(gray, measure, rows)
    np.testing.assert_array_equal(got, _whole_half_measure(gray, measure))
    np.testing.assert_array_equal(gray, kept)


def test_voting_measure_of_a_big_frame_in_strips(monkeypatch: pytest.MonkeyPatch) -> None:
    # a frame over 1 MP, odd in both axes, in strips of about 100 rows
    rng = np.random.default_rng(3)
    gray = rng.random((1001, 1003), dtype=np.float32)
    monkeypatch.setattr(D, "_MEASURE_PIXELS", 100_000)
    got = D.voting_measure(gray, "log_energy")
    assert got.shape == (501, 502)
    np.testing.assert_array_equal(got, _whole_half_measure(gray, "log_energy"))
