"""Alignment you can trust (issue 16, part 3): per-frame reports, the identity kept
when a transform explains nothing, broken frames named and left out."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio

from convstack import _writer
from convstack.cli import main
from convstack.stack import align as _align
from convstack.stack import fuse
from convstack.stack.errors import AlignmentError
from convstack.stack.registration_report import (
    LARGE_STEP,
    FrameReport,
    misfires,
    summary,
    write_report,
)
from convstack.stack.synthetic import make_scene, render_stack

SHAPE = (240, 320)
BAD = 1  # the broken frame (the reference is the middle one, 3)


def _psnr(truth: np.ndarray, image: np.ndarray, margin: int = 12) -> float:
    inner = (slice(margin, -margin), slice(margin, -margin))
    return float(peak_signal_noise_ratio(truth[inner], image[inner], data_range=1.0))


def _about_centre(angle: float = 0.0, zoom: float = 1.0) -> np.ndarray:
    """Reference -> frame pixel matrix rotating by ``angle`` degrees and magnifying by
    ``zoom`` about the centre (SciPy's affine_transform convention, as our warp)."""
    h, w = SHAPE
    c = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    t = np.radians(angle)
    r = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) / zoom
    m = np.eye(3)
    m[:2, :2] = r
    m[:2, 2] = c - r @ c
    return m


