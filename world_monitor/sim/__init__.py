"""world_monitor.sim: built-in MuJoCo tabletop simulator (CPU rendering).

``MUJOCO_GL`` must be chosen before mujoco is first imported; we default it to ``egl`` (works
headless with Mesa llvmpipe, no X server) but keep any value the user already set, e.g.
``osmesa`` on machines without EGL.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from world_monitor.sim.config import ACTION_DIM, MAX_EE_DELTA, SimConfig
from world_monitor.sim.env import Outcome, TabletopEnv
from world_monitor.sim.policies import (
    BadPolicy,
    Policy,
    RandomPolicy,
    ScriptedPushPolicy,
    list_policies,
    make_policy,
)
from world_monitor.sim.preview import save_preview
from world_monitor.sim.scenarios import (
    describe_scenarios,
    get_scenario,
    list_scenarios,
)
from world_monitor.sim.simulate import simulate_episode

__all__ = [
    "ACTION_DIM",
    "MAX_EE_DELTA",
    "BadPolicy",
    "Outcome",
    "Policy",
    "RandomPolicy",
    "ScriptedPushPolicy",
    "SimConfig",
    "TabletopEnv",
    "describe_scenarios",
    "get_scenario",
    "list_policies",
    "list_scenarios",
    "make_policy",
    "save_preview",
    "simulate_episode",
]
