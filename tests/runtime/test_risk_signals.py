"""Risk signals and ranks without a model: the patch reconstruction signal and the tail ranks."""

from __future__ import annotations

import numpy as np
import pytest

from world_monitor.runtime.risk import (
    RiskCalibration,
    RiskConfig,
    RiskError,
    format_risk,
    recon_error,
    recon_patch_error,
    recon_zmap,
    recon_zscore,
)


def test_recon_patch_sees_a_small_object_the_mean_dilutes() -> None:
    rng = np.random.default_rng(0)
    frame = rng.uniform(-1, 1, (1, 3, 64, 64))
    recon = frame + rng.normal(0, 0.02, frame.shape)  # a good reconstruction everywhere...
    novel = recon.copy()
    novel[..., 8:16, 40:48] += 1.0  # ...except an 8x8 object it cannot reproduce (4 cells)
    base, obj = recon_patch_error(frame, recon), recon_patch_error(frame, novel)
    assert obj == pytest.approx(1.0, rel=0.01)  # the 4 worst cells are exactly the object
    assert obj / base > 500
    assert recon_error(frame, novel) / recon_error(frame, recon) < obj / base
    with pytest.raises(RiskError, match="shape"):
        recon_patch_error(frame, recon[..., :32])
    with pytest.raises(RiskError, match="multiple"):
        recon_patch_error(frame[..., :62, :62], recon[..., :62, :62])


def test_ranks_follow_an_exponential_tail_above_the_90th_percentile() -> None:
    cfg = RiskConfig(signals=("recon",))
    ref = np.arange(1.0, 101.0)  # 1..100: u = 90.1, p_u = 90/101, exceedances 0.9..9.9 -> 5.4
    cal = RiskCalibration(cfg, {"recon": ref})
    r = lambda s: cal.signal_risk({"recon": s})["recon"]  # noqa: E731
    assert r(50.0) == pytest.approx(50 / 101)  # the body: the empirical CDF
    assert r(90.0) == pytest.approx(90 / 101)
    p_u = 90 / 101
    assert r(95.0) == pytest.approx(p_u + (1 - p_u) * (1 - np.exp(-4.9 / 5.4)))
    tail = [r(s) for s in (90.2, 95.0, 99.5, 99.9, 100.0, 105.0, 150.0)]
    assert tail == sorted(tail) and len(set(tail)) == len(tail)  # strictly rising, no staircase
    assert r(90.1) == pytest.approx(p_u, abs=1e-3)  # continuous where body and tail meet
    assert tail[-1] < 1.0
    assert r(95.0 * (1 + 5e-6)) == r(95.0) != r(95.0 * (1 + 5e-5))  # ties within RANK_RTOL
    with pytest.raises(RiskError, match="finite"):
        cal.signal_risk({"recon": float("nan")})


def test_recon_z_flags_a_cell_that_is_usually_quiet() -> None:
    rng = np.random.default_rng(1)
    mean = np.full((4, 4), 0.01)
    std = np.full((4, 4), 0.002)
    mean[0, 0], std[0, 0] = 0.5, 0.2  # a cell that is always badly reconstructed (the arm)
    cells = mean + rng.normal(0, 1e-4, (4, 4))
    cells[0, 0] = 0.9  # a large raw error where large errors are normal: z = 2
    cells[3, 2] = 0.05  # a small raw error on the quiet table: z = 20
    assert recon_zscore(cells, mean, std) == pytest.approx(20.0, rel=0.01)
    z = recon_zmap(cells, mean, std)
    assert np.unravel_index(np.argmax(z), z.shape) == (3, 2)
    # a zero spread is floored instead of dividing by zero
    assert np.isfinite(recon_zscore(cells, mean, np.zeros((4, 4))))
    with pytest.raises(RiskError, match="statistics"):
        recon_zscore(cells, mean[:2], std[:2])


