"""One closed-loop episode: policy → monitor gate → robot, in the simulator.

Why this exists: offline evaluation (``world-monitor evaluate``) scores the monitor on recorded
episodes, but a user evaluating a *policy* wants to know what happens when the gate is really
in the loop: does stopping prevent the failure, what does a false stop cost, how much earlier
than the failure does the monitor act. So the same :class:`MonitorSession` the ROS node uses
sits between the policy and the simulated robot:

* the camera publishes every frame (stamp ``t / fps``) and the policy publishes its chunk every
  ``replan_every`` frames; the session decides once per chunk (the node's default policy);
* decisions are synchronous: the chunk waits for its decision before it runs (the gate's job);
* the gate's *effective* decision is applied to each command like the node's relay: ``STOP``
  holds the arm where it is (zero end-effector delta, gripper unchanged), ``SLOW`` scales the
  end-effector delta by ``slow_scale``, ``PROCEED`` passes it through;
* with ``gated=False`` the gate runs in **shadow mode** (decisions computed and recorded, never
  enforced), which reproduces the ungated episode exactly (``simulate_episode`` with no hook).

Before the first frame the camera has been running while the robot stood still, so the first
``k - 1`` context frames are the initial frame at earlier stamps (otherwise the gate would
block the first chunk for want of context on every episode, which no real deployment does).

Outcome taxonomy (per episode): ``success``; ``failure`` (puck off the table, collision with
an obstacle, or goal missed while the robot was free to move); ``stopped`` (no safety failure
and the gate was holding the robot at STOP at the end: the monitor halted and handed over —
a failure *prevented* when the same episode fails without the gate, a *false stop* when it
succeeds without it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from world_monitor.data.episode import Episode
from world_monitor.runtime.session import (
    DecisionResult,
    MonitorSession,
    SessionConfig,
    gate_config_for,
)
from world_monitor.runtime.types import Decision, json_float
from world_monitor.sim.policies import DEFAULT_POLICY_NOISE
from world_monitor.sim.scenarios import IN_DISTRIBUTION

__all__ = [
    "OUTCOMES",
    "ClosedLoopResult",
    "ClosedLoopSpec",
    "GatedController",
    "PolicySpec",
    "classify_outcome",
    "lead_time_s",
    "run_closed_loop",
]

OUTCOMES = ("success", "failure", "stopped")
#: The action dimensions the relay slows on SLOW and holds on STOP: the end-effector deltas
#: (the fourth, the gripper command, is absolute and passes unscaled).
EE_DELTA_DIMS = (0, 1, 2)
#: Failure reasons that are safety failures whatever the gate did (not "only" a missed goal).
SAFETY_FAILURES = frozenset({"object_off_table", "collision_with_obstacle"})


@dataclass(frozen=True)
class PolicySpec:
    """A policy under evaluation: a registered sim policy and its action-noise level."""

    name: str = "scripted"
    noise: float | None = None

    @property
    def resolved_noise(self) -> float:
        return DEFAULT_POLICY_NOISE if self.noise is None else float(self.noise)

    @property
    def label(self) -> str:
        return f"{self.name} (noise {self.resolved_noise:g})"

    @property
    def slug(self) -> str:
        return f"{self.name}-n{self.resolved_noise:g}".replace(".", "p")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "noise": self.resolved_noise, "label": self.label}


@dataclass(frozen=True)
class ClosedLoopSpec:
    """Everything that makes one closed-loop episode reproducible (the gate is chosen per run)."""

    policy: PolicySpec
    scenario: str
    seed: int
    onset: int | None = None
    severity: float | None = None

    @property
    def episode_id(self) -> str:
        when = "ID" if self.scenario == IN_DISTRIBUTION else f"on{self.onset or 0:02d}"
        return f"{self.policy.slug}__{self.scenario}__{when}__s{self.seed:07d}"

    def run_id(self, gated: bool) -> str:
        return f"{self.episode_id}__{'gated' if gated else 'open'}"


@dataclass
class ClosedLoopResult:
    """One run: the recorded episode plus everything the monitor and gate did in it."""

    spec: ClosedLoopSpec
    gated: bool
    episode: Episode
    outcome: str
    steps: list[dict[str, Any]]  # one per frame: gate (computed), effective, risk
    decisions: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    latency_ms: dict[str, Any]
    first_stop_step: int | None
    interventions: int
    #: per decision (t, assessment) kept only when asked for (recordings need the maps)
    assessments: list[tuple[int, Any]] = field(default_factory=list)
    chunks: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (t, planned chunk)

    def to_record(self) -> dict[str, Any]:
        """The per-episode JSON record (schema in :mod:`world_monitor.report`)."""
        meta = self.episode.meta
        return {
            "id": self.spec.run_id(self.gated),
            "episode_id": self.spec.episode_id,
            "paired_id": self.spec.run_id(not self.gated),
            "policy": self.spec.policy.label,
            "policy_name": self.spec.policy.name,
            "policy_noise": self.spec.policy.resolved_noise,
            "scenario": self.spec.scenario,
            "seed": self.spec.seed,
            "onset": meta.shift_onset,
            "severity": meta.severity,
            "gated": self.gated,
            "outcome": self.outcome,
            "success": bool(meta.success),
            "failure_step": meta.failure_step,
            "failure_reason": meta.failure_reason,
            "fps": float(meta.fps),
            "length": int(self.episode.length),
            "first_stop_step": self.first_stop_step,
            "interventions": self.interventions,
            "stopped_steps": sum(s["effective"] == "STOP" for s in self.steps),
            "steps": {
                "t": [s["t"] for s in self.steps],
                "gate": [s["gate"] for s in self.steps],
                "effective": [s["effective"] for s in self.steps],
                "risk": [s["risk"] for s in self.steps],
            },
            "decisions": self.decisions,
            "alerts": self.alerts,
            "latency_ms": self.latency_ms,
        }


def classify_outcome(episode: Episode, final_effective: str) -> str:
    """``success`` / ``failure`` / ``stopped`` (module docstring)."""
    meta = episode.meta
    if meta.success:
        return "success"
    if meta.failure_reason in SAFETY_FAILURES:
        return "failure"
    return "stopped" if final_effective == Decision.STOP.name else "failure"


class GatedController:
    """The simulator's step hook: camera + chunk into the session, gate applied to commands."""

    def __init__(
        self,
        session: MonitorSession,
        *,
        fps: float,
        context_length: int,
        slow_scale: float,
        keep_assessments: bool = False,
    ) -> None:
        if not 0.0 <= slow_scale <= 1.0:
            raise ValueError(f"slow_scale must be in [0, 1], got {slow_scale}")
        self.session = session
        self.fps = float(fps)
        self.context_length = int(context_length)
        self.slow_scale = float(slow_scale)
        self.keep_assessments = keep_assessments
        self.steps: list[dict[str, Any]] = []
        self.decisions: list[dict[str, Any]] = []
        self.assessments: list[tuple[int, Any]] = []
        self.chunks: list[tuple[int, np.ndarray]] = []
        self._grip: float | None = None

    def __call__(
        self, t: int, obs: dict[str, Any], new_chunk: np.ndarray | None, planned: np.ndarray
    ) -> np.ndarray:
        stamp = t / self.fps
        if t == 0:  # the camera ran while the robot stood still (module docstring)
            for j in range(self.context_length - 1, 0, -1):
                self.session.on_image(obs["frame"], stamp - j / self.fps)
        self.session.on_image(obs["frame"], stamp)
        if new_chunk is not None:
            chunk = np.asarray(new_chunk, dtype=np.float32)
            self.chunks.append((t, chunk))
            self.session.on_actions(chunk, stamp)
        if self.session.decision_due(stamp):
            self._record_decision(t, self.session.decide(stamp))
        status = self.session.tick(stamp)
        effective = status.effective_decision
        self.steps.append(
            {
                "t": t,
                "gate": status.decision.name,
                "effective": effective.name,
                "risk": json_float(status.risk),
            }
        )
        return self._actuate(np.asarray(planned, dtype=np.float64), effective)

    def _actuate(self, planned: np.ndarray, decision: Decision) -> np.ndarray:
        """What the relay lets through (module docstring); the gripper is held on STOP."""
        out = planned.copy()
        dims = list(EE_DELTA_DIMS)
        if decision is Decision.STOP:
            out[dims] = 0.0
            if self._grip is not None:
                out[3] = self._grip
        elif decision is Decision.SLOW:
            out[dims] *= self.slow_scale
        self._grip = float(out[3])
        return out

    def _record_decision(self, t: int, res: DecisionResult) -> None:
        a = res.assessment
        total = None if a is None else a.latency_ms.get("total")
        self.decisions.append(
            {
                "t": t,
                "risk": None if a is None else json_float(a.risk),
                "decision": res.status.decision.name,
                "effective": res.status.effective_decision.name,
                "reasons": [r.value for r in res.status.reasons],
                "box": None if a is None or a.box is None else [json_float(v) for v in a.box],
                "onset_step": None if a is None or a.onset_step is None else int(a.onset_step),
                "latency_ms": json_float(total),
                "signals": {} if a is None else {k: json_float(v) for k, v in a.signals.items()},
            }
        )
        if self.keep_assessments and a is not None:
            self.assessments.append((t, a))


