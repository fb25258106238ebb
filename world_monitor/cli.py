"""`world-monitor <command>`: the project's single command-line entry point.

Each sub-command takes its own flags plus any number of hydra overrides (``key=value``, e.g.
``data=small sim.image_size=128 seed=3``), composed with hydra's compose API (see
:mod:`world_monitor.config`). Heavy modules are imported inside each command so ``--help`` is
instant. Errors a user can fix (bad override, missing file, corrupt bag) are printed as one
clear line with exit code 2, never a traceback; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]

LOG = logging.getLogger("world_monitor")

DESCRIPTION = """\
world_monitor: a runtime safety monitor for robot policies.

An action-conditioned latent video world model rolls forward over the action chunk a policy is
about to execute; C3 calibrated uncertainty turns its predictions into a risk, a localised alert
and a gate (PROCEED / SLOW / STOP). This tool generates simulated data, converts rosbag2
recordings, trains, calibrates, evaluates, exports and replays the monitor, and runs it as a ROS 2
node (`world_monitor_node`).
"""

EPILOG = """\
hydra overrides: every command accepts trailing key=value overrides of the config tree
(config/ in the source tree), e.g.  world-monitor simulate data=small sim.image_size=128 seed=1
Run 'world-monitor COMMAND --help' for a command's flags.
"""


class UserError(RuntimeError):
    """An error caused by the user's input, reported as one line without a traceback."""


def _bundle_or_shipped(bundle: str | None) -> Path:
    """The bundle a command was given, or the one shipped inside the package."""
    if bundle:
        return Path(bundle)
    from world_monitor.defaults import default_bundle

    return default_bundle()


