"""Static HTML report of a closed-loop policy evaluation (``world-monitor evaluate-policy``).

Why a static site and not a dashboard: the report is evidence that travels with the run — it is
archived with CI artifacts, opened from a file share or a robot's disk without network access, and
must show exactly what the run wrote. So :func:`build_report` writes plain HTML with inline CSS,
no JavaScript, no CDN, fonts or other external fetches, and relative links only:

* plots are rendered here with matplotlib (Agg, no pyplot state) into PNGs next to the pages;
  PNGs the run already has (``evaluate/roc_*.png``, ``figures/*.png``) and the per-episode
  animated strips (WebP or GIF) are copied next to the pages, so the report directory alone
  shows every image;
* recordings (``.mcap``) can be large, so when the report lives inside the run directory (the
  default, ``RUN_DIR/report``) they are linked in place (``../../episodes/<id>.mcap`` from an
  episode page); a report written elsewhere gets copies, so its links still resolve;
* every string that came from JSON is HTML-escaped and every href is percent-quoted — labels and
  ids are user-controlled (policy names, scenario names) and a report must never execute them; a
  Content-Security-Policy meta tag forbids scripts as a second line of defence;
* paths named in JSON (``mcap``, ``strip``) must resolve inside the run directory; anything else
  is shown as missing rather than copied or linked;
* output is deterministic (sorted inputs, no build timestamp, PNG metadata without the
  matplotlib version), so two builds of the same run are byte-identical and diffable.

Optional pieces (``evaluate/``, ``figures/``, strips, recordings, ``detection``, null metrics)
are shown as "—". A missing ``run.json`` / ``summary.json`` or a malformed episode file is a
:class:`ValueError` that names the file.

Layout written under ``out`` (default ``RUN_DIR/report``)::

    index.html                 header, acceptance, summary, detection, plots, episode index
    img/summary_rates.png      success / failure with vs without gate (Wilson 95 % bars)
    img/risk_timelines.png     median risk over time per scenario (gated runs) vs thresholds
    img/evaluate/roc_*.png     copied from RUN_DIR/evaluate
    img/figures/*.png          copied from RUN_DIR/figures
    episodes/<slug>.html       one page per episode
    episodes/<slug>_timeline.png, episodes/<slug>.webp|.gif (strip copy)
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from tqdm import tqdm

from world_monitor.report import GATE_RGB
from world_monitor.runtime.risk import format_risk

LOG = logging.getLogger(__name__)

__all__ = ["build_report"]

DASH = "—"
MARKER = ".world_monitor_report"
# Progress bar only when there are enough pages for the wait to be noticeable.
TQDM_MIN_EPISODES = 20
# Strips: the evaluation writes animated WebP (GIF in older runs); shown inline as <img> / <video>.
IMAGE_SUFFIXES = {".gif", ".webp", ".png", ".apng", ".jpg", ".jpeg"}
VIDEO_SUFFIXES = {".mp4", ".webm"}
#: Hex forms of the strips' gate colours, so a plot band and a strip border mean the same.
GATE_COLOURS = {k: "#{:02x}{:02x}{:02x}".format(*rgb) for k, rgb in GATE_RGB.items()}
# PNG metadata without the matplotlib version: identical runs give identical bytes across upgrades.
PNG_META = {"Software": None}
CSP = (
    "default-src 'none'; img-src 'self' data: file:; media-src 'self' file:; "
    "style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5rem auto;
max-width:1400px;padding:0 1rem;color:#1b1b1b;line-height:1.4}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #ddd;padding-bottom:.2rem}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em}
pre{white-space:pre-wrap;word-break:break-all;background:#f6f8fa;padding:.5rem;border-radius:4px}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;font-size:.9rem}
dl.facts dt{font-weight:600}dl.facts dd{margin:0;word-break:break-all}
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
.muted{color:#6e7781}nav a{margin-right:1rem}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85rem;color:#57606a}
.gallery{display:flex;flex-wrap:wrap;gap:1rem}.gallery figure{max-width:460px}
.scroll{overflow-x:auto;max-width:100%}
.outcome-success{color:#1a7f37}.outcome-failure{color:#cf222e}.outcome-stopped{color:#9a6700}
.gate-PROCEED{color:#1a7f37}.gate-SLOW{color:#9a6700}.gate-STOP{color:#cf222e}
"""


# ------------------------------------------------------------------------------ small helpers
def _e(value: Any) -> str:
    """HTML-escape anything that came from JSON (quotes included: it may land in an attribute)."""
    return html.escape(str(value), quote=True)


def _href(rel: str) -> str:
    """Percent-quote a relative POSIX path for an href and escape it for the attribute."""
    return html.escape(quote(rel, safe="/"), quote=True)


