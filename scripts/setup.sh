#!/usr/bin/env bash
# One-shot set-up for a fresh machine: system libraries for offscreen rendering, a virtualenv in
# .venv, and world_monitor installed into it (editable, with the test and lerobot extras).
#
#   bash scripts/setup.sh            # then: .venv/bin/world-monitor --help
#
# Environment knobs:
#   PYTHON=python3.11          interpreter to build the venv with (3.10-3.12)
#   VENV=.venv                 where to create it
#   WM_SKIP_APT=1              never call apt-get (install the Mesa libraries yourself)
#   WM_SKIP_BROWSER=1          do not install Chromium (only the report's browser test needs it)
#   WM_ROS=jazzy|kilted|none   ROS 2 wheels to install into the venv (default jazzy): rclpy with
#                              Fast DDS and the message packages the node uses, from the package
#                              index (no apt, no source build). The ROS tests need them; `none`
#                              leaves a ROS-free install (the ROS tests then fail, by design).
# torch is pinned to 2.13.0. On a machine where pip would pick a CUDA build, install the CPU build
# first (e.g. PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu) or use the gpu extra.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-}
VENV=${VENV:-.venv}

have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }

# 1. Offscreen OpenGL for MuJoCo on a CPU (Mesa llvmpipe through EGL, OSMesa as fallback).
if ! { have_lib libEGL.so.1 && have_lib libOSMesa.so && have_lib libGL.so.1; }; then
  if [ "${WM_SKIP_APT:-0}" = 1 ]; then
    echo "setup: Mesa EGL/OSMesa libraries missing and WM_SKIP_APT=1; install libosmesa6 libegl1 libgl1 libegl-mesa0 libgles2" >&2
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Mesa libraries for offscreen rendering (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libosmesa6 libegl1 libgl1 libegl-mesa0 libgles2 >/dev/null
  else
    echo "setup: please install the Mesa libraries first: sudo apt-get install libosmesa6 libegl1 libgl1 libegl-mesa0 libgles2" >&2
    exit 1
  fi
fi

# 2. Headless Chromium + chromedriver for the report's browser test (tests/report); the test
#    skips without them unless WORLD_MONITOR_REQUIRE_BROWSER=1 (CI sets it).
if [ "${WM_SKIP_BROWSER:-0}" != 1 ] && ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }; then
  if [ "${WM_SKIP_APT:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing chromium + chromium-driver (apt-get) for the report's browser test"
    # not fatal: without a browser only the browser test is affected (it says why)
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
      || echo "setup: could not install chromium/chromium-driver; the report's browser test needs them" >&2
  else
    echo "setup: no chromium/chromedriver: the report's browser test will be skipped (sudo apt-get install chromium chromium-driver)" >&2
  fi
fi

# 3. A virtualenv with a supported Python.
if [ -z "$PYTHON" ]; then
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))'; then
      PYTHON=$cand; break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "setup: need Python 3.10-3.12" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first and alone, so nothing else can choose a different build.
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[test,lerobot,fleet]"

# 4. ROS 2 from wheels (rclpy + Fast DDS + messages): the node, `world-monitor play` and the
#    real-graph tests. Jazzy and Kilted cannot share a venv (the jazzy names pin ros-* packages).
ROS_MSGS="std-msgs sensor-msgs geometry-msgs trajectory-msgs diagnostic-msgs lifecycle-msgs rosgraph-msgs"
case "${WM_ROS:-jazzy}" in
  jazzy)  # the versions the tests were run with (rclpy 7.1.x, common_interfaces 5.3.x)
    pkgs="ros-jazzy-rclpy[fastrtps]>=7.1.6,<7.2 ros-jazzy-std-msgs>=5.3,<5.4 ros-jazzy-sensor-msgs>=5.3,<5.4"
    pkgs="$pkgs ros-jazzy-geometry-msgs>=5.3,<5.4 ros-jazzy-trajectory-msgs>=5.3,<5.4"
    pkgs="$pkgs ros-jazzy-diagnostic-msgs>=5.3,<5.4 ros-jazzy-lifecycle-msgs>=2.0,<2.1"
    pkgs="$pkgs ros-jazzy-rosgraph-msgs>=2.0,<2.1" ;;
  kilted)
    pkgs="ros-rclpy[fastrtps] ros-rmw-fastrtps-cpp"
    for m in $ROS_MSGS; do pkgs="$pkgs ros-$m"; done ;;
  none) pkgs="" ;;
  *) echo "setup: WM_ROS must be jazzy, kilted or none, got '${WM_ROS}'" >&2; exit 2 ;;
esac
if [ -n "$pkgs" ]; then
  echo "setup: installing ROS 2 ${WM_ROS:-jazzy} wheels (rclpy, Fast DDS, messages)"
  # shellcheck disable=SC2086
  set -f  # the version specifiers contain '<' and '>' but no globs: keep them literal
  "$VENV/bin/python" -m pip install -q $pkgs
  set +f
  # the wheels' .pth re-execs Python with LD_LIBRARY_PATH set; check it imports in a fresh one
  ROS_LOCALHOST_ONLY=1 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \
    "$VENV/bin/python" -c "import rclpy, rclpy.lifecycle, sensor_msgs.msg, diagnostic_msgs.msg, importlib.metadata as m; print('setup: rclpy', m.version('rclpy'), 'rmw', rclpy.get_rmw_implementation_identifier())"
fi
"$VENV/bin/python" -c "import world_monitor, torch; print('setup: world_monitor', world_monitor.__version__, 'torch', torch.__version__)"
