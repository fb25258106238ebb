"""Which rclpy executor can spin the node: wait-set rebuilds, delivery latency, stale locks.

    python benchmarks/ros_executor.py [--seconds 4] [--runs 3] [--json OUT.json]

Why this exists: until 2026-12-03 the node ran its heartbeat timer, inputs and relay in
callback groups on a ``MultiThreadedExecutor``, and the real-graph tests failed on an idle
machine with the lock closing on ``stale_image`` although the camera published at 10 Hz. This
script reproduces the cause and shows the shipped design does not have it: the node (with the
brightness fake from the tests, so only ROS plumbing is measured) on a live loopback graph, a
probe on an executor and thread of its own publishing a frame and a chunk every 100 ms, and for
each executor kind:

* **wait-set rebuilds per second** of the node's executor (each is one pass of rclpy's
  ``_wait_for_ready_callbacks``; ~6 messages and beats per 100 ms need ~60);
* **CPU seconds** used by the thread spinning that executor, per wall second;
* **delivery latency**: publication of a camera frame to the start of the node's image callback
  (p50, p95, max), the count of frames later than 0.25 s;
* **stale closes**: how often the gate raised ``stale_image`` while the camera was publishing.

``single`` is the shipped :func:`world_monitor.ros.node.make_executor`; ``multi`` is
``MultiThreadedExecutor(num_threads=4)``, the previous design's executor. Ratios are to
``single`` measured in the same run. Loopback-only DDS on a domain id of this run's own, set
before rclpy is imported. A shared machine is noisy: the load average is printed per kind.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ["ROS_LOCALHOST_ONLY"] = "1"
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)
os.environ["ROS_DOMAIN_ID"] = str(151 + os.getpid() % 80)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests" / "ros"))
from hostinfo import cpu_model, load_avg  # noqa: E402

HW = (16, 16)
PERIOD_S = 0.1
LATE_S = 0.25


def _thread_cpu_s(native_id: int) -> float:
    """User + system CPU seconds of one thread of this process (Linux /proc)."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(kind: str, seconds: float) -> dict[str, float]:
    """One run of the node on ``kind``'s executor; see the module docstring for the columns."""
    import rclpy
    from fakes import FakeMonitor
    from graph import Graph
    from rclpy.executors import MultiThreadedExecutor

    from world_monitor.ros.node import make_executor

    rclpy.init()
    executor = make_executor() if kind == "single" else MultiThreadedExecutor(num_threads=4)
    builds = [0]
    inner = executor._wait_for_ready_callbacks

    def counting(*args, **kwargs):
        builds[0] += 1
        return inner(*args, **kwargs)

    executor._wait_for_ready_callbacks = counting  # instance attribute: this executor only
    stale = [0]
    publishing = [False]  # after the last frame the camera is stale on purpose

    class CountStale(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if publishing[0] and "stale_image" in record.getMessage():
                stale[0] += 1

    gate_log = logging.getLogger("world_monitor.runtime.gate")
    handler = CountStale()
    gate_log.addHandler(handler)
    level, propagate = gate_log.level, gate_log.propagate
    gate_log.setLevel(logging.WARNING)  # the gate warns when a cause becomes active
    gate_log.propagate = False
    g = Graph(
        lambda p, cfg: FakeMonitor(horizon=1, image_size=HW),
        {"bundle_path": "fake", "heartbeat_rate_hz": 20.0},
        executor=executor,
    )
    try:
        if not g.wait_matched():
            raise SystemExit("DDS discovery on loopback did not complete")
        arrivals: dict[float, float] = {}
        original = g.wm._on_image

        def on_image(msg, msgtype):
            arrivals[msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9] = time.time()
            original(msg, msgtype)

        g.wm._on_image = on_image  # the subscription calls through this attribute
        spin_thread = next(t for t in g._threads if t.is_alive())
        time.sleep(0.5)
        stale[0], b0, c0 = 0, builds[0], _thread_cpu_s(spin_thread.native_id)
        t0 = time.monotonic()
        publishing[0] = True
        published: list[float] = []
        frame = np.full((*HW, 3), 20, np.uint8)
        while time.monotonic() - t0 < seconds:
            stamp = g.now()
            published.append(stamp.sec + stamp.nanosec * 1e-9)
            g.publish_image(frame, stamp=stamp)
            g.publish_chunk(np.zeros((1, 4), np.float32))
            time.sleep(PERIOD_S)
        time.sleep(0.3)  # a stale close would be raised by now (image_timeout_s 0.5)
        publishing[0] = False
        time.sleep(0.7)  # let late frames land
        wall = time.monotonic() - t0
        lat = np.array([arrivals[p] - p for p in published if p in arrivals])
        return {
            "rebuilds_per_s": (builds[0] - b0) / wall,
            "spin_cpu_per_s": (_thread_cpu_s(spin_thread.native_id) - c0) / wall,
            "latency_p50_ms": float(np.percentile(lat, 50) * 1e3),
            "latency_p95_ms": float(np.percentile(lat, 95) * 1e3),
            "latency_max_ms": float(lat.max() * 1e3),
            "late_frames": float((lat > LATE_S).sum()),
            "lost_frames": float(len(published) - len(lat)),
            "stale_closes": float(stale[0]),
        }
    finally:
        gate_log.removeHandler(handler)
        gate_log.setLevel(level)
        gate_log.propagate = propagate
        g.close()
        rclpy.try_shutdown()


COLUMNS = [
    ("rebuilds_per_s", "rebuilds/s", "{:.0f}"),
    ("spin_cpu_per_s", "spin CPU s/s", "{:.2f}"),
    ("latency_p50_ms", "p50 ms", "{:.1f}"),
    ("latency_p95_ms", "p95 ms", "{:.1f}"),
    ("latency_max_ms", "max ms", "{:.1f}"),
    ("late_frames", f"frames > {LATE_S * 1e3:.0f} ms", "{:.0f}"),
    ("lost_frames", "lost", "{:.0f}"),
    ("stale_closes", "stale_image", "{:.0f}"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="publishing time per run")
    ap.add_argument("--runs", type=int, default=3, help="runs per executor (medians reported)")
    ap.add_argument("--kinds", default="single,multi", help="comma-separated: single, multi")
    ap.add_argument("--json", default=None, help="also write every run as JSON here")
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if args.seconds <= 0 or args.runs < 1 or not set(kinds) <= {"single", "multi"}:
        ap.error("--seconds > 0, --runs >= 1, --kinds from single,multi")
    logging.basicConfig(level=logging.ERROR)
    print(f"# host: {cpu_model()}, {os.cpu_count()} cpus; {args.runs} runs x {args.seconds:g} s")
    runs: dict[str, list[dict[str, float]]] = {}
    loads: dict[str, str] = {}
    for kind in kinds:
        before = load_avg()
        runs[kind] = [measure(kind, args.seconds) for _ in range(args.runs)]
        loads[kind] = f"{before} -> {load_avg()}"
    med = {
        k: {c: float(np.median([r[c] for r in v])) for c, _, _ in COLUMNS} for k, v in runs.items()
    }
    head = ["executor"] + [h for _, h, _ in COLUMNS] + ["rebuilds vs single", "load avg"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for kind in kinds:
        cells = [fmt.format(med[kind][c]) for c, _, fmt in COLUMNS]
        base = med.get("single", {}).get("rebuilds_per_s")
        ratio = f"{med[kind]['rebuilds_per_s'] / base:.1f}x" if base else "-"
        print(f"| {kind} | " + " | ".join(cells) + f" | {ratio} | {loads[kind]} |")
    print("(medians of the runs; 'single' is the shipped make_executor())")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "medians": med}, indent=2))


if __name__ == "__main__":
    main()
