"""MonitorSession: decision policy, fault handling, watchdog, accounting, latency statistics."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from world_monitor.runtime.gate import GateConfig
from world_monitor.runtime.session import (
    DIAG_ERROR,
    DIAG_OK,
    DIAG_STALE,
    DIAG_WARN,
    MonitorSession,
    SessionConfig,
)
from world_monitor.runtime.types import Decision, Reason


def _load_fakes():
    path = Path(__file__).resolve().parents[1] / "ros" / "fakes.py"
    spec = importlib.util.spec_from_file_location("world_monitor_test_fakes", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("world_monitor_test_fakes", mod)
    spec.loader.exec_module(mod)
    return mod


fakes = _load_fakes()


def _session(fail: bool = False, **cfg) -> tuple[MonitorSession, object]:
    mon = fakes.FakeMonitor(fail=fail)
    gate = GateConfig(slow_threshold=0.5, stop_threshold=0.7, reopen_after=2)
    return MonitorSession(mon, gate, SessionConfig(**cfg)), mon


def _feed(s: MonitorSession, t: float, value: int = 10, with_chunk: bool = True):
    s.tick(t)
    s.on_image(fakes.frame(value), t, "rgb8", tag={"stamp": t})
    if with_chunk:
        s.on_actions(fakes.chunk(), t)
    if s.decision_due(t):
        return s.decide(t)
    return None


def test_boots_closed_and_opens_after_good_decisions():
    s, mon = _session()
    assert s.status().decision is Decision.STOP and s.status().lock
    results = [_feed(s, 0.1 * i) for i in range(5)]
    assert results[0].error == Reason.no_image_yet.value  # k=2 context frames not there yet
    assert results[-1].status.decision is Decision.PROCEED and not results[-1].status.lock
    assert results[-1].tag == {"stamp": 0.4}  # the newest frame's tag travels to the result
    assert len(mon.calls) == 4


def test_one_decision_per_new_chunk_not_per_frame():
    s, mon = _session()
    for i in range(6):
        _feed(s, 0.1 * i, with_chunk=(i % 2 == 0))
    assert s.summary()["counts"]["decisions"] == 3
    assert not s.decision_due(1.0)


def test_fixed_rate_policy():
    s, mon = _session(per_chunk=False, decision_rate_hz=5.0)
    n = 0
    for i in range(11):  # 1 s at 10 Hz inputs
        if _feed(s, 0.1 * i) is not None:
            n += 1
    assert n == 6  # t = 0, 0.2, ..., 1.0


def test_risky_frames_stop_and_report_alert_with_box():
    s, _ = _session()
    for i in range(5):
        _feed(s, 0.1 * i, value=10)
    r = _feed(s, 0.5, value=250)
    assert r.status.decision is Decision.STOP and Reason.risk_high in r.status.reasons
    assert r.assessment.decision is Decision.STOP and r.assessment.box == (0.0, 0.0, 1.0, 1.0)
    alerts = s.summary()["alerts"]
    assert len(alerts) == 1 and alerts[0]["start"] == pytest.approx(0.5)
    assert alerts[0]["box"] == [0.0, 0.0, 1.0, 1.0] and alerts[0]["onset_step"] == 0


def test_backend_exception_closes_with_backend_error():
    s, _ = _session()
    for i in range(5):
        _feed(s, 0.1 * i)
    s.monitor.fail = True
    r = _feed(s, 0.5)
    assert r.error == "backend_error" and r.assessment is None
    assert r.status.decision is Decision.STOP and Reason.backend_error in r.status.reasons
    assert s.diagnostics()[0] == DIAG_ERROR
    assert s.summary()["counts"]["backend_errors"] == 1


def test_stale_input_via_tick_stops():
    s, _ = _session()
    for i in range(5):
        _feed(s, 0.1 * i)
    assert s.status().decision is Decision.PROCEED
    st = s.tick(0.4 + 0.6)  # image_timeout_s defaults to 0.5
    assert st.decision is Decision.STOP and Reason.stale_image in st.reasons
    assert s.diagnostics()[0] == DIAG_STALE
    alerts = s.summary()["alerts"]  # the watchdog alone opens an alert, without a decision
    assert len(alerts) == 1 and "stale_image" in alerts[0]["reasons"]
    assert alerts[0]["n_decisions"] == 0 and alerts[0]["start"] == pytest.approx(1.0)


def test_bad_inputs_are_counted_and_close_the_gate():
    s, _ = _session()
    for i in range(5):
        _feed(s, 0.1 * i)
    st = s.on_actions(fakes.chunk(dim=3), 0.5)
    assert st.decision is Decision.STOP and Reason.invalid_actions in st.reasons
    st = s.on_image(fakes.frame(10), 0.3)  # older than the previous frame
    assert Reason.out_of_order_stamp in st.reasons
    st = s.reject_input("image", Reason.invalid_image, "16UC1 not supported", 0.5)
    assert Reason.invalid_image in st.reasons
    acc = s.summary()["accounting"]
    assert acc["actions"]["rejected"] == {"invalid_actions": 1}
    assert acc["image"]["rejected"] == {"out_of_order_stamp": 1, "invalid_image": 1}


def test_accounting_adds_up():
    s, _ = _session()
    for i in range(7):
        _feed(s, 0.1 * i, with_chunk=(i != 3))
    s.on_actions(fakes.chunk(horizon=2), 0.8)
    summary = s.summary()
    assert summary["accounting_problems"] == []
    img, act = summary["accounting"]["image"], summary["accounting"]["actions"]
    assert img["offered"] == 7 and act["offered"] == 7
    assert img["offered"] == img["accepted"] + img["rejected_total"]
    assert img["accepted"] == img["used"] + img["superseded"] + img["pending"]
    assert act["rejected_total"] == 1


def test_latency_stats_and_json_summary():
    s, _ = _session()
    for i in range(6):
        _feed(s, 0.1 * i)
    lat = s.latency()
    assert set(lat) == {"encode", "rollout"}
    assert lat["encode"]["p50"] == 1.0 and lat["encode"]["p95"] == 1.0 and lat["encode"]["n"] == 5
    text = json.dumps(s.summary(), allow_nan=False)
    assert json.loads(text)["final_status"]["decision"] == "PROCEED"
    assert s.diagnostics()[0] == DIAG_OK


class _DriftingMonitor(fakes.FakeMonitor):
    """A monitor whose self-check says its confidence went wrong after the 3rd assessment."""

    def calibration_drift(self):
        n = len(self.calls)
        if n < 2:
            return None  # selfcheck not defined yet
        value = 0.5 if n < 4 else 3.0
        return {"selfcheck": value, "bound": 1.2, "drift": value > 1.2}


def test_calibration_drift_warns_on_diagnostics_and_is_counted():
    s = MonitorSession(
        _DriftingMonitor(), GateConfig(slow_threshold=0.5, stop_threshold=0.7, reopen_after=2)
    )
    _feed(s, 0.0)
    _feed(s, 0.1)
    level, _, values = s.diagnostics()
    assert dict(values)["calibration_drift"] == "unknown"
    for i in range(2, 4):
        _feed(s, 0.1 * i)
    level, message, values = s.diagnostics()
    assert level == DIAG_OK and dict(values)["calibration_drift"] == "false"
    for i in range(4, 7):
        _feed(s, 0.1 * i)
    level, message, values = s.diagnostics()
    kv = dict(values)
    assert s.status().decision is Decision.PROCEED  # a diagnostic, not a gate cause
    assert level == DIAG_WARN and "[calibration_drift]" in message
    assert kv["calibration_drift"] == "true" and kv["calibration.selfcheck"] == "3.0000"
    assert s.summary()["counts"]["calibration_drift_decisions"] == 3


def test_shadow_mode_reports_but_never_locks():
    mon = fakes.FakeMonitor()
    gate = GateConfig(slow_threshold=0.5, stop_threshold=0.7, shadow=True)
    s = MonitorSession(mon, gate)
    for i in range(4):
        _feed(s, 0.1 * i, value=250)
    st = s.status()
    assert st.decision is Decision.STOP and not st.lock
    assert s.diagnostics()[0] == DIAG_WARN


def test_invalid_policy_rejected():
    with pytest.raises(ValueError):
        SessionConfig(per_chunk=False, decision_rate_hz=0.0)
    with pytest.raises(ValueError):
        SessionConfig(decision_rate_hz=-1.0)


class _RememberingMonitor(fakes.FakeMonitor):
    """A fake with the real monitor's decision-history hooks, counting their calls."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.resets = 0
        self.interrupts_at: list[int] = []

    def reset(self) -> None:
        self.resets += 1

    def interrupt(self) -> None:
        self.interrupts_at.append(len(self.calls))


