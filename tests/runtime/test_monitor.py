"""Monitor + calibration on a real (tiny) trained bundle: train -> calibrate -> assess."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_world import TINY_OVERRIDES, make_tiny_dataset

from world_monitor.config import load_config
from world_monitor.data import EpisodeDataset
from world_monitor.data.chunks import decision_points
from world_monitor.models.bundle import BundleError, load_bundle
from world_monitor.runtime.calibrate import calibrate_bundle, retarget
from world_monitor.runtime.monitor import Monitor, MonitorError, load_monitor
from world_monitor.runtime.risk import (
    HISTORY_SIGNALS,
    SIGNALS,
    RiskCalibration,
    RiskConfig,
    RiskError,
    c3_signals,
)
from world_monitor.runtime.types import Decision
from world_monitor.training.trainer import train


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(dataset, calibrated bundle, engines dir) - trained once for the module."""
    base = tmp_path_factory.mktemp("monitor")
    data = make_tiny_dataset(base / "ds", calib=24, test=6)
    cfg = load_config([*TINY_OVERRIDES, "train.dynamics.steps=40", "train.vae.steps=60"])
    result = train(cfg, base / "run", data_root=data, command="pytest monitor", progress=False)
    bundle = base / "run" / "bundle"
    assert result.bundle is not None and bundle.is_dir()
    uncalibrated = base / "uncalibrated"
    shutil.copytree(bundle, uncalibrated)
    engines = base / "engines"
    # 12 threshold episodes certify at best 1/13: the default 2% is refused (see below)
    calibrate_bundle(bundle, data, stride=2, progress=False, engines_dir=engines, stop_alpha=0.08)
    return data, bundle, uncalibrated


def _decisions(monitor: Monitor, data: Path, shift: str | None) -> list:
    ds = EpisodeDataset(data)
    out = []
    for rec in ds.select(split="test", shift=shift).index:
        ep = ds.load(rec["id"])
        start = rec["onset"] or 0
        monitor.reset()
        for p in decision_points(ep, monitor.context_length, monitor.horizon, 1, start=start):
            out.append(monitor.assess(p.frames, p.chunk, float(ep.stamps[p.t]), p.context_actions))
    return out


