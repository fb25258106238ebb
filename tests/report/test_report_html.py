"""The static policy-evaluation report: content, escaping, links, validation, determinism.

Why these checks: the report is the artifact people read to decide whether a policy + monitor
is fit to deploy, so its numbers must be the summary's numbers, its links must work from where
the pages live (served or opened from disk), user-controlled strings must never become markup,
and a broken run directory must fail loudly instead of producing a half-empty page.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from world_monitor.report.html import build_report

ODD_ID = "diffusion unseen#1 gated"


def _rate_text(r: dict) -> str:
    return f"{r['rate']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}] ({r['k']}/{r['n']})"


def _pages(report: Path) -> list[Path]:
    return sorted(report.rglob("*.html"))


def _check_links(report: Path, allowed_root: Path, page) -> int:
    """Every href/src of every page is relative, resolves to an existing file inside
    ``allowed_root``; returns how many references were checked."""
    checked = 0
    for html_path in _pages(report):
        parsed = page(html_path)
        refs = parsed.links + [i.get("src") or "" for i in parsed.images]
        for ref in refs:
            if ref.startswith("#"):
                continue
            parts = urlsplit(ref)
            assert not parts.scheme and not parts.netloc, f"{html_path.name}: absolute {ref}"
            assert not parts.path.startswith("/"), f"{html_path.name}: root-relative {ref}"
            target = (html_path.parent / unquote(parts.path)).resolve()
            assert target.is_file(), f"{html_path.name}: {ref} -> {target} missing"
            assert target.is_relative_to(allowed_root.resolve()), f"{ref} escapes {allowed_root}"
            checked += 1
    return checked


def test_summary_table_matches_summary_json(built_run_dir: Path, page) -> None:
    summary = json.loads((built_run_dir / "summary.json").read_text())
    index = page(built_run_dir / "report" / "index.html")
    rows = index.tables["summary"]
    assert len(rows) == len(summary["rows"]) == 6
    for got, want in zip(rows, summary["rows"], strict=True):
        assert got[0] == want["policy"] and got[1] == want["scenario"]
        assert got[2] == str(want["n"])
        assert got[3] == _rate_text(want["success_ungated"])
        assert got[4] == _rate_text(want["success_gated"])
        if want["failures_prevented"]["n"]:
            assert got[10] == _rate_text(want["failures_prevented"])
        else:
            assert got[10] == "— (0/0)"
    # null mean lead time and null latency are shown as a dash, not "None" / "nan"
    text = "".join(index.text)
    assert "None" not in text and "nan" not in text
    lighting = [r for r in rows if r[1] == "lighting"]
    assert all(r[14] == "—" for r in lighting)
    # acceptance checklist and detection table come from summary.json
    assert "2/3 checks passed" in text
    assert [r[0] for r in index.tables["detection"]] == ["lighting", "unseen_object"]
    assert index.tables["detection"][1][2] == "—"
    assert len(index.tables["episodes"]) == 24


def test_json_strings_are_escaped(built_run_dir: Path) -> None:
    report = built_run_dir / "report"
    for html_path in _pages(report):
        text = html_path.read_text(encoding="utf-8")
        assert "<script" not in text.lower(), html_path
        assert "<b>" not in text and "<object>" not in text, html_path
    index = (report / "index.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in index
    assert "&lt;b&gt;over&lt;/b&gt;" in index


def test_links_resolve_inside_run_dir(built_run_dir: Path, page) -> None:
    report = built_run_dir / "report"
    assert _check_links(report, built_run_dir, page) > 24 * 2
    assert not any(report.rglob("*.mcap")), "recordings are linked in place, not copied"
    # the odd id gets a safe page name and a quoted, working link from the index
    index = page(report / "index.html")
    odd = [h for h in index.links if "unseen_1" in h]
    assert odd == ["episodes/diffusion_unseen_1_gated.html"] * len(odd) and odd
    ep = page(report / "episodes" / "scripted_in_distribution_s0_open.html")
    mcap = [h for h in ep.links if h.endswith(".mcap")]
    assert mcap == ["../../episodes/scripted_in_distribution_s0_open.mcap"]
    assert "scripted_in_distribution_s0_gated.html" in ep.links  # paired episode
    odd_page = page(report / "episodes" / "diffusion_unseen_1_gated.html")
    assert "../../episodes/diffusion%20unseen%231%20gated.mcap" in odd_page.links
    assert [i["src"] for i in odd_page.images] == [
        "diffusion_unseen_1_gated_timeline.png",
        "diffusion_unseen_1_gated.webp",
    ]


def test_missing_or_escaping_recordings_are_not_linked(built_run_dir: Path, page) -> None:
    episodes = built_run_dir / "report" / "episodes"
    for name in (
        "scripted_lighting_s0_open",  # mcap null
        "scripted_unseen_object_s0_open",  # named file missing
        "scripted_unseen_object_s1_open",  # ../../outside.mcap
    ):
        parsed = page(episodes / f"{name}.html")
        assert not [h for h in parsed.links if h.endswith(".mcap")], name
        assert "no strip" in "".join(parsed.text)


def test_report_outside_run_dir_copies_what_it_links(synthetic_run_dir: Path, page) -> None:
    for p in (synthetic_run_dir / "episodes").glob("*.json"):  # 4 episodes keep it fast
        if "_lighting_s1_" not in p.name:
            p.unlink()
    out = synthetic_run_dir.parent / "elsewhere" / "site"
    index = build_report(synthetic_run_dir, out)
    assert index == out / "index.html"
    assert _check_links(out, out, page) > 4 * 2
    assert (out / "episodes" / "scripted_lighting_s1_open.mcap").is_file()
    ep = page(out / "episodes" / "scripted_lighting_s1_open.html")
    assert [h for h in ep.links if h.endswith(".mcap")] == ["scripted_lighting_s1_open.mcap"]
    assert (out / "data" / "run.json").is_file()


@pytest.mark.parametrize("missing", ["run.json", "summary.json"])
def test_missing_required_file_names_it(synthetic_run_dir: Path, missing: str) -> None:
    (synthetic_run_dir / missing).unlink()
    with pytest.raises(ValueError, match=missing.replace(".", r"\.")):
        build_report(synthetic_run_dir)
    assert not (synthetic_run_dir / "report" / "index.html").exists()


def test_malformed_episode_names_the_file(synthetic_run_dir: Path) -> None:
    bad = synthetic_run_dir / "episodes" / "broken.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="broken.json"):
        build_report(synthetic_run_dir)


def test_missing_optional_pieces_are_dashes(synthetic_run_dir: Path, page) -> None:
    shutil.rmtree(synthetic_run_dir / "evaluate")
    shutil.rmtree(synthetic_run_dir / "figures")
    summary_path = synthetic_run_dir / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["detection"] = None
    summary.pop("acceptance")
    summary["rows"][0]["success_gated"] = {"rate": None, "lo": None, "hi": None, "k": 0, "n": 0}
    summary["rows"][0].pop("lead_time_s")
    summary_path.write_text(json.dumps(summary))
    # keep two episodes, stripped of every optional field
    ep_dir = synthetic_run_dir / "episodes"
    keep = {"scripted_lighting_s1_gated.json", "scripted_lighting_s1_open.json"}
    for p in ep_dir.glob("*.json"):
        if p.name not in keep:
            p.unlink()
    bare = {"id": "bare", "policy": None, "scenario": None, "gated": None, "steps": {}}
    (ep_dir / "bare.json").write_text(json.dumps(bare))

    build_report(synthetic_run_dir)
    report = synthetic_run_dir / "report"
    index = page(report / "index.html")
    text = "".join(index.text)
    assert "no detection results" in text and "no acceptance checks" in text
    assert index.tables["summary"][0][4] == "— (0/0)"
    assert index.tables["summary"][0][12] == "—"
    assert not list((report / "img").glob("evaluate/*")) and not (report / "img/figures").exists()
    assert len(index.tables["episodes"]) == 3
    bare_page = page(report / "episodes" / "bare.html")
    assert "no alerts" in "".join(bare_page.text) and "no decisions" in "".join(bare_page.text)
    assert (report / "episodes" / "bare_timeline.png").stat().st_size > 0
    _check_links(report, synthetic_run_dir, page)


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_rebuild_is_byte_identical_and_refuses_foreign_dirs(synthetic_run_dir: Path) -> None:
    for p in (synthetic_run_dir / "episodes").glob("*.json"):  # 4 episodes keep it fast
        if "_lighting_s1_" not in p.name:
            p.unlink()
    report = synthetic_run_dir / "report"
    build_report(synthetic_run_dir)
    first = _digest(report)
    assert len([k for k in first if k.endswith(".html")]) == 5
    (report / "episodes" / "stale.html").write_text("old")
    build_report(synthetic_run_dir)  # replaces its own previous output, stale page included
    assert _digest(report) == first
    foreign = synthetic_run_dir.parent / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        build_report(synthetic_run_dir, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="contain the run directory"):
        build_report(synthetic_run_dir, synthetic_run_dir)


def test_thresholds_near_one_keep_their_digits(synthetic_run_dir: Path) -> None:
    """The shipped STOP threshold is 0.99999961; printed as "1.0000" it reads as a threshold
    nothing can exceed, so the run facts keep enough digits to tell it from 1."""
    run_path = synthetic_run_dir / "run.json"
    run = json.loads(run_path.read_text())
    run["stop_threshold"] = 0.9999996086703539
    run_path.write_text(json.dumps(run))
    build_report(synthetic_run_dir)
    index = (synthetic_run_dir / "report" / "index.html").read_text(encoding="utf-8")
    assert "0.99999961" in index and ">1.0000<" not in index


def test_risk_is_drawn_on_a_logit_axis_where_slow_and_stop_are_apart() -> None:
    """Issue 18: on a linear axis SLOW (0.98) and STOP (0.9967) draw on top of each other; on
    the logit axis they are apart, and a risk beyond the axis is drawn at its edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from world_monitor.report.html import RISK_AXIS, _on_risk_axis, _risk_axis

    fig, ax = plt.subplots()
    _risk_axis(ax)
    assert ax.get_yscale() == "logit" and ax.get_ylim() == pytest.approx(RISK_AXIS)
    to_px = ax.transData.transform
    slow_px, stop_px = to_px([(0, 0.98), (0, 0.9967)])[:, 1]
    assert stop_px - slow_px > 0.08 * ax.bbox.height  # distinguishable, not one line
    plt.close(fig)
    clipped = _on_risk_axis([0.0, 0.5, 1.0, float("nan")])
    assert clipped[0] == RISK_AXIS[0] and clipped[1] == 0.5 and clipped[2] == RISK_AXIS[1]
    assert np.isnan(clipped[3])


