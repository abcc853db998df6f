"""A small robot interface — `observe()`, `act(action)`, `reset()`, `close()` — for sim and real Frankas.

Observations follow the DROID keys (`observation/exterior_image_1_left` uint8 H x W x 3,
`observation/cartesian_position` (6,) xyz + extrinsic xyz Euler in the base frame,
`observation/gripper_position` (1,) 0 open .. 1 closed), plus `observation/joint_position` (7,)
when known and `timestamp` (time.monotonic()). Actions are our env's 7-D Cartesian deltas with an
absolute gripper target. Every `act` goes through the one `SafetyLayer`; a `SafetyStop` stops the
robot before it propagates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from common.droid import CARTESIAN_KEY, GRIPPER_KEY, IMAGE_KEY, JOINTS_KEY, TIMESTAMP_KEY
from common.rotations import apply_delta_pose, matrix_to_euler_xyz, matrix_to_quaternion, quaternion_to_matrix
from envs.safety import SafetyLayer, SafetyLimits, SafetyStop


class Robot:
    """Base class: subclasses implement `_observe`, `_apply`, `_reset`, `_stop` and `close`."""

    def __init__(self, safety: SafetyLayer | None = None):
        self.safety = safety or SafetyLayer()
        self.last_observation: dict[str, Any] | None = None

    def observe(self) -> dict[str, Any]:
        obs = self._observe()
        obs[TIMESTAMP_KEY] = time.monotonic()
        self.last_observation = obs
        return obs

    def act(self, action: Any) -> np.ndarray:
        """Send `action` after the safety layer; returns what was sent. Stops the robot on `SafetyStop`."""
        if self.last_observation is None:
            raise SafetyStop("act() before any observe(): actions are only sent against a fresh observation")
        try:
            safe = self.safety.filter(action, self.last_observation)
        except SafetyStop:
            self._stop()
            raise
        self._apply(safe)
        return safe

    def reset(self, **kwargs: Any) -> dict[str, Any]:
        self._reset(**kwargs)
        return self.observe()

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def _observe(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _apply(self, action: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _reset(self, **kwargs: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _stop(self) -> None:
        pass

    def __enter__(self) -> Robot:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class SimRobot(Robot):
    """One of our gymnasium Franka envs behind the robot interface (goal image and success from the env)."""

    def __init__(self, env: gym.Env | str = "FrankaReach-v0", safety: SafetyLayer | None = None, **env_kwargs: Any):
        if isinstance(env, str):
            import envs  # noqa: F401 - registers the ids

            env = gym.make(env, **env_kwargs)
        self.env = env
        unwrapped = env.unwrapped
        limits = SafetyLimits()
        if hasattr(unwrapped, "action_space"):
            limits.max_translation = float(unwrapped.action_space.high[0])
            limits.max_rotation = float(unwrapped.action_space.high[3])
        super().__init__(safety or SafetyLayer(limits))
        self._obs: dict[str, Any] | None = None
        self.info: dict[str, Any] = {}

    def _reset(self, seed: int | None = None, **_: Any) -> None:
        self._obs, self.info = self.env.reset(seed=seed)

    def goal_image(self) -> np.ndarray:
        return self.env.unwrapped.goal_image()

    def _observe(self) -> dict[str, Any]:
        if self._obs is None:
            raise RuntimeError("SimRobot.observe() needs reset() first")
        state = self._obs["state"]
        return {IMAGE_KEY: self._obs["pixels"], CARTESIAN_KEY: state[:6].astype(np.float64),
                GRIPPER_KEY: state[6:7].astype(np.float64), JOINTS_KEY: self._obs["joint_positions"].astype(np.float64)}

    def _apply(self, action: np.ndarray) -> None:
        self._obs, _, _, _, self.info = self.env.step(action)

    def close(self) -> None:
        self.env.close()


class FrankyRobot(Robot):
    """A real Franka through franky-control (imported only here; `pip install franky-control`).

    Each `act` turns the Cartesian delta into an absolute end-effector target in the base frame
    (translation added, rotation R(delta) @ R) and starts it as an asynchronous franky motion, which
    replaces the previous one, so commands stream at the control rate (15 Hz). The gripper moves when
    its target changes by more than `gripper_deadband`. Images come from `camera()`, any callable
    returning the exterior camera's uint8 (H, W, 3) frame (franky has no camera API).
    """

    def __init__(self, host: str, camera: Callable[[], np.ndarray], safety: SafetyLayer | None = None,
                 dynamics_factor: float = 0.1, gripper_speed: float = 0.1, gripper_deadband: float = 0.05,
                 home: list[float] | None = None):
        try:
            import franky
        except ImportError as err:
            raise ImportError("FrankyRobot needs the franky-control package: pip install franky-control "
                              "(and a real-time kernel, see franky's docs)") from err
        super().__init__(safety)
        self.franky = franky
        self.robot = franky.Robot(host)
        self.robot.relative_dynamics_factor = dynamics_factor
        self.gripper = franky.Gripper(host)
        self.camera = camera
        self.gripper_speed, self.gripper_deadband = gripper_speed, gripper_deadband
        self.home = home
        self._gripper_target: float | None = None

    def _pose(self) -> tuple[np.ndarray, np.ndarray]:
        pose = self.robot.current_cartesian_state.pose.end_effector_pose
        return np.asarray(pose.translation, dtype=np.float64), quaternion_to_matrix(pose.quaternion)

    def _observe(self) -> dict[str, Any]:
        position, rotation = self._pose()
        closed = 1.0 - float(self.gripper.width) / float(self.gripper.max_width)
        image = np.asarray(self.camera())
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise SafetyStop(f"camera returned {image.dtype} {image.shape}, expected uint8 (H, W, 3)")
        return {IMAGE_KEY: image, CARTESIAN_KEY: np.concatenate([position, matrix_to_euler_xyz(rotation)]),
                GRIPPER_KEY: np.array([np.clip(closed, 0.0, 1.0)]),
                JOINTS_KEY: np.asarray(self.robot.current_joint_state.position, dtype=np.float64)}

    def _apply(self, action: np.ndarray) -> None:
        f = self.franky
        target_position, target_rotation = apply_delta_pose(*self._pose(), action)
        target = f.Affine(target_position, matrix_to_quaternion(target_rotation))
        self.robot.move(f.CartesianMotion(target, f.ReferenceType.Absolute), asynchronous=True)
        if self._gripper_target is None or abs(float(action[6]) - self._gripper_target) > self.gripper_deadband:
            self._gripper_target = float(action[6])
            self.gripper.move_async((1.0 - self._gripper_target) * float(self.gripper.max_width), self.gripper_speed)

    def _reset(self, **_: Any) -> None:
        if self.home is not None:
            self.robot.move(self.franky.JointMotion(self.home))
        self.gripper.move((1.0 - 0.0) * float(self.gripper.max_width), self.gripper_speed)
        self._gripper_target = 0.0

    def _stop(self) -> None:
        self.robot.stop()

    def close(self) -> None:
        self._stop()
