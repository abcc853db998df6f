"""A small robot interface — `observe()`, `act(action)`, `reset()`, `close()` — for sim and real Frankas.

Observations follow the DROID keys (`observation/exterior_image_1_left` uint8 H x W x 3,
`observation/cartesian_position` (6,) xyz + extrinsic xyz Euler in the base frame,
`observation/gripper_position` (1,) 0 open .. 1 closed), plus `observation/joint_position` (7,)
when known and `timestamp` (time.monotonic()). Actions are our env's 7-D Cartesian deltas with an
absolute gripper target. Every `act` goes through the one `SafetyLayer`; a `SafetyStop` stops the
robot before it propagates, and the robot takes the next `act`, `reset` or `close` after it.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from common.droid import CARTESIAN_KEY, GRIPPER_KEY, IMAGE_KEY, JOINTS_KEY, TIMESTAMP_KEY
from common.rotations import (
    apply_delta_pose,
    euler_xyz_to_matrix,
    matrix_to_euler_xyz,
    matrix_to_quaternion,
    quaternion_to_matrix,
    rotation_vector,
)
from envs.franka_model import FR3_JOINT_LIMITS, HOME_QPOS, TCP_IN_EE_WXYZ
from envs.safety import SafetyLayer, SafetyLimits, SafetyStop

log = logging.getLogger(__name__)


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
            safe = self.safety.filter(action, self.last_observation, origin=self._command_origin())
            self._apply(safe)
        except SafetyStop:
            self._stop()
            raise
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

    def _command_origin(self) -> np.ndarray | None:
        """The position the next translation is added to; None: the observed one."""
        return None

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


class GripperWorker:
    """Sends gripper targets from its own thread, so `act()` never waits for the fingers.

    franky's gripper commands block until the fingers stop, and a new command waits for the one still
    running (0.2-1.3 s against franky-sim); stopping a running move from another thread can leave that
    move waiting forever (franky-sim). So one daemon thread sends the latest target once the previous move
    has finished; targets set meanwhile replace each other (only the newest is sent).
    """

    def __init__(self, gripper: Any, speed: float):
        self.gripper, self.speed = gripper, speed
        self.error: BaseException | None = None  # the last failed move (logged; the next one is still sent)
        self.sent = 0
        self._cv = threading.Condition()
        self._pending: float | None = None
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="franky-gripper", daemon=True)
        self._thread.start()

    def set(self, width: float) -> None:
        with self._cv:
            self._pending = float(width)
            self._cv.notify_all()

    def clear(self) -> None:
        """Drop a target that has not been sent yet."""
        with self._cv:
            self._pending = None
            self._cv.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every target has been sent and the fingers stopped; False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._closed = True
            self._pending = None
            self._cv.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._pending is not None or self._closed)
                if self._closed:
                    return
                width, self._pending, self._busy = self._pending, None, True
            try:
                self.gripper.move(width, self.speed)
            except Exception as err:  # a failed move must not kill the thread; the width observed tells the rest
                self.error = err
                log.warning("gripper move to %.4f m failed: %s", width, err)
            finally:
                with self._cv:
                    self._busy = False
                    self.sent += 1
                    self._cv.notify_all()


class FrankyRobot(Robot):
    """A real Franka (FR3) through franky-control (imported only here; `pip install -e ".[robot]"`).

    Poses are franky's end-effector pose (the end-effector frame set in Desk; the Franka Hand's is 0.1034 m
    beyond the flange, as in franky-sim) turned by the envs' fixed TCP rotation (`TCP_IN_EE_WXYZ`), so gripper-down
    reads (0, 0, 0) and the state never sits on roll's +-pi wrap.

    Each `act` adds the Cartesian delta to the *commanded* target (translation added, rotation R(delta) @ R),
    not to the measured pose, so tracking lag does not accumulate, and starts it as an asynchronous franky
    motion that replaces the previous one (returns in well under a millisecond). The target is re-synced to the
    measured pose at reset, after a stop, and whenever it is more than `max_target_error` m or
    `max_target_rotation` rad from the measured pose (the arm was held or could not follow). The gripper target
    goes to a `GripperWorker` when it changes by more than `gripper_deadband`, so gripper changes never block.
    A `SafetyStop`, or a franky error while acting (raised as `SafetyStop`), stops the motion, clears the
    preempted motion's error and runs franky's error recovery, so the next `act`, `reset` or `close` works.

    Images come from `camera`, any callable returning the exterior camera's uint8 (H, W, 3) frame (franky has no
    camera API); a callable with a `joint_position` parameter gets the measured joints (e.g. `SceneCamera`, a
    rendered stand-in for dry runs on franky-sim). The gripper reads 0 at the width measured fully open at reset.
    """

    def __init__(self, host: str, camera: Callable[..., np.ndarray], safety: SafetyLayer | None = None, *,
                 dynamics_factor: float = 0.1, realtime: bool = True, robot_options: dict[str, Any] | None = None,
                 gripper_speed: float = 0.1, gripper_deadband: float = 0.05,
                 home: tuple[float, ...] | list[float] | None = HOME_QPOS, max_target_error: float = 0.1,
                 max_target_rotation: float = 0.3, motion_timeout_s: float = 10.0):
        try:
            import franky
        except ImportError as err:
            raise ImportError('FrankyRobot needs the franky-control package: pip install -e ".[robot]" '
                              "(or pip install franky-control)") from err
        if not 0.0 < dynamics_factor <= 1.0:
            raise ValueError(f"dynamics_factor must be in (0, 1], got {dynamics_factor}")
        if home is not None and len(home) != 7:
            raise ValueError(f"home must be 7 joint positions, got {home}")
        super().__init__(safety)
        if self.safety.limits.joint_limits is None:
            self.safety.limits.joint_limits = FR3_JOINT_LIMITS
        self.franky = franky
        self.franky_errors = (franky.Exception, franky.InvalidMotionTypeException, franky.MotionReuseException,
                              RuntimeError)
        realtime_config = franky.RealtimeConfig.Enforce if realtime else franky.RealtimeConfig.Ignore
        try:
            self.robot = franky.Robot(host, realtime_config=realtime_config, **dict(robot_options or {}))
        except franky.RealtimeException as err:
            raise RuntimeError(f"{err}: run on a real-time kernel (franky's docs), or pass realtime=False "
                               "(franky.realtime=false; fine for franky-sim, not for a real arm)") from err
        self.robot.relative_dynamics_factor = franky.RelativeDynamicsFactor(dynamics_factor)
        self.gripper = franky.Gripper(host)
        self.gripper_worker = GripperWorker(self.gripper, gripper_speed)
        self.camera = camera
        self._camera_takes_joints = _accepts(camera, "joint_position")
        self.gripper_speed, self.gripper_deadband = gripper_speed, gripper_deadband
        self.home = None if home is None else [float(q) for q in home]
        self.max_target_error, self.max_target_rotation = max_target_error, max_target_rotation
        self.motion_timeout_s = motion_timeout_s
        self.max_width = float(self.gripper.max_width)
        self.open_width = self.max_width  # the width measured fully open at reset
        self.resyncs = 0  # how often the commanded target was re-synced to the measured pose
        self._target: tuple[np.ndarray, np.ndarray] | None = None  # commanded (position, rotation), TCP frame
        self._gripper_target: float | None = None
        self._tcp_in_ee = quaternion_to_matrix(np.roll(TCP_IN_EE_WXYZ, -1))  # (x, y, z, w)

    # -- poses -------------------------------------------------------------------------------------------
    def _pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Measured TCP pose (position, rotation) in the base frame, in our envs' TCP convention."""
        pose = self.robot.current_cartesian_state.pose.end_effector_pose
        return (np.asarray(pose.translation, dtype=np.float64),
                quaternion_to_matrix(pose.quaternion) @ self._tcp_in_ee)

    def commanded_pose(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The target of the last `act` (position, rotation) in the TCP convention; None after a re-sync."""
        return None if self._target is None else (self._target[0].copy(), self._target[1].copy())

    def _ee_target(self, position: np.ndarray, rotation: np.ndarray) -> Any:
        return self.franky.Affine(position, matrix_to_quaternion(rotation @ self._tcp_in_ee.T))

    # -- the interface -----------------------------------------------------------------------------------
    def _observe(self) -> dict[str, Any]:
        position, rotation = self._pose()
        joints = np.asarray(self.robot.current_joint_state.position, dtype=np.float64)
        width = float(self.gripper.width)
        image = np.asarray(self.camera(joint_position=joints) if self._camera_takes_joints else self.camera())
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise SafetyStop(f"camera returned {image.dtype} {image.shape}, expected uint8 (H, W, 3)")
        closed = np.clip(1.0 - width / self.open_width, 0.0, 1.0)
        return {IMAGE_KEY: image, CARTESIAN_KEY: np.concatenate([position, matrix_to_euler_xyz(rotation)]),
                GRIPPER_KEY: np.array([closed]), JOINTS_KEY: joints}

    def _command_origin(self) -> np.ndarray:
        position, rotation = self._pose()
        if self._target is not None:
            error = np.linalg.norm(self._target[0] - position)
            angle = np.linalg.norm(rotation_vector(self._target[1] @ rotation.T))
            if error > self.max_target_error or angle > self.max_target_rotation:
                log.warning("commanded target %.1f mm / %.3f rad from the measured pose: re-synced", error * 1e3, angle)
                self._target = None
        if self._target is None:
            self._target = (position, rotation)
            self.resyncs += 1
        return self._target[0]

    def _apply(self, action: np.ndarray) -> None:
        f = self.franky
        position, rotation = apply_delta_pose(*self._target, action)
        try:
            self.robot.move(f.CartesianMotion(self._ee_target(position, rotation), f.ReferenceType.Absolute),
                            asynchronous=True)
        except self.franky_errors as err:
            raise SafetyStop(f"franky refused the motion: {type(err).__name__}: {err}") from err
        self._target = (position, rotation)
        gripper = float(action[6])
        if self._gripper_target is None or abs(gripper - self._gripper_target) > self.gripper_deadband:
            self._gripper_target = gripper
            self.gripper_worker.set((1.0 - gripper) * self.max_width)

    def _reset(self, **_: Any) -> None:
        """Wait for (or stop) the running motion, move to `home`, open the gripper fully and re-sync."""
        self._finish_motion()
        if self.home is not None:
            try:
                self.robot.move(self.franky.JointMotion(self.franky.JointState(np.asarray(self.home))))
            except self.franky_errors as err:
                self._recover()
                raise SafetyStop(f"moving home failed: {type(err).__name__}: {err}") from err
        self.gripper_worker.clear()
        self.gripper_worker.wait_idle(self.motion_timeout_s)
        self.gripper_worker.set(self.max_width)
        if not self.gripper_worker.wait_idle(self.motion_timeout_s):
            raise SafetyStop(f"the gripper did not open within {self.motion_timeout_s} s")
        width = float(self.gripper.width)
        if width < 0.5 * self.max_width:
            raise SafetyStop(f"the gripper opened only to {width:.4f} m of {self.max_width:.4f} m: is it blocked?")
        self.open_width = min(self.max_width, width)
        self._gripper_target = 0.0
        self._target = None

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until the running motion has reached its target; False if it is still moving after `timeout`.

        A motion that ended in an error raises `SafetyStop` (after stopping and recovering).
        """
        try:
            return bool(self.robot.join_motion(timeout=self.motion_timeout_s if timeout is None else timeout))
        except self.franky_errors as err:
            self._stop()
            raise SafetyStop(f"the motion ended with {type(err).__name__}: {err}") from err

    def move_to(self, position: Any, euler: Any = (0.0, 0.0, 0.0)) -> None:
        """Move (blocking) to an absolute TCP pose: xyz inside the safety box, xyz Euler (0, 0, 0) gripper-down."""
        position = np.asarray(position, dtype=np.float64)
        low, high = self.safety.limits.workspace_low, self.safety.limits.workspace_high
        if position.shape != (3,) or not np.all((position >= low) & (position <= high)):
            raise SafetyStop(f"move_to {position.tolist()} is outside the workspace box {low}..{high}")
        self._finish_motion()
        f = self.franky
        target = self._ee_target(position, euler_xyz_to_matrix(euler))
        try:
            self.robot.move(f.CartesianMotion(target, f.ReferenceType.Absolute))
        except self.franky_errors as err:
            self._stop()
            raise SafetyStop(f"move_to failed: {type(err).__name__}: {err}") from err
        self._target = None

    def _finish_motion(self) -> None:
        """Let the running motion end (it reaches its target), or stop it after `motion_timeout_s`."""
        try:
            finished = self.robot.join_motion(timeout=self.motion_timeout_s)
        except self.franky_errors as err:
            log.warning("the last motion ended with %s: %s", type(err).__name__, err)
            finished = True
        if not finished:
            self._stop()
        self._recover()

    def _recover(self) -> None:
        try:
            if self.robot.has_errors and not self.robot.recover_from_errors():
                raise SafetyStop("franky's error recovery failed: the robot needs a look (and Desk)")
        except self.franky_errors as err:
            raise SafetyStop(f"franky's error recovery failed: {type(err).__name__}: {err}") from err

    def _stop(self) -> None:
        """Stop the arm now, collect the preempted motion's error, recover, and re-sync the target."""
        self.gripper_worker.clear()
        try:
            self.robot.stop()
        except self.franky_errors as err:
            log.warning("stop: %s: %s", type(err).__name__, err)
        try:
            self.robot.join_motion(timeout=self.motion_timeout_s)
        except self.franky_errors:  # "Move command preempted!": the stop we asked for
            pass
        self._recover()
        self._target = None

    def close(self) -> None:
        """Stop, recover, end the gripper thread and drop the connections (franky-sim takes one client)."""
        if self.robot is None:
            return
        try:
            self._stop()
        except SafetyStop as err:
            log.warning("close: %s", err)
        finally:
            self.gripper_worker.close()
            self.gripper_worker.gripper = None
            self.robot = self.gripper = None


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


class SceneCamera:
    """Our envs' exterior camera (`envs.franka_model` scene) rendered with the arm at given joint positions.

    A stand-in camera for dry runs without one (franky-sim in a subprocess exposes no view): FR3's kinematics
    match the scene's Panda (TCP within 0.1 mm at franky-sim's start), so frames follow the measured arm and
    look like the envs' images the shipped models were trained on. `FrankyRobot` passes `joint_position`.
    """

    def __init__(self, size: int = 64):
        import mujoco

        from common.droid import EXTERIOR_CAMERA
        from envs.franka_model import ARM_JOINTS, FINGER_JOINTS, FINGER_OPEN, scene_xml

        self._mujoco = mujoco
        self.model = mujoco.MjModel.from_xml_string(scene_xml())
        self.data = mujoco.MjData(self.model)
        self._qpos = [int(self.model.joint(j).qposadr[0]) for j in ARM_JOINTS]
        for finger in FINGER_JOINTS:
            self.data.joint(finger).qpos = FINGER_OPEN
        self.camera = EXTERIOR_CAMERA
        self.renderer = mujoco.Renderer(self.model, size, size)

    def __call__(self, joint_position: Any) -> np.ndarray:
        self.data.qpos[self._qpos] = np.asarray(joint_position, dtype=np.float64)
        self._mujoco.mj_kinematics(self.model, self.data)
        self._mujoco.mj_camlight(self.model, self.data)
        self.renderer.update_scene(self.data, camera=self.camera)
        return self.renderer.render().copy()


_scene_camera: SceneCamera | None = None


def scene_camera(joint_position: Any) -> np.ndarray:
    """`SceneCamera` at 64 x 64, made on first use: `franky.camera=envs.robot:scene_camera`."""
    global _scene_camera
    if _scene_camera is None:
        _scene_camera = SceneCamera()
    return _scene_camera(joint_position)