def _moved(frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``frame`` resampled by ``matrix`` with SciPy (an oracle independent of our warp)."""
    channels = [
        ndimage.affine_transform(frame[..., c], matrix, order=3, mode="nearest")
        for c in range(frame.shape[2])
    ]
    return np.stack(channels, axis=-1).astype(np.float32)


@pytest.mark.parametrize(("seed", "kind"), [(0, "default"), (1, "default"), (2, "halo")])
def test_two_frames_near_far_without_motion_keep_the_identity(seed: int, kind: str) -> None:
    # the hardest case: two frames of very different focus and no motion; the
    # registration reads part of the defocus difference as motion
    stack = render_stack(make_scene(SHAPE, seed=seed, kind=kind), 7, noise=0.01, seed=seed)
    frames = stack.frames[[0, 6]]
    result = fuse(frames, reference=0)
    report = result.frames[1]
    assert report.status == "identity"
    assert report.step is not None and not np.allclose(report.step, np.eye(3))  # estimated
    np.testing.assert_array_equal(result.transforms[1], np.eye(3))
    np.testing.assert_array_equal(result.image, fuse(frames, reference=0, align="none").image)


@pytest.mark.parametrize("seed", [0, 2])
def test_real_motion_is_applied(seed: int) -> None:
    stack = render_stack(make_scene(SHAPE, seed=seed), 7, shift=1.0, noise=0.01, seed=seed)
    frames = stack.frames[[3, 4]]  # 3 is the rendering's reference (identity)
    result = fuse(frames, reference=0)
    assert result.frames[1].status == "aligned"
    h, w = SHAPE
    corners = np.array([[0, 0, 1], [0, w - 1, 1], [h - 1, 0, 1], [h - 1, w - 1, 1]], float)
    got = corners @ result.transforms[1].T
    want = corners @ stack.transforms[4].T
    error = np.abs(got[:, :2] / got[:, 2:] - want[:, :2] / want[:, 2:]).max()
    assert error < 0.1  # measured 0.02-0.05 px; moved by 0.5-1.4 px
    assert np.abs(want[:, :2] - corners[:, :2]).max() > 0.3


@pytest.fixture(scope="module")
def clean() -> tuple[Any, np.ndarray, float]:
    scene = make_scene(SHAPE, seed=1)
    stack = render_stack(scene, 7, breathing=0.002, shift=0.5, noise=0.005, seed=1)
    without = fuse(np.delete(stack.frames, BAD, axis=0), reference=2)
    return scene, stack.frames, _psnr(scene.image, without.image)


def _broken(kind: str, frames: np.ndarray, index: int = BAD) -> np.ndarray:
    if kind == "another scene":
        return render_stack(make_scene(SHAPE, seed=7), 7, seed=2).frames[index]
    if kind == "black":
        return np.zeros_like(frames[index])
    if kind == "rotation 5 degrees":
        return _moved(frames[index], _about_centre(angle=5.0))
    return _moved(frames[index], _about_centre(zoom=1.03))  # a 3 % zoom jump


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("another scene", "another scene|outlier|failed"),
        ("black", "failed"),
        ("rotation 5 degrees", "rotation jump of -?5.0 degrees"),
        ("zoom 3 %", "scale jump of -?(2.[6-9]|3.[0-4])%"),
    ],
)
def test_broken_frame_is_named_and_left_out(
    kind: str, reason: str, clean: tuple[Any, np.ndarray, float], caplog: Any
) -> None:
    scene, frames, without = clean
    broken = frames.copy()
    broken[BAD] = _broken(kind, frames)
    result = fuse(broken)
    rejected = [f for f in result.frames if f.status == "rejected"]
    assert [f.index for f in rejected] == [BAD]
    assert rejected[0].name == f"frames[{BAD}]"
    assert any(re.search(reason, flag) for flag in rejected[0].flags)
    assert all(f.trusted for f in result.frames if f.index != BAD)
    assert f"frames[{BAD}] (rejected" in caplog.text  # the library's warning names it
    # within 0.3 dB (the bar) of the stack without it; measured +0.01 dB
    assert _psnr(scene.image, result.image) > without - 0.3


def test_clean_stack_is_all_trusted(clean: tuple[Any, np.ndarray, float]) -> None:
    _, frames, _ = clean
    result = fuse(frames)
    assert [f.status for f in result.frames] == ["aligned"] * 3 + ["reference"] + ["aligned"] * 3
    assert summary(result.frames) == ""
    assert all(0.9 < f.confidence <= 1.0 for f in result.frames)


def test_misfire_is_flagged(clean: tuple[Any, np.ndarray, float]) -> None:
    _, frames, _ = clean
    blurred = frames.copy()
    blurred[5] = ndimage.gaussian_filter(frames[5], sigma=(4, 4, 0))
    result = fuse(blurred)
    flagged = [f.index for f in result.frames if not f.trusted]
    assert flagged == [5]
    assert "misfire" in result.frames[5].flags[0]


def test_misfires_by_hand() -> None:
    energy = np.array([[1.0, 4.0, 1.0], [4.0, 1.0, 1.0], [0.1, 0.1, 0.1], [1.0, 1.0, 4.0]])
    kept = np.ones(4, dtype=bool)
    assert misfires(energy, kept) == [2]
    assert misfires(energy, np.array([True, True, False, True])) == []
    assert misfires(energy[:2], kept[:2]) == []  # two frames: no telling which


def test_fallback_to_a_simpler_model(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = render_stack(make_scene(SHAPE, seed=0), 3, shift=1.0, noise=0.01, seed=0)
    real = _align._register

    def failing(template: Any, moving: Any, model: str, *args: Any, **kwargs: Any) -> Any:
        if model == "similarity":
            raise _align._Diverged("made to fail")
        return real(template, moving, model, *args, **kwargs)

    monkeypatch.setattr(_align, "_register", failing)
    result = fuse(stack.frames)
    for index in (0, 2):
        assert result.frames[index].model == "translation"
        assert result.frames[index].flags == ("fell back from similarity to translation",)
        assert result.frames[index].status == "aligned"


def _pngs_with_a_black_frame(tmp_path: Path, frames: np.ndarray, black: int) -> Path:
    """``tmp_path / 'in'`` with the frames as 8-bit PNGs ``f0.png``..., frame ``black``
    black."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i, frame in enumerate(frames):
        data = np.zeros_like(frame) if i == black else frame
        Image.fromarray(np.rint(data * 255).astype(np.uint8)).save(folder / f"f{i}.png")
    return folder


def test_report_json_and_cli_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], clean: tuple[Any, np.ndarray, float]
) -> None:
    _, frames, _ = clean
    folder = _pngs_with_a_black_frame(tmp_path, frames, BAD)
    out = tmp_path / "out.png"
    report = tmp_path / "frames.json"
    argv = ["fuse", str(folder), "-o", str(out), "--quiet", "--report", str(report)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "warning: frames not trusted:" in err and "f1.png (rejected" in err
    document = json.loads(report.read_text())
    assert document["rejected"] == [str(folder / "f1.png")]
    assert [f["status"] for f in document["frames"]][BAD] == "rejected"
    assert document["frames"][3]["transform"] == np.eye(3).tolist()
    assert np.isclose(
        document["frames"][4]["residual"], 1 - document["frames"][4]["correlation"], atol=1e-6
    )
    # an existing report is refused before the work, naming the option
    assert main(argv + ["--force"]) == 0  # (the output exists too)
    capsys.readouterr()
    out.unlink()
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "--report" in err and "already exists" in err
    assert not out.exists()


def test_report_refuses_an_input(tmp_path: Path) -> None:
    frame = FrameReport(0, "a", "reference", "none", np.eye(3), None, None, 1.0, 1.0, 1.0)
    target = tmp_path / "a.png"
    target.write_bytes(b"x")
    with pytest.raises(_writer.InputTargetError, match="one of the inputs"):
        write_report([frame], target, overwrite=True, inputs=[target])


MIDDLE = 3  # the default reference of seven frames


def _in_frame_geometry(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The scene's truth as frame ``matrix`` sees it (SciPy, not our warp)."""
    if image.ndim == 2:
        return ndimage.affine_transform(image, matrix, order=3, mode="nearest")
    return _moved(image, matrix)


@pytest.mark.parametrize("kind", ["another scene", "black", "rotation 5 degrees", "zoom 3 %"])
def test_broken_reference_is_replaced_by_its_neighbour(
    kind: str, clean: tuple[Any, np.ndarray, float], caplog: Any
) -> None:
    scene, frames, _ = clean
    broken = frames.copy()
    broken[MIDDLE] = _broken(kind, frames, MIDDLE)
    result = fuse(broken)  # (was an AlignmentError, or the zoom's five frames rejected)
    assert result.reference == MIDDLE - 1
    assert [f.status for f in result.frames] == (
        ["aligned"] * 2 + ["reference", "rejected"] + ["aligned"] * 3
    )
    assert "the reference first chosen, broken" in result.frames[MIDDLE].flags[0]
    assert "frames[2]' is the reference instead" in caplog.text
    assert f"frames[{MIDDLE}] (rejected" in caplog.text
    np.testing.assert_array_equal(result.transforms[MIDDLE - 1], np.eye(3))
    # the output has frame 2's geometry: scored there against the truth, within 0.3 dB
    # (the bar) of the stack without the broken frame from the same reference
    # (measured +0.004 dB, 34.3 dB; against the truth in frame 3's geometry 29.1)
    stack = render_stack(scene, 7, breathing=0.002, shift=0.5, noise=0.005, seed=1)
    truth = _in_frame_geometry(scene.image, np.linalg.inv(stack.transforms[MIDDLE - 1]))
    without = fuse(np.delete(frames, MIDDLE, axis=0), reference=MIDDLE - 1)
    assert _psnr(truth, result.image) > _psnr(truth, without.image) - 0.3
    assert _psnr(truth, result.image) > _psnr(scene.image, result.image) + 2.0


def test_broken_reference_chosen_by_the_user_is_an_error(
    clean: tuple[Any, np.ndarray, float],
) -> None:
    _, frames, _ = clean
    broken = frames.copy()
    broken[MIDDLE] = _broken("zoom 3 %", frames, MIDDLE)
    with pytest.raises(AlignmentError, match=r"'frames\[3\]' looks broken.*another `reference`"):
        fuse(broken, reference=MIDDLE)


def test_broken_neighbour_keeps_the_reference(clean: tuple[Any, np.ndarray, float]) -> None:
    # three frames, the last one broken: half the frames rejected, but the reference's
    # two neighbours disagree with each other, so the reference is not to blame
    _, frames, _ = clean
    three = frames[[2, 3, 4]].copy()
    three[2] = _broken("another scene", frames, 4)
    result = fuse(three)
    assert result.reference == 1
    assert [f.status for f in result.frames][1:] == ["reference", "rejected"]


def test_broken_reference_in_the_cli_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], clean: tuple[Any, np.ndarray, float]
) -> None:
    _, frames, _ = clean
    folder = _pngs_with_a_black_frame(tmp_path, frames, MIDDLE)
    report = tmp_path / "frames.json"
    argv = ["fuse", str(folder), "-o", str(tmp_path / "out.png"), "--quiet"]
    assert main([*argv, "--report", str(report)]) == 0
    err = capsys.readouterr().err
    assert "f3.png (rejected: the reference first chosen, broken" in err
    assert "frame 2's geometry is the output's" in err
    document = json.loads(report.read_text())
    assert document["reference"] == str(folder / "f2.png")
    assert document["rejected"] == [str(folder / "f3.png")]


