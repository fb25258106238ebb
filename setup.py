"""world_monitor: runtime safety monitor for robot policies (ament_python + pip installable).

The same setup.py serves `colcon build` on a ROS 2 install (data_files place launch/ and config/
in share/world_monitor) and a plain `pip install -e .` on a machine without ROS. rclpy and the
message packages are ROS exec_depends (package.xml), never pip requirements.
"""

from __future__ import annotations

import re
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "world_monitor"
# resolve(): `colcon build --symlink-install` runs a *symlink* to this file from build/world_monitor,
# where README.md is not mirrored; the real directory is the source package.
HERE = Path(__file__).resolve().parent
# one version, kept in world_monitor/__init__.py (package.xml must match: tests/test_packaging.py)
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / PACKAGE / "__init__.py").read_text(), re.M
).group(1)


def _tree(src: str) -> list[tuple[str, list[str]]]:
    """data_files entries that copy the folder `src` into share/world_monitor/src, keeping its layout."""
    entries: dict[str, list[str]] = {}
    # paths stay relative to the package root (colcon and wheels need relative data_files), but
    # the glob is anchored at HERE so it does not depend on the current directory.
    for path in sorted(glob(f"{src}/**/*", root_dir=HERE, recursive=True)):
        if (HERE / path).is_file():
            dest = str(Path("share") / PACKAGE / Path(path).parent)
            entries.setdefault(dest, []).append(path)
    return sorted(entries.items())


# torch stays the 2.13.0 CPU build on CPU machines: every other requirement admits it, so pip
# never pulls a CUDA build as a side effect.
CORE = [
    "numpy>=1.26,<3",
    "torch==2.13.0",
    "diffusers>=0.42,<0.43",
    "hydra-core>=1.3.2,<1.4",
    "omegaconf>=2.3,<2.4",
    "safetensors>=0.6,<0.9",
    "rosbags>=0.11.9,<0.12",
    "mcap>=1.2,<2",  # chunk/summary CRCs on read and write (data/bag/integrity.py)
    "onnx>=1.19,<1.24",
    "onnxruntime>=1.22,<1.32",
    "onnxscript>=0.5,<0.8",
    "tqdm>=4.66,<5",
    "rich>=13,<16",
    "matplotlib>=3.8,<3.12",
    "pillow>=10,<14",
    "scipy>=1.12,<1.18",
    "scikit-learn>=1.4,<1.10",
    "mujoco>=3.3,<4.1",
]
EXTRAS = {
    # import-lerobot reads LeRobot's parquet + mp4 layout with the libraries lerobot uses
    # (the lerobot package itself pins torch<2.11: world_monitor/data/lerobot.py)
    "lerobot": ["pyarrow>=18,<27", "av>=14,<20"],
    "gpu": ["onnxruntime-gpu>=1.22,<1.32", "tensorrt>=10,<12"],
    # replay / evaluate-policy --ray: bags and episodes as Ray tasks (world_monitor/fleet.py)
    "fleet": ["ray==2.60.0"],
    # selenium drives the system Chromium for the report's browser test (scripts/setup.sh
    # installs chromium + chromium-driver with apt); it never downloads a browser itself.
    "test": [
        "pytest>=8,<10",
        "ruff>=0.6",
        "setuptools>=64",
        "wheel",
        "selenium>=4.11,<5",
        "hypothesis>=6.100,<7",
        "colcon-common-extensions>=0.3,<0.4",
    ],
}

setup(
    name=PACKAGE,
    version=VERSION,
    description="Runtime safety monitor for robot policies: action-conditioned latent world model "
    "with C3 calibrated uncertainty, a fail-closed gate, ROS 2 node and rosbag2 replay.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(exclude=["tests", "tests.*", "benchmarks"]),
    include_package_data=True,
    package_data={PACKAGE: ["assets/**/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *_tree("launch"),
        *_tree("config"),
    ],
    install_requires=CORE,
    extras_require=EXTRAS,
    zip_safe=False,
    maintainer="world_monitor developers",
    maintainer_email="dev@world-monitor.local",
    entry_points={
        "console_scripts": [
            "world-monitor = world_monitor.cli:main",
            "world_monitor_node = world_monitor.ros.node:main",
        ],
    },
)
