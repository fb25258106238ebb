"""Launch world_monitor_node.

    ros2 launch world_monitor monitor.launch.py bundle:=/path/to/bundle \
        image:=/camera/image_raw actions:=/policy/action_chunk relay:=true \
        cmd_in:=/cmd_vel_policy cmd_out:=/cmd_vel

The node is a lifecycle node that configures and activates itself (``autostart``); set
``autostart:=false`` to drive it from a lifecycle manager instead.

Parameters, by precedence: a launch argument given on the command line, then ``params_file``
(a standard ROS 2 parameters YAML, ``/**: {ros__parameters: {...}}`` or keyed by the node's
name), then the defaults the node declares (the same values as config/ros/default.yaml). A node
parameter's launch argument defaults to ``""``, meaning *not set here*, so it never hides a value
from ``params_file``. ``PARAMS_FILE_ONLY`` lists the parameters that are deliberately not launch
arguments (set them in ``params_file``). tests/ros/test_launch_description.py checks, without
``launch`` installed, that every node parameter (world_monitor/ros/params.py) is reachable here
and that every argument maps to a declared parameter.

Lists are given comma-separated (``backend_order:=onnxruntime,torch``,
``image_crop_roi:=80,0,480,480``); an empty list cannot be passed (a ROS parameter file cannot type
an empty array), so ``""`` leaves the node default (``[]``).

When the node process exits, the launch shuts down (instead of idling with nothing running), and
a non-zero exit of the node makes ``ros2 launch`` itself exit non-zero (see ``_on_node_exit``).
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from launch import LaunchDescription

#: (launch argument, node parameter or None, kind, default, description). ``kind`` is the node
#: parameter's type as in world_monitor/ros/params.py, or what a non-parameter argument is:
#: ``remap`` (a topic remapping), ``node`` (the node's name/namespace), ``params_file``.
#: A parameter's default is "" = not set by the launch (params_file, else the node's default).
# fmt: off
ARGS = [
    ("bundle", "bundle_path", "string", "", "monitor bundle directory (required)"),
    ("image", None, "remap", "image", "camera topic (sensor_msgs/Image or CompressedImage)"),
    ("actions", None, "remap", "action_chunk", "action-chunk topic"),
    ("cmd_in", None, "remap", "cmd_in", "policy command topic (relay input)"),
    ("cmd_out", None, "remap", "cmd_out", "gated command topic (relay output)"),
    ("namespace", None, "node", "", "node namespace"),
    ("name", None, "node", "world_monitor", "node name (the lock topic is <name>/lock)"),
    ("params_file", None, "params_file", "", "ROS 2 parameters YAML for any node parameter"),
    ("backend_order", "backend_order", "string_array", "",
     "comma-separated backend order (node default tensorrt,onnxruntime,torch)"),
    ("engine_file_path", "engine_file_path", "string", "",
     "TensorRT plan path (node default: the engine cache)"),
    ("force_engine_update", "force_engine_update", "bool", "",
     "rebuild the TensorRT plan even if cached (node default false)"),
    ("enable_fp16", "enable_fp16", "bool", "", "allow FP16 in TensorRT (node default true)"),
    ("epsilon", "epsilon", "double", "", "C3 epsilon (node default -1: the bundle's)"),
    ("target_false_alarm_rate", "target_false_alarm_rate", "double", "",
     "false-alarm target (node default -1: the bundle's thresholds)"),
    ("image_timeout_s", "image_timeout_s", "double", "",
     "camera older than this closes the gate (node default 0.5)"),
    ("action_timeout_s", "action_timeout_s", "double", "",
     "action chunk older than this closes the gate (node default 1.0)"),
    ("decision_rate_hz", "decision_rate_hz", "double", "",
     "0 = one decision per chunk; > 0 = also at this rate (node default 0)"),
    ("heartbeat_rate_hz", "heartbeat_rate_hz", "double", "",
     "~/lock rate; the twist_mux lock timeout must exceed 1/rate (node default 10)"),
    ("image_transport", "image_transport", "string", "", "raw | compressed (node default raw)"),
    ("image_resize", "image_resize", "string", "",
     "camera frame -> bundle size: stretch | center_crop | letterbox (node default stretch)"),
    ("image_crop_roi", "image_crop_roi", "integer_array", "",
     "x,y,w,h crop in camera pixels before image_resize (node default: whole frame)"),
    ("stamp_source", "stamp_source", "string", "",
     "header | receive_time: how inputs are timed (node default header)"),
    ("action_msg_type", "action_msg_type", "string", "",
     "JointTrajectory | Float32MultiArray (node default JointTrajectory)"),
    ("action_field", "action_field", "string", "",
     "JointTrajectoryPoint array with the chunk: positions | velocities | accelerations | effort "
     "(node default positions)"),
    ("relay", "relay_enabled", "bool", "",
     "relay cmd_in -> cmd_out while the gate allows it (node default false)"),
    ("relay_msg_type", "relay_msg_type", "string", "", "Twist | JointTrajectory (node default Twist)"),
    ("slow_scale", "slow_scale", "double", "", "Twist scale on SLOW, in (0, 1] (node default 0.5)"),
    ("slow_action_dims", "slow_action_dims", "integer_array", "",
     "comma-separated chunk dims SLOW scales, e.g. 0,1,2 (node default: unknown)"),
    ("shadow", "shadow_mode", "bool", "", "report only, never block (node default false)"),
    ("enabled", "enabled", "bool", "", "false: everything passes (node default true)"),
    ("use_sim_time", "use_sim_time", "bool", "", "use /clock (bag replay, simulation)"),
    ("hydra_overrides", "hydra_overrides", "string_array", "",
     "comma-separated hydra overrides, e.g. seed=1"),
    ("autostart", "autostart", "bool", "",
     "configure + activate without a lifecycle manager (node default true)"),
]
# fmt: on

#: node parameters that are deliberately not launch arguments: gate tuning that belongs next to
#: the bundle's calibration in a reviewed parameters file (``params_file:=...``), not on a
#: command line
PARAMS_FILE_ONLY = {
    "decision_timeout_s": "watchdog: no assessment for this long closes the gate",
    "reopen_after": "hysteresis of the gate (consecutive confident decisions)",
    "diagnostics_rate_hz": "/diagnostics rate",
    "context_period_tolerance": "camera period vs the bundle's frame period (relative)",
}

#: the node's own topic names, remapped by the ``remap`` arguments
REMAPS = {"image": "image", "actions": "action_chunk", "cmd_in": "cmd_in", "cmd_out": "cmd_out"}

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _list(text: str) -> list[str]:
    return [s.strip() for s in text.strip().strip("[]").split(",") if s.strip()]


def _convert(arg: str, kind: str, text: str):
    """The launch argument's text as the node parameter's type (ValueError names the argument)."""
    try:
        if kind == "string":
            return text
        if kind == "double":
            return float(text)
        if kind == "integer":
            return int(text)
        if kind == "bool":
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
            raise ValueError("expected true or false")
        if kind == "string_array":
            return _list(text)
        if kind == "integer_array":
            return [int(v) for v in _list(text)]
    except ValueError as exc:
        raise ValueError(f"launch argument {arg}:={text!r} is not a {kind}: {exc}") from None
    raise ValueError(f"launch argument {arg}: unknown kind {kind!r}")


def _parameters(values: dict[str, str]) -> dict:
    """Node parameters from launch-argument texts; an empty text is not set (so a params_file
    value or the node's default applies), and neither is an empty list."""
    params = {}
    for arg, param, kind, _, _ in ARGS:
        text = values.get(arg, "").strip()
        if param is None or not text:
            continue
        value = _convert(arg, kind, text)
        if value != []:
            params[param] = value
    return params


def _on_node_exit(event, context):
    """The node is what this launch is for: when it exits, shut the launch down. A failure (a
    non-zero exit, e.g. a misconfigured bundle with autostart) is raised, which `ros2 launch`
    reports as "Caught exception in launch" and turns into its own exit status 1; a clean exit
    shuts down with status 0. During a shutdown already under way (Ctrl-C) nothing is added."""
    if context.is_shutdown:
        return None
    if event.returncode != 0:
        raise RuntimeError(
            f"{event.process_name} exited with code {event.returncode} (see its log above)"
        )
    return [Shutdown(reason=f"{event.process_name} exited")]


def _node(context, *args, **kwargs):
    v = {arg: LaunchConfiguration(arg).perform(context) for arg, *_ in ARGS}
    parameters = [v["params_file"]] if v["params_file"] else []
    parameters.append(_parameters(v))  # later entries win: command line over params_file
    return [
        LifecycleNode(
            package="world_monitor",
            executable="world_monitor_node",
            name=v["name"],
            namespace=v["namespace"],
            output="screen",
            parameters=parameters,
            remappings=[(topic, v[arg]) for arg, topic in REMAPS.items()],
            on_exit=_on_node_exit,
        )
    ]


def generate_launch_description():
    args = [DeclareLaunchArgument(n, default_value=d, description=h) for n, _, _, d, h in ARGS]
    return LaunchDescription([*args, OpaqueFunction(function=_node)])
