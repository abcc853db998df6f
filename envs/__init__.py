"""Gymnasium environments: a MuJoCo Franka Panda with Cartesian delta actions at 15 Hz.

Importing this package registers `FrankaReach-v0`, `FrankaReachPrecise-v0` (2 cm), `FrankaPush-v0` and
`FrankaPickPlace-v0`.
"""

import os

from gymnasium.envs.registration import register, registry

if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"  # headless machines: render offscreen (set before mujoco is imported)

#: id -> (entry point, step limit, default kwargs)
ENV_IDS = {
    "FrankaReach-v0": ("envs.tasks:FrankaReachEnv", 100, {}),
    "FrankaReachPrecise-v0": ("envs.tasks:FrankaReachEnv", 100, {"success_threshold": 0.02}),
    "FrankaPush-v0": ("envs.tasks:FrankaPushEnv", 150, {}),
    "FrankaPickPlace-v0": ("envs.tasks:FrankaPickPlaceEnv", 200, {}),
}

for _env_id, (_entry_point, _steps, _kwargs) in ENV_IDS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point=_entry_point, max_episode_steps=_steps, kwargs=_kwargs)
