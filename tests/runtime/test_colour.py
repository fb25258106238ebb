"""The ``colour`` signal: a smoothed in-distribution colour palette and its novelty score."""

from __future__ import annotations

import json

import numpy as np
import pytest

from world_monitor.runtime.colour import ColourError, ColourModel

GREY, RED, MAGENTA = (120, 120, 120), (200, 40, 40), (255, 0, 255)


def _scene(rng: np.random.Generator, extra=None) -> np.ndarray:
    """A grey table with a red puck, colours jittered a little per scene (like the simulator)."""
    f = np.empty((16, 16, 3), np.uint8)
    f[:] = np.clip(np.array(GREY) + rng.integers(-6, 7, size=3), 0, 255)
    f[4:8, 4:8] = np.clip(np.array(RED) + rng.integers(-6, 7, size=3), 0, 255)
    if extra is not None:
        f[10:12, 10:12] = extra
    return f


@pytest.fixture(scope="module")
def model() -> ColourModel:
    rng = np.random.default_rng(0)
    return ColourModel.fit((_scene(rng)[None] for _ in range(200)), sigma=0.7, top_k=4)


def test_a_new_colour_scores_far_above_the_palette(model) -> None:
    rng = np.random.default_rng(1)
    nominal = [model.score(_scene(rng)) for _ in range(50)]
    shifted = model.score(_scene(rng, extra=MAGENTA))
    assert max(nominal) < shifted - 5.0  # nats: magenta is nowhere near grey or red
    # a 2x2 patch is 4 of 256 pixels: the frame-mean would dilute it, the top-k does not
    assert len(set(np.round(nominal, 9))) > 3  # graded by the jitter, not a mass of ties


def test_cells_localise_the_new_colour(model) -> None:
    rng = np.random.default_rng(2)
    cells = model.cells(_scene(rng, extra=MAGENTA))
    assert cells.shape == (4, 4)
    assert np.unravel_index(np.argmax(cells), cells.shape) == (2, 2)  # pixels 10-11 -> cell 2
    assert cells[0, 0] == 0.0 and cells[1, 1] == 0.0  # table and puck are in the palette


def test_round_trip_through_json_is_exact(model) -> None:
    doc = json.loads(json.dumps(model.to_dict()))
    assert len(doc["index"]) < 200  # sparse: only the palette's bins are stored
    back = ColourModel.from_dict(doc)
    frame = _scene(np.random.default_rng(3), extra=MAGENTA)
    assert back.score(frame) == model.score(frame)
    np.testing.assert_array_equal(back.cells(frame), model.cells(frame))
    score, cells = model.measure(frame)  # what the monitor calls: one pixel lookup for both
    assert score == model.score(frame)
    np.testing.assert_array_equal(cells, model.cells(frame))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"bins": 30}, "divide 256"),
        ({"index": [40_000], "count": [1.0]}, "malformed"),
        ({"count": []}, "malformed"),
        ({"sigma": "wide"}, "ill-typed"),
    ],
)
def test_malformed_stored_models_are_named(model, change, match) -> None:
    doc = {**model.to_dict(), **change}
    with pytest.raises(ColourError, match=match):
        ColourModel.from_dict(doc)


def test_bad_frames_and_empty_fits_are_refused(model) -> None:
    with pytest.raises(ColourError, match="uint8"):
        model.score(np.zeros((16, 16, 3), np.float32))
    with pytest.raises(ColourError, match="empty"):
        ColourModel.fit([])
