"""Gate state machine: every transition and every fail-closed cause, on an injected clock.

Each test asserts the decision *and* the reason. No sleeps: time is whatever we pass to tick().
"""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest

from world_monitor.runtime.gate import Gate, GateConfig
from world_monitor.runtime.inputs import ACTIONS, IMAGE, InputBuffer
from world_monitor.runtime.types import Assessment, Decision, GateStatus, Reason, most_restrictive

N = 3
CFG = GateConfig(
    slow_threshold=0.4,
    stop_threshold=0.7,
    reopen_after=N,
    image_timeout_s=0.5,
    action_timeout_s=1.0,
    decision_timeout_s=1.0,
)
LOW, MID, HIGH = 0.1, 0.5, 0.9
DT = 0.1


def step(
    gate: Gate, t: float, risk: float | None = None, *, image: bool = True, actions: bool = True
):
    """One healthy cycle at time t: fresh inputs, watchdog tick, optionally an assessment."""
    if image:
        gate.note_input(IMAGE, t)
    if actions:
        gate.note_input(ACTIONS, t)
    st = gate.tick(t)
    if risk is not None:
        st = gate.update(Assessment(stamp=t, risk=risk))
    return st


def started(cfg: GateConfig = CFG, risk: float = LOW) -> tuple[Gate, float]:
    gate = Gate(cfg)
    step(gate, 0.0, risk)
    return gate, 0.0


def assert_status(st: GateStatus, decision: Decision, reason: Reason) -> None:
    assert st.decision is decision, st
    assert reason in st.reasons, st
    assert reason.value in st.details, st


# --------------------------------------------------------------------------- boot + escalation


def test_boot_is_closed_not_started():
    gate = Gate(CFG)
    st = gate.status()
    assert_status(st, Decision.STOP, Reason.not_started)
    assert st.lock and st.effective_decision is Decision.STOP
    st = gate.tick(0.0)  # clock running, nothing received yet
    assert_status(st, Decision.STOP, Reason.not_started)
    assert {Reason.no_image_yet, Reason.no_actions_yet} <= set(st.reasons)


def test_first_low_risk_assessment_opens():
    gate = Gate(CFG)
    st = step(gate, 0.0, LOW)
    assert st.decision is Decision.PROCEED and st.reasons == (Reason.ok,)
    assert not st.lock and st.risk == pytest.approx(LOW)
    assert st.since == 0.0


@pytest.mark.parametrize(
    ("risk", "decision", "reason"),
    [(MID, Decision.SLOW, Reason.risk_elevated), (HIGH, Decision.STOP, Reason.risk_high)],
)
def test_first_risky_assessment_sets_level_directly(risk, decision, reason):
    gate = Gate(CFG)
    st = step(gate, 0.0, risk)
    assert st.reasons == (reason,)
    assert st.decision is decision


def test_thresholds_are_exclusive_like_the_conformal_bound():
    # calibration guarantees P(risk > threshold) <= alpha: a risk equal to it must not alarm
    gate, t = started()
    assert_status(step(gate, t + DT, CFG.slow_threshold), Decision.PROCEED, Reason.ok)
    assert_status(
        step(gate, t + 2 * DT, CFG.slow_threshold + 1e-9), Decision.SLOW, Reason.risk_elevated
    )
    assert_status(step(gate, t + 3 * DT, CFG.stop_threshold), Decision.SLOW, Reason.risk_elevated)
    assert_status(
        step(gate, t + 4 * DT, CFG.stop_threshold + 1e-9), Decision.STOP, Reason.risk_high
    )


def test_escalation_is_immediate():
    gate, t = started()
    assert_status(step(gate, 0.1, MID), Decision.SLOW, Reason.risk_elevated)
    assert_status(step(gate, 0.2, HIGH), Decision.STOP, Reason.risk_high)
    gate2, _ = started()
    assert_status(step(gate2, 0.1, HIGH), Decision.STOP, Reason.risk_high)  # PROCEED→STOP


