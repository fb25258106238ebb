"""``world-monitor evaluate-policy``: closed-loop policy evaluation with and without the gate.

What it does, in one run directory (schema below):

1. plans every (policy, scenario, onset, seed) episode up front (deterministic whatever the
   number of workers, like ``simulate``);
2. runs each episode twice on a worker pool (local processes, or Ray actors with ``--ray``) —
   gate in shadow mode ("open": what the policy does alone, with the monitor's would-be
   decisions recorded) and gate enforcing ("gated") — and writes a JSON record, an MCAP and (for the first few episodes of each cell) an animated strip;
3. writes the nominal policy's open episodes as a dataset and runs ``world-monitor evaluate`` on
   it, so the detection numbers in the report *are* ``evaluate``'s numbers on the same episodes;
4. aggregates per policy × scenario with intervals and checks the acceptance criteria.

Run directory::

    RUN_DIR/run.json                  options, bundle + hash, thresholds, timing
    RUN_DIR/summary.json              rows per policy × scenario, detection, acceptance
    RUN_DIR/episodes/<run_id>.json    one record per run (closed_loop.ClosedLoopResult.to_record)
    RUN_DIR/episodes/<run_id>/        rosbag2 directory with <run_id>.mcap
    RUN_DIR/episodes/<run_id>.webp    true | predicted | heatmap strip (selected episodes)
    RUN_DIR/dataset/                  the nominal policy's open episodes (a dataset)
    RUN_DIR/evaluate/                 evaluation.json/.md + ROC figures from ``evaluate``
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from world_monitor.fleet import run_tasks
from world_monitor.report.aggregate import ID_SCENARIO, acceptance_checks, summarise_runs
from world_monitor.report.closed_loop import ClosedLoopSpec, PolicySpec

__all__ = [
    "DEFAULT_POLICIES",
    "PolicyEvalOptions",
    "build_episode_plan",
    "detection_note",
    "detection_summary",
    "parse_policies",
    "run_policy_evaluation",
]

LOG = logging.getLogger(__name__)

#: Seeds of closed-loop episodes start here: disjoint from every dataset split (train 0..,
#: val 1e6.., calib 2e6.., test 3e6.., shifts 4e6..) so no evaluated layout was trained on.
SEED_OFFSET = 6_000_000
#: The nominal policy (the one the monitor was trained and calibrated with), a noisier one and a
#: deliberately bad one.
DEFAULT_POLICIES = "scripted,scripted:0.3,bad"


def parse_policies(text: str) -> list[PolicySpec]:
    """``"scripted,scripted:0.3,bad"`` -> PolicySpecs (``name[:noise]``, comma-separated)."""
    from world_monitor.sim import list_policies

    out = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        name, _, noise = item.partition(":")
        if name not in list_policies():
            raise ValueError(f"policy {name!r}: choose from {', '.join(list_policies())}")
        try:
            value = float(noise) if noise else None
        except ValueError:
            raise ValueError(
                f"policy {item!r}: noise must be a number, e.g. scripted:0.3"
            ) from None
        if value is not None and not 0.0 <= value <= 2.0:
            raise ValueError(f"policy {item!r}: noise must be in [0, 2]")
        out.append(PolicySpec(name, value))
    if not out:
        raise ValueError("no policies given")
    if len({p.label for p in out}) != len(out):
        raise ValueError(f"duplicate policies in {text!r}")
    return out


@dataclass
class PolicyEvalOptions:
    """Options of one evaluation run (CLI flags of ``evaluate-policy`` and ``demo``)."""

    policies: list[PolicySpec] = field(default_factory=lambda: parse_policies(DEFAULT_POLICIES))
    scenarios: list[str] | None = None  # None = every scenario
    seeds: int = 6  # episodes per (policy, scenario, onset)
    onsets: tuple[str, ...] = ("start", "mid")
    mid_onset: int = 20
    seed_offset: int = SEED_OFFSET
    slow_scale: float = 0.5
    workers: int = 0  # 0 = one per CPU core
    ray: str | None = None  # Ray cluster address ("local": a private one); None = processes
    backend: str = "onnxruntime,torch"
    engines_dir: str = "engines"
    mcap: bool = True
    strips_per_cell: int = 2  # per (policy, scenario, onset)
    evaluate: bool = True
    progress: bool = True
    command: str = ""


def build_episode_plan(opts: PolicyEvalOptions, episode_length: int) -> list[ClosedLoopSpec]:
    """Every episode of the run, in a fixed order (policy, scenario, onset, seed)."""
    from world_monitor.sim import list_scenarios

    scenarios = list(opts.scenarios or list_scenarios())
    unknown = sorted(set(scenarios) - set(list_scenarios()))
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; valid: {', '.join(list_scenarios())}")
    bad_onsets = sorted(set(opts.onsets) - {"start", "mid"})
    if bad_onsets or not opts.onsets:
        raise ValueError(f"onsets {list(opts.onsets)}: use 'start' and/or 'mid'")
    if not 0 < opts.mid_onset < episode_length:
        raise ValueError(f"mid_onset must be in (0, {episode_length}), got {opts.mid_onset}")
    if opts.seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {opts.seeds}")
    plan = []
    for pol in opts.policies:
        for scen in scenarios:
            onsets: list[int | None] = [None]
            if scen != ID_SCENARIO:
                onsets = [0 if o == "start" else opts.mid_onset for o in opts.onsets]
            for onset in onsets:
                for i in range(opts.seeds):
                    plan.append(ClosedLoopSpec(pol, scen, opts.seed_offset + i, onset))
    return plan


# ---- worker side ----------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


#: Console levels while episodes run: gate transitions are recorded per episode (JSON + MCAP);
#: on the console they would bury the progress bar under hundreds of expected "risk_high" lines.
_QUIET_LEVELS = {"world_monitor": logging.WARNING, "world_monitor.runtime.gate": logging.ERROR}


def _set_levels(levels: dict[str, int]) -> dict[str, int]:
    """Set logger levels; returns the previous ones."""
    saved = {name: logging.getLogger(name).level for name in levels}
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    return saved


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """:data:`_QUIET_LEVELS` for the duration, the caller's levels restored afterwards."""
    saved = _set_levels(_QUIET_LEVELS)
    try:
        yield
    finally:
        _set_levels(saved)


