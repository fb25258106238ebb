"""Action statistics (train split only, JSON) and frame <-> float conversion."""

from __future__ import annotations

import numpy as np
import pytest

from world_monitor.data.dataset import DatasetWriter, EpisodeDataset
from world_monitor.data.normalize import (
    ActionNormalizer,
    float_to_frames,
    frames_to_float,
)


def test_frame_float_roundtrip_is_exact():
    f = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
    x = frames_to_float(f)
    assert x.dtype == np.float32 and x.min() == -1.0 and x.max() == 1.0
    assert np.array_equal(float_to_frames(x), f)
    assert float_to_frames(np.array([-3.0, 3.0])).tolist() == [0, 255]
    with pytest.raises(TypeError):
        frames_to_float(f.astype(np.float32))


@pytest.mark.parametrize("mode", ["standard", "minmax"])
def test_normalizer_roundtrip_and_json(tmp_path, mode):
    rng = np.random.default_rng(0)
    a = rng.normal([1, -2, 0.5, 0], [0.1, 3, 0.01, 0], size=(500, 4)).astype(np.float32)
    a[:, 3] = 1.0  # constant gripper: must not blow up
    n = ActionNormalizer.fit([a[:200], a[200:]], mode=mode)
    z = n.normalize(a)
    assert np.isfinite(z).all()
    if mode == "standard":
        assert np.allclose(z[:, :3].mean(0), 0, atol=1e-4) and np.allclose(
            z[:, :3].std(0), 1, atol=1e-3
        )
    else:
        assert z[:, :3].min() >= -1 - 1e-5 and z[:, :3].max() <= 1 + 1e-5
    assert np.allclose(n.denormalize(z), a, atol=1e-5)
    n.save(tmp_path / "n.json")
    m = ActionNormalizer.load(tmp_path / "n.json")
    assert np.array_equal(m.normalize(a), z) and m.count == 500
    with pytest.raises(ValueError, match="dimension"):
        n.normalize(a[:, :3])


def test_normalizer_from_train_split_only(tmp_path, make_ep):
    w = DatasetWriter(tmp_path)
    w.write(make_ep(0), episode_id="tr", split="train")
    big = make_ep(1)
    big.actions[:] = 100.0
    w.write(big, episode_id="te", split="test")
    w.finalize()
    ds = EpisodeDataset(tmp_path)
    n = ActionNormalizer.from_dataset(ds)
    assert np.allclose(n.mean, make_ep(0).actions.mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        ActionNormalizer.from_dataset(ds, split="val")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json"):
        ActionNormalizer.load(tmp_path / "bad.json")