def _num(value: Any) -> float | None:
    """A finite float, or None for null / NaN / non-numbers (JSON is not trusted to be tidy)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _int(value: Any) -> int | None:
    """An int, or None (bools and floats with a fraction are not step numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _fmt(value: Any, digits: int = 2) -> str:
    f = _num(value)
    return DASH if f is None else f"{f:.{digits}f}"


def _text(value: Any) -> str:
    """Escaped text for a scalar; "—" for null / empty."""
    if value is None or value == "":
        return DASH
    if isinstance(value, float):
        return _fmt(value)
    return _e(value)


def _rate(r: Any) -> str:
    """``rate [lo, hi] (k/n)`` for a Wilson-rate dict; "—" where the rate is undefined."""
    if not isinstance(r, Mapping):
        return DASH
    rate, lo, hi = _num(r.get("rate")), _num(r.get("lo")), _num(r.get("hi"))
    k, n = _int(r.get("k")), _int(r.get("n"))
    counts = f" ({k}/{n})" if k is not None and n is not None else ""
    if rate is None:
        return DASH + counts
    ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
    return f"{rate:.2f}{ci}{counts}"


def _mean_ci(m: Any, digits: int = 2) -> str:
    """``mean [lo, hi] (n=…)`` for a mean-with-CI dict; "—" where there is no mean."""
    if not isinstance(m, Mapping):
        return DASH
    mean, lo, hi, n = _num(m.get("mean")), _num(m.get("lo")), _num(m.get("hi")), _int(m.get("n"))
    count = f" (n={n})" if n is not None else ""
    if mean is None:
        return DASH + count
    ci = f" [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None and hi is not None else ""
    return f"{mean:.{digits}f}{ci}{count}"


def _latency(m: Any) -> str:
    if not isinstance(m, Mapping):
        return DASH
    p50, p95, n = _num(m.get("p50")), _num(m.get("p95")), _int(m.get("n"))
    if p50 is None and p95 is None:
        return DASH
    count = f" (n={n})" if n is not None else ""
    return f"{_fmt(p50, 1)} / {_fmt(p95, 1)}{count}"


def _mpl(s: Any) -> str:
    """Text safe for matplotlib: no mathtext from a stray ``$``, no legend-hiding leading ``_``."""
    t = str(s).replace("$", r"\$")
    return " " + t if t.startswith("_") else t


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ValueError(f"{what}: {path} is missing (not a policy-evaluation run directory?)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc}") from exc


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _slugs(ids: Sequence[str]) -> dict[str, str]:
    """File-name-safe, unique, deterministic page names for episode ids (ids are free text)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for ident in ids:
        base = re.sub(r"[^A-Za-z0-9._-]", "_", ident).lstrip(".")[:120] or "episode"
        slug, i = base, 2
        while slug.lower() in used:  # case-insensitive: reports get copied to such filesystems
            slug, i = f"{base}-{i}", i + 1
        used.add(slug.lower())
        out[ident] = slug
    return out


def _sort_key(value: Any) -> tuple[int, Any]:
    """Total order for possibly-null, mixed JSON scalars (None first)."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, str(value))


# ------------------------------------------------------------------------------------- model
@dataclass
class _Episode:
    """One episode file plus what the report derived from it (page slug, resolved files)."""

    data: dict[str, Any]
    source: Path
    slug: str = ""
    mcap_href: str | None = None  # relative to the episodes/ page directory
    strip_href: str | None = None

    @property
    def id(self) -> str:
        return str(self.data["id"])

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def order(self) -> tuple[Any, ...]:
        d = self.data
        return tuple(
            _sort_key(d.get(k)) for k in ("policy", "scenario", "seed", "onset", "gated")
        ) + (self.id,)


def _load_episodes(run_dir: Path) -> list[_Episode]:
    episodes: list[_Episode] = []
    seen: dict[str, Path] = {}
    ep_dir = run_dir / "episodes"
    for path in sorted(ep_dir.glob("*.json")) if ep_dir.is_dir() else []:
        data = _read_json(path, "episode")
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
            raise ValueError(f"episode: {path} is not an object with a non-empty string 'id'")
        if data["id"] in seen:
            raise ValueError(f"episode: id {data['id']!r} appears in {seen[data['id']]} and {path}")
        seen[data["id"]] = path
        episodes.append(_Episode(data=data, source=path))
    episodes.sort(key=_Episode.order)
    slugs = _slugs([e.id for e in episodes])
    for e in episodes:
        e.slug = slugs[e.id]
    return episodes


# ----------------------------------------------------------------------------------- output
class _Site:
    """Where the report is written and how it refers to files of the run directory."""

    def __init__(self, run_dir: Path, out: Path) -> None:
        self.run_dir = run_dir
        self.out = out
        # Inside the run dir the original files are reachable by relative links (and by the
        # server, which serves the run dir); outside it they must be copied to stay reachable.
        self.linked = _inside(run_dir, out)

    def run_file(self, rel: Any) -> Path | None:
        """A file named (relative to the run dir) in JSON, if it exists and stays inside it."""
        if not isinstance(rel, str) or not rel or Path(rel).is_absolute():
            return None
        path = self.run_dir / rel
        if not _inside(self.run_dir, path) or not path.is_file():
            return None
        return path

    def reference(self, src: Path, copy_to: str) -> str:
        """Href (relative to the report root) of a run-dir file: linked in place or copied."""
        if self.linked:
            return Path(os.path.relpath(src.resolve(), self.out.resolve())).as_posix()
        return self.copy(src, copy_to)

    def copy(self, src: Path, rel: str) -> str:
        dest = self.out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        return rel

    def write(self, rel: str, text: str) -> None:
        dest = self.out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8", newline="\n")


def _prepare_out(run_dir: Path, out: Path) -> None:
    """Empty a previous report (recognised by its marker) so stale pages never linger.

    Anything else that is non-empty is refused rather than deleted: ``out`` is user input and a
    typo must not wipe a directory.
    """
    if out.resolve() == run_dir.resolve() or _inside(out, run_dir):
        raise ValueError(f"report directory {out} would contain the run directory {run_dir}")
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"report directory {out} exists and is not a directory")
        if (out / MARKER).is_file():
            shutil.rmtree(out)
        elif any(out.iterdir()):
            raise ValueError(
                f"report directory {out} is not empty and was not written by build_report; "
                "choose another --out or remove it"
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by world_monitor.report.html.build_report\n")


# ------------------------------------------------------------------------------------ plots
def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # pyplot-free: no global state, no backend switch

    return Figure(figsize=(width, height), dpi=100)


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata=PNG_META)


