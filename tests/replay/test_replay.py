"""Offline replay: lock behaviour, equivalence with MonitorSession, outputs, bad bags, determinism."""

from __future__ import annotations

import json
import types

import pytest
from conftest import FPS, HW, make_episode, write_custom_bag
from rosbags.rosbag2 import Reader

from world_monitor.data.bag import BagError
from world_monitor.data.bag.codec import get_store
from world_monitor.replay import MONITOR_TOPICS, BundleMismatch, replay_bag
from world_monitor.runtime.session import MonitorSession, gate_config_for
from world_monitor.runtime.types import Decision


def _replay(bag, monitor, out=None, **kw):
    kw.setdefault("progress", False)
    return replay_bag(bag, out, monitor=monitor, **kw)


def _messages(path):
    store = get_store("jazzy")
    out = []
    with Reader(path) as reader:
        for conn, log_ns, raw in reader.messages():
            out.append((conn.topic, conn.msgtype, log_ns, raw, store))
    return out


def test_shift_bag_closes_lock_and_in_distribution_does_not(make_bag, fake_monitor):
    shift = _replay(make_bag(make_episode(onset=10)), fake_monitor()).summary
    onset_t = 100.0 + 10 / FPS
    assert shift["lock"]["first_open"] is not None
    engaged = shift["lock"]["first_engaged_after_open"]
    assert engaged is not None and onset_t - 1e-6 <= engaged <= onset_t + 1.0 / FPS
    assert shift["lock"]["final"] is True
    alerts = shift["session"]["alerts"]
    assert len(alerts) == 1 and alerts[0]["decision"] == "STOP"
    assert alerts[0]["start"] == pytest.approx(onset_t)
    assert alerts[0]["box"] == [0.0, 0.0, 1.0, 1.0] and alerts[0]["onset_step"] == 0

    ind = _replay(make_bag(make_episode()), fake_monitor()).summary
    assert ind["lock"]["first_open"] is not None
    assert ind["lock"]["first_engaged_after_open"] is None and ind["lock"]["final"] is False
    assert ind["session"]["alerts"] == []


def test_replay_equals_driving_the_session_directly(make_bag, fake_monitor):
    ep = make_episode(onset=12)
    replayed = _replay(make_bag(ep), fake_monitor()).summary["session"]["decisions"]
    mon = fake_monitor()
    s = MonitorSession(mon, gate_config_for(mon))
    direct = []
    for i, t in enumerate(ep.stamps):
        t = round(t * 1e9) * 1e-9
        s.tick(t)
        s.on_image(ep.frames[i], t, "rgb8")
        s.on_actions(ep.actions[i : i + 1], t)
        if s.decision_due(t):
            s.decide(t)
    direct = s.summary()["decisions"]
    key = [("now", "risk", "decision", "reasons", "box", "onset_step")]
    assert [[d[k] for k in key[0]] for d in replayed] == [[d[k] for k in key[0]] for d in direct]
    assert len(replayed) == ep.length


def test_output_mcap_has_monitor_topics_with_types_and_stamps(make_bag, fake_monitor, tmp_path):
    bag = make_bag(make_episode(onset=10), frame_id="cam_optical")
    res = _replay(bag, fake_monitor(), out=tmp_path / "out")
    assert (tmp_path / "out" / "metadata.yaml").exists()
    assert list((tmp_path / "out").glob("*.mcap")) and res.summary_path.exists()
    assert "storage_identifier: mcap" in (tmp_path / "out" / "metadata.yaml").read_text()
    with Reader(tmp_path / "out") as reader:
        types_ = {c.topic: c.msgtype for c in reader.connections}
    for topic, msgtype in MONITOR_TOPICS.items():
        assert types_[topic] == msgtype
    assert types_["/camera/image_raw"] == "sensor_msgs/msg/Image"
    msgs = _messages(tmp_path / "out")
    log_times = [m[2] for m in msgs]
    assert log_times == sorted(log_times)
    store = get_store("jazzy")
    cam_stamps = set()
    heat, locks, diags, risks = [], [], [], []
    for topic, msgtype, log_ns, raw, _ in msgs:
        if topic not in MONITOR_TOPICS and topic != "/camera/image_raw":
            continue
        msg = store.deserialize_cdr(raw, msgtype)
        if topic == "/camera/image_raw":
            cam_stamps.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
        elif topic == "/world_monitor/heatmap":
            heat.append((log_ns, msg))
        elif topic == "/world_monitor/lock":
            locks.append((log_ns, bool(msg.data)))
        elif topic == "/diagnostics":
            diags.append((log_ns, msg))
        else:
            risks.append(float(msg.data))
    assert heat and locks and diags and risks
    for log_ns, msg in heat:
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) in cam_stamps
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == log_ns  # no latency
        assert msg.header.frame_id == "cam_optical"
        assert (msg.height, msg.width, msg.encoding, msg.step) == (*HW, "rgb8", HW[1] * 3)
        assert msg.data.size == HW[0] * HW[1] * 3
    assert locks[0][1] is True  # boots closed
    assert any(not lock for _, lock in locks) and locks[-1][1] is True
    for log_ns, msg in diags:
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == log_ns
        st = msg.status[0]
        assert st.level in (0, 1, 2, 3) and st.name
        keys = {kv.key for kv in st.values}
        assert {"decision", "reasons", "backend", "inputs.image.offered"} <= keys
    assert diags[-1][1].status[0].level == 1  # WARN: gate closed on risk at the end
    assert max(risks) > 0.7 and min(risks) < 0.5