# --------------------------------------------------------------------------- hysteresis


def test_stop_to_slow_to_proceed_needs_n_consecutive_confident_decisions():
    gate, _ = started()
    t = 0.1
    assert_status(step(gate, t, HIGH), Decision.STOP, Reason.risk_high)
    # N-1 decisions below the stop threshold: still held
    for _ in range(N - 1):
        t += DT
        assert_status(step(gate, t, MID), Decision.STOP, Reason.hysteresis_hold)
    t += DT
    st = step(gate, t, MID)  # N-th: one level down, and MID keeps it at SLOW
    assert_status(st, Decision.SLOW, Reason.risk_elevated)
    # N-1 below the slow threshold: still SLOW
    for _ in range(N - 1):
        t += DT
        assert_status(step(gate, t, LOW), Decision.SLOW, Reason.hysteresis_hold)
    t += DT
    st = step(gate, t, LOW)
    assert st.decision is Decision.PROCEED and st.reasons == (Reason.ok,)


def test_single_risky_decision_resets_the_count():
    gate, _ = started()
    t = 0.1
    step(gate, t, HIGH)
    for _ in range(N - 1):
        t += DT
        assert_status(step(gate, t, LOW), Decision.STOP, Reason.hysteresis_hold)
    t += DT
    assert_status(step(gate, t, HIGH), Decision.STOP, Reason.risk_high)  # resets
    for _ in range(N - 1):
        t += DT
        assert_status(step(gate, t, LOW), Decision.STOP, Reason.hysteresis_hold)
    t += DT
    # SLOW level: one step at a time even though risk is LOW
    assert_status(step(gate, t, LOW), Decision.SLOW, Reason.hysteresis_hold)

    # at SLOW, a MID decision (>= slow threshold) resets the SLOW→PROCEED count
    for _ in range(N - 1):
        t += DT
        assert_status(step(gate, t, LOW), Decision.SLOW, Reason.hysteresis_hold)
    t += DT
    assert_status(step(gate, t, MID), Decision.SLOW, Reason.risk_elevated)
    for _ in range(N - 1):
        t += DT
        assert_status(step(gate, t, LOW), Decision.SLOW, Reason.hysteresis_hold)
    t += DT
    assert step(gate, t, LOW).reasons == (Reason.ok,)


def test_reopen_after_one_steps_down_one_level_per_decision():
    gate, _ = started(GateConfig(0.4, 0.7, reopen_after=1))
    assert_status(step(gate, 0.1, HIGH), Decision.STOP, Reason.risk_high)
    assert_status(step(gate, 0.2, LOW), Decision.SLOW, Reason.hysteresis_hold)
    assert step(gate, 0.3, LOW).decision is Decision.PROCEED


# --------------------------------------------------------------------------- watchdog causes


def test_most_restrictive_cause_wins_low_risk_but_stale_image():
    gate, _ = started()
    t = 0.6  # image last at 0.0 > 0.5 s; actions fresh
    gate.note_input(ACTIONS, t)
    st = gate.tick(t)
    assert_status(st, Decision.STOP, Reason.stale_image)
    assert st.reasons[0] is Reason.stale_image
    st = gate.update(Assessment(stamp=t, risk=LOW))  # a confident model cannot override it
    assert_status(st, Decision.STOP, Reason.stale_image)


def _no_image_yet(gate: Gate) -> GateStatus:
    gate.note_input(ACTIONS, 0.0)
    return gate.tick(0.0)


def _no_actions_yet(gate: Gate) -> GateStatus:
    gate.note_input(IMAGE, 0.0)
    return gate.tick(0.0)


def _stale_image(gate: Gate) -> GateStatus:
    step(gate, 0.0, LOW)
    return step(gate, 0.51, None, image=False)


def _stale_actions(gate: Gate) -> GateStatus:
    step(gate, 0.0, LOW)
    return step(gate, 1.01, None, actions=False)


