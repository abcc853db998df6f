"""What the planners rely on, in one small module: the world model, the cost, the solver.

- `WorldModelLike`: encode frames to latents and roll latents out under candidate actions, all
  candidates in one batched call per step (world_model.models.WorldModel satisfies it);
- a cost is `CostFn`: candidate sequences (K, H, A) -> (K,), built as a sum of `CostTerm`s over one
  shared rollout (planners.costs);
- a `Solver` minimises a cost over action sequences inside `Bounds` (planners.solvers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from common.droid import MAX_DELTA_POS, MAX_DELTA_ROT

CostFn = Callable[[torch.Tensor], torch.Tensor]


class WorldModelLike(Protocol):
    """The part of the world-model contract a planner uses."""

    history: int
    readout: Any  # a StateReadout (latent -> state dims) or None

    @property
    def uses_states(self) -> bool: ...

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, 3, H, W) -> (B, T, N, D); a model of V camera views (`views`, default 1) takes
        (B, T, V, 3, H, W) and concatenates the views' tokens (N = V x tokens per view)."""

    def rollout(self, z_context: torch.Tensor, actions: torch.Tensor, context_actions: torch.Tensor | None = None,
                states: torch.Tensor | None = None) -> torch.Tensor:
        """(1 or K, C, N, D) context, (K, H, A) actions -> (K, H, N, D): a context of batch 1 is shared."""

    def next_state(self, s_t: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(B, 1, S) state, (B, 1, A) action -> the state after it, as the rollout integrates it."""


class CostTerm(Protocol):
    """One term of a planning cost: predicted latents (K, H, N, D) and the actions (K, H, A) -> (K,)."""

    def __call__(self, pred: torch.Tensor, actions: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Bounds:
    """Per-dimension action bounds, and dimensions held fixed (e.g. rotation deltas at zero)."""

    low: torch.Tensor
    high: torch.Tensor
    fixed: dict[int, float] = field(default_factory=dict)

    def clip(self, actions: torch.Tensor) -> torch.Tensor:
        out = torch.maximum(torch.minimum(actions, self.high), self.low)
        for dim, value in self.fixed.items():
            out[..., dim] = value
        return out

    def to(self, device: str | torch.device) -> Bounds:
        """The bounds on `device`, where the solver samples its candidates (the model's device)."""
        return Bounds(self.low.to(device), self.high.to(device), dict(self.fixed))

    @classmethod
    def droid(cls, max_pos: float = MAX_DELTA_POS, max_rot: float = MAX_DELTA_ROT,
              gripper: tuple[float, float] = (0.0, 1.0), fixed: dict[int, float] | None = None) -> Bounds:
        low = torch.tensor([-max_pos] * 3 + [-max_rot] * 3 + [gripper[0]])
        high = torch.tensor([max_pos] * 3 + [max_rot] * 3 + [gripper[1]])
        return cls(low, high, dict(fixed or {}))


@dataclass
class PlanResult:
    actions: torch.Tensor  # (H, A) best sequence
    cost: float
    iterations: int
    history: list[float] = field(default_factory=list)  # the lowest cost seen in each iteration


class Solver(Protocol):
    """`solve(cost, horizon, bounds, init=None) -> PlanResult`; `init` warm-starts; `reseed` makes it repeatable."""

    def solve(self, cost: CostFn, horizon: int, bounds: Bounds, init: torch.Tensor | None = None) -> PlanResult: ...

    def reseed(self, seed: int) -> None: ...