@pytest.mark.parametrize(
    ("follow", "shadow", "expect_interrupts"),
    [(True, False, True), (False, False, False), (True, True, False)],
)
def test_gate_interventions_tell_the_monitor_its_rollouts_are_stale(
    follow, shadow, expect_interrupts
):
    mon = _RememberingMonitor()
    gate = GateConfig(slow_threshold=0.5, stop_threshold=0.7, reopen_after=2, shadow=shadow)
    s = MonitorSession(mon, gate, SessionConfig(commands_follow_gate=follow))
    assert mon.resets == 1  # a new session starts without decision history
    for i in range(5):
        _feed(s, 0.1 * i, value=10)
    before = list(mon.interrupts_at)
    assert all(n <= 1 for n in before)  # only while booting (closed before the first decision)
    r = _feed(s, 0.5, value=150)  # risk 0.59: SLOW
    assert r.status.decision is Decision.SLOW
    after = mon.interrupts_at[len(before) :]
    assert bool(after) is expect_interrupts
    if expect_interrupts:
        assert after[0] == len(mon.calls)  # right after the decision that slowed the robot


def _feed_chunk(s: MonitorSession, t: float, value: int, chunk):
    s.tick(t)
    s.on_image(fakes.frame(value), t, "rgb8")
    s.on_actions(chunk, t)
    return s.decide(t)