def test_a_missing_history_signal_ranks_zero_but_a_missing_input_signal_is_an_error() -> None:
    config = RiskConfig(signals=("recon", "motion"))
    decisions = [{"recon": 0.01 * i, "motion": 0.1 * i} for i in range(1, 30)]
    decisions += [{"recon": 0.5}]  # an episode's first decision: motion undefined
    cal = RiskCalibration.fit_reference(config, decisions)
    assert len(cal.reference["recon"]) == 30 and len(cal.reference["motion"]) == 29
    ranks = cal.signal_risk({"recon": 0.0})
    assert ranks["motion"] == 0.0 and ranks["recon"] < 0.05
    assert cal.signal_risk({"recon": 0.0, "motion": 10.0})["motion"] > 0.99
    with pytest.raises(RiskError, match="recon"):
        cal.signal_risk({"motion": 0.1})
    with pytest.raises(RiskError, match="lack"):
        RiskCalibration.fit_reference(config, [{"motion": 0.1}] * 20)


def test_thresholds_print_with_enough_digits_to_tell_them_from_one() -> None:
    assert format_risk(0.9989) == "0.9989"  # ordinary values keep four decimals
    assert format_risk(0.9999996086703539) == "0.99999961"  # not "1.0000"
    assert format_risk(0.9999463652881077) == "0.999946"
    assert format_risk(1.0) == "1.0000" and format_risk(0.25) == "0.2500"


def test_a_constant_signal_is_named_and_a_varying_one_is_not() -> None:
    """Issue 15: c3_fraction exactly 0 on every calibration decision ranked every decision at
    n/(n+1) = 0.9949, so SLOW == STOP. A constant reference is reported, never ranked."""
    from world_monitor.runtime.risk import constant_signals

    ref = {
        "c3_fraction": np.zeros(195),
        "recon": np.linspace(0.1, 0.3, 195),
        "colour": np.full(195, 0.25) * (1 + 1e-7 * np.arange(195) / 195),  # within RANK_RTOL
    }
    out = constant_signals(ref)
    assert set(out) == {"c3_fraction", "colour"}
    assert (
        "195 scores, all 0" in out["c3_fraction"] and "left out of the risk" in out["c3_fraction"]
    )


def test_world_model_fusion_uses_only_the_models_own_signals_and_drops_constant_ones():
    from world_monitor.runtime.risk import world_model_calibration

    assert world_model_calibration({}, 0.5) is None  # a calibration from before issue 16
    ref = {
        "c3_mean": list(np.linspace(0.1, 0.4, 12)),
        "selfcheck": list(np.linspace(-0.2, 0.1, 12)),
        "c3_fraction": [0.0] * 12,  # constant: cannot rank, left out
        "motion": [0.1, 0.2],  # defined on too few calibration decisions: left out
    }
    wm = world_model_calibration({"world_model_reference": ref}, 0.5)
    assert wm is not None and set(wm.config.signals) == {"c3_mean", "selfcheck"}
    # the max of the two ranks; colour/recon are ignored even when present
    scores = {"c3_mean": 0.2, "selfcheck": 0.05, "colour": 99.0, "c3_fraction": 1.0}
    ranks = wm.signal_risk(scores)
    assert wm.risk(scores) == max(ranks.values()) == ranks["selfcheck"]
    assert wm.risk({"c3_mean": 0.2}) == ranks["c3_mean"]  # selfcheck undefined: ranks 0


def _episodes(rng: np.random.Generator, n: int = 100, length: int = 15) -> list[list[dict]]:
    """In-distribution episodes with two signals: ``recon`` light-tailed, ``motion`` (a history
    signal, undefined at the first decision) with one rare huge excursion per ~50 episodes."""
    eps = []
    for i in range(n):
        ep = []
        for t in range(length):
            d = {"recon": float(rng.normal(1.0, 0.1))}
            if t:
                d["motion"] = float(rng.normal(0.0, 0.1) + (8.0 if i % 50 == 7 and t == 5 else 0))
            ep.append(d)
        eps.append(ep)
    return eps