def _no_decision(gate: Gate) -> GateStatus:
    step(gate, 0.0, LOW)
    step(gate, 0.5)
    return step(gate, 1.01)  # inputs fresh, but no assessment for > 1 s


def _no_decision_since_boot(gate: Gate) -> GateStatus:
    step(gate, 0.0)
    return step(gate, 1.01)


def _out_of_order_image(gate: Gate) -> GateStatus:
    step(gate, 1.0, LOW)
    return gate.note_input(IMAGE, 0.5)


def _out_of_order_via_buffer(gate: Gate) -> GateStatus:
    step(gate, 1.0, LOW)
    buf = InputBuffer(1, (4, 4), 2, 3)
    assert buf.offer_frame(np.zeros((4, 4, 3), np.uint8), 1.0) is None
    err = buf.offer_frame(np.zeros((4, 4, 3), np.uint8), 0.9)
    return gate.report_input_error(err, 1.0)


def _invalid_image(bad):
    def f(gate: Gate) -> GateStatus:
        step(gate, 0.0, LOW)
        err = InputBuffer(1, (4, 4), 2, 3).offer_frame(bad, 0.1)
        assert err is not None and err.input == IMAGE
        return gate.report_input_error(err, 0.1)

    return f


def _invalid_actions(bad):
    def f(gate: Gate) -> GateStatus:
        step(gate, 0.0, LOW)
        err = InputBuffer(1, (4, 4), 2, 3).offer_actions(bad, 0.1)
        assert err is not None and err.input == ACTIONS
        return gate.report_input_error(err, 0.1)

    return f


def _nan_stamp(gate: Gate) -> GateStatus:
    step(gate, 0.0, LOW)
    return gate.note_input(IMAGE, float("nan"))


def _backend_exception(gate: Gate) -> GateStatus:
    step(gate, 0.0, LOW)
    try:
        raise RuntimeError("CUDA error: an illegal memory access")
    except RuntimeError as exc:
        return gate.report_fault(Reason.backend_error, repr(exc), 0.05)


def _backend_error_in_assessment(gate: Gate) -> GateStatus:
    step(gate, 0.0, LOW)
    return gate.update(Assessment(0.1, None, reasons=(Reason.backend_error,), detail="ORT failed"))


def _future_stamp(gate: Gate) -> GateStatus:
    step(gate, 0.0, LOW)
    gate.note_input(IMAGE, 100.0)  # e.g. camera on wall time, node on sim time
    return gate.tick(0.1)


def _clock_jump(gate: Gate) -> GateStatus:
    step(gate, 5.0, LOW)
    return gate.tick(1.0)


def _nan_risk(gate: Gate) -> GateStatus:
    step(gate, 0.0, LOW)
    return gate.update(Assessment(0.1, float("nan")))


def _risk_out_of_range(gate: Gate) -> GateStatus:
    step(gate, 0.0, LOW)
    return gate.update(Assessment(0.1, 1.5))


def _old_assessment(gate: Gate) -> GateStatus:
    step(gate, 1.0, LOW)
    return gate.update(Assessment(0.5, LOW))


def _not_an_assessment(gate: Gate) -> GateStatus:
    step(gate, 0.0, LOW)
    return gate.update({"risk": 0.1})  # type: ignore[arg-type]


