"""The peer failure detectors a robot team would pick instead of this monitor, on our inputs.

Why here: a claim that the monitor is worth installing needs the alternatives scored on exactly
the same decisions, with thresholds from the same calibration split (issue 16 §4). Two published
systems, re-implemented from their papers on what `evaluate` has (our own code, no theirs):

* **FIPER** (Römer et al., NeurIPS 2025) — two indicators, each conformally calibrated on
  successful in-distribution rollouts, and an alarm only when **both** exceed their thresholds:

  - *RND-OE*: random-network distillation on an observation embedding. A fixed, randomly
    initialised target network and a predictor trained to imitate it on in-distribution
    observations; the predictor's squared error is high where it never saw data. Averaged over
    the last :data:`RND_WINDOW` decisions, as FIPER aggregates over a window.
  - *ACE*: the entropy of the action chunks the policy produces. FIPER samples a batch of
    chunks from a generative policy at one observation; recorded episodes (and our scripted
    policies) publish **one** chunk per decision, so here it is the Gaussian-KDE entropy of the
    chunks published at the last :data:`ACE_WINDOW` decisions, aligned by chunk step — how
    erratic the commands have become, not how multimodal one decision is. Stated in the report.

* **FAIL-Detect** (Xu et al., RSS 2025) — a learned scalar score on (observation embedding,
  action) with a **time-varying** conformal band: per decision index ``i`` the mean ``μ_i`` and
  spread ``σ_i`` of the score over calibration half A, and the band width ``h`` = the conformal
  quantile over half B of each episode's ``max_i (s_i − μ_i)/σ_i``. Alarm when
  ``s_i > μ_i + h σ_i``. Of the paper's scores this uses RND (its random-network variant);
  logpZO (a flow-matching density) is not implemented — a second generative model to train
  for a baseline, for a score the paper found comparable.

The observation embedding is this bundle's own VAE latent of the current frame (average-pooled to
at most 8×8 cells, standardised with training-split statistics): the peers see what the world
model sees, no extra encoder. The networks are fitted on the training split, the thresholds on
the calibration split halved as ``calibrate`` halves it (alternating episodes), at the bundle's
``stop_alpha``. Every detector's score is normalised so that **its alarm threshold is 1**: the
side-by-side stop metrics then read ``score > 1`` for a peer and ``risk > STOP`` for the monitor.
A threshold the calibration half cannot certify at that α is infinite (never alarms) and says so.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from world_monitor.uq.detection import conformal_threshold

__all__ = [
    "ACE_WINDOW",
    "PEER_DETECTORS",
    "PEER_LABELS",
    "RND_WINDOW",
    "EpisodeFeatures",
    "FunctionalBand",
    "Indicators",
    "NormalisedThreshold",
    "PeerDetectors",
    "RandomNetworkDistillation",
    "chunk_entropy",
    "ace_bandwidth",
    "embed_latent",
    "episode_features",
    "fit_peers",
]

LOG = logging.getLogger(__name__)

#: decisions averaged by FIPER's RND-OE indicator
RND_WINDOW = 3
#: decisions whose chunks form FIPER's ACE sample
ACE_WINDOW = 4
#: most training episodes the peers' networks are fitted on (seconds of CPU, plenty for an MLP)
MAX_TRAIN_EPISODES = 300
PEER_DETECTORS = ("fiper", "fiper_rnd_oe", "fiper_ace", "fail_detect")
PEER_LABELS = {
    "fiper": "FIPER: RND-OE and ACE both above their conformal thresholds (min of the two, "
    "each normalised to its threshold)",
    "fiper_rnd_oe": "FIPER's RND-OE indicator alone (observation novelty)",
    "fiper_ace": "FIPER's ACE indicator alone (entropy of the recent chunks)",
    "fail_detect": "FAIL-Detect: RND score on (observation, chunk) against a time-varying "
    "conformal band",
}


# --------------------------------------------------------------------------------- features
def embed_latent(latent: np.ndarray, max_cells: int = 8) -> np.ndarray:
    """``[C,h,w]`` VAE latent → flat vector, average-pooled to at most ``max_cells`` per side.

    Pooling keeps the RND input small (256 numbers for the shipped 4×16×16 latent) without
    throwing away where in the image something changed.
    """
    x = np.asarray(latent, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"embed_latent: expected [C,h,w], got shape {x.shape}")
    c, h, w = x.shape
    f = max(1, math.ceil(max(h, w) / max_cells))
    if f > 1:
        hh, ww = h // f, w // f
        x = x[:, : hh * f, : ww * f].reshape(c, hh, f, ww, f).mean(axis=(2, 4))
    return x.reshape(-1)


@dataclass
class EpisodeFeatures:
    """What the peers see of one episode: one row per decision."""

    id: str
    t: np.ndarray  # [n] decision frames
    embeddings: np.ndarray  # [n, D]
    chunks: np.ndarray  # [n, H, A]


def episode_features(
    monitor: Any, ds: Any, record: Mapping[str, Any], stride: int, batch: int = 32
) -> EpisodeFeatures:
    """Encode the current frame of every decision of one episode (batched VAE passes)."""
    from world_monitor.data.chunks import decision_points
    from world_monitor.runtime.baselines import to_model_frames

    ep = ds.load(record["id"])
    points = list(decision_points(ep, monitor.context_length, monitor.horizon, stride))
    if not points:
        raise ValueError(f"episode {record['id']}: shorter than the model's context")
    current = np.stack([p.frames[-1] for p in points])
    latents = [
        np.asarray(monitor.backend.encode(to_model_frames(current[i : i + batch])))
        for i in range(0, len(current), batch)
    ]
    emb = np.stack([embed_latent(z) for z in np.concatenate(latents)])
    return EpisodeFeatures(
        id=str(record["id"]),
        t=np.asarray([p.t for p in points]),
        embeddings=emb,
        chunks=np.stack([p.chunk for p in points]).astype(np.float64),
    )


class _Standardiser:
    """Per-feature mean/std of the training data (std floored: constant features stay finite)."""

    def __init__(self, x: np.ndarray) -> None:
        self.mean = x.mean(axis=0)
        self.std = np.maximum(x.std(axis=0), 1e-6 * max(1.0, float(x.std())) + 1e-8)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.std


# ------------------------------------------------------------------------------ RND network
class RandomNetworkDistillation:
    """A frozen random target MLP and a predictor trained to match it on in-distribution inputs.

    Why RND: both peers use it as their novelty score (FIPER on observations, FAIL-Detect on
    observation + action); the predictor's error is small only near the data it was fitted on.
    Seeded, single-process, so the same data gives the same scores.
    """

    def __init__(self, dim: int, *, seed: int = 0, hidden: int = 256, out: int = 64) -> None:
        import torch

        self.dim = int(dim)
        gen = torch.Generator().manual_seed(int(seed))
        self._torch = torch

        def mlp(sizes: Sequence[int]) -> torch.nn.Sequential:
            layers: list[torch.nn.Module] = []
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
                lin = torch.nn.Linear(a, b)
                with torch.no_grad():
                    bound = 1.0 / math.sqrt(a)
                    lin.weight.uniform_(-bound, bound, generator=gen)
                    lin.bias.uniform_(-bound, bound, generator=gen)
                layers.append(lin)
                if i < len(sizes) - 2:
                    layers.append(torch.nn.LeakyReLU(0.1))
            return torch.nn.Sequential(*layers)

        self.target = mlp([self.dim, hidden, hidden, out]).requires_grad_(False)
        self.predictor = mlp([self.dim, hidden, hidden, hidden, out])
        self._gen = gen

    def fit(
        self, x: np.ndarray, *, epochs: int = 60, batch: int = 256, lr: float = 1e-3
    ) -> list[float]:
        """Train the predictor on ``x [N, dim]``; returns the mean loss of each epoch."""
        torch = self._torch
        data = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        if data.ndim != 2 or data.shape[1] != self.dim or len(data) == 0:
            raise ValueError(f"RND fit: expected [N, {self.dim}], got {tuple(data.shape)}")
        with torch.no_grad():
            goal = self.target(data)
        opt = torch.optim.Adam(self.predictor.parameters(), lr=lr)
        losses = []
        for _ in range(int(epochs)):
            order = torch.randperm(len(data), generator=self._gen)
            total = 0.0
            for i in range(0, len(data), batch):
                idx = order[i : i + batch]
                loss = ((self.predictor(data[idx]) - goal[idx]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            losses.append(total / len(data))
        return losses

    def score(self, x: np.ndarray) -> np.ndarray:
        """Squared prediction error per row (higher = less like the training inputs)."""
        torch = self._torch
        data = torch.as_tensor(np.atleast_2d(np.asarray(x)), dtype=torch.float32)
        with torch.no_grad():
            err = ((self.predictor(data) - self.target(data)) ** 2).mean(dim=1)
        return err.double().numpy()


# ----------------------------------------------------------------------------- ACE entropy
def chunk_entropy(chunks: np.ndarray, bandwidth: np.ndarray) -> float:
    """Gaussian-KDE resubstitution entropy of ``chunks [n, H, A]`` (up to a constant).

    ``H = −mean_i log mean_j K_h(x_i − x_j)`` with a diagonal Gaussian kernel of per-element
    ``bandwidth [H, A]``; the kernel's normalising constant is dropped (it is the same for every
    decision, so it moves every score equally and changes no threshold crossing). One chunk gives
    the minimum, ``0``; chunks that spread apart give more.
    """
    x = np.asarray(chunks, dtype=np.float64).reshape(len(chunks), -1)
    h = np.asarray(bandwidth, dtype=np.float64).reshape(-1)
    u = x / h
    d2 = ((u[:, None, :] - u[None, :, :]) ** 2).sum(axis=-1)
    logk = -0.5 * d2
    m = logk.max(axis=1, keepdims=True)
    log_mean = m[:, 0] + np.log(np.exp(logk - m).mean(axis=1))
    return float(-log_mean.mean())


def ace_bandwidth(train: Sequence[EpisodeFeatures]) -> np.ndarray:
    """Per-element kernel width ``c·σ`` for :func:`chunk_entropy`, ``σ`` the training spread of
    each chunk element and ``c`` by the median heuristic over the training windows.

    Why not Scott's rule: with :data:`ACE_WINDOW` samples in ``H·A`` (32) dimensions it gives
    kernels so narrow that every window sits at the maximum entropy ``log n`` — measured on the
    default dataset, the calibration threshold was exactly log 4. ``c²`` = the median squared
    distance (in σ units) between chunks of the same in-distribution window makes a typical
    pair one kernel width apart, so the entropy moves with how far the commands spread.
    """
    chunks = np.concatenate([f.chunks for f in train])
    sigma = np.maximum(chunks.std(axis=0), 1e-6)
    d2 = []
    for f in train:
        u = f.chunks.reshape(len(f.chunks), -1) / sigma.reshape(-1)
        for i in range(1, len(u)):
            lo = max(0, i - ACE_WINDOW + 1)
            d2 += list(((u[lo:i] - u[i]) ** 2).sum(axis=1))
    c2 = float(np.median(d2)) if d2 else 1.0
    return np.sqrt(max(c2, 1e-12)) * sigma


# ------------------------------------------------------------------------------ thresholds
@dataclass
class NormalisedThreshold:
    """A conformal threshold on per-episode maxima, and the map that puts it at 1.

    ``normalise(x) = (x − centre) / (threshold − centre)`` with ``centre`` the median
    calibration maximum: monotone (AUROC unchanged) and ``> 1`` exactly when ``x`` exceeds the
    threshold. When the threshold cannot be certified (too few episodes for α) the scale uses
    the largest calibration maximum and ``alarm`` is ``inf``: scores stay comparable, no alarm.
    """

    threshold: float
    centre: float
    scale: float
    alarm: float
    info: dict[str, Any]

    @classmethod
    def fit(cls, maxima: Sequence[float], alpha: float) -> NormalisedThreshold:
        m = np.asarray([v for v in maxima if math.isfinite(v)], dtype=np.float64)
        if m.size == 0:
            raise ValueError("no finite calibration maxima to threshold")
        ct = conformal_threshold(m, alpha)
        centre = float(np.median(m))
        top = ct.threshold if math.isfinite(ct.threshold) else float(m.max())
        scale = top - centre
        if scale <= 0:
            scale = max(float(m.std()), 1e-12)
        return cls(
            threshold=ct.threshold,
            centre=centre,
            scale=float(scale),
            alarm=1.0 if math.isfinite(ct.threshold) else math.inf,
            info=ct.to_dict(),
        )

    def normalise(self, x: float) -> float:
        return (float(x) - self.centre) / self.scale


@dataclass
class FunctionalBand:
    """FAIL-Detect's time-varying band: ``μ_i``, ``σ_i`` per decision index (carried past the
    last index that enough episodes reach), and the z-score the band is cut at."""

    mean: np.ndarray
    std: np.ndarray
    min_episodes: int = 5

    @classmethod
    def fit(cls, series: Sequence[np.ndarray], min_episodes: int = 5) -> FunctionalBand:
        longest = max(len(s) for s in series)
        mean, std = [], []
        for i in range(longest):
            vals = np.asarray([s[i] for s in series if len(s) > i], dtype=np.float64)
            if len(vals) < min(min_episodes, len(series)):
                break
            mean.append(vals.mean())
            std.append(vals.std())
        floor = max(1e-12, 0.05 * float(np.median(std))) if std else 1e-12
        return cls(np.asarray(mean), np.maximum(np.asarray(std), floor), min_episodes)

    def z(self, i: int, score: float) -> float:
        j = min(int(i), len(self.mean) - 1)
        return (float(score) - self.mean[j]) / self.std[j]


# ------------------------------------------------------------------------------ detectors
@dataclass
class Indicators:
    """The fitted networks and scales: raw (un-thresholded) peer scores of decisions."""

    obs_scaler: _Standardiser
    chunk_scaler: _Standardiser
    rnd_oe: RandomNetworkDistillation
    rnd_fd: RandomNetworkDistillation
    ace_bandwidth: np.ndarray

    def fd_input(self, emb: np.ndarray, chunks: np.ndarray) -> np.ndarray:
        flat = self.chunk_scaler(np.asarray(chunks).reshape(len(chunks), -1))
        return np.concatenate([self.obs_scaler(emb), flat], axis=1)

    def oe(self, emb: np.ndarray) -> np.ndarray:
        return self.rnd_oe.score(self.obs_scaler(emb))

    def fd(self, emb: np.ndarray, chunks: np.ndarray) -> np.ndarray:
        return self.rnd_fd.score(self.fd_input(emb, chunks))

    def ace(self, chunks: np.ndarray) -> float:
        return chunk_entropy(chunks, self.ace_bandwidth)

    def series(self, feats: EpisodeFeatures) -> dict[str, np.ndarray]:
        """Windowed RND-OE, ACE and FAIL-Detect's RND score of every decision of an episode, as
        :meth:`PeerDetectors.score` computes them one decision at a time."""
        oe = self.oe(feats.embeddings)
        n = len(oe)
        lo = [max(0, i - RND_WINDOW + 1) for i in range(n)]
        lo_ace = [max(0, i - ACE_WINDOW + 1) for i in range(n)]
        return {
            "rnd_oe": np.asarray([oe[lo[i] : i + 1].mean() for i in range(n)]),
            "ace": np.asarray([self.ace(feats.chunks[lo_ace[i] : i + 1]) for i in range(n)]),
            "fd": self.fd(feats.embeddings, feats.chunks),
        }

    @classmethod
    def fit(
        cls, train: Sequence[EpisodeFeatures], *, seed: int, epochs: int
    ) -> tuple[Indicators, dict[str, float]]:
        """Scalers and both RND predictors on the training episodes, and the ACE bandwidth
        (:func:`ace_bandwidth`)."""
        emb = np.concatenate([f.embeddings for f in train])
        chunks = np.concatenate([f.chunks for f in train])
        obs_scaler = _Standardiser(emb)
        chunk_scaler = _Standardiser(chunks.reshape(len(chunks), -1))
        ind = cls(
            obs_scaler=obs_scaler,
            chunk_scaler=chunk_scaler,
            rnd_oe=RandomNetworkDistillation(emb.shape[1], seed=seed),
            rnd_fd=RandomNetworkDistillation(emb.shape[1] + chunks[0].size, seed=seed + 1),
            ace_bandwidth=ace_bandwidth(train),
        )
        oe_loss = ind.rnd_oe.fit(obs_scaler(emb), epochs=epochs)
        fd_loss = ind.rnd_fd.fit(ind.fd_input(emb, chunks), epochs=epochs)
        return ind, {"fiper_rnd_oe": oe_loss[-1], "fail_detect": fd_loss[-1]}


class PeerDetectors:
    """FIPER and FAIL-Detect fitted for one bundle and dataset (module docstring); per episode
    :meth:`reset`, then :meth:`score` each decision in order."""

    def __init__(
        self,
        indicators: Indicators,
        band: FunctionalBand,
        thresholds: Mapping[str, NormalisedThreshold],
        info: dict[str, Any],
    ) -> None:
        self.indicators = indicators
        self.band = band
        self.thresholds = dict(thresholds)
        self.info = info
        self.reset()

    def reset(self) -> None:
        """A new episode: empty windows, decision index 0."""
        self._oe: deque[float] = deque(maxlen=RND_WINDOW)
        self._chunks: deque[np.ndarray] = deque(maxlen=ACE_WINDOW)
        self._index = 0

    def skip(self) -> None:
        """A decision the peers do not score (refused unassessed): time still moves on, so
        FAIL-Detect's band stays aligned with the decision index."""
        self._index += 1

    def score(self, latent: np.ndarray, chunk: np.ndarray) -> dict[str, float]:
        """Every peer's normalised score for this decision (alarm when > its ``alarm``)."""
        ind = self.indicators
        emb = embed_latent(latent)[None]
        chunk = np.asarray(chunk, dtype=np.float64)
        self._oe.append(float(ind.oe(emb)[0]))
        self._chunks.append(chunk)
        rnd = self.thresholds["rnd_oe"].normalise(float(np.mean(self._oe)))
        ace = self.thresholds["ace"].normalise(ind.ace(np.stack(self._chunks)))
        z = self.band.z(self._index, float(ind.fd(emb, chunk[None])[0]))
        self._index += 1
        return {
            "fiper": min(rnd, ace),
            "fiper_rnd_oe": rnd,
            "fiper_ace": ace,
            "fail_detect": self.thresholds["fd_z"].normalise(z),
        }

    def alarms(self) -> dict[str, float]:
        """The score above which each peer alarms (1, or inf where α could not be certified)."""
        return {
            "fiper": max(self.thresholds["rnd_oe"].alarm, self.thresholds["ace"].alarm),
            "fiper_rnd_oe": self.thresholds["rnd_oe"].alarm,
            "fiper_ace": self.thresholds["ace"].alarm,
            "fail_detect": self.thresholds["fd_z"].alarm,
        }

    @classmethod
    def fit(
        cls,
        train: Sequence[EpisodeFeatures],
        calib: Sequence[EpisodeFeatures],
        *,
        alpha: float,
        seed: int = 0,
        epochs: int = 60,
    ) -> PeerDetectors:
        """Networks on ``train``; band on calibration half A, thresholds on half B."""
        if not train or len(calib) < 2:
            raise ValueError(
                f"peers need training and >= 2 calibration episodes (got {len(train)}, "
                f"{len(calib)})"
            )
        indicators, losses = Indicators.fit(train, seed=seed, epochs=epochs)
        half_a, half_b = list(calib[0::2]), list(calib[1::2])
        series_a = [indicators.series(f) for f in half_a]
        series_b = [indicators.series(f) for f in half_b]
        band = FunctionalBand.fit([s["fd"] for s in series_a])
        z_max = [max(band.z(i, v) for i, v in enumerate(s["fd"])) for s in series_b]
        thresholds = {
            "rnd_oe": NormalisedThreshold.fit([s["rnd_oe"].max() for s in series_b], alpha),
            "ace": NormalisedThreshold.fit([s["ace"].max() for s in series_b], alpha),
            "fd_z": NormalisedThreshold.fit(z_max, alpha),
        }
        info = {
            "train_episodes": len(train),
            "train_decisions": int(sum(len(f.t) for f in train)),
            "embedding_dim": int(train[0].embeddings.shape[1]),
            "calibration_episodes": {"band_half_a": len(half_a), "thresholds_half_b": len(half_b)},
            "alpha": alpha,
            "seed": seed,
            "epochs": epochs,
            "rnd_final_loss": losses,
            "thresholds": {k: v.info for k, v in thresholds.items()},
            "windows": {"rnd_oe": RND_WINDOW, "ace": ACE_WINDOW},
        }
        return cls(indicators, band, thresholds, info)


def fit_peers(
    monitor: Any,
    ds: Any,
    *,
    stride: int,
    alpha: float,
    max_train: int = MAX_TRAIN_EPISODES,
    progress: bool = False,
) -> PeerDetectors:
    """Encode the training and calibration splits' in-distribution episodes and fit the peers."""
    from tqdm import tqdm

    train = ds.select(split="train", shift=None).index[:max_train]
    calib = ds.select(split="calib", shift=None).index

    def features(records: Iterable[Any], desc: str) -> list[EpisodeFeatures]:
        recs = list(records)
        return [
            episode_features(monitor, ds, r, stride)
            for r in tqdm(recs, desc=desc, unit="ep", disable=not progress)
        ]

    t0 = time.perf_counter()
    peers = PeerDetectors.fit(
        features(train, "peers: train"),
        features(calib, "peers: calib"),
        alpha=alpha,
        seed=int(getattr(monitor, "seed", 0)),
    )
    peers.info["fit_seconds"] = time.perf_counter() - t0
    LOG.info("peers fitted in %.1f s: %s", peers.info["fit_seconds"], peers.alarms())
    return peers
