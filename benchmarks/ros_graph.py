"""The node on a live ROS 2 graph: end-to-end latency and heartbeat gaps, idle and under a CPU hog.

    python benchmarks/ros_graph.py [--seconds 30] [--bundle BUNDLE] [--backend onnxruntime]
                                   [--phases idle,hog] [--json OUT.json]

Why this exists: the node's promise to twist_mux is a ``~/lock`` heartbeat that never goes
quiet while the monitor is alive (twist_mux's lock timeout is typically 0.5 s), and a STOP that
reaches the lock within about one decision's latency. Neither can be asserted in a unit test on
a shared machine, so this script measures them on the real graph:

* the real node (``world_monitor.ros.node.main``: heartbeat thread, single-threaded executor) in
  its own process, on the shipped bundle (onnxruntime), deciding once per chunk;
* a probe in this process plays an in-distribution episode from the built-in simulator at 10 Hz
  with a chunk every 4 frames (a policy re-planning every 4 steps: 2.5 decisions/s); every 6th
  chunk is preceded by black frames, so the gate closes (STOP) and reopens again and again;
* **end-to-end latency** = arrival of a ``~/lock`` *change* minus the header stamp of the camera
  frame that decision was made on (the heatmap published by the same decision carries that
  header); compared with the monitor's own decision latency (``session_total`` from
  ``/diagnostics``) in the same run;
* **heartbeat gaps** between consecutive ``~/lock`` messages (p50, max), against the 150 ms
  budget;
* phase ``hog``: one busy-looping process per core for the whole phase.

DDS stays on loopback (``ROS_LOCALHOST_ONLY=1``, ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) on a
domain id of this run's own; both are set here, before rclpy is imported. Numbers from a shared
machine are noisy: the load average is printed at the start and end of every phase.
"""

from __future__ import annotations

import argparse
import array
import json
import multiprocessing as mp
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ["ROS_LOCALHOST_ONLY"] = "1"
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)
os.environ["ROS_DOMAIN_ID"] = str(101 + os.getpid() % 100)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostinfo import cpu_model, load_avg  # noqa: E402

HEARTBEAT_HZ = 10.0
HEARTBEAT_BUDGET_MS = 150.0
E2E_RATIO_TARGET = 1.5
FPS = 10.0
REPLAN = 4
HORIZON = 8


def _hog(stop: Any) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def _episode() -> tuple[np.ndarray, np.ndarray]:
    """Frames [T, 64, 64, 3] and actions [T, 4] of one seeded in-distribution episode."""
    from world_monitor.sim import simulate_episode

    ep = simulate_episode("in_distribution", 3_000_000)
    return np.asarray(ep.frames), np.asarray(ep.actions, np.float32)


def _node_cmd(bundle: str, backend: str) -> list[str]:
    script = Path(sys.executable).with_name("world_monitor_node")
    head = [str(script)] if script.exists() else [
        sys.executable, "-c", "from world_monitor.ros.node import main; main()"
    ]  # fmt: skip
    return [
        *head,
        "--ros-args",
        "-p", f"bundle_path:={bundle}",
        "-p", f"backend_order:=[{backend}]",
        "-p", f"heartbeat_rate_hz:={HEARTBEAT_HZ}",
        "-p", "diagnostics_rate_hz:=2.0",
    ]  # fmt: skip