def test_summary_accounts_for_every_message(make_bag, fake_monitor):
    res = _replay(make_bag(make_episode(onset=10)), fake_monitor())
    s = json.loads(res.summary_path.read_text())
    m = s["messages"]
    assert m["accounted"] and m["problems"] == []
    assert m["read"] == sum(t["count"] for t in m["by_topic"].values()) == 41
    assert m["ignored"] == {"/world_monitor/episode_meta": 1}
    acc = s["session"]["accounting"]
    for stream in ("image", "actions"):
        c = acc[stream]
        assert c["offered"] == 20 == c["accepted"] + c["rejected_total"]
        assert c["accepted"] == c["used"] + c["superseded"] + c["pending"]
    assert set(s["session"]["latency_ms"]) == {"encode", "rollout"}
    assert s["session"]["latency_ms"]["encode"]["p95"] == 1.0


def test_other_topic_names_compressed_images_sqlite(make_bag, fake_monitor):
    bag = make_bag(
        make_episode(onset=10),
        image_topic="/robot/front/compressed",
        action_topic="/act/chunk",
        compressed="png",
        storage="sqlite3",
    )
    s = _replay(bag, fake_monitor()).summary
    assert s["image_topic"] == "/robot/front/compressed" and s["messages"]["accounted"]
    assert s["lock"]["first_engaged_after_open"] == pytest.approx(101.0)


def test_float32multiarray_and_extra_topics(tmp_path, fake_monitor):
    bag = write_custom_bag(tmp_path / "fa")
    s = _replay(bag, fake_monitor()).summary
    assert s["action_topic"] == "/chunk" and s["messages"]["accounted"]
    assert s["messages"]["ignored"] == {"/odom_text": 12}
    assert s["output"]["topics"]["/odom_text"] == 12
    assert s["lock"]["final"] is False and s["session"]["alerts"] == []


def test_wrong_encoding_is_counted_and_lock_stays_closed(tmp_path, fake_monitor):
    bag = write_custom_bag(tmp_path / "enc", encoding="16UC1")
    with pytest.raises(BundleMismatch, match="none of the first 12 camera frames decodes"):
        _replay(bag, fake_monitor())  # a whole camera the node cannot read: one line
    s = _replay(bag, fake_monitor(), check_fit=False).summary
    assert s["messages"]["rejected_before_session"]["image"] == {"bad_encoding": 12}
    assert s["session"]["accounting"]["image"]["rejected"] == {"invalid_image": 12}
    assert s["lock"]["first_open"] is None and s["lock"]["final"] is True
    assert "invalid_image" in s["session"]["final_status"]["reasons"]
    assert s["messages"]["accounted"]


def test_a_bag_whose_action_dim_is_not_the_bundles_is_refused_in_one_line(tmp_path, fake_monitor):
    """Before: replay ran to the end, exit 0, every chunk rejected wrong_dim inside the JSON."""
    bag = write_custom_bag(tmp_path / "dim", action_dim=3)
    with pytest.raises(BundleMismatch) as err:
        _replay(bag, fake_monitor(), out=tmp_path / "out")
    msg = str(err.value)
    assert "\n" not in msg and "action dim 3 (the bundle's: 4)" in msg
    assert not (tmp_path / "out").exists()  # refused before any work


def test_wrong_action_dim_is_counted_and_lock_stays_closed(tmp_path, fake_monitor):
    bag = write_custom_bag(tmp_path / "dim", action_dim=3)
    s = _replay(bag, fake_monitor(), check_fit=False).summary
    assert s["messages"]["rejected_before_session"]["actions"] == {"wrong_dim": 12}
    assert s["lock"]["first_open"] is None and s["lock"]["final"] is True
    assert "invalid_actions" in s["session"]["final_status"]["reasons"]