def test_a_stopped_episode_is_not_also_shown_as_failed(synthetic_run_dir: Path, page) -> None:
    """Issue 18: a page with outcome "stopped" also said "failure step 49 / goal_missed" (the
    simulator's record: held until the time limit, the goal was missed). It now says the robot
    was held, and only a real failure keeps its failure fields."""
    ep_dir = synthetic_run_dir / "episodes"

    def plain(path: Path, outcome: str) -> bool:  # an id that is its own page name
        d = json.loads(path.read_text())
        return d["outcome"] == outcome and d["id"].replace("_", "").isalnum()

    stopped = next(p for p in sorted(ep_dir.glob("*.json")) if plain(p, "stopped"))
    doc = json.loads(stopped.read_text())
    doc.update(failure_step=49, failure_reason="goal_missed")
    stopped.write_text(json.dumps(doc))
    failed = next(p for p in sorted(ep_dir.glob("*.json")) if plain(p, "failure"))
    build_report(synthetic_run_dir)
    text = "".join(page(synthetic_run_dir / "report" / "episodes" / f"{doc['id']}.html").text)
    assert "held by the gate until the time limit at step 49" in text
    assert "goal_missed while stopped, not a failure" in text
    other = json.loads(failed.read_text())
    failed_text = "".join(
        page(synthetic_run_dir / "report" / "episodes" / f"{other['id']}.html").text
    )
    assert "held by the gate" not in failed_text and str(other["failure_step"]) in failed_text
