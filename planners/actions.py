"""Action adapters between the model's action space and an env's or robot's.

Models trained on V-JEPA 2-AC delta poses predict the gripper as a change; our envs and robots take an
absolute gripper target (0 open .. 1 closed). A model trained with a frameskip acts once per `skip` env steps:
`ActionRate` maps its action to those env actions and back, as the clip dataset did in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from common.droid import GRIPPER_DIM
from common.rotations import euler_xyz_to_matrix, matrix_to_euler_xyz, rotation_vector
from datasets.clip_actions import ClipActions
from datasets.windows import Windows


def delta_gripper_to_target(model_actions: np.ndarray, gripper: float) -> np.ndarray:
    """Delta-pose actions (H, 7) with the gripper as a change -> env/robot actions with an absolute gripper target."""
    out = np.asarray(model_actions, dtype=np.float32).copy()
    out[:, GRIPPER_DIM] = np.clip(gripper + np.cumsum(out[:, GRIPPER_DIM]), 0.0, 1.0)
    return out


def franka_delta_pose_adapter(action: np.ndarray, obs: Any) -> np.ndarray:
    """Delta-pose model actions (dgripper) -> our Franka env's actions (absolute gripper target)."""
    current = float(obs["state"][GRIPPER_DIM]) if isinstance(obs, dict) and "state" in obs else 0.0
    return delta_gripper_to_target(np.asarray(action)[None], current)[0]


def _rotation_matrix(vec: np.ndarray) -> np.ndarray:
    """Axis * angle (3,) -> rotation matrix (Rodrigues)."""
    angle = float(np.linalg.norm(vec))
    if angle < 1e-12:
        return np.eye(3)
    k = np.asarray(vec, dtype=np.float64) / angle
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * cross @ cross


@dataclass(frozen=True)
class ActionRate:
    """One model action <-> the `skip` env actions it stands for, as the clip dataset mapped them in training
    (datasets/clip_actions.py): recorded commands were summed over the frameskip (split back evenly), stacked
    (split into their steps) or the last one kept (repeated); a delta pose spans the skip steps (split into
    equal steps: xyz and gripper divided, the rotation's angle divided about its axis)."""

    skip: int = 1
    mode: str = "delta_pose"
    reduce: str = "sum"

    def __post_init__(self) -> None:
        ClipActions(self.mode, (), self.reduce)  # the same checks of mode and reduction
        if self.skip < 1:
            raise ValueError(f"frameskip must be >= 1, got {self.skip}")

    @classmethod
    def for_model(cls, data: dict[str, Any], control_hz: float) -> ActionRate:
        """The mapping of a checkpoint's `data` settings (fps or frameskip, action_mode, recorded_reduce) for an
        env stepping at `control_hz`: the frameskip its clips used on episodes recorded at that rate."""
        windows = Windows(history=1, future=0, fps=data.get("fps"), frameskip=data.get("frameskip"))
        return cls(windows.frameskip_for(control_hz), data.get("action_mode") or "delta_pose",
                   data.get("recorded_reduce") or "sum")

    def to_env(self, action: np.ndarray) -> np.ndarray:
        """A model action (A,) -> the (skip, A_env) env actions to execute in order."""
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        k = self.skip
        if k == 1:
            return action[None].astype(np.float32)
        if self.mode == "delta_pose":
            step = np.repeat(action[None] / k, k, axis=0)
            rotation = rotation_vector(euler_xyz_to_matrix(action[3:6]))
            step[:, 3:6] = matrix_to_euler_xyz(_rotation_matrix(rotation / k))
            return step.astype(np.float32)
        if self.reduce == "sum":
            return np.repeat(action[None] / k, k, axis=0).astype(np.float32)
        if self.reduce == "stack":
            return action.reshape(k, -1).astype(np.float32)
        return np.repeat(action[None], k, axis=0).astype(np.float32)  # last: an absolute target, held

    def to_model(self, env_actions: np.ndarray) -> np.ndarray:
        """The (skip, A_env) env actions of one model step -> the model action, as the clip dataset computes it."""
        env_actions = np.asarray(env_actions, dtype=np.float64).reshape(self.skip, -1)
        if self.mode == "delta_pose":
            rotation = np.eye(3)
            for euler in env_actions[:, 3:6]:
                rotation = euler_xyz_to_matrix(euler) @ rotation  # each step applied as R(d) R
            return np.concatenate([env_actions[:, :3].sum(0), matrix_to_euler_xyz(rotation), env_actions[:, 6:].sum(0)])
        clip = ClipActions("recorded", ("env",), self.reduce)
        return clip(None, None, {clip.recorded[0]: env_actions}, np.array([0, self.skip]), self.skip)[0]

    def bounds(self, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's action box from the env's per-step box: summed commands and delta poses span `skip` steps
        (the gripper of a delta pose, dimension 6, stays), stacked ones repeat the box, the last one keeps it."""
        low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        if self.mode == "delta_pose":
            scale = np.ones_like(low)
            scale[:6] = self.skip
            return low * scale, high * scale
        if self.reduce == "sum":
            return low * self.skip, high * self.skip
        if self.reduce == "stack":
            return np.tile(low, self.skip), np.tile(high, self.skip)
        return low, high
