"""Generate a simulated episode dataset: the plan, the worker pool, the summary, the previews.

Why a *plan*: every episode is fully described up front by (id, scenario, seed, severity, onset,
split), so generation is deterministic whatever the number of workers or the order they finish
in, and resumable: an episode already on disk is skipped. Seeds are offset per split (and per
shift family) so growing one split never changes the episodes of another.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from world_monitor.config import ConfigError

__all__ = [
    "EpisodeSpec",
    "GenerationResult",
    "build_plan",
    "generate_dataset",
    "print_summary",
    "sim_config_from",
    "simulate_specs",
    "write_dataset_preview",
    "write_scenario_preview",
]

LOG = logging.getLogger(__name__)

ID_SCENARIO = "in_distribution"
SPLIT_SEED_OFFSETS = {"train": 0, "val": 1_000_000, "calib": 2_000_000, "test": 3_000_000}
SHIFT_SEED_OFFSET = 4_000_000
SHIFT_SEED_STRIDE = 100_000


@dataclass(frozen=True)
class EpisodeSpec:
    """Everything needed to simulate one episode reproducibly."""

    episode_id: str
    scenario: str
    seed: int
    split: str
    severity: float | None = None
    onset: int | None = None


@dataclass
class GenerationResult:
    """What `simulate` reports: counts, outcomes and throughput."""

    root: Path
    planned: int
    generated: int
    skipped: int
    frames_generated: int
    seconds: float
    workers: int
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def frames_per_second(self) -> float:
        return self.frames_generated / self.seconds if self.seconds > 0 else 0.0


def sim_config_from(cfg: DictConfig) -> Any:
    """Build the simulator's SimConfig from the `sim` config group (unknown keys are an error)."""
    from world_monitor.sim import SimConfig

    values = OmegaConf.to_container(cfg.sim, resolve=True)
    assert isinstance(values, dict)
    policy_keys = {"policy", "policy_noise"}
    sim_values = {k: v for k, v in values.items() if k not in policy_keys}
    try:
        return SimConfig(**sim_values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"sim config: {exc}") from exc


def _shift_families(cfg: DictConfig) -> list[str]:
    from world_monitor.sim import list_scenarios

    known = [name for name in list_scenarios() if name != ID_SCENARIO]
    chosen = cfg.data.get("shifts")
    if chosen is None:
        return known
    chosen = list(chosen)
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise ConfigError(f"data.shifts: unknown shift families {unknown}; known: {known}")
    return chosen


def build_plan(cfg: DictConfig) -> list[EpisodeSpec]:
    """The deterministic list of episodes the `data` config asks for."""
    base = int(cfg.seed) * 10_000_000
    plan: list[EpisodeSpec] = []
    for split, count in cfg.data.splits.items():
        if split not in SPLIT_SEED_OFFSETS:
            raise ConfigError(
                f"data.splits: unknown split {split!r}; use {list(SPLIT_SEED_OFFSETS)}"
            )
        for i in range(int(count)):
            seed = base + SPLIT_SEED_OFFSETS[split] + i
            plan.append(EpisodeSpec(f"{split}-{ID_SCENARIO}-{i:05d}", ID_SCENARIO, seed, split))
    per_family = int(cfg.data.shift_test_per_family)
    n_mid = int(round(per_family * float(cfg.data.mid_onset_fraction)))
    lo, hi = (int(v) for v in cfg.data.onset_range)
    if not 0 <= lo <= hi < int(cfg.sim.episode_length):
        raise ConfigError(
            f"data.onset_range {[lo, hi]} must lie inside [0, sim.episode_length="
            f"{cfg.sim.episode_length})"
        )
    severity = cfg.data.get("severity")
    for f_idx, family in enumerate(_shift_families(cfg)):
        for i in range(per_family):
            seed = base + SHIFT_SEED_OFFSET + f_idx * SHIFT_SEED_STRIDE + i
            onset = None
            if i >= per_family - n_mid:
                onset = int(np.random.default_rng(seed).integers(lo, hi + 1))
            tag = "mid" if onset is not None else "start"
            plan.append(
                EpisodeSpec(
                    f"test-{family}-{tag}-{i:05d}",
                    family,
                    seed,
                    "test",
                    None if severity is None else float(severity),
                    onset,
                )
            )
    ids = [s.episode_id for s in plan]
    if len(set(ids)) != len(ids):  # pragma: no cover - construction guarantees uniqueness
        raise AssertionError("duplicate episode ids in plan")
    return plan


def _simulate_spec(spec: EpisodeSpec, sim_cfg: Any, policy: str, noise: float | None) -> Any:
    from world_monitor.sim import simulate_episode

    return simulate_episode(
        spec.scenario,
        spec.seed,
        severity=spec.severity,
        onset=spec.onset,
        config=sim_cfg,
        policy=policy,
        policy_noise=noise,
    )


# Worker-process state, set once per process by _init_worker (spawned processes share nothing).
_WORKER: dict[str, Any] = {}


def _init_worker(root: str, sim_cfg: Any, policy: str, noise: float | None) -> None:
    from world_monitor.data.dataset import DatasetWriter

    _WORKER.update(writer=DatasetWriter(Path(root)), sim_cfg=sim_cfg, policy=policy, noise=noise)


def _work(spec: EpisodeSpec) -> tuple[str, int]:
    episode = _simulate_spec(spec, _WORKER["sim_cfg"], _WORKER["policy"], _WORKER["noise"])
    _WORKER["writer"].write(episode, episode_id=spec.episode_id, split=spec.split)
    return spec.episode_id, episode.length


