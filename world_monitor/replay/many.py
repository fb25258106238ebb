"""Replay many bags: one after another, on a local process pool, or on a Ray cluster.

Why: auditing a fleet's recordings is thousands of independent replays. Each worker loads the
monitor once (:mod:`world_monitor.fleet`) and replays bags with exactly
:func:`~world_monitor.replay.replay.replay_bag`, so a bag's summary is the same whichever worker
replayed it (the only wall-clock numbers in it are the monitor's latencies). A bag that cannot
be replayed (unreadable, does not fit the bundle) is reported with its one-line error and the
others go on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from world_monitor.fleet import run_tasks

__all__ = ["BagReplay", "fleet_summary", "replay_bags", "replay_out_paths"]

#: what a worker prepared (its monitor and replay options): set by :func:`_setup`
_WORKER: dict[str, Any] = {}


@dataclass
class BagReplay:
    """One bag's outcome: its summary (None when it failed) or the error that stopped it."""

    bag: str
    out: str | None
    summary: dict[str, Any] | None
    perf: dict[str, Any]
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "bag": self.bag,
            "out": self.out,
            "error": self.error,
            "summary": self.summary,
            "perf": self.perf,
        }


def replay_out_paths(bags: Sequence[Path], out: Path | None) -> list[Path | None]:
    """Where each bag's replay goes: ``OUT/<bag name>`` with an ``out`` directory (names made
    unique), else next to the bag (``replay_bag``'s default, ``None``)."""
    if out is None:
        return [None] * len(bags)
    taken: set[str] = set()
    paths: list[Path | None] = []
    for bag in bags:
        base = bag.stem if bag.is_file() else bag.name
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}-{k}"
        taken.add(name)
        paths.append(out / name)
    return paths


def _setup(
    bundle: str | None,
    backend: str | None,
    engines_dir: str | None,
    threads: int,
    options: Mapping[str, Any],
    monitor: Any = None,
) -> None:
    """Per worker: load the monitor once (or take the given one, in this process)."""
    if monitor is None:
        import torch

        from world_monitor.runtime.monitor import load_monitor

        # a worker process shares the cores with its siblings: torch's small ops (the
        # rollout's sigmoid, action layout) on one thread, as evaluate-policy's workers
        torch.set_num_threads(1)

        monitor = load_monitor(bundle, backend, engines_dir=engines_dir)  # type: ignore[arg-type]
    _WORKER.update(monitor=monitor, threads=int(threads), options=dict(options))


def _replay_one(task: tuple[str, str | None]) -> BagReplay:
    return _replay_with(_WORKER, task)


def _replay_with(worker: Mapping[str, Any], task: tuple[str, str | None]) -> BagReplay:
    from world_monitor.data.bag import BagError
    from world_monitor.data.frame_prep import FramePrepError
    from world_monitor.replay.fit import BundleMismatch
    from world_monitor.replay.replay import replay_bag

    bag, out = task
    try:
        result = replay_bag(
            Path(bag),
            None if out is None else Path(out),
            monitor=worker["monitor"],
            threads=worker["threads"],
            progress=False,
            **worker["options"],
        )
    except (BagError, BundleMismatch, FramePrepError, ValueError) as exc:
        return BagReplay(bag, out, None, {}, error=f"{type(exc).__name__}: {exc}")
    return BagReplay(
        bag,
        None if result.bag_path is None else str(result.bag_path),
        result.summary,
        result.perf,
    )


def replay_bags(
    bags: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    bundle: str | Path | None = None,
    backend: str | None = None,
    engines_dir: str | Path | None = None,
    monitor: Any = None,
    workers: int = 1,
    ray_address: str | None = None,
    threads: int | None = None,
    on_result: Callable[[BagReplay], None] | None = None,
    **options: Any,
) -> list[BagReplay]:
    """Replay every bag (options as :func:`~world_monitor.replay.replay.replay_bag`'s).

    ``workers`` processes (or Ray actors with ``ray_address``) each load the monitor; a given
    ``monitor`` is used only in this process (``workers=1``, no Ray). ``threads``: look-ahead
    threads per worker (default: this machine's cores shared among the local workers; 1 per
    Ray actor, which Ray gives one CPU).
    (Replaying two bags at once in threads of one process was measured and gained nothing on
    2 cores: 20.36x vs 20.35x real time per chunk, ``benchmarks/replay.py``; not kept.)
    """
    paths = [Path(b) for b in bags]
    outs = replay_out_paths(paths, None if out is None else Path(out))
    tasks = [(str(b), None if o is None else str(o)) for b, o in zip(paths, outs, strict=True)]
    n = max(1, min(int(workers), len(tasks)))
    if threads is None:
        from world_monitor.replay.replay import default_replay_threads

        threads = 1 if ray_address is not None else max(1, default_replay_threads() // n)
    local = ray_address is None and n == 1
    if monitor is not None and not local:
        raise ValueError("a ready monitor replays in this process only (workers=1, no Ray)")
    if bundle is None and monitor is None:
        raise ValueError("replay_bags needs bundle=... or monitor=...")
    if local and monitor is None:
        from world_monitor.runtime.monitor import load_monitor

        monitor = load_monitor(bundle, backend, engines_dir=engines_dir)  # type: ignore[arg-type]
    setup_args = (
        None if bundle is None else str(bundle),
        backend,
        None if engines_dir is None else str(engines_dir),
        int(threads),
        options,
        monitor,
    )
    return run_tasks(
        _setup,
        setup_args,
        _replay_one,
        tasks,
        workers=n,
        ray_address=ray_address,
        on_result=on_result,
    )


def fleet_summary(results: Sequence[BagReplay], seconds: float) -> dict[str, Any]:
    """Totals over the bags (what a fleet audit looks at first) and one line per bag."""
    rows = []
    tot = {"bags": len(results), "failed": 0, "decisions": 0, "alerts": 0, "stops": 0}
    recorded = 0.0
    for r in results:
        if r.summary is None:
            tot["failed"] += 1
            rows.append({"bag": r.bag, "error": r.error})
            continue
        s = r.summary
        alerts = s["session"].get("alerts", [])
        stops = sum(1 for a in alerts if a.get("decision") == "STOP")
        duration = s["clock"].get("duration") or 0.0
        recorded += float(duration)
        tot["decisions"] += int(s["session"]["counts"].get("decisions", 0))
        tot["alerts"] += len(alerts)
        tot["stops"] += stops
        rows.append(
            {
                "bag": r.bag,
                "out": r.out,
                "recorded_s": duration,
                "decisions": int(s["session"]["counts"].get("decisions", 0)),
                "alerts": len(alerts),
                "stops": stops,
                "final_lock": bool(s["lock"]["final"]),
                "accounted": bool(s["messages"]["accounted"]),
            }
        )
    tot["recorded_s"] = recorded
    tot["seconds"] = seconds
    tot["x_real_time"] = recorded / seconds if seconds > 0 else None
    tot["cpu_count"] = os.cpu_count()
    return {"totals": tot, "bags": rows}
