"""The package is both pip-installable and laid out as an ament_python package for colcon.

colcon is not installable on the development machines, so these tests check what colcon relies
on: package.xml (format 3, ament_python, the ROS exec_depends), the ament index marker, and a
built wheel that installs config/, launch/ and package.xml under share/world_monitor.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_package_xml_is_ament_python_format_3() -> None:
    tree = ET.parse(ROOT / "package.xml").getroot()
    assert tree.tag == "package" and tree.attrib["format"] == "3"
    assert tree.findtext("name") == "world_monitor"
    assert tree.find("export/build_type").text == "ament_python"
    deps = {e.text for e in tree.findall("exec_depend")}
    assert {
        "rclpy",
        "sensor_msgs",
        "std_msgs",
        "diagnostic_msgs",
        "trajectory_msgs",
        "geometry_msgs",
        "launch_ros",
    } <= deps
    import world_monitor

    assert tree.findtext("version") == world_monitor.__version__


def test_ament_resource_marker_exists() -> None:
    assert (ROOT / "resource" / "world_monitor").is_file()


@pytest.mark.slow
def test_wheel_installs_share_tree(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("world_monitor-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    from world_monitor import __version__

    data = f"world_monitor-{__version__}.data/data/"
    assert f"{data}share/ament_index/resource_index/packages/world_monitor" in names
    assert f"{data}share/world_monitor/package.xml" in names
    assert f"{data}share/world_monitor/config/config.yaml" in names
    assert f"{data}share/world_monitor/config/sim/default.yaml" in names
    assert any(n.startswith(f"{data}share/world_monitor/launch/") for n in names)
    assert "world_monitor/cli.py" in names
    for f in ("manifest.json", "config.yaml", "weights.safetensors", "calibration.json"):
        assert f"world_monitor/assets/bundles/default/{f}" in names
    assert not any(n.startswith("tests/") for n in names)


def _fake_launch_testing(root: Path) -> dict[str, str]:
    """A distribution that registers a pytest11 plugin named ``launch_testing`` with the old
    ``path`` hook argument, as ROS 2's launch_testing does; returns the env that finds it."""
    (root / "fake_launch_testing_hooks.py").write_text(
        "def pytest_pycollect_makemodule(path, parent):\n    return None\n"
    )
    info = root / "fake_launch_testing-3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-launch-testing\nVersion: 3.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[pytest11]\nlaunch_testing = fake_launch_testing_hooks\n"
    )
    import os

    return dict(os.environ, PYTHONPATH=str(root))


def test_a_launch_testing_plugin_does_not_break_collection(tmp_path: Path) -> None:
    """With launch_testing installed, pytest 9 failed at start-up (PluginValidationError on
    its ``pytest_pycollect_makemodule(path, ...)`` hook); pytest.ini blocks the plugin."""
    env = _fake_launch_testing(tmp_path)
    probe = [sys.executable, "-m", "pytest", "--collect-only", "-q", "tests/ros/test_params.py"]
    empty_ini = tmp_path / "pytest.ini"
    empty_ini.write_text("[pytest]\n")  # the same run without this project's addopts
    bare = subprocess.run(
        [*probe, "-c", str(empty_ini), "--rootdir", str(ROOT)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bare.returncode != 0 and "PluginValidationError" in bare.stdout + bare.stderr
    ours = subprocess.run(probe, cwd=ROOT, env=env, capture_output=True, text=True)
    assert ours.returncode == 0, ours.stdout + ours.stderr


def test_one_version_everywhere() -> None:
    """`--version`, the wheel, package.xml and README's status line say the same release (they
    said 0.1.0 / 0.1.0 / 0.1.0 / v0.6)."""
    import re

    from world_monitor import __version__

    xml = (ROOT / "package.xml").read_text()
    assert re.search(r"<version>([^<]+)</version>", xml).group(1) == __version__
    major_minor = ".".join(__version__.split(".")[:2])
    assert f"**Status (v{major_minor}).**" in (ROOT / "README.md").read_text()
