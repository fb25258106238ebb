"""A minimal stand-in for rclpy and the message packages, to test world_monitor_node's *logic*
(lifecycle callbacks, worker thread, relay, lock ordering) on machines without ROS 2.

It checks our code paths, not the rclpy API: tests/ros/test_node.py covers the real thing
on a ROS 2 install. Installed only inside a test via ``install(monkeypatch)``, which puts the
modules into ``sys.modules`` for that test and restores everything afterwards.
"""

from __future__ import annotations

import enum
import sys
import types
from typing import Any

MODULES = [
    "rclpy",
    "rclpy.lifecycle",
    "rclpy.qos",
    "rclpy.executors",
    "rclpy.parameter",
    "rcl_interfaces",
    "rcl_interfaces.msg",
    "builtin_interfaces",
    "builtin_interfaces.msg",
    "std_msgs",
    "std_msgs.msg",
    "sensor_msgs",
    "sensor_msgs.msg",
    "geometry_msgs",
    "geometry_msgs.msg",
    "trajectory_msgs",
    "trajectory_msgs.msg",
    "diagnostic_msgs",
    "diagnostic_msgs.msg",
]


class Msg:
    _defaults: dict[str, Any] = {}

    def __init__(self, **kw: Any) -> None:
        for k, v in self._defaults.items():
            setattr(self, k, v() if callable(v) else v)
        for k, v in kw.items():
            setattr(self, k, v)


def msgcls(_clsname: str, **defaults: Any) -> type:
    return type(_clsname, (Msg,), {"_defaults": defaults})


Time = msgcls("Time", sec=0, nanosec=0)
Header = msgcls("Header", stamp=Time, frame_id="")
Vector3 = msgcls("Vector3", x=0.0, y=0.0, z=0.0)
MESSAGES = {
    "builtin_interfaces.msg": {"Time": Time},
    "std_msgs.msg": {
        "Header": Header,
        "Bool": msgcls("Bool", data=False),
        "Float32": msgcls("Float32", data=0.0),
        "Float32MultiArray": msgcls("Float32MultiArray"),
    },
    "sensor_msgs.msg": {
        "Image": msgcls(
            "Image", header=Header, height=0, width=0, encoding="", is_bigendian=0, step=0, data=b""
        ),
        "CompressedImage": msgcls("CompressedImage", header=Header, format="", data=b""),
    },
    "geometry_msgs.msg": {
        "Vector3": Vector3,
        "Twist": msgcls("Twist", linear=Vector3, angular=Vector3),
    },
    "trajectory_msgs.msg": {
        "JointTrajectory": msgcls("JointTrajectory", header=Header, joint_names=list, points=list),
        "JointTrajectoryPoint": msgcls("JointTrajectoryPoint", positions=list),
    },
    "diagnostic_msgs.msg": {
        "DiagnosticArray": msgcls("DiagnosticArray", header=Header, status=list),
        "DiagnosticStatus": msgcls(
            "DiagnosticStatus", level=b"\x00", name="", message="", hardware_id="", values=list
        ),
        "KeyValue": msgcls("KeyValue", key="", value=""),
    },
}


class ParameterType:
    PARAMETER_BOOL = 1
    PARAMETER_INTEGER = 2
    PARAMETER_DOUBLE = 3
    PARAMETER_STRING = 4
    PARAMETER_INTEGER_ARRAY = 7
    PARAMETER_STRING_ARRAY = 9


class _PType(enum.Enum):
    INTEGER_ARRAY = 7
    STRING_ARRAY = 9


class Parameter:
    Type = _PType

    def __init__(self, name: str, type_: Any = None, value: Any = None) -> None:
        self.name, self.value = name, value


class ExternalShutdownException(Exception):
    pass


class TransitionCallbackReturn(enum.Enum):
    SUCCESS = 0
    FAILURE = 1
    ERROR = 2


class Pub:
    def __init__(self, msgtype: Any, topic: str) -> None:
        self.msgtype, self.topic, self.sent = msgtype, topic, []

    def publish(self, msg: Any) -> None:
        self.sent.append(msg)


