"""Locate and compose the hydra config tree.

The CLI and the ROS node both use hydra's *compose* API instead of ``@hydra.main``: sub-commands
need their own flags, and ROS appends ``--ros-args`` to argv, which ``@hydra.main`` would reject.
The tree lives in the repository's top-level ``config/`` folder; after a non-editable install
(pip or colcon) it is found under ``<prefix>/share/world_monitor/config``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

__all__ = ["ConfigError", "config_dir", "load_config", "save_resolved"]

LOG = logging.getLogger(__name__)
ENV_VAR = "WORLD_MONITOR_CONFIG_DIR"


class ConfigError(RuntimeError):
    """The config tree could not be found or an override is invalid."""


def config_dir() -> Path:
    """Return the hydra config directory: $WORLD_MONITOR_CONFIG_DIR, the source tree, or share/."""
    candidates: list[Path] = []
    if os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]))
    candidates.append(Path(__file__).resolve().parents[1] / "config")
    candidates.append(Path(sys.prefix) / "share" / "world_monitor" / "config")
    for path in candidates:
        if (path / "config.yaml").is_file():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise ConfigError(f"world_monitor config tree not found (tried: {tried}); set ${ENV_VAR}")


def load_config(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """Compose the config with hydra overrides such as ``["data=small", "sim.image_size=128"]``."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides or [])
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"invalid config override(s) {overrides}: {exc}") from exc
    return cfg


def save_resolved(cfg: DictConfig, out_dir: Path, name: str = "config.yaml") -> Path:
    """Write the fully resolved config next to a run's outputs (reproducibility)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True), encoding="utf-8")
    LOG.debug("wrote resolved config to %s", path)
    return path