WATCHDOG_CASES = {
    "no_image_yet": (_no_image_yet, Reason.no_image_yet),
    "no_actions_yet": (_no_actions_yet, Reason.no_actions_yet),
    "stale_image": (_stale_image, Reason.stale_image),
    "stale_actions": (_stale_actions, Reason.stale_actions),
    "no_decision_within_timeout": (_no_decision, Reason.backend_timeout),
    "no_decision_since_boot": (_no_decision_since_boot, Reason.backend_timeout),
    "out_of_order_image": (_out_of_order_image, Reason.out_of_order_stamp),
    "out_of_order_via_buffer": (_out_of_order_via_buffer, Reason.out_of_order_stamp),
    "image_dtype": (_invalid_image(np.zeros((4, 4, 3), np.float32)), Reason.invalid_image),
    "image_shape": (_invalid_image(np.zeros((4, 4), np.uint8)), Reason.invalid_image),
    "image_channels": (_invalid_image(np.zeros((4, 4, 4), np.uint8)), Reason.invalid_image),
    "image_size": (_invalid_image(np.zeros((8, 4, 3), np.uint8)), Reason.invalid_image),
    "actions_dims": (_invalid_actions(np.zeros((2, 3, 1), np.float32)), Reason.invalid_actions),
    "actions_horizon": (_invalid_actions(np.zeros((5, 3), np.float32)), Reason.invalid_actions),
    "actions_nan": (
        _invalid_actions(np.array([[0, 0, 0], [0, np.nan, 0]], np.float32)),
        Reason.non_finite_input,
    ),
    "actions_inf": (
        _invalid_actions(np.array([[0, 0, 0], [0, np.inf, 0]], np.float64)),
        Reason.non_finite_input,
    ),
    "stamp_nan": (_nan_stamp, Reason.non_finite_input),
    "backend_exception": (_backend_exception, Reason.backend_error),
    "backend_error_in_assessment": (_backend_error_in_assessment, Reason.backend_error),
    "future_stamp": (_future_stamp, Reason.future_stamp),
    "clock_jump": (_clock_jump, Reason.clock_jump),
    "nan_risk": (_nan_risk, Reason.invalid_assessment),
    "risk_out_of_range": (_risk_out_of_range, Reason.invalid_assessment),
    "old_assessment": (_old_assessment, Reason.out_of_order_stamp),
    "not_an_assessment": (_not_an_assessment, Reason.invalid_assessment),
}


@pytest.mark.parametrize("case", list(WATCHDOG_CASES))
def test_every_fail_closed_cause_stops_with_its_reason(case):
    scenario, reason = WATCHDOG_CASES[case]
    gate = Gate(CFG)
    st = scenario(gate)
    assert_status(st, Decision.STOP, reason)
    assert st.lock and st.effective_decision is Decision.STOP
    assert gate.status() == st  # the snapshot is what the last call returned
    json.dumps(st.to_dict(), allow_nan=False)


# --------------------------------------------------------------------------- recovery


def test_recovery_after_backend_fault_needs_n_confident_decisions_per_level():
    gate, _ = started()
    assert_status(
        gate.report_fault(Reason.backend_error, "boom", 0.05), Decision.STOP, Reason.backend_error
    )
    t = 0.1
    st = step(gate, t, LOW)  # clears the fault, but the gate holds
    assert Reason.backend_error not in st.reasons
    assert_status(st, Decision.STOP, Reason.hysteresis_hold)
    for _ in range(N - 2):
        t += DT
        assert_status(step(gate, t, LOW), Decision.STOP, Reason.hysteresis_hold)
    t += DT
    assert_status(step(gate, t, LOW), Decision.SLOW, Reason.hysteresis_hold)
    for _ in range(N - 1):
        t += DT
        assert_status(step(gate, t, LOW), Decision.SLOW, Reason.hysteresis_hold)
    t += DT
    assert step(gate, t, LOW).reasons == (Reason.ok,)


def test_recovery_after_input_fault_needs_a_fresh_good_input_first():
    gate, _ = started()
    gate.report_fault(Reason.invalid_image, "dtype float32", 0.05, stream=IMAGE)
    t = 0.1
    # good assessments while the image stream is faulted do not count towards reopening
    for _ in range(2 * N):
        t += DT
        st = step(gate, t, LOW, image=False)
        assert_status(st, Decision.STOP, Reason.invalid_image)
    t += DT
    st = step(gate, t, None)  # a fresh good frame clears the cause...
    assert Reason.invalid_image not in st.reasons
    assert_status(st, Decision.STOP, Reason.hysteresis_hold)  # ...but the gate still holds
    decisions = []
    for _ in range(2 * N):
        t += DT
        decisions.append(step(gate, t, LOW).decision)
    assert decisions == [Decision.STOP] * (N - 1) + [Decision.SLOW] * N + [Decision.PROCEED]