def test_the_episode_scale_ranks_each_signal_against_normal_episodes_maxima() -> None:
    rng = np.random.default_rng(4)
    cfg = RiskConfig(signals=("recon", "motion"), scale="episode")
    eps = _episodes(rng)
    cal = RiskCalibration.fit_episode_reference(cfg, eps)
    maxima = sorted(max(d["recon"] for d in ep) for ep in eps)
    np.testing.assert_allclose(cal.episode_reference["recon"], maxima)
    assert len(cal.reference["recon"]) == 100 * 15  # the decision reference is kept too
    assert len(cal.episode_reference["motion"]) == 100  # every episode defines it somewhere
    # the median normal episode maximum ranks about 0.5 on this scale (0.96 among decisions)
    mid = float(np.median(maxima))
    assert cal.signal_risk({"recon": mid})["recon"] == pytest.approx(0.5, abs=0.02)
    flat = RiskCalibration.fit_reference(
        RiskConfig(signals=("recon", "motion")), [d for ep in eps for d in ep]
    )
    assert flat.signal_risk({"recon": mid})["recon"] > 0.95
    # round trip through calibration.json
    back = RiskCalibration.from_dict(cal.to_dict())
    assert back.config.scale == "episode"
    probe = {"recon": 1.33, "motion": 0.4}
    assert back.signal_risk(probe) == cal.signal_risk(probe)


def _stop_rate(cal: RiskCalibration, stop: float, episodes: list[list[dict]]) -> float:
    return float(np.mean([max(cal.risk(d) for d in ep) > stop for ep in episodes]))


def test_on_the_episode_scale_a_heavy_tailed_signal_no_longer_sets_stop_for_all() -> None:
    """Measured failure mode (issue 16): with one signal's rare in-distribution excursions, the
    per-episode conformal STOP on the decision scale sits above anything the light-tailed
    signal can reach; on the episode scale a clear, persistent excess of the light-tailed
    signal is stopped at the same certified false-stop rate."""
    from world_monitor.uq.detection import episode_conformal_threshold

    rng = np.random.default_rng(5)
    half_a, half_b, test = _episodes(rng), _episodes(rng), _episodes(rng, n=200)
    shifted = _episodes(rng, n=50)
    for ep in shifted:  # recon 5 sigma above normal for the whole episode
        for d in ep:
            d["recon"] += 0.5
    out = {}
    for scale in ("decision", "episode"):
        cfg = RiskConfig(signals=("recon", "motion"), scale=scale)
        if scale == "episode":
            cal = RiskCalibration.fit_episode_reference(cfg, half_a)
        else:
            cal = RiskCalibration.fit_reference(cfg, [d for ep in half_a for d in ep])
        stop = episode_conformal_threshold([[cal.risk(d) for d in ep] for ep in half_b], 0.02)
        out[scale] = (
            _stop_rate(cal, stop.threshold, test),
            _stop_rate(cal, stop.threshold, shifted),
        )
    assert out["decision"][1] < 0.5  # the excursions of `motion` hide the shift
    assert out["episode"][1] > 0.9
    assert out["episode"][0] <= 0.05 and out["decision"][0] <= 0.05  # both keep the bound


def test_the_episode_scale_needs_its_reference() -> None:
    cfg = RiskConfig(signals=("recon",), scale="episode")
    with pytest.raises(RiskError, match="episode_reference"):
        RiskCalibration(cfg, {"recon": np.arange(20.0)})
    with pytest.raises(RiskError, match="scale"):
        RiskConfig(scale="frame")
    old = RiskConfig.from_dict({"epsilon": 0.5, "confidence_level": 0.5, "signals": ["recon"]})
    assert old.scale == "decision"  # calibrations from before the episode scale load as before
