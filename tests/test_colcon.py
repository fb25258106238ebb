"""`colcon build` of this ament_python package, for real, and the installed node on it.

Why: a package that installs with pip can still be broken for colcon, whose layout is different
(``install/world_monitor/{lib/python3.X/site-packages,share/world_monitor,lib/world_monitor}``)
and whose ``--symlink-install`` runs ``setup.py develop`` through a *symlink* in ``build/``. Both
broke once (issue 13, defects 2 and 3): the config tree was looked for only in the source tree
and ``sys.prefix``, and setup.py resolved README.md next to the symlink.

colcon comes from the ``test`` extra (``colcon-common-extensions``). It is run with this
interpreter (``colcon_core.command.main``), so setup.py runs with it too and the generated
``lib/world_monitor/world_monitor_node`` script's shebang is this interpreter, which has rclpy and
onnxruntime: the node is started the way ``ros2 run`` starts it, through that script.

Only what the build needs is copied into a temporary workspace (no .venv, runs, datasets). The
installed package is checked in a fresh process whose environment is colcon's
``install/setup.sh`` (or only PYTHONPATH), started outside the source tree, and the test asserts
that ``world_monitor`` itself was imported from the install, so the source checkout (which this
venv also has as an editable install) cannot make it pass by accident.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PKG = "world_monitor"
#: what `colcon build` reads: package.xml, setup.py/.cfg, the marker, the package, data_files
BUILD_INPUTS = (
    "package.xml",
    "setup.py",
    "setup.cfg",
    "README.md",
    "resource",
    "world_monitor",
    "config",
    "launch",
)
#: variables that would let a developer's shell (a sourced overlay, an override) decide the result
_FOREIGN = (
    "PYTHONPATH",
    "AMENT_PREFIX_PATH",
    "COLCON_PREFIX_PATH",
    "CMAKE_PREFIX_PATH",
    "COLCON_DEFAULTS_FILE",
    "COLCON_HOME",
    "WORLD_MONITOR_CONFIG_DIR",
    "PYTHONSAFEPATH",
    "PYTHONSTARTUP",
)
COLCON = [
    sys.executable,
    "-c",
    "import sys; from colcon_core.command import main; sys.exit(main())",
]
NODE_START_TIMEOUT_S = 90.0  # ~20 s measured on 2 idle cores (ONNX export + warm-up); load x4


def _clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
    env["COLCON_HOME"] = str(tmp / "colcon_home")  # no user defaults.yaml (e.g. symlink-install)
    return env


def _ros_env(env: dict[str, str]) -> dict[str, str]:
    """DDS on loopback only, on this test session's domain (set here, not by the shell)."""
    env = dict(env)
    env["ROS_LOCALHOST_ONLY"] = "1"
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_STATIC_PEERS", None)
    env["ROS_DOMAIN_ID"] = os.environ.get("ROS_DOMAIN_ID") or str(1 + os.getpid() % 100)
    return env


def _workspace(tmp: Path) -> Path:
    """A colcon workspace ``tmp/src/world_monitor`` holding a copy of the build inputs."""
    src = tmp / "src" / PKG
    src.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    return tmp