def test_recovery_after_stale_image():
    gate, _ = started()
    assert_status(step(gate, 0.6, LOW, image=False), Decision.STOP, Reason.stale_image)
    t = 0.6
    decisions = []
    for _ in range(2 * N):
        t += DT
        st = step(gate, t, LOW)
        assert Reason.stale_image not in st.reasons
        decisions.append(st.decision)
    assert decisions[-1] is Decision.PROCEED and decisions[0] is Decision.STOP


def test_recovery_after_clock_jump_needs_fresh_inputs():
    gate, _ = started()
    step(gate, 5.0, LOW)
    st = gate.tick(1.0)  # sim reset
    assert_status(st, Decision.STOP, Reason.clock_jump)
    assert {Reason.no_image_yet, Reason.no_actions_yet} <= set(st.reasons)
    t = 1.0
    for _ in range(2 * N):
        t += DT
        st = step(gate, t, LOW)
    assert st.decision is Decision.PROCEED and st.reasons == (Reason.ok,)


def test_since_tracks_decision_changes_on_the_caller_clock():
    gate, _ = started()
    assert gate.status().since == 0.0
    st = step(gate, 0.3, HIGH)
    assert st.since == pytest.approx(0.3)
    st = step(gate, 0.4, HIGH)
    assert st.since == pytest.approx(0.3)
    assert st.counters["transitions"] == 2  # boot STOP→PROCEED, PROCEED→STOP


# --------------------------------------------------------------------------- modes


def test_disabled_always_proceeds_with_reason():
    gate = Gate(GateConfig(0.4, 0.7, enabled=False))
    st = gate.status()
    assert st.decision is Decision.PROCEED and st.effective_decision is Decision.PROCEED
    assert st.reasons == (Reason.monitor_disabled,) and not st.lock and not st.enabled
    st = gate.report_fault(Reason.backend_error, "boom")
    assert st.effective_decision is Decision.PROCEED and st.reasons == (Reason.monitor_disabled,)
    st = step(gate, 0.0, HIGH)
    assert st.decision is Decision.PROCEED and st.reasons == (Reason.monitor_disabled,)
    # re-enabling starts from boot: closed until a good assessment
    st = gate.set_enabled(True)
    assert_status(st, Decision.STOP, Reason.not_started)
    st = step(gate, 0.1, LOW)
    assert st.decision is Decision.PROCEED and st.reasons == (Reason.ok,)
    st = gate.set_enabled(False)
    assert st.reasons == (Reason.monitor_disabled,)


def test_shadow_computes_but_never_blocks():
    gate = Gate(GateConfig(0.4, 0.7, reopen_after=N, shadow=True))
    st = gate.status()
    assert_status(st, Decision.STOP, Reason.not_started)
    assert st.effective_decision is Decision.PROCEED and not st.lock and st.shadow
    st = step(gate, 0.0, LOW)
    assert st.decision is Decision.PROCEED and st.effective_decision is Decision.PROCEED
    st = step(gate, 0.1, HIGH)
    assert_status(st, Decision.STOP, Reason.risk_high)
    assert st.effective_decision is Decision.PROCEED
    st = gate.report_fault(Reason.backend_error, "boom")
    assert_status(st, Decision.STOP, Reason.backend_error)
    assert st.effective_decision is Decision.PROCEED


# --------------------------------------------------------------------------- never raise


def test_internal_error_in_update_closes_the_gate(monkeypatch):
    gate, _ = started()

    def broken(risk):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(gate, "_instantaneous", broken)
    st = gate.update(Assessment(0.1, LOW))  # must not raise
    assert_status(st, Decision.STOP, Reason.internal_error)
    assert "ZeroDivisionError" in st.details["internal_error"]
    assert st.counters["internal_errors"] == 1
    monkeypatch.undo()
    t = 0.1
    for _ in range(2 * N):
        t += DT
        st = step(gate, t, LOW)
    assert st.decision is Decision.PROCEED and st.reasons == (Reason.ok,)


