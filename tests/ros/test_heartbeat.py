"""The lock heartbeat thread (ROS-free): period, reset, no catch-up burst, survives a failing
beat, stops cleanly. Its place in the node (beats while the executor is blocked, and the lock it
publishes closes when inputs go stale meanwhile) is tested on a real graph in test_graph.py."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from world_monitor.ros.heartbeat import Heartbeat


class Beats:
    def __init__(self, action=None) -> None:
        self.times: list[float] = []
        self.action = action
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            self.times.append(time.monotonic())
        if self.action is not None:
            self.action(len(self.times))


def test_it_beats_at_its_period() -> None:
    beats = Beats()
    hb = Heartbeat(0.02, beats)
    t0 = time.monotonic()
    hb.start()
    time.sleep(0.41)
    hb.stop()
    n = len(beats.times)
    assert 14 <= n <= 21, n  # 20 expected; a descheduled test thread may cost a few
    assert beats.times[0] - t0 >= 0.019  # the first beat is one period after start
    assert hb.beats == n and not hb.running


def test_reset_postpones_the_next_beat_by_a_full_period() -> None:
    beats = Beats()
    hb = Heartbeat(0.1, beats)
    hb.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.35:  # a decision publishes the lock every 30 ms
        hb.reset()
        time.sleep(0.03)
    last_reset = time.monotonic()
    hb.reset()
    time.sleep(0.15)
    hb.stop()
    assert len(beats.times) == 1, beats.times
    assert beats.times[0] - last_reset >= 0.099


def test_a_stall_is_not_followed_by_a_burst_of_catch_up_beats() -> None:
    beats = Beats(action=lambda n: time.sleep(0.25) if n == 2 else None)
    hb = Heartbeat(0.02, beats)
    hb.start()
    time.sleep(0.5)
    hb.stop()
    after_stall = np.diff(beats.times[1:])
    assert 0.25 <= after_stall[0] < 0.25 + 0.015  # the overdue beat comes as soon as it can
    assert (after_stall[1:] >= 0.015).all(), after_stall  # then the period, not a burst


def test_a_failing_beat_is_logged_and_the_beat_goes_on(caplog) -> None:
    def explode(n: int) -> None:
        if n == 1:
            raise RuntimeError("publisher gone")

    beats = Beats(action=explode)
    hb = Heartbeat(0.02, beats, name="lock_heartbeat")
    with caplog.at_level("ERROR"):
        hb.start()
        time.sleep(0.15)
        hb.stop()
    assert len(beats.times) >= 4
    assert "lock_heartbeat: beat failed" in caplog.text and "publisher gone" in caplog.text


def test_stop_is_prompt_idempotent_and_safe_from_the_beat_itself() -> None:
    hb: Heartbeat
    beats = Beats(action=lambda n: hb.stop() if n == 3 else None)
    hb = Heartbeat(0.01, beats)
    hb.start()
    time.sleep(0.2)
    assert len(beats.times) == 3 and not hb.running
    hb.stop()
    long = Heartbeat(60.0, Beats())
    long.start()
    t0 = time.monotonic()
    long.stop()
    assert time.monotonic() - t0 < 0.5  # stop wakes the wait; it does not sit out the period


@pytest.mark.parametrize("period", [0, -1.0, float("inf"), float("nan"), "0.1"])
def test_a_nonsense_period_is_refused(period) -> None:
    with pytest.raises(ValueError, match="heartbeat period"):
        Heartbeat(period, Beats())


def test_it_cannot_be_started_twice() -> None:
    hb = Heartbeat(0.05, Beats())
    hb.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            hb.start()
    finally:
        hb.stop()
