"""Action adapters between the model's action space and an env's or robot's.

Models trained on V-JEPA 2-AC delta poses predict the gripper as a change; our envs and robots take an
absolute gripper target (0 open .. 1 closed).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common.droid import GRIPPER_DIM


def delta_gripper_to_target(model_actions: np.ndarray, gripper: float) -> np.ndarray:
    """Delta-pose actions (H, 7) with the gripper as a change -> env/robot actions with an absolute gripper target."""
    out = np.asarray(model_actions, dtype=np.float32).copy()
    out[:, GRIPPER_DIM] = np.clip(gripper + np.cumsum(out[:, GRIPPER_DIM]), 0.0, 1.0)
    return out


def franka_delta_pose_adapter(action: np.ndarray, obs: Any) -> np.ndarray:
    """Delta-pose model actions (dgripper) -> our Franka env's actions (absolute gripper target)."""
    current = float(obs["state"][GRIPPER_DIM]) if isinstance(obs, dict) and "state" in obs else 0.0
    return delta_gripper_to_target(np.asarray(action)[None], current)[0]
