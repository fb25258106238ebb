"""Chunks carried in another JointTrajectoryPoint array (``effort`` for a torque-driven arm):
chosen by name on export, import, inspect, replay and the node (issue 15 item 6). Before, such a
bag was refused as ``ragged_chunk: 7 joint_names but 0 positions``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from world_monitor import cli
from world_monitor.data.bag import BagError, export_episode_bag, load_episode_bag
from world_monitor.data.bag.codec import ACTION_FIELDS, Rejected, decode_chunk, get_store
from world_monitor.data.bag.export import trajectory_msg
from world_monitor.data.inspect import inspect_path
from world_monitor.ros.convert import ConversionError, actions_from_msg


def _torque_chunk(store, field="effort", dim=7, horizon=3):
    chunk = np.arange(horizon * dim, dtype=np.float64).reshape(horizon, dim) / 10.0
    header = store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=5, nanosec=0), frame_id=""
    )
    names = [f"joint{i}" for i in range(dim)]
    return chunk, trajectory_msg(store, header, names, chunk, 10.0, field=field)


@pytest.mark.parametrize("field", ACTION_FIELDS)
def test_every_field_decodes_when_chosen(field) -> None:
    store = get_store("jazzy")
    chunk, msg = _torque_chunk(store, field)
    got = decode_chunk(msg, "trajectory_msgs/msg/JointTrajectory", 0, 7, field)
    np.testing.assert_array_equal(got.points, chunk.astype(np.float32))


def test_the_wrong_field_names_the_one_that_carries_values() -> None:
    store = get_store("jazzy")
    _, msg = _torque_chunk(store, "effort")
    with pytest.raises(Rejected) as err:
        decode_chunk(msg, "trajectory_msgs/msg/JointTrajectory", 0, None)
    assert err.value.reason == "ragged_chunk"
    assert "7 joint_names but 0 positions" in err.value.detail
    assert "the points carry 21 effort" not in err.value.detail  # per point, not per chunk
    assert "the points carry 7 effort: choose the field with --action-field" in err.value.detail


def test_the_node_converter_takes_the_field_too() -> None:
    store = get_store("jazzy")
    chunk, msg = _torque_chunk(store, "velocities")
    points, stamp = actions_from_msg(
        msg, "trajectory_msgs/msg/JointTrajectory", 1.0, 7, "velocities"
    )
    np.testing.assert_array_equal(points, chunk.astype(np.float32))
    assert stamp == 5.0
    with pytest.raises(ConversionError, match="0 positions"):
        actions_from_msg(msg, "trajectory_msgs/msg/JointTrajectory", 1.0, 7)


def test_an_unknown_field_is_refused_by_name(make_ep, tmp_path) -> None:
    with pytest.raises(ValueError, match="action field 'torque': expected one of positions"):
        export_episode_bag(make_ep(action_dim=7), tmp_path / "b", action_field="torque")


def test_effort_bag_round_trips_through_import_and_inspect(make_ep, tmp_path) -> None:
    ep = make_ep(3, action_dim=7)
    bag = export_episode_bag(ep, tmp_path / "torque", action_field="effort", horizon=4)
    with pytest.raises(BagError, match="0 positions; the points carry 7 effort"):
        load_episode_bag(bag)
    got = load_episode_bag(bag, action_field="effort").episode
    np.testing.assert_array_equal(got.actions, ep.actions)
    report = inspect_path(bag)
    assert report["rejected_total"] == ep.length  # read as positions: every chunk refused
    report = inspect_path(bag, action_field="effort")
    assert report["rejected_total"] == 0


def test_the_cli_takes_action_field_on_import_and_inspect(make_ep, tmp_path, capsys) -> None:
    ep = make_ep(4, action_dim=7)
    bag = export_episode_bag(ep, tmp_path / "torque", action_field="effort")
    rc = cli.main(
        [
            "import-bag",
            str(bag),
            "--out",
            str(tmp_path / "ds"),
            "--action-field",
            "effort",
            "--no-progress",
        ]
    )
    capsys.readouterr()
    summary = json.loads((tmp_path / "ds" / "import_summary.json").read_text())
    assert rc == 0 and summary["imported"] == 1 and summary["failed"] == 0
    assert cli.main(["inspect", str(bag), "--strict", "--action-field", "effort"]) == 0
    capsys.readouterr()
    assert cli.main(["inspect", str(bag), "--strict"]) == 2
    assert "ragged_chunk" in capsys.readouterr().err
