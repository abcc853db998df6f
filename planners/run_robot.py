"""Run one goal-reaching episode through the planning server: `python planners/run_robot.py robot=sim server=ws://127.0.0.1:8000`.

The robot (`sim`: one of our MuJoCo envs; `franky`: a real Franka through franky-control) is
observed at a fixed control rate; whenever the last action chunk is used up, the observation goes to
the server, which replies with the next chunk; every action passes the shared safety layer. The
episode is recorded as a Droid-style HDF5 file (images, Cartesian and joint state, the actions
actually sent), so a deployment produces training data. A `SafetyStop` or a lost server ends the
episode; what was recorded up to then is still written (atomically), with the reason in its attributes.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np

from common.config import build_config
from common.droid import (
    CARTESIAN_DELTA_ACTION,
    CARTESIAN_KEY,
    CONTROL_HZ,
    EXTERIOR_CAMERA,
    FRANKA_ACTION_KEYS,
    GOAL_KEY,
    GRIPPER_KEY,
    IMAGE_KEY,
    JOINTS_KEY,
    RESET_KEY,
)
from datasets.writer import EpisodeWriter
from envs.franka_model import HOME_QPOS
from envs.robot import FrankyRobot, Robot, SimRobot
from envs.safety import SafetyLayer, SafetyLimits, SafetyStop
from planners.client import PlanningClient, ServerError


@dataclass
class FrankyConfig:
    """`franky:` of configs/run_robot.yaml: the arguments of `envs.robot.FrankyRobot`."""

    host: str = "172.16.0.2"  # the robot's FCI address; 127.0.0.1 for franky-sim
    camera: str | None = None  # module:function -> uint8 (H, W, 3) exterior frame (envs.robot:scene_camera: rendered)
    realtime: bool = True  # false: franky.RealtimeConfig.Ignore (franky-sim, or a kernel without real-time support)
    dynamics_factor: float = 0.1  # franky relative dynamics (velocity/acceleration/jerk scale), in (0, 1]
    robot_options: dict[str, Any] | None = None  # more franky.Robot keyword arguments, e.g. default_force_threshold
    gripper_speed: float = 0.1  # m/s
    gripper_deadband: float = 0.05  # a gripper target change below this is not sent
    home: list[float] | None = field(default_factory=lambda: list(HOME_QPOS))  # joints at reset (null: stay)
    max_target_error: float = 0.1  # m between commanded target and measured pose before the target is re-synced
    max_target_rotation: float = 0.3  # rad, the same for the orientation
    motion_timeout_s: float = 10.0  # longest wait for a motion or the gripper at reset


@dataclass
class RobotRunConfig:
    """configs/run_robot.yaml."""

    robot: str = "sim"  # sim | franky
    server: str = "ws://127.0.0.1:8000"
    env_id: str = "FrankaReach-v0"  # robot=sim
    env_kwargs: dict[str, Any] | None = None
    seed: int = 0
    goal_image: str | None = None  # PNG/JPG of the goal from the exterior camera (required for franky)
    max_steps: int = 30
    control_hz: float = CONTROL_HZ
    stop_on_success: bool = True  # sim knows success; a real robot runs max_steps
    record: str | None = "runs/robot/episode.h5"  # Droid-style HDF5 of the episode (null: none)
    connect_timeout_s: float = 30.0
    request_timeout_s: float = 10.0  # no reply in time stops the episode
    franky: FrankyConfig = field(default_factory=FrankyConfig)
    safety: SafetyLimits = field(default_factory=SafetyLimits)


def make_robot(config: RobotRunConfig) -> Robot:
    safety = SafetyLayer(config.safety)
    if config.robot == "sim":
        import envs  # noqa: F401 - registers the ids

        return SimRobot(config.env_id, safety=safety, **dict(config.env_kwargs or {}))
    if config.robot == "franky":
        f = config.franky
        if not f.camera:
            raise ValueError("robot=franky needs franky.camera=module:function returning the exterior camera frame")
        module, name = str(f.camera).split(":")
        camera = getattr(importlib.import_module(module), name)
        return FrankyRobot(f.host, camera, safety, dynamics_factor=f.dynamics_factor, realtime=f.realtime,
                           robot_options=f.robot_options, gripper_speed=f.gripper_speed,
                           gripper_deadband=f.gripper_deadband, home=list(f.home) if f.home else None,
                           max_target_error=f.max_target_error, max_target_rotation=f.max_target_rotation,
                           motion_timeout_s=f.motion_timeout_s)
    raise ValueError(f"robot must be 'sim' or 'franky', got {config.robot!r}")


def run(config: RobotRunConfig, robot: Robot | None = None) -> dict[str, Any]:
    """One episode; returns its summary. `robot` overrides the one the config names."""
    robot = robot or make_robot(config)
    obs = robot.reset(seed=config.seed)
    if config.goal_image:
        goal = np.asarray(imageio.imread(config.goal_image))[..., :3].astype(np.uint8)
    elif isinstance(robot, SimRobot):
        goal = robot.goal_image()
    else:
        raise ValueError("pass goal_image=PATH (a PNG/JPG of the goal seen from the exterior camera)")
    client = PlanningClient(config.server, connect_timeout=config.connect_timeout_s, timeout=config.request_timeout_s)
    out = Path(config.record) if config.record else None
    writer = None
    if out is not None:
        writer = EpisodeWriter(out, cameras=[EXTERIOR_CAMERA], control_hz=config.control_hz, action_space=CARTESIAN_DELTA_ACTION,
                               robot_type=f"franka_{config.robot}", task="goal_reaching",
                               attrs={"server": config.server, "model": str(client.metadata.get("model")), "seed": config.seed})
    period = 1.0 / config.control_hz
    pending: list[np.ndarray] = []
    stop_reason, success, steps, overruns, plan_ms, rtt_ms = "max_steps", False, 0, 0, [], []
    first = True
    next_tick = time.monotonic()
    try:
        for steps in range(1, config.max_steps + 1):  # noqa: B007 - steps is reported after the loop
            if not pending:
                request = {IMAGE_KEY: obs[IMAGE_KEY], CARTESIAN_KEY: obs[CARTESIAN_KEY],
                           GRIPPER_KEY: obs[GRIPPER_KEY]}
                if first:
                    request.update({GOAL_KEY: goal, RESET_KEY: True})
                    first = False
                start = time.perf_counter()
                reply = client.infer(request)
                rtt_ms.append((time.perf_counter() - start) * 1000)
                plan_ms.append(float(reply["server_timing"]["infer_ms"]))
                pending = list(np.asarray(reply["actions"], dtype=np.float32))
                obs = robot.observe()  # planning took time: act against a fresh observation
            sent = robot.act(pending.pop(0))
            if writer is not None:
                writer.add_step(images={EXTERIOR_CAMERA: obs[IMAGE_KEY]}, cartesian_position=obs[CARTESIAN_KEY],
                                gripper_position=float(obs[GRIPPER_KEY][0]), joint_positions=obs.get(JOINTS_KEY),
                                actions={FRANKA_ACTION_KEYS[0]: sent[:6], FRANKA_ACTION_KEYS[1]: sent[6]})
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                overruns += 1
                next_tick = time.monotonic()
            obs = robot.observe()
            success = bool(getattr(robot, "info", {}).get("is_success", False))
            if success and config.stop_on_success:
                stop_reason = "success"
                break
    except (SafetyStop, ServerError, TimeoutError, ConnectionError) as err:
        stop_reason = f"{type(err).__name__}: {err}"
    finally:
        client.close()
        distance = float(getattr(robot, "info", {}).get("distance", np.nan))
        robot.close()
        path = None
        if writer is not None:
            if len(writer):
                path = str(writer.close(success=success, stop_reason=stop_reason))
            else:
                writer.abort()
    return {"success": success, "steps": steps, "stop_reason": stop_reason, "final_distance": distance,
            "overruns": overruns, "mean_plan_ms": float(np.mean(plan_ms)) if plan_ms else None,
            "mean_request_ms": float(np.mean(rtt_ms)) if rtt_ms else None, "recorded": path,
            "safety_clips": dict(robot.safety.clip_counts)}


def main(cfg: Any) -> None:
    config = build_config(RobotRunConfig, cfg)
    summary = run(config)
    print(f"{config.robot} robot: {'success' if summary['success'] else 'no success'} after {summary['steps']} steps "
          f"({summary['stop_reason']}), final distance {summary['final_distance']:.3f}, "
          f"{summary['overruns']} control-period overruns, recorded {summary['recorded']}")
    print(json.dumps(summary))


if __name__ == "__main__":
    from common.cli import run as run_app

    run_app(main, "run_robot")
