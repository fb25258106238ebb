"""Run many independent jobs (bags to replay, closed-loop episodes) on worker processes: this
machine's cores, or a Ray cluster.

Why one helper: ``replay`` over many bags and ``evaluate-policy`` over many episodes have the
same shape -- an expensive per-worker set-up (load the monitor, export or load its engines) and
then tasks that share nothing. :func:`run_tasks` gives both the same three ways to run:

* ``workers=1`` and no Ray: in this process, in order (the reference result);
* ``workers=N``: a local ``spawn`` process pool (no dependency beyond the standard library);
* ``ray_address``: Ray actors, one per worker, each set up once; ``"local"`` starts a private
  cluster on this machine bound to 127.0.0.1 (nothing leaves the host), anything else is the
  address of an existing cluster (``ray start --head`` / a KubeRay service), which must see the
  same paths (bags, bundle, output directory: a shared filesystem) and the same
  ``world_monitor`` install. Ray retries a task whose worker died (``max_task_retries``).

Results come back in task order whatever ran them, so a merged result is the same as the
single-process run's (``tests/test_fleet.py`` asserts it for replay on a local Ray cluster).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["FleetError", "LOCAL", "ray_available", "run_tasks"]

logger = logging.getLogger(__name__)

#: ``--ray`` without an address: a private Ray cluster on this machine
LOCAL = "local"
#: a task whose Ray worker died is retried this many times before the run fails
RAY_TASK_RETRIES = 2


class FleetError(RuntimeError):
    """The fleet could not run (Ray missing or unreachable); the message says what to do."""


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def run_tasks(
    setup: Callable[..., None],
    setup_args: Sequence[Any],
    work: Callable[[Any], Any],
    tasks: Sequence[Any],
    *,
    workers: int = 1,
    ray_address: str | None = None,
    on_result: Callable[[Any], None] | None = None,
) -> list[Any]:
    """``[work(t) for t in tasks]`` with ``setup(*setup_args)`` run once per worker first.

    ``setup`` and ``work`` must be module-level functions (they are pickled to the workers);
    ``work`` reads what ``setup`` prepared from its module's globals. ``on_result`` is called in
    task order as results arrive (progress bars).
    """
    results: list[Any] = []
    for result in _iter_results(setup, setup_args, work, tasks, workers, ray_address):
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def _iter_results(
    setup: Callable[..., None],
    setup_args: Sequence[Any],
    work: Callable[[Any], Any],
    tasks: Sequence[Any],
    workers: int,
    ray_address: str | None,
) -> Iterator[Any]:
    if not tasks:
        return
    if ray_address is not None:
        yield from _ray_results(setup, setup_args, work, tasks, workers, ray_address)
        return
    n = max(1, min(int(workers), len(tasks)))
    if n == 1:
        setup(*setup_args)
        for task in tasks:
            yield work(task)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(n, setup, tuple(setup_args)) as pool:
        yield from pool.imap(work, tasks, chunksize=1)


class _Actor:
    """One Ray worker: set up once, then runs tasks."""

    def __init__(self, setup: Callable[..., None], setup_args: Sequence[Any]) -> None:
        setup(*setup_args)

    def run(self, work: Callable[[Any], Any], task: Any) -> Any:
        return work(task)


def _ray_results(
    setup: Callable[..., None],
    setup_args: Sequence[Any],
    work: Callable[[Any], Any],
    tasks: Sequence[Any],
    workers: int,
    address: str,
) -> Iterator[Any]:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise FleetError(
            "--ray needs Ray: pip install 'world_monitor[fleet]' (or ray==2.60.0)"
        ) from None
    started = not ray.is_initialized()
    n = max(1, min(int(workers), len(tasks)))
    if started:
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
        }
        if address == LOCAL:
            # a private cluster: one CPU per worker, bound to loopback only
            kwargs.update(num_cpus=n, _node_ip_address="127.0.0.1")
        else:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except Exception as exc:  # noqa: BLE001 -- ConnectionError, RuntimeError, ...
            raise FleetError(f"--ray {address}: cannot start/join the cluster ({exc})") from None
    try:
        actor_cls = ray.remote(num_cpus=1, max_restarts=1, max_task_retries=RAY_TASK_RETRIES)(
            _Actor
        )
        actors = [actor_cls.remote(setup, tuple(setup_args)) for _ in range(n)]
        pool = ActorPool(actors)
        yield from pool.map(lambda actor, task: actor.run.remote(work, task), list(tasks))
    finally:
        if started:
            ray.shutdown()
