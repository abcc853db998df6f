"""One safety layer for every robot: workspace box, per-step limits, gripper bounds, NaN and staleness stops.

`SafetyLayer.filter(action, observation)` returns the action that is safe to send: translation and
rotation clipped per step, the translation shortened so the end effector stays inside the workspace
box, the gripper target clipped to its range. It raises `SafetyStop` (the robot must stop, not be
commanded) on a non-finite or malformed action, a non-finite observation, or an observation older
than `observation_timeout_s`.
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

    def filter(self, action: Any, observation: dict[str, Any], now: float | None = None) -> np.ndarray:
        """The safe version of `action` (7,) given the observation it was chosen for."""
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
        position = np.asarray(observation[CARTESIAN_KEY], dtype=np.float64)[:3]
        target = np.clip(position + out[:3], lim.workspace_low, lim.workspace_high)
        inside = np.clip(target - position, -lim.max_translation, lim.max_translation)  # outside: back at step speed
        self._count("workspace", not np.allclose(inside, out[:3]))
        out[:3] = inside
        out[GRIPPER_DIM] = np.clip(a[GRIPPER_DIM], *lim.gripper)
        self._count("gripper", out[GRIPPER_DIM] != a[GRIPPER_DIM])
        return out.astype(np.float32)

    def _count(self, name: str, happened: bool) -> None:
        self.clip_counts[name] += int(happened)