def generate_dataset(
    cfg: DictConfig,
    root: Path,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> GenerationResult:
    """Simulate every planned episode not yet on disk, on `workers` processes, then index."""
    n_workers = workers if workers is not None else int(cfg.get("workers") or 0)
    return simulate_specs(
        build_plan(cfg),
        root,
        sim_config_from(cfg),
        policy=str(cfg.sim.policy),
        policy_noise=cfg.sim.get("policy_noise"),
        workers=n_workers,
        progress=progress,
    )


def simulate_specs(
    plan: list[EpisodeSpec],
    root: Path,
    sim_cfg: Any,
    *,
    policy: str = "scripted",
    policy_noise: float | None = None,
    workers: int = 0,
    progress: bool = True,
) -> GenerationResult:
    """Simulate the episodes of ``plan`` not yet on disk under ``root`` (0 workers = one per
    core), then index the dataset. Shared by ``simulate`` and by evaluation's severity sweep,
    which re-simulates chosen test episodes at other severities."""
    from tqdm import tqdm

    from world_monitor.data.dataset import DatasetWriter, EpisodeDataset

    writer = DatasetWriter(root)
    todo = [s for s in plan if not writer.exists(s.episode_id)]
    n_workers = max(1, min(workers or (os.cpu_count() or 1), max(1, len(todo))))
    LOG.info(
        "simulate: %d episodes planned, %d already on disk, %d to generate on %d process(es) -> %s",
        len(plan),
        len(plan) - len(todo),
        len(todo),
        n_workers,
        root,
    )
    frames = 0
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc="simulate", unit="ep", disable=not progress)
    try:
        if n_workers == 1:
            _init_worker(str(root), sim_cfg, policy, policy_noise)
            for spec in todo:
                frames += _work(spec)[1]
                bar.update()
        else:
            ctx = mp.get_context("spawn")
            init_args = (str(root), sim_cfg, policy, policy_noise)
            with ctx.Pool(n_workers, _init_worker, init_args) as pool:
                for _, length in pool.imap_unordered(_work, todo, chunksize=1):
                    frames += length
                    bar.update()
                    bar.set_postfix(fps=f"{frames / (time.perf_counter() - start):.0f}")
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    writer.finalize(expected=[s.episode_id for s in plan], progress=progress)
    summary = EpisodeDataset(root).summary()
    return GenerationResult(
        root=root,
        planned=len(plan),
        generated=len(todo),
        skipped=len(plan) - len(todo),
        frames_generated=frames,
        seconds=seconds,
        workers=n_workers,
        summary=summary,
    )


def print_summary(result: GenerationResult) -> None:
    """Human-readable summary of a generation run (the CLI's output)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]dataset[/bold] {result.root}: {result.planned} episodes planned, "
        f"{result.generated} generated, {result.skipped} already present"
    )
    if result.generated:
        console.print(
            f"simulated {result.frames_generated} frames in {result.seconds:.1f} s on "
            f"{result.workers} process(es): [bold]{result.frames_per_second:.0f} frames/s[/bold]"
        )
    rows = result.summary.get("by_scenario", {})
    table = Table(title="episodes per scenario")
    for col in ("scenario", "episodes", "success rate", "failures", "splits"):
        table.add_column(col)
    for name, row in sorted(rows.items()):
        splits = ", ".join(f"{k}:{v}" for k, v in sorted(row.get("splits", {}).items()))
        table.add_row(
            name,
            str(row["episodes"]),
            f"{row['success_rate']:.0%}",
            str(row.get("failures", "")),
            splits,
        )
    console.print(table)


def _first_per_scenario(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for rec in records:
        key = rec["scenario"]
        best = seen.get(key)
        # Prefer an episode whose shift starts mid-episode: the preview then shows the onset.
        if best is None or (best.get("onset") is None and rec.get("onset") is not None):
            seen[key] = rec
    order = [ID_SCENARIO] + sorted(k for k in seen if k != ID_SCENARIO)
    return [seen[k] for k in order if k in seen]


def write_dataset_preview(root: Path, path: Path) -> Path:
    """Preview PNG of a generated dataset: one episode per scenario, shift masks overlaid."""
    from world_monitor.data.dataset import EpisodeDataset
    from world_monitor.sim.preview import save_preview

    ds = EpisodeDataset(root)
    chosen = _first_per_scenario(ds.index)
    episodes = [ds.load(rec["id"]) for rec in chosen]
    save_preview(episodes, path)
    return path


def write_scenario_preview(
    cfg: DictConfig, path: Path, *, onset: int | None = None, seed: int = 0
) -> Path:
    """Preview PNG straight from the simulator: one episode per registered scenario."""
    from world_monitor.sim import list_scenarios
    from world_monitor.sim.preview import save_preview

    sim_cfg = sim_config_from(cfg)
    policy, noise = str(cfg.sim.policy), cfg.sim.get("policy_noise")
    episodes = []
    for name in list_scenarios():
        spec = EpisodeSpec(
            f"preview-{name}", name, seed, "test", None, None if name == ID_SCENARIO else onset
        )
        episodes.append(_simulate_spec(spec, sim_cfg, policy, noise))
    save_preview(episodes, path)
    LOG.info("preview of %d scenarios written to %s", len(episodes), path)
    return path
