"""The shipped bundle in the node on a real graph, fed by `world-monitor play` (nav2-style).

The real pipeline end to end on the wheel-installed ROS 2: simulator episodes exported as rosbag2
(MCAP), played into the live graph with the project's player, the real node deciding with the
shipped bundle on onnxruntime. A lighting shift that starts at frame 20 must close the lock after
its onset (and not before); an in-distribution episode must never close it once open. These are
the two episodes ``tests/test_pipeline_replay.py`` replays offline, so the live node and replay
are checked on the same data. Recorded bags start at t = 0, so they are played with
``--restamp`` (headers moved onto the node's clock) or ``--clock`` into a ``use_sim_time`` node.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from graph import Graph  # noqa: E402

from world_monitor.data.bag import export_episode_bag  # noqa: E402
from world_monitor.defaults import default_bundle  # noqa: E402
from world_monitor.ros.play import PlayOptions, play_bag  # noqa: E402
from world_monitor.runtime.monitor import load_monitor  # noqa: E402
from world_monitor.sim import simulate_episode  # noqa: E402

ONSET = 20
BOUND_S = 1.5  # wall time from the onset frame's publication to the closed lock
IMAGE_TOPIC = "/camera/image_raw"
ACTION_TOPIC = "/policy/action_chunk"


@pytest.fixture(scope="module")
def monitor(tmp_path_factory: pytest.TempPathFactory):
    return load_monitor(default_bundle(), "onnxruntime", engines_dir=tmp_path_factory.mktemp("eng"))


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, float]]:
    root = tmp_path_factory.mktemp("bags")
    shift = simulate_episode("lighting", 4_000_000, onset=ONSET)
    ind = simulate_episode("in_distribution", 3_000_000)
    return {
        "shift": (export_episode_bag(shift, root / "shift", storage="mcap"), shift.stamps[ONSET]),
        "ind": (export_episode_bag(ind, root / "ind", storage="mcap"), float("inf")),
    }


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def _play(g: Graph, bag: Path, onset_stamp: float, **options) -> dict[str, float]:
    """Play ``bag`` into the node; returns the wall (monotonic) times of the first and last
    published frame and of the onset frame."""
    times: dict[str, float] = {}
    onset_ns = round(onset_stamp * 1e9) if onset_stamp != float("inf") else None

    def on_publish(topic: str, log_ns: int) -> None:
        if topic == "/image":
            now = time.monotonic()
            times.setdefault("first", now)
            times["last"] = now
            if onset_ns is not None and log_ns >= onset_ns:
                times.setdefault("onset", now)

    report = play_bag(
        bag,
        PlayOptions(
            topics=[IMAGE_TOPIC, ACTION_TOPIC],
            remaps={IMAGE_TOPIC: "/image", ACTION_TOPIC: "/action_chunk"},
            wait_subscribers=2,
            wait_timeout=20.0,
            progress=False,
            **options,
        ),
        ready=g.wait_matched,
        on_publish=on_publish,
    )
    assert report.published_total > 0
    return times


def _engaged_after(g: Graph, t: float) -> float | None:
    return next((ts for ts, m in g.rec.get("lock") if ts >= t and m.data is True), None)


def _first_open(g: Graph) -> float | None:
    return next((ts for ts, m in g.rec.get("lock") if m.data is False), None)


def test_a_played_shift_closes_the_lock_after_its_onset(ros, monitor, bags) -> None:
    g = Graph(lambda p, cfg: monitor, {"bundle_path": "shipped"})
    try:
        times = _play(g, *bags["shift"], restamp=True)
        assert g.wait_for(lambda: _engaged_after(g, times["onset"]) is not None, BOUND_S + 1.0)
        opened = _first_open(g)
        assert opened is not None and opened < times["onset"], "never opened before the onset"
        engaged = _engaged_after(g, opened)
        assert engaged is not None and times["onset"] <= engaged <= times["onset"] + BOUND_S, (
            f"lock closed {engaged - times['onset']:+.2f} s from the onset"
        )
        reasons = [r.value for r in g.wm.session.status().reasons]
        assert "risk_high" in reasons or "stale_image" in reasons
        acc = g.wm.session.accounting.to_dict()
        assert acc["image"]["rejected_total"] == 0 and acc["actions"]["rejected_total"] == 0
    finally:
        g.close()


def test_a_played_in_distribution_episode_never_closes_an_open_lock(ros, monitor, bags) -> None:
    g = Graph(lambda p, cfg: monitor, {"bundle_path": "shipped"})
    try:
        times = _play(g, *bags["ind"], restamp=True)
        opened = _first_open(g)
        assert opened is not None and opened < times["first"] + 2.0
        locks = [(ts, m.data) for ts, m in g.rec.get("lock") if opened <= ts <= times["last"]]
        assert locks and not any(v for _, v in locks), (
            f"closed during an in-distribution episode: {g.decision_log()}"
        )
        # the recording ended: the camera goes stale and the lock closes (fail closed)
        assert g.wait_for(lambda: _engaged_after(g, times["last"]) is not None, 2.0)
    finally:
        g.close()


def test_played_with_clock_into_a_sim_time_node(ros, monitor, bags) -> None:
    """``--clock`` + ``use_sim_time``: the node's clock is the bag's; the bag's first frame has
    header stamp 0 (unset in ROS) and is rejected by name, every later one is used."""
    g = Graph(lambda p, cfg: monitor, {"bundle_path": "shipped", "use_sim_time": True})
    try:
        times = _play(g, *bags["shift"], clock_hz=50.0)
        assert g.wait_for(lambda: _engaged_after(g, times["onset"]) is not None, BOUND_S + 1.0)
        opened = _first_open(g)
        assert opened is not None and opened < times["onset"]
        acc = g.wm.session.accounting.to_dict()["image"]
        assert acc["rejected"] == {"invalid_stamp": 1}, acc
    finally:
        g.close()
