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
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
from omegaconf import OmegaConf

from common.droid import (
    CARTESIAN_DELTA_ACTION,
    CARTESIAN_KEY,
    EXTERIOR_CAMERA,
    FRANKA_ACTION_KEYS,
    GOAL_KEY,
    GRIPPER_KEY,
    IMAGE_KEY,
    JOINTS_KEY,
    RESET_KEY,
)
from datasets.writer import EpisodeWriter
from envs.robot import FrankyRobot, Robot, SimRobot
from envs.safety import SafetyLayer, SafetyLimits, SafetyStop
from planners.client import PlanningClient, ServerError


def make_robot(cfg: Any) -> Robot:
    limits = OmegaConf.to_container(cfg.safety) if OmegaConf.is_config(cfg.safety) else dict(cfg.safety)
    safety = SafetyLayer(SafetyLimits(**{k: tuple(v) if isinstance(v, list) else v for k, v in limits.items()}))
    if cfg.robot == "sim":
        import envs  # noqa: F401 - registers the ids

        return SimRobot(cfg.env_id, safety=safety, **dict(cfg.env_kwargs or {}))
    if cfg.robot == "franky":
        f = cfg.franky
        if not f.camera:
            raise ValueError("robot=franky needs franky.camera=module:function returning the exterior camera frame")
        module, name = str(f.camera).split(":")
        camera = getattr(importlib.import_module(module), name)
        return FrankyRobot(f.host, camera, safety, f.dynamics_factor, home=list(f.home) if f.home else None)
    raise ValueError(f"robot must be 'sim' or 'franky', got {cfg.robot!r}")


def run(cfg: Any, robot: Robot | None = None) -> dict[str, Any]:
    """One episode; returns its summary. `robot` overrides the one the config names."""
    robot = robot or make_robot(cfg)
    obs = robot.reset(seed=cfg.seed)
    if cfg.goal_image:
        goal = np.asarray(imageio.imread(cfg.goal_image))[..., :3].astype(np.uint8)
    elif isinstance(robot, SimRobot):
        goal = robot.goal_image()
    else:
        raise ValueError("pass goal_image=PATH (a PNG/JPG of the goal seen from the exterior camera)")
    client = PlanningClient(cfg.server, connect_timeout=cfg.connect_timeout_s, timeout=cfg.request_timeout_s)
    out = Path(cfg.record) if cfg.record else None
    writer = None
    if out is not None:
        writer = EpisodeWriter(out, cameras=[EXTERIOR_CAMERA], control_hz=cfg.control_hz, action_space=CARTESIAN_DELTA_ACTION,
                               robot_type=f"franka_{cfg.robot}", task="goal_reaching",
                               attrs={"server": cfg.server, "model": str(client.metadata.get("model")), "seed": cfg.seed})
    period = 1.0 / cfg.control_hz
    pending: list[np.ndarray] = []
    stop_reason, success, steps, overruns, plan_ms, rtt_ms = "max_steps", False, 0, 0, [], []
    first = True
    next_tick = time.monotonic()
    try:
        for steps in range(1, cfg.max_steps + 1):  # noqa: B007 - steps is reported after the loop
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
            if success and cfg.stop_on_success:
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
    summary = run(cfg)
    print(f"{cfg.robot} robot: {'success' if summary['success'] else 'no success'} after {summary['steps']} steps "
          f"({summary['stop_reason']}), final distance {summary['final_distance']:.3f}, "
          f"{summary['overruns']} control-period overruns, recorded {summary['recorded']}")
    print(json.dumps(summary))


if __name__ == "__main__":
    from common.cli import run as run_app

    run_app(main, "run_robot")