def _alerts(session_alerts: list[dict[str, Any]], fps: float) -> list[dict[str, Any]]:
    """Session alerts (caller-clock seconds) as episode steps, the report's unit."""
    out = []
    for al in session_alerts:
        out.append(
            {
                "start_t": int(round(float(al["start"]) * fps)),
                "end_t": None if al["end"] is None else int(round(float(al["end"]) * fps)),
                "level": al["decision"],
                "reasons": al["reasons"],
                "peak_risk": al["peak_risk"],
                "box": al["box"],
                "onset_step": al["onset_step"],
            }
        )
    return out


def run_closed_loop(
    monitor: Any,
    spec: ClosedLoopSpec,
    *,
    gated: bool,
    sim_config: Any = None,
    slow_scale: float = 0.5,
    keep_assessments: bool = False,
) -> ClosedLoopResult:
    """Run ``spec`` once with the gate enforcing (``gated``) or in shadow mode."""
    from world_monitor.sim.simulate import get_env, simulate_episode

    env = get_env(sim_config)
    fps = float(env.config.fps)
    gate_cfg = gate_config_for(monitor, shadow=not gated)
    # the session knows what SLOW does to the commands, so it predicts the slowed motion
    # instead of discarding its motion evidence at every slowed decision (SessionConfig)
    session_cfg = SessionConfig(
        per_chunk=True, slow_action_scale=slow_scale, slow_action_dims=EE_DELTA_DIMS
    )
    session = MonitorSession(monitor, gate_cfg, session_cfg)
    controller = GatedController(
        session,
        fps=fps,
        context_length=int(monitor.context_length),
        slow_scale=slow_scale,
        keep_assessments=keep_assessments,
    )
    episode = simulate_episode(
        spec.scenario,
        spec.seed,
        severity=spec.severity,
        onset=spec.onset,
        config=env.config,
        policy=spec.policy.name,
        policy_noise=spec.policy.noise,
        step_hook=controller,
    )
    steps = controller.steps
    summary = session.summary()
    outcome = classify_outcome(episode, steps[-1]["effective"] if steps else "STOP")
    first_stop = next((s["t"] for s in steps if s["gate"] == Decision.STOP.name), None)
    # an intervention = the enforced command changes from moving freely to SLOW/STOP
    interventions, prev = 0, Decision.PROCEED.name
    for s in steps:
        cur = s["gate"]
        if cur != Decision.PROCEED.name and prev == Decision.PROCEED.name:
            interventions += 1
        prev = cur
    return ClosedLoopResult(
        spec=spec,
        gated=gated,
        episode=episode,
        outcome=outcome,
        steps=steps,
        decisions=controller.decisions,
        alerts=_alerts(summary["alerts"], fps),
        latency_ms=summary["latency_ms"],
        first_stop_step=first_stop,
        interventions=interventions,
        assessments=controller.assessments,
        chunks=controller.chunks,
    )


def lead_time_s(open_run: dict[str, Any], gated_run: dict[str, Any]) -> float | None:
    """Seconds between the gate's first STOP (gated run) and the failure it precedes in the
    ungated run of the same episode; ``None`` unless the open run failed after that STOP."""
    fail = open_run.get("failure_step")
    stop = gated_run.get("first_stop_step")
    if open_run.get("outcome") != "failure" or fail is None or stop is None or stop > fail:
        return None
    return (int(fail) - int(stop)) / float(open_run["fps"])
