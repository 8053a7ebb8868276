"""The retouch replay: brush weights against hand-checked cases, compositing, the format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convstack.viewer.retouch import (
    Stroke,
    apply_strokes,
    brush_weights,
    load_strokes,
    parse_strokes,
    strokes_document,
    to_dtype,
)


def stroke(points: list[list[float]], radius: float, hardness: float = 1.0, **kw: Any) -> Stroke:
    return Stroke(kw.get("frame", 0), radius, hardness, kw.get("erase", False), np.array(points))


def document(strokes: list[dict[str, Any]], rows: int = 20, cols: int = 30) -> dict[str, Any]:
    return {
        "format": "convstack-strokes",
        "version": 1,
        "image": {"rows": rows, "cols": cols},
        "strokes": strokes,
    }


def test_hardness_1_replaces_exactly_the_pixels_within_the_radius() -> None:
    image = np.zeros((21, 21), dtype=np.uint8)
    frame = np.full((21, 21), 200, dtype=np.uint8)
    out = apply_strokes(image, [stroke([[10.0, 10.0]], 5.0)], lambda i: frame)
    # lattice points with dr^2 + dc^2 <= 25: Gauss's circle count N(5) = 81
    assert int((out == 200).sum()) == 81
    assert set(np.unique(out)) == {0, 200}
    for r in range(21):
        for c in range(21):
            inside = (r - 10) ** 2 + (c - 10) ** 2 <= 25
            assert out[r, c] == (200 if inside else 0), (r, c)
    assert (image == 0).all()  # the input is untouched


def test_a_segment_paints_its_capsule() -> None:
    image = np.zeros((12, 24, 3), dtype=np.uint16)
    frame = np.full((12, 24, 3), 40000, dtype=np.uint16)
    out = apply_strokes(image, [stroke([[5.0, 5.0], [5.0, 15.0]], 2.0)], lambda i: frame)
    for r in range(12):
        for c in range(24):
            nearest = min(max(c, 5), 15)  # closest point of the segment: (5, nearest)
            inside = (r - 5) ** 2 + (c - nearest) ** 2 <= 4
            assert (out[r, c] == (40000 if inside else 0)).all(), (r, c)
    assert out.dtype == np.uint16


def test_soft_brush_profile_by_hand() -> None:
    # radius 4, hardness 0.5: weight 1 up to distance 2, smoothstep down to 0 at 4;
    # at distance 3, t = 0.5 and 1 - t^2 (3 - 2t) = 0.5
    image = np.zeros((21, 21), dtype=np.uint8)
    frame = np.full((21, 21), 100, dtype=np.uint8)
    out = apply_strokes(image, [stroke([[10.0, 10.0]], 4.0, 0.5)], lambda i: frame)
    assert out[10, 12] == 100 and out[10, 8] == 100  # distance 2
    assert out[10, 13] == 50 and out[13, 10] == 50  # distance 3
    assert out[10, 14] == 0 and out[14, 10] == 0  # distance 4
    # distance sqrt(5) = 2.236: t = 0.118, weight 1 - 0.0139 * 2.764 = 0.9616 -> 96
    assert out[11, 12] == 96


def test_brush_weights_doctest_case_and_clipping() -> None:
    region, w = brush_weights(stroke([[0.0, 0.0]], 1.5), (5, 5))  # type: ignore[misc]
    assert region == (slice(0, 2), slice(0, 2))
    assert np.array_equal(w, np.ones((2, 2)))  # (1,1) at sqrt(2) <= 1.5
    assert brush_weights(stroke([[-10.0, -10.0]], 2.0), (5, 5)) is None


def test_strokes_apply_in_order_and_erase_restores() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    frames = [rng.integers(0, 256, (30, 40, 3), dtype=np.uint8) for _ in range(3)]
    first = stroke([[15.0, 20.0]], 6.0, frame=1)
    second = stroke([[15.0, 20.0]], 3.0, frame=2)
    out = apply_strokes(image, [first, second], frames.__getitem__)
    assert np.array_equal(out[15, 20], frames[2][15, 20])  # the later stroke on top
    assert np.array_equal(out[15, 25], frames[1][15, 25])  # only the first reaches here
    assert np.array_equal(out[0, 0], image[0, 0])
    erased = apply_strokes(
        image,
        [first, second, stroke([[15.0, 20.0]], 7.0, erase=True, frame=None)],
        frames.__getitem__,
    )
    assert np.array_equal(erased, image)


def test_float_image_and_frame_conversion() -> None:
    image = np.zeros((5, 5), dtype=np.float32)
    frame = np.full((5, 5), 65535, dtype=np.uint16)
    out = apply_strokes(image, [stroke([[2.0, 2.0]], 0.5)], lambda i: frame)
    assert out.dtype == np.float32 and out[2, 2] == 1.0 and out.sum() == 1.0
    values = np.array([0, 128, 256, 257, 385, 386, 65535], dtype=np.uint16)
    expected = np.floor(values / 257.0 + 0.5).astype(np.uint8)  # 385/257 = 1.498 -> 1
    assert np.array_equal(to_dtype(values, np.uint8), expected)
    assert np.array_equal(to_dtype(np.array([0, 1, 255], np.uint8), np.uint16), [0, 257, 65535])


def test_frame_of_another_shape_is_refused() -> None:
    image = np.zeros((5, 5), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"`frame 0` must have the image's shape \(5, 5\)"):
        apply_strokes(image, [stroke([[2.0, 2.0]], 1.0)], lambda i: np.zeros((4, 5), np.uint8))


def test_document_round_trip(tmp_path: Path) -> None:
    strokes = [stroke([[1.0, 2.5], [3.0, 4.0]], 2.0, 0.25, frame=2)]
    text = json.dumps(strokes_document(strokes, (20, 30), ["a.png"]))
    (tmp_path / "s.json").write_text(text)
    parsed = parse_strokes(load_strokes(tmp_path / "s.json"), (20, 30, 3), 3)
    assert parsed[0].frame == 2 and parsed[0].hardness == 0.25
    assert np.array_equal(parsed[0].points, strokes[0].points)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON document"):
        load_strokes(tmp_path / "bad.json")


GOOD = {"frame": 0, "radius": 3, "hardness": 1, "erase": False, "points": [[1, 2]]}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], r"`strokes` must be a JSON object"),
        ({**document([]), "format": "x"}, r"`format` must be 'convstack-strokes'; got 'x'"),
        ({**document([]), "version": 2}, r"`version` must be 1; got 2"),
        ({**document([]), "image": {"rows": 0, "cols": 3}}, r"`image.rows` must be an integer"),
        ({**document([]), "image": None}, r"`image` must be an object"),
        ({**document([]), "strokes": {}}, r"`strokes` must be a list"),
        (document([1]), r"`strokes\[0\]` must be an object"),
        (document([{**GOOD, "frame": -1}]), r"`strokes\[0\].frame` must be a frame index >= 0"),
        (document([{**GOOD, "frame": 7}]), r"`strokes\[0\].frame` must be a frame index below 4"),
        (document([{**GOOD, "frame": True}]), r"`strokes\[0\].frame` must be a frame index"),
        (document([{**GOOD, "radius": 0}]), r"`strokes\[0\].radius` must lie in \(0, 120\]"),
        (document([{**GOOD, "radius": "big"}]), r"`strokes\[0\].radius` must be a number"),
        (document([{**GOOD, "radius": float("nan")}]), r"`strokes\[0\].radius` must be finite"),
        (document([{**GOOD, "hardness": 1.5}]), r"`strokes\[0\].hardness` must lie in \[0, 1\]"),
        (document([{**GOOD, "erase": 1}]), r"`strokes\[0\].erase` must be true or false"),
        (document([{**GOOD, "points": []}]), r"`strokes\[0\].points` must be a non-empty list"),
        (document([{**GOOD, "points": [[1]]}]), r"`strokes\[0\].points\[0\]` must be \[row, col\]"),
        (document([{**GOOD, "points": [[1, None]]}]), r"`strokes\[0\].points\[0\]\[1\]` must be"),
        (document([], rows=5), r"`image` must match the image's size 20 x 30"),
    ],
)
def test_bad_documents_name_the_field(doc: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_strokes(doc, (20, 30), 4)


def test_an_erase_stroke_needs_no_frame_and_too_many_points_are_refused() -> None:
    erase = {"radius": 3, "erase": True, "frame": None, "points": [[1, 2]]}
    assert parse_strokes(document([erase]), (20, 30), 0)[0].frame is None
    many = {**GOOD, "points": [[1, 2]] * 1_000_001}
    with pytest.raises(ValueError, match=r"`strokes` must hold at most 1000000 points"):
        parse_strokes(document([many]))