def _init_worker(bundle: str, backend: str, engines_dir: str, sim_cfg: Any, out: str) -> None:
    import torch

    from world_monitor.data.dataset import DatasetWriter
    from world_monitor.runtime.monitor import Monitor

    torch.set_num_threads(1)
    monitor = Monitor.from_bundle(bundle, backend, engines_dir=engines_dir)
    _WORKER.update(
        monitor=monitor,
        sim_cfg=sim_cfg,
        out=Path(out),
        writer=DatasetWriter(Path(out) / "dataset"),
    )


def _pool_worker(*init: Any) -> None:
    """Pool initializer: a worker process stays quiet for its whole life."""
    _set_levels(_QUIET_LEVELS)
    _init_worker(*init)


def _work(task: tuple[ClosedLoopSpec, bool, bool, bool, float]) -> list[dict[str, Any]]:
    """Run one episode open and gated; write records/recordings; return the two records."""
    from world_monitor.report.closed_loop import run_closed_loop
    from world_monitor.report.recording import strip_frames, write_episode_mcap, write_strip

    spec, mcap, strip, to_dataset, slow_scale = task
    monitor, out = _WORKER["monitor"], _WORKER["out"]
    records = []
    for gated in (False, True):
        res = run_closed_loop(
            monitor,
            spec,
            gated=gated,
            sim_config=_WORKER["sim_cfg"],
            slow_scale=slow_scale,
            keep_assessments=mcap or strip,
        )
        rec = res.to_record()
        run_id = rec["id"]
        rec["mcap"] = rec["strip"] = None
        if mcap:
            path = write_episode_mcap(res, out / "episodes" / run_id)
            rec["mcap"] = path.relative_to(out).as_posix()
        if strip:
            anim = write_strip(
                strip_frames(monitor, res), out / "episodes" / f"{run_id}.webp", rec["fps"]
            )
            rec["strip"] = anim.relative_to(out).as_posix()
        if to_dataset and not gated:
            _WORKER["writer"].write(res.episode, episode_id=spec.episode_id, split="test")
        _write_json(out / "episodes" / f"{run_id}.json", rec)
        records.append(rec)
    return records


def _write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=False), encoding="utf-8")
    os.replace(tmp, path)


# ---- parent side ----------------------------------------------------------------------------


