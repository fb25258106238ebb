"""End to end on the real pipeline: simulator -> rosbag2 -> replay with the shipped bundle.

A lighting shift that starts mid-episode must close the lock at (not before) its onset, and an
in-distribution episode must not close it. The in-distribution seed is the default dataset's
first test episode; in-distribution episodes are falsely stopped at the calibrated rate (~1.5%
measured on 200 test episodes), so a different seed could legitimately stop.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from world_monitor.data.bag import export_episode_bag
from world_monitor.defaults import default_bundle
from world_monitor.replay.replay import replay_bag
from world_monitor.runtime.monitor import load_monitor
from world_monitor.sim import simulate_episode

ONSET = 20


@pytest.fixture(scope="module")
def monitor(tmp_path_factory: pytest.TempPathFactory):
    return load_monitor(default_bundle(), "onnxruntime", engines_dir=tmp_path_factory.mktemp("eng"))


def _replay(episode, monitor, tmp: Path) -> dict:
    bag = export_episode_bag(episode, tmp / "bag", storage="mcap")
    result = replay_bag(bag, tmp / "out", monitor=monitor, progress=False)
    return result.summary


def test_shift_closes_the_lock_at_its_onset(monitor, tmp_path: Path) -> None:
    ep = simulate_episode("lighting", 4_000_000, onset=ONSET)
    s = _replay(ep, monitor, tmp_path)
    fps = ep.meta.fps
    engaged = s["lock"]["first_engaged_after_open"]
    assert s["lock"]["first_open"] is not None and s["lock"]["first_open"] < ONSET / fps
    assert engaged is not None, s["lock"]
    assert ONSET / fps - 1e-6 <= engaged - ep.stamps[0] <= (ONSET + 3) / fps
    assert s["lock"]["final"] is True
    assert s["messages"]["accounted"]
    stops = [
        d for d in s["session"]["decisions"] if d["decision"] == "STOP" and d["risk"] is not None
    ]
    assert stops and all(d["box"] is not None for d in stops)


def test_in_distribution_episode_keeps_the_lock_open(monitor, tmp_path: Path) -> None:
    ep = simulate_episode("in_distribution", 3_000_000)
    s = _replay(ep, monitor, tmp_path)
    assert s["lock"]["first_open"] is not None
    assert s["lock"]["first_engaged_after_open"] is None, s["lock"]
    assert s["messages"]["accounted"]