class Timer:
    def __init__(self, period: float, cb: Any) -> None:
        self.period, self.cb = period, cb


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> Any:
        return types.SimpleNamespace(nanoseconds=round(self.t * 1e9))


class Logger:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, m: str) -> None:
        self.lines.append(f"INFO {m}")

    def error(self, m: str) -> None:
        self.lines.append(f"ERROR {m}")


class LifecycleNode:
    """Just enough of rclpy.lifecycle.LifecycleNode: parameters, pubs/subs/timers, transitions."""

    def __init__(self, name: str, parameter_overrides: Any = (), **kw: Any) -> None:
        self._params: dict[str, Any] = {}
        self._over = {p.name: p.value for p in parameter_overrides}
        self.pubs: dict[str, Pub] = {}
        self.subs: dict[str, Any] = {}
        self.all_timers: list[Timer] = []
        self.clock = Clock()
        self.logger = Logger()
        self.state = "unconfigured"

    def declare_parameter(self, name: str, value: Any, descriptor: Any) -> None:
        if isinstance(value, _PType):
            value = None
        self._params[name] = self._over.get(name, value)

    def get_parameter(self, name: str) -> Any:
        value = self._params[name]
        if value is None:
            raise RuntimeError("uninitialized")
        return types.SimpleNamespace(value=value)

    def get_logger(self) -> Logger:
        return self.logger

    def get_clock(self) -> Clock:
        return self.clock

    def create_publisher(self, msgtype: Any, topic: str, qos: Any) -> Pub:
        self.pubs[topic] = Pub(msgtype, topic)
        return self.pubs[topic]

    def create_subscription(self, msgtype: Any, topic: str, cb: Any, qos: Any) -> str:
        self.subs[topic] = (msgtype, cb, qos)
        return topic

    def create_timer(self, period: float, cb: Any) -> Timer:
        t = Timer(period, cb)
        self.all_timers.append(t)
        return t

    def destroy_publisher(self, pub: Any) -> None:
        pass

    def destroy_subscription(self, sub: Any) -> None:
        self.subs.pop(sub, None)

    def destroy_timer(self, t: Timer) -> None:
        if t in self.all_timers:
            self.all_timers.remove(t)

    def trigger_configure(self) -> Any:
        r = self.on_configure(None)
        if r is TransitionCallbackReturn.SUCCESS:
            self.state = "inactive"
        return r

    def trigger_activate(self) -> Any:
        r = self.on_activate(None)
        self.state = "active"
        return r

    def trigger_deactivate(self) -> Any:
        r = self.on_deactivate(None)
        self.state = "inactive"
        return r

    def on_activate(self, state: Any) -> Any:
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: Any) -> Any:
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        pass


def install(monkeypatch: Any) -> None:
    """Put the stand-ins into sys.modules for one test (monkeypatch restores them)."""
    mods: dict[str, types.ModuleType] = {}
    for name in MODULES:
        mods[name] = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, mods[name])
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(mods[parent], child, mods[name])
    for module, classes in MESSAGES.items():
        for cls_name, cls in classes.items():
            setattr(mods[module], cls_name, cls)
    mods["rcl_interfaces.msg"].ParameterType = ParameterType
    mods["rcl_interfaces.msg"].ParameterDescriptor = msgcls(
        "ParameterDescriptor", type=0, description=""
    )
    mods["rclpy.parameter"].Parameter = Parameter
    mods["rclpy.executors"].ExternalShutdownException = ExternalShutdownException
    mods["rclpy.qos"].QoSProfile = lambda depth: ("reliable", depth)
    mods["rclpy.qos"].qos_profile_sensor_data = "sensor_data"
    mods["rclpy.lifecycle"].LifecycleNode = LifecycleNode
    mods["rclpy.lifecycle"].LifecycleState = object
    mods["rclpy.lifecycle"].TransitionCallbackReturn = TransitionCallbackReturn
    # diagnostic_updater stays unimportable: the node falls back to its own publisher
    monkeypatch.setitem(sys.modules, "diagnostic_updater", None)
    monkeypatch.delitem(sys.modules, "world_monitor.ros.node", raising=False)
