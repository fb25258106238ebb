"""Your own recordings: labels (shift, onset, severity, success) and ``--split auto`` on import
(issue 15 items 1 and 2). Before: every imported episode went to ``test`` and train failed with
"the train split has no in-distribution episodes"; a recorded shift could not be labelled."""

from __future__ import annotations

import json

import pytest

from world_monitor import cli
from world_monitor.data.bag import export_episode_bag, import_paths
from world_monitor.data.dataset import EpisodeDataset, assign_splits, split_counts
from world_monitor.data.labels import LabelError, load_labels


def _bags(tmp_path, make_ep, n: int, prefix: str = "run"):
    """``n`` foreign-looking recordings: no episode-meta topic (as from another robot)."""
    out = []
    for i in range(n):
        path = tmp_path / "bags" / f"{prefix}_{i:03d}"
        out.append(export_episode_bag(make_ep(i, length=12), path, write_meta=False))
    return out


def test_csv_and_yaml_labels_parse_to_the_same_rows(tmp_path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "bag,shift,onset_s,severity,success,failure_s,scenario\n"
        "run_001,lights_off,0.45,1.0,false,0.9,\n"
        "run_002,,,,true,,kitchen\n"
    )
    yml = tmp_path / "labels.yaml"
    yml.write_text(
        "run_001: {shift: lights_off, onset_s: 0.45, severity: 1.0, success: false,"
        " failure_s: 0.9}\nrun_002: {success: true, scenario: kitchen}\n"
    )
    a, b = load_labels(csv), load_labels(yml)
    assert a == b
    assert a["run_001"].shift == "lights_off" and a["run_001"].onset_s == 0.45
    assert a["run_002"].shift is None and a["run_002"].success is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bag,shift,when\nr1,x,1\n", r"unknown column\(s\) \['when'\]"),
        ("bag,shift,onset_s\nr1,x,soon\n", "onset_s 'soon' is not a number"),
        ("bag,shift,onset_s\nr1,x,-1\n", "onset_s must be a finite number >= 0"),
        ("bag,success\nr1,maybe\n", "success 'maybe' is not true/false"),
        ("bag,shift\nr1,x\nr1,y\n", "bag 'r1' is labelled twice"),
        ("bag,onset_s\nr1,2\n", "onset_s/severity given without a shift name"),
        ("bag,shift\n,x\n", "'bag' is empty"),
        ("bag,shift\nr0,x\nr1,y,3\n", "row 3: more cells than the header"),
    ],
)
def test_a_bad_row_is_named(tmp_path, text, message) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(LabelError, match=message) as err:
        load_labels(path)
    assert "labels.csv: row 2" in str(err.value) or "row 3" in str(err.value)


def test_labels_become_shift_onset_severity_and_success(tmp_path, make_ep) -> None:
    bags = _bags(tmp_path, make_ep, 2)
    labels_file = tmp_path / "labels.csv"
    labels_file.write_text(
        "bag,shift,onset_s,severity,success\nrun_001,lights_off,0.45,0.8,false\n"
    )
    summary = import_paths(bags, tmp_path / "ds", labels=load_labels(labels_file), progress=False)
    assert summary["imported"] == 2 and summary["labelled"] == 1
    assert summary["unlabelled"] == ["run_000"]
    ds = EpisodeDataset(tmp_path / "ds")
    shifted = ds.load("run_001").meta
    assert (shifted.shift, shifted.severity, shifted.success) == ("lights_off", 0.8, False)
    assert shifted.shift_onset == 5  # frames 0.1 s apart: 0.45 s -> the first frame at >= 0.45
    assert shifted.extra["success_known"] is True
    assert ds.load("run_000").meta.shift is None


def test_a_label_for_a_bag_not_imported_is_an_error_before_any_work(tmp_path, make_ep) -> None:
    bags = _bags(tmp_path, make_ep, 1)
    path = tmp_path / "labels.csv"
    path.write_text("bag,shift\nrun_000,x\nrun_999,y\n")
    with pytest.raises(LabelError, match=r"not being imported: \['run_999'\]"):
        import_paths(bags, tmp_path / "ds", labels=load_labels(path), progress=False)
    assert not (tmp_path / "ds").exists()


def test_a_labelled_shift_is_never_filed_under_train(tmp_path, make_ep) -> None:
    bags = _bags(tmp_path, make_ep, 1)
    path = tmp_path / "labels.csv"
    path.write_text("bag,shift\nrun_000,x\n")
    with pytest.raises(LabelError, match="never filed under 'train'"):
        import_paths(bags, tmp_path / "ds", split="train", labels=load_labels(path))


def test_an_onset_after_the_last_frame_fails_that_bag_by_name(tmp_path, make_ep) -> None:
    bags = _bags(tmp_path, make_ep, 2)
    path = tmp_path / "labels.csv"
    path.write_text("bag,shift,onset_s\nrun_001,x,30\n")
    summary = import_paths(bags, tmp_path / "ds", labels=load_labels(path), progress=False)
    assert summary["imported"] == 1 and summary["failed"] == 1
    assert "onset_s 30 s is after the episode's last frame" in next(
        iter(summary["errors"].values())
    )


def test_split_counts_raise_calib_to_what_the_rate_needs_when_the_data_allow_it() -> None:
    assert split_counts(1000, min_calib=98) == {"train": 700, "val": 100, "calib": 100, "test": 100}
    assert split_counts(200, min_calib=98) == {"train": 80, "val": 11, "calib": 98, "test": 11}
    # too few: at most half goes to calib, the rest keeps its proportions
    assert split_counts(40, min_calib=98) == {"train": 16, "val": 2, "calib": 20, "test": 2}
    assert split_counts(10) == {"train": 7, "val": 1, "calib": 1, "test": 1}


def test_assign_splits_is_seeded_by_episode_and_holds_shifts_out() -> None:
    ids = [f"e{i}" for i in range(30)]
    shifts = [None] * 28 + ["fog", "fog"]
    a = assign_splits(ids, shifts=shifts, seed=3, min_calib=10)
    assert a == assign_splits(
        list(reversed(ids)), shifts=list(reversed(shifts)), seed=3, min_calib=10
    )
    assert a["e28"] == a["e29"] == "test"
    assert sum(v == "calib" for v in a.values()) == 10


def test_import_bag_split_auto_and_labels_from_the_cli(tmp_path, make_ep, capsys) -> None:
    bags = _bags(tmp_path, make_ep, 12)
    labels = tmp_path / "labels.yaml"
    labels.write_text("- {bag: run_010, shift: fog, onset_s: 0.3}\n- {bag: run_011, shift: fog}\n")
    rc = cli.main(
        [
            "import-bag",
            *map(str, bags),
            "--out",
            str(tmp_path / "ds"),
            "--split",
            "auto",
            "--labels",
            str(labels),
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "ds" / "import_summary.json").read_text())
    assert "imported 12 episode(s)" in printed and len(printed.splitlines()) <= 4
    assert rc == 0 and summary["imported"] == 12 and summary["labelled"] == 2
    # 10 in-distribution: calib raised to half (5) for the default 2 % rate, the rest 70/10/10
    assert summary["splits"] == {"calib": 5, "test": 2, "train": 4, "val": 1}
    ds = EpisodeDataset(tmp_path / "ds")
    assert {r.split for r in ds.index if r.shift == "fog"} == {"test"}
    assert len(ds.select(split="train", shift=None)) == 4
    rc = cli.main(
        ["import-bag", str(bags[0]), "--out", str(tmp_path / "d2"), "--labels", str(labels)]
    )
    assert rc == 2 and "not being imported" in capsys.readouterr().err
