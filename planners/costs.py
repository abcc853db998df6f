"""Planning costs: distance between predicted and goal latents, plus optional terms in metres.

`latent_cost(...)` returns `cost(actions (K, H, A)) -> (K,)` that rolls the world model out for all K
candidates in one batched call per step (the model's `rollout`), so solvers never loop over candidates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from planners.solvers import CostFn


class Dynamics(Protocol):
    """What planners need of a world model (DESIGN.md, contract 2)."""

    history: int

    @property
    def uses_states(self) -> bool: ...

    def rollout(self, z_context: torch.Tensor, actions: torch.Tensor, context_actions: torch.Tensor | None = None,
                states: torch.Tensor | None = None) -> torch.Tensor: ...


def latent_distance(pred: torch.Tensor, goal: torch.Tensor, metric: str) -> torch.Tensor:
    """(K, H, N, D) vs (N, D) -> (K, H): mean L1 or mean squared L2 over tokens and channels."""
    diff = pred - goal
    if metric == "l1":
        return diff.abs().mean(dim=(-2, -1))
    if metric == "l2":
        return diff.pow(2).mean(dim=(-2, -1))
    raise ValueError(f"metric must be 'l1' or 'l2', got {metric!r}")


def latent_cost(model: Dynamics, z_context: torch.Tensor, z_goal: torch.Tensor, metric: str = "l1",
                final_only: bool = True, context_actions: torch.Tensor | None = None,
                states: torch.Tensor | None = None, goal_state: torch.Tensor | None = None,
                state_weight: float = 0.0, readout: Callable[[torch.Tensor], torch.Tensor] | None = None,
                readout_weight: float = 0.0) -> CostFn:
    """Cost of candidate sequences from one observed context (C, N, D) toward one goal latent (N, D).

    `final_only`: distance at the end of the horizon (else summed over it). `goal_state` with
    `state_weight` adds the distance between the goal's xyz and the xyz reached by integrating the
    position deltas from the last observed state (the goal's true state: for oracle checks only).
    `readout` with `readout_weight` adds the Euclidean distance between the readouts (the model's
    `StateReadout`, e.g. end-effector xyz) of the predicted latents and of the goal latent: the
    position the world model predicts against the position it sees in the goal image.
    """
    if readout_weight and readout is None:
        raise ValueError("readout_weight > 0 needs a world model trained with a state readout (model.readout_weight > 0)")
    goal_readout = readout(z_goal) if readout_weight else None

    def cost(actions: torch.Tensor) -> torch.Tensor:
        k = actions.shape[0]
        ctx = z_context[None].expand(k, *z_context.shape)
        past = None if context_actions is None else context_actions[None].expand(k, *context_actions.shape)
        st = None if states is None else states[None].expand(k, *states.shape)
        pred = model.rollout(ctx, actions.to(z_context.dtype), past, st)
        dist = latent_distance(pred, z_goal, metric)
        if goal_readout is not None:
            dist = dist + readout_weight * (readout(pred) - goal_readout).norm(dim=-1)
        total = dist[:, -1] if final_only else dist.sum(1)
        if goal_state is not None and state_weight and states is not None:
            reached = states[-1, :3] + actions[..., :3].sum(1)
            total = total + state_weight * (reached - goal_state[:3]).norm(dim=-1)
        return total

    return cost