def _thresholds(run: Mapping[str, Any]) -> tuple[float | None, float | None]:
    return _num(run.get("slow_threshold")), _num(run.get("stop_threshold"))


def _axhlines(ax: Any, run: Mapping[str, Any]) -> None:
    slow, stop = _thresholds(run)
    if slow is not None:
        ax.axhline(
            slow, color=GATE_COLOURS["SLOW"], ls="--", lw=1, label=f"slow {format_risk(slow)}"
        )
    if stop is not None:
        ax.axhline(
            stop, color=GATE_COLOURS["STOP"], ls="--", lw=1, label=f"stop {format_risk(stop)}"
        )


#: the risk axis spans these ranks on a logit scale (0 and 1 themselves cannot be drawn on it)
RISK_AXIS = (0.01, 1.0 - 1e-6)


def _risk_axis(ax: Any) -> None:
    """Risk on a logit axis: the SLOW and STOP thresholds sit in the top percent of the rank
    scale, so on a linear axis their lines (0.98, 0.9967 for the shipped bundle; 0.9989 and
    0.99999961 before v0.8) drew on top of each other and no timeline showed how close a risk
    came to STOP (issue 18). The logit scale spreads the nines apart and labels the ticks with
    the risk itself; a risk of exactly 0 or 1 (a refused decision) is drawn at the axis edge."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_yscale("logit", nonpositive="clip")
    ax.set_ylim(*RISK_AXIS)
    ticks = [0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_yticklabels([f"{v:g}" for v in ticks], fontsize=7)


def _on_risk_axis(r: Any) -> np.ndarray:
    """Risks clipped into :data:`RISK_AXIS` so that a rank beyond the axis (far out in a
    signal's fitted tail) is drawn at its edge instead of off the chart; NaN stays NaN."""
    return np.clip(np.asarray(r, dtype=np.float64), *RISK_AXIS)


def _ordered(preferred: Iterable[Any], present: Iterable[str]) -> list[str]:
    """``present`` in the run's declared order, unknown ones after it (sorted)."""
    present = list(dict.fromkeys(present))
    first = [str(p) for p in preferred if str(p) in present]
    return list(dict.fromkeys(first)) + sorted(p for p in present if p not in first)


def plot_summary_rates(
    rows: Sequence[Mapping[str, Any]], run: Mapping[str, Any], path: Path
) -> bool:
    """Success and failure rate per scenario, without vs with the gate, Wilson 95 % error bars.

    Returns False (nothing written) when there are no rows to plot.
    """
    if not rows:
        return False
    policies = _ordered(_policy_labels(run), [str(r.get("policy")) for r in rows])
    scenarios = _ordered(run.get("scenarios") or [], [str(r.get("scenario")) for r in rows])
    by_key = {(str(r.get("policy")), str(r.get("scenario"))): r for r in rows}
    fig = _figure(max(7.0, 1.6 * len(scenarios) * 2), 4.2)
    axes = fig.subplots(1, 2, sharey=True)
    cmap = _cycle(len(policies))
    n_bars = 2 * len(policies)
    width = 0.8 / n_bars
    x = np.arange(len(scenarios))
    for ax, what in zip(axes, ("success", "failure"), strict=True):
        for pi, pol in enumerate(policies):
            for gi, gated in enumerate((False, True)):
                key = f"{what}_{'gated' if gated else 'ungated'}"
                vals, lo_err, hi_err = [], [], []
                for sc in scenarios:
                    r = by_key.get((pol, sc), {}).get(key)
                    r = r if isinstance(r, Mapping) else {}
                    v, lo, hi = _num(r.get("rate")), _num(r.get("lo")), _num(r.get("hi"))
                    vals.append(np.nan if v is None else v)
                    lo_err.append(0.0 if v is None or lo is None else max(v - lo, 0.0))
                    hi_err.append(0.0 if v is None or hi is None else max(hi - v, 0.0))
                offset = (2 * pi + gi - (n_bars - 1) / 2) * width
                ax.bar(
                    x + offset,
                    vals,
                    width,
                    yerr=[lo_err, hi_err],
                    capsize=2,
                    color=cmap[pi],
                    alpha=1.0 if gated else 0.45,
                    hatch=None if gated else "//",
                    edgecolor="black",
                    linewidth=0.5,
                    label=f"{_mpl(pol)} — {'gate on' if gated else 'gate off'}",
                )
        ax.set_xticks(x, [_mpl(s) for s in scenarios], rotation=20, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{what} rate")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("rate (Wilson 95 % CI)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * math.ceil(len(labels) / 2), 1, 1))
    _save(fig, path)
    return True


def _cycle(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(max(n, 1))]


def _risk_series(ep: _Episode) -> tuple[np.ndarray, np.ndarray]:
    """(t, risk) of an episode's per-step record; null risk becomes NaN (a gap, not a zero)."""
    steps = ep.get("steps")
    steps = steps if isinstance(steps, Mapping) else {}
    t_raw = steps.get("t") if isinstance(steps.get("t"), list) else []
    r_raw = steps.get("risk") if isinstance(steps.get("risk"), list) else []
    n = min(len(t_raw), len(r_raw))
    t = np.array([_num(v) if _num(v) is not None else np.nan for v in t_raw[:n]], dtype=float)
    r = np.array([_num(v) if _num(v) is not None else np.nan for v in r_raw[:n]], dtype=float)
    return t, r