def test_a_known_slow_scaling_conditions_rollouts_on_the_slowed_commands():
    """With the relay's SLOW mapping known, a steady SLOW keeps the rollouts (motion evidence)
    and conditions each new one on the commands as they will run; the decision that changes
    the enforced level, and any STOP, still make them stale."""
    mon = _RememberingMonitor()
    gate = GateConfig(slow_threshold=0.5, stop_threshold=0.7, reopen_after=2)
    cfg = SessionConfig(slow_action_scale=0.25, slow_action_dims=(0, 2))
    s = MonitorSession(mon, gate, cfg)
    planned = np.tile(np.array([[0.4, -0.8, 0.2, 1.0]], np.float32), (4, 1))
    for i in range(5):
        _feed_chunk(s, 0.1 * i, 10, planned)
    booted = len(mon.interrupts_at)
    # the start-up STOP is over once the first rollout is made: that rollout (conditioned on
    # the planned commands, which then run) is kept
    assert all(n == 0 for n in mon.interrupts_at)
    np.testing.assert_array_equal(mon.calls[-1][1], planned)  # PROCEED: as planned
    r = _feed_chunk(s, 0.5, 150, planned)  # risk 0.59: SLOW
    assert r.status.effective_decision is Decision.SLOW
    assert mon.interrupts_at[booted:] == [len(mon.calls)]  # planned at full speed: stale
    np.testing.assert_array_equal(mon.calls[-1][1], planned)  # decided under PROCEED
    for i in range(3):
        r = _feed_chunk(s, 0.6 + 0.1 * i, 150, planned)
        assert r.status.effective_decision is Decision.SLOW
        slowed = planned.copy()
        slowed[:, [0, 2]] *= 0.25
        np.testing.assert_allclose(mon.calls[-1][1], slowed)  # as the relay will run it
    assert len(mon.interrupts_at) == booted + 1  # steady SLOW: evidence kept
    r = _feed_chunk(s, 0.9, 200, planned)  # risk 0.78: STOP holds the arm
    assert r.status.effective_decision is Decision.STOP
    assert mon.interrupts_at[-1] == len(mon.calls)
    n = len(mon.interrupts_at)
    s.tick(0.95)  # every STOP status: nothing can be conditioned on a held arm
    assert len(mon.interrupts_at) == n + 1


def test_slow_scaling_needs_valid_dimensions():
    with pytest.raises(ValueError, match="slow_action_dims"):
        SessionConfig(slow_action_scale=0.5)
    with pytest.raises(ValueError, match="slow_action_scale"):
        SessionConfig(slow_action_scale=1.5, slow_action_dims=(0,))
    with pytest.raises(ValueError, match="repeated"):
        SessionConfig(slow_action_scale=0.5, slow_action_dims=(0, 0))
    with pytest.raises(ValueError, match="action_dim"):
        MonitorSession(
            fakes.FakeMonitor(), None, SessionConfig(slow_action_scale=0.5, slow_action_dims=(4,))
        )