def _colcon_build(ws: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    try:
        import colcon_core  # noqa: F401
    except ImportError:  # a hard failure: colcon is part of the test extra
        pytest.fail("colcon is not installed: pip install -e '.[test]' (colcon-common-extensions)")
    t0 = time.monotonic()
    done = subprocess.run(
        [*COLCON, "build", "--base-paths", "src", *extra],
        cwd=ws,
        env=_clean_env(ws),
        capture_output=True,
        text=True,
        timeout=300,
    )
    done.elapsed = time.monotonic() - t0  # type: ignore[attr-defined]
    return done


def _build_log(ws: Path, done: subprocess.CompletedProcess[str]) -> str:
    logs = sorted((ws / "log").glob(f"latest_build/{PKG}/stdout_stderr.log"))
    tail = logs[0].read_text(errors="replace")[-4000:] if logs else ""
    return f"rc={done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{tail}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``colcon build`` (copying install) of a copy of the package; returns the workspace."""
    ws = _workspace(tmp_path_factory.mktemp("colcon_ws"))
    done = _colcon_build(ws)
    assert done.returncode == 0, _build_log(ws, done)
    print(f"colcon build: {done.elapsed:.1f} s")  # type: ignore[attr-defined]
    return ws


_PROBE = (
    "import json, sys, world_monitor, world_monitor.config as c\n"
    "print(json.dumps({'package': world_monitor.__file__, 'config_module': c.__file__,"
    " 'config_dir': str(c.config_dir()), 'sys_path': sys.path}))\n"
)


def _probe(ws: Path, run_dir: Path, *, setup_sh: bool) -> dict:
    """Import world_monitor in a fresh process with the install's environment, outside any source
    tree: through ``. install/setup.sh`` (what users do), or with only PYTHONPATH set."""
    run_dir.mkdir(exist_ok=True)
    env = _clean_env(ws)
    if setup_sh:
        cmd = [
            "sh",
            "-c",
            f'. "{ws}/install/setup.sh" && exec "$0" -c "$1"',
            sys.executable,
            _PROBE,
        ]
    else:
        site = next((ws / "install" / PKG / "lib").glob("python3*/site-packages"))
        env["PYTHONPATH"] = str(site)
        cmd = [sys.executable, "-c", _PROBE]
    done = subprocess.run(cmd, cwd=run_dir, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("setup_sh", [True, False], ids=["install_setup_sh", "pythonpath_only"])
def test_colcon_install_finds_its_own_config_tree(
    built: Path, tmp_path: Path, setup_sh: bool
) -> None:
    """Defect 2: after `colcon build` the config tree is install/world_monitor/share/..., found
    through the ament index (setup.sh sets AMENT_PREFIX_PATH) or, with only PYTHONPATH, from the
    prefix the package is installed in."""
    install = (built / "install" / PKG).resolve()
    share_config = install / "share" / PKG / "config"
    assert (share_config / "config.yaml").is_file(), "setup.py data_files did not install config/"
    got = _probe(built, tmp_path / "run", setup_sh=setup_sh)
    package = Path(got["package"]).resolve()
    assert package.is_relative_to(install / "lib"), f"imported from outside the install: {got}"
    assert Path(got["config_module"]).resolve().is_relative_to(install / "lib"), got
    assert Path(got["config_dir"]).resolve() == share_config, got


def test_colcon_symlink_install_builds_and_points_at_the_sources(tmp_path: Path) -> None:
    """Defect 3: `colcon build --symlink-install` runs setup.py through build/world_monitor/
    setup.py (a symlink), where README.md is not mirrored. With it working, the package and the
    config tree are the sources themselves (edits take effect without a rebuild)."""
    ws = _workspace(tmp_path / "ws")
    done = _colcon_build(ws, "--symlink-install")
    assert done.returncode == 0, _build_log(ws, done)
    print(f"colcon build --symlink-install: {done.elapsed:.1f} s")  # type: ignore[attr-defined]
    src = (ws / "src" / PKG).resolve()
    installed_yaml = ws / "install" / PKG / "share" / PKG / "config" / "config.yaml"
    assert installed_yaml.is_symlink(), "symlink_data did not link the config tree"
    assert installed_yaml.resolve() == src / "config" / "config.yaml"
    got = _probe(ws, tmp_path / "run", setup_sh=True)
    assert Path(got["package"]).resolve() == src / PKG / "__init__.py", got
    assert Path(got["config_dir"]).resolve() in (
        src / "config",  # through the resolved package path
        (ws / "install" / PKG / "share" / PKG / "config").resolve(),  # the ament share dir
    ), got


def test_colcon_installed_node_starts_on_the_shipped_bundle(built: Path, tmp_path: Path) -> None:
    """The node as `ros2 run world_monitor world_monitor_node` starts it after `colcon build`:
    the generated script in lib/world_monitor, colcon's environment, the bundle shipped inside
    the installed package, onnxruntime. It must configure (find its config tree and bundle), then
    stop cleanly on SIGINT. Real rclpy, real DDS on loopback."""
    install = built / "install" / PKG
    script = install / "lib" / PKG / "world_monitor_node"
    assert script.is_file(), "setup.cfg install_scripts did not put the node in lib/world_monitor"
    site = next((install / "lib").glob("python3*/site-packages"))
    bundle = site / PKG / "assets" / "bundles" / "default"
    assert (bundle / "manifest.json").is_file(), "package_data did not install the shipped bundle"
    run_dir = tmp_path / "run"  # the node's cwd (its engine cache is in $ROS_HOME)
    run_dir.mkdir()
    log_path = tmp_path / "node.log"
    node_cmd = (
        f'. "{built}/install/setup.sh" && exec "{script}" --ros-args '
        f'-p bundle_path:="{bundle}" -p "backend_order:=[onnxruntime]"'
    )
    t0 = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            ["sh", "-c", node_cmd],
            cwd=run_dir,
            env=_ros_env(_clean_env(built)),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        configured = None
        while time.monotonic() - t0 < NODE_START_TIMEOUT_S and proc.poll() is None:
            text = log_path.read_text(errors="replace")
            configured = next((ln for ln in text.splitlines() if "configured:" in ln), None)
            if configured:
                break
            time.sleep(0.25)
        elapsed = time.monotonic() - t0
        text = log_path.read_text(errors="replace")
        assert configured, (
            f"no 'configured:' within {elapsed:.0f} s (rc={proc.poll()}):\n{text[-4000:]}"
        )
        assert "backend 'onnxruntime" in configured, configured
        print(f"colcon-installed node configured in {elapsed:.1f} s")
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        text = log_path.read_text(errors="replace")
        assert rc == 0, f"rc={rc} after SIGINT:\n{text[-4000:]}"
        assert "Traceback" not in text, text[-4000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
