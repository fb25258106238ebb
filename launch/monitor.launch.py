"""Launch world_monitor_node.

    ros2 launch world_monitor monitor.launch.py bundle:=/path/to/bundle \
        image:=/camera/image_raw actions:=/policy/action_chunk relay:=true \
        cmd_in:=/cmd_vel_policy cmd_out:=/cmd_vel

The node is a lifecycle node that configures and activates itself (``autostart``); set
``autostart:=false`` to drive it from a lifecycle manager instead. Node parameters not set here
keep the defaults declared by the node (the same values as config/ros/default.yaml).
Parameters are built in an OpaqueFunction so list arguments become real string arrays and empty
lists are simply not passed (ROS parameter files cannot type an empty array).
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from launch import LaunchDescription

ARGS = [
    ("bundle", "", "monitor bundle directory"),
    ("image", "image", "camera topic (sensor_msgs/Image or CompressedImage)"),
    ("image_transport", "raw", "raw | compressed"),
    ("actions", "action_chunk", "action-chunk topic"),
    ("action_msg_type", "JointTrajectory", "JointTrajectory | Float32MultiArray"),
    ("backend_order", "tensorrt,onnxruntime,torch", "comma-separated backend order"),
    ("epsilon", "-1.0", "C3 epsilon (< 0 = the bundle's)"),
    ("target_false_alarm_rate", "-1.0", "false-alarm target (< 0 = the bundle's thresholds)"),
    ("relay", "false", "relay cmd_in -> cmd_out while the gate allows it"),
    ("relay_msg_type", "Twist", "Twist | JointTrajectory"),
    ("slow_scale", "0.5", "Twist scale on SLOW, in (0, 1]"),
    ("slow_action_dims", "", "comma-separated chunk dims SLOW scales, e.g. 0,1,2 (empty: unknown)"),
    ("cmd_in", "cmd_in", "policy command topic (relay input)"),
    ("cmd_out", "cmd_out", "gated command topic (relay output)"),
    ("shadow", "false", "report only, never block"),
    ("use_sim_time", "false", "use /clock (bag replay, simulation)"),
    ("hydra_overrides", "", "comma-separated hydra overrides, e.g. seed=1"),
    ("autostart", "true", "configure + activate without a lifecycle manager"),
    ("namespace", "", "node namespace"),
    ("name", "world_monitor", "node name (the lock topic is <name>/lock)"),
]


def _bool(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _node(context, *args, **kwargs):
    v = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGS}
    params = {
        "bundle_path": v["bundle"],
        "epsilon": float(v["epsilon"]),
        "target_false_alarm_rate": float(v["target_false_alarm_rate"]),
        "image_transport": v["image_transport"],
        "action_msg_type": v["action_msg_type"],
        "relay_enabled": _bool(v["relay"]),
        "relay_msg_type": v["relay_msg_type"],
        "slow_scale": float(v["slow_scale"]),
        "shadow_mode": _bool(v["shadow"]),
        "use_sim_time": _bool(v["use_sim_time"]),
        "autostart": _bool(v["autostart"]),
    }
    for key, arg in (("backend_order", "backend_order"), ("hydra_overrides", "hydra_overrides")):
        if _list(v[arg]):
            params[key] = _list(v[arg])
    if _list(v["slow_action_dims"]):
        params["slow_action_dims"] = [int(d) for d in _list(v["slow_action_dims"])]
    return [
        LifecycleNode(
            package="world_monitor",
            executable="world_monitor_node",
            name=v["name"],
            namespace=v["namespace"],
            output="screen",
            parameters=[params],
            remappings=[
                ("image", v["image"]),
                ("action_chunk", v["actions"]),
                ("cmd_in", v["cmd_in"]),
                ("cmd_out", v["cmd_out"]),
            ],
        )
    ]


def generate_launch_description():
    args = [DeclareLaunchArgument(n, default_value=d, description=h) for n, d, h in ARGS]
    return LaunchDescription([*args, OpaqueFunction(function=_node)])
