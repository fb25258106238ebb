"""The history signals: did the scene move as much as the world model said it would
(``motion``), and were its confident predictions right (``selfcheck``)?

Why: a dynamics shift (weaker motors, a heavier object) changes nothing the camera shows in a
single frame, so neither the input-side signals nor the C³ confidence of one rollout see it
(measured: episode AUROC 0.34 for the fused risk without it). What changes is the *outcome* of
the commands: the arm moves less than the model, trained on nominal physics, predicted for the
same actions. The only way to see that is to keep the previous rollout and compare it with the
frames that arrived since, so this signal has memory across decisions, unlike every other one.

Per decision at stamp ``t`` with context latents ``z`` (oldest first, one camera frame apart),
against the latest earlier rollout made ``gap >= lag`` frames before (``lag`` = the decision
stride the bundle was calibrated at; ``gap <= H``) from anchor latent ``a`` (that decision's
newest context latent) with predicted latents ``P``:

    value = log((‖P[o_i - 1] - a‖ + f) / (‖z_i - a‖ + f)),   o_i = frames from the anchor to z_i

over the context frames with ``1 <= o_i <= H`` (norms over all of them together; ``f`` keeps
the ratio finite when nothing moves). Positive = the scene moved less than predicted. The signal
is the mean of the last ``window`` values, undefined (no evidence, rank 0) until ``min_values``
exist: one value is noise. Measured with ``world-monitor evaluate`` on the shipped bundle (30
episodes per family, README): averaged over 6 values the fused risk reached dynamics AUROC 0.81
with a STOP in 1/30 episodes, over 10 values 0.85 and 4/30 (the signal alone: 0.94).

A prediction is only a fair reference if the commands it was conditioned on are the ones that
ran: the caller reports with :meth:`interrupt` whenever the gate makes them differ (a STOP; a
change between PROCEED and SLOW; any SLOW unless the rollouts were conditioned on the slowed
commands, ``SessionConfig.slow_action_scale``), which forgets the stored rollouts (the values
already averaged stay: slowing the robot is no evidence that the world became nominal again). A
stamp that does not advance starts afresh, as :meth:`MotionHistory.reset` does (a new episode, a
looped recording).

**Self-check** (``selfcheck``, issue 16): each rollout also said, per latent element, how sure it
was to land within ε of what the camera would show (the C³ map ``q̂``). Those frames arrive, so
the same comparison scores the model against reality: realised labels
``y = 1[|P[o_i - 1] - z_i| <= ε]`` under ``q = q̂[o_i - 1]``, per element the log-loss excess
``-log p_q(y) - H(q)`` (zero in expectation when ``q̂`` is calibrated; large where the model was
confidently wrong), averaged over channels and the matched frames into a latent-cell map, and the
value is the mean of the ``top_k`` worst cells (a smudge covers a few cells; the frame mean would
dilute it). The signal averages its recent values like ``motion``. It is the C³ confidence
checked against the frames that arrive, the model's own evidence that it no longer knows, and it
needs no extra rollout.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ["Q_CLIP", "MotionHistory", "log_loss_excess"]


#: ``selfcheck``: q̂ is clipped to [Q_CLIP, 1 - Q_CLIP] before the log loss (a confident 1.0
#: that is wrong would otherwise score infinity and one element would decide the signal)
Q_CLIP = 1e-3


@dataclass(frozen=True)
class _Rollout:
    stamp: float
    anchor: np.ndarray  # [C, h, w] newest context latent of that decision
    predicted: np.ndarray  # [H, C, h, w]
    confidence: np.ndarray | None = None  # [H, C, h, w] q̂ at epsilon (selfcheck)


def log_loss_excess(q: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per element ``-log p_q(y) - H(q)``: the surprise of label ``y`` under confidence ``q``
    beyond what ``q`` itself expects (zero mean when ``q`` is calibrated)."""
    q = np.clip(np.asarray(q, dtype=np.float64), Q_CLIP, 1.0 - Q_CLIP)
    y = np.asarray(y, dtype=bool)
    nll = -np.where(y, np.log(q), np.log1p(-q))
    entropy = -(q * np.log(q) + (1.0 - q) * np.log1p(-q))
    return nll - entropy


