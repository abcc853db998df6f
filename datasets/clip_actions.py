"""The action between consecutive clip frames (action k moves frame k to k + 1).

- `mode="delta_pose"`: the V-JEPA 2-AC actions computed from the states at the sampled frames
  (Δxyz, relative rotation as xyz Euler, Δgripper);
- `mode="recorded"`: the commands stored under `action/<name>`, reduced over the `frameskip` control steps
  of each transition: `sum` (velocities, deltas), `stack` (all of them) or `last` (absolute targets).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.droid import ACTION_DIM
from common.rotations import delta_pose_actions
from datasets.schema import action_key

ACTION_MODES = ("delta_pose", "recorded")
REDUCTIONS = ("sum", "stack", "last")


@dataclass(frozen=True)
class ClipActions:
    mode: str = "delta_pose"
    recorded: tuple[str, ...] = ("cartesian_velocity", "gripper_position")  # keys under action/, concatenated
    reduce: str = "sum"

    def __post_init__(self) -> None:
        if self.mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {self.mode!r}")
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"recorded_reduce must be one of {REDUCTIONS}, got {self.reduce!r}")
        object.__setattr__(self, "recorded", tuple(action_key(k) for k in self.recorded))

    @property
    def keys(self) -> tuple[str, ...]:
        """The recorded action keys to load (none in delta-pose mode)."""
        return self.recorded if self.mode == "recorded" else ()

    def width(self, recorded: dict[str, np.ndarray], skip: int) -> int:
        """Width of one action given the loaded recorded commands (T, d) per key."""
        if self.mode == "delta_pose":
            return ACTION_DIM
        return sum(recorded[k].shape[1] for k in self.recorded) * (skip if self.reduce == "stack" else 1)

    def __call__(self, cartesian: np.ndarray, gripper: np.ndarray, recorded: dict[str, np.ndarray],
                 frames: np.ndarray, skip: int) -> np.ndarray:
        """(len(frames) - 1, width) actions of one clip."""
        if len(frames) == 1:  # single-frame clips (image pretraining) carry no action
            return np.zeros((0, self.width(recorded, skip)))
        if self.mode == "delta_pose":
            return delta_pose_actions(cartesian[frames], gripper[frames])
        parts = []
        for key in self.recorded:
            steps = recorded[key][frames[0] : frames[-1]]  # commands between the first and last frame
            steps = steps.reshape(len(frames) - 1, skip, -1)  # (transitions, control steps, d)
            if self.reduce == "sum":
                parts.append(steps.sum(1))
            elif self.reduce == "last":
                parts.append(steps[:, -1])
            else:
                parts.append(steps.reshape(len(frames) - 1, -1))
        return np.concatenate(parts, axis=1)