def test_internal_error_in_status_composition_falls_back_to_stop(monkeypatch):
    gate, _ = started()

    def broken(event_time):
        raise RuntimeError("compose failed")

    monkeypatch.setattr(gate, "_settle", broken)
    for st in (gate.tick(0.1), gate.note_input(IMAGE, 0.1), gate.update(Assessment(0.1, LOW))):
        assert_status(st, Decision.STOP, Reason.internal_error)
        assert st.lock
    assert gate.status().decision is Decision.STOP


def test_internal_error_in_watchdog(monkeypatch):
    gate, _ = started()
    monkeypatch.setattr(gate, "_watchdog", lambda: 1 / 0)
    st = gate.tick(0.1)
    assert_status(st, Decision.STOP, Reason.internal_error)


@pytest.mark.parametrize(
    "call",
    [
        lambda g: g.tick("soon"),
        lambda g: g.tick(float("inf")),
        lambda g: g.note_input("lidar", 0.1),
        lambda g: g.report_fault("not-a-reason", "x"),
        lambda g: g.report_fault(Reason.ok, "x"),
        lambda g: g.update(Assessment(float("nan"), LOW)),
        lambda g: g.update(Assessment(0.1, None, reasons=("bogus",))),
        lambda g: g.update(Assessment(0.1, None)),
        lambda g: g.update(Assessment(0.1, LOW), now=float("nan")),
        lambda g: g.update(Assessment(0.1, "low")),  # type: ignore[arg-type]
    ],
)
def test_garbage_calls_never_raise_and_close_the_gate(call):
    gate, _ = started()
    st = call(gate)
    assert st.decision is Decision.STOP
    assert set(st.reasons) & {
        Reason.invalid_stamp,
        Reason.non_finite_input,
        Reason.internal_error,
        Reason.invalid_assessment,
    }, st


# --------------------------------------------------------------------------- threads