def _fps(ep: _Episode, run: Mapping[str, Any]) -> float | None:
    f = _num(ep.get("fps")) or _num(run.get("fps"))
    return f if f and f > 0 else None


def plot_risk_timelines(episodes: Sequence[_Episode], run: Mapping[str, Any], path: Path) -> bool:
    """Median (and interquartile band of) risk over time per scenario and policy, gated runs.

    Episodes are aligned on their shift onset (time 0 = onset) where they have one, so start-
    and mid-episode onsets describe the same event; episodes without an onset (in-distribution)
    are aligned on their first step. Returns False (nothing written) when no gated episode has a
    risk value.
    """
    gated = [e for e in episodes if e.get("gated") is True]
    series: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    aligned: set[str] = set()
    for e in gated:
        t, r = _risk_series(e)
        ok = np.isfinite(t)
        if not np.isfinite(r[ok]).any():
            continue
        onset = _int(e.get("onset"))
        key = (str(e.get("policy")), str(e.get("scenario")))
        if onset is not None:
            aligned.add(key[1])
        series.setdefault(key, []).append((t[ok].astype(int) - (onset or 0), r[ok]))
    if not series:
        return False
    scenarios = _ordered(run.get("scenarios") or [], [k[1] for k in series])
    policies = _ordered(_policy_labels(run), [k[0] for k in series])
    colours = dict(zip(policies, _cycle(len(policies)), strict=True))
    fps = _num(run.get("fps"))
    scale, unit = (1.0 / fps, "s") if fps and fps > 0 else (1.0, "step")
    ncols = min(3, len(scenarios))
    nrows = math.ceil(len(scenarios) / ncols)
    fig = _figure(4.6 * ncols, 3.0 * nrows + 0.4)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    for ax, sc in zip(axes, scenarios, strict=False):
        for pol in policies:
            runs = series.get((pol, sc))
            if not runs:
                continue
            t0 = min(int(t.min()) for t, _ in runs)
            t1 = max(int(t.max()) for t, _ in runs)
            grid = np.full((len(runs), t1 - t0 + 1), np.nan)
            for i, (t, r) in enumerate(runs):
                grid[i, t - t0] = _on_risk_axis(r)
            have = np.isfinite(grid).any(axis=0)
            med = np.full(grid.shape[1], np.nan)
            q1, q3 = med.copy(), med.copy()
            if have.any():
                med[have] = np.nanmedian(grid[:, have], axis=0)
                q1[have], q3[have] = np.nanpercentile(grid[:, have], [25, 75], axis=0)
            xs = np.arange(t0, t1 + 1) * scale
            ax.plot(xs, med, color=colours[pol], lw=1.5, label=f"{_mpl(pol)} (n={len(runs)})")
            ax.fill_between(xs, q1, q3, color=colours[pol], alpha=0.15, lw=0)
        _axhlines(ax, run)
        _risk_axis(ax)
        ax.set_title(_mpl(sc), fontsize=10)
        ax.set_xlabel(f"time since shift onset ({unit})" if sc in aligned else f"time ({unit})")
        if sc in aligned:
            ax.axvline(0.0, color="#6a1b9a", ls="-.", lw=1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    for ax in axes[len(scenarios) :]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel("risk (median, IQR; logit scale)")
    fig.suptitle("gated runs: risk over time vs thresholds", fontsize=11)
    fig.tight_layout()
    _save(fig, path)
    return True


def _runs(values: Sequence[Any]) -> list[tuple[int, int, Any]]:
    """Run-length encoding: (first index, last index + 1, value)."""
    out: list[tuple[int, int, Any]] = []
    for i, v in enumerate(values):
        if out and out[-1][2] == v:
            out[-1] = (out[-1][0], i + 1, v)
        else:
            out.append((i, i + 1, v))
    return out


def _held_at_the_end(ep: Any) -> bool:
    """A ``stopped`` episode whose simulator record still carries a failure: the gate held the
    robot until the time limit, so the goal was missed *because it was held* — not a failure
    of the task (the outcome classification says so; the page must not say both)."""
    return str(ep.get("outcome") or "") == "stopped" and ep.get("failure_step") is not None


def _failure_label(ep: Any) -> str:
    return "time limit (held)" if _held_at_the_end(ep) else "failure"


def _failure_cell(ep: Any) -> str:
    if _held_at_the_end(ep):
        return _e(
            f"— (held by the gate until the time limit at step {ep.get('failure_step')}: "
            f"{ep.get('failure_reason') or 'goal not reached'} while stopped, not a failure)"
        )
    return _text(ep.get("failure_step"))


def plot_episode_timeline(ep: _Episode, run: Mapping[str, Any], path: Path) -> None:
    """Risk and gate state of one episode: gate as coloured bands, thresholds as dashed lines,
    onset / first stop / failure as vertical markers, missing risk (fail-closed) as crosses."""
    t, r = _risk_series(ep)
    steps = ep.get("steps") if isinstance(ep.get("steps"), Mapping) else {}
    gates = steps.get("gate") if isinstance(steps.get("gate"), list) else []
    fps = _fps(ep, run)
    scale, unit = (1.0 / fps, "s") if fps else (1.0, "step")
    fig = _figure(9.0, 3.2)
    ax = fig.subplots()
    n = min(len(t), len(gates))
    labelled: set[str] = set()
    for i0, i1, g in _runs([str(g) for g in gates[:n]]):
        if not np.isfinite(t[i0]):
            continue
        end = t[i1] if i1 < n and np.isfinite(t[i1]) else t[i1 - 1] + 1
        name = g if g in GATE_COLOURS else "other"
        ax.axvspan(
            t[i0] * scale,
            end * scale,
            color=GATE_COLOURS.get(g, "#9e9e9e"),
            alpha=0.10 if g == "PROCEED" else 0.28,
            lw=0,
            label=None if name in labelled else f"gate {name}",
        )
        labelled.add(name)
    if len(t):
        ax.plot(t * scale, _on_risk_axis(r), color="#1f4e79", lw=1.5, label="risk")
        missing = np.isfinite(t) & ~np.isfinite(r)
        if missing.any():
            top = RISK_AXIS[1]  # fail-closed: drawn at the top of the axis
            ax.plot(
                t[missing] * scale,
                np.full(missing.sum(), top),
                "x",
                color="#6e7781",
                ms=4,
                label="risk missing",
            )
    decisions = [d for d in ep.get("decisions") or [] if isinstance(d, Mapping)]
    dt = [(_num(d.get("t")), _num(d.get("risk"))) for d in decisions]
    dt = [(a, b) for a, b in dt if a is not None and b is not None]
    if dt:
        ax.plot(
            [a * scale for a, _ in dt],
            _on_risk_axis(np.asarray([b for _, b in dt])),
            "o",
            ms=3,
            color="#1f4e79",
            label="decisions",
        )
    _axhlines(ax, run)
    held = _held_at_the_end(ep)
    for key, colour, style, label in (
        ("onset", "#6a1b9a", "-.", "shift onset"),
        ("first_stop_step", GATE_COLOURS["STOP"], ":", "first STOP"),
        ("failure_step", "#6e7781" if held else "black", "-", _failure_label(ep)),
    ):
        v = _num(ep.get(key))
        if v is not None:
            ax.axvline(v * scale, color=colour, ls=style, lw=1.5, label=label)
    _risk_axis(ax)
    ax.set_xlabel(f"time ({unit})")
    ax.set_ylabel("risk (logit scale)")
    ax.set_title(_mpl(f"{ep.id} — {ep.get('outcome', '?')}"), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    # Fixed margins instead of tight_layout: the layout never changes and tight_layout renders
    # the figure once more just to measure it (half the cost of a page, × every episode).
    fig.subplots_adjust(left=0.09, right=0.82, bottom=0.15, top=0.9)
    _save(fig, path)


# ------------------------------------------------------------------------------------- HTML
def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">\n'
        '<link rel="icon" href="data:,">\n'  # no favicon request (a 404 in every console)
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )


def _facts(items: Sequence[tuple[str, str]]) -> str:
    """A definition list; values are already-escaped HTML."""
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in items)
    return f'<dl class="facts">{rows}</dl>'


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], table_id: str, num_from: int = 99
) -> str:
    """A table; cells are already-escaped HTML; columns from ``num_from`` are right-aligned."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{c}</td>' if i >= num_from else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>\n"
        for row in rows
    )
    return (
        f'<div class="scroll"><table id="{_e(table_id)}"><thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}</tbody></table></div>"
    )


def _img(href: str, alt: str, caption: str, img_id: str | None = None) -> str:
    ident = f' id="{_e(img_id)}"' if img_id else ""
    return (
        f'<figure><img{ident} src="{_href(href)}" alt="{_e(alt)}" loading="eager">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _policy_labels(run: Mapping[str, Any]) -> list[str]:
    out = []
    for p in run.get("policies") or []:
        if isinstance(p, Mapping):
            out.append(str(p.get("label") or p.get("name") or ""))
        else:
            out.append(str(p))
    return [p for p in out if p]


def _policies_text(run: Mapping[str, Any]) -> str:
    items = []
    for p in run.get("policies") or []:
        if isinstance(p, Mapping):
            label = p.get("label") or p.get("name")
            extra = ", ".join(f"{k}={v}" for k, v in sorted(p.items()) if k != "label")
            items.append(f"{_e(label)} <span class=muted>({_e(extra)})</span>")
        else:
            items.append(_e(p))
    return "<br>".join(items) or DASH


def _list_text(values: Any) -> str:
    if not isinstance(values, list) or not values:
        return DASH if values in (None, [], "") else _e(values)
    return _e(", ".join(str(v) for v in values))


def _header(run: Mapping[str, Any]) -> str:
    slow, stop = _thresholds(run)
    command = run.get("command")
    return _facts(
        [
            ("bundle", _text(run.get("bundle"))),
            ("bundle hash", f"<code>{_text(run.get('bundle_hash'))}</code>"),
            ("backend", _text(run.get("backend"))),
            ("created", _text(run.get("created"))),
            ("slow threshold", DASH if slow is None else format_risk(slow)),
            ("stop threshold", DASH if stop is None else format_risk(stop)),
            ("fps", _fmt(run.get("fps"), 1)),
            ("episode length", _text(run.get("episode_length"))),
            ("policies", _policies_text(run)),
            ("scenarios", _list_text(run.get("scenarios"))),
            ("seeds", _text(run.get("seeds"))),
            ("onsets", _list_text(run.get("onsets"))),
            ("run time", f"{_fmt(run.get('seconds'), 1)} s"),
            ("command", f"<pre>{_text(command)}</pre>" if command else DASH),
        ]
    )


def _acceptance(summary: Mapping[str, Any]) -> str:
    checks = [c for c in summary.get("acceptance") or [] if isinstance(c, Mapping)]
    if not checks:
        return f"<p class=muted>{DASH} no acceptance checks in summary.json</p>"
    passed = sum(1 for c in checks if c.get("passed") is True)
    items = []
    for c in checks:
        ok = c.get("passed") is True
        mark = '<span class="pass">✓ pass</span>' if ok else '<span class="fail">✗ FAIL</span>'
        items.append(
            f"<li>{mark} <strong>{_text(c.get('check'))}</strong> — {_text(c.get('detail'))}</li>"
        )
    verdict = "pass" if passed == len(checks) else "fail"
    return (
        f'<p id="acceptance-verdict" class="{verdict}">{passed}/{len(checks)} checks passed</p>'
        f'<ul id="acceptance">{"".join(items)}</ul>'
    )


SUMMARY_HEADERS = [
    "policy",
    "scenario",
    "n",
    "success (gate off)",
    "success (gate on)",
    "failure (gate off)",
    "failure (gate on)",
    "stopped (gate on)",
    "shift-induced failures (gate off)",
    "shift-induced failures (gate on)",
    "failures prevented",
    "false stops",
    "lead time s",
    "interventions / min",
    "latency ms p50 / p95",
]


def _summary_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [
            _text(r.get("policy")),
            _text(r.get("scenario")),
            _text(r.get("n")),
            _rate(r.get("success_ungated")),
            _rate(r.get("success_gated")),
            _rate(r.get("failure_ungated")),
            _rate(r.get("failure_gated")),
            _rate(r.get("stopped_gated")),
            _rate(r.get("induced_failure_ungated")),
            _rate(r.get("induced_failure_gated")),
            _rate(r.get("failures_prevented")),
            _rate(r.get("false_stops")),
            _mean_ci(r.get("lead_time_s")),
            _mean_ci(r.get("interventions_per_min")),
            _latency(r.get("latency_ms")),
        ]
        for r in rows
    ]


def _detection(summary: Mapping[str, Any], site: _Site) -> str:
    det = summary.get("detection")
    if not isinstance(det, Mapping):
        return f"<p class=muted>{DASH} no detection results (run without evaluate/)</p>"
    fams = det.get("families") if isinstance(det.get("families"), Mapping) else {}
    rows = [
        [
            _e(name),
            _fmt((v or {}).get("episode_auroc"), 3) if isinstance(v, Mapping) else DASH,
            _fmt((v or {}).get("decision_auroc"), 3) if isinstance(v, Mapping) else DASH,
            _fmt((v or {}).get("tpr_at_stop"), 3) if isinstance(v, Mapping) else DASH,
        ]
        for name, v in sorted(fams.items())
    ]
    table = _table(
        ["family", "episode AUROC", "decision AUROC", "TPR at stop"], rows, "detection", num_from=1
    )
    source = det.get("source")
    src_path = site.run_file(source)
    if src_path is not None:
        src = (
            f'<a href="{_href(site.reference(src_path, "data/evaluation.json"))}">{_e(source)}</a>'
        )
    else:
        src = _text(source)
    return (
        f"<p>mean episode AUROC over families: <strong>{_fmt(det.get('mean_episode_auroc'), 3)}"
        f"</strong>; source: {src}</p>{table}"
    )


def _episode_index(episodes: Sequence[_Episode]) -> str:
    if not episodes:
        return f"<p class=muted>{DASH} no episode files in episodes/</p>"
    by_id = {e.id: e for e in episodes}
    rows = []
    for e in episodes:
        paired = e.get("paired_id")
        if isinstance(paired, str) and paired in by_id:
            pair = f'<a href="{_href("episodes/" + by_id[paired].slug + ".html")}">{_e(paired)}</a>'
        else:
            pair = _text(paired)
        outcome = str(e.get("outcome") or "")
        rows.append(
            [
                f'<a class="episode-link" href="{_href("episodes/" + e.slug + ".html")}">'
                f"{_e(e.id)}</a>",
                _text(e.get("policy")),
                _text(e.get("scenario")),
                _text(e.get("seed")),
                _text(e.get("onset")),
                _gated(e.get("gated")),
                f'<span class="outcome-{_e(outcome)}">{_text(outcome)}</span>',
                _text(e.get("failure_step")),
                _text(e.get("first_stop_step")),
                _fmt(e.get("lead_time_s")),
                _text(e.get("interventions")),
                pair,
            ]
        )
    return _table(
        [
            "episode",
            "policy",
            "scenario",
            "seed",
            "onset step",
            "gate",
            "outcome",
            "failure step",
            "first stop step",
            "lead time s",
            "interventions",
            "paired",
        ],
        rows,
        "episodes",
    )


def _gated(value: Any) -> str:
    return "on" if value is True else "off" if value is False else DASH


def _index_html(
    run: Mapping[str, Any],
    summary: Mapping[str, Any],
    episodes: Sequence[_Episode],
    plots: Sequence[tuple[str, str, str]],
    site: _Site,
) -> str:
    rows = [r for r in summary.get("rows") or [] if isinstance(r, Mapping)]
    bundle = str(run.get("bundle") or "")
    title = f"Policy evaluation — {Path(bundle).name or DASH}"
    # Plots rendered here are wide (one panel per scenario): full width. Copied PNGs (ROC,
    # reliability, ...) are small squares: a gallery.
    wide = "".join(_img(h, a, c, i) for h, a, c, i in plots if i is not None)
    gallery = "".join(_img(h, a, c, i) for h, a, c, i in plots if i is None)
    files = []
    for name in ("run.json", "summary.json"):
        files.append(
            f'<a href="{_href(site.reference(site.run_dir / name, "data/" + name))}">{name}</a>'
        )
    body = f"""<h1>{_e(title)}</h1>
