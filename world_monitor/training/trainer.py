"""`world-monitor train`: VAE -> latent cache -> dynamics + C3 probe -> monitor bundle.

Why staged and resumable: on the 2-core CPU a default run takes over an hour; any stage that has
finished is never redone (the VAE's final weights, a latent cache whose VAE hash matches, the
dynamics checkpoints), so re-running the same command after an interruption continues where it
stopped. Every random draw is derived from the run seed (and the step), so two runs of the same
command produce the same bundle.

Run directory::

    RUN/config.yaml            resolved hydra config (what was actually run)
    RUN/command.txt            the exact command line
    RUN/metrics.jsonl          one JSON object per log point (stage, step, losses, throughput)
    RUN/action_normalizer.json fit on the train split
    RUN/vae/ckpt/step_*        resumable VAE checkpoints;  RUN/vae/final.safetensors
    RUN/latents/               cached standardised latents (see latent_cache.py)
    RUN/dynamics/ckpt/step_*   resumable dynamics + probe checkpoints
    RUN/bundle/                the monitor bundle (models/bundle.py)
    RUN/summary.json           timings per stage, final metrics, bundle path
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file

from world_monitor.data.dataset import EpisodeDataset
from world_monitor.data.normalize import ActionNormalizer
from world_monitor.models.world_model import WorldModel, WorldModelConfig
from world_monitor.training.common import MetricsLog, Stopwatch, TrainingError
from world_monitor.training.distributed import init_distributed
from world_monitor.training.dynamics_trainer import DynamicsTrainConfig, train_dynamics
from world_monitor.training.eps_grid import DEFAULT_QUANTILES, data_eps_grid
from world_monitor.training.latent_cache import compute_latent_stats, ensure_latent_cache
from world_monitor.training.vae_trainer import VAETrainConfig, train_vae

__all__ = ["TrainResult", "dataset_geometry", "seed_everything", "train"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    bundle: Path | None
    timings: dict[str, float]
    metrics: dict[str, Any]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def dataset_geometry(ds: EpisodeDataset) -> tuple[int, int]:
    """(square image size, action dim) of the train split; all episodes must agree."""
    train = ds.select(split="train", shift=None)
    if len(train) == 0:
        raise TrainingError(f"{ds.root}: the train split has no in-distribution episodes")
    sizes = {(r.height, r.width) for r in train.index}
    dims = {r.action_dim for r in train.index}
    if len(sizes) != 1 or len(dims) != 1:
        raise TrainingError(f"{ds.root}: mixed image sizes {sizes} or action dims {dims} in train")
    (h, w), a = sizes.pop(), dims.pop()
    if h != w:
        raise TrainingError(f"{ds.root}: images are {h}x{w}; the VAE needs square frames")
    return h, a


def _plain(node: Any) -> dict[str, Any]:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    return dict(node)


def _vae_stage(
    model: WorldModel,
    ds: EpisodeDataset,
    tcfg: dict[str, Any],
    run: Path,
    seed: int,
    metrics: MetricsLog,
    progress: bool,
) -> dict[str, float]:
    final = run / "vae" / "final.safetensors"
    if final.is_file():
        model.vae.load_state_dict(load_file(str(final)))
        logger.info("VAE: reusing %s", final)
        return json.loads((run / "vae" / "final.json").read_text(encoding="utf-8"))
    res = train_vae(
        model.vae,
        ds,
        VAETrainConfig.from_dict(tcfg["vae"]),
        seed=seed,
        ckpt_dir=run / "vae" / "ckpt",
        metrics=metrics,
        progress=progress,
    )
    mean, std = compute_latent_stats(
        model.vae,
        ds,
        max_frames=int(tcfg.get("latents", {}).get("stats_frames", 20000)),
        seed=seed,
        progress=progress,
    )
    model.vae.set_latent_stats(mean, std)
    res["latent_mean"] = mean.tolist()  # type: ignore[assignment]
    res["latent_std"] = std.tolist()  # type: ignore[assignment]
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.vae.state_dict().items()}, str(final)
    )
    (run / "vae" / "final.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    return res


def train(
    cfg: DictConfig,
    run_dir: str | Path,
    *,
    data_root: str | Path | None = None,
    command: str = "",
    progress: bool = True,
    stop_dynamics_at: int | None = None,
) -> TrainResult:
    """Run every stage (skipping finished ones) and write the monitor bundle.

    ``stop_dynamics_at`` interrupts the dynamics stage at that step (no bundle is written), as
    a crash would; calling again without it resumes.
    """
    watch = Stopwatch()
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    tcfg = _plain(cfg.train)
    seed = int(cfg.seed)
    device = torch.device(str(tcfg.get("device", "cpu")))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(
            "train.device=cuda but no CUDA device is available (use train.device=cpu)"
        )
    dist = init_distributed(str(tcfg.get("distributed", "none")), device)
    # num_threads is the machine's budget: DDP processes share it
    torch.set_num_threads(max(1, int(tcfg.get("num_threads", 2)) // dist.world))
    seed_everything(seed)
    root = Path(data_root or cfg.data.root)
    if dist.is_main:
        (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
        (run / "command.txt").write_text(command + "\n", encoding="utf-8")
    metrics = MetricsLog(run / "metrics.jsonl" if dist.is_main else None)
    progress = progress and dist.is_main

    ds = EpisodeDataset(root)
    image_size, action_dim = dataset_geometry(ds)
    try:
        mcfg = WorldModelConfig.from_dict(
            _plain(cfg.model), image_size=image_size, action_dim=action_dim
        )
        VAETrainConfig.from_dict(tcfg["vae"])
        dyn_cfg = DynamicsTrainConfig.from_dict(tcfg["dynamics"])
        if dict(dyn_cfg.eps).get("mode") != "data":  # the data grid exists after the cache
            dyn_cfg.sampler()
    except (TypeError, ValueError, KeyError) as exc:  # unknown / invalid keys in model= or train=
        raise TrainingError(f"invalid model/train config: {exc}") from exc
    normalizer = ActionNormalizer.from_dataset(
        ds, split="train", mode=str(tcfg.get("action_norm", "standard"))
    )
    if dist.is_main:
        normalizer.save(run / "action_normalizer.json")
    model = WorldModel(mcfg, normalizer)
    model.to(device)
    logger.info(
        "train: data %s (%d episodes, %dx%d, action dim %d), variant %s, k=%d, H=%d, latent %s, run dir %s",
        root,
        len(ds),
        image_size,
        image_size,
        action_dim,
        mcfg.variant,
        mcfg.context_length,
        mcfg.horizon,
        mcfg.latent_shape,
        run,
    )
    out_metrics: dict[str, Any] = {}

    # the VAE and the latent cache are rank 0's; the other ranks read what it wrote
    t0 = time.perf_counter()
    if not dist.is_main:
        dist.barrier()
    out_metrics["vae"] = _vae_stage(model, ds, tcfg, run, seed, metrics, progress)
    model.vae.requires_grad_(False)
    watch.record("vae", t0)

    t0 = time.perf_counter()
    splits = [s for s in tcfg.get("latents", {}).get("splits", ["train", "val"])]
    if dist.is_main:
        cache = ensure_latent_cache(
            run / "latents", model.vae, normalizer, ds, splits, progress=progress
        )
        dist.barrier()
    else:
        cache = ensure_latent_cache(
            run / "latents", model.vae, normalizer, ds, splits, progress=False
        )
    watch.record("latents", t0)

    eps_cfg = dict(tcfg["dynamics"].get("eps") or {})
    if eps_cfg.get("mode") == "data":
        try:
            grid = data_eps_grid(
                cache["train"],
                tuple(eps_cfg.get("quantiles") or DEFAULT_QUANTILES),
                seed=seed,
            )
        except ValueError as exc:
            raise TrainingError(str(exc)) from exc
        eps_cfg["grid"] = list(grid)
        tcfg["dynamics"]["eps"] = eps_cfg
        # the runtime tolerance: the grid's median (the fixed 0.5 may lie outside this grid)
        model.config.rollout.epsilon = float(grid[len(grid) // 2])
        logger.info(
            "eps grid from the data: %s (runtime eps %g)", grid, model.config.rollout.epsilon
        )

    t0 = time.perf_counter()
    val = cache.get("val")
    out_metrics["dynamics"] = train_dynamics(
        model,
        cache["train"],
        val if val is not None and len(val.ids) else None,
        DynamicsTrainConfig.from_dict(tcfg["dynamics"]),
        seed=seed,
        ckpt_dir=run / "dynamics" / "ckpt",
        metrics=metrics,
        progress=progress,
        stop_at=stop_dynamics_at,
        dist=dist,
    )
    watch.record("dynamics", t0)

    bundle = None
    finished = stop_dynamics_at is None or stop_dynamics_at >= int(tcfg["dynamics"]["steps"])
    if finished and not dist.is_main:
        bundle = run / "bundle"
    elif finished:
        t0 = time.perf_counter()
        extra = {
            "train": tcfg,
            "data": {"root": str(root)},
            "seed": seed,
            # also inside the VAE weights (buffers); repeated here so a reader sees them
            "latent_stats": {
                "mean": model.vae.latent_mean.tolist(),
                "std": model.vae.latent_std.tolist(),
            },
            "training_metrics": {"vae_val_psnr": out_metrics["vae"].get("val_psnr")},
        }
        model.cpu()
        bundle = model.save(
            run / "bundle", extra_config=extra, training_command=command, seed=seed, overwrite=True
        )
        watch.record("bundle", t0)
    timings = {**{k: round(v, 2) for k, v in watch.stages.items()}, "total": round(watch.total, 2)}
    logger.info("train: done in %.1f s (%s)", watch.total, timings)
    summary = {
        "timings_s": timings,
        "metrics": out_metrics,
        "bundle": str(bundle) if bundle else None,
    }
    if dist.is_main:
        (run / "summary.json").write_text(
            json.dumps(summary, indent=1, default=float), encoding="utf-8"
        )
    dist.barrier()  # the bundle is written before any rank returns
    dist.shutdown()
    return TrainResult(run_dir=run, bundle=bundle, timings=timings, metrics=out_metrics)
