"""A thin container: VAE + dynamics (diffusion DiT or deterministic predictor) + C3 probe.

Why it exists: training, evaluation and the runtime all need "the three networks built from one
config, with the action normalisation and window geometry they were trained with". Keeping that in
one object means the bundle is written and read in exactly one place, and nothing downstream has
to know which dynamics variant it holds (``rollout()`` picks the right generation mode).

Config layout (the ``model`` group of the hydra tree, filled in with the dataset's image size and
action dimension by the trainer)::

    variant: diffusion | deterministic
    context_length: k          horizon: H
    vae: {VAEConfig fields}     dynamics: {DynamicsConfig fields}
    probe: {ProbeConfig fields except the geometry, which is copied from dynamics}
    rollout: {RolloutConfig fields}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from world_monitor.data.normalize import ActionNormalizer
from world_monitor.models.bundle import Bundle, BundleError, load_bundle, save_bundle
from world_monitor.models.dynamics import (
    DeterministicPredictor,
    DynamicsConfig,
    DynamicsTransformer,
)
from world_monitor.models.probe import C3Probe, ProbeConfig
from world_monitor.models.rollout import RolloutConfig, WorldModelRollout
from world_monitor.models.vae import FrameVAE, VAEConfig

__all__ = ["VARIANTS", "WorldModel", "WorldModelConfig"]

logger = logging.getLogger(__name__)

VARIANTS = ("diffusion", "deterministic")
_PROBE_GEOMETRY = ("dim", "heads", "mlp_ratio", "latent_channels", "latent_size", "patch_size")


def _plain(d: Mapping[str, Any] | None) -> dict[str, Any]:
    """A plain dict from a mapping or an OmegaConf node (None -> {})."""
    if d is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(d, DictConfig):
            return dict(OmegaConf.to_container(d, resolve=True))  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - omegaconf ships with hydra, a core dependency
        pass
    return dict(d)


@dataclass
class WorldModelConfig:
    """Everything needed to rebuild the networks; round-trips through plain dicts (bundle YAML)."""

    variant: str = "diffusion"
    context_length: int = 2
    horizon: int = 8
    vae: VAEConfig = field(default_factory=VAEConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"model.variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.context_length < 1 or self.horizon < 1:
            raise ValueError(
                f"model.context_length ({self.context_length}) and model.horizon "
                f"({self.horizon}) must be >= 1"
            )
        if self.context_length + self.horizon > self.dynamics.max_frames:
            raise ValueError(
                f"context_length + horizon = {self.context_length + self.horizon} exceeds "
                f"model.dynamics.max_frames = {self.dynamics.max_frames}"
            )
        c, h, w = self.vae.latent_shape
        if (c, h, w) != (self.dynamics.latent_channels, *self.dynamics.latent_size):
            raise ValueError(
                f"VAE latent shape {(c, h, w)} != dynamics latent "
                f"{(self.dynamics.latent_channels, *self.dynamics.latent_size)}"
            )

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return self.vae.latent_shape

    @classmethod
    def from_dict(
        cls,
        d: Mapping[str, Any],
        *,
        image_size: int | None = None,
        action_dim: int | None = None,
    ) -> WorldModelConfig:
        """Build from the ``model`` config; ``image_size``/``action_dim`` come from the data.

        The dynamics/probe latent geometry is derived from the VAE so a user only ever sets it
        in one place.
        """
        d = _plain(d)
        vae_d = _plain(d.get("vae"))
        if image_size is not None:
            vae_d["image_size"] = int(image_size)
        vae = VAEConfig.from_dict(vae_d)
        c, h, w = vae.latent_shape
        dyn_d = _plain(d.get("dynamics"))
        dyn_d.update(latent_channels=c, latent_size=(h, w))
        if action_dim is not None:
            dyn_d["action_dim"] = int(action_dim)
        dyn = DynamicsConfig.from_dict(dyn_d)
        probe_d = {k: v for k, v in _plain(d.get("probe")).items() if k not in _PROBE_GEOMETRY}
        probe = ProbeConfig.from_dynamics(dyn, **probe_d)
        rollout = RolloutConfig.from_dict(_plain(d.get("rollout")))
        variant = str(d.get("variant", "diffusion"))
        if variant == "deterministic":
            rollout.mode = "deterministic"
        elif rollout.mode == "deterministic":
            raise ValueError("model.rollout.mode=deterministic needs model.variant=deterministic")
        return cls(
            variant=variant,
            context_length=int(d.get("context_length", 2)),
            horizon=int(d.get("horizon", 8)),
            vae=vae,
            dynamics=dyn,
            probe=probe,
            rollout=rollout,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "context_length": self.context_length,
            "horizon": self.horizon,
            "vae": self.vae.to_dict(),
            "dynamics": self.dynamics.to_dict(),
            "probe": self.probe.to_dict(),
            "rollout": self.rollout.to_dict(),
        }


class WorldModel(nn.Module):
    """VAE + dynamics + probe, with the action normaliser they were trained with.

    ``dynamics`` is a :class:`DynamicsTransformer` (variant ``diffusion``) or a
    :class:`DeterministicPredictor` (variant ``deterministic``); both are stored under the bundle
    module name ``dynamics``.
    """

    def __init__(
        self, config: WorldModelConfig, normalizer: ActionNormalizer | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.normalizer = normalizer
        self.vae = FrameVAE(config.vae)
        self.dynamics: nn.Module = (
            DynamicsTransformer(config.dynamics)
            if config.variant == "diffusion"
            else DeterministicPredictor(config.dynamics)
        )
        self.probe = C3Probe(config.probe)

    # ------------------------------------------------------------------ inference helpers
    def rollout(
        self, config: RolloutConfig | None = None, probe: nn.Module | None = None
    ) -> WorldModelRollout:
        """A :class:`WorldModelRollout` over these networks in the configured mode.

        ``probe`` lets evaluation substitute a wrapper (e.g. one that reads several ε at once).
        """
        cfg = config or self.config.rollout
        p = probe if probe is not None else self.probe
        if self.config.variant == "deterministic":
            return WorldModelRollout(p, predictor=self.dynamics, vae=self.vae, config=cfg)  # type: ignore[arg-type]
        return WorldModelRollout(p, dynamics=self.dynamics, vae=self.vae, config=cfg)  # type: ignore[arg-type]

    def normalize_actions(self, actions: np.ndarray) -> np.ndarray:
        if self.normalizer is None:
            raise ValueError("this WorldModel has no action normaliser (not trained / loaded)")
        return self.normalizer.normalize(actions)

    def state_dicts(self) -> dict[str, dict[str, torch.Tensor]]:
        return {
            "vae": self.vae.state_dict(),
            "dynamics": self.dynamics.state_dict(),
            "probe": self.probe.state_dict(),
        }

    # ------------------------------------------------------------------ bundle I/O
    def save(
        self,
        path: str | Path,
        *,
        extra_config: Mapping[str, Any] | None = None,
        training_command: str,
        seed: int,
        overwrite: bool = False,
    ) -> Path:
        """Write a monitor bundle (weights, config, manifest with action stats and shapes).

        The action statistics stored as ``action_mean``/``action_std`` are the normaliser's
        *offset* and *scale*, i.e. exactly what ``(a - mean) / std`` must use at deployment,
        whatever normalisation mode was used in training; the full normaliser is in the config.
        """
        if self.normalizer is None:
            raise ValueError("cannot save a bundle without an action normaliser")
        cfg: dict[str, Any] = {"model": self.config.to_dict()}
        cfg["action_normalizer"] = self.normalizer.to_dict()
        cfg.update(_plain(extra_config))
        size = self.config.vae.image_size
        return save_bundle(
            path,
            self.state_dicts(),
            cfg,
            image_size=(size, size),
            action_dim=self.config.dynamics.action_dim,
            action_mean=[float(x) for x in self.normalizer.offset],
            action_std=[float(x) for x in self.normalizer.scale],
            context_length=self.config.context_length,
            horizon=self.config.horizon,
            latent_shape=self.config.latent_shape,
            model_variant=self.config.variant,
            training_command=training_command,
            seed=seed,
            overwrite=overwrite,
        )

    @classmethod
    def from_bundle(cls, path: str | Path | Bundle) -> WorldModel:
        """Rebuild from a (validated) bundle; raises :class:`BundleError` on any mismatch."""
        bundle = path if isinstance(path, Bundle) else load_bundle(path)
        where = bundle.path
        try:
            cfg = WorldModelConfig.from_dict(bundle.config["model"])
            normalizer = ActionNormalizer.from_dict(bundle.config["action_normalizer"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{where}/config.yaml: invalid model config ({exc})") from exc
        if cfg.variant != bundle.manifest["model_variant"]:
            raise BundleError(
                f"{where}: manifest model_variant {bundle.manifest['model_variant']!r} != "
                f"config model.variant {cfg.variant!r}"
            )
        model = cls(cfg, normalizer)
        for name in ("vae", "dynamics", "probe"):
            if name not in bundle.state_dicts:
                raise BundleError(f"{where}: weights lack module {name!r}")
            try:
                getattr(model, name).load_state_dict(bundle.state_dicts[name], strict=True)
            except RuntimeError as exc:
                raise BundleError(
                    f"{where}: weights of {name!r} do not fit the config: {exc}"
                ) from exc
        model.eval()
        return model