<nav><a href="#acceptance-section">acceptance</a><a href="#summary-section">summary</a>
<a href="#detection-section">detection</a><a href="#plots-section">plots</a>
<a href="#episodes-section">episodes</a></nav>
<h2 id="run-section">Run</h2>
{_header(run)}
<p>raw data: {" · ".join(files)}</p>
<h2 id="acceptance-section">Acceptance</h2>
{_acceptance(summary)}
<h2 id="summary-section">Summary per policy × scenario</h2>
<p class=muted>Every episode runs twice, gate off (shadow mode) and gate on. Rates are
<code>rate [lo, hi] (k/n)</code> with Wilson 95 % intervals. <em>Stopped</em>: the gate held the
robot at the end without a safety failure (handed over). <em>Shift-induced failures</em>: failures
of episodes whose in-distribution twin (same policy and seed, same layout) succeeds, so the shift
caused them. Failures prevented counts gate-off failures the gated run avoided; false stops counts
gated runs stopped although the gate-off run succeeded (on a shift row: a harmless shift that was
nevertheless detected). Lead time (first STOP to the gate-off failure) and interventions are means
with 95 % bootstrap CI.</p>
{_table(SUMMARY_HEADERS, _summary_rows(rows), "summary", num_from=2)}
<h2 id="detection-section">Detection</h2>
{_detection(summary, site)}
<h2 id="plots-section">Plots</h2>
{wide}<div class="gallery">{gallery}</div>
{"" if wide or gallery else f"<p class=muted>{DASH} no plots</p>"}
<h2 id="episodes-section">Episodes ({len(episodes)})</h2>
{_episode_index(episodes)}"""
    return _page(title, body)


def _box_svg(box: Any) -> str:
    """A tiny inline SVG of a normalised box in the image frame (no image needed to read it)."""
    vals = [_num(v) for v in box] if isinstance(box, list) and len(box) == 4 else []
    if len(vals) != 4 or any(v is None for v in vals):
        return DASH
    x0, y0, x1, y1 = (min(max(float(v or 0.0), 0.0), 1.0) for v in vals)
    w, h = max(x1 - x0, 0.0), max(y1 - y0, 0.0)
    return (
        f"[{vals[0]:.2f}, {vals[1]:.2f}, {vals[2]:.2f}, {vals[3]:.2f}] "
        '<svg width="48" height="48" viewBox="0 0 1 1" role="img" aria-label="alert box">'
        '<rect x="0" y="0" width="1" height="1" fill="#f6f8fa" stroke="#8c959f" '
        'stroke-width="0.03"/>'
        f'<rect x="{x0:.4f}" y="{y0:.4f}" width="{w:.4f}" height="{h:.4f}" fill="none" '
        'stroke="#c62828" stroke-width="0.05"/></svg>'
    )


def _episode_html(ep: _Episode, run: Mapping[str, Any], by_id: Mapping[str, _Episode]) -> str:
    paired = ep.get("paired_id")
    if isinstance(paired, str) and paired in by_id:
        pair = f'<a id="paired-link" href="{_href(by_id[paired].slug + ".html")}">{_e(paired)}</a>'
    else:
        pair = _text(paired)
    mcap = (
        f'<a id="mcap-link" href="{_href(ep.mcap_href)}" download>{_e(ep.get("mcap"))}</a>'
        if ep.mcap_href
        else DASH
    )
    outcome = str(ep.get("outcome") or "")
    facts = _facts(
        [
            ("policy", _text(ep.get("policy"))),
            ("scenario", _text(ep.get("scenario"))),
            ("seed", _text(ep.get("seed"))),
            ("gate", _gated(ep.get("gated"))),
            ("outcome", f'<span class="outcome-{_e(outcome)}">{_text(outcome)}</span>'),
            ("failure step", _failure_cell(ep)),
            ("failure reason", DASH if _held_at_the_end(ep) else _text(ep.get("failure_reason"))),
            ("shift onset step", _text(ep.get("onset"))),
            ("first stop step", _text(ep.get("first_stop_step"))),
            ("lead time s", _fmt(ep.get("lead_time_s"))),
            ("interventions", _text(ep.get("interventions"))),
            ("length (steps)", _text(ep.get("length"))),
            ("fps", _fmt(ep.get("fps"), 1)),
            ("paired episode", pair),
            ("recording (MCAP)", mcap),
        ]
    )
    if ep.strip_href and Path(ep.strip_href).suffix in VIDEO_SUFFIXES:
        strip = (
            f'<figure><video id="strip" src="{_href(ep.strip_href)}" controls muted loop '
            f'playsinline preload="metadata"></video><figcaption>camera strip</figcaption></figure>'
        )
    elif ep.strip_href:
        strip = _img(ep.strip_href, f"camera strip of {ep.id}", "animated camera strip", "strip")
    else:
        strip = f"<p class=muted>{DASH} no strip</p>"
    alerts = [a for a in ep.get("alerts") or [] if isinstance(a, Mapping)]
    alert_rows = [
        [
            _text(a.get("start_t")),
            _text(a.get("end_t")),
            f'<span class="gate-{_e(a.get("level"))}">{_text(a.get("level"))}</span>',
            _box_svg(a.get("box")),
            _text(a.get("onset_step")),
        ]
        for a in alerts
    ]
    alerts_html = (
        _table(
            ["start step", "end step", "level", "box [x0, y0, x1, y1]", "onset step"],
            alert_rows,
            "alerts",
        )
        if alert_rows
        else f"<p class=muted>{DASH} no alerts</p>"
    )
    decisions = [d for d in ep.get("decisions") or [] if isinstance(d, Mapping)]
    dec_rows = [
        [
            _text(d.get("t")),
            _fmt(d.get("risk"), 3),
            f'<span class="gate-{_e(d.get("decision"))}">{_text(d.get("decision"))}</span>',
            _e(", ".join(str(x) for x in d.get("reasons") or [])) or DASH,
            _fmt(d.get("latency_ms"), 1),
        ]
        for d in decisions
    ]
    decisions_html = (
        f"<details><summary>{len(dec_rows)} decisions</summary>"
        + _table(["step", "risk", "decision", "reasons", "latency ms"], dec_rows, "decisions")
        + "</details>"
        if dec_rows
        else f"<p class=muted>{DASH} no decisions</p>"
    )
    title = f"Episode {ep.id}"
    body = f"""<nav><a id="index-link" href="../index.html">← report index</a>
