"""An ablation agent: the planner's cost with the simulator's dynamics in place of the world model's predictor.

`agent=sim_greedy` separates the two halves of a world model when goal reaching fails. At every step it tries a
grid of end-effector moves on a copy of the MuJoCo simulation, renders each outcome, encodes the frames with the
model's encoder and executes the move whose *observed* latent has the lowest planning cost (the planner's own
terms: latent distance to the goal image plus the state-readout term). No predictor is involved, so:

- if this agent reaches the goals, the encoder's cost landscape leads there and the predictor is what fails;
- if it does not, the latent itself cannot tell the goal pose apart from where the arm stops, and no predictor
  or solver can fix that.

It needs the true simulator (our Franka envs: their `model`, `data` and `step`), so it is a diagnostic, never a
controller for a real robot.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import mujoco
import numpy as np
import torch

from planners.costs import latent_distance
from planners.mpc import MPCPlanner, PlanStep

#: Fractions of the largest position step tried per axis (7 levels: 343 moves per control step).
LEVELS = (-1.0, -0.3, -0.1, 0.0, 0.1, 0.3, 1.0)


def position_moves(max_delta: float, gripper: float, levels: tuple[float, ...] = LEVELS) -> np.ndarray:
    """(K, 7) env actions: every combination of `levels` x `max_delta` on x, y, z; no rotation; the gripper held."""
    grid = np.array(list(itertools.product(levels, repeat=3)), dtype=np.float64) * max_delta
    moves = np.zeros((len(grid), 7))
    moves[:, :3], moves[:, 6] = grid, gripper
    return moves


class SimGreedyAgent:
    """One-step greedy search over `position_moves`, each scored by the planner's cost on its rendered outcome."""

    subgoals = False

    def __init__(self, planner: MPCPlanner, levels: tuple[float, ...] = LEVELS):
        self.planner, self.levels = planner, levels
        self.cameras = planner.cameras
        self.seconds: list[float] = []
        self.costs: torch.Tensor | None = None  # (K,) the last step's cost of every move tried

    def reset(self, env: Any, goal_image: Any, info: dict[str, Any], seed: int | None) -> None:
        sim = env.unwrapped
        if not all(hasattr(sim, name) for name in ("model", "data", "action_space")) or self.cameras:
            raise ValueError("agent=sim_greedy needs one of our Franka envs (a MuJoCo model and data to copy) and a "
                             "one-camera model")
        self.planner.reset(goal_image, info.get("goal_state"))
        self.seconds = []

    @torch.no_grad()
    def act(self, env: Any, obs: Any) -> list[Callable[[Any], np.ndarray]]:
        start = time.perf_counter()
        sim = env.unwrapped
        gripper = float(getattr(sim, "_gripper_target", 0.0))
        moves = position_moves(float(sim.action_space.high[0]), gripper, self.levels)
        saved = mujoco.MjData(sim.model)
        mujoco.mj_copyData(saved, sim.model, sim.data)
        frames = []
        try:
            for move in moves:
                mujoco.mj_copyData(sim.data, sim.model, saved)
                sim._gripper_target = gripper
                frames.append(sim.step(move)[0]["pixels"])
        finally:  # the real episode goes on from where it was
            mujoco.mj_copyData(sim.data, sim.model, saved)
            sim._gripper_target = gripper
        frames.append(obs["pixels"])  # the frame now, for the diagnostics
        pixels = torch.stack([self.planner.pixels(frame) for frame in frames])[:, None]  # (K + 1, 1, 3, H, W)
        z = self.planner.model.encode(pixels.to(self.planner.device))  # observed, not predicted
        z, z_now = z[:-1], z[-1, 0]
        actions = torch.as_tensor(moves, dtype=torch.float32)[:, None]
        self.costs = sum(term(z, actions) for term in self.planner.cost_terms(None))
        index = int(torch.argmin(self.costs))
        self.seconds.append(time.perf_counter() - start)
        self._trace(z_now, z[index], float(self.costs[index]))
        return [lambda _obs: moves[index]]

    def _trace(self, z_now: torch.Tensor, z_next: torch.Tensor, cost: float) -> None:
        """A `PlanStep` per move, so the episode plots show the latent distance and the readout as for the planner."""
        p = self.planner
        readout = getattr(p.model, "readout", None)
        p.trace.append(PlanStep(0, float(latent_distance(z_now[None, None], p.z_goal, p.config.metric)), cost, [cost],
                                None if readout is None else readout(z_now).cpu().numpy(),
                                None if readout is None else readout(z_next).cpu().numpy()))

    def plan_seconds_per_step(self) -> float:
        return float(np.mean(self.seconds)) if self.seconds else 0.0
