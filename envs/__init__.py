"""Gymnasium environments: a MuJoCo Franka Panda with Cartesian delta actions at 15 Hz, and Push-T.

Importing this package registers `FrankaReach-v0`, `FrankaReachPrecise-v0` (2 cm), `FrankaPush-v0` and
`FrankaPickPlace-v0`, and `PushT-v0` (gym-pusht with the goal-env protocol, envs/pusht.py; making it needs the
`pusht` extra).
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

#: Our other envs: not the Franka (their own actions and state), same registration.
OTHER_IDS = {
    "PushT-v0": ("envs.pusht:PushTEnv", 300, {}),  # gym-pusht's step limit
}

for _env_id, (_entry_point, _steps, _kwargs) in {**ENV_IDS, **OTHER_IDS}.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point=_entry_point, max_episode_steps=_steps, kwargs=_kwargs)


def is_franka(env_id: str) -> bool:
    """Whether `env_id` is one of our Franka tasks (DROID actions and state, `image_size`), by its entry point."""
    entry = registry[env_id].entry_point if env_id in registry else None
    return isinstance(entry, str) and entry.startswith("envs.tasks:")
