"""Multi-process training (``train.distributed=ddp``): torch DistributedDataParallel over
``torchrun`` processes, gloo on CPU, nccl on CUDA.

Why this shape: the dynamics stage is where training time goes, and its batches are drawn from
seeded per-step generators (:func:`~world_monitor.training.checkpoint.step_generator`). Every
rank draws the *same* global batch and the same random draws (ε, dropped context actions,
diffusion timesteps and noise) and computes the loss on its own contiguous slice of rows; DDP
averages the gradients. With equal slices the average of the ranks' mean losses is the global
mean, so a DDP run at global batch B follows the single-process run at batch B to float
rounding (``tests/training/test_distributed.py`` asserts it on a tiny run), and resuming keeps
working exactly as before. The VAE stage, the latent cache, checkpoints, metrics and the bundle
are rank 0's; the other ranks wait at a barrier and then read what rank 0 wrote.

``world-monitor train ... train.distributed=ddp train.processes=N`` re-launches itself under
``torch.distributed.run --standalone`` (rendezvous and gloo on 127.0.0.1) when it is not already
running under torchrun; under an existing ``torchrun`` launch (a multi-node job) it uses the
launcher's ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from world_monitor.training.common import TrainingError

__all__ = [
    "DISTRIBUTED_MODES",
    "DistInfo",
    "JointNets",
    "init_distributed",
    "launch_torchrun",
    "under_torchrun",
]

DISTRIBUTED_MODES = ("none", "ddp")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run (``world == 1``: plain single-process training)."""

    rank: int = 0
    world: int = 1
    backend: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def rows(self, batch: int) -> slice:
        """This rank's rows of a global batch (contiguous, equal sizes)."""
        if batch % self.world:
            raise TrainingError(
                f"batch_size {batch} is not divisible by the {self.world} DDP processes: equal "
                "slices keep the run identical to single-process training"
            )
        n = batch // self.world
        return slice(self.rank * n, (self.rank + 1) * n)

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (logging: the global batch's loss)."""
        if not self.active:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return float(t.item()) / self.world

    def shutdown(self) -> None:
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(mode: str, device: torch.device) -> DistInfo:
    """Join the process group for ``mode`` (``none``: nothing to join)."""
    if mode not in DISTRIBUTED_MODES:
        raise TrainingError(
            f"train.distributed={mode!r}: choose from {'|'.join(DISTRIBUTED_MODES)}"
        )
    if mode == "none":
        return DistInfo()
    if not under_torchrun():
        raise TrainingError(
            "train.distributed=ddp runs under torchrun (world-monitor train re-launches itself "
            "with train.processes=N); RANK/WORLD_SIZE are not set"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    logger.info("ddp: rank %d of %d (%s)", rank, world, backend)
    return DistInfo(rank=rank, world=world, backend=backend)


class JointNets(nn.Module):
    """The dynamics network and the probe as one module, so one DDP wrapper averages both
    gradients. ``forward(fn)`` runs ``fn(dynamics, probe)``: the loss code calls the two nets
    as it always does, and DDP sees the call go through its wrapper."""

    def __init__(self, dynamics: nn.Module, probe: nn.Module) -> None:
        super().__init__()
        self.dynamics = dynamics
        self.probe = probe

    def forward(self, fn: Callable[[nn.Module, nn.Module], Any]) -> Any:
        return fn(self.dynamics, self.probe)


def launch_torchrun(processes: int, argv: Sequence[str]) -> int:
    """Run ``world-monitor <argv>`` as ``processes`` local torchrun ranks; returns the exit
    code. Rendezvous and gloo stay on the loopback interface."""
    if processes < 2:
        raise TrainingError(f"train.processes must be >= 2 for ddp, got {processes}")
    env = dict(os.environ)
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    env.setdefault("MASTER_ADDR", "127.0.0.1")
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={int(processes)}",
        "-m",
        "world_monitor.cli",
        *argv,
    ]
    return subprocess.call(cmd, env=env)
