"""The node's parameters: names, defaults, types, descriptions and validation (no rclpy).

Why separate from ``node.py``: validating parameters is the node's fail-fast step and should
be unit-testable on a machine without ROS. Defaults mirror ``config/ros/default.yaml``.
"""

from __future__ import annotations

import math
from typing import Any

from world_monitor.data.bag.codec import ACTION_FIELDS
from world_monitor.data.frame_prep import RESIZE_MODES, FramePrepError, parse_roi

__all__ = [
    "BOOL",
    "DOUBLE",
    "INTEGER",
    "PARAMETERS",
    "INTEGER_ARRAY",
    "STRING",
    "STAMP_SOURCES",
    "STRING_ARRAY",
    "validate_parameters",
]

STRING, STRING_ARRAY, DOUBLE, INTEGER, BOOL = "string", "string_array", "double", "integer", "bool"
INTEGER_ARRAY = "integer_array"
#: ``stamp_source`` values: header stamps, or the node clock when a message arrives
STAMP_SOURCES: tuple[str, ...] = ("header", "receive_time")
_STR, _STRS, _DBL, _INT, _BOOL, _INTS = STRING, STRING_ARRAY, DOUBLE, INTEGER, BOOL, INTEGER_ARRAY

#: name -> (default, type, description). Defaults mirror config/ros/default.yaml.
PARAMETERS: dict[str, tuple[Any, str, str]] = {
    "bundle_path": ("", _STR, "monitor bundle directory (required)"),
    "backend_order": (
        ["tensorrt", "onnxruntime", "torch"],
        _STRS,
        "inference backends to try in order; the one that loaded is in /diagnostics",
    ),
    "engine_file_path": (
        "",
        _STR,
        "engine cache directory (ONNX exports, TensorRT plans); empty = "
        "$ROS_HOME/world_monitor/engines (~/.ros/world_monitor/engines)",
    ),
    "force_engine_update": (False, _BOOL, "rebuild the TensorRT plan even if cached"),
    "enable_fp16": (True, _BOOL, "allow FP16 in TensorRT"),
    "epsilon": (-1.0, _DBL, "C3 epsilon; < 0 = the bundle's calibrated value"),
    "target_false_alarm_rate": (-1.0, _DBL, "< 0 = the bundle's calibrated thresholds"),
    "image_timeout_s": (0.5, _DBL, "camera older than this closes the gate (stale_image)"),
    "action_timeout_s": (1.0, _DBL, "chunk older than this closes the gate (stale_actions)"),
    "decision_timeout_s": (1.0, _DBL, "no assessment for this long closes the gate"),
    "reopen_after": (3, _INT, "consecutive confident decisions to step down one level"),
    "decision_rate_hz": (0.0, _DBL, "0 = one decision per new chunk; > 0 = also at this rate"),
    "heartbeat_rate_hz": (10.0, _DBL, "~/lock publish rate; twist_mux timeout must exceed 1/rate"),
    "diagnostics_rate_hz": (1.0, _DBL, "/diagnostics rate"),
    "image_transport": ("raw", _STR, "raw (sensor_msgs/Image) or compressed (CompressedImage)"),
    "image_resize": (
        "stretch",
        _STR,
        "how a camera frame of another size becomes the bundle's input: stretch (whole view), "
        "center_crop (aspect kept, edges dropped) or letterbox (aspect kept, padded); "
        "calibrate on frames prepared the same way",
    ),
    "image_crop_roi": (
        [],
        _INTS,
        "optional [x, y, w, h] crop in camera pixels, applied before image_resize; [] = whole",
    ),
    "stamp_source": (
        "header",
        _STR,
        "header: inputs are timed by their header stamps (a zero stamp is unset and rejected as "
        "invalid_stamp); receive_time: by the node clock on arrival (drivers that do not stamp)",
    ),
    "context_period_tolerance": (
        0.5,
        _DBL,
        "relative tolerance on the camera period against the bundle's frame period: later "
        "frames restart the context (context_gap STOP), sooner ones are skipped (a faster "
        "camera is subsampled); in (0, 1)",
    ),
    "action_msg_type": ("JointTrajectory", _STR, "JointTrajectory or Float32MultiArray [H, A]"),
    "action_field": (
        "positions",
        _STR,
        "JointTrajectoryPoint array carrying the chunk: positions|velocities|accelerations|effort",
    ),
    "relay_enabled": (False, _BOOL, "forward cmd_in -> cmd_out only while the gate allows it"),
    "relay_msg_type": ("Twist", _STR, "Twist or JointTrajectory"),
    "slow_scale": (0.5, _DBL, "Twist velocity scale on SLOW, in (0, 1]"),
    "slow_action_dims": (
        [],
        _INTS,
        "action-chunk dims the relay's SLOW scaling applies to (e.g. [0, 1, 2] when the chunk "
        "holds the commanded end-effector velocity): a steady SLOW then keeps the motion "
        "evidence; empty = unknown, every SLOW makes it stale",
    ),
    "shadow_mode": (False, _BOOL, "report decisions but never block (lock stays false)"),
    "enabled": (True, _BOOL, "false: everything passes, diagnostics say monitor_disabled"),
    "hydra_overrides": ([], _STRS, "hydra overrides composed with the config tree"),
    "autostart": (True, _BOOL, "configure and activate at start-up without a manager"),
}


