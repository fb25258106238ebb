"""The severity sweep of ``world-monitor evaluate``: how detection changes as a shift weakens or
strengthens.

Why re-simulate rather than draw new episodes: each chosen shifted test episode of the dataset is
simulated again with the same scenario, seed, onset and policy at every other severity, so a cell
of the table differs from the default-severity row only by the severity (a paired comparison),
and it is scored against the very in-distribution test episodes of the main table. That needs
the simulator settings the dataset was made with, which ``world-monitor simulate`` stores as
``simulate_config.yaml``; a dataset made any other way (e.g. from the user's own recordings)
cannot be swept, and ``evaluate`` says so instead of guessing.

This module plans, simulates and presents the sweep; scoring and metrics are evaluate's own
(:func:`world_monitor.runtime.evaluate.evaluate_bundle`), so every cell means what the main table
means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from world_monitor.data.generate import (
    EpisodeSpec,
    GenerationResult,
    sim_config_from,
    simulate_specs,
)

__all__ = [
    "DEFAULT_SEVERITIES",
    "SIMULATE_CONFIG",
    "can_sweep",
    "require_sweepable",
    "format_severity_markdown",
    "parse_severities",
    "plot_severity",
    "simulate_sweep",
    "sweep_specs",
]

#: Severities swept by default (each family's default severity is the main table's row).
DEFAULT_SEVERITIES: tuple[float, ...] = (0.25, 0.5, 1.0)
#: What ``world-monitor simulate`` writes next to a dataset: the settings a sweep re-uses.
SIMULATE_CONFIG = "simulate_config.yaml"


def parse_severities(text: str) -> tuple[float, ...]:
    """``"0.25,0.5,1"`` -> (0.25, 0.5, 1.0); ``"none"`` -> (); each in (0, 1], no repeats."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--severities {text!r}: comma-separated numbers in (0, 1]") from None
    bad = [v for v in values if not (math.isfinite(v) and 0.0 < v <= 1.0)]
    if bad:
        raise ValueError(f"--severities {text!r}: {bad} not in (0, 1]")
    if len(set(values)) != len(values):
        raise ValueError(f"--severities {text!r}: repeated values")
    return tuple(sorted(values))


def can_sweep(data: str | Path) -> bool:
    """Whether ``data`` records the simulator settings a sweep needs."""
    return (Path(data) / SIMULATE_CONFIG).is_file()


def require_sweepable(data: str | Path) -> Path:
    """The dataset's ``simulate_config.yaml``, or a ValueError saying why a sweep is impossible
    (one message for the CLI, ``evaluate_bundle``'s up-front check and :func:`simulate_sweep`)."""
    path = Path(data) / SIMULATE_CONFIG
    if not path.is_file():
        raise ValueError(
            f"{data}: a severity sweep re-simulates the dataset's test episodes and needs "
            f"{path} (written by `world-monitor simulate`); pass --severities none"
        )
    return path


def sweep_specs(
    records: Sequence[Mapping[str, Any]], severities: Sequence[float]
) -> list[EpisodeSpec]:
    """One spec per (severity, shifted record): same scenario, seed and onset, new severity.

    The id keeps the original's and appends the severity, so a swept episode can always be traced
    back to the main table's episode it was made from.
    """
    specs = []
    for sev in severities:
        for rec in records:
            if rec.get("shift") is None:
                raise ValueError(f"{rec['id']}: an in-distribution episode has no severity")
            specs.append(
                EpisodeSpec(
                    f"{rec['id']}-sev{sev:g}",
                    str(rec["scenario"]),
                    int(rec["seed"]),
                    "test",
                    float(sev),
                    None if rec.get("onset") is None else int(rec["onset"]),
                )
            )
    return specs


def simulate_sweep(
    data: str | Path,
    records: Sequence[Mapping[str, Any]],
    severities: Sequence[float],
    root: str | Path,
    *,
    workers: int = 0,
    progress: bool = True,
) -> GenerationResult:
    """Simulate the sweep's episodes into the dataset ``root`` (episodes already there are kept:
    the simulator is deterministic per seed, so a re-run only adds what is missing)."""
    cfg = OmegaConf.load(require_sweepable(data))
    return simulate_specs(
        sweep_specs(records, severities),
        Path(root),
        sim_config_from(cfg),
        policy=str(cfg.sim.policy),
        policy_noise=cfg.sim.get("policy_noise"),
        workers=workers,
        progress=progress,
    )


def _cell(entry: Mapping[str, Any] | None) -> str:
    if not entry or entry.get("auroc") is None:
        return "—"
    stop = entry["tpr_at_stop"]
    return f"{entry['auroc']:.2f} (STOP {stop['k']}/{stop['n']})"


def format_severity_markdown(sweep: Mapping[str, Any]) -> list[str]:
    """The by-severity table: episode AUROC of the risk (and STOPs) per family and severity."""
    sevs = [f"{s:g}" for s in sweep["severities"]]
    lines = [
        "| family | " + " | ".join(f"severity {s}" for s in sevs) + " | default severity |",
        "|" + "---|" * (len(sevs) + 2),
    ]
    for fam, row in sweep["families"].items():
        default = row.get("default") or {}
        label = f"{_cell(default)} @ {default.get('severity', '?')}" if default else "—"
        lines.append(f"| {fam} | " + " | ".join(_cell(row.get(s)) for s in sevs) + f" | {label} |")
    return lines


def plot_severity(sweep: Mapping[str, Any], path: str | Path) -> str:
    """Episode AUROC against severity, one line per family (the default severity marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    lowest = 0.3
    for fam, row in sweep["families"].items():
        points = [
            (float(s), row[f"{s:g}"]["auroc"])
            for s in sweep["severities"]
            if row.get(f"{s:g}") and row[f"{s:g}"].get("auroc") is not None
        ]
        default = row.get("default")
        if default and default.get("auroc") is not None:
            points.append((float(default["severity"]), default["auroc"]))
        points.sort()
        if not points:
            continue
        lowest = min(lowest, *(p[1] - 0.05 for p in points))
        (line,) = ax.plot([p[0] for p in points], [p[1] for p in points], "-o", ms=3, label=fam)
        if default and default.get("auroc") is not None:
            ax.plot(
                default["severity"], default["auroc"], "s", ms=7, mfc="none", color=line.get_color()
            )
    ax.axhline(0.9, color="0.6", lw=0.8, ls="--")
    ax.set(
        xlabel="shift severity (square: the family's default)",
        ylabel="episode AUROC of the risk",
        title="detection by severity",
        xlim=(0, 1.05),
        ylim=(max(0.0, lowest), 1.02),
    )
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