def test_uncalibrated_bundle_fails_fast(world: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, _, uncalibrated = world
    with pytest.raises(MonitorError, match="calibrate"):
        Monitor.from_bundle(uncalibrated, "torch", engines_dir=tmp_path)


def test_calibration_is_stored_and_valid(world: tuple[Path, Path, Path]) -> None:
    data, bundle, _ = world
    cal = load_bundle(bundle).calibration
    assert cal is not None and cal["version"] == 1
    assert 0.0 <= cal["thresholds"]["slow"] <= cal["thresholds"]["stop"] <= 1.0
    assert cal["stop_alpha"] == 0.08 and cal["slow_alpha"] == 0.10
    halves = cal["data"]
    assert set(halves["scale_episodes"]).isdisjoint(halves["threshold_episodes"])
    assert len(halves["scale_episodes"]) == len(halves["threshold_episodes"]) == 12
    assert len(cal["threshold_episode_max_risk"]) == 12
    # 12 threshold episodes certify 8% (k = n: the largest maximum), a STOP that can trigger
    assert cal["thresholds"]["stop"] == max(cal["threshold_episode_max_risk"]) < 1.0
    assert cal["verify"]["episodes"] == 6
    assert 0.0 <= cal["verify"]["false_stop_rate"] <= 1.0
    assert len(np.asarray(cal["reference_cell"]).shape) == 2
    assert len(cal["reference_step"]) == 3  # horizon of the tiny model
    # what the recon_z and motion signals need at run time
    assert cal["decision_stride"] == 2 and cal["frame_period_s"] == pytest.approx(0.1)
    mean, std = np.asarray(cal["recon_cell_mean"]), np.asarray(cal["recon_cell_std"])
    assert mean.shape == std.shape and mean.ndim == 2 and (std >= 0).all()
    assert len(cal["reference"]["motion"]) > 10
    colour = cal["colour_model"]  # the palette of the colour signal, stored sparsely
    assert colour["fitted_on"]["split"] in ("train", "scale") and colour["fitted_on"]["episodes"]
    assert 0 < len(colour["index"]) == len(colour["count"]) < 32**3
    # the tiny world's frames all score the same against the training palette: colour is one
    # value on every calibration decision, so it cannot rank and is left out, reason recorded
    excluded = cal.get("excluded_signals", {})
    assert set(cal["risk"]["signals"]) | set(excluded) == set(RiskConfig().signals)
    for name in cal["risk"]["signals"]:
        assert len(cal["reference"][name]) > 10 and np.ptp(cal["reference"][name]) > 0
    assert "colour" in excluded and "constant on the calibration decisions" in excluded["colour"]
    recal = cal["probe_recalibration"]  # fitted first, on the scale half
    assert recal["eps_grid"] == pytest.approx([0.1 * i for i in range(1, 11)])
    assert recal["info"]["windows"] > 0 and len(recal["params"]) == 10
    # calibrate's default scale: each signal ranked against the scale half's episode maxima
    assert cal["risk"]["scale"] == "episode"
    for name in cal["risk"]["signals"]:
        assert len(cal["episode_reference"][name]) == 12  # one maximum per scale episode
    assert set(cal["world_model_episode_reference"]) <= set(cal["world_model_reference"])


def test_calibrate_can_fit_the_scale_on_another_split(
    world: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--scale-split val`: the scale from the val split, the thresholds from every calibration
    episode (24 threshold episodes instead of 12 certify a smaller rate)."""
    from world_monitor.cli import main

    _, _, uncalibrated = world
    data = make_tiny_dataset(tmp_path / "ds", calib=24, test=6, val=12)
    copy = tmp_path / "b"
    shutil.copytree(uncalibrated, copy)
    argv = ["calibrate", str(copy), "--data", str(data), "--stride", "2", "--no-progress"]
    argv += ["--backend", "torch", "--engines-dir", str(tmp_path / "engines")]
    assert main([*argv, "--scale-split", "val", "--false-stop-rate", "0.05"]) == 0
    cal = json.loads((copy / "calibration.json").read_text())
    halves = cal["data"]
    assert halves["scale_split"] == "val" and len(halves["scale_episodes"]) == 12
    assert len(halves["threshold_episodes"]) == 24 == len(cal["threshold_episode_max_risk"])
    assert all(e.startswith("val-") for e in halves["scale_episodes"])
    capsys.readouterr()
    # too few scale episodes, or the same split twice: one line, exit 2
    assert main([*argv, "--scale-split", "test"]) == 2
    assert "need >= 10 each" in capsys.readouterr().err
    assert main([*argv, "--scale-split", "calib"]) == 2
    assert "must differ" in capsys.readouterr().err


def test_calibrate_refuses_a_rate_its_data_cannot_certify(
    world: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14: 24 calibration episodes cannot certify the default 2%; the old code wrote
    ``stop: 1.0`` (a monitor that can never STOP) and printed success. Now: exit 2, one line,
    saying what the rate needs and what the data can do, and nothing is written."""
    from world_monitor.cli import main

    data, _, uncalibrated = world
    copy = tmp_path / "b"
    shutil.copytree(uncalibrated, copy)
    before = (copy / "calibration.json").read_bytes()
    rc = main(["calibrate", str(copy), "--data", str(data), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("world-monitor calibrate: error: STOP rate 0.02 cannot be certified")
    assert "49 threshold episodes (98 calibration episodes), have 12" in line
    assert "smallest rate these 12 can certify is 0.07692" in line
    assert (copy / "calibration.json").read_bytes() == before


def test_probe_recalibration_is_what_the_monitor_reads(
    world: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    data, bundle, _ = world
    monitor = load_monitor(bundle, "torch", engines_dir=tmp_path)
    recal = monitor.recalibration
    assert recal is not None
    ds = EpisodeDataset(data)
    ep = ds.load(ds.select(split="test", shift=None).index[0]["id"])
    p = next(decision_points(ep, monitor.context_length, monitor.horizon))
    mapped = monitor.raw(p.frames, p.chunk).confidence
    monitor.recalibration = None
    raw = monitor.raw(p.frames, p.chunk).confidence
    assert np.allclose(mapped, recal.apply(raw, monitor.risk_config.epsilon))
    assert not np.allclose(mapped, raw)


def test_evaluate_model_scores_recalibrated_and_raw_probe(
    world: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from world_monitor.training.evaluate import EvalOptions
    from world_monitor.training.evaluate import evaluate_bundle as evaluate_model

    data, bundle, _ = world
    opts = EvalOptions(windows=6, shift_windows=3, figures=0, progress=False)
    report = evaluate_model(bundle, data_root=data, out_dir=tmp_path / "a", options=opts)
    assert report["probe_recalibration"]["applied"]
    split = report["splits"]["in_distribution"]
    assert 0 <= split["raw_probe"]["ece"] <= 1 and split["raw_probe"]["ece"] != split["ece"]
    opts.recalibrated = False
    plain = evaluate_model(bundle, data_root=data, out_dir=tmp_path / "b", options=opts)
    assert plain["probe_recalibration"] is None
    assert "raw_probe" not in plain["splits"]["in_distribution"]
    assert plain["splits"]["in_distribution"]["ece"] == pytest.approx(split["raw_probe"]["ece"])


def test_motion_signal_needs_history_and_forgets_it(
    world: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    data, bundle, _ = world
    monitor = load_monitor(bundle, "torch", engines_dir=tmp_path)
    ds = EpisodeDataset(data)
    ep = ds.load(ds.select(split="test", shift=None).index[0]["id"])
    points = list(decision_points(ep, monitor.context_length, monitor.horizon, 2))[:5]

    def run(interrupt_after: int | None = None) -> list[dict]:
        monitor.reset()
        out = []
        for i, p in enumerate(points):
            out.append(monitor.assess(p.frames, p.chunk, float(ep.stamps[p.t])).signals)
            if i == interrupt_after:
                monitor.interrupt()
        return out

    plain = run()
    # calibrated every 2 frames: values from the 2nd decision on, defined from 3 values
    assert ["motion" in s for s in plain] == [False, False, False, True, True]
    # selfcheck compares the same earlier rollouts' confidence with the frames that arrived
    assert ["selfcheck" in s for s in plain] == [False, False, False, True, True]
    assert plain == run()  # reset makes it repeatable
    cut = run(interrupt_after=1)  # the 2nd rollout is no reference for the 3rd decision
    assert "motion" not in cut[3] and cut[4]["motion"] != plain[4]["motion"]
    assert "selfcheck" not in cut[3] and cut[4]["selfcheck"] != plain[4]["selfcheck"]


def test_assessment_contract(world: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, bundle, _ = world
    monitor = load_monitor(bundle, "onnxruntime,torch", engines_dir=tmp_path)
    assert monitor.backend_name.startswith("onnxruntime")
    ds = EpisodeDataset(data)
    ep = ds.load(ds.select(split="test", shift=None).index[0]["id"])
    p = next(decision_points(ep, monitor.context_length, monitor.horizon))
    a = monitor.assess(p.frames, p.chunk, 1.5, p.context_actions)
    h, (c, lh, lw) = monitor.horizon, monitor.latent_shape
    assert 0.0 <= a.risk <= 1.0 and a.stamp == 1.5
    assert a.confidence_map.shape == (h, c, lh, lw) and a.step_confidence.shape == (h,)
    assert ((a.confidence_map >= 0) & (a.confidence_map <= 1)).all()
    assert a.decision is monitor.decision_for(a.risk)
    # motion needs an earlier rollout: not defined at a session's first decision
    assert set(a.signals) == set(SIGNALS) - set(HISTORY_SIGNALS)
    assert {"encode", "rollout", "signals", "risk", "total"} <= set(a.latency_ms)
    json.dumps(a.to_dict())  # strict JSON
    with pytest.raises(ValueError, match="frames"):
        monitor.assess(p.frames[:1], p.chunk, 1.6)
    with pytest.raises(ValueError, match="action_chunk"):
        monitor.assess(p.frames, p.chunk[:, :2], 1.6)


def test_shift_raises_risk(world: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, bundle, _ = world
    monitor = load_monitor(bundle, "torch", engines_dir=tmp_path)
    ind = [a.risk for a in _decisions(monitor, data, None)]
    shifted = [a.risk for a in _decisions(monitor, data, "lighting")]
    assert np.mean(shifted) > np.mean(ind)
    assert min(shifted) > np.median(ind)  # the brightened background is far out of distribution


def test_backends_make_the_same_decisions(world: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, bundle, _ = world
    ort = load_monitor(bundle, "onnxruntime", engines_dir=tmp_path)
    tor = load_monitor(bundle, "torch", engines_dir=tmp_path)
    a, b = _decisions(ort, data, None), _decisions(tor, data, None)
    assert [x.decision for x in a] == [y.decision for y in b]
    # risk is an in-distribution rank: a 1e-6 difference can flip an element sitting at
    # q = confidence_level and move the quantised c3_fraction by one or two ranks, no more
    n_ref = min(len(v) for v in ort.calibration.reference.values())
    assert np.allclose([x.risk for x in a], [y.risk for y in b], atol=3 / (n_ref + 1))
    assert np.abs(a[0].confidence_map - b[0].confidence_map).max() < 1e-4


def test_epsilon_must_match_calibration(world: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, bundle, _ = world
    with pytest.raises(MonitorError, match="calibrated epsilon"):
        load_monitor(bundle, "torch", epsilon=0.3, engines_dir=tmp_path)


def test_recalibrating_at_another_epsilon_refits_from_scratch(
    world: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """`calibrate --epsilon` on a calibrated bundle is how ε is changed: it must not be refused
    by the previous calibration's ε (it was), and must not inherit its statistics."""
    data, bundle, _ = world
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    before = json.loads((copy / "calibration.json").read_text())
    calibrate_bundle(
        copy,
        data,
        risk=RiskConfig(epsilon=0.3),
        stride=2,
        progress=False,
        engines_dir=tmp_path / "engines",
        stop_alpha=0.08,
    )
    after = json.loads((copy / "calibration.json").read_text())
    assert before["risk"]["epsilon"] != 0.3 and after["risk"]["epsilon"] == 0.3
    wm_before, wm_after = before["world_model_reference"], after["world_model_reference"]
    assert wm_after["c3_mean"] != wm_before["c3_mean"]  # read at the new epsilon
    assert load_monitor(copy, "torch", epsilon=0.3, engines_dir=tmp_path).risk_config.epsilon == 0.3


def test_retarget_moves_the_stop_threshold(world: tuple[Path, Path, Path]) -> None:
    _, bundle, _ = world
    cal = RiskCalibration.from_dict(load_bundle(bundle).calibration)
    loose = retarget(cal, stop_alpha=0.5).stop_threshold
    looser = retarget(cal, stop_alpha=0.9).stop_threshold
    assert looser <= loose <= 1.0
    assert cal.slow_threshold <= cal.stop_threshold


def test_saturated_risks_refuse_a_threshold_nothing_can_exceed() -> None:
    cal = RiskCalibration.fit_reference(
        RiskConfig(signals=("recon",)), [{"recon": 0.01 * i} for i in range(1, 40)]
    )
    maxima = [0.5 + 0.005 * i for i in range(95)] + [1.0] * 5  # 5% of episodes saturate
    cal.info["threshold_episode_max_risk"] = maxima
    assert retarget(cal, slow_alpha=0.10).slow_threshold < 1.0
    with pytest.raises(ValueError, match="reach risk 1.0"):
        retarget(cal, stop_alpha=0.02)


def test_tampered_calibration_is_rejected(world: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, bundle, _ = world
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    text = (copy / "calibration.json").read_text()
    (copy / "calibration.json").write_text(text.replace('"version": 1', '"version": 7'))
    with pytest.raises(BundleError, match="hash"):
        Monitor.from_bundle(copy, "torch", engines_dir=tmp_path)


def test_risk_is_the_max_of_in_distribution_ranks() -> None:
    cfg = RiskConfig(signals=("c3_fraction", "recon"))
    cal = RiskCalibration(cfg, {"c3_fraction": np.linspace(0, 0.9, 10), "recon": np.arange(10.0)})
    # c3_fraction 0.45 ranks 5/11 (0.0..0.4 are <=), recon 8.0 ranks 9/11
    assert cal.signal_risk({"c3_fraction": 0.45, "recon": 8.0}) == pytest.approx(
        {"c3_fraction": 5 / 11, "recon": 9 / 11}
    )
    assert cal.risk({"c3_fraction": 0.45, "recon": 8.0}) == pytest.approx(9 / 11)
    with pytest.raises(RiskError, match="recon"):
        cal.risk({"c3_fraction": 0.1})
    with pytest.raises(RiskError, match=">= 10"):
        RiskCalibration(cfg, {"c3_fraction": np.zeros(3), "recon": np.zeros(30)})


def test_c3_signals_on_a_known_map() -> None:
    q = np.full((2, 1, 2, 2), 0.9)
    q[1, 0, 0, 0] = 0.1  # one doubted element in step 1
    s = c3_signals(q, 0.5)
    assert s["c3_fraction"] == pytest.approx(1 / 8)
    assert s["c3_mean"] == pytest.approx(1 - (0.9 * 7 + 0.1) / 8)
    assert s["c3_min_step"] == pytest.approx(1 - (0.9 * 3 + 0.1) / 4)
    with pytest.raises(RiskError, match="NaN"):
        c3_signals(np.full((1, 1, 2, 2), np.nan), 0.5)


def test_localisation_points_at_the_dropped_region(
    world: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, bundle, _ = world
    monitor = load_monitor(bundle, "torch", engines_dir=tmp_path)
    ref = np.asarray(monitor.calibration.info["reference_cell"])
    h, c, lh, lw = monitor.horizon, *monitor.latent_shape
    conf = np.broadcast_to(ref, (h, c, lh, lw)).copy()
    conf[1:, :, 0:2, 2:4] -= 0.6  # top-right quadrant collapses from step 1 on
    box, onset = monitor.localise(np.clip(conf, 0, 1))
    assert onset == 1
    x0, y0, x1, y1 = box
    assert (
        x0 >= 0.5 - 1e-9
        and y1 <= 0.5 + 1e-9
        and x1 == pytest.approx(1.0)
        and y0 == pytest.approx(0.0)
    )
    assert (
        monitor.decision_for(monitor.stop_threshold + 1e-9) is Decision.STOP
        or monitor.stop_threshold >= 1.0
    )


def test_input_led_alerts_take_their_box_from_the_reconstruction_error(
    world: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """When an input-side signal raised the risk, the box surrounds the badly reconstructed
    cells (e.g. a new object), not the C³ drop; otherwise the C³ box is kept."""
    _, bundle, _ = world
    monitor = load_monitor(bundle, "torch", engines_dir=tmp_path)
    ref = np.asarray(monitor.calibration.info["reference_cell"])
    h, c, lh, lw = monitor.horizon, *monitor.latent_shape
    conf = np.broadcast_to(ref, (h, c, lh, lw)).copy()
    conf[1:, :, 0:2, 2:4] -= 0.6  # C³ drop in the top-right quadrant
    img_h, img_w = monitor.image_size
    cells = np.full((img_h // 4, img_w // 4), 0.001)
    r0, c0 = cells.shape[0] // 2, 0
    cells[r0 : r0 + 2, c0 : c0 + 2] = 0.2  # an unseen object, bottom-left
    input_led = {"c3_fraction": 0.4, "recon_patch": 0.9999}
    box, onset = monitor.localise(np.clip(conf, 0, 1), cells, input_led)
    assert onset == 1
    assert box == pytest.approx((0.0, 0.5, 2 * 4 / img_w, 0.5 + 2 * 4 / img_h))
    c3_led = {"c3_fraction": 0.9999, "recon_patch": 0.4}
    box_c3, _ = monitor.localise(np.clip(conf, 0, 1), cells, c3_led)
    assert box_c3 == monitor.localise(np.clip(conf, 0, 1))[0] and box_c3[0] >= 0.5 - 1e-9
    # colour leads: the box surrounds the novel-coloured cells (top-left), not the recon cells
    novel = np.zeros_like(cells)
    novel[0:2, 0:3] = 8.0
    colour_led = {"c3_fraction": 0.4, "recon_patch": 0.9, "colour": 0.99999}
    box_col, _ = monitor.localise(np.clip(conf, 0, 1), cells, colour_led, colour_cells=novel)
    assert box_col == pytest.approx((0.0, 0.0, 3 * 4 / img_w, 2 * 4 / img_h))
    # selfcheck leads: the box surrounds the latent cells where confident predictions failed
    failed = np.full((lh, lw), -0.1)
    failed[lh - 1, lw - 1] = 3.0  # bottom-right latent cell
    monitor.motion.selfcheck_cells = failed
    check_led = {"c3_fraction": 0.4, "recon_patch": 0.9, "selfcheck": 0.99999}
    box_sc, _ = monitor.localise(np.clip(conf, 0, 1), cells, check_led)
    s = img_w // lw
    assert box_sc == pytest.approx((1 - s / img_w, 1 - s / img_h, 1.0, 1.0))
    monitor.reset()


def test_fused_colour_needs_the_stored_palette(
    world: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from world_monitor.models.bundle import update_calibration

    _, bundle, _ = world
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    cal = dict(load_bundle(copy).calibration)
    cal["risk"] = {**cal["risk"], "signals": [*cal["risk"]["signals"], "colour"]}
    cal["reference"] = {**cal["reference"], "colour": [0.001 * i for i in range(20)]}
    cal["episode_reference"] = {**cal["episode_reference"], "colour": [0.01 * i for i in range(12)]}
    del cal["colour_model"]
    update_calibration(copy, cal)
    with pytest.raises(MonitorError, match="colour_model"):
        Monitor.from_bundle(copy, "torch", engines_dir=tmp_path)


def test_a_signal_constant_on_calibration_data_is_left_out_and_said(
    world: tuple[Path, Path, Path], tmp_path: Path, monkeypatch, capsys
) -> None:
    """Issue 15 item 5: the calibration drops a constant signal (here c3_fraction forced to 0,
    as on a mostly static scene) and records why; the fused risk then ranks decisions again."""
    import world_monitor.runtime.monitor as monitor_module
    from world_monitor import cli

    data, _, uncalibrated = world
    bundle = tmp_path / "bundle"
    shutil.copytree(uncalibrated, bundle)
    real = monitor_module.c3_signals
    monkeypatch.setattr(
        monitor_module, "c3_signals", lambda conf, level: {**real(conf, level), "c3_fraction": 0.0}
    )
    rc = cli.main(
        [
            "calibrate",
            str(bundle),
            "--data",
            str(data),
            "--stride",
            "2",
            "--false-stop-rate",
            "0.08",
            "--no-progress",
            "--engines-dir",
            str(tmp_path / "e"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "left out: c3_fraction: constant on the calibration decisions" in out
    cal = load_bundle(bundle).calibration
    assert "c3_fraction" not in cal["risk"]["signals"]
    assert "c3_fraction" in cal["excluded_signals"]
    assert min(cal["threshold_episode_max_risk"]) < 0.99


def test_calibration_drift_compares_selfcheck_with_its_calibration_values(
    world: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, bundle, _ = world
    monitor = load_monitor(bundle, "torch", engines_dir=tmp_path)
    ref = monitor.calibration.info["world_model_reference"]["selfcheck"]
    assert len(ref) >= 10
    assert monitor.calibration_drift() is None  # no selfcheck value yet
    for _ in range(monitor.motion.min_values):
        monitor.motion._checks.append(float(np.median(ref)))
    assert monitor.calibration_drift() == {
        "selfcheck": pytest.approx(float(np.median(ref))),
        "bound": max(ref),
        "drift": False,
    }
    for _ in range(monitor.motion._checks.maxlen):
        monitor.motion._checks.append(max(ref) + 1.0)
    assert monitor.calibration_drift()["drift"] is True
    monitor.reset()
    assert monitor.calibration_drift() is None