def _q(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def run_phase(name: str, seconds: float, bundle: str, backend: str, frames, actions) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image
    from std_msgs.msg import Bool
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from world_monitor.data.chunks import planned_chunk

    load_start = load_avg()
    stop_hog = mp.Event()
    hogs = []
    if name == "hog":
        hogs = [
            mp.Process(target=_hog, args=(stop_hog,), daemon=True)
            for _ in range(os.cpu_count() or 2)
        ]
        for h in hogs:
            h.start()
    proc = subprocess.Popen(
        _node_cmd(bundle, backend), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    rclpy.init()
    node = rclpy.create_node("world_monitor_benchmark_probe")
    locks: list[tuple[float, bool]] = []
    heat: list[tuple[float, float]] = []  # (arrival, header stamp)
    diags: list[dict[str, str]] = []
    mtx = threading.Lock()

    def on_lock(m: Any) -> None:
        with mtx:
            locks.append((time.time(), bool(m.data)))

    def on_heat(m: Any) -> None:
        with mtx:
            heat.append((time.time(), m.header.stamp.sec + m.header.stamp.nanosec * 1e-9))

    def on_diag(m: Any) -> None:
        for st in m.status:
            if st.name.startswith("world_monitor"):
                with mtx:
                    diags.append({kv.key: kv.value for kv in st.values})

    node.create_subscription(Bool, "/world_monitor/lock", on_lock, 100)
    node.create_subscription(Image, "/world_monitor/heatmap", on_heat, 100)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 100)
    pub_img = node.create_publisher(Image, "/image", 10)
    pub_act = node.create_publisher(JointTrajectory, "/action_chunk", 10)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    try:
        t_start = time.monotonic()
        while not locks and time.monotonic() - t_start < 120:
            if proc.poll() is not None:
                raise RuntimeError(f"node exited {proc.returncode}: {proc.stdout.read()}")
            time.sleep(0.1)
        if not locks:
            raise RuntimeError("node never published ~/lock within 120 s")
        black = np.zeros_like(frames[0])
        h, w = frames.shape[1:3]
        t0 = time.monotonic()
        i = k = 0
        while time.monotonic() - t0 < seconds:
            idx = i % len(frames)
            perturbed = (k % 6) == 5
            stamp = node.get_clock().now().to_msg()
            img = Image()
            img.header.stamp, img.header.frame_id = stamp, "camera"
            img.height, img.width, img.encoding, img.step = h, w, "rgb8", w * 3
            img.data = array.array("B", (black if perturbed else frames[idx]).tobytes())
            pub_img.publish(img)
            if i % REPLAN == REPLAN - 1:
                chunk = planned_chunk(actions, idx, HORIZON)
                msg = JointTrajectory()
                msg.header.stamp = stamp
                msg.joint_names = [f"a{j}" for j in range(chunk.shape[1])]
                msg.points = [JointTrajectoryPoint(positions=[float(v) for v in r]) for r in chunk]
                pub_act.publish(msg)
                k += 1
            i += 1
            time.sleep(max(0.0, t0 + i / FPS - time.monotonic()))
        time.sleep(1.0)  # the last decisions and a diagnostics message
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        stop_hog.set()
        for p in hogs:
            p.join(timeout=5)
    with mtx:
        lk, hm, dg = list(locks), list(heat), list(diags)
    times = np.array([t for t, _ in lk])
    g = (
        np.diff(times[(times >= time.time() - seconds - 2.0)]) * 1e3
        if len(times) > 2
        else np.array([])
    )
    changes = [(t, v) for (t, v), (_, pv) in zip(lk[1:], lk[:-1], strict=True) if v != pv]
    e2e = []
    for t, _ in changes:
        after = [stamp for arr, stamp in hm if t - 0.01 <= arr <= t + 0.5]
        if after:
            e2e.append((t - after[0]) * 1e3)
    last = dg[-1] if dg else {}
    decision_p50 = float(last.get("latency_ms.session_total.p50", "nan").replace("none", "nan"))
    decision_p95 = float(last.get("latency_ms.session_total.p95", "nan").replace("none", "nan"))
    return {
        "phase": name,
        "load_start": load_start,
        "load_end": load_avg(),
        "heartbeat_gap_p50_ms": _q(list(g), 50),
        "heartbeat_gap_max_ms": float(g.max()) if g.size else float("nan"),
        "lock_rate_hz": float(len(g) / (times[-1] - times[-len(g) - 1]))
        if g.size
        else float("nan"),
        "lock_changes": len(changes),
        "e2e_p50_ms": _q(e2e, 50),
        "e2e_p95_ms": _q(e2e, 95),
        "e2e_max_ms": max(e2e) if e2e else float("nan"),
        "decision_p50_ms": decision_p50,
        "decision_p95_ms": decision_p95,
        "decisions_per_s": float(last.get("decisions_rate_hz", "nan")),
        "chunks_superseded": int(last.get("decisions.superseded_chunks", 0)),
        "images_rejected": int(last.get("inputs.image.rejected_total", 0)),
        "node_exit": proc.returncode,
        "closing_lock_last": bool(lk and lk[-1][1]),
        "backend": last.get("backend", "?"),
        "log_tail": out[-600:] if proc.returncode else "",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="input time per phase")
    ap.add_argument("--bundle", default=None, help="monitor bundle (default: the shipped one)")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--phases", default="idle,hog", help="comma-separated: idle, hog")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args()
    try:
        import rclpy  # noqa: F401
    except ImportError:
        print("ros_graph: rclpy is not installed (bash scripts/setup.sh installs the ROS 2 wheels)")
        return 2
    from world_monitor.defaults import default_bundle

    bundle = args.bundle or str(default_bundle())
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if not phases or any(p not in ("idle", "hog") for p in phases):
        print(f"ros_graph: --phases takes idle and/or hog, got {args.phases!r}")
        return 2
    print(f"host: {platform.node()} | {cpu_model()} | {os.cpu_count()} cores | "
          f"python {platform.python_version()} | ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']} (loopback only)")  # fmt: skip
    print(f"bundle: {bundle} | backend: {args.backend} | input: 64x64 rgb8 at {FPS:.0f} Hz, "
          f"a chunk every {REPLAN} frames | {args.seconds:.0f} s per phase")  # fmt: skip
    frames, actions = _episode()
    rows = [run_phase(p, args.seconds, bundle, args.backend, frames, actions) for p in phases]
    cols = [
        ("phase", "phase", "{}"),
        ("load start", "load_start", "{}"),
        ("load end", "load_end", "{}"),
        ("hb gap p50 ms", "heartbeat_gap_p50_ms", "{:.1f}"),
        ("hb gap max ms", "heartbeat_gap_max_ms", "{:.1f}"),
        ("lock Hz", "lock_rate_hz", "{:.2f}"),
        ("lock changes", "lock_changes", "{}"),
        ("e2e p50 ms", "e2e_p50_ms", "{:.1f}"),
        ("e2e p95 ms", "e2e_p95_ms", "{:.1f}"),
        ("e2e max ms", "e2e_max_ms", "{:.1f}"),
        ("decision p50 ms", "decision_p50_ms", "{:.1f}"),
        ("e2e/decision", None, "{:.2f}"),
        ("chunks superseded", "chunks_superseded", "{}"),
        ("images rejected", "images_rejected", "{}"),
    ]
    print("| " + " | ".join(c[0] for c in cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        r["e2e_over_decision"] = r["e2e_p50_ms"] / r["decision_p50_ms"]
        cells = [f.format(r[k] if k else r["e2e_over_decision"]) for _, k, f in cols]
        print("| " + " | ".join(cells) + " |")
    for r in rows:
        verdict = [
            f"heartbeat max gap {r['heartbeat_gap_max_ms']:.0f} ms "
            f"({'<=' if r['heartbeat_gap_max_ms'] <= HEARTBEAT_BUDGET_MS else '>'} {HEARTBEAT_BUDGET_MS:.0f})",
            f"e2e p50 {r['e2e_over_decision']:.2f}x the decision latency "
            f"({'<=' if r['e2e_over_decision'] <= E2E_RATIO_TARGET else '>'} {E2E_RATIO_TARGET})",
            f"closing lock {'sent' if r['closing_lock_last'] else 'MISSING'} on SIGINT "
            f"(node exit {r['node_exit']})",
        ]
        print(f"{r['phase']}: " + "; ".join(verdict))
        if r["log_tail"]:
            print(f"{r['phase']}: node log tail: {r['log_tail']}")
    if any(
        float(r["load_start"].split(",")[0]) > (os.cpu_count() or 1)
        for r in rows
        if r["phase"] == "idle"
    ):
        print(
            "warning: load average above the core count at the start of the idle phase: numbers unreliable"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
