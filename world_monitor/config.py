"""Locate and compose the hydra config tree.

The CLI and the ROS node both use hydra's *compose* API instead of ``@hydra.main``: sub-commands
need their own flags, and ROS appends ``--ros-args`` to argv, which ``@hydra.main`` would reject.
The tree lives in the repository's top-level ``config/`` folder; after a non-editable install
it is found under ``share/world_monitor/config`` of the install prefix. Where that prefix is
differs: pip puts it at ``sys.prefix``, colcon at ``install/world_monitor`` (found through the
ament index, or by walking up from this file: ``<prefix>/lib/pythonX.Y/site-packages/...``).
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


def _ament_share() -> Path | None:
    """``share/world_monitor`` from the ament index (colcon / ROS installs), if available."""
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory("world_monitor"))
    except (PackageNotFoundError, KeyError, ValueError, OSError):
        return None


def config_candidates() -> list[Path]:
    """Where the config tree is looked for, in order (see :func:`config_dir`)."""
    candidates: list[Path] = []
    if os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]))
    here = Path(__file__).resolve()
    source = here.parents[1]
    if (source / "package.xml").is_file():  # the source tree (editable / symlink install)
        candidates.append(source / "config")  # never a stray site-packages/config
    share = _ament_share()
    if share is not None:
        candidates.append(share / "config")
    # <prefix>/lib/pythonX.Y/site-packages/world_monitor/config.py -> <prefix>/share/...
    for parent in (Path(__file__).parent, here.parent):
        if len(parent.parents) > 3:
            candidates.append(parent.parents[3] / "share" / "world_monitor" / "config")
    candidates.append(Path(sys.prefix) / "share" / "world_monitor" / "config")
    return list(dict.fromkeys(candidates))


def config_dir() -> Path:
    """Return the hydra config directory.

    Order: ``$WORLD_MONITOR_CONFIG_DIR`` (an explicit override wins), the source tree (editable
    installs, ``colcon build --symlink-install``), the ament index's share directory (colcon),
    the share directory of the prefix this package is installed in, ``sys.prefix``'s.
    """
    candidates = config_candidates()
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
