"""`world-monitor evaluate-model`: calibration and prediction quality of a bundle, ID and per shift.

What is measured (method.md section 1, conventions.md "calibration claims"):

* The bundle's world model is rolled out with :class:`WorldModelRollout` in its configured mode
  and DDIM steps over held-out **test** windows of ``k + H`` frames: in-distribution episodes, and
  separately each shift family's episodes, using only windows that start at or after the shift
  onset (so every frame of a mid-episode-shift window is shifted).
* Labels: ``1[|x_hat - x*| <= eps]`` per latent element, ``x*`` = the VAE encoding of the real
  future frame. Every element is one sample; ECE/MCE (20 bins), Brier, Brier skill, AUROC and the
  base rate are computed per eps in {0.1, ..., 1.0} and averaged (streamed histograms,
  :class:`CalibrationAccumulator`).
* All ten eps are read from **one** rollout: the probe is wrapped (:class:`MultiEpsilonProbe`) so
  that at the final denoising step it evaluates every eps on the same hidden tokens. That keeps the
  cost ~1 rollout instead of 10 and makes every eps judge the same predicted sample.
* Rank correlation (Spearman, Kendall, with p-values) between confidence at the reference eps and
  latent L1 error, per predicted frame and per element (subsampled).
* Prediction quality per horizon step: latent L1 and decoded-frame PSNR/SSIM, next to a
  copy-last-frame baseline (the last real context frame / its latent) and the VAE's own
  reconstruction PSNR of the true future (the ceiling any latent predictor can reach).

Outputs: ``evaluation.json``, ``reliability_<split>.png``, ``heatmaps_<split>.png`` (true |
predicted | (a) upsampled mean confidence | (b) decoder colour trick).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from world_monitor.data.dataset import EpisodeDataset
from world_monitor.data.normalize import frames_to_float
from world_monitor.models.blocks import KV
from world_monitor.models.bundle import load_bundle
from world_monitor.models.probe import C3Probe
from world_monitor.models.world_model import WorldModel
from world_monitor.training.common import TrainingError
from world_monitor.uq.calibration import (
    EPS_GRID,
    CalibrationAccumulator,
    confidence_error_correlation,
    plot_reliability,
)
from world_monitor.uq.heatmap import (
    confidence_heatmap,
    decoder_heatmap,
    reference_latents,
    to_uint8,
)
from world_monitor.uq.recalibration import ConfidenceRecalibration, correctness_samples

__all__ = [
    "EvalOptions",
    "MultiEpsilonProbe",
    "SplitEvaluator",
    "collect_correctness_samples",
    "evaluate_bundle",
    "fit_probe_recalibration",
    "print_table",
    "select_windows",
    "ssim",
]

logger = logging.getLogger(__name__)

ID_SPLIT = "in_distribution"


@dataclass
class EvalOptions:
    """How much to evaluate; defaults run in minutes on the 2-core CPU.

    ``windows`` is 512 because MCE is a maximum over bins, and with few windows the bins at
    low confidence hold a handful of elements of one window: measured on the diffusion bundle
    (the shipped one until v0.6),
    MCE 0.161 on 64 windows (one bin at ε = 0.6 off by 0.65) and 0.090 on 512 (2 min 35 s),
    with the same ECE (0.002)."""

    windows: int = 512
    shift_windows: int = 32
    stride: int = 2
    batch_size: int = 16
    seed: int = 0
    figures: int = 1
    num_threads: int = 2
    progress: bool = True
    eps_grid: tuple[float, ...] = EPS_GRID
    reference_eps: float | None = None  # None: the bundle's rollout.epsilon
    element_corr_samples: int = 4000  # per batch, for the element-level rank correlation
    #: apply the bundle's post-hoc probe recalibration (calibration.json) when it has one; the
    #: raw probe is scored alongside either way ("raw_probe")
    recalibrated: bool = True
    mode: str | None = None  # None: the bundle's rollout.mode (joint | autoregressive)
    num_inference_steps: int | None = None  # None: the bundle's DDIM steps


# ----------------------------------------------------------------------------------------------
# reading every eps from one rollout
# ----------------------------------------------------------------------------------------------


class MultiEpsilonProbe(nn.Module):
    """Wraps a C3 probe so one call returns logits for every eps of a grid.

    Output ``[B, F, E*C, h, w]`` (eps-major along channels), so the rollout code slices frames and
    applies the sigmoid unchanged; reshape to ``[B, F, E, C, h, w]`` afterwards. Internally the
    batch is replicated E times (``[E*B, ...]``), which also works for the KV caches of the
    frame-by-frame sampler (they are concatenated along the frame axis, not the batch axis).
    The eps the rollout passes in is ignored. A fixed-eps (FSC) probe yields E = 1.
    """

    def __init__(self, probe: C3Probe, grid: Sequence[float]) -> None:
        super().__init__()
        self.inner = probe
        self.grid = (
            tuple(float(e) for e in grid)
            if probe.needs_epsilon
            else (float(probe.config.fixed_epsilon),)
        )

    @property
    def needs_epsilon(self) -> bool:
        return self.inner.needs_epsilon

    @property
    def n_eps(self) -> int:
        return len(self.grid)

    def _rep(
        self, hidden: torch.Tensor, cond: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        e = self.n_eps
        b, f = hidden.shape[:2]
        h = hidden.repeat(e, *([1] * (hidden.dim() - 1)))
        c = cond.repeat(e, *([1] * (cond.dim() - 1)))
        if not self.inner.needs_epsilon:
            return h, c, None
        eps = (
            torch.tensor(self.grid, dtype=cond.dtype)
            .repeat_interleave(b)
            .unsqueeze(1)
            .expand(e * b, f)
        )
        return h, c, eps.contiguous()

    def _merge(self, logits: torch.Tensor) -> torch.Tensor:
        e = self.n_eps
        eb, f, c, hh, ww = logits.shape
        b = eb // e
        return (
            logits.view(e, b, f, c, hh, ww).permute(1, 2, 0, 3, 4, 5).reshape(b, f, e * c, hh, ww)
        )

    def forward(
        self, hidden: torch.Tensor, cond: torch.Tensor, epsilon: Any = None
    ) -> torch.Tensor:
        h, c, eps = self._rep(hidden, cond)
        return self._merge(self.inner(h, c, eps))

    def forward_cached(
        self,
        hidden: torch.Tensor,
        cond: torch.Tensor,
        epsilon: Any = None,
        cache: KV | None = None,
        with_logits: bool = True,
    ) -> tuple[torch.Tensor | None, KV]:
        h, c, eps = self._rep(hidden, cond)
        logits, kv = self.inner.forward_cached(h, c, eps, cache, with_logits)
        return (self._merge(logits) if logits is not None else None), kv


# ----------------------------------------------------------------------------------------------
# image metrics
# ----------------------------------------------------------------------------------------------


def _psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per image for [-1, 1] images ``[..., 3, H, W]``."""
    mse = ((pred.clamp(-1, 1) - target) ** 2).flatten(-3).mean(-1).clamp_min(1e-10)
    return 10.0 * torch.log10(4.0 / mse)


