"""A MuJoCo Franka Panda with a 7-D Cartesian delta action space at 15 Hz.

Action: (dx, dy, dz, droll, dpitch, dyaw, gripper). The translation is added to
the measured TCP position; the rotation is applied on the left in the base frame
(R_target = R(d_rpy) @ R_now), the convention of the delta-pose actions the data
layer computes from states. Steps are bounded by DROID's limits (0.075 m,
0.15 rad) and clipped; gripper is a position target in [0 open, 1 closed].
A damped-least-squares differential IK turns the target pose into joint
targets inside the joint limits, and joint position actuators track them for
16 physics steps per control step.

Cameras: the exterior camera (`exterior_1_left`, observation `pixels`) and, with `wrist_camera=True`, the wrist
camera (`wrist_left`, observation `wrist_pixels`); the goal and sub-goal images are rendered from every camera
the env has (`goal_image(camera=...)`, `goal_images()`, `subgoal_images(camera=...)`; no camera: the exterior).

Subclasses define a task: `_sample_task`, `_goal_configuration`, `task_distance`,
`expert_action`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from common.droid import (
    ACTION_DIM,
    CONTROL_HZ,
    EXTERIOR_CAMERA,
    GRIPPER_DIM,
    MAX_DELTA_POS,
    MAX_DELTA_ROT,
    WRIST_CAMERA,
)
from common.rotations import apply_delta_pose, matrix_to_euler_xyz, rotation_vector
from envs import franka_model
from envs.franka_model import (
    ARM_JOINTS,
    FINGER_JOINTS,
    FINGER_OPEN,
    FINGER_SERVO,
    HOME_QPOS,
    JOINT_LIMITS,
    SUBSTEPS,
    TCP_SITE,
    scene_xml,
)

WORKSPACE_LOW = np.array(franka_model.ENV_TARGET_LOW)
WORKSPACE_HIGH = np.array(franka_model.ENV_TARGET_HIGH)
_LIMIT_MARGIN = 0.02  # rad kept clear of each joint limit by the IK
DOWN = np.eye(3)  # TCP orientation with the gripper pointing down (see envs.franka_model): every task's goal pose
START_IK_ITERATIONS = 30


class FrankaEnv(gym.Env):
    """Base class of the Franka tasks; see the module docstring for the action convention."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": int(CONTROL_HZ)}

    def __init__(
        self,
        image_size: int | tuple[int, int] = 64,
        render_mode: str | None = None,
        render_size: int | tuple[int, int] = 256,
        wrist_camera: bool = False,
        success_threshold: float = 0.05,
        ik_iterations: int = 3,
        cube: bool = False,
        goal_marker: bool = False,
        platform: bool = False,
        camera_view: str = "wide",
        wide_fingers: bool = False,
        start_down: bool = False,
        finger_speed: float | None = None,
        finger_servo: Sequence[float] = FINGER_SERVO,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.render_size = (render_size, render_size) if isinstance(render_size, int) else tuple(render_size)
        self.render_mode = render_mode
        self.wrist_camera = wrist_camera
        self.success_threshold = success_threshold
        self.ik_iterations = ik_iterations
        # start with the gripper pointing down, as in every goal image (posture and position still random): the
        # default start tilts it by up to ~25 degrees, so a planner that holds rotations cannot match the goal image
        self.start_down = start_down
        # m/s per finger at which the fingers' target moves (None: it jumps, and the position servo closes the
        # fingers at ~0.65 m/s, 13 x a Franka Hand's 0.05: a grasp off the cube's centre then throws the cube off)
        if finger_speed is not None and not finger_speed > 0:
            raise ValueError(f"finger_speed must be > 0 (m/s per finger) or None, got {finger_speed}")
        self.finger_speed = finger_speed
        try:  # any sequence of two numbers (a list from a config, a tuple, an array)
            servo = tuple(float(v) for v in finger_servo)
        except (TypeError, ValueError):
            servo = ()
        if len(servo) != 2 or not all(np.isfinite(v) and v > 0 for v in servo):
            raise ValueError(f"finger_servo must be the fingers' position servo gains [kp, kv] > 0, got {finger_servo!r}")
        self.finger_servo = servo

        self.camera_view = camera_view
        self.model = mujoco.MjModel.from_xml_string(scene_xml(cube=cube, goal_marker=goal_marker, wrist_camera=wrist_camera,
                                                              platform=platform, camera_view=camera_view,
                                                              wide_fingers=wide_fingers, finger_servo=servo))
        self.data = mujoco.MjData(self.model)
        self._scratch = mujoco.MjData(self.model)  # IK works here, never on the live state
        self._goal_data = mujoco.MjData(self.model)
        self._subgoal_data = mujoco.MjData(self.model)
        self.cameras = [EXTERIOR_CAMERA] + ([WRIST_CAMERA] if wrist_camera else [])  # what the env renders
        self._subgoal_views: list[dict[str, np.ndarray]] = []  # per sub-goal: camera -> image
        self._subgoal_states: list[np.ndarray] = []  # per sub-goal: the DROID state it shows
        self._arm_qpos = np.array([self.model.joint(j).qposadr[0] for j in ARM_JOINTS])
        self._arm_dof = np.array([self.model.joint(j).dofadr[0] for j in ARM_JOINTS])
        self._finger_qpos = np.array([self.model.joint(j).qposadr[0] for j in FINGER_JOINTS])
        self._tcp = self.model.site(TCP_SITE).id
        self._limits = np.array(JOINT_LIMITS)
        self._home = np.array(HOME_QPOS)
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._jacp = np.zeros((3, self.model.nv))
        self._jacr = np.zeros((3, self.model.nv))

        high = np.array([MAX_DELTA_POS] * 3 + [MAX_DELTA_ROT] * 3 + [1.0], dtype=np.float32)
        low = -high
        low[GRIPPER_DIM] = 0.0
        self.action_space = gym.spaces.Box(low, high, dtype=np.float32)
        spaces = {
            "pixels": gym.spaces.Box(0, 255, (*self.image_size, 3), dtype=np.uint8),
            "state": gym.spaces.Box(np.array([-1.5, -1.5, -0.5, -np.pi, -np.pi / 2, -np.pi, 0.0], dtype=np.float32),
                                    np.array([1.5, 1.5, 1.5, np.pi, np.pi / 2, np.pi, 1.0], dtype=np.float32)),
            "joint_positions": gym.spaces.Box((self._limits[:, 0] - 0.2).astype(np.float32),
                                              (self._limits[:, 1] + 0.2).astype(np.float32), dtype=np.float32),
        }
        if wrist_camera:
            spaces["wrist_pixels"] = gym.spaces.Box(0, 255, (*self.image_size, 3), dtype=np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self._goal_views: dict[str, np.ndarray] = {}  # camera -> goal image
        self._goal_state: np.ndarray | None = None
        self._gripper_target = 0.0
        self._goal_qpos: np.ndarray | None = None

    # -- task hooks --------------------------------------------------------------
    def _sample_task(self, rng: np.random.Generator) -> None:
        """Place objects and the goal in `self.data` (called after the arm is reset)."""
        raise NotImplementedError

    def _goal_configuration(self, data: mujoco.MjData) -> None:
        """Put `data` (a copy of the reset state) into the goal configuration for the goal image."""
        raise NotImplementedError

    def task_distance(self) -> float:
        """Distance to the goal that decides success (m)."""
        raise NotImplementedError

    def expert_action(self, rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
        """Scripted action toward the goal (uses privileged state), with Gaussian noise scaled by `noise`."""
        raise NotImplementedError

    # -- kinematics ----------------------------------------------------------------
    def tcp_pose(self, data: mujoco.MjData | None = None) -> tuple[np.ndarray, np.ndarray]:
        data = self.data if data is None else data
        return data.site_xpos[self._tcp].copy(), data.site_xmat[self._tcp].reshape(3, 3).copy()

    def solve_ik(self, target_pos: np.ndarray, target_rot: np.ndarray, q_init: np.ndarray, iterations: int,
                 damping: float = 0.05, rot_weight: float = 0.5, null_gain: float = 0.05) -> np.ndarray:
        """Joint positions (7,) that bring the TCP to the target pose, within the joint limits.

        Damped least squares on the 6-D pose error, a small pull toward the home posture
        in the Jacobian's null space, and clipping to the limits after every iteration.
        """
        d = self._scratch
        d.qpos[:] = self.data.qpos
        q = np.clip(q_init.copy(), self._limits[:, 0] + _LIMIT_MARGIN, self._limits[:, 1] - _LIMIT_MARGIN)
        eye = np.eye(6)
        for _ in range(iterations):
            d.qpos[self._arm_qpos] = q
            mujoco.mj_kinematics(self.model, d)
            mujoco.mj_comPos(self.model, d)
            pos, rot = d.site_xpos[self._tcp], d.site_xmat[self._tcp].reshape(3, 3)
            err = np.concatenate([target_pos - pos, rot_weight * rotation_vector(target_rot @ rot.T)])
            mujoco.mj_jacSite(self.model, d, self._jacp, self._jacr, self._tcp)
            jac = np.vstack([self._jacp[:, self._arm_dof], rot_weight * self._jacr[:, self._arm_dof]])
            inv = jac.T @ np.linalg.inv(jac @ jac.T + damping**2 * eye)
            dq = inv @ err + (np.eye(7) - inv @ jac) @ (null_gain * (self._home - q))
            q = np.clip(q + dq, self._limits[:, 0] + _LIMIT_MARGIN, self._limits[:, 1] - _LIMIT_MARGIN)
        return q

    # -- gymnasium API ------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        mujoco.mj_resetData(self.model, self.data)
        q = self._home + self.np_random.uniform(-0.15, 0.15, size=7)
        if options.get("arm_qpos") is not None:  # start from a recorded configuration (dataset goals)
            q = self._checked_qpos(options["arm_qpos"], "arm_qpos")
        self._goal_qpos = None if options.get("goal_arm_qpos") is None else \
            self._checked_qpos(options["goal_arm_qpos"], "goal_arm_qpos")
        q = np.clip(q, self._limits[:, 0] + _LIMIT_MARGIN, self._limits[:, 1] - _LIMIT_MARGIN)
        if self.start_down and options.get("arm_qpos") is None:
            q = self._pointing_down(q)
        self.data.qpos[self._arm_qpos] = q
        self.data.qpos[self._finger_qpos] = FINGER_OPEN
        self.data.ctrl[: len(ARM_JOINTS)] = q
        self.data.ctrl[len(ARM_JOINTS):] = FINGER_OPEN
        self._gripper_target = 0.0
        self._sample_task(self.np_random)
        mujoco.mj_forward(self.model, self.data)
        self._make_goal()
        obs = self._observation()
        return obs, self._info(goal=True)

    def _pointing_down(self, q: np.ndarray) -> np.ndarray:
        """`q` turned so the gripper points down, the TCP where `q` puts it."""
        d = self._scratch
        d.qpos[:] = self.data.qpos
        d.qpos[self._arm_qpos] = q
        mujoco.mj_kinematics(self.model, d)
        return self.solve_ik(d.site_xpos[self._tcp].copy(), DOWN, q, START_IK_ITERATIONS)

    def _checked_qpos(self, value: Any, name: str) -> np.ndarray:
        q = np.asarray(value, dtype=np.float64)
        if q.shape != (7,) or not np.isfinite(q).all():
            raise ValueError(f"reset option {name} must be 7 finite joint positions, got {q.shape} {q.tolist()}")
        return np.clip(q, self._limits[:, 0], self._limits[:, 1])

    def _goal_from_configuration(self, data: mujoco.MjData) -> None:
        """Set the task goal from a given goal configuration (`goal_arm_qpos`); tasks that can, override."""
        raise NotImplementedError(f"{type(self).__name__} cannot take its goal from an arm configuration")

    def step(self, action):
        action = self._check_action(action)
        pos, rot = self.tcp_pose()
        target_pos, target_rot = apply_delta_pose(pos, rot, action)
        target_pos = np.clip(target_pos, WORKSPACE_LOW, WORKSPACE_HIGH)
        q_now = self.data.qpos[self._arm_qpos]
        self.data.ctrl[: len(ARM_JOINTS)] = self.solve_ik(target_pos, target_rot, q_now, self.ik_iterations)
        self._gripper_target = float(action[GRIPPER_DIM])
        self._move_fingers(FINGER_OPEN * (1.0 - self._gripper_target))
        obs = self._observation()
        info = self._info()
        return obs, -info["distance"], False, False, info

    def _move_fingers(self, target: float) -> None:
        """One control step of physics with the fingers' servo target at `target` (m per finger); with
        `finger_speed`, the target moves there at that speed, one increment per physics step."""
        fingers = slice(len(ARM_JOINTS), None)
        if self.finger_speed is None:
            self.data.ctrl[fingers] = target
            mujoco.mj_step(self.model, self.data, nstep=SUBSTEPS)
            return
        now = self.data.ctrl[fingers].copy()
        per_substep = self.finger_speed / (CONTROL_HZ * SUBSTEPS)
        for i in range(1, SUBSTEPS + 1):
            self.data.ctrl[fingers] = now + np.clip(target - now, -per_substep * i, per_substep * i)
            mujoco.mj_step(self.model, self.data)

    def fingers_settled(self) -> bool:
        """Whether the fingers' servo target has reached the last gripper command (always, without finger_speed)."""
        return bool(np.allclose(self.data.ctrl[len(ARM_JOINTS):], FINGER_OPEN * (1.0 - self._gripper_target), atol=1e-9))

    def _check_action(self, action) -> np.ndarray:
        try:
            action = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"action must be a numeric array of shape ({ACTION_DIM},), got {type(action).__name__}") from err
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"action must have shape ({ACTION_DIM},) = (dx, dy, dz, droll, dpitch, dyaw, gripper), "
                             f"got {action.shape}")
        if not np.isfinite(action).all():
            bad = np.flatnonzero(~np.isfinite(action)).tolist()
            raise ValueError(f"action has non-finite values (NaN/inf) at indices {bad}: {action.tolist()}")
        return np.clip(action, self.action_space.low, self.action_space.high)

    # -- observations, goal and rendering -----------------------------------------------
    def state(self, data: mujoco.MjData | None = None) -> np.ndarray:
        """DROID state (7,): TCP xyz, extrinsic xyz Euler, gripper (0 open .. 1 closed)."""
        data = self.data if data is None else data
        pos, rot = self.tcp_pose(data)
        gripper = 1.0 - float(np.mean(data.qpos[self._finger_qpos])) / FINGER_OPEN
        return np.concatenate([pos, matrix_to_euler_xyz(rot), [np.clip(gripper, 0.0, 1.0)]]).astype(np.float32)

    def _observation(self) -> dict[str, np.ndarray]:
        obs = {
            "pixels": self._render(self.data, EXTERIOR_CAMERA, self.image_size),
            "state": self.state(),
            "joint_positions": self.data.qpos[self._arm_qpos].astype(np.float32),
        }
        if self.wrist_camera:
            obs["wrist_pixels"] = self._render(self.data, WRIST_CAMERA, self.image_size)
        return obs

    def is_success(self, distance: float) -> bool:
        """Whether the task is done at this task distance (tasks may add conditions, e.g. a released object)."""
        return distance < self.success_threshold

    def _info(self, goal: bool = False) -> dict[str, Any]:
        distance = self.task_distance()
        info: dict[str, Any] = {"is_success": bool(self.is_success(distance)), "distance": float(distance)}
        if goal:
            info["goal_image"] = self.goal_image()
            info["goal_state"] = self._goal_state.copy()
            info["subgoal_images"] = self.subgoal_images()
            if len(self.cameras) > 1:
                info["goal_images"] = self.goal_images()
        return info

    def _subgoal_configurations(self) -> list[Callable[[mujoco.MjData], None]]:
        """Intermediate goal configurations, in order, each setting a copy of the reset state (none by default)."""
        return []

    def _make_goal(self) -> None:
        goal = self._goal_data
        goal.qpos[:] = self.data.qpos
        goal.qvel[:] = 0.0
        if self.model.nmocap:
            goal.mocap_pos[:] = self.data.mocap_pos
            goal.mocap_quat[:] = self.data.mocap_quat
        if self._goal_qpos is None:
            self._goal_configuration(goal)
            mujoco.mj_forward(self.model, goal)
        else:
            goal.qpos[self._arm_qpos] = self._goal_qpos
            mujoco.mj_forward(self.model, goal)
            self._goal_from_configuration(goal)
        self._goal_views = {camera: self._render(goal, camera, self.image_size) for camera in self.cameras}
        self._goal_state = self.state(goal)
        self._subgoal_views, self._subgoal_states = [], []
        scratch = self._subgoal_data
        for configure in self._subgoal_configurations():
            scratch.qpos[:], scratch.qvel[:] = self.data.qpos, 0.0
            if self.model.nmocap:
                scratch.mocap_pos[:], scratch.mocap_quat[:] = self.data.mocap_pos, self.data.mocap_quat
            configure(scratch)
            mujoco.mj_forward(self.model, scratch)
            self._subgoal_views.append({camera: self._render(scratch, camera, self.image_size) for camera in self.cameras})
            self._subgoal_states.append(self.state(scratch))

    def _camera(self, camera: str | None) -> str:
        camera = EXTERIOR_CAMERA if camera is None else camera
        if camera not in self.cameras:
            raise ValueError(f"{type(self).__name__} renders cameras {self.cameras}, not {camera!r}"
                             + (" (make the env with wrist_camera=True)" if camera == WRIST_CAMERA else ""))
        return camera

    def subgoal_images(self, camera: str | None = None) -> list[np.ndarray]:
        """Intermediate goal images (before the final goal image) from `camera` (default the exterior one), fixed at
        reset; empty for single-goal tasks."""
        camera = self._camera(camera)
        return [views[camera].copy() for views in self._subgoal_views]

    def subgoal_states(self) -> list[np.ndarray]:
        """The DROID state (7,) each sub-goal image shows, in order (what a readout of those images should read)."""
        return [state.copy() for state in self._subgoal_states]

    def goal_image(self, camera: str | None = None) -> np.ndarray:
        """The scene rendered in the goal configuration (H, W, 3) uint8 from `camera` (default the exterior one),
        fixed at reset."""
        camera = self._camera(camera)
        if not self._goal_views:
            raise RuntimeError("goal_image() needs reset() first")
        return self._goal_views[camera].copy()

    def goal_images(self) -> dict[str, np.ndarray]:
        """The goal image from every camera of the env: camera name -> (H, W, 3) uint8."""
        return {camera: self.goal_image(camera) for camera in self.cameras}

    def goal_state(self) -> np.ndarray:
        if self._goal_state is None:
            raise RuntimeError("goal_state() needs reset() first")
        return self._goal_state.copy()

    def _render(self, data: mujoco.MjData, camera: str, size: tuple[int, int]) -> np.ndarray:
        renderer = self._renderers.get(size)
        if renderer is None:
            renderer = self._renderers[size] = mujoco.Renderer(self.model, *size)
        renderer.update_scene(data, camera=camera)
        return renderer.render().copy()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._render(self.data, EXTERIOR_CAMERA, self.render_size)

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
