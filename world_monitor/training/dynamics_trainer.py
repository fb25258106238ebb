"""Stage 3: dynamics + C3 probe on cached latent windows of k context + H future frames.

Diffusion variant (method.md section 1): every frame gets its own noise level (diffusion forcing),
context frames are clean (``t = 0``) and masked out of the loss, and the joint objective is
``(1 - lam) * MSE_v + lam * BCE`` from :func:`c3_loss`, with CS-BC epsilon drawn per (sample,
frame). The label is the paper code's ``1[|v_hat - v*| <= eps]``. ``ddim_rescale`` (ours, off by
default) uses ``1[|b| |v_hat - v*| <= eps]`` with ``b`` the DDIM coefficient of the inference
schedule, which at the final step is the one-step x0 error; on a short measured run it gave a
lower ECE but a saturated, far less discriminative probe (AUROC 0.64 vs 0.87, numbers in
config/train/default.yaml).

Deterministic variant: one pass predicts all H future latents; loss
``(1 - lam) * MSE(x_hat, x*) + lam * BCE(q, 1[|x_hat - x*| <= eps])``.

Context actions are dropped (marked invalid) with probability ``context_action_dropout`` per sample
so the model also works when the monitor does not know the past actions.

All randomness of step ``s`` comes from :func:`step_generator(seed, s, ...)`, so a resumed run is
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from world_monitor.models.dynamics import sample_diffusion_forcing_timesteps
from world_monitor.models.world_model import WorldModel
from world_monitor.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    step_generator,
)
from world_monitor.training.common import MetricsLog, TrainingError, lr_at, set_lr
from world_monitor.training.distributed import DistInfo, JointNets
from world_monitor.training.latent_cache import LatentSplit
from world_monitor.training.losses import (
    C3LossOutput,
    EpsilonSampler,
    c3_loss,
    context_loss_mask,
    previous_timestep,
)

__all__ = ["DynamicsTrainConfig", "dynamics_loss", "train_dynamics"]

logger = logging.getLogger(__name__)


@dataclass
class DynamicsTrainConfig:
    steps: int = 6000
    batch_size: int = 16
    lr: float = 3e-4
    warmup: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    lam: float = 0.5
    probe_loss: str = "bce"
    ddim_rescale: bool = False
    eps: dict[str, Any] = field(
        default_factory=lambda: {"mode": "grid", "low": 0.1, "high": 1.0, "n": 10}
    )
    context_action_dropout: float = 0.2
    val_every: int = 500
    val_batches: int = 8
    ckpt_every: int = 500
    log_every: int = 50

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DynamicsTrainConfig:
        return cls(**d)

    def sampler(self) -> EpsilonSampler:
        """The ε sampler: ``grid`` (low, high, n), ``continuous`` (low, high) or ``data`` (the
        grid the trainer computed from the training latents, :mod:`~world_monitor.training.
        eps_grid`, stored under ``grid``)."""
        e = dict(self.eps)
        mode = e.get("mode", "grid")
        if mode == "data":
            grid = e.get("grid")
            if not grid:
                raise ValueError(
                    "eps mode 'data' needs the grid computed from the training latents "
                    "(train() does this before the dynamics stage)"
                )
            values = tuple(float(v) for v in grid)
            return EpsilonSampler(mode="grid", grid=values, low=min(values), high=max(values))
        if mode == "grid":
            return EpsilonSampler.uniform_grid(
                float(e.get("low", 0.1)), float(e.get("high", 1.0)), int(e.get("n", 10))
            )
        return EpsilonSampler(
            mode="continuous", low=float(e.get("low", 0.1)), high=float(e.get("high", 1.0))
        )


def _action_valid(b: int, f: int, k: int, p_drop: float, g: torch.Generator) -> torch.Tensor:
    """All actions valid, except the context actions of a random ``p_drop`` share of samples."""
    valid = torch.ones(b, f)
    drop = torch.rand(b, generator=g) < p_drop
    valid[drop, : max(k - 1, 0)] = 0.0
    return valid


def dynamics_loss(
    model: WorldModel,
    latents: torch.Tensor,
    actions: torch.Tensor,
    cfg: DynamicsTrainConfig,
    sampler: EpsilonSampler,
    g: torch.Generator,
    *,
    rows: slice | None = None,
    nets: Callable[[Callable[[Any, Any], C3LossOutput]], C3LossOutput] | None = None,
) -> C3LossOutput:
    """The joint loss of one batch of windows ``latents [B, k+H, C, h, w]``, ``actions [B, k+H, A]``.

    Every random draw is made for the whole batch first, in the single-process order; ``rows``
    then keeps this process's slice of it (DDP: :mod:`~world_monitor.training.distributed`),
    so the ranks together compute exactly the single-process batch. ``nets(fn)`` runs
    ``fn(dynamics, probe)`` (through the DDP wrapper); default: the model's own nets.
    """
    mc = model.config
    k = mc.context_length
    b, f = latents.shape[:2]
    dev = latents.device
    keep = slice(None) if rows is None else rows
    # random draws on the CPU generator, then moved: identical batches on CPU and GPU
    valid = _action_valid(b, f, k, cfg.context_action_dropout, g).to(dev)[keep]
    eps = sampler.sample(b, f, generator=g).to(dev)[keep]
    run = nets if nets is not None else (lambda fn: fn(model.dynamics, model.probe))
    if mc.variant == "deterministic":
        lat, act = latents[keep], actions[keep]

        def deterministic(dynamics: Any, probe: Any) -> C3LossOutput:
            e = eps
            future, hidden, cond = dynamics(lat[:, :k], act, valid)
            logits = probe(hidden, cond, e if probe.needs_epsilon else None)[:, k:]
            if not probe.needs_epsilon:
                e = torch.full_like(e, probe.config.fixed_epsilon)
            return c3_loss(
                future, lat[:, k:], logits, e[:, k:], lam=cfg.lam, probe_loss=cfg.probe_loss
            )  # type: ignore[arg-type]

        return run(deterministic)
    dyn = model.dynamics
    n_train = mc.dynamics.num_train_timesteps
    t = sample_diffusion_forcing_timesteps(b, f, n_train, num_clean_context=k, generator=g)
    noise = torch.randn(latents.shape, generator=g).to(dev)[keep]
    t = t.to(dev)[keep]
    lat, act = latents[keep], actions[keep]
    noisy, v_target = dyn.training_targets(lat, noise, t)  # type: ignore[operator]
    rescale: dict[str, torch.Tensor] = {}
    if cfg.ddim_rescale:
        rescale = {
            "alphas_cumprod": dyn.noise_scheduler.alphas_cumprod.to(dev),  # type: ignore[union-attr]
            "timesteps": t,
            "prev_timesteps": previous_timestep(t, n_train, mc.rollout.num_inference_steps),
        }
    mask = context_loss_mask(lat.shape[0], f, k, device=dev)

    def diffusion(dynamics: Any, probe: Any) -> C3LossOutput:
        e = eps
        v, hidden, cond = dynamics(noisy, t, act, valid)
        if not probe.needs_epsilon:
            e = torch.full_like(e, probe.config.fixed_epsilon)
        logits = probe(hidden, cond, e if probe.needs_epsilon else None)
        return c3_loss(
            v,
            v_target,
            logits,
            e,
            loss_mask=mask,
            lam=cfg.lam,
            probe_loss=cfg.probe_loss,  # type: ignore[arg-type]
            **rescale,
        )

    return run(diffusion)


def _device(model: WorldModel) -> torch.device:
    return next(model.dynamics.parameters()).device


def _sample_batch(
    data: LatentSplit,
    starts: np.ndarray,
    length: int,
    b: int,
    g: torch.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randint(len(starts), (b,), generator=g).numpy()
    lat, act = data.gather(starts[idx], length)
    return lat.to(device), act.to(device)


@torch.no_grad()
def _validate(
    model: WorldModel,
    data: LatentSplit,
    cfg: DynamicsTrainConfig,
    sampler: EpsilonSampler,
    seed: int,
) -> dict[str, float]:
    """Loss on fixed (seeded, step-independent) val windows: comparable across the run."""
    length = model.config.context_length + model.config.horizon
    starts = data.window_starts(length)
    if len(starts) == 0:
        return {}
    model.eval()
    tot = {"val_loss": 0.0, "val_mse": 0.0, "val_probe": 0.0, "val_label_rate": 0.0}
    for i in range(cfg.val_batches):
        g = step_generator(seed, 10_000_000 + i, 7)
        lat, act = _sample_batch(data, starts, length, cfg.batch_size, g, _device(model))
        out = dynamics_loss(model, lat, act, cfg, sampler, g)
        tot["val_loss"] += out.total.item()
        tot["val_mse"] += out.mse_v.item()
        tot["val_probe"] += out.probe.item()
        tot["val_label_rate"] += out.label_rate
    return {k: v / cfg.val_batches for k, v in tot.items()}


def train_dynamics(
    model: WorldModel,
    train: LatentSplit,
    val: LatentSplit | None,
    cfg: DynamicsTrainConfig,
    *,
    seed: int,
    ckpt_dir: Path,
    metrics: MetricsLog,
    progress: bool = True,
    stop_at: int | None = None,
    dist: DistInfo | None = None,
) -> dict[str, float]:
    """Train ``model.dynamics`` and ``model.probe`` in place (the VAE is frozen); resumable.

    ``stop_at`` ends the loop early at that step (after checkpointing), as if interrupted: used
    by the resume test and for quick throughput measurements. ``dist``: this process's DDP rank
    (:mod:`~world_monitor.training.distributed`; rank 0 logs, validates and checkpoints).
    """
    dist = dist or DistInfo()
    length = model.config.context_length + model.config.horizon
    starts = train.window_starts(length)
    if len(starts) == 0:
        raise TrainingError(
            f"no training window of {length} frames (context_length + horizon): episodes are too short"
        )
    sampler = cfg.sampler()
    device = _device(model)
    params = list(model.dynamics.parameters()) + list(model.probe.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rows = dist.rows(cfg.batch_size) if dist.active else None
    nets = None
    if dist.active:
        from torch.nn.parallel import DistributedDataParallel

        nets = DistributedDataParallel(JointNets(model.dynamics, model.probe))
    modules = {"dynamics": model.dynamics, "probe": model.probe}
    start = 0
    last = latest_checkpoint(ckpt_dir)
    if last is not None:
        ck = load_checkpoint(last, modules, {"dynamics": opt})
        start = ck.step
        logger.info("dynamics: resumed from %s (step %d)", last, start)
    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    result: dict[str, float] = {"start_step": float(start)}
    bar = tqdm(
        range(start, end),
        desc=f"dynamics ({model.config.variant})",
        disable=not progress,
        unit="step",
        initial=start,
        total=cfg.steps,
    )
    t0 = time.perf_counter()
    windows = 0
    for step in bar:
        model.dynamics.train()
        model.probe.train()
        set_lr(opt, lr_at(step, base=cfg.lr, warmup=cfg.warmup, total=cfg.steps))
        g = step_generator(seed, step, 3)
        lat, act = _sample_batch(train, starts, length, cfg.batch_size, g, device)
        out = dynamics_loss(model, lat, act, cfg, sampler, g, rows=rows, nets=nets)
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        windows += cfg.batch_size
        done = step + 1
        if done % cfg.log_every == 0 or done == end:
            rate = windows / max(time.perf_counter() - t0, 1e-9)
            row = {  # the global batch's (the mean over the ranks' equal slices)
                "loss": dist.mean(out.total.item()),
                "mse": dist.mean(out.mse_v.item()),
                "probe": dist.mean(out.probe.item()),
                "label_rate": dist.mean(out.label_rate),
                "windows_per_s": rate,
                "lr": opt.param_groups[0]["lr"],
            }
            metrics.write("dynamics", done, row)
            bar.set_postfix(
                loss=f"{row['loss']:.4f}", mse=f"{row['mse']:.4f}", bce=f"{row['probe']:.3f}"
            )
            result.update(loss=row["loss"], windows_per_s=rate)
        if dist.is_main and val is not None and (done % cfg.val_every == 0 or done == cfg.steps):
            v = _validate(model, val, cfg, sampler, seed)
            if v:
                metrics.write("dynamics", done, v)
                logger.info("dynamics step %d: %s", done, {k: round(x, 4) for k, x in v.items()})
                result.update(v)
        if done % cfg.ckpt_every == 0 or done == end:
            if dist.is_main:
                save_checkpoint(ckpt_dir, done, modules, {"dynamics": opt}, stage="dynamics")
            dist.barrier()  # a resumed run finds the same checkpoint on every rank
    result["end_step"] = float(end)
    model.eval()
    return result