def test_thread_safety_smoke():
    gate = Gate(CFG)
    n_threads, n_iter = 4, 300
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def worker(k: int) -> None:
        try:
            barrier.wait()
            rng = np.random.default_rng(k)
            for i in range(n_iter):
                t = i * 0.01
                gate.note_input(IMAGE if k % 2 else ACTIONS, t)
                gate.tick(t)
                gate.update(Assessment(t, float(rng.random())))
                if i % 50 == 0:
                    gate.report_fault(Reason.backend_error, f"thread {k}")
                st = gate.status()
                assert isinstance(st.decision, Decision) and st.reasons
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    c = gate.status().counters
    total = n_threads * n_iter
    assert c["updates"] == total and c["ticks"] == total
    assert c.get("assessments_accepted", 0) + c.get("assessments_rejected", 0) == total
    assert c.get("inputs.image", 0) + c.get("inputs.actions", 0) == total
    assert c["faults.backend_error"] >= n_threads * (n_iter // 50)
    assert c.get("internal_errors", 0) == 0
    st = gate.status()
    assert (
        st.reasons == (Reason.ok,)
        if st.decision is Decision.PROCEED
        else Reason.ok not in st.reasons
    )
    st = gate.report_fault(Reason.backend_error, "after the storm")
    assert_status(st, Decision.STOP, Reason.backend_error)


# --------------------------------------------------------------------------- config + types


def test_config_validation():
    with pytest.raises(ValueError, match="slow_threshold"):
        GateConfig(0.8, 0.7)
    with pytest.raises(ValueError, match="stop_threshold"):
        GateConfig(0.1, 1.5)
    with pytest.raises(ValueError, match="reopen_after"):
        GateConfig(0.1, 0.5, reopen_after=0)
    with pytest.raises(ValueError, match="image_timeout_s"):
        GateConfig(0.1, 0.5, image_timeout_s=math.inf)
    assert GateConfig(0.5, 0.5).slow_threshold == 0.5  # empty SLOW band is allowed


def test_from_calibration():
    calib = {
        "epsilon": 0.3,
        "target_false_alarm_rate": 0.05,
        "thresholds": {"slow": 0.35, "stop": 0.8},
        "gate": {"reopen_after": 5},
    }
    cfg = GateConfig.from_calibration(calib)
    assert (cfg.slow_threshold, cfg.stop_threshold, cfg.reopen_after) == (0.35, 0.8, 5)
    cfg = GateConfig.from_calibration(calib, reopen_after=2, shadow=True)
    assert cfg.reopen_after == 2 and cfg.shadow
    with pytest.raises(ValueError, match=r"\['thresholds'\]\['stop'\]"):
        GateConfig.from_calibration({"thresholds": {"slow": 0.3}})
    with pytest.raises(ValueError, match="thresholds"):
        GateConfig.from_calibration({})
    with pytest.raises(ValueError, match="unknown GateConfig"):
        GateConfig.from_calibration(calib, reopen_afer=2)
    with pytest.raises(ValueError, match="slow_threshold"):
        GateConfig.from_calibration({"thresholds": {"slow": 0.9, "stop": 0.5}})


def test_decision_order_and_most_restrictive():
    assert Decision.PROCEED < Decision.SLOW < Decision.STOP
    assert most_restrictive(Decision.PROCEED, Decision.SLOW) is Decision.SLOW
    assert most_restrictive(Decision.STOP, Decision.PROCEED, Decision.SLOW) is Decision.STOP
    assert most_restrictive(Decision.PROCEED) is Decision.PROCEED
    with pytest.raises(ValueError):
        most_restrictive()
    assert Decision.STOP.lock and not Decision.SLOW.lock
    assert str(Reason.stale_image) == "stale_image" and Reason("ok") is Reason.ok


def test_assessment_to_dict_is_strict_json():
    a = Assessment(
        stamp=1.5,
        risk=0.42,
        step_confidence=np.array([0.9, np.nan, 0.5], np.float32),
        confidence_map=np.random.default_rng(0).random((3, 4, 8, 8)).astype(np.float32),
        epsilon=0.3,
        box=(0.1, 0.2, 0.5, 0.6),
        onset_step=2,
        epistemic=float("inf"),
        latency_ms={"encode": 3.0, "rollout": 40.5},
        backend="onnxruntime",
    )
    d = json.loads(json.dumps(a.to_dict(), allow_nan=False))
    assert d["decision"] == "STOP"  # never gated → closed
    assert d["step_confidence"][1] is None and d["epistemic"] is None
    assert d["confidence_map"]["shape"] == [3, 4, 8, 8] and 0 <= d["confidence_map"]["mean"] <= 1
    assert d["box"] == [0.1, 0.2, 0.5, 0.6] and d["onset_step"] == 2
    gate, _ = started()
    gated = a.with_gate(step(gate, 0.1, HIGH))
    assert gated.decision is Decision.STOP and gated.reasons == (Reason.risk_high,)
    assert gated.to_dict()["reasons"] == ["risk_high"]
    json.dumps(gate.status().to_dict(), allow_nan=False)


def test_numpy_scalar_risk_is_accepted():
    gate = Gate(GateConfig(np.float32(0.4), np.float64(0.7)))
    st = step(gate, 0.0, None)
    st = gate.update(Assessment(np.float64(0.0), np.float32(0.9)))
    assert_status(st, Decision.STOP, Reason.risk_high)
    st = gate.update(Assessment(0.1, np.bool_(True)))  # type: ignore[arg-type]
    assert_status(st, Decision.STOP, Reason.invalid_assessment)


def test_shadow_assessment_records_the_computed_decision():
    gate = Gate(GateConfig(0.4, 0.7, shadow=True))
    st = step(gate, 0.0, HIGH)
    gated = Assessment(0.0, HIGH).with_gate(st)
    assert gated.decision is Decision.STOP and gated.reasons == (Reason.risk_high,)
    assert st.effective_decision is Decision.PROCEED


def test_clock_jump_reported_through_update_is_not_cleared_by_that_update():
    gate, _ = started()
    step(gate, 5.0, LOW)
    st = gate.update(Assessment(1.0, LOW), now=1.0)
    assert_status(st, Decision.STOP, Reason.clock_jump)
    assert Reason.no_image_yet in st.reasons
    assert st.counters["assessments_rejected"] == 1


class _FakeMonitor:
    """Stands in for the Monitor: risk from the mean action, optionally raising."""

    fail = False

    def assess(self, inputs) -> Assessment:
        if self.fail:
            raise RuntimeError("onnxruntime: session run failed")
        return Assessment(stamp=inputs.stamp, risk=float(np.clip(inputs.actions.mean(), 0, 1)))


def test_wiring_buffer_monitor_gate_end_to_end():
    """The documented wiring: every input accounted for, every failure closes the gate."""
    from world_monitor.runtime.inputs import InputError

    buf, gate, monitor = InputBuffer(2, (4, 4), 2, 3), Gate(CFG), _FakeMonitor()

    def on_frame(f, t):
        err = buf.offer_frame(f, t)
        return gate.report_input_error(err, t) if err else gate.note_input(IMAGE, t)

    def on_actions(c, t):
        err = buf.offer_actions(c, t)
        return gate.report_input_error(err, t) if err else gate.note_input(ACTIONS, t)

    def decide(t):
        try:
            return gate.update(monitor.assess(buf.take()), now=t)
        except InputError as err:
            return gate.report_input_error(err, t)
        except Exception as exc:
            return gate.report_fault(Reason.backend_error, repr(exc), t)

    good_f, good_c = np.zeros((4, 4, 3), np.uint8), np.full((2, 3), 0.1)
    on_actions(good_c, 0.0)
    on_frame(good_f, 0.0)
    gate.tick(0.0)
    assert_status(decide(0.0), Decision.STOP, Reason.no_image_yet)  # 1 of 2 context frames
    t = 0.1
    on_frame(good_f, t)
    assert decide(t).reasons == (Reason.ok,)
    t += DT
    st = on_frame(np.zeros((4, 4, 3), np.float32), t)  # bad frame
    assert_status(st, Decision.STOP, Reason.invalid_image)
    monitor.fail = True
    assert_status(decide(t), Decision.STOP, Reason.backend_error)
    monitor.fail = False
    decisions = []
    for _ in range(2 * N):
        t += DT
        on_frame(good_f, t)
        on_actions(good_c, t)
        gate.tick(t)
        decisions.append(decide(t).decision)
    assert decisions[-1] is Decision.PROCEED and decisions[0] is Decision.STOP
    assert buf.accounting.problems() == []
    img = buf.accounting.counts(IMAGE)
    assert img.rejected == {"invalid_image": 1} and img.offered == 3 + 2 * N


def test_risk_causes_print_thresholds_near_one_with_the_digits_that_tell_them_apart():
    """The shipped STOP threshold is 0.999998: a cause printed with three decimals read
    'risk 1.000 (threshold 1.000)' (issue 18), which says nothing."""
    cfg = GateConfig(
        slow_threshold=0.99915, stop_threshold=0.999998, reopen_after=N, image_timeout_s=0.5
    )
    gate, t = started(cfg)
    st = step(gate, t + DT, 0.9999995)
    assert st.decision is Decision.STOP
    assert st.details[Reason.risk_high.value] == "risk 0.99999950 (threshold 0.9999980)"
    st = step(gate, t + 2 * DT, 0.99)
    assert "risk 0.9900 <= 0.9999980 for 1/3" in st.details[Reason.hysteresis_hold.value]