def ssim(
    pred: torch.Tensor, target: torch.Tensor, window: int = 7, sigma: float = 1.5
) -> torch.Tensor:
    """Mean SSIM per image (Gaussian window, images in [-1, 1] mapped to [0, 1]); ``[..., 3, H, W]``."""
    lead = pred.shape[:-3]
    x = ((pred.clamp(-1, 1) + 1) / 2).reshape(-1, *pred.shape[-3:])
    y = ((target.clamp(-1, 1) + 1) / 2).reshape(-1, *target.shape[-3:])
    ch = x.shape[1]
    ax = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    g = g / g.sum()
    k = (g[:, None] * g[None, :]).expand(ch, 1, window, window).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, k, groups=ch)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx**2
    syy = blur(y * y) - my**2
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1).reshape(lead)


# ----------------------------------------------------------------------------------------------
# window selection
# ----------------------------------------------------------------------------------------------


def select_windows(
    ds: EpisodeDataset, length: int, stride: int, limit: int, seed: int, *, after_onset: bool
) -> list[tuple[int, int]]:
    """Up to ``limit`` seeded (episode position, start) windows of ``ds``.

    With ``after_onset`` only windows starting at or after each episode's shift onset count
    (onset 0 or missing = the whole episode). Windows are spread over episodes first (round robin
    over a seeded episode order) so a few long episodes cannot dominate a split.
    """
    rng = np.random.default_rng(seed)
    per_ep: list[list[tuple[int, int]]] = []
    for i, r in enumerate(ds.index):
        first = int(r.onset or 0) if after_onset else 0
        starts = list(range(first, r.length - length + 1, max(stride, 1)))
        rng.shuffle(starts)
        per_ep.append([(i, s) for s in starts])
    order = rng.permutation(len(per_ep))
    out: list[tuple[int, int]] = []
    depth = 0
    while len(out) < limit and any(depth < len(per_ep[i]) for i in order):
        for i in order:
            if depth < len(per_ep[i]) and len(out) < limit:
                out.append(per_ep[i][depth])
        depth += 1
    return sorted(out)


