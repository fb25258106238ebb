"""The Monitor: one object that turns (context frames, action chunk) into an Assessment.

Pipeline of one decision (architecture.md): encode the k context frames with the VAE → roll the
world model out over the H actions the policy is about to execute (joint DDIM sampling or the
deterministic predictor, on the first backend that loads: TensorRT → onnxruntime → torch) → C³
confidence ``q̂(ε)`` of every predicted latent element (through the bundle's post-hoc
recalibration map when calibration fitted one, :mod:`world_monitor.uq.recalibration`) → raw
risk signals
(:mod:`world_monitor.runtime.risk`) → calibrated risk → the model's decision from the bundle's
calibrated thresholds, plus a localised alert (box in normalised image coordinates + onset step).

It is shared by the ROS node, offline replay, evaluation and the benchmarks, and knows nothing
about ROS. Hysteresis and the watchdog are the :class:`~world_monitor.runtime.gate.Gate`'s job.

Localisation is *relative to in-distribution*: calibration stores the typical confidence per
latent cell and per step on in-distribution data (the arm, for example, is always a little
uncertain), and an alert's box surrounds the cells whose confidence dropped most below that
reference; the onset is the first step whose drop reaches half of the largest step drop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from world_monitor.data.normalize import frames_to_float
from world_monitor.runtime.colour import ColourError, ColourModel
from world_monitor.runtime.inputs import ActionRange
from world_monitor.runtime.model_pass import ModelPass, PassPrefetcher
from world_monitor.runtime.motion import MotionHistory
from world_monitor.runtime.risk import (
    INPUT_SIGNALS,
    RiskCalibration,
    RiskConfig,
    RiskError,
    c3_signals,
    confidence_summaries,
    patch_score,
    recon_cells,
    recon_error,
    recon_zmap,
    recon_zscore,
    selfcheck_drift_bound,
)
from world_monitor.runtime.types import Assessment, Decision, Reason
from world_monitor.uq.recalibration import ConfidenceRecalibration, RecalibrationError

__all__ = [
    "Monitor",
    "MonitorBackendError",
    "MonitorError",
    "RawDecision",
    "load_monitor",
    "runtime_inputs",
]

LOG = logging.getLogger(__name__)
DEFAULT_BACKENDS = ("tensorrt", "onnxruntime", "torch")
#: A cell/step counts as "dropped" when its confidence fell at least this much below reference.
MIN_DROP = 0.05
#: Camera frame period and decision stride assumed by the ``motion`` signal when the calibration
#: does not record them (the simulator's 10 Hz camera, decisions every 4 frames).
DEFAULT_FRAME_PERIOD_S = 0.1
DEFAULT_DECISION_STRIDE = 4


def runtime_inputs(point: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(frames, chunk, context_actions) exactly as the live session presents a decision.

    The ROS node and replay see camera frames and the planned chunk, not the actions executed
    between the context frames, so they assess without context actions (the model is trained with
    context-action dropout for this). Calibration and evaluation go through this function so the
    thresholds are fitted on the same risk distribution the gate meets at run time — otherwise
    the conformal false-stop bound would not apply to the deployed monitor.
    """
    return point.frames, point.chunk, None


class MonitorError(RuntimeError):
    """The monitor cannot be built or used as asked (uncalibrated bundle, ε mismatch, ...)."""


def _backend_error_type() -> type[Exception]:
    from world_monitor.runtime.backends import BackendError

    return BackendError


