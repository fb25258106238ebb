"""Non-negotiable: the core never imports rclpy; only the ROS adapter's node and player may."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import world_monitor

ALLOWED = {"world_monitor.ros.node", "world_monitor.ros.play"}


def test_no_module_but_the_node_imports_rclpy() -> None:
    names = [
        m.name
        for m in pkgutil.walk_packages(world_monitor.__path__, "world_monitor.")
        if m.name not in ALLOWED
    ]
    assert len(names) > 40
    # a fresh interpreter, so modules imported by other tests cannot hide an import
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "print('rclpy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_node_module_is_the_only_rclpy_importer() -> None:
    import pathlib

    root = pathlib.Path(world_monitor.__file__).parent
    importers = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if "import rclpy" in p.read_text() or "from rclpy" in p.read_text()
    )
    assert importers == ["ros/node.py", "ros/play.py"]
    assert importlib.util.find_spec("world_monitor.ros.node") is not None