def _csv(text: str) -> list[str]:
    """A comma-separated flag value as its non-empty, stripped items."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="hydra config overrides, e.g. data=small sim.image_size=128 seed=3",
    )


def _cmd_simulate(args: argparse.Namespace) -> int:
    from world_monitor.config import load_config, save_resolved
    from world_monitor.data.generate import generate_dataset, print_summary

    cfg = load_config(args.overrides)
    root = Path(args.out or cfg.data.root)
    result = generate_dataset(cfg, root, workers=args.workers, progress=not args.no_progress)
    save_resolved(cfg, root, name="simulate_config.yaml")
    print_summary(result)
    if args.preview:
        from world_monitor.data.generate import write_dataset_preview

        path = write_dataset_preview(root, Path(args.preview))
        print(f"preview: {path}")
    return 0


def _cmd_preview(args: argparse.Namespace) -> int:
    from world_monitor.config import load_config
    from world_monitor.data.generate import write_scenario_preview

    cfg = load_config(args.overrides)
    path = write_scenario_preview(cfg, Path(args.out), onset=args.onset, seed=args.seed)
    print(f"preview: {path}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from world_monitor.data.inspect import format_report, inspect_path, strict_problems

    report = inspect_path(Path(args.path), action_field=args.action_field)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_report(report))
    problems = strict_problems(report) if args.strict else []
    if problems:
        raise UserError(f"--strict: {'; '.join(problems)}")
    return 0


def _positive_int(text: str) -> int:
    """An int >= 1 (argparse: a one-line usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return value


def _chunk_every(text: str) -> int | str:
    """``--chunk-every``: an int >= 1 or ``policy`` (argparse turns the ValueError into a
    one-line usage error, exit 2)."""
    if text == "policy":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1 or 'policy', got {text!r}")
    return value


def _cmd_export_bag(args: argparse.Namespace) -> int:
    from world_monitor.data.bag import export_path

    written = export_path(
        Path(args.source),
        Path(args.out),
        storage=args.storage,
        image_topic=args.image_topic,
        action_topic=args.action_topic,
        frame_id=args.frame_id,
        split=args.split,
        shift=args.shift,
        limit=args.limit,
        progress=not args.no_progress,
        chunk_every=args.chunk_every,
    )
    print(f"wrote {len(written)} bag(s) to {args.out}")
    for path in written[:10]:
        print(f"  {path}")
    if len(written) > 10:
        print(f"  ... and {len(written) - 10} more")
    return 0


def _import_prep_and_labels(args: argparse.Namespace) -> tuple[Any, Any]:
    """The --image-size/--image-resize/--crop-roi transform and the --labels of an import."""
    from world_monitor.data.frame_prep import FramePrep, parse_size

    prep = None
    if args.image_size:
        prep = FramePrep(parse_size(args.image_size), args.image_resize, args.crop_roi)
    elif args.crop_roi or args.image_resize != "stretch":
        raise UserError("--image-resize/--crop-roi need --image-size HxW (the bundle's input)")
    labels = None
    if args.labels:
        from world_monitor.data.labels import load_labels

        labels = load_labels(args.labels)  # LabelError: one line, exit 2
    return prep, labels


def _report_import(summary: dict[str, Any], out: Path) -> int:
    """A few lines for the terminal; the whole summary (per-recording reports) as JSON beside
    the dataset. Exit 1 when any recording failed (the good ones are imported)."""
    path = out / "import_summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    splits = ", ".join(f"{k} {v}" for k, v in summary.get("splits", {}).items()) or "none"
    print(
        f"imported {summary['imported']} episode(s) into {out} ({splits}); "
        f"{summary['skipped']} already there, {summary['failed']} failed"
    )
    if summary.get("labelled") or summary.get("unlabelled"):
        print(
            f"labels: {summary['labelled']} labelled, {len(summary['unlabelled'])} without a "
            "row (in-distribution)"
        )
    for name, err in list(summary["errors"].items())[:10]:
        print(f"  failed {name}: {err}")
    if len(summary["errors"]) > 10:
        print(f"  ... and {len(summary['errors']) - 10} more")
    print(f"details: {path}")
    return 0 if summary.get("failed", 0) == 0 else 1


def _cmd_import_bag(args: argparse.Namespace) -> int:
    from world_monitor.data.bag import import_paths

    prep, labels = _import_prep_and_labels(args)
    summary = import_paths(
        [Path(p) for p in args.bags],
        Path(args.out),
        image_topic=args.image_topic,
        action_topic=args.action_topic,
        split=args.split,
        labels=labels,
        split_seed=args.split_seed,
        progress=not args.no_progress,
        frame_prep=prep,
        action_field=args.action_field,
    )
    return _report_import(summary, Path(args.out))


def _cmd_import_lerobot(args: argparse.Namespace) -> int:
    from world_monitor.data.lerobot import LeRobotError, lerobot_sources
    from world_monitor.data.recorded import import_episodes

    prep, labels = _import_prep_and_labels(args)
    episodes = None
    if args.episodes:
        episodes = _parse_index_list(args.episodes, "--episodes")
    sources = lerobot_sources(
        args.dataset,
        camera=args.camera,
        action_key=args.action_key,
        fps=args.fps,
        episodes=episodes,
    )
    summary = import_episodes(
        sources,
        Path(args.out),
        split=args.split,
        labels=labels,
        split_seed=args.split_seed,
        progress=not args.no_progress,
        frame_prep=prep,
        source_errors=(LeRobotError,),
        desc="import episodes",
    )
    return _report_import(summary, Path(args.out))


def _parse_index_list(text: str, flag: str) -> list[int]:
    """``"0:10,12,15"`` -> ``[0, ..., 9, 12, 15]`` (``a:b`` is half-open, like Python)."""
    out: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            if ":" in part:
                lo, hi = (int(v) for v in part.split(":"))
                out.extend(range(lo, hi))
            else:
                out.append(int(part))
    except ValueError:
        raise UserError(f"{flag}: expected indices like 0:10,12, got {text!r}") from None
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    from world_monitor.config import load_config
    from world_monitor.training.trainer import train

    cfg = load_config(args.overrides)
    run_dir = Path(args.out or cfg.run_dir)
    data = Path(args.data or cfg.data.root)
    if not (data / "index.json").is_file():
        raise UserError(
            f"{data}: not a dataset (no index.json); generate one with 'world-monitor simulate' "
            "or pass --data DIR"
        )
    import shlex

    flags = ["--data", str(data), "--out", str(run_dir)]
    command = shlex.join(["world-monitor", "train", *flags, *args.overrides])
    from world_monitor.training.distributed import launch_torchrun, under_torchrun

    if str(cfg.train.get("distributed", "none")) == "ddp" and not under_torchrun():
        # re-launch as N local torchrun ranks (loopback rendezvous); rank 0 prints the result
        argv = ["train", *flags, *(["--no-progress"] if args.no_progress else []), *args.overrides]
        return launch_torchrun(int(cfg.train.get("processes", 2)), argv)
    result = train(cfg, run_dir, data_root=data, command=command, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"run dir: {result.run_dir}")
    print(f"bundle:  {result.bundle}")
    print("elapsed: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))
    return 0


def _cmd_evaluate_model(args: argparse.Namespace) -> int:
    from world_monitor.training.evaluate import (
        EvalOptions,
        evaluate_bundle,
        label_base_rates,
        print_table,
    )

    opts = EvalOptions(
        windows=args.windows,
        shift_windows=args.shift_windows,
        stride=args.stride,
        batch_size=args.batch_size,
        seed=args.seed,
        figures=args.figures,
        num_threads=args.threads,
        progress=not args.no_progress,
        mode=args.mode,
        num_inference_steps=args.steps,
        recalibrated=not args.raw_probe,
    )
    out = Path(args.out) if args.out else Path(args.bundle) / "evaluation"
    report = evaluate_bundle(Path(args.bundle), data_root=args.data, out_dir=out, options=opts)
    print_table(report)
    line, warnings = label_base_rates(report)
    print(line)
    for warning in warnings:
        print(warning)
    print(f"wrote {out / 'evaluation.json'}")
    return 0


def _replay_options(args: argparse.Namespace) -> dict[str, Any]:
    """replay_bag keyword arguments from the replay flags (shared by one bag and many)."""
    return {
        "image_topic": args.image_topic,
        "action_topic": args.action_topic,
        "image_resize": args.image_resize,
        "crop_roi": args.crop_roi,
        "overwrite": args.overwrite,
        "action_field": args.action_field,
        "check_fit": not args.no_fit_check,
    }


def _cmd_replay(args: argparse.Namespace) -> int:
    from world_monitor.replay import replay_bag

    args.bundle = str(_bundle_or_shipped(args.bundle))
    if len(args.bag) > 1 or args.workers > 1 or args.ray is not None:
        return _replay_many(args)
    result = replay_bag(
        Path(args.bag[0]),
        Path(args.out) if args.out else None,
        bundle=Path(args.bundle),
        backend=args.backend,
        progress=not args.no_progress,
        threads=args.threads,
        **_replay_options(args),
    )
    s = result.summary
    alerts = s["session"]["alerts"]
    print(
        f"replayed {s['messages']['read']} messages ({s['image_topic']}, {s['action_topic']}): "
        f"{s['session']['counts']['decisions']} decisions, {len(alerts)} alert(s), "
        f"final lock {'ENGAGED' if s['lock']['final'] else 'open'}"
    )
    for alert in alerts[:10]:
        print(
            f"  alert {alert['start']:.3f}-{alert['end']:.3f} s {alert['decision']} "
            f"{','.join(alert['reasons'])} box={alert['box']} onset_step={alert['onset_step']}"
        )
    drift = s["session"]["counts"].get("calibration_drift_decisions", 0)
    if drift:
        print(
            f"WARN calibration_drift: at {drift} of {s['session']['counts']['decisions']} "
            "decisions the model's confidence was wrong beyond anything seen in calibration "
            "(selfcheck above its calibration maximum): the calibrated bounds may not hold for "
            "this camera and scene"
        )
    if not s["messages"]["accounted"]:
        print(f"  accounting problems: {s['messages']['problems']}")
    print(f"bag: {result.bag_path}\nsummary: {result.summary_path}")
    return 0


def _replay_many(args: argparse.Namespace) -> int:
    """``replay BAG BAG ...`` (``--workers N`` processes or ``--ray [ADDRESS]``): one line per
    bag, totals, ``OUT/fleet.json``; a bag that fails is listed and the others go on."""
    from tqdm.auto import tqdm

    from world_monitor.fleet import FleetError
    from world_monitor.replay.many import fleet_summary, replay_bags

    bags = [Path(b) for b in args.bag]
    missing = [str(b) for b in bags if not b.exists()]
    if missing:
        raise UserError(f"no such bag: {', '.join(missing)}")
    out = Path(args.out) if args.out else None
    t0 = time.perf_counter()
    bar = tqdm(total=len(bags), desc="replay", unit="bag", disable=args.no_progress)
    try:
        results = replay_bags(
            bags,
            out,
            bundle=args.bundle,
            backend=args.backend,
            workers=args.workers,
            ray_address=args.ray,
            threads=args.threads,
            on_result=lambda _: bar.update(),
            **_replay_options(args),
        )
    except FleetError as exc:
        raise UserError(str(exc)) from None
    finally:
        bar.close()
    doc = fleet_summary(results, time.perf_counter() - t0)
    for row in doc["bags"]:
        if "error" in row:
            print(f"  FAILED {row['bag']}: {row['error']}")
        else:
            print(
                f"  {row['bag']}: {row['decisions']} decisions, {row['alerts']} alert(s) "
                f"({row['stops']} STOP), final lock {'ENGAGED' if row['final_lock'] else 'open'}"
            )
    tot = doc["totals"]
    where = f"Ray ({args.ray})" if args.ray is not None else f"{args.workers} process(es)"
    print(
        f"replayed {tot['bags'] - tot['failed']} of {tot['bags']} bags on {where}: "
        f"{tot['decisions']} decisions, {tot['alerts']} alert(s), {tot['recorded_s']:.1f} s "
        f"recorded in {tot['seconds']:.1f} s ({tot['x_real_time']:.1f}x real time)"
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "fleet.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
        print(f"fleet summary: {out / 'fleet.json'}")
    if tot["failed"]:
        raise UserError(f"{tot['failed']} of {tot['bags']} bag(s) failed (listed above)")
    return 0


#: top-level packages whose absence means "ROS 2 is not installed" to `play`
_ROS_PACKAGES = {"rclpy", "rpyutils", "rosidl_runtime_py", "builtin_interfaces", "rcl_interfaces"}


def _cmd_play(args: argparse.Namespace) -> int:
    """`play`: bag -> live ROS 2 graph. The ROS side is imported here only, so the core and
    every other command stay ROS-free; a missing ROS install is one line, exit 2."""
    try:
        from world_monitor.ros import play as player
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in _ROS_PACKAGES:
            raise
        raise UserError(
            f"needs ROS 2 (rclpy), which is not importable ({exc}): install the ROS 2 wheels "
            "into this environment with `bash scripts/setup.sh`"
        ) from None
    try:
        remaps = dict(player.parse_remap(r) for r in args.remap or [])
        topics = [t for item in args.topics or [] for t in _csv(item)] or None
        options = player.PlayOptions(
            topics=topics,
            rate=args.rate,
            loops=args.loop,
            start_offset=args.start_offset,
            remaps=remaps,
            qos=args.qos,
            clock_hz=args.clock,
            restamp=args.restamp,
            wait_subscribers=args.wait_subscribers,
            wait_timeout=args.wait_timeout,
            delay=args.delay,
            progress=not args.no_progress,
        )
        report = player.play_bag(Path(args.bag), options)
    except player.PlayError as exc:
        raise UserError(str(exc)) from None
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        _print_play_report(report)
    # 130 like any interrupted command (the summary above is complete up to the stop)
    return 130 if report.interrupted else 0


def _print_play_report(report: Any) -> None:
    state = "interrupted" if report.interrupted else "done"
    print(
        f"played {report.bag}: {report.published_total} messages in {report.wall_s:.2f} s "
        f"({report.messages_per_s:.1f} msg/s), {report.bag_s:.2f} s of bag time "
        f"(achieved rate {report.achieved_rate:.2f}x), {report.loops_completed} loop(s) "
        f"completed, {state}"
    )
    for rep in sorted(report.topics.values(), key=lambda r: r.topic):
        if rep.skipped:
            print(f"  skipped {rep.topic} [{rep.msgtype}] ({rep.in_bag} msgs): {rep.skipped}")
            continue
        where = rep.topic if rep.published_as == rep.topic else f"{rep.topic} -> {rep.published_as}"
        extra = f", {rep.restamped} restamped" if rep.restamped else ""
        print(f"  {where} [{rep.msgtype}]: {rep.published} published{extra} ({rep.in_bag} in bag)")
    if report.clock_published:
        print(f"  /clock [rosgraph_msgs/msg/Clock]: {report.clock_published} published")
    if report.skipped_messages:
        print(f"  {report.skipped_messages} message(s) of skipped topics not published")
    print(
        f"  max lag behind schedule {report.max_lag_s * 1e3:.1f} ms, "
        f"{report.subscribers_matched} subscription(s) matched at start"
    )


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from world_monitor.runtime.calibrate import bundle_epsilon, calibrate_bundle
    from world_monitor.runtime.risk import RiskConfig, format_risk

    risk = RiskConfig(
        epsilon=bundle_epsilon(args.bundle) if args.epsilon is None else args.epsilon,
        confidence_level=args.confidence_level,
        signals=tuple(_csv(args.signals)),
        scale=args.scale,
    )
    result = calibrate_bundle(
        Path(args.bundle),
        Path(args.data),
        risk=risk,
        stop_alpha=args.false_stop_rate,
        slow_alpha=args.slow_rate,
        stride=args.stride,
        scale_split=args.scale_split,
        verify_split=None if args.no_verify else "test",
        limit=args.limit,
        backend=args.backend,
        engines_dir=args.engines_dir,
        progress=not args.no_progress,
        recalibrate_probe=not args.no_probe_recalibration,
        recalibration_windows=args.recalibration_windows,
    )
    cal = result.calibration
    print(f"calibrated {args.bundle} in {result.seconds:.1f} s ({result.decisions} decisions)")
    if "probe_recalibration" in cal.info:
        n = cal.info["probe_recalibration"]["info"].get("windows")
        print(
            f"  probe confidence recalibrated (beta calibration per eps) on {n} calibration windows"
        )
    print(f"  risk: signals {list(cal.config.signals)} at epsilon {cal.config.epsilon}")
    for name, why in cal.info.get("excluded_signals", {}).items():
        print(f"  left out: {name}: {why}")
    print(
        f"  SLOW above {format_risk(cal.slow_threshold)} (episode false-alarm bound "
        f"{cal.info['slow_bound']:.3f}), STOP above {format_risk(cal.stop_threshold)} (bound "
        f"{cal.info['stop_bound']:.3f})"
    )
    if result.verify:
        v = result.verify
        print(
            f"  verified on {v['episodes']} in-distribution {v['split']} episodes: false-stop "
            f"rate {v['false_stop_rate']:.3f} (bound {v['stop_bound']:.3f}), false-slow rate "
            f"{v['false_slow_rate']:.3f} (bound {v['slow_bound']:.3f})"
        )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import shlex

    from world_monitor.runtime.evaluate import (
        BASELINES,
        EvaluateOptions,
        calibration_drift_lines,
        evaluate_bundle,
        format_table,
        localisation_lines,
        side_by_side_lines,
    )
    from world_monitor.runtime.severity import format_severity_markdown

    shipped = args.bundle is None
    bundle = _bundle_or_shipped(args.bundle)
    args.bundle = str(bundle)
    data = Path(args.data)
    if not (data / "index.json").is_file():
        raise UserError(f"{data}: not a dataset (no index.json); pass --data DIR")
    # never write into the installed package next to the shipped bundle
    default_out = Path("runs/eval_monitor") if shipped else bundle.resolve().parent / "eval_monitor"
    out = Path(args.out) if args.out else default_out
    baselines = _csv(args.baselines)
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise UserError(f"--baselines {unknown}: choose from {','.join(BASELINES)}")
    flags = ["--data", str(data), "--out", str(out), "--stride", str(args.stride)]
    flags += ["--seeds", str(args.seeds), "--baselines", ",".join(baselines)]
    flags += ["--backend", args.backend]
    if args.limit:
        flags += ["--limit", str(args.limit)]
    for member in args.ensemble or []:
        flags += ["--ensemble", member]
    severities, severity_note = _sweep_severities(args.severities, data)
    flags += ["--severities", ",".join(f"{v:g}" for v in severities) or "none"]
    flags += ["--severity-episodes", str(args.severity_episodes)]
    opts = EvaluateOptions(
        stride=args.stride,
        limit=args.limit,
        backend=args.backend,
        engines_dir=args.engines_dir,
        baselines=baselines,
        ensemble=list(args.ensemble or []),
        seeds=args.seeds,
        fpr=args.fpr,
        num_threads=args.threads,
        progress=not args.no_progress,
        command=shlex.join(["world-monitor", "evaluate", str(bundle), *flags]),
        severities=severities,
        severity_episodes=args.severity_episodes,
        severity_note=severity_note,
    )
    report = evaluate_bundle(bundle, data, out, opts)
    header, rows = format_table(report)
    print(f"monitor evaluation: {report['command']}")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    ranking = report["mean_over_families"]
    print(
        "mean episode AUROC over families: "
        + ", ".join(f"{k} {ranking['episode_auroc'][k]:.3f}" for k in ranking["ranking"])
    )
    for name, status in report["baselines_status"].items():
        print(f"  {name}: {status}")
    for line in [
        *side_by_side_lines(report),
        *localisation_lines(report),
        *calibration_drift_lines(report),
    ]:
        print(line)
    sweep = report["severity_sweep"]
    if sweep["run"]:
        print("episode AUROC of the risk by severity (STOPs), default severity last:")
        for line in format_severity_markdown(sweep):
            print(line)
    else:
        print(f"severity sweep: {sweep['why']}")
    print(f"wrote {out / 'evaluation.json'}, {out / 'evaluation.md'} and figures")
    return 0


def _sweep_severities(text: str | None, data: Path) -> tuple[tuple[float, ...], str]:
    """The severities to sweep and, when none, why: by default the sweep runs whenever the
    dataset can be re-simulated; asking for one explicitly on a dataset that cannot is an error."""
    from world_monitor.runtime.severity import (
        DEFAULT_SEVERITIES,
        SIMULATE_CONFIG,
        can_sweep,
        parse_severities,
        require_sweepable,
    )

    if text is None:
        if can_sweep(data):
            return DEFAULT_SEVERITIES, ""
        return (
            (),
            f"not run: {data} has no {SIMULATE_CONFIG} (not made by `world-monitor simulate`)",
        )
    try:
        severities = parse_severities(text)
        if severities:
            require_sweepable(data)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return severities, "" if severities else "not run (--severities none)"


def _cmd_export(args: argparse.Namespace) -> int:
    from world_monitor.runtime.export import export_bundle

    args.bundle = str(_bundle_or_shipped(args.bundle))
    out = export_bundle(Path(args.bundle), Path(args.engines_dir), args.opset)
    info = json.loads((out / "export.json").read_text())
    print(f"exported ONNX graphs of {args.bundle} to {out}")
    for name, graph in sorted(info.get("graphs", {}).items()):
        diffs = graph.get("parity", {}).get("max_abs_diff", {})
        worst = max(diffs.values()) if diffs else float("nan")
        print(f"  {graph.get('file', name)}: parity max |onnx - torch| = {worst:.2e}")
    return 0


def _policy_eval_options(args: argparse.Namespace, command: list[str]) -> Any:
    """PolicyEvalOptions from the shared evaluate-policy/demo flags (bad values: one line)."""
    import shlex

    from world_monitor.report.evaluate_policy import PolicyEvalOptions, parse_policies

    try:
        policies = parse_policies(args.policies)
    except ValueError as exc:
        raise UserError(f"--policies: {exc}") from None
    scenarios = _csv(args.scenarios) or None
    onsets = tuple(_csv(args.onsets))
    return PolicyEvalOptions(
        policies=policies,
        scenarios=scenarios,
        seeds=args.seeds,
        onsets=onsets,
        mid_onset=args.mid_onset,
        slow_scale=args.slow_scale,
        workers=args.workers,
        ray=args.ray,
        backend=args.backend,
        engines_dir=args.engines_dir,
        mcap=not args.no_mcap,
        strips_per_cell=args.strips,
        evaluate=not args.no_evaluate,
        progress=not args.no_progress,
        command=shlex.join(command),
    )


def _run_policy_eval(args: argparse.Namespace, name: str) -> int:
    from world_monitor.config import load_config
    from world_monitor.data.generate import sim_config_from
    from world_monitor.report.demo import print_summary
    from world_monitor.report.evaluate_policy import run_policy_evaluation
    from world_monitor.report.html import build_report

    bundle = _bundle_or_shipped(args.bundle)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UserError(f"{out} exists and is not empty (pass --overwrite or another --out)")
    if out.exists() and args.overwrite:
        import shutil

        shutil.rmtree(out)
    cfg = load_config(list(args.overrides))
    argv = ["world-monitor", name, *sys.argv[2:]] if sys.argv[1:2] == [name] else [name]
    opts = _policy_eval_options(args, argv)
    from world_monitor.fleet import FleetError

    try:
        doc = run_policy_evaluation(bundle, out, sim_config_from(cfg), opts)
    except (ValueError, FleetError) as exc:
        raise UserError(str(exc)) from None
    report = build_report(out)
    print_summary(doc, report)
    if args.serve:
        from world_monitor.report.serve import serve

        serve(out, port=args.port)
    return 0


def _cmd_evaluate_policy(args: argparse.Namespace) -> int:
    return _run_policy_eval(args, "evaluate-policy")


def _cmd_demo(args: argparse.Namespace) -> int:
    return _run_policy_eval(args, "demo")


def _cmd_report(args: argparse.Namespace) -> int:
    from world_monitor.report.html import build_report

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory (made by evaluate-policy or demo)")
    index = run_dir / "report" / "index.html"
    if args.serve and _report_is_current(run_dir, index):
        # serve at once: rebuilding every page and plot takes ~20-60 s (issue 18)
        print(
            f"report: {index} (up to date with the run; `world-monitor report {run_dir}` rebuilds)"
        )
    else:
        print(f"building the report of {run_dir} (every episode page and plot) ...", flush=True)
        try:
            index = build_report(run_dir)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        print(f"report: {index}")
    if args.serve:
        from world_monitor.report.serve import serve

        try:
            serve(run_dir, host=args.host, port=args.port, allow_remote=args.allow_remote)
        except ValueError as exc:  # a non-loopback host without --allow-remote
            raise UserError(str(exc)) from None
    return 0


def _report_is_current(run_dir: Path, index: Path) -> bool:
    """Whether ``index`` exists and is newer than every file the report is built from."""
    if not index.is_file():
        return False
    built = index.stat().st_mtime
    sources = [run_dir / "run.json", run_dir / "summary.json"]
    sources += (
        list((run_dir / "episodes").glob("*.json")) if (run_dir / "episodes").is_dir() else []
    )
    return all(src.stat().st_mtime <= built for src in sources if src.exists())


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree; exposed so tests can check every command's --help."""
    parser = argparse.ArgumentParser(
        prog="world-monitor",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "simulate",
        help="generate a simulated episode dataset (resumable, uses all cores)",
        description="Simulate the built-in tabletop robot under in-distribution and shifted "
        "scenarios and write an on-disk dataset with train/val/calib/test splits and a test set "
        "per shift family. Re-running resumes: finished episodes are kept.",
        epilog="example: world-monitor simulate data=small --preview preview.png",
    )
    p.add_argument("--out", help="dataset directory (default: data.root from the config)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument(
        "--preview", metavar="PNG", help="also write a preview image, one row per scenario"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_overrides(p)
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser(
        "preview",
        help="render one episode per scenario with its shift mask overlaid (PNG)",
        description="Simulate one short episode per scenario (in-distribution and every shift "
        "family at its default severity) and save a grid image with shift masks in cyan.",
    )
    p.add_argument("--out", default="preview.png", help="output PNG (default: preview.png)")
    p.add_argument("--onset", type=int, default=None, help="mid-episode shift onset frame")
    p.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    _add_overrides(p)
    p.set_defaults(func=_cmd_preview)

    p = sub.add_parser(
        "inspect",
        help="summarise a dataset directory or a rosbag2 (and count bad messages)",
        description="Summarise a dataset (episodes per scenario/split, success rate) or a rosbag2 "
        "(topics, rates, image size/encoding, action layout) and account for every message as "
        "usable or rejected with a reason.",
    )
    p.add_argument("path", help="dataset directory, rosbag2 directory, or .mcap/.db3 file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 (one line saying why) if any message is unreadable, rejected or unaccounted",
    )
    _add_action_field(p)
    p.set_defaults(func=_cmd_inspect, overrides=[])

    p = sub.add_parser(
        "export-bag",
        help="write episodes of a dataset as rosbag2 recordings (MCAP or sqlite3)",
        description="Export episodes as rosbag2: sensor_msgs/Image (rgb8) camera frames and "
        "trajectory_msgs/JointTrajectory action chunks, plus episode metadata and shift masks "
        "so the round trip is lossless. One bag per episode.",
    )
    p.add_argument("source", help="dataset directory")
    p.add_argument("out", help="output directory for the bags")
    p.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    p.add_argument("--image-topic", default="/camera/image_raw")
    p.add_argument("--action-topic", default="/policy/action_chunk")
    p.add_argument("--frame-id", default="camera")
    p.add_argument("--split", default=None, help="only this split (train/val/calib/test)")
    p.add_argument("--shift", default=None, help="only this shift family ('none' = in-dist.)")
    p.add_argument("--limit", type=int, default=None, help="at most this many episodes")
    p.add_argument(
        "--chunk-every",
        type=_chunk_every,
        default=1,
        metavar="N|policy",
        help="publish an action chunk every N frames (default 1: with every frame, so replay "
        "decides on every frame); 'policy': at the episode's re-plan rate, as the robot's "
        "policy published them (the simulator's: every 4 frames)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_export_bag, overrides=[])

    p = sub.add_parser(
        "import-bag",
        help="read rosbag2 recordings into a dataset directory",
        description="Import rosbag2 recordings (sqlite3 or MCAP; Image or CompressedImage; "
        "JointTrajectory or Float32MultiArray action chunks) into a dataset, synchronising "
        "actions to frames by stamp. Topics are auto-detected by type unless given.",
    )
    p.add_argument("bags", nargs="+", help="rosbag2 directories or files")
    p.add_argument("--out", required=True, help="dataset directory to write")
    p.add_argument("--image-topic", default=None)
    p.add_argument("--action-topic", default=None)
    _add_import_options(p)
    _add_action_field(p)
    p.set_defaults(func=_cmd_import_bag, overrides=[])

    p = sub.add_parser(
        "import-lerobot",
        help="read a local LeRobot dataset (v2.x / v3.0 layout) into a dataset directory",
        description="Import a local LeRobot dataset (meta/info.json, parquet tables, image or "
        "mp4 video cameras; layouts v2.0, v2.1, v3.0) into a dataset: one episode per LeRobot "
        "episode, frames from --camera, actions from --action-key. Nothing is fetched from a "
        "hub; the dataset is only read. Needs the lerobot extra (pyarrow, av).",
    )
    p.add_argument("dataset", help="LeRobot dataset directory (the one holding meta/info.json)")
    p.add_argument("--out", required=True, help="dataset directory to write")
    p.add_argument("--camera", default=None, help="camera feature key (default: the only one)")
    p.add_argument("--action-key", default="action", help="action feature key (default action)")
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        help="keep every n-th frame to reach this rate (the dataset's fps / a whole number); "
        "actions are those recorded at the kept frames (right for absolute targets; record "
        "delta actions at the monitor's rate)",
    )
    p.add_argument("--episodes", default=None, help="only these episode indices, e.g. 0:50,60")
    _add_import_options(p)
    p.set_defaults(func=_cmd_import_lerobot, overrides=[])

    p = sub.add_parser(
        "train",
        help="train VAE -> latent cache -> dynamics + C3 probe and write a monitor bundle",
        description="Train the world model in stages (VAE on train frames, latent cache, "
        "dynamics + C3 probe on k+H windows) and write RUN/bundle. Re-running with the same "
        "--out resumes: finished stages are skipped, the dynamics stage continues from its last "
        "checkpoint. Groups: model=diffusion|deterministic, train=default|tiny|gpu, data=...",
        epilog="example: world-monitor train --data datasets/default --out runs/default "
        "model=diffusion train=default   (flags first, then the hydra overrides)",
    )
    p.add_argument("--data", help="dataset directory (default: data.root from the config)")
    p.add_argument(
        "--out", help="run directory (default: run_dir from the config); reuse to resume"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_overrides(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "evaluate-model",
        help="calibration (ECE/MCE/Brier/AUROC) and prediction quality of a bundle, ID and per shift",
        description="Roll the bundle's world model out on held-out in-distribution test windows "
        "and on each shift family's test episodes (windows after the onset), and report C3 "
        "calibration (ECE/MCE with 20 bins, Brier, skill, AUROC, correlations) and prediction "
        "quality (latent L1, PSNR, SSIM) against a copy-last-frame baseline. Writes "
        "evaluation.json, reliability diagrams and heatmap figures.",
    )
    p.add_argument("bundle", help="monitor bundle directory")
    p.add_argument("--data", help="dataset directory (default: the one the bundle was trained on)")
    p.add_argument("--out", help="output directory (default: BUNDLE/evaluation)")
    p.add_argument(
        "--windows",
        type=int,
        default=512,
        help="in-distribution test windows (default 512: MCE needs populated bins)",
    )
    p.add_argument(
        "--shift-windows", type=int, default=32, help="windows per shift family (default 32)"
    )
    p.add_argument("--stride", type=int, default=2, help="frames between window starts (default 2)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per rollout batch")
    p.add_argument("--figures", type=int, default=1, help="heatmap figures per split (default 1)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument(
        "--mode",
        choices=["joint", "autoregressive"],
        default=None,
        help="override the bundle's generation mode (diffusion bundles only)",
    )
    p.add_argument("--steps", type=int, default=None, help="override the DDIM steps")
    p.add_argument("--seed", type=int, default=0, help="window selection and sampling seed")
    p.add_argument(
        "--raw-probe",
        action="store_true",
        help="score the probe's own confidence even if the bundle stores a post-hoc "
        "recalibration (by default the recalibrated confidence is scored, the raw one beside it)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_evaluate_model, overrides=[])

    p = sub.add_parser(
        "export",
        help="export a bundle's graphs to ONNX (encoder, denoise/predict step, decoder)",
        description="Export the graphs one decision needs (VAE encoder, denoiser+probe step or "
        "predictor+probe step, VAE decoder) to engines/<bundle hash>/onnx with opset 17, each "
        "checked against torch (parity failure is an error). The onnxruntime and TensorRT "
        "backends read them from there; TensorRT builds and caches its plans on first use.",
    )
    p.add_argument("bundle", nargs="?", default=None, help="bundle (default: the shipped one)")
    p.add_argument("--engines-dir", default="engines", help="engine cache (default: engines/)")
    p.add_argument("--opset", type=int, default=17)
    p.set_defaults(func=_cmd_export, overrides=[])

    from world_monitor.runtime.risk import SCALES, SIGNALS, RiskConfig

    p = sub.add_parser(
        "calibrate",
        help="fit the risk scale and SLOW/STOP thresholds of a bundle (split conformal)",
        description="Run the monitor over the in-distribution calibration split and write the "
        "bundle's calibration.json: per-signal in-distribution score distributions (the risk "
        "scale), and SLOW/STOP thresholds chosen by split-conformal calibration on each "
        "episode's maximum risk, so at most --false-stop-rate of in-distribution episodes ever "
        "reach STOP. Verifies the achieved rate on the test split.",
        epilog="example: world-monitor calibrate runs/default/bundle --data datasets/default",
    )
    p.add_argument("bundle", help="monitor bundle directory (updated in place)")
    p.add_argument("--data", default="datasets/default", help="dataset with a calib split")
    p.add_argument(
        "--epsilon",
        type=float,
        default=None,
        help="C3 tolerance (default: the bundle's, 0.5 unless it was trained with eps.mode=data)",
    )
    p.add_argument("--confidence-level", type=float, default=0.5, help="q below this = doubted")
    p.add_argument(
        "--signals",
        default=",".join(RiskConfig().signals),
        help="risk signals to fuse (max of in-distribution ranks): "
        f"{', '.join(SIGNALS)} (default {','.join(RiskConfig().signals)})",
    )
    p.add_argument(
        "--scale",
        choices=SCALES,
        default="episode",
        help="rank each signal against in-distribution episodes' maxima of it (episode, the "
        "default: a signal with a heavy tail no longer sets STOP for all) or against single "
        "decisions (decision, before v0.8)",
    )
    p.add_argument(
        "--scale-split",
        default=None,
        metavar="SPLIT",
        help="fit the risk scale on this split (e.g. val) and the thresholds on the whole calib "
        "split (default: halve the calib split; more threshold episodes give a false-stop rate "
        "closer to the target)",
    )
    p.add_argument("--false-stop-rate", type=float, default=0.02, help="STOP target per episode")
    p.add_argument("--slow-rate", type=float, default=0.10, help="SLOW target per episode")
    p.add_argument("--stride", type=int, default=4, help="a decision every N frames (default 4)")
    p.add_argument(
        "--no-probe-recalibration",
        action="store_true",
        help="use the probe's confidence as trained (default: fit a monotone post-hoc map per "
        "eps on calibration rollouts first; evaluate-model reports both)",
    )
    p.add_argument(
        "--recalibration-windows",
        type=int,
        default=128,
        help="calibration windows the probe recalibration is fitted on (default 128)",
    )
    p.add_argument("--limit", type=int, default=None, help="at most N episodes per split")
    p.add_argument("--backend", default="onnxruntime,torch", help="backend preference order")
    p.add_argument("--engines-dir", default="engines")
    p.add_argument("--no-verify", action="store_true", help="skip the test-split check")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_calibrate, overrides=[])

    p = sub.add_parser(
        "evaluate",
        help="detection, stopping and localisation of a calibrated monitor vs baselines, per shift",
        description="Roll the calibrated monitor out at the decision points (every --stride "
        "frames) of the in-distribution test split and of every shift family's test episodes "
        "(both onsets) and report, per family: decision- and episode-level AUROC of the monitor's fused risk, "
        "of each raw signal alone and of baselines run in the same pass (seed spread, ensemble "
        "disagreement, VAE reconstruction error, oracle prediction error); TPR at the calibrated "
        "STOP/SLOW thresholds; the false-stop rate; stopped-before-failure and lead time; and "
        "DeepTraceReward-style localisation. Writes evaluation.json, evaluation.md and ROC PNGs.",
        epilog="example: world-monitor evaluate runs/default/bundle --data datasets/default "
        "--ensemble runs/deterministic/bundle",
    )
    p.add_argument(
        "bundle",
        nargs="?",
        default=None,
        help="calibrated monitor bundle directory (default: the shipped bundle)",
    )
    p.add_argument("--data", default="datasets/default", help="dataset with a test split")
    p.add_argument("--out", default=None, help="output directory (default: BUNDLE/../eval_monitor)")
    p.add_argument("--stride", type=int, default=4, help="a decision every N frames (default 4)")
    p.add_argument("--limit", type=int, default=None, help="at most N episodes per family")
    p.add_argument("--backend", default="onnxruntime,torch", help="backend preference order")
    p.add_argument("--engines-dir", default="engines")
    p.add_argument(
        "--baselines",
        default="spread,ensemble,recon,oracle,fiper,fail_detect",
        help="baselines to run: spread, ensemble, recon, oracle, fiper, fail_detect (the two "
        "peer failure detectors, fitted on the dataset's train/calib splits; default: all)",
    )
    p.add_argument(
        "--ensemble",
        action="append",
        metavar="BUNDLE",
        help="another bundle for the ensemble baseline (repeatable); none = 'not run'",
    )
    p.add_argument("--seeds", type=int, default=4, help="sampling seeds for the spread (default 4)")
    p.add_argument("--fpr", type=float, default=0.05, help="false-positive rate for TPR@FPR")
    p.add_argument(
        "--severities",
        default=None,
        help="re-simulate each family's first --severity-episodes shifted test episodes (same "
        "seeds and onsets) at these severities for a by-severity table, e.g. 0.25,0.5,1; 'none' "
        "to skip (default: 0.25,0.5,1 when the dataset was made by `simulate`)",
    )
    p.add_argument(
        "--severity-episodes",
        type=int,
        default=10,
        help="shifted episodes per family and severity in the sweep (default 10)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_evaluate, overrides=[])

    p = sub.add_parser(
        "replay",
        help="replay a rosbag2 recording through the monitor (MCAP + JSON summary)",
        description="Drive the monitor over a rosbag2 recording (sqlite3 or MCAP) in recorded "
        "time order with the ROS node's semantics and write an MCAP with the input topics plus "
        "/world_monitor/lock, /world_monitor/risk, /world_monitor/heatmap and /diagnostics, and "
        "OUT/summary.json (decisions, alerts, latency, an account of every message).",
        epilog="example: world-monitor replay episode_bag --bundle runs/default/bundle "
        "--out episode_monitor   then: ros2 bag play episode_monitor",
    )
    p.add_argument("bag", nargs="+", help="rosbag2 directory or .mcap/.db3 file (one or more)")
    p.add_argument(
        "--out",
        default=None,
        help="output rosbag2 directory (default: BAG_monitor); with several bags a directory "
        "that gets one output per bag and fleet.json",
    )
    p.add_argument(
        "--bundle", default=None, help="monitor bundle directory (default: the shipped bundle)"
    )
    p.add_argument("--backend", default=None, help="backend order, e.g. tensorrt,onnxruntime")
    p.add_argument("--image-topic", default=None, help="default: the only image topic")
    p.add_argument("--action-topic", default=None, help="default: the only action topic")
    p.add_argument(
        "--image-resize",
        default="stretch",
        choices=["stretch", "center_crop", "letterbox"],
        help="camera frames of another size -> the bundle's (as the node's image_resize)",
    )
    p.add_argument(
        "--crop-roi",
        default=None,
        metavar="X,Y,W,H",
        help="crop in camera pixels before the resize (as the node's image_crop_roi)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    _add_action_field(p)
    p.add_argument(
        "--no-fit-check",
        action="store_true",
        help="replay even when the first messages do not fit the bundle (action dim, horizon, "
        "camera rate); every mismatched message is then rejected and counted",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="compute coming decisions' model passes ahead on this many threads (default: the "
        "cores, at most 4; 1 = sequential); the decisions are the same either way",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="replay several bags on this many processes (each loads the monitor once)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="replay the bags as Ray tasks: on the cluster at ADDRESS (shared filesystem "
        "needed), or without ADDRESS on a private local cluster of --workers CPUs",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_replay, overrides=[])

    p = sub.add_parser(
        "play",
        help="play a rosbag2 recording into the live ROS 2 graph (no `ros2 bag play` needed)",
        description="Publish the messages of a rosbag2 recording (sqlite3 or MCAP) on their "
        "topics with the recorded timing, for ROS 2 installed from pip wheels, which has no "
        "`ros2 bag play`. Exported bags start at t=0 and a zero stamp means 'unset' in ROS: "
        "use --restamp to move header stamps to now, or --clock with use_sim_time nodes. "
        "Ctrl-C stops cleanly: the summary is printed and the exit code is 130.",
        epilog="example: world-monitor play episode_bag --restamp --rate 2 "
        "--remap /camera/image_raw:=/image --remap /policy/action_chunk:=/action_chunk "
        "--wait-subscribers 2",
    )
    p.add_argument("bag", help="rosbag2 directory or .mcap/.db3 file")
    p.add_argument(
        "--topics",
        action="append",
        metavar="T1,T2",
        help="play only these bag topics (comma-separated, repeatable; default: all)",
    )
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1)")
    p.add_argument(
        "--loop",
        type=int,
        nargs="?",
        const=0,
        default=1,
        metavar="N",
        help="play N times; --loop alone repeats until Ctrl-C",
    )
    p.add_argument(
        "--start-offset", type=float, default=0.0, metavar="S", help="skip S s of bag time"
    )
    p.add_argument(
        "--remap",
        action="append",
        metavar="/FROM:=/TO",
        help="publish bag topic /FROM on /TO (repeatable)",
    )
    p.add_argument(
        "--qos",
        choices=["auto", "reliable", "sensor-data"],
        default="auto",
        help="publisher QoS: auto = reliable keep-last 10 (matches reliable and sensor-data "
        "subscribers), transient-local where the recording was; sensor-data = best effort",
    )
    p.add_argument(
        "--clock",
        type=float,
        nargs="?",
        const=40.0,
        default=None,
        metavar="HZ",
        help="publish /clock with the bag time at HZ (default 40) for use_sim_time nodes",
    )
    p.add_argument(
        "--restamp",
        action="store_true",
        help="rewrite header.stamp of messages with a header onto the current time, keeping "
        "the recorded relative timing (needed for bags that start at t=0)",
    )
    p.add_argument(
        "--wait-subscribers",
        type=int,
        default=0,
        metavar="N",
        help="before playing, wait for N matched subscriptions summed over the played topics "
        "(the monitor node: 2)",
    )
    p.add_argument(
        "--wait-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="give up waiting for subscribers after S s and play anyway (default 10)",
    )
    p.add_argument(
        "--delay", type=float, default=0.0, metavar="S", help="wait S s more before playing"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_play, overrides=[])

    for name, seeds, policies, strips, help_text in (
        (
            "evaluate-policy",
            6,
            "scripted,scripted:0.3,bad",
            2,
            "closed-loop policy evaluation in the simulator with and without the gate",
        ),
        (
            "demo",
            4,
            "scripted,bad",
            1,
            "the main demo: closed-loop runs + evaluation + HTML report on the shipped bundle",
        ),
    ):
        p = sub.add_parser(
            name,
            help=help_text,
            description="Run policies in the simulator under every scenario (in-distribution "
            "and each shift family, from the start and mid-episode), each episode twice: gate "
            "in shadow mode (open) and gate enforcing (STOP holds the arm, SLOW scales it). "
            "Writes per-episode JSON + MCAP + animated strips, runs `evaluate` on the nominal "
            "policy's episodes, aggregates with Wilson/bootstrap intervals and writes the HTML "
            "report (OUT/report/index.html).",
            epilog=f"example: world-monitor {name} --out runs/{name.split('-')[0]} --serve",
        )
        p.add_argument(
            "--bundle", default=None, help="monitor bundle directory (default: the shipped one)"
        )
        p.add_argument("--out", default=f"runs/{name}", help=f"run directory (default runs/{name})")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
        p.add_argument(
            "--policies",
            default=policies,
            help=f"comma-separated name[:noise], first = nominal (default {policies})",
        )
        p.add_argument("--scenarios", default="", help="comma-separated (default: all)")
        p.add_argument(
            "--seeds", type=int, default=seeds, help=f"episodes per cell and onset ({seeds})"
        )
        p.add_argument("--onsets", default="start,mid", help="start and/or mid (default both)")
        p.add_argument("--mid-onset", type=int, default=20, help="frame of a mid onset (20)")
        p.add_argument("--slow-scale", type=float, default=0.5, help="command scale on SLOW (0.5)")
        p.add_argument("--workers", type=int, default=0, help="processes (0 = one per core)")
        p.add_argument(
            "--ray",
            nargs="?",
            const="local",
            default=None,
            metavar="ADDRESS",
            help="run the episodes as Ray tasks: on the cluster at ADDRESS (the run directory "
            "must be on a filesystem every node sees), or without ADDRESS on a private local "
            "cluster of --workers CPUs",
        )
        p.add_argument("--backend", default="onnxruntime,torch", help="backend order")
        p.add_argument("--engines-dir", default="engines", help="engine cache directory")
        p.add_argument("--no-mcap", action="store_true", help="no per-episode MCAP files")
        p.add_argument(
            "--strips",
            type=int,
            default=strips,
            help=f"animated strips per policy, scenario and onset ({strips})",
        )
        p.add_argument("--no-evaluate", action="store_true", help="skip the `evaluate` pass")
        p.add_argument("--serve", action="store_true", help="serve the report afterwards")
        p.add_argument("--port", type=int, default=8000, help="port for --serve (8000)")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        _add_overrides(p)
        p.set_defaults(func=_cmd_demo if name == "demo" else _cmd_evaluate_policy)

    p = sub.add_parser(
        "report",
        help="(re)build the HTML report of an evaluate-policy/demo run, optionally serve it",
        description="Write RUN_DIR/report/index.html (self-contained: no CDN) from a run "
        "directory; --serve serves RUN_DIR on 127.0.0.1 (no directory listings, no paths "
        "outside RUN_DIR).",
    )
    p.add_argument("run_dir", help="directory written by evaluate-policy or demo")
    p.add_argument("--serve", action="store_true", help="serve on 127.0.0.1 afterwards")
    p.add_argument("--port", type=int, default=8000, help="port for --serve (8000)")
    p.add_argument("--host", default="127.0.0.1", help="address for --serve (127.0.0.1)")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (no authentication: trusted networks only)",
    )
    p.set_defaults(func=_cmd_report, overrides=[])
    return parser


def _add_import_options(p: argparse.ArgumentParser) -> None:
    """Options every importer shares: splits, labels, the node's resize, progress."""
    p.add_argument(
        "--split",
        default="test",
        choices=["auto", "train", "val", "calib", "test"],
        help="split to file the episodes under (default test); auto: seeded by episode, "
        "70/10/10/10 %% of the in-distribution ones with calib raised to what a 2 %% "
        "false-stop rate needs (98) when at most half the episodes are enough; labelled "
        "shifts always to test",
    )
    p.add_argument("--split-seed", type=int, default=0, help="seed of --split auto (0)")
    p.add_argument(
        "--labels",
        default=None,
        metavar="FILE",
        help="CSV or YAML: bag,shift,onset_s,severity,success,failure_s,scenario per recording "
        "(docs/data.md); recorded shifts become named test families",
    )
    p.add_argument(
        "--image-size",
        default=None,
        metavar="HxW",
        help="resize frames to the bundle's input (e.g. 64x64) exactly as the node and replay "
        "will (--image-resize, --crop-roi): train and calibrate on the pixels the node sees",
    )
    p.add_argument(
        "--image-resize", default="stretch", choices=["stretch", "center_crop", "letterbox"]
    )
    p.add_argument("--crop-roi", default=None, metavar="X,Y,W,H", help="crop before the resize")
    p.add_argument("--no-progress", action="store_true")


def _add_action_field(p: argparse.ArgumentParser) -> None:
    """``--action-field``: the same choice for import, inspect and replay as the node's."""
    from world_monitor.data.bag.codec import ACTION_FIELDS

    p.add_argument(
        "--action-field",
        default="positions",
        choices=list(ACTION_FIELDS),
        help="which JointTrajectoryPoint array carries the action chunk (effort for a "
        "torque-driven arm); the node's action_field parameter",
    )


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'bad input', reported without a traceback."""
    from world_monitor.config import ConfigError
    from world_monitor.data.episode import EpisodeError

    errors: list[type[BaseException]] = [UserError, ConfigError, EpisodeError, FileNotFoundError]
    for module, name in (
        ("world_monitor.data.dataset", "DatasetError"),
        ("world_monitor.data.bag", "BagError"),
        ("world_monitor.data.labels", "LabelError"),
        ("world_monitor.data.lerobot", "LeRobotError"),
        ("world_monitor.data.frame_prep", "FramePrepError"),
        ("world_monitor.runtime.monitor", "MonitorError"),
        ("world_monitor.runtime.risk", "RiskError"),
        ("world_monitor.models.bundle", "BundleError"),
        ("world_monitor.training.checkpoint", "CheckpointError"),
        ("world_monitor.training.common", "TrainingError"),
    ):
        with contextlib.suppress(ImportError, AttributeError):
            errors.append(getattr(__import__(module, fromlist=[name]), name))
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from world_monitor import __version__

        print(f"world-monitor {__version__}")
        return 0
    if not args.command:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except _user_errors() as exc:
        if args.debug:
            raise
        # one line, whatever the library put in the message (hydra adds a hint on a 2nd line)
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"world-monitor {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