class MonitorBackendError(MonitorError):
    """No backend of the requested ones loaded; one line naming each and why (a user error:
    the CLI prints it without a traceback). ``attempts`` as on
    :class:`~world_monitor.runtime.backends.BackendError`."""

    def __init__(self, message: str, attempts: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.attempts = list(attempts)


@dataclass
class RawDecision:
    """Everything one rollout produced, before calibration (used by calibrate and evaluate)."""

    latents: np.ndarray  # [H, C, h, w] predicted latents
    confidence: np.ndarray  # [H, C, h, w] q̂ at ε
    context_latents: np.ndarray  # [k, C, h, w]
    scores: dict[str, float]  # raw signals (risk.SIGNALS)
    latency_ms: dict[str, float] = field(default_factory=dict)
    #: per-cell reconstruction error of the newest frame [H/4, W/4] (input-side alert box)
    recon_cells: np.ndarray | None = None
    #: per-cell colour novelty of the newest frame [H/4, W/4] (alert box when ``colour`` leads)
    colour_cells: np.ndarray | None = None


def _stored(info: Mapping[str, Any], key: str, load: Callable[[Any], Any]) -> Any:
    """``load(info[key])`` when calibration.json has ``key`` (else ``None``); a malformed entry
    is a :class:`MonitorError` naming it. For the optional parts ``calibrate`` adds: the
    probe's post-hoc recalibration (``probe_recalibration``), the colour palette
    (``colour_model``)."""
    stored = info.get(key)
    if stored is None:
        return None
    try:
        return load(stored)
    except (RecalibrationError, ColourError) as exc:
        raise MonitorError(f"calibration {key}: {exc}") from exc


def _recon_stats(info: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """The per-cell in-distribution reconstruction-error mean/std (``recon_z``), if calibrated."""
    if "recon_cell_mean" not in info or "recon_cell_std" not in info:
        return None
    mean = np.asarray(info["recon_cell_mean"], dtype=np.float64)
    std = np.asarray(info["recon_cell_std"], dtype=np.float64)
    if mean.ndim != 2 or mean.shape != std.shape or not np.isfinite(mean).all():
        raise MonitorError(f"calibration recon cell statistics are malformed ({mean.shape})")
    return mean, std


def _parse_backends(backend: str | Sequence[str] | None) -> tuple[str, ...]:
    """The backend preference order; an unknown name is a :class:`MonitorError` (a user error:
    ``--backend bogus`` used to surface as a traceback from deep inside the loader)."""
    if backend is None or backend == "":
        return DEFAULT_BACKENDS
    if isinstance(backend, str):
        order = tuple(b.strip() for b in backend.split(",") if b.strip())
    else:
        order = tuple(backend)
    bad = [b for b in order if b not in DEFAULT_BACKENDS]
    if bad or not order:
        shown = ", ".join(repr(b) for b in bad) or "(none)"
        raise MonitorError(
            f"unknown backend {shown} in {backend!r}; choose from {', '.join(DEFAULT_BACKENDS)}"
        )
    return order


class Monitor:
    """See the module docstring. Build it with :meth:`from_bundle` (or :func:`load_monitor`)."""

    def __init__(
        self,
        rollout: Any,
        *,
        context_length: int,
        horizon: int,
        action_dim: int,
        image_size: tuple[int, int],
        latent_shape: tuple[int, int, int],
        risk_config: RiskConfig,
        calibration: RiskCalibration | None,
        backend_report: Any = None,
        seed: int = 0,
        action_range: ActionRange | None = None,
    ) -> None:
        self.rollout = rollout
        self.backend = rollout.backend
        self.context_length = int(context_length)
        self.horizon = int(horizon)
        self.action_dim = int(action_dim)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.latent_shape = tuple(int(v) for v in latent_shape)
        self.risk_config = risk_config
        self.calibration = calibration
        self.backend_report = backend_report
        self.seed = int(seed)
        self.backend_name = getattr(self.backend, "label", getattr(self.backend, "name", "?"))
        self.stride = self.image_size[1] // self.latent_shape[2]
        #: the bundle's training action range (margin included): assess() refuses chunks
        #: outside it and MonitorSession rejects them as inputs (``action_out_of_range``)
        self.action_range = action_range
        self._prefetcher: PassPrefetcher | None = None
        if action_range is not None and action_range.dim != self.action_dim:
            raise MonitorError(
                f"action_range has {action_range.dim} dims but action_dim is {self.action_dim}"
            )
        info = calibration.info if calibration else {}
        self.motion = MotionHistory(
            float(info.get("frame_period_s", DEFAULT_FRAME_PERIOD_S)),
            self.horizon,
            lag=min(int(info.get("decision_stride", DEFAULT_DECISION_STRIDE)), self.horizon),
            epsilon=risk_config.epsilon,
        )
        #: per-cell in-distribution reconstruction-error (mean, std) for ``recon_z``, and the
        #: probe's post-hoc recalibration: both from calibration.json; ``calibrate`` replaces them
        self.recon_stats = _recon_stats(info)
        self.recalibration = _stored(info, "probe_recalibration", ConfidenceRecalibration.from_dict)
        #: the in-distribution colour palette for ``colour`` (calibration.json; calibrate fits it)
        self.colour_model = _stored(info, "colour_model", ColourModel.from_dict)
        fused = calibration is not None and "colour" in calibration.config.signals
        if fused and self.colour_model is None:
            raise MonitorError(
                "calibration fuses the 'colour' signal but stores no colour_model: "
                "re-run `world-monitor calibrate`"
            )

    @property
    def frame_period_s(self) -> float:
        """The camera period the bundle was calibrated at (calibration.json
        ``frame_period_s``): MonitorSession requires context frames spaced like it."""
        return float(self.motion.frame_period_s)

    # ------------------------------------------------------------------ memory
    def configure_motion(self, frame_period_s: float, lag: int) -> None:
        """Use another camera period / decision stride for the ``motion`` signal (calibration
        sets the ones it measures at; they are then stored in calibration.json)."""
        self.motion = MotionHistory(
            float(frame_period_s), self.horizon, lag=int(lag), epsilon=self.risk_config.epsilon
        )

    def reset(self) -> None:
        """Forget the decision history (``motion``): call at the start of every episode."""
        self.motion.reset()

    def interrupt(self) -> None:
        """The gate changed the commands the last rollouts were conditioned on (a STOP, a SLOW
        the caller did not condition on), so they no longer describe what the robot did: the
        ``motion`` signal will not compare against them."""
        self.motion.interrupt()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_bundle(
        cls,
        path: str | Path,
        backend: str | Sequence[str] | None = None,
        *,
        engines_dir: str | Path = "engines",
        epsilon: float | None = None,
        num_inference_steps: int | None = None,
        allow_uncalibrated: bool = False,
        ignore_calibration: bool = False,
        export_missing: bool = True,
        seed: int = 0,
        **backend_opts: Any,
    ) -> Monitor:
        """Load and validate a bundle, pick a backend, and check the calibration matches.

        Fails fast (``MonitorError``/``BundleError``/``BackendError``) on a bad bundle, a missing
        or inconsistent calibration (unless ``allow_uncalibrated``, used by calibration itself),
        or an ε different from the one the thresholds were calibrated at.
        ``ignore_calibration`` loads the bundle as if it had none (``calibrate`` refits every
        part of it and must not inherit the previous ε, statistics or recalibration).
        """
        from world_monitor.models.bundle import bundle_hash, load_bundle
        from world_monitor.models.world_model import WorldModel
        from world_monitor.runtime.backends import create_backend
        from world_monitor.runtime.engine_rollout import EngineRollout
        from world_monitor.runtime.export import WorldModelModules

        path = Path(path)
        bundle = load_bundle(path)
        if bundle.action_range is None:
            raise MonitorError(
                f"{path}: the bundle declares no training action range (manifest action_range) "
                "and its config has no action_normalizer min/max to derive one from: the gate "
                "could not refuse absurd commands; re-export the bundle with `world-monitor train`"
            )
        action_range = ActionRange.from_manifest(bundle.action_range)
        calibration = None
        if bundle.calibration and not ignore_calibration:
            try:
                calibration = RiskCalibration.from_dict(bundle.calibration)
            except RiskError as exc:
                raise MonitorError(f"{path}: {exc}") from exc
        elif not (allow_uncalibrated or ignore_calibration):
            raise MonitorError(
                f"{path} has no calibration: run `world-monitor calibrate {path}` first "
                "(thresholds are what make the gate's false-stop rate known)"
            )
        risk_config = calibration.config if calibration else RiskConfig()
        if (
            epsilon is not None
            and calibration is not None
            and abs(epsilon - risk_config.epsilon) > 1e-9
        ):
            raise MonitorError(
                f"epsilon {epsilon} differs from the calibrated epsilon {risk_config.epsilon}; "
                "re-run `world-monitor calibrate` with risk.epsilon to change it"
            )
        if epsilon is not None and calibration is None:
            risk_config = RiskConfig(
                epsilon=epsilon,
                confidence_level=risk_config.confidence_level,
                signals=risk_config.signals,
            )

        world = WorldModel.from_bundle(bundle)
        modules = WorldModelModules.from_container(world)
        order = _parse_backends(backend)
        try:
            backend_obj, report = create_backend(
                order,
                modules,
                engines_dir,
                model_hash=bundle_hash(path),
                export_missing=export_missing,
                **backend_opts,
            )
        except _backend_error_type() as exc:
            reasons = "; ".join(
                f"{a.name}: {' '.join(str(a.reason).split())}" for a in exc.attempts
            )
            raise MonitorBackendError(
                f"no inference backend of {list(order)} could be loaded ({reasons})", exc.attempts
            ) from exc
        # create_backend has logged report.summary() already (one backend line per load)
        mode = "deterministic" if world.config.variant == "deterministic" else "joint"
        steps = num_inference_steps or world.config.rollout.num_inference_steps
        rollout = EngineRollout(
            backend_obj,
            mode=mode,
            num_inference_steps=steps,
            epsilon=risk_config.epsilon,
            action_normalizer=world.normalize_actions,
        )
        manifest = bundle.manifest
        return cls(
            rollout,
            context_length=world.config.context_length,
            horizon=world.config.horizon,
            action_dim=int(manifest["action_dim"]),
            image_size=tuple(manifest["image_size"]),
            latent_shape=world.config.latent_shape,
            risk_config=risk_config,
            calibration=calibration,
            backend_report=report,
            seed=seed,
            action_range=action_range,
        )

    # ------------------------------------------------------------------ thresholds
    @property
    def slow_threshold(self) -> float:
        return self.calibration.slow_threshold if self.calibration else 1.0

    @property
    def stop_threshold(self) -> float:
        return self.calibration.stop_threshold if self.calibration else 1.0

    # ------------------------------------------------------------------ decisions
    def _check(self, frames: np.ndarray, action_chunk: np.ndarray) -> None:
        want = (self.context_length, *self.image_size, 3)
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.shape != want:
            got = getattr(frames, "shape", None), getattr(frames, "dtype", type(frames).__name__)
            raise ValueError(f"frames: expected uint8 {want}, got {got}")
        chunk = np.asarray(action_chunk)
        if chunk.shape != (self.horizon, self.action_dim) or not np.isfinite(chunk).all():
            raise ValueError(
                f"action_chunk: expected finite [{self.horizon}, {self.action_dim}], "
                f"got {chunk.shape}"
            )

    def raw(
        self,
        frames: np.ndarray,
        action_chunk: np.ndarray,
        context_actions: np.ndarray | None = None,
        *,
        seed: int | None = None,
        stamp: float | None = None,
    ) -> RawDecision:
        """One rollout and its raw signals (no calibration needed).

        With ``stamp`` (seconds) the decision also enters the decision history and the
        ``motion`` signal is computed against earlier rollouts; without it (extra rollouts such
        as baselines) the history is untouched. ``recon_z`` needs calibrated cell statistics.
        """
        self._check(frames, action_chunk)
        seed = self.seed if seed is None else int(seed)
        mp = None
        if self._prefetcher is not None:
            mp = self._prefetcher.take(frames, action_chunk, context_actions, seed)
        if mp is None:
            mp = self.model_pass(frames, action_chunk, context_actions, seed)
        t1 = time.perf_counter()
        scores = dict(mp.scores)
        if stamp is not None:
            motion = self.motion.observe(stamp, mp.context_latents, mp.latents, mp.confidence)
            if motion is not None:
                scores["motion"] = motion
            check = self.motion.selfcheck()
            if check is not None:
                scores["selfcheck"] = check
        latency = dict(mp.latency_ms)
        latency["signals"] = latency.get("signals", 0.0) + (time.perf_counter() - t1) * 1e3
        return RawDecision(
            latents=mp.latents,
            confidence=mp.confidence,
            context_latents=mp.context_latents,
            scores=scores,
            recon_cells=mp.recon_cells,
            colour_cells=mp.colour_cells,
            latency_ms=latency,
        )

    def model_pass(
        self,
        frames: np.ndarray,
        action_chunk: np.ndarray,
        context_actions: np.ndarray | None,
        seed: int,
    ) -> ModelPass:
        """The stateless part of a decision (no history read or written): safe to run ahead
        of time and on several threads when :attr:`can_prefetch` (:mod:`.model_pass`)."""
        t0 = time.perf_counter()
        x = np.ascontiguousarray(frames_to_float(frames).transpose(0, 3, 1, 2))
        ctx = self.backend.encode(x)
        t1 = time.perf_counter()
        result = self.rollout.rollout_latents(ctx, action_chunk, context_actions, seed=seed)
        confidence = result.confidence
        if self.recalibration is not None:
            confidence = self.recalibration.apply(confidence, self.risk_config.epsilon)
        t2 = time.perf_counter()
        recon = self.backend.decode(ctx[-1:])
        scores = c3_signals(confidence, self.risk_config.confidence_level)
        scores["recon"] = recon_error(x[-1:], recon)
        cells = recon_cells(x[-1:], recon)
        scores["recon_patch"] = patch_score(cells)
        if self.recon_stats is not None:
            scores["recon_z"] = recon_zscore(cells, *self.recon_stats)
        colour_cells = None
        if self.colour_model is not None:
            scores["colour"], colour_cells = self.colour_model.measure(frames[-1])
        t3 = time.perf_counter()
        return ModelPass(
            context_latents=ctx,
            latents=result.latents,
            confidence=confidence,
            scores=scores,
            recon_cells=cells,
            colour_cells=colour_cells,
            latency_ms={
                "encode": (t1 - t0) * 1e3,
                "rollout": (t2 - t1) * 1e3,
                "signals": (t3 - t2) * 1e3,
            },
        )

    # ------------------------------------------------------------------ prefetch
    @property
    def can_prefetch(self) -> bool:
        """Whether model passes may run concurrently: the backend's sessions take concurrent
        calls (onnxruntime, torch; not one TensorRT execution context) and the rollout keeps
        no per-call state (the deterministic predictor; the DDIM loop shares a scheduler)."""
        return bool(getattr(self.backend, "concurrent_runs", False)) and (
            getattr(self.rollout, "mode", "") == "deterministic"
        )

    def start_prefetch(self, threads: int) -> bool:
        """Compute passes submitted with :meth:`prefetch` on ``threads`` threads; returns False
        (and stays sequential) when :attr:`can_prefetch` is false or ``threads`` < 1."""
        self.stop_prefetch()
        if threads < 1 or not self.can_prefetch:
            return False

        self._prefetcher = PassPrefetcher(self.model_pass, threads)
        return True

    def prefetch(
        self,
        frames: np.ndarray,
        action_chunk: np.ndarray,
        context_actions: np.ndarray | None = None,
    ) -> None:
        """Start the model pass a coming decision will need (no-op without a prefetcher or
        for inputs assess() would refuse)."""
        if self._prefetcher is None:
            return
        try:
            self._check(frames, action_chunk)
        except ValueError:
            return
        refused = self.action_range is not None and (
            self.action_range.violation(np.asarray(action_chunk)) is not None
        )
        if not refused:
            self._prefetcher.submit(frames, action_chunk, context_actions, self.seed)

    def prefetch_stats(self) -> dict[str, int] | None:
        return None if self._prefetcher is None else self._prefetcher.stats()

    def stop_prefetch(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None

    def assess(
        self,
        frames: np.ndarray,
        action_chunk: np.ndarray,
        stamp: float,
        context_actions: np.ndarray | None = None,
    ) -> Assessment:
        """frames uint8 [k,H,W,3] (oldest first), raw action_chunk [H,A] → Assessment.

        A chunk outside the bundle's training action range is not assessed: the result has
        ``risk=None`` and reason ``action_out_of_range`` (a STOP cause for the gate), because
        the model's confidence there is meaningless (measured: it saturates at 1.0)."""
        if self.calibration is None:
            raise MonitorError("monitor is uncalibrated: assess() needs calibrated thresholds")
        if self.action_range is not None:
            self._check(frames, action_chunk)
            problem = self.action_range.violation(np.asarray(action_chunk))
            if problem is not None:
                return Assessment(
                    stamp=float(stamp),
                    risk=None,
                    decision=Decision.STOP,
                    backend=self.backend_name,
                    reasons=(Reason.action_out_of_range,),
                    detail=problem,
                )
        t0 = time.perf_counter()
        raw = self.raw(frames, action_chunk, context_actions, stamp=stamp)
        t1 = time.perf_counter()
        risk = self.calibration.risk(raw.scores)
        decision = self.decision_for(risk)
        box, onset = (
            self.localise(
                raw.confidence,
                raw.recon_cells,
                self.calibration.signal_risk(raw.scores),
                colour_cells=raw.colour_cells,
            )
            if decision is not Decision.PROCEED
            else (None, None)
        )
        step_conf = confidence_summaries(raw.confidence)[1].astype(np.float32)
        latency = dict(raw.latency_ms)
        latency["risk"] = (time.perf_counter() - t1) * 1e3
        latency["total"] = (time.perf_counter() - t0) * 1e3
        return Assessment(
            stamp=float(stamp),
            risk=float(risk),
            decision=decision,
            step_confidence=step_conf,
            confidence_map=raw.confidence.astype(np.float32, copy=False),
            epsilon=self.risk_config.epsilon,
            box=box,
            onset_step=onset,
            latency_ms=latency,
            backend=self.backend_name,
            signals=dict(raw.scores),
            predicted_latents=raw.latents,
        )

    def decision_for(self, risk: float) -> Decision:
        """Alarm iff risk is *above* a threshold (the conformal convention, uq.detection)."""
        if risk > self.stop_threshold:
            return Decision.STOP
        if risk > self.slow_threshold:
            return Decision.SLOW
        return Decision.PROCEED

    def localise(
        self,
        confidence: np.ndarray,
        recon_cells: np.ndarray | None = None,
        signal_risk: Mapping[str, float] | None = None,
        *,
        colour_cells: np.ndarray | None = None,
    ) -> tuple[tuple[float, float, float, float] | None, int | None]:
        """The alert's box (normalised x0, y0, x1, y1) and onset step.

        The box comes from the evidence that raised the risk: when an input-side signal
        (``recon``/``recon_patch``/``recon_z``) has the highest rank in ``signal_risk`` and the
        per-cell reconstruction error is given, the box surrounds the largest region of cells
        with at least half the peak error — in in-distribution standard deviations when
        ``recon_z`` leads, in colour novelty when ``colour`` leads (``colour_cells``), in
        log-loss excess when ``selfcheck`` leads (where earlier confident predictions failed) —
        (where the camera shows something the VAE has not seen, or a colour it never showed);
        otherwise the largest region whose C³ confidence dropped most below its
        in-distribution reference. The onset is always the first predicted step whose
        confidence drop reaches half the peak.
        """
        from world_monitor.uq.localization import box_from_confidence

        cell, step = confidence_summaries(confidence)  # [h, w] worst step; [H]
        info = self.calibration.info if self.calibration else {}
        ref_cell = np.asarray(info.get("reference_cell", np.ones_like(cell)), dtype=np.float64)
        ref_step = np.asarray(info.get("reference_step", np.ones_like(step)), dtype=np.float64)
        if ref_cell.shape != cell.shape or ref_step.shape != step.shape:
            ref_cell, ref_step = np.ones_like(cell), np.ones_like(step)
        box = None
        leader = max(signal_risk, key=signal_risk.get) if signal_risk else None
        err = None if recon_cells is None else np.asarray(recon_cells, dtype=np.float64)
        if leader == "recon_z" and err is not None and self.recon_stats is not None:
            err = np.clip(recon_zmap(err, *self.recon_stats), 0.0, None)
        if leader == "colour" and colour_cells is not None:
            err = np.asarray(colour_cells, dtype=np.float64)
        checked = self.motion.selfcheck_cells
        if leader == "selfcheck" and checked is not None:
            err = np.clip(np.asarray(checked, dtype=np.float64), 0.0, None)
        cell_led = leader in INPUT_SIGNALS or leader == "selfcheck"
        if cell_led and err is not None and float(np.max(err)) > 0:
            stride = self.image_size[1] // err.shape[1]
            box = box_from_confidence(
                -err, -0.5 * float(err.max()) + 1e-12, stride=stride, image_size=self.image_size
            )
        else:
            drop = ref_cell - cell
            peak = float(drop.max())
            if peak >= MIN_DROP:
                thr = max(MIN_DROP, 0.5 * peak)
                box = box_from_confidence(
                    -drop, -thr + 1e-12, stride=self.stride, image_size=self.image_size
                )
        step_drop = ref_step - step
        onset = None
        if float(step_drop.max()) >= MIN_DROP / 5:
            onset = int(np.flatnonzero(step_drop >= 0.5 * step_drop.max())[0])
        return (tuple(float(v) for v in box) if box is not None else None), onset

    def calibration_drift(self) -> dict[str, Any] | None:
        """Is the model's confidence still as good as at calibration? ``None`` until the
        ``selfcheck`` signal is defined (or for a calibration without its reference).

        ``selfcheck`` scores the recent rollouts' C³ confidence against the frames that arrived
        (``world_monitor/runtime/motion.py``); ``calibrate`` stores its in-distribution values
        (``world_model_reference``). ``drift`` is true when the current value exceeds every one
        of them: the probe is now wrong more confidently than it ever was on calibration data, so
        its calibration bound no longer describes this camera and scene. A diagnostic, not a
        gate cause: the risk already acts on the evidence it fuses."""
        bound = selfcheck_drift_bound(self.calibration.info if self.calibration else {})
        value = self.motion.selfcheck()
        if value is None or bound is None:
            return None
        return {"selfcheck": float(value), "bound": bound, "drift": bool(value > bound)}

    def describe(self) -> dict[str, Any]:
        """What loaded and how it is configured (diagnostics, summaries)."""
        return {
            "backend": self.backend_name,
            "backend_report": self.backend_report.to_dict() if self.backend_report else None,
            "context_length": self.context_length,
            "horizon": self.horizon,
            "image_size": list(self.image_size),
            "risk": self.risk_config.to_dict(),
            "thresholds": {"slow": self.slow_threshold, "stop": self.stop_threshold},
            "calibrated": self.calibration is not None,
        }


def load_monitor(
    bundle: str | Path,
    backend: str | Sequence[str] | None = None,
    *,
    epsilon: float | None = None,
    target_false_alarm_rate: float | None = None,
    engine_file_path: str | None = None,
    force_engine_update: bool = False,
    enable_fp16: bool = True,
    engines_dir: str | Path | None = None,
    config: Mapping[str, Any] | None = None,
    allow_uncalibrated: bool = False,
) -> Monitor:
    """Factory used by the ROS node and replay (their parameter names, Isaac ROS vocabulary).

    ``target_false_alarm_rate`` re-derives the STOP threshold from the per-episode calibration
    scores stored in the bundle (no new data needed); ``engine_file_path`` is the engine cache
    directory for TensorRT/ONNX files.
    """
    order = _parse_backends(backend)
    opts: dict[str, Any] = {}
    if "tensorrt" in order:
        opts.update(force_engine_update=force_engine_update, enable_fp16=enable_fp16)
    monitor = Monitor.from_bundle(
        bundle,
        order,
        engines_dir=engines_dir or engine_file_path or "engines",
        epsilon=epsilon,
        allow_uncalibrated=allow_uncalibrated,
        **opts,
    )
    if target_false_alarm_rate is not None and monitor.calibration is not None:
        from world_monitor.runtime.calibrate import retarget

        retarget(monitor.calibration, stop_alpha=float(target_false_alarm_rate))
    return monitor
