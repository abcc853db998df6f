"""The Franka tasks: reach a point, push a cube. Each renders its own goal image at reset."""

from __future__ import annotations

import mujoco
import numpy as np

from common.droid import ACTION_DIM, MAX_DELTA_POS, MAX_DELTA_ROT
from common.rotations import matrix_to_euler_xyz
from envs.franka_env import FrankaEnv

DOWN = np.eye(3)  # TCP orientation with the gripper pointing down (see envs.franka_model)
GOAL_IK_ITERATIONS = 150


def _toward(delta: np.ndarray, gain: float, limit: float) -> np.ndarray:
    """Proportional step toward `delta`, scaled down as a whole to the per-step limit."""
    step = gain * delta
    norm = np.max(np.abs(step)) if step.size else 0.0
    return step * (limit / norm) if norm > limit else step


class FrankaReachEnv(FrankaEnv):
    """Bring the TCP within 5 cm of a random point in the workspace box."""

    GOAL_LOW = np.array([0.35, -0.25, 0.08])
    GOAL_HIGH = np.array([0.65, 0.25, 0.4])

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.goal_pos = np.zeros(3)

    def _sample_task(self, rng: np.random.Generator) -> None:
        self.goal_pos = rng.uniform(self.GOAL_LOW, self.GOAL_HIGH)

    def _goal_configuration(self, data: mujoco.MjData) -> None:
        q = self.solve_ik(self.goal_pos, DOWN, self._home, GOAL_IK_ITERATIONS)
        data.qpos[self._arm_qpos] = q

    def _goal_from_configuration(self, data: mujoco.MjData) -> None:
        self.goal_pos = data.site_xpos[self._tcp].copy()

    def task_distance(self) -> float:
        return float(np.linalg.norm(self.data.site_xpos[self._tcp] - self.goal_pos))

    def expert_action(self, rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
        pos, rot = self.tcp_pose()
        action = np.zeros(ACTION_DIM)
        action[:3] = _toward(self.goal_pos - pos, 1.0, MAX_DELTA_POS)
        action[3:6] = _toward(matrix_to_euler_xyz(DOWN @ rot.T), 1.0, MAX_DELTA_ROT)
        if noise and rng is not None:
            action[:6] += rng.normal(0.0, noise, 6) * np.array([MAX_DELTA_POS] * 3 + [MAX_DELTA_ROT] * 3)
        return np.clip(action, self.action_space.low, self.action_space.high).astype(np.float32)


class FrankaPushEnv(FrankaEnv):
    """Push a 5 cm cube until its centre is within 5 cm of a goal point on the table."""

    CUBE_LOW = np.array([0.4, -0.15])
    CUBE_HIGH = np.array([0.6, 0.15])
    MIN_PUSH = 0.1
    MAX_PUSH = 0.2
    HALF = 0.025  # cube half size
    PUSH_Z = 0.02  # TCP height while pushing

    def __init__(self, goal_marker: bool = False, **kwargs):
        super().__init__(cube=True, goal_marker=goal_marker, **kwargs)
        self._cube_qpos = self.model.joint("cube").qposadr[0]
        self._cube_body = self.model.body("cube").id
        self._goal_mocap = self.model.body("goal").mocapid[0] if goal_marker else None
        self.goal_pos = np.zeros(2)

    def _sample_task(self, rng: np.random.Generator) -> None:
        cube = rng.uniform(self.CUBE_LOW, self.CUBE_HIGH)
        angle = rng.uniform(0, 2 * np.pi)
        distance = rng.uniform(self.MIN_PUSH, self.MAX_PUSH)
        goal = cube + distance * np.array([np.cos(angle), np.sin(angle)])
        self.goal_pos = np.clip(goal, self.CUBE_LOW - 0.05, self.CUBE_HIGH + 0.05)
        self._place_cube(self.data, cube, rng.uniform(-np.pi / 4, np.pi / 4))
        if self._goal_mocap is not None:
            self.data.mocap_pos[self._goal_mocap] = [*self.goal_pos, 0.0005]

    def _place_cube(self, data: mujoco.MjData, xy: np.ndarray, yaw: float) -> None:
        a = self._cube_qpos
        data.qpos[a : a + 3] = [xy[0], xy[1], self.HALF]
        data.qpos[a + 3 : a + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]

    def cube_xy(self, data: mujoco.MjData | None = None) -> np.ndarray:
        data = self.data if data is None else data
        return data.xpos[self._cube_body][:2].copy()

    def _goal_configuration(self, data: mujoco.MjData) -> None:
        start = self.cube_xy(self.data)
        direction = self.goal_pos - start
        direction /= np.linalg.norm(direction) + 1e-9
        self._place_cube(data, self.goal_pos, 0.0)
        behind = np.array([*(self.goal_pos - direction * (self.HALF + 0.03)), self.PUSH_Z + 0.03])
        data.qpos[self._arm_qpos] = self.solve_ik(behind, DOWN, self._home, GOAL_IK_ITERATIONS)

    def task_distance(self) -> float:
        return float(np.linalg.norm(self.cube_xy() - self.goal_pos))

    def expert_action(self, rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
        """Go above a point behind the cube, descend, push through it toward the goal; re-approach if misaligned."""
        pos, rot = self.tcp_pose()
        cube = self.cube_xy()
        to_goal = self.goal_pos - cube
        direction = to_goal / (np.linalg.norm(to_goal) + 1e-9)
        behind = cube - direction * (self.HALF + 0.035)
        rel = pos[:2] - cube
        along = float(rel @ direction)  # negative: behind the cube
        across = float(abs(rel @ np.array([-direction[1], direction[0]])))
        aligned = along < -self.HALF and across < 0.02
        if aligned and pos[2] < self.PUSH_Z + 0.02:
            target = np.array([*(cube + direction * 0.05), self.PUSH_Z])
        elif np.linalg.norm(pos[:2] - behind) < 0.015:
            target = np.array([*behind, self.PUSH_Z])
        elif pos[2] < 0.08 and np.linalg.norm(pos[:2] - behind) > 0.03:
            target = np.array([pos[0], pos[1], 0.1])  # lift before travelling over the cube
        else:
            target = np.array([*behind, 0.1])
        action = np.zeros(ACTION_DIM)
        action[:3] = _toward(target - pos, 1.0, MAX_DELTA_POS)
        action[3:6] = _toward(matrix_to_euler_xyz(DOWN @ rot.T), 1.0, MAX_DELTA_ROT)
        action[6] = 1.0  # closed fingers push more reliably
        if noise and rng is not None:
            action[:6] += rng.normal(0.0, noise, 6) * np.array([MAX_DELTA_POS] * 3 + [MAX_DELTA_ROT] * 3)
        return np.clip(action, self.action_space.low, self.action_space.high).astype(np.float32)
