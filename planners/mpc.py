"""Receding-horizon control in latent space: plan, execute the first k actions, observe, warm-start, replan.

The context is the model's full history of real observations (its `history` latest frames, the
actions executed between them and their states), not a single frame. Past frames are encoded once
and kept. Works with any gymnasium env whose observation is a dict with `pixels` (and `state`), or
that renders `rgb_array`; the goal image comes from `info["goal_image"]` or `env.unwrapped.goal_image()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from planners.costs import latent_cost
from planners.solvers import Bounds, Solver


@dataclass
class MPCConfig:
    horizon: int = 1
    execute: int = 1  # actions executed per plan
    metric: str = "l1"
    final_only: bool = True
    state_weight: float = 0.0
    readout_weight: float = 0.0  # weight of the model's state-readout distance (metres) in the cost


class MPCPlanner:
    """Holds the goal and the observed history; `act` returns the next actions to execute."""

    def __init__(self, model: Any, solver: Solver, bounds: Bounds, config: MPCConfig, device: str | torch.device = "cpu"):
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

    def act(self, frame: np.ndarray, state: np.ndarray | None = None) -> torch.Tensor:
        """Observe one frame (H, W, 3) uint8 (and state), plan, return the next (k, A) actions."""
        if self.z_goal is None:
            raise RuntimeError("MPCPlanner.act needs reset(goal_frame) first")
        h = self.model.history
        self.latents = (self.latents + [self._encode(frame)])[-h:]
        if state is not None:
            self.states = (self.states + [torch.as_tensor(state, dtype=torch.float32)])[-h:]
        context = torch.stack(self.latents)
        past = torch.stack(self.executed[-(len(self.latents) - 1):]) if len(self.latents) > 1 else None
        states = torch.stack(self.states).to(self.device) if self.states and self.model.uses_states else None
        cost = latent_cost(self.model, context, self.z_goal, self.config.metric, self.config.final_only,
                           None if past is None else past.to(self.device), states,
                           None if self.goal_state is None else self.goal_state.to(self.device), self.config.state_weight,
                           getattr(self.model, "readout", None), self.config.readout_weight)
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


@dataclass
class EpisodeResult:
    success: bool
    final_distance: float
    steps: int
    plan_seconds_per_step: float
    frames: list[np.ndarray] = field(repr=False, default_factory=list)
    goal_image: np.ndarray | None = field(repr=False, default=None)


def observe(env: Any, obs: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(pixels, state) from a Dict observation, or from render() and no state."""
    if isinstance(obs, dict) and "pixels" in obs:
        return obs["pixels"], obs.get("state")
    return env.render(), None


def run_episode(env: Any, planner: MPCPlanner, max_steps: int, seed: int | None = None,
                to_env_action: Callable[[np.ndarray, Any], np.ndarray] | None = None,
                record: bool = True, reset_options: dict[str, Any] | None = None,
                goal_image: np.ndarray | None = None) -> EpisodeResult:
    """One goal-reaching episode: reset, plan toward the goal image (the env's, unless `goal_image` is
    given), stop on success or after max_steps."""
    obs, info = env.reset(seed=seed, options=reset_options)
    goal = goal_image if goal_image is not None else info.get("goal_image") if isinstance(info, dict) else None
    if goal is None:
        goal = env.unwrapped.goal_image()
    planner.reset(goal, info.get("goal_state"))
    frames, steps = [], 0
    success = bool(info.get("is_success", False))
    distance = float(info.get("distance", np.nan))
    while steps < max_steps and not success:
        pixels, state = observe(env, obs)
        if record:
            frames.append(pixels)
        for action in planner.act(pixels, state).numpy():
            env_action = to_env_action(action, obs) if to_env_action else action
            obs, _, terminated, truncated, info = env.step(env_action)
            steps += 1
            success = bool(info.get("is_success", False))
            distance = float(info.get("distance", np.nan))
            if success or terminated or truncated or steps >= max_steps:
                break
        if terminated or truncated:
            break
    if record:
        frames.append(observe(env, obs)[0])
    return EpisodeResult(success, distance, steps, float(np.mean(planner.plan_seconds)) if planner.plan_seconds else 0.0,
                         frames, goal)


def run_policy_episode(env: Any, policy: Any, max_steps: int, seed: int | None = None,
                       record: bool = True, reset_options: dict[str, Any] | None = None) -> EpisodeResult:
    """A baseline episode with an `envs.policies` policy (random, scripted expert), scored like `run_episode`."""
    obs, info = env.reset(seed=seed, options=reset_options)
    policy.reset(env.unwrapped, seed if seed is not None else 0)
    goal = info.get("goal_image")
    frames = [observe(env, obs)[0]] if record else []
    success, distance, steps = bool(info.get("is_success", False)), float(info.get("distance", np.nan)), 0
    while steps < max_steps and not success:
        obs, _, terminated, truncated, info = env.step(policy(obs))
        steps += 1
        success, distance = bool(info.get("is_success", False)), float(info.get("distance", np.nan))
        if record:
            frames.append(observe(env, obs)[0])
        if terminated or truncated:
            break
    return EpisodeResult(success, distance, steps, 0.0, frames, goal)


def delta_gripper_to_target(model_actions: np.ndarray, gripper: float) -> np.ndarray:
    """Delta-pose actions (H, 7) with the gripper as a change -> env/robot actions with an absolute gripper target."""
    out = np.asarray(model_actions, dtype=np.float32).copy()
    out[:, 6] = np.clip(gripper + np.cumsum(out[:, 6]), 0.0, 1.0)
    return out


def franka_delta_pose_adapter(action: np.ndarray, obs: Any) -> np.ndarray:
    """Delta-pose model actions (dgripper) -> our Franka env's actions (absolute gripper target)."""
    current = float(obs["state"][6]) if isinstance(obs, dict) and "state" in obs else 0.0
    return delta_gripper_to_target(np.asarray(action)[None], current)[0]
