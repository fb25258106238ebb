"""The lock heartbeat: a periodic call on a thread of its own, outside the ROS executor.

Why not an rclpy timer: the lock is the one output a robot must be able to rely on, so its
beat may not depend on the executor keeping up. Measured on this project's graph tests (rclpy
7.1.5 / Jazzy, Fast DDS): rclpy's ``MultiThreadedExecutor`` busy-spins while a subscription's
callback is queued but not yet taken (its QoS event handlers stay in the wait set and wake it at
once on the unread sample, with nothing reported ready; rclpy issue #1223): 1 100-1 500 wait-set
rebuilds per second instead of ~100, one core spent, camera frames delivered up to 0.7 s late
and the heartbeat's lock going stale on an idle machine. A single-threaded executor does not
spin that way but lets a slow callback (a large JPEG decode) delay a timer. A thread that owns
the beat has neither problem, and it keeps the watchdog honest: if the executor stalls, inputs
stop arriving, the beat's ``session.tick`` sees them go stale and the lock it publishes closes.

The module is ROS-free (only ``threading``), so its timing is unit-tested without a graph.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

__all__ = ["Heartbeat"]


class Heartbeat:
    """Calls ``beat()`` every ``period_s`` seconds (monotonic clock) until :meth:`stop`.

    ``reset()`` restarts the period from now: a decision that changed the lock has just
    published it, so the next beat comes one full period later and the lock's rate stays the
    heartbeat's. After a stall longer than a period (a suspended process, a starved core) the
    overdue beat comes at once and the next one a period later: no burst to catch up.
    An exception from ``beat`` is logged and the beat continues: the caller's ``beat`` is
    responsible for publishing a closed lock when it cannot decide.
    """

    def __init__(
        self, period_s: float, beat: Callable[[], None], *, name: str = "heartbeat"
    ) -> None:
        if not (isinstance(period_s, int | float) and 0 < float(period_s) < float("inf")):
            raise ValueError(f"heartbeat period must be a finite number > 0, got {period_s!r}")
        self.period_s = float(period_s)
        self._beat = beat
        self._name = name
        self._cond = threading.Condition()
        self._next = 0.0
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.beats = 0

    def start(self) -> None:
        """Start beating; the first beat is one period from now (call ``beat`` yourself for
        an immediate one)."""
        if self._thread is not None:
            raise RuntimeError("heartbeat already started")
        with self._cond:
            self._next = time.monotonic() + self.period_s
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        """Restart the period: the next beat is one period from now."""
        with self._cond:
            self._next = time.monotonic() + self.period_s
            self._cond.notify()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop and join (idempotent; safe from the beat itself, which then is not joined)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopped

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    delay = self._next - time.monotonic()
                    if delay <= 0:
                        break
                    self._cond.wait(delay)
                if self._stopped:
                    return
                now = time.monotonic()
                self._next += self.period_s
                if self._next <= now:  # stalled past a whole period: no catch-up burst
                    self._next = now + self.period_s
            try:
                self._beat()
            except Exception:  # noqa: BLE001 -- the beat must outlive one failure
                logger.exception("%s: beat failed", self._name)
            self.beats += 1