def detection_summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The report's detection table, straight from ``evaluate``'s evaluation.json."""
    fams = {}
    for name, fam in evaluation.get("families", {}).items():
        det = fam.get("detectors", {}).get("monitor", {})
        fams[name] = {
            "episode_auroc": det.get("episode", {}).get("auroc"),
            "decision_auroc": det.get("decision", {}).get("auroc"),
            "tpr_at_stop": (fam.get("tpr_at_stop") or {}).get("rate"),
            "recon_episode_auroc": fam.get("detectors", {})
            .get("recon", {})
            .get("episode", {})
            .get("auroc"),
        }
    fs = evaluation.get("in_distribution", {}).get("false_stop") or {}
    mean = evaluation.get("mean_over_families", {}).get("episode_auroc", {}).get("monitor")
    return {
        "families": fams,
        "mean_episode_auroc": mean,
        "id_false_stop": fs.get("rate"),
        "id_false_stop_k": fs.get("k"),
        "id_false_stop_n": fs.get("n"),
        "source": "evaluate/evaluation.json",
    }


def run_policy_evaluation(
    bundle: str | Path, out: str | Path, sim_cfg: Any, opts: PolicyEvalOptions
) -> dict[str, Any]:
    """Run the whole evaluation (module docstring); returns the summary document."""
    from tqdm import tqdm

    from world_monitor.data.dataset import DatasetWriter
    from world_monitor.models.bundle import bundle_hash
    from world_monitor.runtime.monitor import Monitor

    t0 = time.perf_counter()
    bundle, out = Path(bundle), Path(out)
    plan = build_episode_plan(opts, int(sim_cfg.episode_length))
    probe = Monitor.from_bundle(bundle, opts.backend, engines_dir=opts.engines_dir)
    if tuple(probe.image_size) != (sim_cfg.image_size, sim_cfg.image_size):
        raise ValueError(
            f"bundle expects {probe.image_size} frames but sim.image_size is {sim_cfg.image_size}"
        )
    (out / "episodes").mkdir(parents=True, exist_ok=True)
    nominal = opts.policies[0]
    DatasetWriter(out / "dataset", info={"source": "evaluate-policy", "policy": nominal.label})
    seen: dict[tuple[str, str, int | None], int] = {}
    tasks = []
    for spec in plan:
        cell = (spec.policy.label, spec.scenario, spec.onset)  # strips for both onsets
        seen[cell] = seen.get(cell, 0) + 1
        strip = seen[cell] <= opts.strips_per_cell
        tasks.append((spec, opts.mcap, strip, spec.policy == nominal, opts.slow_scale))
    n_workers = max(1, min(opts.workers or (os.cpu_count() or 1), len(tasks)))
    LOG.info(
        "evaluate-policy: %d episodes x 2 runs on %d process(es) -> %s", len(plan), n_workers, out
    )
    init = (str(bundle), opts.backend, opts.engines_dir, sim_cfg, str(out))
    bar = tqdm(total=len(tasks), desc="closed loop", unit="ep", disable=not opts.progress)
    # in this process the caller's logging comes back afterwards; workers stay quiet for life
    in_process = n_workers == 1 and opts.ray is None
    try:
        with _quiet_logs() if in_process else contextlib.nullcontext():
            per_task = run_tasks(
                _init_worker if in_process else _pool_worker,
                init,
                _work,
                tasks,
                workers=n_workers,
                ray_address=opts.ray,
                on_result=lambda _: bar.update(),
            )
    finally:
        bar.close()
    records: list[dict[str, Any]] = [rec for recs in per_task for rec in recs]
    sim_seconds = time.perf_counter() - t0
    DatasetWriter(out / "dataset").finalize()

    detection = None
    if opts.evaluate:
        detection = _run_evaluate(bundle, out, opts)
    rows = summarise_runs(records)
    summary = {
        "rows": rows,
        "detection": detection,
        "acceptance": acceptance_checks(rows, nominal.label),
        "nominal_policy": nominal.label,
    }
    _write_json(out / "summary.json", summary)
    run = {
        "command": opts.command,
        "bundle": str(bundle.resolve()),
        "bundle_hash": bundle_hash(bundle),
        "backend": probe.backend_name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": time.perf_counter() - t0,
        "closed_loop_seconds": sim_seconds,
        "workers": n_workers,
        "ray": opts.ray,
        "fps": float(sim_cfg.fps),
        "episode_length": int(sim_cfg.episode_length),
        "slow_threshold": probe.slow_threshold,
        "stop_threshold": probe.stop_threshold,
        "slow_scale": opts.slow_scale,
        "policies": [p.to_dict() for p in opts.policies],
        "scenarios": list(dict.fromkeys(s.scenario for s in plan)),
        "seeds": opts.seeds,
        "seed_offset": opts.seed_offset,
        "onsets": list(opts.onsets),
        "mid_onset": opts.mid_onset,
        "episodes": len(plan),
    }
    _write_json(out / "run.json", run)
    return {"run": run, "summary": summary}


def _run_evaluate(bundle: Path, out: Path, opts: PolicyEvalOptions) -> dict[str, Any] | None:
    """``world-monitor evaluate`` on the nominal policy's open episodes (same decision stride
    as the calibration; recon + oracle baselines, which need no extra models)."""
    import shlex

    from world_monitor.runtime.evaluate import EvaluateOptions, evaluate_bundle

    data = out / "dataset"
    if not (data / "index.json").is_file():
        return None
    flags = ["--data", str(data), "--out", str(out / "evaluate"), "--stride", "4", "--seeds", "1"]
    flags += ["--baselines", "recon,oracle", "--backend", opts.backend]
    eval_opts = EvaluateOptions(
        stride=4,
        backend=opts.backend,
        engines_dir=opts.engines_dir,
        baselines=["recon", "oracle"],
        seeds=1,
        progress=opts.progress,
        command=shlex.join(["world-monitor", "evaluate", str(bundle), *flags]),
    )
    try:
        report = evaluate_bundle(bundle, data, out / "evaluate", eval_opts)
    except ValueError as exc:  # e.g. no in-distribution episodes in this run
        LOG.warning("evaluate skipped: %s", exc)
        return None
    return detection_summary(report)


def detection_note(det: dict[str, Any]) -> str:
    """One line on the in-distribution false-stop rate ``evaluate`` measured on these episodes."""
    k, n = det.get("id_false_stop_k"), det.get("id_false_stop_n")
    if not n:
        return "in-distribution false stops: not measured (no in-distribution episodes)"
    return (
        f"in-distribution false stops (evaluate, per episode): {k}/{n} = {k / n:.3f}; the "
        "calibrated bound is the bundle's stop_bound"
    )
