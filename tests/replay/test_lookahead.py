"""Replay with model passes computed ahead (``threads > 1``) makes exactly the decisions of the
sequential replay, on the shipped bundle and real simulated episodes, including bags with
rejected messages in the middle; and the prefetcher hands out a pass only for its own inputs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from world_monitor.data.bag import export_episode_bag
from world_monitor.data.bag.codec import get_store
from world_monitor.defaults import default_bundle
from world_monitor.replay.replay import replay_bag
from world_monitor.runtime.model_pass import ModelPass, PassPrefetcher, pass_key
from world_monitor.runtime.monitor import load_monitor
from world_monitor.sim import simulate_episode


@pytest.fixture(scope="module")
def monitor(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_monitor(default_bundle(), "onnxruntime", engines_dir=tmp_path_factory.mktemp("e"))


def without_wall_clock(doc: Any) -> Any:
    """The summary minus what the wall clock measures (latencies) and the output path."""
    if isinstance(doc, dict):
        return {
            k: without_wall_clock(v)
            for k, v in doc.items()
            if "latency" not in k and k != "bag" and k != "seconds"
        }
    if isinstance(doc, list):
        return [without_wall_clock(v) for v in doc]
    return doc


def _messages(bag: Path, topics: set[str]) -> list[tuple[str, int, bytes]]:
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic in topics]
        return [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages(connections=conns)]


def _with_bad_messages(src: Path, dst: Path) -> Path:
    """``src`` plus a chunk of the wrong dimension and an undecodable image mid-episode."""
    store = get_store("jazzy")
    with Reader(src) as reader, Writer(dst, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        out = {
            c.topic: w.add_connection(c.topic, c.msgtype, typestore=store)
            for c in reader.connections
        }
        images = actions = 0
        for conn, t, raw in reader.messages():
            w.write(out[conn.topic], t, raw)
            if conn.topic.endswith("action_chunk"):
                actions += 1
                if actions == 20:  # the same chunk again with one joint dropped
                    msg = store.deserialize_cdr(raw, conn.msgtype)
                    msg.joint_names = msg.joint_names[:3]
                    for p in msg.points:
                        p.positions = p.positions[:3]
                    w.write(out[conn.topic], t + 1, store.serialize_cdr(msg, conn.msgtype))
            elif conn.topic.endswith("image_raw"):
                images += 1
                if images == 30:
                    msg = store.deserialize_cdr(raw, conn.msgtype)
                    msg.encoding = "no_such_encoding"
                    w.write(out[conn.topic], t + 1, store.serialize_cdr(msg, conn.msgtype))
    return dst


@pytest.mark.parametrize(
    ("scenario", "seed", "onset", "chunk_every", "bad"),
    [
        ("lighting", 4_000_000, 20, 1, False),
        ("in_distribution", 3_000_000, None, "policy", False),
        ("dynamics", 4_000_100, 15, 1, True),
    ],
)
def test_threads_make_the_same_decisions_as_the_sequential_replay(
    monitor: Any,
    tmp_path: Path,
    scenario: str,
    seed: int,
    onset: int | None,
    chunk_every: Any,
    bad: bool,
) -> None:
    ep = simulate_episode(scenario, seed, onset=onset)
    bag = export_episode_bag(ep, tmp_path / "bag", chunk_every=chunk_every)
    if bad:
        bag = _with_bad_messages(bag, tmp_path / "bad_bag")
    seq = replay_bag(bag, tmp_path / "seq", monitor=monitor, threads=1, progress=False)
    par = replay_bag(bag, tmp_path / "par", monitor=monitor, threads=2, progress=False)
    assert seq.perf["prefetch"] is None
    stats = par.perf["prefetch"]
    assert stats is not None and stats["threads"] == 2
    n = seq.summary["session"]["counts"]["assessments"]
    assert n > 0
    assert stats["hits"] == n and stats["misses"] == 0  # every decision found its pass ready
    assert without_wall_clock(par.summary) == without_wall_clock(seq.summary)
    topics = {"/world_monitor/lock", "/world_monitor/risk", "/world_monitor/heatmap"}
    assert _messages(par.bag_path, topics) == _messages(seq.bag_path, topics)
    if bad:
        rejected = seq.summary["messages"]["rejected_before_session"]
        assert sum(rejected["actions"].values()) + sum(rejected["image"].values()) >= 1
        accounting = seq.summary["session"]["accounting"]
        assert sum(accounting["actions"]["rejected"].values()) >= 1
        assert sum(accounting["image"]["rejected"].values()) >= 1


def test_chunks_at_the_policy_rate_mean_a_decision_per_chunk(monitor: Any, tmp_path: Path) -> None:
    ep = simulate_episode("in_distribution", 3_000_001)
    every = int(ep.meta.extra["replan_every"])
    bag = export_episode_bag(ep, tmp_path / "bag", chunk_every="policy")
    s = replay_bag(bag, tmp_path / "out", monitor=monitor, progress=False).summary
    chunks = -(-ep.length // every)
    assert s["messages"]["by_topic"]["/policy/action_chunk"]["count"] == chunks
    assert s["session"]["counts"]["decisions"] == chunks


def test_a_monitor_that_cannot_run_passes_concurrently_replays_sequentially(
    tmp_path: Path,
) -> None:
    torch_monitor = load_monitor(default_bundle(), "torch", engines_dir=tmp_path / "e")
    assert not torch_monitor.can_prefetch
    ep = simulate_episode("in_distribution", 3_000_002)
    bag = export_episode_bag(ep, tmp_path / "bag", chunk_every="policy")
    res = replay_bag(bag, tmp_path / "out", monitor=torch_monitor, threads=4, progress=False)
    assert res.perf == {"threads": 1, "prefetch": None}
    assert res.summary["session"]["counts"]["assessments"] > 0


def _fake_pass(tag: float) -> ModelPass:
    z = np.full((1, 1, 1, 1), tag, np.float32)
    return ModelPass(context_latents=z, latents=z, confidence=z, scores={"tag": tag})


def test_prefetcher_hands_out_a_pass_once_and_only_for_its_inputs() -> None:
    calls: list[float] = []
    lock = threading.Lock()

    def compute(frames: np.ndarray, chunk: np.ndarray, ctx: Any, seed: int) -> ModelPass:
        with lock:
            calls.append(float(chunk.sum()))
        if chunk.sum() < 0:
            raise RuntimeError("backend fault")
        return _fake_pass(float(chunk.sum()))

    frames = np.zeros((2, 4, 4, 3), np.uint8)
    chunk = np.ones((8, 4), np.float32)
    pf = PassPrefetcher(compute, threads=2, max_pending=2)
    try:
        pf.submit(frames, chunk, None, 0)
        pf.submit(frames, chunk, None, 0)  # same inputs: computed once
        other = chunk.copy()
        other[0, 0] = 2.0
        assert pf.take(frames, other, None, 0) is None  # never submitted
        assert pf.take(frames, chunk, None, 1) is None  # another seed is another pass
        got = pf.take(frames, chunk, None, 0)
        assert got is not None and got.scores["tag"] == 32.0
        assert pf.take(frames, chunk, None, 0) is None  # handed out once
        pf.submit(frames, -chunk, None, 0)
        assert pf.take(frames, -chunk, None, 0) is None  # a failed pass: the caller computes it
        for i in range(4):  # beyond max_pending the oldest are dropped
            c = chunk.copy()
            c[0, 0] = 10 + i
            pf.submit(frames, c, None, 0)
        assert pf.pending() == 2 and pf.stats()["dropped"] == 2
    finally:
        pf.close()
    assert calls.count(32.0) == 1


def test_pass_key_sees_dtype_shape_and_every_byte() -> None:
    a = np.zeros((8, 4), np.float32)
    b = a.copy()
    b[7, 3] = np.float32(1e-30)
    assert pass_key(a, a, None, 0) == pass_key(a.copy(), a.copy(), None, 0)
    assert pass_key(a, a, None, 0) != pass_key(a, b, None, 0)
    assert pass_key(a, a, None, 0) != pass_key(a, a.astype(np.float64), None, 0)
    assert pass_key(a, a, None, 0) != pass_key(a, a.reshape(4, 8), None, 0)
    assert pass_key(a, a, None, 0) != pass_key(a, a, a[:1], 0)
