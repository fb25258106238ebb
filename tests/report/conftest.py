"""Fixtures for the report tests: a small but realistic ``evaluate-policy`` run directory.

Why synthetic: the report must be testable without a bundle, a simulator or minutes of closed-
loop runs, and it must be exercised on the awkward inputs real runs produce (null metrics, an
episode without strip or recording, a recording path that escapes the run dir, a label with
``<script>``, an id with ``#`` and a space). The writer follows the RUN_DIR schema of
``world-monitor evaluate-policy`` field by field, and its summary is computed from the episodes
(Wilson intervals included) so the numbers are consistent with each other.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

SLOW, STOP = 0.4, 0.7
FPS = 10.0
LENGTH = 40
POLICIES = [
    {"name": "scripted", "noise": 0.05, "label": "scripted (noise 0.05)"},
    # A hostile label: the report must show it as text, never run it.
    {"name": "diffusion", "noise": 0.0, "label": 'diffusion <script>alert("x")</script> & co'},
]
SCENARIOS = ["in_distribution", "lighting", "unseen_object"]
SEEDS = 2
EVIL = "<script>"
ODD_ID = "diffusion unseen#1 gated"  # '#' and ' ' must be quoted in links


def wilson(k: int, n: int, z: float = 1.96) -> dict[str, Any]:
    """Wilson 95 % interval in the summary.json RATE layout (null rate for n = 0)."""
    if n == 0:
        return {"rate": None, "lo": None, "hi": None, "k": 0, "n": 0}
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return {"rate": p, "lo": max(0.0, c - h), "hi": min(1.0, c + h), "k": k, "n": n}


def _png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="PNG")


def _strip(path: Path, seed: int) -> None:
    """A tiny animated strip: GIF or (as ``evaluate-policy`` writes it) animated WebP."""
    frames = [Image.new("RGB", (32, 24), ((40 * i + 30 * seed) % 256, 90, 160)) for i in range(3)]
    if path.suffix == ".gif":
        frames = [f.convert("P") for f in frames]
    fmt = "GIF" if path.suffix == ".gif" else "WEBP"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _gate(risk: float | None) -> str:
    if risk is None or risk >= STOP:
        return "STOP"  # fail closed on missing risk
    return "SLOW" if risk >= SLOW else "PROCEED"


def _episode(pol: dict[str, Any], scenario: str, seed: int, gated: bool) -> dict[str, Any]:
    """One closed-loop episode: risk ramps after the shift onset; ungated shifted runs fail."""
    shifted = scenario != "in_distribution"
    onset = None if not shifted else (0 if seed == 0 else 20)
    slope = 0.04 if pol["name"] == "scripted" else 0.05
    risk: list[float | None] = []
    for t in range(LENGTH):
        r = 0.1 + 0.01 * (t % 3)
        if onset is not None and t >= onset:
            r += slope * (t - onset)
        risk.append(round(min(r, 0.95), 4))
    if pol["name"] == "scripted" and scenario == "lighting" and seed == 1:
        risk[5] = None  # a decision without risk (fail-closed STOP)
    gates = [_gate(r) for r in risk]
    fails_open = shifted and not (pol["name"] == "scripted" and scenario == "lighting")
    failure_step = onset + 18 if fails_open and onset is not None else None
    first_stop = next((t for t, g in enumerate(gates) if g == "STOP" and t > 5), None)
    if gated:
        length = first_stop + 1 if first_stop is not None else LENGTH
        outcome = "stopped" if first_stop is not None else "success"
        fstep = None
    else:
        length = failure_step + 1 if failure_step is not None else LENGTH
        outcome = "failure" if failure_step is not None else "success"
        fstep = failure_step
    lead = None
    if failure_step is not None and first_stop is not None and first_stop <= failure_step:
        lead = round((failure_step - first_stop) / FPS, 3)
    ident = f"{pol['name']}_{scenario}_s{seed}_{'gated' if gated else 'open'}"
    if pol["name"] == "diffusion" and scenario == "unseen_object" and seed == 1 and gated:
        ident = ODD_ID
    alerts = []
    if gated and first_stop is not None:
        slow_t = next(t for t, g in enumerate(gates) if g != "PROCEED")
        box = None if scenario == "lighting" else [0.2, 0.3, 0.55, 0.7]
        alerts = [
            {
                "start_t": slow_t,
                "end_t": first_stop,
                "level": "SLOW",
                "box": box,
                "onset_step": onset,
            },
            {
                "start_t": first_stop,
                "end_t": None,
                "level": "STOP",
                "box": box,
                "onset_step": onset,
            },
        ]
    decisions = [
        {
            "t": t,
            "risk": risk[t],
            "decision": gates[t],
            "reasons": [] if gates[t] == "PROCEED" else ["risk_above_threshold"],
            "latency_ms": None if risk[t] is None else 12.5 + t % 4,
        }
        for t in range(0, length, 5)
    ]
    return {
        "id": ident,
        "policy": pol["label"],
        "scenario": scenario,
        "seed": seed,
        "onset": onset,
        "gated": gated,
        "outcome": outcome,
        "failure_step": fstep,
        "failure_reason": "collision with <object>" if fstep is not None else None,
        "fps": FPS,
        "length": length,
        "first_stop_step": first_stop if gated else None,
        "lead_time_s": lead if gated else None,
        "interventions": sum(1 for a in alerts),
        "steps": {"t": list(range(length)), "gate": gates[:length], "risk": risk[:length]},
        "decisions": decisions,
        "alerts": alerts,
        "mcap": f"episodes/{ident}.mcap",
        "strip": f"episodes/{ident}.{'gif' if pol['name'] == 'scripted' else 'webp'}"
        if gated
        else None,
        "paired_id": None,
    }


def _summary(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for pol in POLICIES:
        for sc in SCENARIOS:
            mine = [e for e in episodes if e["policy"] == pol["label"] and e["scenario"] == sc]
            op = [e for e in mine if not e["gated"]]
            ga = [e for e in mine if e["gated"]]
            pairs = [(o, next(g for g in ga if g["seed"] == o["seed"])) for o in op]
            failed = [(o, g) for o, g in pairs if o["outcome"] == "failure"]
            succeeded = [(o, g) for o, g in pairs if o["outcome"] == "success"]
            leads = [g["lead_time_s"] for g in ga if g["lead_time_s"] is not None]
            mean = sum(leads) / len(leads) if leads else None
            rows.append(
                {
                    "policy": pol["label"],
                    "scenario": sc,
                    "n": len(op),
                    "success_ungated": wilson(sum(e["outcome"] == "success" for e in op), len(op)),
                    "success_gated": wilson(sum(e["outcome"] == "success" for e in ga), len(ga)),
                    "failure_ungated": wilson(sum(e["outcome"] == "failure" for e in op), len(op)),
                    "failure_gated": wilson(sum(e["outcome"] == "failure" for e in ga), len(ga)),
                    "stopped_gated": wilson(sum(e["outcome"] == "stopped" for e in ga), len(ga)),
                    "failures_prevented": wilson(
                        sum(g["outcome"] != "failure" for _, g in failed), len(failed)
                    ),
                    "false_stops": wilson(
                        sum(g["outcome"] == "stopped" for _, g in succeeded), len(succeeded)
                    ),
                    "lead_time_s": {
                        "mean": mean,
                        "lo": None if mean is None else mean - 0.2,
                        "hi": None if mean is None else mean + 0.2,
                        "n": len(leads),
                    },
                    "interventions_per_min": {
                        "mean": 60.0
                        * sum(g["interventions"] for g in ga)
                        / sum(g["length"] / FPS for g in ga),
                        "lo": None,
                        "hi": None,
                        "n": len(ga),
                    },
                    "latency_ms": {"p50": 13.0, "p95": 15.4, "n": 16}
                    if sc != "lighting"
                    else {"p50": None, "p95": None, "n": 0},
                }
            )
    return {
        "rows": rows,
        "detection": {
            "families": {
                "lighting": {"episode_auroc": 0.81, "decision_auroc": 0.74, "tpr_at_stop": 0.5},
                "unseen_object": {
                    "episode_auroc": 0.93,
                    "decision_auroc": None,
                    "tpr_at_stop": 0.75,
                },
            },
            "mean_episode_auroc": 0.87,
            "source": "evaluate/evaluation.json",
        },
        "acceptance": [
            {"check": "gate prevents failures", "passed": True, "detail": "prevented 7/8"},
            {
                "check": "false stops <= 10 %",
                "passed": False,
                "detail": "false stops 2/4 <b>over</b> budget",
            },
            {"check": "latency p95 < 50 ms", "passed": True, "detail": "15.4 ms"},
        ],
    }


def write_synthetic_run(root: Path) -> Path:
    """Write a RUN_DIR (schema of ``world-monitor evaluate-policy``) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    ep_dir = root / "episodes"
    ep_dir.mkdir()
    episodes = []
    for pol in POLICIES:
        for sc in SCENARIOS:
            for seed in range(SEEDS):
                pair = [_episode(pol, sc, seed, gated) for gated in (False, True)]
                pair[0]["paired_id"], pair[1]["paired_id"] = pair[1]["id"], pair[0]["id"]
                episodes.extend(pair)
    for e in episodes:
        if e["policy"] == POLICIES[0]["label"] and e["scenario"] == "lighting" and e["seed"] == 0:
            e["mcap"] = None  # recording not written
        elif e["id"] == "scripted_unseen_object_s1_open":
            e["mcap"] = "../../outside.mcap"  # escapes the run dir: never linked or copied
        elif e["id"] == "scripted_unseen_object_s0_open":
            e["mcap"] = "episodes/missing.mcap"  # named but absent
        else:
            (root / e["mcap"]).write_bytes(b"\x89MCAP0\r\n" + bytes(range(64)) * 4)
        if e["strip"]:
            _strip(root / e["strip"], e["seed"])
        (ep_dir / f"{e['id']}.json").write_text(json.dumps(e, indent=1), encoding="utf-8")
    run = {
        "command": "world-monitor evaluate-policy --bundle runs/b1 --seeds 2 --out <run>",
        "bundle": "/work/runs/bundle_<v1>",
        "bundle_hash": "sha256:0123456789abcdef",
        "backend": "onnxruntime-cpu",
        "created": "2025-01-02T03:04:05+00:00",
        "seconds": 123.4,
        "fps": FPS,
        "episode_length": LENGTH,
        "slow_threshold": SLOW,
        "stop_threshold": STOP,
        "policies": POLICIES,
        "scenarios": SCENARIOS,
        "seeds": SEEDS,
        "onsets": ["start", "mid"],
    }
    (root / "run.json").write_text(json.dumps(run, indent=1), encoding="utf-8")
    (root / "summary.json").write_text(json.dumps(_summary(episodes), indent=1), encoding="utf-8")
    (root / "evaluate").mkdir()
    (root / "evaluate" / "evaluation.json").write_text(
        json.dumps(
            {
                "families": {"lighting": {"episode_auroc": 0.81}},
                "thresholds": {"slow": SLOW, "stop": STOP},
            }
        ),
        encoding="utf-8",
    )
    _png(root / "evaluate" / "roc_all.png", (200, 220, 255))
    _png(root / "evaluate" / "roc_lighting.png", (220, 200, 255))
    _png(root / "figures" / "reliability.png", (255, 230, 200))
    return root


class PageParser(HTMLParser):
    """Collects tables (by id: rows of cell texts), links and images of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self._table: str | None = None
        self._in_body = False
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")
        elif tag == "img":
            self.images.append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse_page(path: Path) -> PageParser:
    """Parse one report page."""
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


@pytest.fixture
def synthetic_run_dir(tmp_path: Path) -> Path:
    """A fresh synthetic run directory (tests may modify it)."""
    return write_synthetic_run(tmp_path / "run")


@pytest.fixture(scope="session")
def built_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic run directory with its report built once per session (read-only for tests)."""
    from world_monitor.report.html import build_report

    run = write_synthetic_run(tmp_path_factory.mktemp("built") / "run")
    build_report(run)
    return run


@pytest.fixture
def page() -> Callable[[Path], PageParser]:
    """The HTML page parser (fixtures are how tests here share helpers: no package imports)."""
    return parse_page
