"""`convstack demo` end to end on a small stack, scored with independent tools."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from convstack.cli import _demo, main
from convstack.stack.synthetic import make_scene, render_stack

ROWS, COLS, FRAMES, SEED = 96, 128, 5, 2
BORDER = 10


def _read(path: Path) -> np.ndarray:
    """16-bit PNG through OpenCV (not our reader), as RGB floats in [0, 1]."""
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert data is not None, path
    if data.ndim == 3:
        data = data[..., ::-1]
    assert data.dtype == np.uint16
    return data.astype(np.float64) / 65535.0


def _register(frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Put a frame back on the reference grid with OpenCV, given the (row, col) matrix."""
    swap = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1.0]])
    xy = swap @ matrix @ swap
    flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
    size = (frame.shape[1], frame.shape[0])
    return cv2.warpAffine(frame, xy[:2], size, flags=flags, borderMode=cv2.BORDER_REPLICATE)


def _scores(truth: np.ndarray, image: np.ndarray) -> tuple[float, float]:
    inner = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    a, b = truth[inner], np.clip(image[inner], 0, 1)
    return (
        peak_signal_noise_ratio(a, b, data_range=1.0),
        structural_similarity(a, b, data_range=1.0, channel_axis=-1),
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "run"
    argv = ["demo", "--out", str(out), "--size", str(ROWS), str(COLS)]
    argv += ["--frames", str(FRAMES), "--seed", str(SEED), "--quiet"]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(argv) == 0
    return out, buffer.getvalue()


def test_demo_writes_every_output(demo_run):
    out, _ = demo_run
    frames = sorted((out / "frames").iterdir())
    assert [p.name for p in frames] == [f"frame{k:02d}.png" for k in range(1, FRAMES + 1)]
    for name in ("truth.png", "truth-depth.png", "result.png", "depth.png", "side-by-side.png"):
        assert (out / name).is_file(), name
    assert _read(out / "result.png").shape == (ROWS, COLS, 3)
    depth = cv2.imread(str(out / "depth.png"), cv2.IMREAD_UNCHANGED)
    assert depth.shape == (ROWS, COLS)
    picture = cv2.imread(str(out / "side-by-side.png"), cv2.IMREAD_UNCHANGED)
    assert picture.shape[0] > 2 * ROWS and picture.shape[1] > 3 * COLS
    assert not list(out.glob(".*.tmp")) and not list((out / "frames").glob(".*.tmp"))


def test_demo_table_lists_every_frame_and_the_result(demo_run):
    _, text = demo_run
    for k in range(1, FRAMES + 1):
        assert f"frame{k:02d}.png" in text
    assert "result" in text and "PSNR" in text and "SSIM" in text


def test_result_beats_every_frame(demo_run):
    """Scored with scikit-image on the written files; frames registered by OpenCV with
    the true transforms, so each frame only pays for its defocus."""
    out, _ = demo_run
    truth = _read(out / "truth.png")
    scene = make_scene((ROWS, COLS), seed=SEED)
    np.testing.assert_allclose(truth, scene.image, atol=1 / 65535)  # the same scene
    stack = render_stack(
        scene,
        FRAMES,
        breathing=_demo._BREATHING,
        shift=_demo._SHIFT,
        noise=_demo._NOISE,
        seed=SEED,
    )
    result_psnr, result_ssim = _scores(truth, _read(out / "result.png"))
    # measured 32.96 dB and SSIM 0.9729 (the best frame: 29.10 dB, 0.9395)
    assert result_psnr > 32.4 and result_ssim > 0.968, (result_psnr, result_ssim)
    for k in range(FRAMES):
        frame = _read(out / "frames" / f"frame{k + 1:02d}.png")
        np.testing.assert_allclose(frame, stack.frames[k], atol=1 / 65535)
        frame_psnr, frame_ssim = _scores(truth, _register(frame, stack.transforms[k]))
        assert result_psnr > frame_psnr, (k, result_psnr, frame_psnr)
        assert result_ssim > frame_ssim, (k, result_ssim, frame_ssim)


def test_demo_refuses_to_overwrite(demo_run, capsys):
    out, _ = demo_run
    before = (out / "result.png").read_bytes()
    argv = ["demo", "--out", str(out), "--size", str(ROWS), str(COLS), "--frames", "3"]
    assert main([*argv, "--quiet"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (out / "result.png").read_bytes() == before


def test_demo_force_replaces(tmp_path, capsys):
    argv = ["demo", "--out", str(tmp_path), "--size", "48", "64", "--frames", "3", "--quiet"]
    assert main(argv) == 0
    assert main([*argv, "--force"]) == 0
    assert "result" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size", "8", "64"], "--size must be at least 32"),
        (["--frames", "1"], "--frames must be at least 2"),
    ],
)
def test_demo_bad_options(tmp_path, capsys, extra, message):
    assert main(["demo", "--out", str(tmp_path / "x"), "--quiet", *extra]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_demo_out_is_a_file(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["demo", "--out", str(target), "--quiet"]) == 1
    assert "is a file" in capsys.readouterr().err
