"""One safety layer for every robot: workspace box, per-step limits, gripper bounds, NaN and staleness stops.

`SafetyLayer.filter(action, observation, origin)` returns the action that is safe to send: translation
and rotation clipped per step, the translation shortened so the commanded end-effector position
(`origin`, where the robot's next target starts: the measured position, or a real robot's commanded
target) stays inside the workspace box, the gripper target clipped to its range. It raises `SafetyStop`
(the robot must stop, not be commanded) on a non-finite or malformed action, a non-finite observation,
an observation older than `observation_timeout_s`, or, when `joint_limits` are set, a measured joint
within `joint_margin` of its limit (the box is reachable gripper-down, but rotations are not bounded,
so the joints are watched too).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.droid import (
    ACTION_DIM,
    CARTESIAN_KEY,
    GRIPPER_DIM,
    GRIPPER_KEY,
    JOINTS_KEY,
    MAX_DELTA_POS,
    MAX_DELTA_ROT,
    TIMESTAMP_KEY,
)
from envs.franka_model import WORKSPACE_HIGH, WORKSPACE_LOW


class SafetyStop(RuntimeError):
    """The robot must stop: the reason names what was unsafe."""


@dataclass
class SafetyLimits:
    workspace_low: tuple[float, float, float] = WORKSPACE_LOW
    workspace_high: tuple[float, float, float] = WORKSPACE_HIGH
    max_translation: float = MAX_DELTA_POS  # m per step, each axis (DROID)
    max_rotation: float = MAX_DELTA_ROT  # rad per step, each axis (DROID)
    gripper: tuple[float, float] = (0.0, 1.0)
    observation_timeout_s: float = 0.5
    joint_limits: tuple[tuple[float, float], ...] | None = None  # rad, per joint; None: the robot's own, if it has any
    joint_margin: float = 0.05  # rad: a measured joint this close to a limit stops the robot


@dataclass
class SafetyLayer:
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    clip_counts: dict[str, int] = field(default_factory=lambda: {"translation": 0, "rotation": 0, "workspace": 0,
                                                                 "gripper": 0})

    def check_observation(self, observation: dict[str, Any], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        age = now - float(observation.get(TIMESTAMP_KEY, -np.inf))
        if age > self.limits.observation_timeout_s:
            raise SafetyStop(f"stale observation: {age:.3f} s old (limit {self.limits.observation_timeout_s} s)")
        for key in (CARTESIAN_KEY, GRIPPER_KEY):
            value = np.asarray(observation[key], dtype=np.float64)
            if not np.isfinite(value).all():
                raise SafetyStop(f"non-finite observation {key}: {value.tolist()}")
        if self.limits.joint_limits is not None and observation.get(JOINTS_KEY) is not None:
            self.check_joints(observation[JOINTS_KEY])

    def check_joints(self, joints: Any) -> None:
        """`SafetyStop` if a joint is not finite or is within `joint_margin` of its limit."""
        q = np.asarray(joints, dtype=np.float64)
        low, high = np.asarray(self.limits.joint_limits, dtype=np.float64).T
        if q.shape != low.shape or not np.isfinite(q).all():
            raise SafetyStop(f"joint positions must be {low.shape} finite values, got {q.tolist()}")
        margin = self.limits.joint_margin
        near = np.flatnonzero((q < low + margin) | (q > high - margin))
        if near.size:
            i = int(near[0])
            raise SafetyStop(f"joint {i + 1} at {q[i]:.3f} rad is within {margin} rad of its limit "
                             f"[{low[i]:.4f}, {high[i]:.4f}]")

    def filter(self, action: Any, observation: dict[str, Any], now: float | None = None,
               origin: Any = None) -> np.ndarray:
        """The safe version of `action` (7,) given the observation it was chosen for.

        `origin` (3,) is the position the translation is added to (default: the observed one); a robot
        that integrates commanded targets passes its current target, so the box bounds the target.
        """
        self.check_observation(observation, now)
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise SafetyStop(f"action is not numeric: {action!r}") from err
        if a.shape != (ACTION_DIM,):
            raise SafetyStop(f"action must have shape ({ACTION_DIM},) = (dx, dy, dz, droll, dpitch, dyaw, gripper), "
                             f"got {a.shape}")
        if not np.isfinite(a).all():
            raise SafetyStop(f"non-finite action at indices {np.flatnonzero(~np.isfinite(a)).tolist()}: {a.tolist()}")
        lim = self.limits
        out = a.copy()
        out[:3] = np.clip(a[:3], -lim.max_translation, lim.max_translation)
        out[3:6] = np.clip(a[3:6], -lim.max_rotation, lim.max_rotation)
        self._count("translation", not np.array_equal(out[:3], a[:3]))
        self._count("rotation", not np.array_equal(out[3:6], a[3:6]))
        position = np.asarray(observation[CARTESIAN_KEY] if origin is None else origin, dtype=np.float64)[:3]
        if not np.isfinite(position).all():
            raise SafetyStop(f"non-finite command origin: {position.tolist()}")
        target = np.clip(position + out[:3], lim.workspace_low, lim.workspace_high)
        inside = np.clip(target - position, -lim.max_translation, lim.max_translation)  # outside: back at step speed
        self._count("workspace", not np.allclose(inside, out[:3]))
        out[:3] = inside
        out[GRIPPER_DIM] = np.clip(a[GRIPPER_DIM], *lim.gripper)
        self._count("gripper", out[GRIPPER_DIM] != a[GRIPPER_DIM])
        return out.astype(np.float32)

    def _count(self, name: str, happened: bool) -> None:
        self.clip_counts[name] += int(happened)
