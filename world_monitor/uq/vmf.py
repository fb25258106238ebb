"""von Mises–Fisher entropies and the S-QUBED aleatoric / epistemic split (method.md §2).

Why vMF: embeddings of generated rollouts are ℓ2-normalised, i.e. points on the sphere S^{d−1};
the vMF is the maximum-entropy distribution there for a given mean direction and concentration
κ, and its entropy is a closed form of κ, so a spread of samples becomes one number.

Formulas (ν = d/2 − 1):
``C_d(κ) = κ^ν / ((2π)^{d/2} I_ν(κ))``, ``A_d(κ) = I_{d/2}(κ) / I_ν(κ)``,
``H(κ) = −log C_d(κ) − κ·A_d(κ)``. ``log I_ν(κ) = log ive(ν, κ) + κ`` (exponentially scaled
Bessel, no overflow); when ``ive`` underflows (large ν, small κ) the small-argument series
``ν·log(κ/2) − lgamma(ν + 1)`` is used. κ = 0 is the uniform distribution,
``H = log |S^{d−1}| = log(2π^{d/2}/Γ(d/2))``.
κ is fitted from the mean resultant length r̄ with Banerjee et al.'s approximation
``κ ≈ r̄(d − r̄²)/(1 − r̄²)``; r̄ is capped at ``1 − 1e−9`` so identical samples give a large
finite κ (very negative entropy) instead of inf.

Decomposition: ``H_total = H(Z|ℓ) + E_Z[H(V|Z)]``: aleatoric = vMF entropy of the specification
embeddings Z (for us: the action chunks sampled from the policy), epistemic = mean over Z of the
vMF entropy of the rollout embeddings V generated for that Z (world-model seeds).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import gammaln, ive

__all__ = [
    "UncertaintyDecomposition",
    "banerjee_kappa",
    "decompose_uncertainty",
    "log_bessel_iv",
    "mean_resultant_length",
    "vmf_entropy",
    "vmf_entropy_of_samples",
    "vmf_log_normalizer",
]

logger = logging.getLogger(__name__)

_R_MAX = 1.0 - 1e-9


def log_bessel_iv(nu: float, x: np.ndarray | float) -> np.ndarray:
    """Stable ``log I_ν(x)`` for x > 0."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = np.log(ive(nu, x)) + x
    bad = ~np.isfinite(out)
    if np.any(bad):
        xb = np.broadcast_to(x, out.shape)[bad]
        out = np.array(out, copy=True)
        out[bad] = nu * np.log(xb / 2.0) - gammaln(nu + 1.0)
    return out


def _log_sphere_area(d: int) -> float:
    return math.log(2.0) + (d / 2.0) * math.log(math.pi) - math.lgamma(d / 2.0)


def vmf_log_normalizer(kappa: np.ndarray | float, d: int) -> np.ndarray:
    """``log C_d(κ)``; at κ = 0 it is ``−log |S^{d−1}|``."""
    if d < 2:
        raise ValueError(f"vMF needs dimension d >= 2, got {d}")
    k = np.asarray(kappa, dtype=np.float64)
    nu = d / 2.0 - 1.0
    safe = np.where(k > 0, k, 1.0)
    val = nu * np.log(safe) - (d / 2.0) * math.log(2.0 * math.pi) - log_bessel_iv(nu, safe)
    return np.where(k > 0, val, -_log_sphere_area(d))


def vmf_entropy(kappa: np.ndarray | float, d: int) -> np.ndarray | float:
    """Differential entropy ``H(κ) = −log C_d(κ) − κ·A_d(κ)`` (nats) on S^{d−1}."""
    k = np.asarray(kappa, dtype=np.float64)
    if np.any(k < 0):
        raise ValueError("kappa must be >= 0")
    nu = d / 2.0 - 1.0
    safe = np.where(k > 0, k, 1.0)
    a_d = np.exp(log_bessel_iv(nu + 1.0, safe) - log_bessel_iv(nu, safe))
    h = -vmf_log_normalizer(k, d) - np.where(k > 0, k * a_d, 0.0)
    return float(h) if h.ndim == 0 else h


def mean_resultant_length(samples: np.ndarray) -> float:
    """``r̄ = ‖mean of ℓ2-normalised samples‖`` for samples ``[n, d]``."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"samples must be [n, d] with n >= 1, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("samples contain a zero vector; cannot normalise")
    return float(np.linalg.norm((x / norms).mean(axis=0)))


def banerjee_kappa(r_bar: float, d: int) -> float:
    """Banerjee et al. (2005): ``κ ≈ r̄(d − r̄²)/(1 − r̄²)`` (r̄ capped below 1)."""
    r = min(max(float(r_bar), 0.0), _R_MAX)
    return r * (d - r * r) / (1.0 - r * r)


def vmf_entropy_of_samples(samples: np.ndarray) -> float:
    """Fit κ by Banerjee's approximation and return the vMF entropy of ``[n, d]`` samples."""
    x = np.asarray(samples, dtype=np.float64)
    if x.shape[0] < 2:
        logger.warning(
            "vmf_entropy_of_samples: %d sample(s); the spread is undefined, κ is capped",
            x.shape[0],
        )
    d = x.shape[1]
    return float(vmf_entropy(banerjee_kappa(mean_resultant_length(x), d), d))


@dataclass
class UncertaintyDecomposition:
    """S-QUBED split (nats): ``total = aleatoric + epistemic``."""

    total: float
    aleatoric: float
    epistemic: float
    kappa_z: float
    kappa_v: list[float]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def decompose_uncertainty(
    spec_embeddings: np.ndarray,
    rollout_embeddings: Sequence[np.ndarray],
    weights: Sequence[float] | None = None,
) -> UncertaintyDecomposition:
    """``H_total = H(Z|ℓ) + E_Z[H(V|Z)]`` from embeddings.

    ``spec_embeddings`` ``[n, d_z]``: one embedding per specification Z (e.g. sampled action
    chunk); ``rollout_embeddings[i]`` ``[m_i, d_v]``: rollouts generated for specification i.
    ``weights`` are p(Z_i | ℓ) for the expectation (uniform by default).
    """
    z = np.asarray(spec_embeddings, dtype=np.float64)
    if len(rollout_embeddings) != z.shape[0]:
        raise ValueError(
            f"{z.shape[0]} specifications but {len(rollout_embeddings)} rollout groups"
        )
    w = (
        np.full(z.shape[0], 1.0 / z.shape[0])
        if weights is None
        else np.asarray(weights, dtype=np.float64)
    )
    if w.shape != (z.shape[0],) or np.any(w < 0) or not math.isclose(w.sum(), 1.0, rel_tol=1e-6):
        raise ValueError("weights must be non-negative, one per specification, summing to 1")
    d_z = z.shape[1]
    kappa_z = banerjee_kappa(mean_resultant_length(z), d_z)
    aleatoric = float(vmf_entropy(kappa_z, d_z))
    kappas, ents = [], []
    for v in rollout_embeddings:
        v = np.asarray(v, dtype=np.float64)
        k = banerjee_kappa(mean_resultant_length(v), v.shape[1])
        kappas.append(k)
        ents.append(float(vmf_entropy(k, v.shape[1])))
    epistemic = float(np.dot(w, ents))
    return UncertaintyDecomposition(
        total=aleatoric + epistemic,
        aleatoric=aleatoric,
        epistemic=epistemic,
        kappa_z=kappa_z,
        kappa_v=kappas,
    )