# ----------------------------------------------------------------------------------------------
# per-split accumulation
# ----------------------------------------------------------------------------------------------


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def _clean(obj: Any) -> Any:
    """JSON-safe copy: numpy -> python, NaN/inf -> None (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return _finite(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


@dataclass
class SplitEvaluator:
    """Accumulates one split's metrics from batches of rollout outputs (no model inside).

    Kept separate from the model so the metric plumbing can be tested with synthetic confidences
    whose calibration is known.
    """

    eps_grid: tuple[float, ...]
    reference_eps: float
    horizon: int
    element_corr_samples: int = 4000
    seed: int = 0
    acc: CalibrationAccumulator = field(init=False)
    #: the probe's own confidence before post-hoc recalibration (when one is applied)
    acc_raw: CalibrationAccumulator | None = field(init=False, default=None)
    _rows: dict[str, list[np.ndarray]] = field(init=False, default_factory=dict)
    _elem: list[tuple[np.ndarray, np.ndarray]] = field(init=False, default_factory=list)
    n_windows: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.acc = CalibrationAccumulator(self.eps_grid)
        self._rng = np.random.default_rng(self.seed)
        self._ref = int(np.argmin([abs(e - self.reference_eps) for e in self.eps_grid]))

    def _add(self, name: str, value: torch.Tensor) -> None:
        self._rows.setdefault(name, []).append(value.detach().float().cpu().numpy())

    def update(
        self,
        confidence: torch.Tensor,
        pred_latents: torch.Tensor,
        true_latents: torch.Tensor,
        last_context_latent: torch.Tensor,
        pred_frames: torch.Tensor | None = None,
        true_frames: torch.Tensor | None = None,
        last_context_frame: torch.Tensor | None = None,
        recon_frames: torch.Tensor | None = None,
        raw_confidence: torch.Tensor | None = None,
    ) -> None:
        """``confidence [B, H, E, C, h, w]``, latents ``[B, H, C, h, w]``, last context
        latent ``[B, C, h, w]``; frames ``[B, H, 3, H, W]`` in [-1, 1] (last context frame
        ``[B, 3, H, W]``); ``recon_frames`` = VAE decode of the true latents (optional);
        ``raw_confidence`` = the probe's output before recalibration (also scored)."""
        err = (pred_latents - true_latents).abs()
        for j, eps in enumerate(self.eps_grid):
            self.acc.update_from_errors(eps, confidence[:, :, j], err)
        if raw_confidence is not None:
            if self.acc_raw is None:
                self.acc_raw = CalibrationAccumulator(self.eps_grid)
            for j, eps in enumerate(self.eps_grid):
                self.acc_raw.update_from_errors(eps, raw_confidence[:, :, j], err)
        q_ref = confidence[:, :, self._ref]
        dims = (2, 3, 4)
        self._add("conf_ref", q_ref.mean(dims))  # [B, H]
        self._add("conf_all", confidence.mean((2, 3, 4, 5)))
        self._add("l1", err.mean(dims))
        self._add("l1_copy", (last_context_latent[:, None] - true_latents).abs().mean(dims))
        flat_q, flat_e = q_ref.reshape(-1).numpy(), err.reshape(-1).numpy()
        n = min(self.element_corr_samples, flat_q.size)
        idx = self._rng.choice(flat_q.size, size=n, replace=False)
        self._elem.append((flat_q[idx], flat_e[idx]))
        if pred_frames is not None and true_frames is not None and last_context_frame is not None:
            copy = last_context_frame[:, None].expand_as(true_frames)
            self._add("psnr", _psnr(pred_frames, true_frames))
            self._add("psnr_copy", _psnr(copy, true_frames))
            self._add("ssim", ssim(pred_frames, true_frames))
            self._add("ssim_copy", ssim(copy, true_frames))
            if recon_frames is not None:
                self._add("psnr_vae", _psnr(recon_frames, true_frames))
        self.n_windows += int(confidence.shape[0])

    def _cat(self, name: str) -> np.ndarray | None:
        rows = self._rows.get(name)
        return np.concatenate(rows) if rows else None

    def summary(self) -> dict[str, Any]:
        """All metrics of the split (means over eps, per eps, per horizon step)."""
        cal = self.acc.summary()
        mean = cal["mean"]  # type: ignore[index]
        out: dict[str, Any] = {
            "n_windows": self.n_windows,
            "reference_eps": self.eps_grid[self._ref],
        }
        for k in ("ece", "mce", "mce_massive", "brier", "brier_skill", "auroc", "base_rate"):
            out[k] = mean[k]  # type: ignore[index]
        out["per_eps"] = cal["per_eps"]
        if self.acc_raw is not None:
            raw = self.acc_raw.summary()
            out["raw_probe"] = {
                k: raw["mean"][k]  # type: ignore[index]
                for k in ("ece", "mce", "brier", "brier_skill", "auroc")
            }
            out["raw_probe"]["per_eps"] = raw["per_eps"]
        conf, l1 = self._cat("conf_ref"), self._cat("l1")
        if conf is None or l1 is None:
            return out
        try:
            with warnings.catch_warnings():
                # a constant confidence (e.g. an untrained probe) has no rank correlation: NaN -> null
                warnings.simplefilter("ignore", category=RuntimeWarning)
                out["correlation_frame"] = confidence_error_correlation(conf, l1).to_dict()
                qe = np.concatenate([q for q, _ in self._elem])
                ee = np.concatenate([e for _, e in self._elem])
                out["correlation_element"] = confidence_error_correlation(
                    qe, ee, seed=self.seed
                ).to_dict()
        except ValueError as exc:  # fewer than 3 pairs
            logger.warning("correlation skipped: %s", exc)
        out["mean_confidence"] = float(self._cat("conf_all").mean())  # type: ignore[union-attr]
        out["mean_confidence_ref"] = float(conf.mean())
        out["mean_latent_l1"] = float(l1.mean())
        per_step: dict[str, list[float]] = {
            "mean_confidence_ref": conf.mean(0).tolist(),
            "latent_l1": l1.mean(0).tolist(),
            "latent_l1_copy_last": self._cat("l1_copy").mean(0).tolist(),  # type: ignore[union-attr]
        }
        out["latent_l1_copy_last"] = float(np.mean(per_step["latent_l1_copy_last"]))
        for name, key in (
            ("psnr", "psnr"),
            ("psnr_copy", "psnr_copy_last"),
            ("ssim", "ssim"),
            ("ssim_copy", "ssim_copy_last"),
            ("psnr_vae", "vae_recon_psnr"),
        ):
            arr = self._cat(name)
            if arr is not None:
                per_step[key] = arr.mean(0).tolist()
                out[key] = float(arr.mean())
        out["per_step"] = per_step
        return out


