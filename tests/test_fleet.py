"""Fleet replay: the same bags replayed in this process, on a local process pool and on a local
Ray cluster give the same summaries (minus wall-clock latencies), in the order given; a bag
that fails is reported and the others go on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from world_monitor.data.bag import export_episode_bag
from world_monitor.defaults import default_bundle
from world_monitor.fleet import LOCAL, run_tasks
from world_monitor.replay.many import fleet_summary, replay_bags
from world_monitor.runtime.monitor import load_monitor
from world_monitor.sim import simulate_episode


def without_wall_clock(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {
            k: without_wall_clock(v)
            for k, v in doc.items()
            if "latency" not in k and k not in ("bag", "out")
        }
    if isinstance(doc, list):
        return [without_wall_clock(v) for v in doc]
    return doc


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path, Any]:
    base = tmp_path_factory.mktemp("fleet")
    bags = []
    for i, (scenario, seed, onset) in enumerate(
        [
            ("in_distribution", 3_000_010, None),
            ("lighting", 4_000_010, 20),
            ("dynamics", 4_000_011, 15),
        ]
    ):
        ep = simulate_episode(scenario, seed, onset=onset)
        bags.append(export_episode_bag(ep, base / "bags" / f"{i}_{scenario}", chunk_every="policy"))
    engines = base / "engines"
    monitor = load_monitor(default_bundle(), "onnxruntime", engines_dir=engines)  # exports once
    return bags, engines, monitor


def _run(fleet: Any, tmp: Path, **kw: Any) -> list[Any]:
    bags, engines, monitor = fleet
    if kw.get("workers", 1) == 1 and "ray_address" not in kw:
        return replay_bags(bags, tmp, monitor=monitor, **kw)
    return replay_bags(
        bags, tmp, bundle=default_bundle(), backend="onnxruntime", engines_dir=engines, **kw
    )


def test_a_process_pool_replays_like_one_process(fleet: Any, tmp_path: Path) -> None:
    ref = _run(fleet, tmp_path / "one")
    par = _run(fleet, tmp_path / "two", workers=2)
    assert [r.bag for r in par] == [str(b) for b in fleet[0]]
    assert all(r.error is None for r in ref + par)
    assert [without_wall_clock(r.summary) for r in par] == [
        without_wall_clock(r.summary) for r in ref
    ]
    assert sum(r.summary["session"]["counts"]["assessments"] for r in ref) > 0
    assert [Path(r.out).name for r in par] == [b.name for b in fleet[0]]


def test_a_local_ray_cluster_replays_like_one_process(fleet: Any, tmp_path: Path) -> None:
    ref = _run(fleet, tmp_path / "one")
    ray = _run(fleet, tmp_path / "ray", workers=2, ray_address=LOCAL)
    assert [r.bag for r in ray] == [str(b) for b in fleet[0]]
    assert [without_wall_clock(r.summary) for r in ray] == [
        without_wall_clock(r.summary) for r in ref
    ]


def test_a_bad_bag_is_reported_and_the_others_go_on(fleet: Any, tmp_path: Path) -> None:
    bags, _, monitor = fleet
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text("not: a rosbag2 metadata file\n")
    results = replay_bags([bags[0], broken, bags[1]], tmp_path / "out", monitor=monitor)
    assert [r.error is None for r in results] == [True, False, True]
    assert "BagError" in results[1].error
    doc = fleet_summary(results, seconds=1.0)
    assert doc["totals"]["bags"] == 3 and doc["totals"]["failed"] == 1
    assert doc["totals"]["decisions"] == sum(
        r.summary["session"]["counts"]["decisions"] for r in results if r.summary
    )


def _double(x: int) -> int:
    return 2 * x


def _nothing() -> None:
    return None


def test_run_tasks_keeps_the_task_order() -> None:
    got: list[int] = []
    assert run_tasks(_nothing, (), _double, [3, 1, 2], on_result=got.append) == [6, 2, 4]
    assert got == [6, 2, 4]
    assert run_tasks(_nothing, (), _double, []) == []
