"""Receding-horizon control in latent space: plan, execute the first k actions, observe, warm-start, replan.

The context is the model's full history of real observations (its `history` latest frames, the
actions executed between them and their states), not a single frame. Past frames are encoded once
and kept. The cost is the sum of the terms `MPCConfig` asks for (planners.costs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from planners.costs import LatentGoalCost, ReadoutGoalCost, StateGoalCost, rollout_cost
from planners.protocols import Bounds, CostTerm, Solver, WorldModelLike


@dataclass
class MPCConfig:
    horizon: int = 1
    execute: int = 1  # actions executed per plan
    metric: str = "l1"  # l1 | l2
    final_only: bool = True  # cost at the end of the horizon (else summed over it)
    state_weight: float = 0.0  # true goal state term: oracle checks only
    readout_weight: float | None = 0.0  # weight of the model's state-readout distance (metres); None: resolved later


class MPCPlanner:
    """Holds the goal and the observed history; `act` returns the next actions to execute."""

    def __init__(self, model: WorldModelLike, solver: Solver, bounds: Bounds, config: MPCConfig,
                 device: str | torch.device = "cpu"):
        if config.execute > config.horizon:
            raise ValueError(f"cannot execute {config.execute} actions of a {config.horizon}-step plan")
        if config.readout_weight and getattr(model, "readout", None) is None:
            raise ValueError("mpc.readout_weight > 0 needs a checkpoint with a state readout (trained with "
                             "model.readout_weight > 0); pass mpc.readout_weight=0 for this one")
        self.model, self.solver, self.bounds, self.config = model, solver, bounds, config
        self.device = torch.device(device)
        self.reset(None)

    def reset(self, goal_frame: np.ndarray | None, goal_state: np.ndarray | None = None) -> None:
        self.latents: list[torch.Tensor] = []
        self.states: list[torch.Tensor] = []
        self.executed: list[torch.Tensor] = []
        self.plan: torch.Tensor | None = None
        self.plan_seconds: list[float] = []
        self.goal_state = None if goal_state is None else torch.as_tensor(goal_state, dtype=torch.float32)
        self.z_goal = None if goal_frame is None else self._encode(goal_frame)

    @torch.no_grad()
    def _encode(self, frame: np.ndarray) -> torch.Tensor:
        pixels = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None, None].to(self.device)
        return self.model.encode(pixels)[0, 0]  # (N, D)

    def cost_terms(self, states: torch.Tensor | None) -> list[CostTerm]:
        """The terms of the cost toward the current goal, as the config asks."""
        c = self.config
        terms: list[CostTerm] = [LatentGoalCost(self.z_goal, c.metric, c.final_only)]
        if c.readout_weight:
            terms.append(ReadoutGoalCost(self.model.readout, self.z_goal, c.readout_weight, c.final_only))
        if c.state_weight and self.goal_state is not None and states is not None:
            terms.append(StateGoalCost(states[-1, :3], self.goal_state[:3].to(self.device), c.state_weight))
        return terms

    def act(self, frame: np.ndarray, state: np.ndarray | None = None) -> torch.Tensor:
        """Observe one frame (H, W, 3) uint8 (and state), plan, return the next (k, A) actions."""
        if self.z_goal is None:
            raise RuntimeError("MPCPlanner.act needs reset(goal_frame) first")
        h = self.model.history
        self.latents = (self.latents + [self._encode(frame)])[-h:]
        if state is not None:
            self.states = (self.states + [torch.as_tensor(state, dtype=torch.float32)])[-h:]
        context = torch.stack(self.latents)
        past = torch.stack(self.executed[-(len(self.latents) - 1):]).to(self.device) if len(self.latents) > 1 else None
        states = torch.stack(self.states).to(self.device) if self.states and self.model.uses_states else None
        cost = rollout_cost(self.model, context, self.cost_terms(states), past, states)
        init = None
        if self.plan is not None:  # warm start: the previous plan shifted by what was executed
            init = self.plan[self.config.execute:]
        start = time.perf_counter()
        result = self.solver.solve(cost, self.config.horizon, self.bounds, init)
        self.plan_seconds.append(time.perf_counter() - start)
        self.plan = result.actions.detach().cpu()
        chosen = self.plan[: self.config.execute]
        self.executed = (self.executed + list(chosen))[-h:]
        return chosen
