"""launch/monitor.launch.py, checked without `launch` (no wheels for launch/launch_ros).

The file is parsed with ``ast``: its tables (``ARGS``, ``PARAMS_FILE_ONLY``, ``REMAPS``) are read
as literals, the node action and the launch description are checked structurally, and its pure
helpers (argument text -> typed node parameters, the node-exit handler) are executed from the
file's own source with its ``launch`` imports left out. What this cannot check is the `launch` API
itself; the calls used (``LifecycleNode(..., on_exit=callable)`` forwarded through launch_ros
``Node`` to ``launch.actions.ExecuteLocal``'s ``on_exit``, ``launch.actions.Shutdown(reason=)``,
``LaunchContext.is_shutdown``, ``ProcessExited.returncode``/``process_name``) were read from the
launch and launch_ros sources (Humble/Jazzy), and ``ros2 launch`` itself needs a full ROS install.

The point: a node parameter added to world_monitor/ros/params.py must be reachable from the launch
file (a launch argument, or listed in ``PARAMS_FILE_ONLY`` with a reason: then ``params_file:=``),
and every launch argument must map to a declared node parameter or be a documented special.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from world_monitor.ros.params import PARAMETERS, validate_parameters

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "monitor.launch.py"
#: ROS parameters every rclpy node declares itself (not in PARAMETERS)
ROS_BUILTIN = {"use_sim_time": "bool"}
#: launch arguments that are not node parameters, by kind
SPECIAL_KINDS = {"remap", "node", "params_file"}
#: keywords launch_ros LifecycleNode -> Node -> launch ExecuteProcess/ExecuteLocal accept (a
#: misspelt one is a TypeError only at `ros2 launch` time)
ACCEPTED_NODE_KWARGS = {
    "package",
    "executable",
    "name",
    "namespace",
    "exec_name",
    "parameters",
    "remappings",
    "ros_arguments",
    "arguments",
    "output",
    "emulate_tty",
    "on_exit",
    "respawn",
    "respawn_delay",
    "sigterm_timeout",
    "sigkill_timeout",
    "prefix",
    "cwd",
    "env",
    "additional_env",
    "condition",
}


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(encoding="utf-8"), filename=str(LAUNCH_FILE))


def _literal(tree: ast.Module, name: str):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{LAUNCH_FILE.name} defines no literal {name}")


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"{LAUNCH_FILE.name} defines no function {name}")


def _without_launch(tree: ast.Module, **extra) -> dict:
    """The launch file's module namespace with its imports left out (functions that use the
    `launch` API are defined but not callable; ``extra`` supplies stand-ins where a test needs
    one)."""
    body = [n for n in tree.body if not isinstance(n, ast.Import | ast.ImportFrom)]
    namespace: dict = {"__name__": "monitor_launch_under_test", **extra}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(LAUNCH_FILE), "exec"), namespace)
    return namespace


def _args(tree: ast.Module) -> list[tuple]:
    args = _literal(tree, "ARGS")
    assert all(len(a) == 5 for a in args), "ARGS rows: (argument, parameter, kind, default, help)"
    return args


def test_every_launch_argument_maps_to_a_declared_parameter(tree: ast.Module) -> None:
    args = _args(tree)
    names = [a[0] for a in args]
    assert len(names) == len(set(names)), f"duplicate launch arguments: {names}"
    remaps = _literal(tree, "REMAPS")
    for arg, param, kind, default, description in args:
        assert description.strip(), f"launch argument {arg} has no description"
        if param is None:
            assert kind in SPECIAL_KINDS, f"{arg}: not a parameter, so kind must be {SPECIAL_KINDS}"
            documented = {
                "remap": set(remaps),
                "node": {"name", "namespace"},
                "params_file": {"params_file"},
            }[kind]
            assert arg in documented, f"{arg}: kind {kind} but not a documented {kind} argument"
            continue
        declared = {name: spec[1] for name, spec in PARAMETERS.items()} | ROS_BUILTIN
        assert param in declared, f"launch argument {arg} sets {param!r}, which the node lacks"
        assert kind == declared[param], f"{arg}: kind {kind} but {param} is {declared[param]}"
        # "" = not set by the launch, so a params_file value is never hidden by a launch default
        assert default == "", f"{arg}: default {default!r}; node parameters default to ''"
    assert set(remaps) == {a for a, _, k, _, _ in args if k == "remap"}


def test_every_node_parameter_is_reachable(tree: ast.Module) -> None:
    args = _args(tree)
    by_argument = [p for _, p, _, _, _ in args if p is not None]
    assert len(by_argument) == len(set(by_argument)), f"a parameter set twice: {by_argument}"
    params_file_only = _literal(tree, "PARAMS_FILE_ONLY")
    assert "params_file" in {a[0] for a in args}, "PARAMS_FILE_ONLY needs a params_file argument"
    for name, reason in params_file_only.items():
        assert name in PARAMETERS, f"PARAMS_FILE_ONLY lists {name!r}, not a node parameter"
        assert reason.strip(), f"PARAMS_FILE_ONLY: {name} needs a reason"
        assert name not in by_argument, f"{name} is both a launch argument and params-file-only"
    unreachable = set(PARAMETERS) - set(by_argument) - set(params_file_only)
    assert not unreachable, (
        f"node parameters not reachable from {LAUNCH_FILE.name}: {sorted(unreachable)}; add a "
        "launch argument to ARGS or list them in PARAMS_FILE_ONLY with a reason"
    )


def test_camera_and_timing_parameters_are_launch_arguments(tree: ast.Module) -> None:
    """What a user sets per robot at launch: how the camera frame is prepared, how inputs are
    timed, the heartbeat the twist_mux timeout depends on, and the params_file escape hatch."""
    args = {a[0]: a[1] for a in _args(tree)}
    for param in ("image_resize", "image_crop_roi", "stamp_source", "heartbeat_rate_hz"):
        assert param in args.values(), f"{param} must be a launch argument"
    for param in ("image_timeout_s", "action_timeout_s", "bundle_path", "backend_order"):
        assert param in args.values(), f"{param} must be a launch argument"
    assert args["params_file"] is None and args["bundle"] == "bundle_path"


def _as_text(kind: str, value) -> str:
    if kind == "bool":
        return "true" if value else "false"
    if kind in ("string_array", "integer_array"):
        return ",".join(str(v) for v in value)
    return str(value)


def test_argument_texts_become_typed_valid_node_parameters(tree: ast.Module) -> None:
    ns = _without_launch(tree)
    args = _args(tree)
    # nothing given on the command line: the launch sets nothing (params_file / node defaults)
    assert ns["_parameters"]({a: d for a, _, _, d, _ in args}) == {}
    # every parameter given as text equal to the node default comes back as that typed value
    texts = {}
    for arg, param, kind, _, _ in args:
        if param in PARAMETERS:
            texts[arg] = _as_text(kind, PARAMETERS[param][0])
    texts["bundle"] = "/robot/bundles/default"
    texts["use_sim_time"] = "true"
    params = ns["_parameters"](texts)
    for arg, param, _, _, _ in (a for a in args if a[1] in PARAMETERS):
        default = PARAMETERS[param][0] if param != "bundle_path" else texts["bundle"]
        if default not in ("", []):  # "" / [] = not set by the launch
            assert params[param] == default and type(params[param]) is type(default), (
                f"{arg}:={texts[arg]!r} -> {params.get(param)!r}, want {default!r}"
            )
    assert params["use_sim_time"] is True
    assert "image_crop_roi" not in params and "slow_action_dims" not in params  # [] = unset
    assert "engine_file_path" not in params  # "" = unset
    merged = {n: spec[0] for n, spec in PARAMETERS.items()} | params
    assert validate_parameters(merged) == []


def test_list_and_bool_arguments(tree: ast.Module) -> None:
    parameters = _without_launch(tree)["_parameters"]
    p = parameters(
        {
            "image_crop_roi": "80,0,480,480",
            "backend_order": "onnxruntime, torch",
            "slow_action_dims": "[0, 1, 2]",
            "relay": "True",
            "shadow": "0",
            "image_resize": "letterbox",
            "stamp_source": "receive_time",
            "heartbeat_rate_hz": "20",
        }
    )
    assert p == {
        "image_crop_roi": [80, 0, 480, 480],
        "backend_order": ["onnxruntime", "torch"],
        "slow_action_dims": [0, 1, 2],
        "relay_enabled": True,
        "shadow_mode": False,
        "image_resize": "letterbox",
        "stamp_source": "receive_time",
        "heartbeat_rate_hz": 20.0,
    }
    assert type(p["heartbeat_rate_hz"]) is float
    merged = {n: spec[0] for n, spec in PARAMETERS.items()} | p | {"bundle_path": "/b"}
    assert validate_parameters(merged) == []
    for arg, text in (("relay", "maybe"), ("heartbeat_rate_hz", "fast"), ("image_crop_roi", "a,b")):
        with pytest.raises(ValueError, match=re.escape(f"launch argument {arg}:=")):
            parameters({arg: text})


def test_node_action_is_wired_to_the_installed_node(tree: ast.Module) -> None:
    node_fn = _function(tree, "_node")
    calls = [
        c
        for c in ast.walk(node_fn)
        if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == "LifecycleNode"
    ]
    assert len(calls) == 1, "exactly one LifecycleNode action"
    kwargs = {k.arg: k.value for k in calls[0].keywords}
    assert set(kwargs) <= ACCEPTED_NODE_KWARGS, set(kwargs) - ACCEPTED_NODE_KWARGS
    assert ast.literal_eval(kwargs["package"]) == "world_monitor"
    executable = ast.literal_eval(kwargs["executable"])
    setup_py = (ROOT / "setup.py").read_text(encoding="utf-8")
    assert re.search(rf'"{executable} = world_monitor\.ros\.node:main"', setup_py), executable
    assert {"name", "namespace", "parameters", "remappings"} <= set(kwargs)
    # the node's exit ends the launch (ros2 launch used to idle / exit 0 while the node died)
    assert isinstance(kwargs.get("on_exit"), ast.Name) and kwargs["on_exit"].id == "_on_node_exit"
    # the remapped topics are the node's own names
    node_src = (ROOT / "world_monitor" / "ros" / "node.py").read_text(encoding="utf-8")
    for topic in _literal(tree, "REMAPS").values():
        assert f'"{topic}"' in node_src, f"the node has no topic {topic!r} to remap"
    # parameters: the params file first, then the command line (later entries win in launch_ros)
    src = ast.get_source_segment(LAUNCH_FILE.read_text(encoding="utf-8"), node_fn)
    assert src.index('v["params_file"]') < src.index("_parameters(v)")


def test_every_argument_is_declared(tree: ast.Module) -> None:
    gen = _function(tree, "generate_launch_description")
    comps = [
        c
        for c in ast.walk(gen)
        if isinstance(c, ast.ListComp)
        and isinstance(c.elt, ast.Call)
        and getattr(c.elt.func, "id", None) == "DeclareLaunchArgument"
    ]
    assert comps and any(
        isinstance(g.iter, ast.Name) and g.iter.id == "ARGS" for g in comps[0].generators
    ), "generate_launch_description must declare one DeclareLaunchArgument per ARGS row"
    imports = {
        (n.module, a.name) for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names
    }
    assert ("launch.actions", "Shutdown") in imports


class _Shutdown:
    """Stand-in for launch.actions.Shutdown: records the reason it was built with."""

    def __init__(self, *, reason: str) -> None:
        self.reason = reason


def test_node_exit_shuts_the_launch_down(tree: ast.Module) -> None:
    on_exit = _without_launch(tree, Shutdown=_Shutdown)["_on_node_exit"]
    running = SimpleNamespace(is_shutdown=False)
    clean = SimpleNamespace(returncode=0, process_name="world_monitor_node-1")
    actions = on_exit(clean, running)
    assert len(actions) == 1 and isinstance(actions[0], _Shutdown)
    assert "world_monitor_node-1" in actions[0].reason
    # a failed node (e.g. ConfigError at configure with autostart) -> the launch fails (exit 1)
    failed = SimpleNamespace(returncode=1, process_name="world_monitor_node-1")
    with pytest.raises(RuntimeError, match="exited with code 1"):
        on_exit(failed, running)
    # Ctrl-C already shutting everything down: nothing to add, whatever the exit code
    assert on_exit(failed, SimpleNamespace(is_shutdown=True)) is None