def validate_parameters(p: dict[str, Any]) -> list[str]:
    """All problems with the parameter values (empty = valid); pure, unit-testable."""
    errors: list[str] = []
    if not p.get("bundle_path"):
        errors.append("bundle_path is empty: set it to a monitor bundle directory")
    if not p.get("backend_order"):
        errors.append("backend_order is empty")
    for name in ("image_timeout_s", "action_timeout_s", "decision_timeout_s"):
        v = p.get(name)
        if not isinstance(v, int | float) or not (0 < v < math.inf):
            errors.append(f"{name} must be a finite number > 0, got {v!r}")
    for name in ("heartbeat_rate_hz", "diagnostics_rate_hz"):
        v = p.get(name)
        if not isinstance(v, int | float) or not (0 < v < math.inf):
            errors.append(f"{name} must be > 0, got {v!r}")
    v = p.get("decision_rate_hz")
    if not isinstance(v, int | float) or not (0 <= v < math.inf):
        errors.append(f"decision_rate_hz must be >= 0, got {v!r}")
    if not isinstance(p.get("reopen_after"), int) or p["reopen_after"] < 1:
        errors.append(f"reopen_after must be an integer >= 1, got {p.get('reopen_after')!r}")
    s = p.get("slow_scale")
    if not isinstance(s, int | float) or not (0 < s <= 1):
        errors.append(f"slow_scale must be in (0, 1], got {s!r}")
    tol = p.get("context_period_tolerance")
    if not isinstance(tol, int | float) or not (0 < tol < 1):
        errors.append(f"context_period_tolerance must be in (0, 1), got {tol!r}")
    dims = p.get("slow_action_dims")
    if not isinstance(dims, list | tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims
    ):
        errors.append(f"slow_action_dims must be a list of integers >= 0, got {dims!r}")
    elif len(set(dims)) != len(dims):
        errors.append(f"slow_action_dims has repeated dimensions: {list(dims)!r}")
    eps = p.get("epsilon")
    if isinstance(eps, int | float) and eps >= 0 and not (0 < eps < 1):
        errors.append(f"epsilon must be in (0, 1) (or < 0 for the bundle's), got {eps}")
    far = p.get("target_false_alarm_rate")
    if isinstance(far, int | float) and far >= 0 and not (0 < far < 1):
        errors.append(f"target_false_alarm_rate must be in (0, 1) (or < 0), got {far}")
    if p.get("image_transport") not in ("raw", "compressed"):
        errors.append(f"image_transport must be raw|compressed, got {p.get('image_transport')!r}")
    if p.get("image_resize") not in RESIZE_MODES:
        errors.append(
            f"image_resize must be {'|'.join(RESIZE_MODES)}, got {p.get('image_resize')!r}"
        )
    try:
        parse_roi(p.get("image_crop_roi") or None)
    except FramePrepError as exc:
        errors.append(f"image_crop_roi: {exc}")
    if p.get("stamp_source") not in STAMP_SOURCES:
        errors.append(
            f"stamp_source must be {'|'.join(STAMP_SOURCES)}, got {p.get('stamp_source')!r}"
        )
    if p.get("action_field") not in ACTION_FIELDS:
        errors.append(
            f"action_field must be {'|'.join(ACTION_FIELDS)}, got {p.get('action_field')!r}"
        )
    if p.get("action_msg_type") not in ("JointTrajectory", "Float32MultiArray"):
        errors.append(
            "action_msg_type must be JointTrajectory|Float32MultiArray, got "
            f"{p.get('action_msg_type')!r}"
        )
    if p.get("relay_msg_type") not in ("Twist", "JointTrajectory"):
        errors.append(
            f"relay_msg_type must be Twist|JointTrajectory, got {p.get('relay_msg_type')!r}"
        )
    if not all(isinstance(o, str) and "=" in o for o in p.get("hydra_overrides") or []):
        errors.append(
            f"hydra_overrides must be key=value strings, got {p.get('hydra_overrides')!r}"
        )
    return errors