<a href="../index.html#episodes-section">all episodes</a></nav>
<h1>{_e(title)}</h1>
{facts}
<h2>Risk and gate timeline</h2>
{
        _img(
            ep.slug + "_timeline.png",
            f"risk timeline of {ep.id}",
            "risk (line, dots = decisions), gate state (bands), thresholds (dashed), onset / first "
            "STOP / failure (vertical lines)",
            "timeline",
        )
    }
<h2>Camera strip</h2>
{strip}
<h2>Alerts</h2>
{alerts_html}
<h2>Decisions</h2>
{decisions_html}"""
    return _page(title, body)


# -------------------------------------------------------------------------------------- API
def build_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the static report of a policy-evaluation run; return the path of ``index.html``.

    ``out`` defaults to ``run_dir / "report"``; a previous report there is replaced, any other
    non-empty directory is refused (see :func:`_prepare_out`). Raises :class:`ValueError` naming
    the file when ``run.json`` / ``summary.json`` is missing or unreadable or an episode file is
    malformed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist")
    run = _read_json(run_dir / "run.json", "run.json")
    summary = _read_json(run_dir / "summary.json", "summary.json")
    if not isinstance(run, dict):
        raise ValueError(f"run.json: {run_dir / 'run.json'} is not a JSON object")
    if not isinstance(summary, dict):
        raise ValueError(f"summary.json: {run_dir / 'summary.json'} is not a JSON object")
    if not isinstance(summary.get("rows", []), list):
        raise ValueError(f"summary.json: 'rows' in {run_dir / 'summary.json'} is not a list")
    episodes = _load_episodes(run_dir)

    out = Path(out) if out is not None else run_dir / "report"
    _prepare_out(run_dir, out)
    site = _Site(run_dir, out)

    plots: list[tuple[str, str, str, str | None]] = []
    rows = [r for r in summary.get("rows") or [] if isinstance(r, Mapping)]
    if plot_summary_rates(rows, run, out / "img" / "summary_rates.png"):
        plots.append(
            (
                "img/summary_rates.png",
                "success and failure rates with and without the gate",
                "Success / failure rate per scenario, gate off (hatched) vs on, Wilson 95 % CI.",
                "plot-summary",
            )
        )
    if plot_risk_timelines(episodes, run, out / "img" / "risk_timelines.png"):
        plots.append(
            (
                "img/risk_timelines.png",
                "median risk over time per scenario",
                "Median risk (IQR band) of gated runs over time since the shift onset (dash-dot), "
                "per scenario, vs thresholds.",
                "plot-risk",
            )
        )
    for sub in ("evaluate", "figures"):
        pattern = "roc_*.png" if sub == "evaluate" else "*.png"
        src_dir = run_dir / sub
        for png in sorted(src_dir.glob(pattern)) if src_dir.is_dir() else []:
            if not _inside(run_dir, png) or not png.is_file():
                continue
            rel = site.copy(png, f"img/{sub}/{png.name}")
            plots.append((rel, png.stem, _e(f"{sub}/{png.name}"), None))

    by_id = {e.id: e for e in episodes}
    for ep in episodes:
        mcap = site.run_file(ep.get("mcap"))
        if mcap is not None:
            ep.mcap_href = Path(
                os.path.relpath(
                    (out / site.reference(mcap, f"episodes/{ep.slug}.mcap")).resolve(),
                    (out / "episodes").resolve(),
                )
            ).as_posix()
        strip = site.run_file(ep.get("strip"))
        if strip is not None:
            suffix = strip.suffix.lower()
            if suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES:
                site.copy(strip, f"episodes/{ep.slug}{suffix}")
                ep.strip_href = f"{ep.slug}{suffix}"
            else:
                LOG.warning("episode %s: strip %s is not an image or video", ep.id, strip.name)
        if ep.get("mcap") and mcap is None:
            LOG.warning("episode %s: recording %r not found in the run dir", ep.id, ep.get("mcap"))

    site.write("index.html", _index_html(run, summary, episodes, plots, site))
    progress = tqdm(
        episodes,
        desc="report pages",
        unit="ep",
        disable=True if len(episodes) <= TQDM_MIN_EPISODES else None,
    )
    for ep in progress:
        plot_episode_timeline(ep, run, out / "episodes" / f"{ep.slug}_timeline.png")
        site.write(f"episodes/{ep.slug}.html", _episode_html(ep, run, by_id))
    LOG.info("report: %d episodes -> %s", len(episodes), out / "index.html")
    return out / "index.html"