def test_a_zoom_jump_after_the_reference_keeps_the_reference(
    clean: tuple[Any, np.ndarray, float],
) -> None:
    # the lens jumps 3 % between the reference and the next frame, and stays there:
    # the reference's neighbours register to each other, but frame 2's own step from
    # the reference is a small one: the stack jumped, not the reference. Nor is any
    # frame broken: the steps after the jump and the first step down (predicted from
    # the jump) are ordinary ones, near no motion (they were all rejected: 25.8 dB)
    scene, frames, _ = clean
    jumped = frames.copy()
    for index in range(MIDDLE + 1, 7):
        jumped[index] = _moved(frames[index], _about_centre(zoom=1.03))
    result = fuse(jumped)
    assert result.reference == MIDDLE
    assert result.frames[MIDDLE].status == "reference"
    assert all(f.status != "rejected" for f in result.frames), summary(result.frames)
    # the jump itself is kept and named (a flag), the ordinary steps are not
    assert [f.index for f in result.frames if not f.trusted] == [MIDDLE + 1]
    assert result.frames[MIDDLE + 1].flags == (LARGE_STEP,)
    assert _psnr(scene.image, result.image) > 30.0  # measured 31.3 (33.0 without the jump)


def test_a_zoomed_frame_next_to_the_reference_does_not_reject_the_frames_beyond(
    clean: tuple[Any, np.ndarray, float],
) -> None:
    # frame 4 alone zoomed 3 %: its step from the reference is trusted (the first one,
    # within the wider limits) and registers it right, so it must not predict frame
    # 5's step, which undoes the zoom (5 of 7 frames were rejected: 25.8 dB)
    scene, frames, _ = clean
    zoomed = frames.copy()
    zoomed[MIDDLE + 1] = _moved(frames[MIDDLE + 1], _about_centre(zoom=1.03))
    result = fuse(zoomed)
    assert all(f.status != "rejected" for f in result.frames), summary(result.frames)
    # named: its step and the next one's, which undoes it
    assert [f.index for f in result.frames if not f.trusted] == [MIDDLE + 1, MIDDLE + 2]
    assert all(result.frames[i].flags == (LARGE_STEP,) for i in (MIDDLE + 1, MIDDLE + 2))
    plain = _psnr(scene.image, fuse(frames).image)
    assert _psnr(scene.image, result.image) > plain - 0.3  # measured -0.01 dB