def test_chunks_of_the_wrong_horizon_are_rejected(make_bag, fake_monitor):
    # the policy publishes 3-step chunks, the monitor's model needs 4: every chunk is rejected
    ep = make_episode()
    with pytest.raises(BundleMismatch, match=r"chunks of 3 points \(the bundle's horizon: 4\)"):
        _replay(make_bag(ep, horizon=3), fake_monitor(horizon=4))
    s = _replay(make_bag(ep, horizon=3), fake_monitor(horizon=4), check_fit=False).summary
    assert s["session"]["accounting"]["actions"]["rejected"] == {"invalid_actions": ep.length}
    assert s["lock"]["first_open"] is None and s["lock"]["final"] is True
    assert s["messages"]["accounted"]


def test_exported_chunks_are_full_length_up_to_the_last_frame(make_bag, fake_monitor):
    # the exporter holds the last action to fill chunks at the episode end, so none is rejected
    s = _replay(make_bag(make_episode(), horizon=4), fake_monitor(horizon=4)).summary
    assert s["session"]["accounting"]["actions"]["rejected"] == {}
    assert s["messages"]["accounted"]


def test_out_of_order_stamps_are_counted_and_close_the_lock(tmp_path, fake_monitor):
    stamps = [100.0 + i / FPS for i in range(12)]
    stamps[8], stamps[9] = stamps[9], stamps[8]
    s = _replay(write_custom_bag(tmp_path / "ooo", stamps=stamps), fake_monitor()).summary
    assert s["session"]["accounting"]["image"]["rejected"] == {"out_of_order_stamp": 1}
    assert s["lock"]["first_engaged_after_open"] is not None
    assert "out_of_order_stamp" in s["session"]["alerts"][0]["reasons"]


def test_missing_topics_raise_bag_error(tmp_path, fake_monitor):
    bag = write_custom_bag(tmp_path / "noact", with_actions=False)
    with pytest.raises(BagError, match="no action topic"):
        _replay(bag, fake_monitor())
    with pytest.raises(BagError, match="not found"):
        _replay(bag, fake_monitor(), image_topic="/nope")


def test_truncated_bag_raises_bag_error_and_leaves_no_output(make_bag, fake_monitor, tmp_path):
    bag = make_bag(make_episode(length=40))
    mcap = next(bag.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])
    with pytest.raises(BagError):
        _replay(bag, fake_monitor(), out=tmp_path / "trunc_out")
    assert not (tmp_path / "trunc_out").exists()
    assert not (tmp_path / "trunc_out.partial").exists()


def test_backend_failure_stops(make_bag, fake_monitor):
    s = _replay(make_bag(make_episode()), fake_monitor(fail=True)).summary
    assert s["lock"]["first_open"] is None and s["lock"]["final"] is True
    assert s["session"]["counts"]["backend_errors"] == 19
    assert "backend_error" in s["session"]["final_status"]["reasons"]


def test_deterministic(make_bag, fake_monitor, tmp_path):
    bag = make_bag(make_episode(onset=7))
    a = _replay(bag, fake_monitor(), out=tmp_path / "a")
    b = _replay(bag, fake_monitor(), out=tmp_path / "b")
    for s in (a.summary, b.summary):
        s["output"]["bag"] = None
    assert json.dumps(a.summary, sort_keys=True) == json.dumps(b.summary, sort_keys=True)
    ma = [(t, ty, ns, raw) for t, ty, ns, raw, _ in _messages(tmp_path / "a")]
    mb = [(t, ty, ns, raw) for t, ty, ns, raw, _ in _messages(tmp_path / "b")]
    assert ma == mb


def test_existing_output_needs_overwrite(make_bag, fake_monitor, tmp_path):
    bag = make_bag(make_episode())
    _replay(bag, fake_monitor(), out=tmp_path / "o")
    with pytest.raises(BagError, match="exists"):
        _replay(bag, fake_monitor(), out=tmp_path / "o")
    _replay(bag, fake_monitor(), out=tmp_path / "o", overwrite=True)


def test_cli_replay_uses_load_monitor(make_bag, fake_monitor, tmp_path, monkeypatch):
    from world_monitor import cli

    calls = []

    def load_monitor(bundle, backend=None):
        calls.append((bundle, backend))
        return fake_monitor()

    mod = types.ModuleType("world_monitor.runtime.monitor")
    mod.load_monitor = load_monitor
    monkeypatch.setitem(__import__("sys").modules, "world_monitor.runtime.monitor", mod)
    bag = make_bag(make_episode(onset=10))
    out = tmp_path / "cli_out"
    rc = cli.main(
        [
            "replay",
            str(bag),
            "--out",
            str(out),
            "--bundle",
            "B",
            "--backend",
            "onnxruntime",
            "--no-progress",
        ]
    )
    assert rc == 0 and [(str(b), be) for b, be in calls] == [("B", "onnxruntime")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lock"]["final"] is True
    assert Decision.STOP.name in {d["decision"] for d in summary["session"]["decisions"]}
