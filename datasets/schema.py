"""Key names and checks of the Droid-style episode file (DESIGN.md, contract 1).

One place defines what a valid episode looks like; the writer, the reader, the
validator and the clip dataset all use it, so they cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.errors import UserError

FORMAT_VERSION = 1
INDEX_NAME = "index.json"
EPISODE_SUFFIX = ".h5"

CARTESIAN = "observation/robot_state/cartesian_position"
GRIPPER = "observation/robot_state/gripper_position"
JOINTS = "observation/robot_state/joint_positions"
#: The env's own state vector (T, d) of an env without a robot pose (a flat gymnasium observation): episodes
#: either hold the robot pose (CARTESIAN + GRIPPER) or this, never arbitrary numbers in the pose keys.
ENV_STATE = "observation/env_state"
#: Simulator-only quantities (e.g. `observation/privileged/object_position`, (T, 3) metres) recorded for diagnostics
#: and ablations such as the cube probe; a real robot has none, so training and planning never read this group.
PRIVILEGED_GROUP = "observation/privileged"
IMAGE_GROUP = "observation/image"
#: The simulator state of an env that offers `recorded_state()` (common/goal_env.py), one dataset per entry
#: (`<SIM_STATE>/qpos`, `<SIM_STATE>/qvel`, each (T, ...)): what `goals=dataset` resets the env to. Checked like
#: the other per-step keys; training never reads it.
SIM_STATE = "observation/sim_state"
ACTION_GROUP = "action"


#: Fixed trailing shapes of the low-dimensional keys (after the time axis).
LOWDIM_SHAPES: dict[str, tuple[int, ...]] = {CARTESIAN: (6,), GRIPPER: (), JOINTS: (7,)}
REQUIRED_LOWDIM = (CARTESIAN, GRIPPER)  # unless the episode holds ENV_STATE instead
#: Well-known DROID action keys and their trailing shapes; other `action/<name>` keys are free-form.
KNOWN_ACTION_SHAPES: dict[str, tuple[int, ...]] = {
    "action/cartesian_velocity": (6,),
    "action/cartesian_position": (6,),
    "action/gripper_position": (),
    "action/gripper_velocity": (),
    "action/joint_position": (7,),
    "action/joint_velocity": (7,),
}
FILE_ATTRIBUTES = ("control_hz", "robot_type", "action_space", "cameras", "success", "task", "format_version")
REQUIRED_ATTRIBUTES = ("control_hz",)


class EpisodeError(UserError):
    """An episode file that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def image_key(camera: str) -> str:
    return f"{IMAGE_GROUP}/{camera}"


def action_key(name: str) -> str:
    return name if name.startswith(ACTION_GROUP + "/") else f"{ACTION_GROUP}/{name}"


def is_float_dtype(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.floating)


def check_shape(path: str | Path, key: str, shape: tuple[int, ...], expected_tail: tuple[int, ...]) -> None:
    """Raise EpisodeError unless `shape` is (T, *expected_tail)."""
    if len(shape) != 1 + len(expected_tail) or tuple(shape[1:]) != tuple(expected_tail):
        expected = "(T" + "".join(f", {d}" for d in expected_tail) + ")"
        raise EpisodeError(path, f"key '{key}' has shape {tuple(shape)}, expected {expected}")
