"""Replay refuses, in one line and before any work, a recording that does not fit the bundle
(issue 15 item 4); individually bad messages are still replayed and counted."""

from __future__ import annotations

import types

import pytest
from conftest import make_episode, write_custom_bag

from world_monitor.replay import BundleMismatch, replay_bag


def _replay(bag, monitor, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("write_bag", False)
    return replay_bag(bag, monitor=monitor, **kw)


def test_every_difference_is_named_in_one_line(make_bag, fake_monitor, tmp_path) -> None:
    bag = make_bag(make_episode(action_dim=7), horizon=3)
    monitor = fake_monitor(horizon=4, action_dim=4)
    with pytest.raises(BundleMismatch) as err:
        _replay(bag, monitor, write_bag=True, out=tmp_path / "out")
    msg = str(err.value)
    assert "\n" not in msg
    assert "action dim 7 (the bundle's: 4)" in msg
    assert "chunks of 3 points (the bundle's horizon: 4)" in msg
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_a_camera_slower_than_the_bundles_period_is_refused(make_bag, fake_monitor) -> None:
    monitor = fake_monitor()
    monitor.frame_period_s = 0.05  # a 20 Hz bundle; the bag is 10 Hz: every context a gap
    with pytest.raises(BundleMismatch, match=r"camera at 10 Hz, slower than the bundle's 20 Hz"):
        _replay(make_bag(make_episode()), monitor)


def test_a_faster_camera_fits_it_is_subsampled(make_bag, fake_monitor) -> None:
    monitor = fake_monitor()
    monitor.frame_period_s = 0.2  # a 5 Hz bundle on a 10 Hz camera: every other frame is used
    s = _replay(make_bag(make_episode()), monitor).summary
    assert s["messages"]["accounted"]


def test_a_few_bad_chunks_are_not_a_mismatch_they_are_counted(tmp_path, fake_monitor) -> None:
    """Only a sample in which *every* decodable chunk disagrees is a mismatch."""
    s = _replay(
        write_custom_bag(tmp_path / "odd", action_dim=[3] + [4] * 11, extra_topic=False),
        fake_monitor(),
    ).summary
    assert s["messages"]["rejected_before_session"]["actions"] == {"wrong_dim": 1}
    assert s["messages"]["accounted"] and s["lock"]["first_open"] is not None


def test_chunks_in_another_field_are_named_and_replayed_with_action_field(
    make_bag, fake_monitor
) -> None:
    bag = make_bag(make_episode(), action_field="effort")
    with pytest.raises(BundleMismatch, match="the points carry 4 effort: choose the field"):
        _replay(bag, fake_monitor())
    s = _replay(bag, fake_monitor(), action_field="effort").summary
    assert s["session"]["accounting"]["actions"]["rejected_total"] == 0
    assert s["lock"]["first_open"] is not None


def test_the_cli_exits_2_with_one_line(make_bag, fake_monitor, monkeypatch, capsys) -> None:
    from world_monitor import cli

    mod = types.ModuleType("world_monitor.runtime.monitor")
    mod.load_monitor = lambda bundle, backend=None: fake_monitor(action_dim=4)
    monkeypatch.setitem(__import__("sys").modules, "world_monitor.runtime.monitor", mod)
    bag = make_bag(make_episode(action_dim=7))
    rc = cli.main(["replay", str(bag), "--bundle", "B", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("world-monitor replay: error:") and "action dim 7" in err[0]


def test_the_cli_warns_when_the_calibration_drifted(monkeypatch, capsys, tmp_path) -> None:
    """Issue 16 §3: `calibration_drift` is a WARN on /diagnostics and, after a replay, one
    line saying at how many decisions it held (absent when it never did)."""
    import world_monitor.replay as replay_pkg
    from world_monitor import cli

    def fake(drift: int):
        summary = {
            "messages": {"read": 10, "accounted": True},
            "image_topic": "/camera",
            "action_topic": "/chunk",
            "session": {
                "alerts": [],
                "counts": {"decisions": 8, "calibration_drift_decisions": drift},
            },
            "lock": {"final": False},
        }
        return lambda *a, **k: types.SimpleNamespace(
            summary=summary, bag_path=tmp_path / "out", summary_path=tmp_path / "s.json"
        )

    monkeypatch.setattr(replay_pkg, "replay_bag", fake(3))
    assert cli.main(["replay", str(tmp_path), "--bundle", "B", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "WARN calibration_drift: at 3 of 8 decisions" in out
    monkeypatch.setattr(replay_pkg, "replay_bag", fake(0))
    assert cli.main(["replay", str(tmp_path), "--bundle", "B", "--no-progress"]) == 0
    assert "calibration_drift" not in capsys.readouterr().out