# ----------------------------------------------------------------------------------------------
# the evaluation run
# ----------------------------------------------------------------------------------------------


def _batches(items: list[tuple[int, int]], size: int) -> list[list[tuple[int, int]]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _rollout_batches(
    model: WorldModel,
    ds: EpisodeDataset,
    windows: list[tuple[int, int]],
    opts: EvalOptions,
    name: str,
    *,
    decode: bool = True,
) -> Iterator[dict[str, Any]]:
    """Roll the model out over ``windows`` in batches, every ε of the grid read from one
    rollout (:class:`MultiEpsilonProbe`); yields the batch's frames, latents and confidence
    ``[B, H, E, C, h, w]``. Seeded per batch, so the same windows give the same samples."""
    mc = model.config
    k, h = mc.context_length, mc.horizon
    probe = MultiEpsilonProbe(model.probe, opts.eps_grid)
    rollout = model.rollout(probe=probe).eval()
    grid = probe.grid
    for bi, batch in enumerate(
        tqdm(_batches(windows, opts.batch_size), desc=name, disable=not opts.progress, unit="batch")
    ):
        frames, actions = zip(*(ds.window(e, s, k + h) for e, s in batch), strict=True)
        x = torch.from_numpy(frames_to_float(np.stack(frames))).permute(0, 1, 4, 2, 3).contiguous()
        a = torch.from_numpy(model.normalize_actions(np.stack(actions)))
        lat = model.vae.encode(x)
        ctx, target = lat[:, :k], lat[:, k:]
        chunk = a[:, k - 1 : k - 1 + h]
        ctx_actions = a[:, : k - 1] if k > 1 else None
        gen = torch.Generator().manual_seed(opts.seed * 100_003 + bi)
        res = rollout(ctx, chunk, context_actions=ctx_actions, generator=gen, decode=decode)
        b = ctx.shape[0]
        conf = res.confidence.reshape(b, h, len(grid), *lat.shape[2:])
        yield {"x": x, "ctx": ctx, "target": target, "res": res, "conf": conf, "grid": grid}


def _recalibrated(
    conf: torch.Tensor, recal: ConfidenceRecalibration, grid: Sequence[float]
) -> torch.Tensor:
    """``conf [B, H, E, ...]`` with each ε slice passed through its recalibration map."""
    out = conf.clone()
    for j, eps in enumerate(grid):
        out[:, :, j] = torch.from_numpy(recal.apply(conf[:, :, j].numpy(), eps))
    return out


@torch.no_grad()
def _evaluate_split(
    model: WorldModel,
    ds: EpisodeDataset,
    windows: list[tuple[int, int]],
    opts: EvalOptions,
    name: str,
    ref_eps: float,
    recal: ConfidenceRecalibration | None = None,
) -> tuple[SplitEvaluator, dict[str, torch.Tensor] | None]:
    k, h = model.config.context_length, model.config.horizon
    ev: SplitEvaluator | None = None
    example: dict[str, torch.Tensor] | None = None
    for b in _rollout_batches(model, ds, windows, opts, name):
        if ev is None:
            ev = SplitEvaluator(b["grid"], ref_eps, h, opts.element_corr_samples, opts.seed)
        x, ctx, target, res, raw = b["x"], b["ctx"], b["target"], b["res"], b["conf"]
        conf = raw if recal is None else _recalibrated(raw, recal, b["grid"])
        recon = model.vae.decode(target)
        ev.update(
            conf,
            res.latents,
            target,
            ctx[:, -1],
            res.frames,
            x[:, k:],
            x[:, k - 1],
            recon,
            raw_confidence=None if recal is None else raw,
        )
        if example is None:
            example = {
                "true": x[:, k:][: opts.figures],
                "pred": res.frames[: opts.figures],  # type: ignore[index]
                "conf": conf[: opts.figures, :, ev._ref],
            }
    if ev is None:
        raise TrainingError(f"{name}: no windows to evaluate")
    return ev, example


@torch.no_grad()
def fit_probe_recalibration(
    model: WorldModel,
    ds: EpisodeDataset,
    windows: list[tuple[int, int]],
    opts: EvalOptions,
    *,
    info: Mapping[str, Any] | None = None,
) -> ConfidenceRecalibration:
    """Fit :class:`ConfidenceRecalibration` on rollouts of ``windows`` (held-out, in
    distribution), labelled with the real future exactly as the evaluation labels them."""
    samples = collect_correctness_samples(model, ds, windows, opts, "probe recalibration")
    meta = {"windows": len(windows), "episodes": len({e for e, _ in windows}), **dict(info or {})}
    return ConfidenceRecalibration.fit(samples, seed=opts.seed, info=meta)


@torch.no_grad()
def collect_correctness_samples(
    model: WorldModel,
    ds: EpisodeDataset,
    windows: list[tuple[int, int]],
    opts: EvalOptions,
    name: str,
) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """``{ε: (q̂, 1[|x̂ − x*| ≤ ε])}`` over every latent element of rollouts of ``windows``
    (no decoding): what a recalibration is fitted and scored on."""
    per_eps: dict[float, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for b in _rollout_batches(model, ds, windows, opts, name, decode=False):
        err = (b["res"].latents - b["target"]).abs().numpy()
        for eps, (q, acc) in correctness_samples(b["conf"].numpy(), err, b["grid"]).items():
            qs, accs = per_eps.setdefault(eps, ([], []))
            qs.append(q.astype(np.float32))
            accs.append(acc)
    return {e: (np.concatenate(q), np.concatenate(a)) for e, (q, a) in per_eps.items()}


def _heatmap_figure(
    model: WorldModel,
    example: dict[str, torch.Tensor],
    refs: tuple[torch.Tensor, ...],
    path: Path,
    title: str,
) -> Path:
    """Rows = horizon steps of the first example windows; columns = true | predicted | (a) | (b)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    true, pred, conf = example["true"], example["pred"], example["conf"]
    n, h = true.shape[:2]
    steps = sorted({int(round(s)) for s in np.linspace(0, h - 1, min(h, 4))})
    rows = [(i, s) for i in range(n) for s in steps]
    size = tuple(true.shape[-2:])
    fig = Figure(figsize=(8, 2.1 * len(rows)), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 4, squeeze=False)
    cols = ("true frame", "predicted frame", "(a) mean confidence", "(b) decoder colour map")
    for r, (i, s) in enumerate(rows):
        q = conf[i, s]
        a_img = confidence_heatmap(q, size)  # type: ignore[arg-type]
        b_img = to_uint8(
            decoder_heatmap(q, refs, model.vae.decode, predicted_frame=pred[i, s].clamp(-1, 1))
        )  # type: ignore[arg-type]
        imgs = (to_uint8(true[i, s]), to_uint8(pred[i, s]), a_img, b_img)
        for c, img in enumerate(imgs):
            ax = axes[r, c]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(f"win {i} step {s + 1}\nq̄={float(q.mean()):.2f}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _override_rollout(model: WorldModel, opts: EvalOptions) -> None:
    """Apply --mode / --steps; a deterministic bundle has exactly one mode."""
    rc = model.config.rollout
    if opts.mode is not None and opts.mode != rc.mode:
        if model.config.variant == "deterministic" or opts.mode == "deterministic":
            raise TrainingError(
                f"mode {opts.mode!r} does not apply to a {model.config.variant} bundle "
                f"(its mode is {rc.mode!r})"
            )
        rc.mode = opts.mode
    if opts.num_inference_steps is not None:
        if opts.num_inference_steps < 1:
            raise TrainingError(f"--steps must be >= 1, got {opts.num_inference_steps}")
        rc.num_inference_steps = opts.num_inference_steps


def evaluate_bundle(
    bundle_path: Path,
    *,
    data_root: str | Path | None = None,
    out_dir: Path,
    options: EvalOptions | None = None,
) -> dict[str, Any]:
    """Evaluate a bundle on ID test windows and each shift family; write JSON + figures."""
    opts = options or EvalOptions()
    torch.set_num_threads(opts.num_threads)
    t_start = time.perf_counter()
    bundle = load_bundle(bundle_path)
    model = WorldModel.from_bundle(bundle)
    _override_rollout(model, opts)
    trained_grid = ((bundle.config.get("train") or {}).get("dynamics") or {}).get("eps") or {}
    if opts.eps_grid == EPS_GRID and trained_grid.get("grid"):
        # a bundle trained on a data-driven grid is scored on that grid (training/eps_grid.py)
        opts = dataclasses.replace(opts, eps_grid=tuple(float(e) for e in trained_grid["grid"]))
    root = Path(data_root or bundle.config.get("data", {}).get("root", ""))
    if not root or not (root / "index.json").is_file():
        raise FileNotFoundError(f"{root}: no dataset here (pass --data DIR)")
    ds = EpisodeDataset(root)
    mc = model.config
    length = mc.context_length + mc.horizon
    ref_eps = float(opts.reference_eps if opts.reference_eps is not None else mc.rollout.epsilon)
    out_dir.mkdir(parents=True, exist_ok=True)
    test = ds.select(split="test")
    families = sorted({r.shift for r in test.index if r.shift is not None})
    plan: list[tuple[str, EpisodeDataset, int, bool]] = [
        (ID_SPLIT, test.select(shift=None), opts.windows, False)
    ]
    plan += [(f, test.select(shift=f), opts.shift_windows, True) for f in families]
    refs = reference_latents(model.vae.encode, tuple(bundle.image_size))  # type: ignore[arg-type]
    recal = None
    stored = (bundle.calibration or {}).get("probe_recalibration")
    if opts.recalibrated and stored is not None:
        recal = ConfidenceRecalibration.from_dict(stored)
    splits: dict[str, Any] = {}
    files: dict[str, str] = {}
    for name, sub, limit, after in plan:
        wins = select_windows(sub, length, opts.stride, limit, opts.seed, after_onset=after)
        if not wins:
            logger.warning("%s: no test window of %d frames; skipped", name, length)
            splits[name] = {"n_windows": 0}
            continue
        t0 = time.perf_counter()
        ev, example = _evaluate_split(model, sub, wins, opts, name, ref_eps, recal)
        summary = ev.summary()
        summary["n_episodes"] = len({e for e, _ in wins})
        summary["seconds"] = round(time.perf_counter() - t0, 2)
        splits[name] = summary
        rel = plot_reliability(
            ev.acc,
            out_dir / f"reliability_{name}.png",
            eps_values=[0.1, 0.3, 0.5, 1.0] if ev.acc.eps_values == list(EPS_GRID) else None,
            title=f"{name}: C3 reliability",
        )
        files[f"reliability_{name}"] = rel.name
        if example is not None and opts.figures > 0:
            fig = _heatmap_figure(
                model,
                example,
                refs,
                out_dir / f"heatmaps_{name}.png",
                f"{name} ({mc.variant}, {mc.rollout.mode})",
            )
            files[f"heatmaps_{name}"] = fig.name
        logger.info(
            "%s: %d windows, ECE %.4f, AUROC %.3f (%.1f s)",
            name,
            summary["n_windows"],
            summary["ece"],
            summary["auroc"],
            summary["seconds"],
        )
    report = {
        "bundle": str(bundle_path),
        "dataset": str(root),
        "model_variant": mc.variant,
        "rollout": mc.rollout.to_dict(),
        "context_length": mc.context_length,
        "horizon": mc.horizon,
        "eps_grid": list(opts.eps_grid),
        "n_bins": 20,
        "options": {k: v for k, v in opts.__dict__.items() if k != "eps_grid"},
        "probe_recalibration": (
            None if recal is None else {"applied": True, "info": dict(recal.info)}
        ),
        "splits": splits,
        "files": files,
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    report = _clean(report)
    (out_dir / "evaluation.json").write_text(
        json.dumps(report, indent=1, allow_nan=False), encoding="utf-8"
    )
    return report


#: an accuracy label whose in-distribution base rate is outside [LOW, 1 - LOW] is nearly constant
UNINFORMATIVE_BASE_RATE = 0.05


def label_base_rates(report: dict[str, Any], split: str = ID_SPLIT) -> tuple[str, list[str]]:
    """One line of the C³ labels' base rate per ε on ``split``, and warnings when they are
    nearly constant.

    Why: the probe learns ``P(|prediction - truth| < ε)``; on a scene where most of the image
    never changes nearly every element is within ε at every grid value (base rates 0.96-0.998
    were measured on a static scene), the labels carry almost no information, and a probe can
    score ECE 0.003 at AUROC 0.54. A user must see that before trusting the C³ numbers.
    """
    per = (report.get("splits", {}).get(split) or {}).get("per_eps") or {}
    rates = {float(e): m.get("base_rate") for e, m in per.items()}
    rates = {e: float(r) for e, r in rates.items() if r is not None and math.isfinite(r)}
    if not rates:
        return f"C3 label base rate per eps ({split}): none (no windows)", []
    line = f"C3 label base rate per eps ({split}): " + ", ".join(
        f"{e:g}: {r:.3f}" for e, r in sorted(rates.items())
    )
    low = UNINFORMATIVE_BASE_RATE
    flat = [e for e, r in rates.items() if r < low or r > 1 - low]
    warnings_out = []
    if len(flat) * 2 > len(rates):
        warnings_out.append(
            f"warning: the C3 labels are nearly constant at {len(flat)} of {len(rates)} eps values "
            f"(base rate outside [{low:g}, {1 - low:g}]): the probe's calibration numbers say "
            "little on this data; compare its AUROC with 0.5 and the per-signal AUROCs of "
            "`evaluate` before relying on the C3 signal"
        )
    return line, warnings_out


def print_table(report: dict[str, Any]) -> None:
    """Markdown-style table of the headline numbers on the console (used by the CLI)."""
    from rich.console import Console
    from rich.table import Table

    cols = [
        ("split", None),
        ("n", "n_windows"),
        ("ECE", "ece"),
        ("MCE", "mce"),
        ("MCE*", "mce_massive"),
        ("Brier", "brier"),
        ("BSS", "brier_skill"),
        ("AUROC", "auroc"),
        ("base", "base_rate"),
        ("conf", "mean_confidence"),
        ("L1", "mean_latent_l1"),
        ("L1 copy", "latent_l1_copy_last"),
        ("PSNR", "psnr"),
        ("PSNR copy", "psnr_copy_last"),
        ("SSIM", "ssim"),
        ("SSIM copy", "ssim_copy_last"),
    ]
    table = Table(
        title=f"C3 evaluation ({report.get('model_variant')}, {report.get('rollout', {}).get('mode')})"
    )
    for label, _ in cols:
        table.add_column(label, justify="left" if label == "split" else "right")
    table.add_column("ρ(conf,L1)", justify="right")
    for name, s in report["splits"].items():
        row = [name]
        for _, key in cols[1:]:
            v = s.get(key)
            row.append("—" if v is None else (str(v) if isinstance(v, int) else f"{v:.3f}"))
        rho = s.get("correlation_frame", {}).get("spearman_rho")
        row.append("—" if rho is None else f"{rho:+.3f}")
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # piped / logged: do not squeeze the table to 80 columns
        console = Console(width=200)
    console.print(table)
    from world_monitor.uq.calibration import MCE_MIN_MASS

    console.print(
        f"MCE* = MCE over the reliability bins holding >= {MCE_MIN_MASS:.1%} of the elements "
        "(MCE itself can come from a nearly empty bin; per-eps bin counts in evaluation.json)"
    )
