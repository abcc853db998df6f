"""FrankyRobot per-step timings and pose errors: `python benchmarks/bench_franky.py [host=127.0.0.1 realtime=false]`.

Needs a running franky-sim (`franky-sim -s mujoco --hostname 127.0.0.1`) or a real FR3 at `host` (the arm moves
up to 20 cm from home: clear the workspace). Resets to home, then measures, printing one JSON line:
- single steps (`single_steps` moves of 3 cm / 0.1 rad, each waited out): `single_step_error_mm_max`,
  `single_step_error_mrad_max`, commanded vs measured pose;
- `stream_steps` steps of +1 cm in y at `control_hz`: `stream_moved_mm` (should be 10 x stream_steps),
  `stream_lag_mm` at the last step, `stream_settled_error_mm` once the arm stopped, `stream_z_range_mm` (sag);
- `loop_steps` steps at `control_hz`, y going back and forth by 1 cm and the gripper target flipping every 4 steps
  (while the fingers still move): `act_p50_ms`, `act_p99_ms`, `act_max_ms`, `observe_p50_ms`, `observe_p99_ms`,
  `gripper_moves_sent`;
- at home: `home_rpy_max_abs` (rad; gripper-down reads (0, 0, 0)) and `home_gripper` (0 fully open).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from common.droid import CARTESIAN_KEY, GRIPPER_KEY
from common.rotations import euler_xyz_to_matrix, rotation_vector
from envs.robot import FrankyRobot


def _errors(robot: FrankyRobot) -> tuple[float, float]:
    obs = robot.observe()
    position, rotation = robot.commanded_pose()
    angle = np.linalg.norm(rotation_vector(rotation @ euler_xyz_to_matrix(obs[CARTESIAN_KEY][3:]).T))
    return float(np.linalg.norm(obs[CARTESIAN_KEY][:3] - position)), float(angle)


def _solid_color(**_: Any) -> np.ndarray:
    return np.zeros((64, 64, 3), np.uint8)


def main(cfg: Any) -> None:
    period = 1.0 / float(cfg.control_hz)
    robot = FrankyRobot(cfg.host, _solid_color, realtime=bool(cfg.realtime), dynamics_factor=float(cfg.dynamics_factor))
    figures: dict[str, Any] = {"host": cfg.host, "dynamics_factor": float(cfg.dynamics_factor)}
    try:
        home = robot.reset()
        figures["home_rpy_max_abs"] = float(np.abs(home[CARTESIAN_KEY][3:]).max())
        figures["home_gripper"] = float(home[GRIPPER_KEY][0])

        moves = [(0.03, 0, 0, 0, 0, 0), (0, 0.03, 0, 0, 0, 0), (0, 0, -0.03, 0, 0, 0), (0, 0, 0, 0.1, 0, 0),
                 (0, 0, 0, 0, 0.1, 0), (0, 0, 0, 0, 0, 0.1)]
        errors = []
        for k in range(int(cfg.single_steps)):
            sign = 1.0 if (k // len(moves)) % 2 == 0 else -1.0
            robot.observe()
            robot.act([*(sign * np.array(moves[k % len(moves)])), 0.0])
            robot.settle()
            errors.append(_errors(robot))
        figures["single_step_error_mm_max"] = max(e for e, _ in errors) * 1e3
        figures["single_step_error_mrad_max"] = max(r for _, r in errors) * 1e3

        start = robot.reset()[CARTESIAN_KEY]
        heights = []
        tick = time.monotonic()
        for _ in range(int(cfg.stream_steps)):
            heights.append(robot.observe()[CARTESIAN_KEY][2])
            robot.act([0.0, 0.01, 0.0, 0.0, 0.0, 0.0, 0.0])
            tick += period
            time.sleep(max(0.0, tick - time.monotonic()))
        figures["stream_lag_mm"] = _errors(robot)[0] * 1e3
        robot.settle()
        end = robot.observe()[CARTESIAN_KEY]
        figures["stream_moved_mm"] = float(np.linalg.norm(end[:3] - start[:3])) * 1e3
        figures["stream_settled_error_mm"] = _errors(robot)[0] * 1e3
        figures["stream_z_range_mm"] = float(np.ptp(heights)) * 1e3

        robot.reset()
        act_ms, observe_ms = [], []
        tick = time.monotonic()
        for k in range(int(cfg.loop_steps)):
            t = time.perf_counter()
            robot.observe()
            observe_ms.append((time.perf_counter() - t) * 1e3)
            dy = 0.01 if (k // 5) % 2 == 0 else -0.01
            t = time.perf_counter()
            robot.act([0.0, dy, 0.0, 0.0, 0.0, 0.0, float((k // 4) % 2)])
            act_ms.append((time.perf_counter() - t) * 1e3)
            tick += period
            time.sleep(max(0.0, tick - time.monotonic()))
        figures.update(act_p50_ms=np.percentile(act_ms, 50), act_p99_ms=np.percentile(act_ms, 99),
                       act_max_ms=max(act_ms), observe_p50_ms=np.percentile(observe_ms, 50),
                       observe_p99_ms=np.percentile(observe_ms, 99), loop_steps=len(act_ms),
                       gripper_moves_sent=robot.gripper_worker.sent)
        robot.reset()
    finally:
        robot.close()
    print(json.dumps({k: round(float(v), 4) if isinstance(v, (float, np.floating)) else v for k, v in figures.items()}))


if __name__ == "__main__":
    from common.cli import run as run_app

    run_app(main, "bench_franky")
