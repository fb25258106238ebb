"""vMF entropy: limits, monotonicity, the d=3 closed form vs a numeric integral, and the split."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from world_monitor.uq.vmf import (
    banerjee_kappa,
    decompose_uncertainty,
    log_bessel_iv,
    mean_resultant_length,
    vmf_entropy,
    vmf_entropy_of_samples,
)


def test_entropy_decreases_with_kappa() -> None:
    for d in (3, 16, 512):
        h = vmf_entropy(np.array([0.0, 0.1, 1.0, 10.0, 100.0, 1e4]), d)
        assert np.all(np.isfinite(h)) and np.all(np.diff(h) < 0)


def test_uniform_limit_and_log_bessel() -> None:
    assert vmf_entropy(0.0, 3) == pytest.approx(math.log(4 * math.pi))
    assert vmf_entropy(1e-6, 3) == pytest.approx(math.log(4 * math.pi), abs=1e-9)
    # log I_ν stays finite where ive underflows (ν large, x small) and where I_ν overflows
    assert np.isfinite(log_bessel_iv(300.0, 1e-3)) and np.isfinite(log_bessel_iv(0.5, 1e4))


@pytest.mark.parametrize("kappa", [0.5, 3.0, 20.0])
def test_d3_matches_closed_form_and_numeric_integral(kappa: float) -> None:
    # d = 3: C = κ / (4π sinh κ), A = coth κ − 1/κ, density on S² depends on t = μ·x only
    c = kappa / (4 * math.pi * math.sinh(kappa))
    closed = -math.log(c) - kappa * (1 / math.tanh(kappa) - 1 / kappa)
    # H = −∫_{S²} f log f = −2π ∫_{−1}^{1} c e^{κt} (log c + κt) dt
    numeric = (
        -2
        * math.pi
        * integrate.quad(lambda t: c * math.exp(kappa * t) * (math.log(c) + kappa * t), -1, 1)[0]
    )
    assert vmf_entropy(kappa, 3) == pytest.approx(closed, rel=1e-9)
    assert vmf_entropy(kappa, 3) == pytest.approx(numeric, rel=1e-7)


def test_kappa_fit_and_decomposition() -> None:
    rng = np.random.default_rng(0)
    mu = np.zeros(8)
    mu[0] = 1.0
    tight = mu + 0.05 * rng.normal(size=(200, 8))
    loose = mu + 1.0 * rng.normal(size=(200, 8))
    assert mean_resultant_length(tight) > mean_resultant_length(loose)
    assert banerjee_kappa(0.0, 8) == 0.0
    assert vmf_entropy_of_samples(tight) < vmf_entropy_of_samples(loose)
    z = mu + 0.3 * rng.normal(size=(4, 8))
    sure = decompose_uncertainty(z, [mu + 0.05 * rng.normal(size=(6, 8)) for _ in range(4)])
    unsure = decompose_uncertainty(z, [mu + 1.0 * rng.normal(size=(6, 8)) for _ in range(4)])
    assert sure.aleatoric == pytest.approx(unsure.aleatoric)  # same specifications
    assert unsure.epistemic > sure.epistemic
    assert sure.total == pytest.approx(sure.aleatoric + sure.epistemic)
    with pytest.raises(ValueError, match="rollout groups"):
        decompose_uncertainty(z, [])
