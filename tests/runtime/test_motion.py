"""The ``motion`` signal's memory: which rollout a decision is compared with, and when not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from world_monitor.runtime.motion import MotionHistory, log_loss_excess

H, K = 8, 2
PERIOD = 0.1


def _ctx(level: float) -> np.ndarray:
    """k context latents; frame i of the pair sits at ``level`` - (k-1-i) * 0.1 (uniform)."""
    return np.stack([np.full((4, 2, 2), level - 0.1 * (K - 1 - i)) for i in range(K)])


def _pred(anchor_level: float, speed: float) -> np.ndarray:
    """A rollout predicting the latent moves by ``speed`` per frame from ``anchor_level``."""
    return np.stack([np.full((4, 2, 2), anchor_level + speed * (j + 1)) for j in range(H)])


def _expected(anchor: float, speed: float, now: float, gap: int, floor: float = 0.05) -> float:
    pred, obs = [], []
    for i in range(K):
        offset = gap - (K - 1 - i)
        pred.append(np.full((4, 2, 2), speed * offset))
        obs.append(np.full((4, 2, 2), now - 0.1 * (K - 1 - i) - anchor))
    num = np.linalg.norm(np.stack(pred)) + floor
    den = np.linalg.norm(np.stack(obs)) + floor
    return math.log(num / den)


def test_moving_as_predicted_scores_zero_and_less_motion_scores_positive():
    m = MotionHistory(PERIOD, H, lag=4, min_values=1)
    assert m.observe(0.0, _ctx(0.0), _pred(0.0, 0.1)) is None  # nothing to compare with yet
    # 4 frames later the scene moved exactly as predicted (0.1 per frame)
    assert m.observe(0.4, _ctx(0.4), _pred(0.4, 0.1)) == pytest.approx(0.0, abs=1e-12)
    # next: the scene moved only half as far as predicted (weak motors)
    got = m.observe(0.8, _ctx(0.6), _pred(0.6, 0.1))
    assert m.values[-1] == pytest.approx(_expected(0.4, 0.1, 0.6, 4))
    assert m.values[-1] > 0.3
    assert got == pytest.approx(np.mean(m.values))


def test_signal_is_the_window_mean_and_waits_for_min_values():
    m = MotionHistory(PERIOD, H, lag=4, window=3, min_values=2)
    m.observe(0.0, _ctx(0.0), _pred(0.0, 0.1))
    assert m.observe(0.4, _ctx(0.2), _pred(0.2, 0.1)) is None  # one value: still undefined
    for i in range(2, 6):
        m.observe(0.4 * i, _ctx(0.2 * i), _pred(0.2 * i, 0.1))
    assert len(m.values) == 3  # window
    assert m.signal() == pytest.approx(np.mean(m.values))


def test_compares_with_the_rollout_lag_frames_back_when_deciding_every_frame():
    m = MotionHistory(PERIOD, H, lag=4, min_values=1)
    for t in range(4):  # decisions every frame; only the one at t=0 is 4 frames before t=4
        m.observe(t * PERIOD, _ctx(0.0), _pred(0.0, 0.1 if t == 0 else 5.0))
    assert m.values == ()  # gaps 1..3 < lag
    m.observe(4 * PERIOD, _ctx(0.4), _pred(0.4, 0.1))
    assert m.values == pytest.approx((0.0,), abs=1e-12)  # the t=0 rollout, not t=3's
    for t in range(5, 8):  # at most one value per lag frames, as at calibration
        m.observe(t * PERIOD, _ctx(0.1 * t), _pred(0.1 * t, 0.1))
    assert len(m.values) == 1
    m.observe(8 * PERIOD, _ctx(0.8), _pred(0.8, 0.1))
    assert len(m.values) == 2


def test_no_value_when_the_gap_exceeds_the_horizon():
    m = MotionHistory(PERIOD, H, lag=4, min_values=1)
    m.observe(0.0, _ctx(0.0), _pred(0.0, 0.1))
    m.observe((H + 2) * PERIOD, _ctx(1.0), _pred(1.0, 0.1))
    assert m.values == ()


def test_interrupt_forgets_rollouts_but_keeps_the_evidence():
    m = MotionHistory(PERIOD, H, lag=4, min_values=1)
    m.observe(0.0, _ctx(0.0), _pred(0.0, 0.1))
    m.observe(0.4, _ctx(0.2), _pred(0.2, 0.1))
    before = m.signal()
    m.interrupt()  # the gate slowed the robot: the 0.4 rollout is not a fair reference
    assert m.observe(0.8, _ctx(0.3), _pred(0.3, 0.1)) == pytest.approx(before)
    assert len(m.values) == 1
    m.observe(1.2, _ctx(0.7), _pred(0.7, 0.1))  # the 0.8 rollout ran unmodified: compared again
    assert len(m.values) == 2


def test_out_of_order_stamps_and_reset():
    m = MotionHistory(PERIOD, H, lag=4, min_values=1)
    m.observe(0.2, _ctx(0.0), _pred(0.0, 0.1))
    m.observe(0.6, _ctx(0.4), _pred(0.4, 0.1))
    assert len(m.values) == 1
    m.observe(0.6, _ctx(0.0), _pred(0.0, 0.1))  # not advancing (a new episode): start afresh
    assert m.values == ()
    m.observe(1.0, _ctx(0.4), _pred(0.4, 0.1))
    assert len(m.values) == 1
    m.reset()
    assert m.values == () and m.signal() is None
    m.observe(1.4, _ctx(0.8), _pred(0.8, 0.1))
    assert m.values == ()  # the rollout at 1.0 was forgotten by reset


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frame_period_s": 0.0},
        {"frame_period_s": math.nan},
        {"lag": 0},
        {"lag": H + 1},
        {"min_values": 0},
        {"window": 2, "min_values": 3},
    ],
)
def test_rejects_bad_settings(kwargs):
    args = {"frame_period_s": PERIOD, "horizon": H, **kwargs}
    with pytest.raises(ValueError):
        MotionHistory(**args)


def test_interrupts_from_other_threads_never_break_a_decision():
    import sys
    import threading
    import time

    m = MotionHistory(PERIOD, H, lag=H, min_values=1)  # each comparison walks every rollout
    stop = threading.Event()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible

    def hammer() -> None:
        while not stop.is_set():
            time.sleep(2e-4)  # let rollouts accumulate between interrupts
            m.interrupt()

    t = threading.Thread(target=hammer)
    t.start()
    try:
        for i in range(20_000):  # the session's timer/input threads interrupt while deciding
            m.observe(i * PERIOD, _ctx(0.01 * i), _pred(0.01 * i, 0.01))
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(interval)
    assert all(math.isfinite(v) for v in m.values)


# ---------------------------------------------------------------- selfcheck (issue 16)


def test_log_loss_excess_is_zero_in_expectation_when_the_confidence_is_calibrated():
    rng = np.random.default_rng(0)
    q = rng.uniform(0.05, 0.95, 200_000)
    y = rng.random(q.size) < q  # labels drawn from the stated confidence
    assert abs(log_loss_excess(q, y).mean()) < 0.01
    overconfident = rng.random(q.size) < 0.5 * q  # right half as often as it claims
    assert log_loss_excess(q, overconfident).mean() > 0.1


def test_selfcheck_flags_the_cell_where_a_confident_prediction_was_wrong():
    """A rollout confident (0.95) everywhere; the frames arrive as predicted except in one
    latent cell: the value is high and the cell map points at that cell."""
    eps = 0.05
    m = MotionHistory(PERIOD, H, lag=4, min_values=1, epsilon=eps, top_k=1)
    conf = np.full((H, 4, 2, 2), 0.95)
    m.observe(0.0, _ctx(0.0), _pred(0.0, 0.1), conf)
    m.observe(0.4, _ctx(0.4), _pred(0.4, 0.1), conf)  # arrived exactly as predicted
    right = m.checks[-1]
    assert right < 0.0  # every confident prediction came true: less surprise than it expected
    wrong = _ctx(0.8)
    wrong[:, :, 1, 0] += 0.5  # one cell of both arriving frames is far from the prediction
    m.observe(0.8, wrong, _pred(0.8, 0.1), conf)
    assert m.checks[-1] > 2.0 > right
    assert np.unravel_index(np.argmax(m.selfcheck_cells), (2, 2)) == (1, 0)
    assert m.selfcheck() == pytest.approx(np.mean(m.checks))


def test_selfcheck_is_undefined_without_confidence_or_epsilon_and_reset_forgets_it():
    plain = MotionHistory(PERIOD, H, lag=4, min_values=1)
    conf = np.full((H, 4, 2, 2), 0.9)
    plain.observe(0.0, _ctx(0.0), _pred(0.0, 0.1), conf)
    plain.observe(0.4, _ctx(0.4), _pred(0.4, 0.1), conf)
    assert plain.signal() is not None and plain.selfcheck() is None  # no epsilon
    m = MotionHistory(PERIOD, H, lag=4, min_values=1, epsilon=0.1)
    m.observe(0.0, _ctx(0.0), _pred(0.0, 0.1))  # no confidence map with this rollout
    m.observe(0.4, _ctx(0.4), _pred(0.4, 0.1), conf)
    assert m.signal() is not None and m.selfcheck() is None
    m.observe(0.8, _ctx(0.8), _pred(0.8, 0.1), conf)
    assert m.selfcheck() is not None
    m.reset()
    assert m.selfcheck() is None and m.selfcheck_cells is None
    with pytest.raises(ValueError, match="confidence shape"):
        m.observe(1.2, _ctx(1.2), _pred(1.2, 0.1), conf[:2])