class MotionHistory:
    """Per-episode memory behind the ``motion`` signal (module docstring).

    Args:
        frame_period_s: camera frame period (stamps are converted to frame offsets with it).
        horizon: H, the number of predicted frames per rollout.
        lag: the decision stride (frames) the bundle was calibrated at; a rollout is compared
            with frames at least this far after it, and a new value is added at most once per
            ``lag`` frames, so deciding more often than at calibration (replay decides on every
            frame) still measures motion over the calibrated span and averages the calibrated
            number of spans (measured: with a value per frame, an in-distribution replay's last
            10 frames reached a STOP-level motion rank, 0.99995).
        window: how many recent values the signal averages.
        min_values: values needed before the signal is defined.
        floor: ``f`` in the ratio (latent units).
        epsilon: the C³ tolerance of the confidence maps passed to :meth:`observe`; with it
            (and a map) the ``selfcheck`` signal is computed too.
        top_k: latent cells averaged into one ``selfcheck`` value.
    """

    def __init__(
        self,
        frame_period_s: float,
        horizon: int,
        *,
        lag: int = 4,
        window: int = 10,
        min_values: int = 3,
        floor: float = 0.05,
        epsilon: float | None = None,
        top_k: int = 4,
    ) -> None:
        if not (math.isfinite(frame_period_s) and frame_period_s > 0):
            raise ValueError(f"frame_period_s must be > 0, got {frame_period_s}")
        if not 1 <= lag <= horizon:
            raise ValueError(f"lag must be in [1, horizon={horizon}], got {lag}")
        if not 1 <= min_values <= window:
            raise ValueError(f"need 1 <= min_values ({min_values}) <= window ({window})")
        self.frame_period_s = float(frame_period_s)
        self.horizon = int(horizon)
        self.lag = int(lag)
        self.floor = float(floor)
        self.min_values = int(min_values)
        self._rollouts: deque[_Rollout] = deque(maxlen=self.horizon + 1)
        self._values: deque[float] = deque(maxlen=int(window))
        self.epsilon = None if epsilon is None else float(epsilon)
        self.top_k = int(top_k)
        self._checks: deque[float] = deque(maxlen=int(window))
        #: the latest selfcheck cell map [h, w] (where the model was confidently wrong)
        self.selfcheck_cells: np.ndarray | None = None
        self._last_stamp: float | None = None
        self._last_value_stamp: float | None = None
        # the session calls interrupt() from its input/timer threads while a decision on the
        # worker thread may be inside observe(): one lock keeps the deques consistent
        self._lock = threading.RLock()

    def reset(self) -> None:
        """Forget everything (a new episode, a new session)."""
        with self._lock:
            self._rollouts.clear()
            self._values.clear()
            self._checks.clear()
            self.selfcheck_cells = None
            self._last_stamp = None
            self._last_value_stamp = None

    def interrupt(self) -> None:
        """The commands did not run as planned (gate slowed/stopped them): drop the rollouts."""
        with self._lock:
            self._rollouts.clear()

    @property
    def values(self) -> tuple[float, ...]:
        with self._lock:
            return tuple(self._values)

    @property
    def checks(self) -> tuple[float, ...]:
        with self._lock:
            return tuple(self._checks)

    def signal(self) -> float | None:
        """The current ``motion`` signal (mean of the recent values), ``None`` while undefined."""
        with self._lock:
            if len(self._values) < self.min_values:
                return None
            return float(np.mean(self._values))

    def selfcheck(self) -> float | None:
        """The current ``selfcheck`` signal (mean of the recent values), ``None`` while
        undefined (too few values, or no confidence maps / epsilon given)."""
        with self._lock:
            if len(self._checks) < self.min_values:
                return None
            return float(np.mean(self._checks))

    def observe(
        self,
        stamp: float,
        context_latents: np.ndarray,
        predicted: np.ndarray,
        confidence: np.ndarray | None = None,
    ) -> float | None:
        """Add one decision (context latents ``[k, C, h, w]``, its rollout ``[H, C, h, w]`` and,
        for ``selfcheck``, its C³ map at ``epsilon``); returns the ``motion`` signal after it."""
        with self._lock:
            return self._observe(float(stamp), context_latents, predicted, confidence)

    def _observe(
        self,
        stamp: float,
        context_latents: np.ndarray,
        predicted: np.ndarray,
        confidence: np.ndarray | None,
    ) -> float | None:
        z = np.asarray(context_latents, dtype=np.float64)
        p = np.asarray(predicted, dtype=np.float64)
        if confidence is not None and np.shape(confidence) != p.shape:
            raise ValueError(f"confidence shape {np.shape(confidence)} != rollout {p.shape}")
        if self._last_stamp is not None and not stamp > self._last_stamp:
            self.reset()  # time went backwards (a new episode, a looped bag): start afresh
        self._last_stamp = stamp
        last = self._last_value_stamp
        if last is None or round((stamp - last) / self.frame_period_s) >= self.lag:
            value = self._compare(stamp, z)
            if value is not None:
                self._values.append(value[0])
                if value[1] is not None:
                    self._checks.append(value[1])
                self._last_value_stamp = stamp
        keep = None
        if confidence is not None and self.epsilon is not None:
            keep = np.asarray(confidence, dtype=np.float32).copy()
        self._rollouts.append(_Rollout(stamp, z[-1].copy(), p.copy(), keep))
        horizon_s = (self.horizon + 0.5) * self.frame_period_s
        while self._rollouts and stamp - self._rollouts[0].stamp > horizon_s:
            self._rollouts.popleft()
        return self.signal()

    def _compare(self, stamp: float, z: np.ndarray) -> tuple[float, float | None] | None:
        """(motion value, selfcheck value or None) against the latest fair rollout."""
        k = z.shape[0]
        for ref in reversed(self._rollouts):  # newest first: the latest fair reference wins
            gap = int(round((stamp - ref.stamp) / self.frame_period_s))
            if gap < self.lag:
                continue
            if gap > self.horizon:
                return None
            pred, obs, steps, frames = [], [], [], []
            for i in range(k):
                offset = gap - (k - 1 - i)  # frames from the anchor to context frame i
                if 1 <= offset <= self.horizon:
                    pred.append(ref.predicted[offset - 1] - ref.anchor)
                    obs.append(z[i] - ref.anchor)
                    steps.append(offset - 1)
                    frames.append(i)
            if not pred:
                return None
            num = float(np.linalg.norm(np.stack(pred))) + self.floor
            den = float(np.linalg.norm(np.stack(obs))) + self.floor
            check = None
            if ref.confidence is not None and self.epsilon is not None:
                hit = np.abs(ref.predicted[steps] - z[frames]) <= self.epsilon
                cells = log_loss_excess(ref.confidence[steps], hit).mean(axis=(0, 1))
                self.selfcheck_cells = cells
                top = np.sort(cells.ravel())[-min(self.top_k, cells.size) :]
                check = float(top.mean())
            return math.log(num / den), check
        return None
