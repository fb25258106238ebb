"""C³ training losses: correctness labels, scoring-rule probe losses, ε sampling, the joint loss.

Why this module exists: the C³ probe is trained to output ``q̂(ε) ≈ P(|x̂ − x*| ≤ ε)`` per latent
element. During training no sampling is run, so the label comes from the *one-step*
v-prediction error of the world model (method.md §1). The probe is trained with a strictly proper
scoring rule (BCE or Brier) so that its minimiser is calibrated; the world model keeps its own
v-MSE, and the two are mixed as ``(1 − λ)·MSE_v + λ·probe_loss``.

Everything works on plain tensors laid out ``[B, F, C, h, w]`` (batch, frame, latent channels,
latent height, latent width) so the networks (owned elsewhere) can change freely.

Conventions
-----------
* ε is broadcastable *per (sample, frame)*: a Python float, a tensor of shape ``[]``, ``[B]``,
  ``[B, F]`` or anything already broadcastable against ``[B, F, C, h, w]``.
* Labels are computed under ``torch.no_grad`` from **detached** predictions: they are targets,
  not functions of the parameters; a gradient through a step function would be zero anyway but
  keeping them out of the graph saves memory and makes the intent explicit.
* A loss mask ``[B, F]`` (True = this frame is trained) removes clean context frames: their
  prediction is trivially the input and would teach the probe that everything is easy.
* DDIM rescaling (optional, method.md §1). One DDIM step with v-prediction reads
  ``x_{t'} = a·x_t + b·v̂`` with ``b = √(ᾱ_t(1−ᾱ_{t'})) − √(ᾱ_{t'}(1−ᾱ_t))``, so a v-error
  ``Δv`` moves the next latent by ``|b|·Δv``. The rescaled label is ``1[|b|·|v̂ − v*| ≤ ε]``,
  i.e. ε_v = ε/|b| without ever dividing by a coefficient that can be ~0. The previous timestep
  ``t'`` follows diffusers' ``DDIMScheduler`` ("leading" spacing):
  ``t' = t − num_train_timesteps // num_inference_steps``; when ``t' < 0`` the final
  ``ᾱ = final_alpha_cumprod`` (1.0, diffusers' ``set_alpha_to_one=True``) is used.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEFAULT_EPS_GRID",
    "C3LossOutput",
    "EpsilonSampler",
    "c3_loss",
    "context_loss_mask",
    "correctness_labels_v",
    "correctness_labels_x0",
    "ddim_step_coefficient",
    "expand_per_frame",
    "masked_mean",
    "mcc_confidence",
    "mcc_loss",
    "mcc_targets",
    "previous_timestep",
    "probe_bce",
    "probe_brier",
]

logger = logging.getLogger(__name__)

#: The ε grid of method.md: {0.1, 0.2, …, 1.0}.
DEFAULT_EPS_GRID: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 11))

EpsLike = float | Tensor


def expand_per_frame(value: EpsLike, ref: Tensor) -> Tensor:
    """Broadcast a per-(sample, frame) quantity against a ``[B, F, ...]`` element tensor.

    Accepts a float, a 0-d tensor, ``[B]``, ``[B, F]`` or an already-broadcastable tensor, so
    callers can pass ε per sample, per frame or per element without reshaping by hand.
    """
    if not isinstance(value, Tensor):
        return torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
    value = value.to(device=ref.device)
    if value.ndim == 0 or value.ndim == ref.ndim:
        return value
    if value.ndim > ref.ndim:
        raise ValueError(
            f"per-frame value has {value.ndim} dims, more than the target's {ref.ndim}"
        )
    if value.shape != ref.shape[: value.ndim]:
        raise ValueError(
            f"per-frame value of shape {tuple(value.shape)} does not match the leading dims "
            f"of {tuple(ref.shape)}"
        )
    return value.reshape(*value.shape, *([1] * (ref.ndim - value.ndim)))


def previous_timestep(
    timesteps: Tensor, num_train_timesteps: int, num_inference_steps: int
) -> Tensor:
    """The DDIM predecessor of ``timesteps`` on the inference schedule (diffusers convention).

    Uses the "leading" spacing step ``num_train_timesteps // num_inference_steps``; negative
    results mean "the last step" and are resolved to ``final_alpha_cumprod`` by
    :func:`ddim_step_coefficient`.
    """
    if num_inference_steps <= 0 or num_inference_steps > num_train_timesteps:
        raise ValueError(
            f"num_inference_steps={num_inference_steps} must be in [1, {num_train_timesteps}]"
        )
    return timesteps - num_train_timesteps // num_inference_steps


def ddim_step_coefficient(
    alphas_cumprod: Tensor,
    timesteps: Tensor,
    prev_timesteps: Tensor,
    final_alpha_cumprod: float = 1.0,
) -> Tensor:
    """``|√(ᾱ_t(1−ᾱ_{t'})) − √(ᾱ_{t'}(1−ᾱ_t))|``: how much a v-error moves one DDIM step.

    ``timesteps``/``prev_timesteps`` are integer tensors of any shape (typically ``[B]`` or
    ``[B, F]`` for diffusion forcing); ``prev_timesteps < 0`` selects ``final_alpha_cumprod``.
    """
    ac = alphas_cumprod.to(torch.float64)
    t = timesteps.long()
    tp = prev_timesteps.long()
    if (t < 0).any() or (t >= ac.numel()).any():
        raise ValueError(f"timesteps must lie in [0, {ac.numel() - 1}]")
    a_t = ac[t]
    a_prev = torch.where(tp >= 0, ac[tp.clamp(min=0)], torch.full_like(a_t, final_alpha_cumprod))
    coeff = (torch.sqrt(a_t * (1 - a_prev)) - torch.sqrt(a_prev * (1 - a_t))).abs()
    return coeff.to(alphas_cumprod.dtype if alphas_cumprod.is_floating_point() else torch.float32)


@torch.no_grad()
def correctness_labels_v(
    v_pred: Tensor,
    v_target: Tensor,
    eps: EpsLike,
    *,
    alphas_cumprod: Tensor | None = None,
    timesteps: Tensor | None = None,
    prev_timesteps: Tensor | None = None,
    final_alpha_cumprod: float = 1.0,
) -> Tensor:
    """C³ training label ``1[|v̂ − v*| ≤ ε]`` per element (float 0/1, no gradient).

    With ``alphas_cumprod``, ``timesteps`` and ``prev_timesteps`` given, the label becomes
    ``1[c·|v̂ − v*| ≤ ε]`` with ``c`` the DDIM step coefficient (module docstring); timesteps are
    per sample ``[B]`` or per (sample, frame) ``[B, F]``.
    """
    if v_pred.shape != v_target.shape:
        raise ValueError(f"v_pred {tuple(v_pred.shape)} != v_target {tuple(v_target.shape)}")
    err = (v_pred.detach() - v_target.detach()).abs()
    rescale = (alphas_cumprod, timesteps, prev_timesteps)
    if any(x is not None for x in rescale):
        if any(x is None for x in rescale):
            raise ValueError("DDIM rescaling needs alphas_cumprod, timesteps and prev_timesteps")
        coeff = ddim_step_coefficient(
            alphas_cumprod, timesteps, prev_timesteps, final_alpha_cumprod
        )
        err = err * expand_per_frame(coeff.to(err.dtype), err)
    return (err <= expand_per_frame(eps, err)).to(v_pred.dtype)


@torch.no_grad()
def correctness_labels_x0(x_pred: Tensor, x_target: Tensor, eps: EpsLike) -> Tensor:
    """Latent-error label ``1[|x̂ − x*| ≤ ε]`` (deterministic predictor, and evaluation labels)."""
    if x_pred.shape != x_target.shape:
        raise ValueError(f"x_pred {tuple(x_pred.shape)} != x_target {tuple(x_target.shape)}")
    err = (x_pred.detach() - x_target.detach()).abs()
    return (err <= expand_per_frame(eps, err)).to(x_pred.dtype)


def context_loss_mask(
    batch: int, frames: int, n_context: int | Tensor, device: torch.device | None = None
) -> Tensor:
    """Bool ``[B, F]`` mask, False on the first ``n_context`` (clean, given) frames of each sample.

    ``n_context`` may be an int or a ``[B]`` tensor when the context length varies per sample.
    """
    idx = torch.arange(frames, device=device).unsqueeze(0).expand(batch, frames)
    n = torch.as_tensor(n_context, device=device).reshape(-1, 1)
    return idx >= n


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values`` over elements whose (sample, frame) is True in ``mask`` ``[B, F]``.

    Returns 0 (with a graph) when nothing is selected, so a batch made only of context frames
    does not poison training with NaN.
    """
    if mask is None:
        return values.mean()
    m = expand_per_frame(mask.to(values.dtype), values).expand_as(values)
    denom = m.sum()
    if denom == 0:
        logger.debug("masked_mean: empty mask, returning 0")
        return (values * 0).sum()
    return (values * m).sum() / denom


def probe_bce(logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """Binary cross-entropy with logits (strictly proper; numerically stable in logit space)."""
    return masked_mean(
        F.binary_cross_entropy_with_logits(logits, labels.detach(), reduction="none"),
        mask,
    )


def probe_brier(logits: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """Brier score ``(σ(logit) − label)²`` (strictly proper, bounded; the FSC loss of the paper)."""
    return masked_mean((torch.sigmoid(logits) - labels.detach()) ** 2, mask)


@dataclass
class EpsilonSampler:
    """Draws ε per (sample, frame) for CS-BC training.

    ``mode="grid"`` samples uniformly from ``grid`` (default {0.1, …, 1.0}, the evaluation grid);
    ``mode="continuous"`` samples uniformly in ``[low, high]`` so the probe also learns the values
    between grid points (it is conditioned on ε, so interpolation is otherwise untested).
    """

    mode: Literal["grid", "continuous"] = "grid"
    grid: tuple[float, ...] = DEFAULT_EPS_GRID
    low: float = 0.1
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in ("grid", "continuous"):
            raise ValueError(
                f"EpsilonSampler.mode must be 'grid' or 'continuous', got {self.mode!r}"
            )
        if self.mode == "grid" and len(self.grid) == 0:
            raise ValueError("EpsilonSampler.grid is empty")
        if not (0 < self.low <= self.high):
            raise ValueError(f"EpsilonSampler needs 0 < low <= high, got {self.low}, {self.high}")

    @classmethod
    def uniform_grid(cls, low: float = 0.1, high: float = 1.0, n: int = 10) -> EpsilonSampler:
        """Grid sampler over ``n`` equally spaced values in ``[low, high]``."""
        if n < 1:
            raise ValueError(f"grid size must be >= 1, got {n}")
        grid = tuple(float(round(v, 6)) for v in torch.linspace(low, high, n).tolist())
        return cls(mode="grid", grid=grid, low=low, high=high)

    def sample(
        self,
        batch: int,
        frames: int,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> Tensor:
        """A float32 ``[batch, frames]`` tensor of ε values."""
        if self.mode == "grid":
            grid = torch.tensor(self.grid, dtype=torch.float32)
            idx = torch.randint(len(self.grid), (batch, frames), generator=generator)
            out = grid[idx]
        else:
            u = torch.rand((batch, frames), generator=generator)
            out = self.low + (self.high - self.low) * u
        return out.to(device) if device is not None else out


# --- MCC (multi-class over error bins) -------------------------------------------------------


@torch.no_grad()
def mcc_targets(abs_error: Tensor, bin_edges: Tensor) -> Tensor:
    """Class index per element: bin ``k`` means ``edges[k-1] < |err| ≤ edges[k]``.

    ``bin_edges`` are the K−1 increasing inner edges (e.g. the ε grid); class ``K−1`` is
    "error above the last edge". Using ``right=False`` of ``bucketize`` keeps ``|err| == ε``
    in the same class as "within ε", matching the ``≤`` of the binary label.
    """
    return torch.bucketize(
        abs_error.detach().contiguous(), bin_edges.to(abs_error.device), right=False
    )


def mcc_loss(
    logits: Tensor, targets: Tensor, mask: Tensor | None = None, class_dim: int = 2
) -> Tensor:
    """Cross-entropy over error bins; ``logits`` carries K classes along ``class_dim``."""
    ce = F.cross_entropy(logits.movedim(class_dim, 1), targets, reduction="none")
    return masked_mean(ce, mask)


def mcc_confidence(logits: Tensor, eps: float, bin_edges: Tensor, class_dim: int = 2) -> Tensor:
    """``P(|err| ≤ ε)`` from MCC logits: softmax mass of the bins whose upper edge is ≤ ε."""
    n_in = int((bin_edges <= eps + 1e-12).sum().item())
    probs = torch.softmax(logits, dim=class_dim)
    return (
        probs.narrow(class_dim, 0, n_in).sum(dim=class_dim)
        if n_in > 0
        else probs.select(class_dim, 0) * 0
    )


# --- the joint objective ------------------------------------------------------------------------


@dataclass
class C3LossOutput:
    """The joint loss and its parts (parts are detached, for logging)."""

    total: Tensor
    mse_v: Tensor
    probe: Tensor
    labels: Tensor
    label_rate: float


def c3_loss(
    v_pred: Tensor,
    v_target: Tensor,
    probe_logits: Tensor,
    eps: EpsLike,
    *,
    loss_mask: Tensor | None = None,
    lam: float = 0.5,
    probe_loss: Literal["bce", "brier"] = "bce",
    alphas_cumprod: Tensor | None = None,
    timesteps: Tensor | None = None,
    prev_timesteps: Tensor | None = None,
) -> C3LossOutput:
    """``(1 − λ)·MSE_v + λ·probe_loss`` with labels from the detached v-prediction.

    ``probe_logits`` must have the latent's shape (one logit per element, method.md §1).
    Gradients: the MSE reaches ``v_pred``; the probe loss reaches only ``probe_logits`` (labels
    are constants). Whether the probe's *inputs* are detached is the network's business.
    """
    if not 0.0 <= lam <= 1.0 or math.isnan(lam):
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    if probe_logits.shape != v_pred.shape:
        raise ValueError(
            f"probe_logits {tuple(probe_logits.shape)} != latent {tuple(v_pred.shape)}"
        )
    labels = correctness_labels_v(
        v_pred,
        v_target,
        eps,
        alphas_cumprod=alphas_cumprod,
        timesteps=timesteps,
        prev_timesteps=prev_timesteps,
    )
    mse = masked_mean((v_pred - v_target) ** 2, loss_mask)
    if probe_loss == "bce":
        pl = probe_bce(probe_logits, labels, loss_mask)
    elif probe_loss == "brier":
        pl = probe_brier(probe_logits, labels, loss_mask)
    else:
        raise ValueError(f"probe_loss must be 'bce' or 'brier', got {probe_loss!r}")
    total = (1.0 - lam) * mse + lam * pl
    rate = float(masked_mean(labels, loss_mask).item())
    return C3LossOutput(
        total=total,
        mse_v=mse.detach(),
        probe=pl.detach(),
        labels=labels,
        label_rate=rate,
    )
