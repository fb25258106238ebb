"""On-disk dataset: atomic/resumable writing, index, selection, windows, errors."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest

from world_monitor.data.dataset import (
    DatasetError,
    DatasetWriter,
    EpisodeDataset,
    assign_splits,
    build_index,
    episode_id_for,
    split_for,
)


def _fill(root: Path, make_ep, n_id: int = 6, n_shift: int = 2) -> list:
    w = DatasetWriter(root)
    eps = []
    for i in range(n_id):
        ep = make_ep(i, success=i % 3 != 0)
        w.write(
            ep,
            episode_id=f"ep{i:03d}",
            split=["train", "train", "train", "val", "calib", "test"][i % 6],
        )
        eps.append(ep)
    for i in range(n_shift):
        ep = make_ep(100 + i, shift="lighting", mask=True, scenario="place")
        w.write(ep, episode_id=f"sh{i:03d}", split="test")
        eps.append(ep)
    w.finalize()
    return eps


def test_roundtrip_with_and_without_mask(tmp_path, make_ep):
    eps = _fill(tmp_path, make_ep)
    ds = EpisodeDataset(tmp_path)
    assert len(ds) == len(eps)
    by_id = {r.id: i for i, r in enumerate(ds.index)}
    for j, ep in enumerate(eps):
        eid = f"ep{j:03d}" if j < 6 else f"sh{j - 6:03d}"
        got = ds[by_id[eid]]
        assert got.equals(ep)
    # arrays are lazily memory-mapped, not loaded
    assert isinstance(ds[0].frames, np.memmap)


def test_format_readable_without_our_code(tmp_path, make_ep):
    ep = make_ep(3, shift="clutter", mask=True, size=13)
    DatasetWriter(tmp_path).write(ep, episode_id="x", split="test")
    d = tmp_path / "episodes" / "x"
    assert np.array_equal(np.load(d / "frames.npy", allow_pickle=False), ep.frames)
    packed = np.load(d / "shift_mask.npy", allow_pickle=False)
    assert np.array_equal(np.unpackbits(packed, axis=-1, count=13).astype(bool), ep.shift_mask)
    meta = json.loads((d / "meta.json").read_text())
    assert meta["meta"]["shift"] == "clutter" and meta["length"] == ep.length


def test_resume_skips_complete_and_ignores_partial(tmp_path, make_ep):
    w = DatasetWriter(tmp_path)
    w.write(make_ep(0), episode_id="a", split="train")
    mtime = (tmp_path / "episodes" / "a" / "frames.npy").stat().st_mtime_ns
    assert w.exists("a") and not w.exists("b")
    # a crashed write leaves a temporary directory and an episode dir without meta.json
    (tmp_path / "episodes" / ".tmp-b-123").mkdir()
    (tmp_path / "episodes" / ".tmp-b-123" / "frames.npy").write_bytes(b"junk")
    (tmp_path / "episodes" / "c").mkdir()
    w2 = DatasetWriter(tmp_path)  # the re-run
    w2.write(make_ep(99), episode_id="a", split="train")  # skipped: complete already
    assert (tmp_path / "episodes" / "a" / "frames.npy").stat().st_mtime_ns == mtime
    w2.write(make_ep(2), episode_id="c", split="val")  # incomplete dir is replaced
    records = w2.finalize()
    assert [r.id for r in records] == ["a", "c"]
    assert not list((tmp_path / "episodes").glob(".tmp-*"))
    assert EpisodeDataset(tmp_path)[0].equals(make_ep(0))


def _worker(args: tuple[str, list[int]]) -> int:
    from world_monitor.data.dataset import DatasetWriter as W

    root, seeds = args
    w = W(root)
    for s in seeds:
        from world_monitor.data.episode import EpisodeMeta

        rng = np.random.default_rng(s)
        from world_monitor.data.episode import Episode

        ep = Episode(
            rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8),
            rng.normal(size=(5, 4)).astype(np.float32),
            np.arange(5, dtype=np.float64),
            EpisodeMeta("pick", s, 10.0, True),
        )
        w.write(ep, episode_id=f"e{s}", split=split_for(f"e{s}"))
    return os.getpid()


def test_parallel_writers_then_parent_index(tmp_path):
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        pool.map(_worker, [(str(tmp_path), [0, 2, 4]), (str(tmp_path), [1, 3, 5])])
    records = DatasetWriter(tmp_path).finalize()
    assert [r.id for r in records] == [f"e{i}" for i in range(6)]
    assert len(EpisodeDataset(tmp_path)) == 6


def test_select_and_summary(tmp_path, make_ep):
    _fill(tmp_path, make_ep)
    ds = EpisodeDataset(tmp_path)
    assert len(ds.select(split="train")) == 3
    assert len(ds.select(split="test", shift="lighting")) == 2
    assert len(ds.select(split="test", shift=None)) == 1
    assert len(ds.select(shift="any")) == 2
    assert len(ds.select(scenario="place")) == 2
    assert len(ds.select(split=["val", "calib"])) == 2
    s = ds.summary()
    assert s["episodes"] == 8 and s["frames"] == 80
    assert s["per_split_shift"]["test"] == {"in-distribution": 1, "lighting": 2}
    assert s["success_rate"] == pytest.approx(6 / 8)
    with pytest.raises(ValueError, match="unknown split"):
        ds.select(split="training")


def test_windows_match_episode_slices(tmp_path, make_ep):
    eps = _fill(tmp_path, make_ep)
    ds = EpisodeDataset(tmp_path)
    wins = list(ds.windows("train", length=6, stride=2))
    assert len(wins) == 3 * 3  # starts 0, 2, 4 in each of 3 train episodes of length 10
    f, a = wins[4]
    rec = ds.select(split="train").index[1]
    ep = eps[int(rec.id[2:])]
    assert np.array_equal(f, ep.frames[2:8]) and np.array_equal(a, ep.actions[2:8])
    assert f.flags.writeable and f.shape == (6, 16, 16, 3) and a.dtype == np.float32
    s1 = [w[1].sum() for w in ds.windows("train", length=6, shuffle=True, seed=3)]
    s2 = [w[1].sum() for w in ds.windows("train", length=6, shuffle=True, seed=3)]
    assert s1 == s2
    assert len(ds.window_index(length=11)) == 0


def test_split_helpers_deterministic():
    ids = [f"e{i}" for i in range(100)]
    a = assign_splits(ids, fractions={"train": 0.7, "val": 0.1, "calib": 0.1, "test": 0.1}, seed=1)
    b = assign_splits(
        list(reversed(ids)),
        fractions={"train": 0.7, "val": 0.1, "calib": 0.1, "test": 0.1},
        seed=1,
    )
    assert a == b
    counts = {s: list(a.values()).count(s) for s in ("train", "val", "calib", "test")}
    assert counts == {"train": 70, "val": 10, "calib": 10, "test": 10}
    assert a != assign_splits(ids, seed=2)
    shifted = assign_splits(["x", "y"], shifts=["fog", None], fractions={"train": 1.0})
    assert shifted == {"x": "test", "y": "train"}
    assert split_for("e1", seed=0) == split_for("e1", seed=0)
    assert split_for("e1", shift="fog") == "test"
    hist = [split_for(i) for i in ids * 1]
    assert 50 <= hist.count("train") <= 90
    from world_monitor.data.episode import EpisodeMeta

    assert episode_id_for(EpisodeMeta("pick cube", 7, 10.0, True, shift="fog", severity=0.5)) == (
        "pick_cube-fog-s0.5-00000007"
    )


def test_errors_name_the_file(tmp_path, make_ep):
    _fill(tmp_path, make_ep, n_id=2, n_shift=0)
    # missing index
    (tmp_path / "index.json").rename(tmp_path / "index.bak")
    with pytest.raises(DatasetError, match="index.json: missing"):
        EpisodeDataset(tmp_path)
    (tmp_path / "index.bak").rename(tmp_path / "index.json")
    # version mismatch
    hdr = json.loads((tmp_path / "dataset.json").read_text())
    (tmp_path / "dataset.json").write_text(json.dumps({**hdr, "version": 99}))
    with pytest.raises(DatasetError, match="dataset.json: field 'version' is 99"):
        EpisodeDataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps(hdr))
    # corrupt array file
    f = tmp_path / "episodes" / "ep000" / "frames.npy"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(DatasetError, match=r"ep000/frames.npy: corrupt"):
        EpisodeDataset(tmp_path)[0]
    # array disagrees with the index
    np.save(f, np.zeros((3, 16, 16, 3), np.uint8))
    with pytest.raises(
        DatasetError,
        match=r"frames.npy: frames is uint8\[3, 16, 16, 3\], index.json says",
    ):
        EpisodeDataset(tmp_path)[0]
    # index lists an episode that is gone
    import shutil

    shutil.rmtree(tmp_path / "episodes" / "ep001")
    with pytest.raises(DatasetError, match="ep001: listed in index.json"):
        EpisodeDataset(tmp_path)
    # broken per-episode meta
    (tmp_path / "episodes" / "ep000" / "meta.json").write_text("{not json")
    with pytest.raises(DatasetError, match="ep000/meta.json: unreadable"):
        build_index(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        EpisodeDataset(tmp_path / "nope")


def test_writer_rejects_bad_input(tmp_path, make_ep):
    w = DatasetWriter(tmp_path)
    with pytest.raises(ValueError, match="split"):
        w.write(make_ep(0), episode_id="a", split="training")
    with pytest.raises(ValueError, match="episode id"):
        w.write(make_ep(0), episode_id="../evil", split="train")


def test_window_dataset_with_torch_loader_and_bounded_maps(tmp_path, make_ep):
    import torch
    from torch.utils.data import DataLoader

    from world_monitor.data.dataset import WindowDataset

    eps = _fill(tmp_path, make_ep)
    ds = EpisodeDataset(tmp_path)
    ds.max_open_episodes = 2
    wd = WindowDataset(ds, length=4, stride=3, split="train")
    assert len(wd) == 3 * 3
    batches = list(DataLoader(wd, batch_size=4, shuffle=False))
    frames, actions = batches[0]
    assert frames.dtype == torch.uint8 and tuple(frames.shape) == (4, 4, 16, 16, 3)
    first = ds.select(split="train").index[0]
    assert np.array_equal(actions[1].numpy(), eps[int(first.id[2:])].actions[3:7])
    assert len(ds._cache) <= 2
    with pytest.raises(IndexError):
        wd[len(wd)]


def test_numpy_metadata_is_serialised(tmp_path, make_ep):
    ep = make_ep(0)
    ep.meta.seed = np.int64(ep.meta.seed)
    ep.meta.extra = {"gain": np.float32(0.5), "offsets": np.arange(2)}
    w = DatasetWriter(tmp_path)
    w.write(ep, episode_id="a", split="train")
    w.finalize()
    got = EpisodeDataset(tmp_path)[0]
    assert got.meta.seed == 0 and got.meta.extra == {"gain": 0.5, "offsets": [0, 1]}
    ep.meta.extra = {"bad": object()}
    with pytest.raises(DatasetError, match="not JSON serialisable"):
        w.write(ep, episode_id="b", split="train")
    assert not list((tmp_path / "episodes").glob(".tmp-*"))


def test_api_used_by_generation(tmp_path, make_ep):
    """finalize(expected=...), load(id), mapping-style records and the per-scenario summary."""
    _fill(tmp_path, make_ep, n_id=3, n_shift=1)
    w = DatasetWriter(tmp_path)
    assert len(w.finalize(expected=["ep000", "ep001"])) == 4
    with pytest.raises(DatasetError, match=r"1 planned episode\(s\) missing: \['zz'\]"):
        w.finalize(expected=["ep000", "zz"])
    ds = EpisodeDataset(tmp_path)  # the index of what exists was still written
    assert ds.load("sh000").equals(make_ep(100, shift="lighting", mask=True, scenario="place"))
    with pytest.raises(DatasetError, match="no episode 'nope'"):
        ds.load("nope")
    rec = ds.index[0]
    assert rec["scenario"] == rec.scenario and rec.get("onset") is None and rec.get("x", 1) == 1
    row = ds.summary()["by_scenario"]["pick"]
    assert row["episodes"] == 3 and row["failures"] == 1 and row["splits"] == {"train": 3}
    assert row["success_rate"] == pytest.approx(2 / 3)
