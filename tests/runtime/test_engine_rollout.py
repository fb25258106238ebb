"""The backend-driven decision rollout reproduces WorldModelRollout (joint / deterministic).

Tolerances: torch backend vs WorldModelRollout <= 1e-5 (same networks, same noise, same
scheduler; only float rounding of a different call order); onnxruntime-CPU <= 1e-4 (fp32 graphs,
~1e-6 per pass, accumulated over 4 DDIM steps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from world_monitor.models.dynamics import DynamicsConfig
from world_monitor.models.probe import ProbeConfig
from world_monitor.models.rollout import RolloutConfig, WorldModelRollout
from world_monitor.models.vae import VAEConfig
from world_monitor.runtime.backends.base import InferenceBackend
from world_monitor.runtime.backends.ort_backend import OrtBackend
from world_monitor.runtime.backends.torch_backend import TorchBackend
from world_monitor.runtime.engine_rollout import EngineRollout
from world_monitor.runtime.export import WorldModelModules, export_onnx

K, H, A, SIZE = 2, 4, 4, 32
TORCH_TOL, ORT_TOL = 1e-5, 1e-4


@pytest.fixture(scope="module")
def modules() -> WorldModelModules:
    torch.set_num_threads(1)
    vcfg = VAEConfig(image_size=SIZE, block_out_channels=(32,), norm_num_groups=8)
    dcfg = DynamicsConfig(latent_size=(8, 8), dim=32, depth=2, heads=2, max_frames=12)
    return WorldModelModules.random(
        vcfg, dcfg, ProbeConfig.from_dynamics(dcfg), context_length=K, horizon=H, seed=3
    )


@pytest.fixture(scope="module")
def backends(
    modules: WorldModelModules, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, InferenceBackend]:
    onnx = tmp_path_factory.mktemp("onnx")
    export_onnx(modules, onnx)
    return {"torch": TorchBackend(modules), "onnxruntime": OrtBackend(Path(onnx))}


@pytest.fixture
def inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (K, SIZE, SIZE, 3), dtype=np.uint8)
    chunk = rng.standard_normal((H, A)).astype(np.float32)
    ctx_actions = rng.standard_normal((K - 1, A)).astype(np.float32)
    return frames, chunk, ctx_actions


def _reference(
    modules: WorldModelModules,
    mode: str,
    frames: np.ndarray,
    chunk: np.ndarray,
    ctx_actions: np.ndarray | None,
    seed: int,
    epsilon: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    roll = WorldModelRollout(
        modules.probe,
        modules.dynamics,
        modules.predictor,
        modules.vae,
        RolloutConfig(mode=mode, num_inference_steps=4, epsilon=epsilon),
    )
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    res = roll.from_frames(
        x,
        torch.from_numpy(chunk),
        context_actions=None if ctx_actions is None else torch.from_numpy(ctx_actions),
        generator=torch.Generator().manual_seed(seed),
    )
    return res.latents.numpy(), res.confidence.numpy()


@pytest.mark.parametrize("mode", ["joint", "deterministic"])
@pytest.mark.parametrize("backend_name", ["torch", "onnxruntime"])
@pytest.mark.parametrize("with_context_actions", [False, True])
def test_matches_world_model_rollout(
    modules: WorldModelModules,
    backends: dict[str, InferenceBackend],
    inputs: tuple[np.ndarray, np.ndarray, np.ndarray],
    mode: str,
    backend_name: str,
    with_context_actions: bool,
) -> None:
    frames, chunk, ctx = inputs
    ctx_actions = ctx if with_context_actions else None
    ref_lat, ref_conf = _reference(modules, mode, frames, chunk, ctx_actions, seed=5)
    roll = EngineRollout(backends[backend_name], mode=mode, num_inference_steps=4)
    res = roll.decide(frames, chunk, ctx_actions, generator=torch.Generator().manual_seed(5))
    tol = TORCH_TOL if backend_name == "torch" else ORT_TOL
    assert res.latents.shape == (H, 4, 8, 8) and res.confidence.shape == (H, 4, 8, 8)
    assert np.abs(res.latents - ref_lat).max() <= tol
    assert np.abs(res.confidence - ref_conf).max() <= tol
    assert set(res.latency_ms) == {"encode", "rollout", "total"}
    assert res.latency_ms["total"] >= res.latency_ms["rollout"] > 0
    assert res.backend == backend_name and res.mode == mode


def test_seeded_and_epsilon_conditioned(
    modules: WorldModelModules,
    backends: dict[str, InferenceBackend],
    inputs: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    frames, chunk, _ = inputs
    roll = EngineRollout(backends["onnxruntime"])
    a, b = roll.decide(frames, chunk, seed=1), roll.decide(frames, chunk, seed=1)
    c = roll.decide(frames, chunk, seed=2)
    np.testing.assert_array_equal(a.latents, b.latents)
    assert np.abs(a.latents - c.latents).max() > 1e-3
    d = roll.decide(frames, chunk, seed=1, epsilon=0.9)
    assert np.abs(a.confidence - d.confidence).max() > 1e-4
    _, ref_conf = _reference(modules, "joint", frames, chunk, None, seed=1, epsilon=0.9)
    assert np.abs(d.confidence - ref_conf).max() <= ORT_TOL


def test_rollout_from_latents_equals_from_frames(
    modules: WorldModelModules,
    backends: dict[str, InferenceBackend],
    inputs: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    frames, chunk, _ = inputs
    backend = backends["torch"]
    roll = EngineRollout(backend)
    x = frames.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
    lat = backend.encode(x)
    r1 = roll.rollout_latents(lat, chunk, seed=4)
    r2 = roll.decide(frames, chunk, seed=4)
    np.testing.assert_allclose(r1.latents, r2.latents, atol=1e-6)
    assert roll.decode(r1.latents).shape == (H, 3, SIZE, SIZE)


def test_action_normalizer_is_applied(
    backends: dict[str, InferenceBackend], inputs: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    frames, chunk, _ = inputs
    backend = backends["torch"]
    raw = chunk * 3.0 + 1.0
    normed = EngineRollout(backend, action_normalizer=lambda a: (a - 1.0) / 3.0)
    plain = EngineRollout(backend)
    np.testing.assert_allclose(
        normed.decide(frames, raw, seed=0).latents,
        plain.decide(frames, chunk, seed=0).latents,
        atol=1e-6,
    )


def test_bad_inputs_are_named(
    backends: dict[str, InferenceBackend], inputs: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    frames, chunk, _ = inputs
    roll = EngineRollout(backends["torch"])
    with pytest.raises(TypeError, match="context_frames"):
        roll.decide(frames.astype(np.float32), chunk)
    with pytest.raises(ValueError, match="context_frames"):
        roll.decide(frames[:1], chunk)
    with pytest.raises(ValueError, match="action_chunk"):
        roll.decide(frames, chunk[:2])
    bad = chunk.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        roll.decide(frames, bad)
    with pytest.raises(ValueError, match="mode"):
        EngineRollout(backends["torch"], mode="autoregressive")
