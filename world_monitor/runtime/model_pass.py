"""The stateless half of a decision, and computing it ahead of time on spare cores.

Why split a decision: one decision is a model pass (VAE encode, world-model rollout, probe,
reconstruction and colour scores: ~25 ms, a pure function of the frames and the chunk) followed
by a cheap stateful part (the ``motion`` / ``selfcheck`` history, calibrated risk, gate). Offline
replay knows the next decisions' inputs before it needs their results, so it can run the model
passes of upcoming decisions on other cores while the stateful part stays strictly sequential.
A pass computed ahead is keyed by a digest of its exact inputs, so a decision gets either the
pass of exactly its inputs or computes its own: the decisions are the same as a sequential
replay's by construction (``tests/replay/test_lookahead.py`` asserts it on bags).

Why threads and not batches: ``python benchmarks/replay.py`` measures both in one run (it
exports the world model with a batch axis for the comparison). On the shared 2-core box batching
windows through one onnxruntime call did *not* raise throughput for the shipped model (the
640-token transformer is compute-bound at batch 1), so using the second core means running two
passes at once, one intra-op thread each.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ModelPass", "PassPrefetcher", "pass_key"]

logger = logging.getLogger(__name__)


@dataclass
class ModelPass:
    """Everything one decision computes that depends only on its inputs (no history)."""

    context_latents: np.ndarray  # [k, C, h, w]
    latents: np.ndarray  # [H, C, h, w] predicted
    confidence: np.ndarray  # [H, C, h, w] q̂ at ε (recalibrated when the bundle says so)
    scores: dict[str, float]  # the stateless raw signals (C³, recon*, colour)
    recon_cells: np.ndarray | None = None
    colour_cells: np.ndarray | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)


def pass_key(
    frames: np.ndarray, action_chunk: np.ndarray, context_actions: np.ndarray | None, seed: int
) -> bytes:
    """Digest of a pass's exact inputs (bytes, dtype and shape): equal keys, equal passes."""
    h = hashlib.blake2b(digest_size=20)
    for arr in (frames, action_chunk, context_actions):
        if arr is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(arr)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    h.update(int(seed).to_bytes(8, "little", signed=True))
    return h.digest()


class PassPrefetcher:
    """Model passes computed ahead on a thread pool, handed out once by input digest.

    ``compute`` must be safe to call from several threads at once (onnxruntime and torch
    sessions are; the Monitor only enables prefetching when its backend says so). Results not
    taken are dropped oldest first beyond ``max_pending``, so a wrong guess costs compute, never
    memory or correctness. ``hits``/``misses`` say how often a decision found its pass ready.
    """

    def __init__(
        self,
        compute: Callable[[np.ndarray, np.ndarray, np.ndarray | None, int], ModelPass],
        threads: int,
        max_pending: int = 64,
    ) -> None:
        if threads < 1:
            raise ValueError(f"prefetch threads must be >= 1, got {threads}")
        self._compute = compute
        self._pool = ThreadPoolExecutor(max_workers=int(threads), thread_name_prefix="wm-pass")
        self._pending: OrderedDict[bytes, Future[ModelPass]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_pending = int(max_pending)
        self.threads = int(threads)
        self.submitted = 0
        self.hits = 0
        self.misses = 0
        self.dropped = 0

    def submit(
        self,
        frames: np.ndarray,
        action_chunk: np.ndarray,
        context_actions: np.ndarray | None,
        seed: int,
    ) -> None:
        """Start the pass for these inputs (copied: the caller may reuse its buffers)."""
        key = pass_key(frames, action_chunk, context_actions, seed)
        args = (
            np.array(frames, copy=True),
            np.array(action_chunk, copy=True),
            None if context_actions is None else np.array(context_actions, copy=True),
            int(seed),
        )
        with self._lock:
            if key in self._pending:
                return
            self._pending[key] = self._pool.submit(self._compute, *args)
            self.submitted += 1
            while len(self._pending) > self.max_pending:
                _, old = self._pending.popitem(last=False)
                old.cancel()
                self.dropped += 1

    def pending(self) -> int:
        """Passes submitted and not yet taken."""
        with self._lock:
            return len(self._pending)

    def take(
        self,
        frames: np.ndarray,
        action_chunk: np.ndarray,
        context_actions: np.ndarray | None,
        seed: int,
    ) -> ModelPass | None:
        """The pass of exactly these inputs if one was submitted (waiting for it), else None.
        A pass that failed in the pool returns None, so the caller computes it itself and any
        error surfaces exactly where a sequential decision would raise it."""
        key = pass_key(frames, action_chunk, context_actions, seed)
        with self._lock:
            future = self._pending.pop(key, None)
        if future is None:
            self.misses += 1
            return None
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 -- recomputed by the caller, which raises
            logger.debug("prefetched pass failed (%s); computing it in line", exc)
            self.misses += 1
            return None
        self.hits += 1
        return result

    def stats(self) -> dict[str, int]:
        return {
            "threads": self.threads,
            "submitted": self.submitted,
            "hits": self.hits,
            "misses": self.misses,
            "dropped": self.dropped,
        }

    def close(self) -> None:
        """Stop the pool (running passes finish; queued ones are cancelled)."""
        with self._lock:
            for future in self._pending.values():
                future.cancel()
            self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
