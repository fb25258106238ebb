"""Node parameters: defaults match config/ros/default.yaml, validation names every problem."""

from __future__ import annotations

from omegaconf import OmegaConf

from world_monitor.config import load_config
from world_monitor.ros.params import PARAMETERS, validate_parameters


def _defaults(**changes):
    p = {name: default for name, (default, _, _) in PARAMETERS.items()}
    p["bundle_path"] = "/some/bundle"
    p.update(changes)
    return p


def test_yaml_defaults_match_node_defaults():
    ros = OmegaConf.to_container(load_config().ros, resolve=True)
    assert set(PARAMETERS) - set(ros) == {"hydra_overrides", "autostart"}
    for key, value in ros.items():
        assert PARAMETERS[key][0] == value, key
        assert PARAMETERS[key][2], f"{key} has no description"


def test_hydra_overrides_reach_the_ros_group():
    assert load_config(["ros.decision_rate_hz=5.0"]).ros.decision_rate_hz == 5.0


def test_defaults_with_a_bundle_are_valid():
    assert validate_parameters(_defaults()) == []


def test_every_problem_is_named():
    errors = validate_parameters(
        _defaults(
            bundle_path="",
            backend_order=[],
            image_timeout_s=0.0,
            heartbeat_rate_hz=-1.0,
            decision_rate_hz=float("nan"),
            reopen_after=0,
            slow_scale=1.5,
            slow_action_dims=[0, -1],
            epsilon=2.0,
            target_false_alarm_rate=1.0,
            image_transport="theora",
            action_msg_type="Twist",
            action_field="torque",
            relay_msg_type="Pose",
            hydra_overrides=["oops"],
        )
    )
    text = "\n".join(errors)
    for name in (
        "bundle_path",
        "backend_order",
        "image_timeout_s",
        "heartbeat_rate_hz",
        "decision_rate_hz",
        "reopen_after",
        "slow_scale",
        "slow_action_dims",
        "epsilon",
        "target_false_alarm_rate",
        "image_transport",
        "action_msg_type",
        "action_field",
        "relay_msg_type",
        "hydra_overrides",
    ):
        assert name in text, name
    assert len(errors) == 15


def test_repeated_slow_action_dims_are_named():
    errors = validate_parameters(_defaults(slow_action_dims=[0, 1, 0]))
    assert len(errors) == 1 and "repeated" in errors[0]
