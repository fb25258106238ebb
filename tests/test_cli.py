"""The `world-monitor` command line, driven as a user would (through `main(argv)`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from world_monitor.cli import build_parser, main
from world_monitor.data import EpisodeDataset

TINY = [
    "sim=small",
    "sim.episode_length=12",
    "data.splits.train=2",
    "data.splits.val=1",
    "data.splits.calib=1",
    "data.splits.test=1",
    "data.shift_test_per_family=1",
    "data.onset_range=[3,6]",
    "data.mid_onset_fraction=1.0",
]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "ds"
    rc = main(["simulate", "--out", str(root), "--workers", "1", "--no-progress", *TINY])
    assert rc == 0
    return root


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {
        "simulate",
        "preview",
        "inspect",
        "export-bag",
        "import-bag",
        "train",
        "evaluate-model",
        "calibrate",
        "evaluate",
        "export",
        "replay",
        "evaluate-policy",
        "demo",
        "report",
    } <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: world-monitor" in capsys.readouterr().out


def test_simulate_writes_every_planned_episode(tiny_dataset: Path) -> None:
    ds = EpisodeDataset(tiny_dataset)
    summary = ds.summary()
    assert len(ds) == 5 + 7  # 5 in-distribution + one per shift family
    assert (tiny_dataset / "simulate_config.yaml").is_file()
    shifted = [r for r in ds.index if r.shift is not None]
    assert all(r.onset is not None and 3 <= r.onset <= 6 for r in shifted)
    assert summary["by_scenario"]["in_distribution"]["episodes"] == 5


def test_simulate_resumes_without_regenerating(tiny_dataset: Path) -> None:
    victim = next((tiny_dataset / "episodes").iterdir())
    before = np.load(victim / "frames.npy")
    (victim / "frames.npy").unlink()
    (victim / "meta.json").unlink()  # incomplete episode -> must be regenerated identically
    mtimes = {
        p.name: (p / "meta.json").stat().st_mtime_ns
        for p in (tiny_dataset / "episodes").iterdir()
        if p != victim
    }
    rc = main(["simulate", "--out", str(tiny_dataset), "--workers", "1", "--no-progress", *TINY])
    assert rc == 0
    assert np.array_equal(np.load(victim / "frames.npy"), before)
    for name, mtime in mtimes.items():
        assert (tiny_dataset / "episodes" / name / "meta.json").stat().st_mtime_ns == mtime


def test_inspect_dataset_json(tiny_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tiny_dataset), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "dataset"
    assert report["episodes"] == 12


def test_bag_round_trip_through_cli(tiny_dataset: Path, tmp_path: Path) -> None:
    bags = tmp_path / "bags"
    assert (
        main(["export-bag", str(tiny_dataset), str(bags), "--split", "test", "--no-progress"]) == 0
    )
    written = sorted(p for p in bags.iterdir() if p.is_dir())
    assert len(written) == 8  # 1 in-distribution test episode + 7 shift episodes
    out = tmp_path / "imported"
    assert main(["import-bag", *map(str, written), "--out", str(out), "--no-progress"]) == 0
    original = EpisodeDataset(tiny_dataset)
    imported = EpisodeDataset(out)
    assert len(imported) == len(written)
    by_seed = {
        (original[i].meta.scenario, original[i].meta.seed): original[i]
        for i in range(len(original))
    }
    for i in range(len(imported)):
        ep = imported[i]
        assert ep.equals(by_seed[(ep.meta.scenario, ep.meta.seed)])


def test_inspect_bag_counts_every_message(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bags = tmp_path / "bags"
    main(
        [
            "export-bag",
            str(tiny_dataset),
            str(bags),
            "--limit",
            "1",
            "--storage",
            "sqlite3",
            "--no-progress",
        ]
    )
    capsys.readouterr()
    bag = next(p for p in bags.iterdir() if p.is_dir())
    assert main(["inspect", str(bag), "--json", "--strict"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accounted"] is True
    assert report["rejected_total"] == 0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["simulate", "data=nope"], "Could not find 'data/nope'"),
        (["inspect", "/nonexistent/path"], "/nonexistent/path"),
        (["simulate", "sim.image_size=8", "--out", "/tmp/never"], "image_size"),
        # hydra's message has a hint on a second line: still one line (issue 18)
        (["simulate", "foo.bar=1", "--out", "/tmp/never"], "To append to your config use"),
    ],
)
def test_user_errors_are_one_clear_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_corrupt_bag_is_a_clear_error(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bags = tmp_path / "bags"
    main(["export-bag", str(tiny_dataset), str(bags), "--limit", "1", "--no-progress"])
    bag = next(p for p in bags.iterdir() if p.is_dir())
    mcap = next(bag.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    capsys.readouterr()
    rc = main(["import-bag", str(bag), "--out", str(tmp_path / "x"), "--no-progress"])
    captured = capsys.readouterr()
    assert rc != 0
    assert "Traceback" not in captured.err
    assert bag.name in captured.out + captured.err


def test_preview_png(tmp_path: Path) -> None:
    out = tmp_path / "p.png"
    assert (
        main(["preview", "--out", str(out), "--onset", "4", "sim=small", "sim.episode_length=8"])
        == 0
    )
    from PIL import Image

    img = Image.open(out)
    assert img.size[1] > img.size[0] / 2  # one row per scenario (8 rows)


def test_policy_evaluation_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad policies/scenarios, an occupied run directory and a non-run directory: one line, 2."""
    out = tmp_path / "run"
    cases = [
        (["evaluate-policy", "--out", str(out), "--policies", "scripted,nope"], "--policies"),
        (["demo", "--out", str(out), "--scenarios", "moon"], "unknown scenarios"),
        (["evaluate-policy", "--out", str(out), "--onsets", "later"], "onsets"),
        (["report", str(tmp_path / "missing")], "no such run directory"),
        (["report", str(tmp_path)], "run.json"),
        (["report", str(tmp_path / "missing"), "--serve", "--host", "0.0.0.0"], "no such run"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["demo", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_replay_many_bags_writes_one_output_each_and_a_fleet_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from world_monitor.data.bag import export_episode_bag
    from world_monitor.sim import simulate_episode

    bags = [
        export_episode_bag(
            simulate_episode(scenario, seed), tmp_path / "bags" / scenario, chunk_every="policy"
        )
        for scenario, seed in (("in_distribution", 3_000_020), ("lighting", 4_000_020))
    ]
    out = tmp_path / "out"
    argv = ["replay", *map(str, bags), "--out", str(out), "--no-progress", "--threads", "2"]
    assert main([*argv, "--backend", "onnxruntime"]) == 0
    printed = capsys.readouterr().out
    assert "replayed 2 of 2 bags on 1 process(es)" in printed
    doc = json.loads((out / "fleet.json").read_text())
    assert [Path(r["bag"]).name for r in doc["bags"]] == ["in_distribution", "lighting"]
    for row in doc["bags"]:
        assert (Path(row["out"]) / "summary.json").is_file() and row["accounted"]
    assert doc["totals"]["decisions"] == sum(r["decisions"] for r in doc["bags"]) > 0
    # a bag that is not there: one line, exit 2, nothing replayed
    assert main(["replay", str(bags[0]), str(tmp_path / "nope"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no such bag" in err and len(err.strip().splitlines()) == 1


def test_export_bag_chunk_every_policy_publishes_at_the_re_plan_rate(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bags = tmp_path / "bags"
    argv = ["export-bag", str(tiny_dataset), str(bags), "--limit", "1", "--no-progress"]
    assert main([*argv, "--chunk-every", "3"]) == 0
    bag = next(p for p in bags.iterdir() if p.is_dir())
    capsys.readouterr()
    assert main(["inspect", str(bag), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    length = EpisodeDataset(tiny_dataset)[0].length
    assert report["topics"]["/policy/action_chunk"]["messages"] == -(-length // 3)
    assert report["topics"]["/camera/image_raw"]["messages"] == length
    with pytest.raises(SystemExit) as bad:
        main([*argv, "--chunk-every", "0"])
    assert bad.value.code == 2
