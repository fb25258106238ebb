"""Eager torch backend: the reference every other backend is checked against, and the fallback
that always works where the model code runs.

Runs the very ``nn.Module``s that :mod:`world_monitor.runtime.export` exports, under
``torch.inference_mode()``. ``compile=True`` wraps each graph in ``torch.compile``. Measured
once on the shared 2-core CPU (default configs, k=2, H=8, K=4, 1 thread): a decision took
~106 ms compiled vs ~125 ms eager (-15%), still far behind onnxruntime-CPU (~65 ms). It stays off
by default: the fallback path should not depend on a working C++ toolchain (inductor) on the
robot or pay seconds of compile time at start-up. A compile failure falls back to eager with the
reason recorded in :meth:`describe`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from world_monitor.runtime.backends.base import BackendUnavailable, InferenceBackend, ModelMeta
from world_monitor.runtime.export import GRAPH_INPUTS, GRAPH_OUTPUTS, WorldModelModules

__all__ = ["TorchBackend"]

logger = logging.getLogger(__name__)


class TorchBackend(InferenceBackend):
    """Eager (optionally compiled) torch on ``device`` (``"cpu"`` or ``"cuda[:i]"``)."""

    name = "torch"

    def __init__(
        self,
        modules: WorldModelModules,
        model_hash: str | None = None,
        *,
        device: str = "cpu",
        compile: bool = False,
        num_threads: int | None = None,
    ) -> None:
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"device {device!r} requested but CUDA is not available")
        super().__init__(ModelMeta.from_dict(modules.meta(model_hash or modules.content_hash())))
        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        self.modules = modules
        self.device = device
        self._torch = torch
        self._compile_requested = compile
        self._compile_error: str | None = None
        self._fns: dict[str, Any] = {}
        for graph in modules.graphs:
            mod = modules.graph_module(graph).to(device)
            fn: Any = mod
            if compile:
                try:
                    fn = torch.compile(mod, dynamic=False)
                except Exception as exc:  # any compile setup failure -> eager
                    self._compile_error = f"torch.compile unavailable: {exc}"
                    fn = mod
            self._fns[graph] = fn
        self._eager = {g: modules.graph_module(g) for g in modules.graphs}

    @property
    def graphs(self) -> tuple[str, ...]:
        return self.modules.graphs

    def input_names(self, graph: str) -> tuple[str, ...]:
        return GRAPH_INPUTS[graph]

    def _run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(v).to(self.device) for v in inputs.values()]
        with torch.inference_mode():
            try:
                out = self._fns[graph](*args)
            except Exception as exc:
                if self._fns[graph] is self._eager[graph]:
                    raise
                # compiled graphs fail lazily (first call): record why and stay eager
                self._compile_error = f"torch.compile failed on {graph}: {exc}"
                logger.warning("%s; using eager", self._compile_error)
                self._fns = dict(self._eager)
                out = self._fns[graph](*args)
        out = out if isinstance(out, tuple) else (out,)
        return {
            name: t.detach().float().cpu().numpy()
            for name, t in zip(GRAPH_OUTPUTS[graph], out, strict=True)
        }

    def describe(self) -> dict[str, Any]:
        compiled = self._compile_requested and self._compile_error is None
        return {
            "backend": self.name,
            "device": self.device,
            "precision": self.precision,
            "mode": "torch.compile" if compiled else "eager",
            "compile_error": self._compile_error,
            "threads": self._torch.get_num_threads(),
            "torch_version": self._torch.__version__,
            "graphs": list(self.graphs),
        }
