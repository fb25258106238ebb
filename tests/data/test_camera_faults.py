"""Camera faults: deterministic, confined to their mask and onset, the size asked for."""

from __future__ import annotations

import numpy as np
import pytest

from world_monitor.data.camera_faults import frozen_camera, lens_smudge, smudge_opacity


def _frames(n: int = 6, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("area", [0.01, 0.03, 0.06])
def test_smudge_covers_the_area_asked_for(area: float) -> None:
    a = smudge_opacity((64, 64), area, np.random.default_rng(3))
    assert a.min() >= 0.0 and a.max() == pytest.approx(1.0)
    assert (a >= 0.5).mean() == pytest.approx(area, rel=0.2)


def test_smudge_changes_only_its_region_and_only_from_the_onset() -> None:
    frames = _frames()
    out = lens_smudge(frames, 2, area=0.03, seed=5)
    np.testing.assert_array_equal(out.frames[:2], frames[:2])
    assert not out.mask[:2].any() and out.mask[2:].all(axis=0).sum() == out.mask[2].sum()
    changed = np.any(out.frames[2] != frames[2], axis=-1)
    # visibly smudged inside the mask; outside it the soft edge fades to nothing
    assert changed[out.mask[2]].mean() > 0.9
    far = smudge_opacity((64, 64), 0.03, np.random.default_rng(5)) == 0.0
    np.testing.assert_array_equal(out.frames[2][far], frames[2][far])
    # the smudge veils: inside it the image has less contrast than the original
    assert out.frames[3][out.mask[3]].std() < frames[3][out.mask[3]].std()
    again = lens_smudge(frames, 2, area=0.03, seed=5)
    np.testing.assert_array_equal(out.frames, again.frames)
    other = lens_smudge(frames, 2, area=0.03, seed=6)
    assert not np.array_equal(other.mask, out.mask)


def test_frozen_camera_repeats_the_onset_frame() -> None:
    frames = _frames()
    out = frozen_camera(frames, 3)
    np.testing.assert_array_equal(out.frames[:4], frames[:4])
    for t in range(3, 6):
        np.testing.assert_array_equal(out.frames[t], frames[3])
    assert out.mask[3:].all() and not out.mask[:3].any()


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="onset"):
        frozen_camera(_frames(), 6)
    with pytest.raises(ValueError, match="uint8"):
        lens_smudge(_frames().astype(np.float32), 0)
    with pytest.raises(ValueError, match="area"):
        lens_smudge(_frames(), 0, area=0.7)
