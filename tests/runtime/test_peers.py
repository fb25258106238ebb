"""The peer detectors (FIPER, FAIL-Detect) on constructed data where the right answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from world_monitor.runtime.evaluate import DecisionScore, EpisodeEval, side_by_side
from world_monitor.runtime.peers import (
    ACE_WINDOW,
    EpisodeFeatures,
    FunctionalBand,
    NormalisedThreshold,
    PeerDetectors,
    RandomNetworkDistillation,
    chunk_entropy,
    embed_latent,
)


def test_embed_latent_pools_to_at_most_eight_cells_a_side() -> None:
    z = np.arange(4 * 16 * 16, dtype=np.float64).reshape(4, 16, 16)
    e = embed_latent(z)
    assert e.shape == (4 * 8 * 8,)
    assert e[0] == pytest.approx(z[0, :2, :2].mean())  # the first 2x2 cell's mean
    assert embed_latent(np.ones((4, 4, 4))).shape == (64,)  # small latents are kept whole
    with pytest.raises(ValueError, match="expected"):
        embed_latent(np.ones((4, 4)))


def test_rnd_is_seeded_and_scores_unfamiliar_inputs_higher() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(600, 16))
    a, b = RandomNetworkDistillation(16, seed=3), RandomNetworkDistillation(16, seed=3)
    la, lb = a.fit(train, epochs=30), b.fit(train, epochs=30)
    assert la == lb and la[-1] < la[0]  # deterministic, and it learned
    held_out = rng.normal(size=(200, 16))
    shifted = rng.normal(loc=3.0, size=(200, 16))
    np.testing.assert_array_equal(a.score(held_out), b.score(held_out))
    assert np.median(a.score(shifted)) > 3 * np.median(a.score(held_out))
    with pytest.raises(ValueError, match="expected"):
        a.fit(np.ones((4, 3)))


def test_chunk_entropy_grows_as_the_chunks_spread() -> None:
    h = np.full((8, 4), 0.5)
    one = np.zeros((1, 8, 4))
    assert chunk_entropy(one, h) == pytest.approx(0.0)
    rng = np.random.default_rng(1)
    tight = rng.normal(scale=0.05, size=(4, 8, 4))
    wide = rng.normal(scale=1.0, size=(4, 8, 4))
    assert 0.0 <= chunk_entropy(tight, h) < chunk_entropy(wide, h)
    # the order of the chunks does not matter
    assert chunk_entropy(wide[::-1], h) == pytest.approx(chunk_entropy(wide, h))
    # far-apart chunks approach log n (every kernel sees only its own sample)
    far = np.stack([np.full((8, 4), 100.0 * i) for i in range(4)])
    assert chunk_entropy(far, h) == pytest.approx(math.log(4))


def test_normalised_threshold_puts_the_conformal_threshold_at_one() -> None:
    maxima = np.linspace(0.0, 1.0, 99)
    t = NormalisedThreshold.fit(maxima, alpha=0.1)
    assert t.alarm == 1.0 and t.normalise(t.threshold) == pytest.approx(1.0)
    assert t.normalise(t.centre) == pytest.approx(0.0)
    exceed = np.mean([t.normalise(v) > 1.0 for v in maxima])
    assert exceed <= 0.1
    # 5 episodes cannot certify 2%: comparable scores, but never an alarm
    few = NormalisedThreshold.fit([0.1, 0.2, 0.3, 0.4, 0.5], alpha=0.02)
    assert math.isinf(few.alarm) and math.isinf(few.threshold)
    assert few.normalise(0.5) == pytest.approx(1.0)


def test_functional_band_follows_a_time_varying_score() -> None:
    rng = np.random.default_rng(2)
    mean = np.linspace(0.0, 5.0, 20)
    spread = np.linspace(0.1, 1.0, 20)
    series = [mean + spread * rng.normal(size=20) for _ in range(400)]
    band = FunctionalBand.fit(series)
    np.testing.assert_allclose(band.mean, mean, atol=0.15)
    np.testing.assert_allclose(band.std, spread, rtol=0.15)
    # z-scores of fresh series are standard normal at every index, early and late alike
    fresh = np.asarray(
        [
            [band.z(i, v) for i, v in enumerate(mean + spread * rng.normal(size=20))]
            for _ in range(300)
        ]
    )
    assert abs(fresh[:, 0].std() - 1) < 0.15 and abs(fresh[:, -1].std() - 1) < 0.15
    # past the longest calibration episode the last index's band is carried
    assert band.z(50, mean[-1]) == pytest.approx(0.0, abs=0.2)


def _features(
    rng: np.random.Generator, i: int, *, n: int = 12, obs_shift: float = 0.0, jitter: float = 0.1
) -> EpisodeFeatures:
    base = rng.normal(size=(8, 4)) * 0.3
    chunks = np.stack([base + jitter * rng.normal(size=(8, 4)) for _ in range(n)])
    return EpisodeFeatures(
        id=f"e{i}",
        t=np.arange(n) * 4 + 1,
        embeddings=rng.normal(loc=obs_shift, size=(n, 16)),
        chunks=chunks,
    )


@pytest.fixture(scope="module")
def peers() -> PeerDetectors:
    rng = np.random.default_rng(3)
    train = [_features(rng, i) for i in range(60)]
    calib = [_features(rng, 100 + i) for i in range(80)]
    return PeerDetectors.fit(train, calib, alpha=0.1, seed=0, epochs=40)


def test_online_scores_equal_the_offline_series_the_thresholds_came_from(
    peers: PeerDetectors,
) -> None:
    feats = _features(np.random.default_rng(4), 0)
    offline = peers.indicators.series(feats)
    peers.reset()
    online = [
        peers.score(e.reshape(16, 1, 1), c)
        for e, c in zip(feats.embeddings, feats.chunks, strict=True)
    ]
    th = peers.thresholds
    for i, s in enumerate(online):
        # float32 networks: one row at a time vs a batch differ in the last bits only
        approx = {"rel": 1e-4, "abs": 1e-5}
        rnd = th["rnd_oe"].normalise(offline["rnd_oe"][i])
        assert s["fiper_rnd_oe"] == pytest.approx(rnd, **approx)
        assert s["fiper_ace"] == pytest.approx(th["ace"].normalise(offline["ace"][i]))
        assert s["fiper"] == min(s["fiper_rnd_oe"], s["fiper_ace"])
        z = peers.band.z(i, offline["fd"][i])
        assert s["fail_detect"] == pytest.approx(th["fd_z"].normalise(z), **approx)
    assert set(peers.alarms()) == {"fiper", "fiper_rnd_oe", "fiper_ace", "fail_detect"}


def test_a_skipped_decision_keeps_the_band_aligned_with_time(peers: PeerDetectors) -> None:
    feats = _features(np.random.default_rng(7), 0, n=3)
    e, c = feats.embeddings[2].reshape(16, 1, 1), feats.chunks[2]
    peers.reset()
    for i in range(2):
        peers.score(feats.embeddings[i].reshape(16, 1, 1), feats.chunks[i])
    third = peers.score(e, c)["fail_detect"]
    peers.reset()
    peers.score(feats.embeddings[0].reshape(16, 1, 1), feats.chunks[0])
    peers.skip()  # decision 1 refused: not scored, but it happened
    z = peers.band.z(2, float(peers.indicators.fd(e.reshape(1, 16), c[None])[0]))
    assert peers.score(e, c)["fail_detect"] == pytest.approx(peers.thresholds["fd_z"].normalise(z))
    assert math.isfinite(third)


def _episode_max(peers: PeerDetectors, feats: EpisodeFeatures) -> dict[str, float]:
    peers.reset()
    rows = [
        peers.score(e.reshape(16, 1, 1), c)
        for e, c in zip(feats.embeddings, feats.chunks, strict=True)
    ]
    return {k: max(r[k] for r in rows) for k in rows[0]}


def test_novel_observations_and_erratic_commands_raise_the_right_indicator(
    peers: PeerDetectors,
) -> None:
    rng = np.random.default_rng(5)
    nominal = [_episode_max(peers, _features(rng, i)) for i in range(40)]
    novel = [_episode_max(peers, _features(rng, i, obs_shift=2.5)) for i in range(20)]
    erratic = [_episode_max(peers, _features(rng, i, jitter=1.5)) for i in range(20)]
    both = [_episode_max(peers, _features(rng, i, obs_shift=2.5, jitter=1.5)) for i in range(20)]
    alarm = peers.alarms()

    def rate(eps: list[dict[str, float]], k: str) -> float:
        return float(np.mean([e[k] > alarm[k] for e in eps]))

    assert rate(nominal, "fiper_rnd_oe") <= 0.2 and rate(novel, "fiper_rnd_oe") == 1.0
    assert rate(nominal, "fiper_ace") <= 0.2 and rate(erratic, "fiper_ace") == 1.0
    # FIPER needs both: a novel view with calm commands, or erratic commands in a familiar
    # scene, is not a FIPER alarm; both at once is
    assert rate(novel, "fiper") <= 0.2 and rate(erratic, "fiper") <= 0.2
    assert rate(both, "fiper") == 1.0
    # FAIL-Detect scores observation and action together: it sees either
    assert rate(novel, "fail_detect") == 1.0 and rate(erratic, "fail_detect") == 1.0
    assert rate(nominal, "fail_detect") <= 0.2


def test_the_ace_kernel_is_wide_enough_to_see_in_distribution_spread(
    peers: PeerDetectors,
) -> None:
    # Scott's rule in 32 dimensions put every window at log n, the maximum (a threshold that
    # can never be crossed); the median-heuristic width keeps nominal windows well below it
    ace = peers.thresholds["ace"]
    assert 0.0 < ace.threshold < math.log(ACE_WINDOW) - 0.1


def test_fit_refuses_too_little_data() -> None:
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match="calibration episodes"):
        PeerDetectors.fit([_features(rng, 0)], [_features(rng, 1)], alpha=0.1)


def _scored(eid: str, family: str, values: dict[str, list[float]], **kw: object) -> EpisodeEval:
    onset = kw.get("onset")
    ep = EpisodeEval(eid, family, onset, kw.get("failure"), length=20, fps=10.0)  # type: ignore[arg-type]
    n = len(next(iter(values.values())))
    for i in range(n):
        t = 1 + 4 * i
        post = family != "in_distribution" and t >= (onset or 0)  # type: ignore[operator]
        ep.decisions.append(DecisionScore(t, post, {k: v[i] for k, v in values.items()}))
    return ep


def test_side_by_side_compares_gates_at_both_operating_points() -> None:
    ind = [
        _scored("i0", "in_distribution", {"monitor": [0.1, 0.2], "fiper": [0.2, 1.5]}),
        _scored("i1", "in_distribution", {"monitor": [0.3, 0.1], "fiper": [0.1, 0.3]}),
    ]
    shifted = [
        # the monitor stops at t=5 before the failure at 9; FIPER alarms only at t=9
        _scored(
            "u0",
            "unseen_object",
            {"monitor": [0.2, 0.95, 0.99], "fiper": [0.1, 0.2, 1.2]},
            failure=9,
        ),
        _scored("u1", "unseen_object", {"monitor": [0.5, 0.6, 0.7], "fiper": [0.1, 0.9, 1.1]}),
    ]
    sbs = side_by_side([*ind, *shifted], {"monitor": 0.9, "fiper": 1.0})
    mon, fip = sbs["monitor"]["calibrated"], sbs["fiper"]["calibrated"]
    assert mon["id_false_stop"]["k"] == 0 and fip["id_false_stop"]["k"] == 1
    assert mon["families"]["unseen_object"]["tpr"]["k"] == 1
    assert fip["families"]["unseen_object"]["tpr"]["k"] == 2
    assert mon["shifted_failures_stopped"]["k"] == 1 and fip["shifted_failures_stopped"]["k"] == 0
    # matched: just above the highest ID episode (monitor 0.3, FIPER 1.5): 0 ID false stops each
    mon_m, fip_m = sbs["monitor"]["matched"], sbs["fiper"]["matched"]
    assert mon_m["threshold"] == 0.3 and fip_m["threshold"] == 1.5
    assert mon_m["id_false_stop"]["k"] == 0 == fip_m["id_false_stop"]["k"]
    assert mon_m["families"]["unseen_object"]["tpr"]["k"] == 2
    assert fip_m["families"]["unseen_object"]["tpr"]["k"] == 0
    assert ACE_WINDOW >= 2
