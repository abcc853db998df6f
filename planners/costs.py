"""Planning costs as sums of small terms over one shared rollout.

`rollout_cost(model, z_context, terms, ...)` returns `cost(actions (K, H, A)) -> (K,)`: it rolls the world
model out for all K candidates in one batched call per step (the model's `rollout`) and adds the terms.
Terms: `LatentGoalCost` (distance between predicted and goal latents), `ReadoutGoalCost` (the model's
state readout of predicted vs goal latents, in metres; `readout_scale` turns other units, such as a yaw in radians,
into metres), `StateBoxCost` (keeps the planned robot state inside the box the data covered, where the model's
predictions and readout hold), `ActionCost` (the planned moves' size: no move the goal terms do not repay),
`ActionChangeCost` (the planned moves' changes, from the action executed last: no shaking back and forth),
`StateGoalCost` (the true goal state: oracle checks only). Each reduces over the horizon itself (its last step, or the sum).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from planners.protocols import Bounds, CostFn, CostTerm, WorldModelLike

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def latent_distance(pred: torch.Tensor, goal: torch.Tensor, metric: str) -> torch.Tensor:
    """(K, H, N, D) vs (N, D) -> (K, H): mean L1 or mean squared L2 over tokens and channels."""
    diff = pred - goal
    if metric == "l1":
        return diff.abs().mean(dim=(-2, -1))
    if metric == "l2":
        return diff.pow(2).mean(dim=(-2, -1))
    raise ValueError(f"metric must be 'l1' or 'l2', got {metric!r}")


def over_horizon(per_step: torch.Tensor, final_only: bool) -> torch.Tensor:
    """(K, H) -> (K,): the last step's value, or the sum over the horizon."""
    return per_step[:, -1] if final_only else per_step.sum(1)


@dataclass
class LatentGoalCost:
    """Distance between the predicted latents and the goal image's latent (N, D)."""

    goal: torch.Tensor
    metric: str = "l1"
    final_only: bool = True

    def __post_init__(self) -> None:
        if self.metric not in ("l1", "l2"):
            raise ValueError(f"metric must be 'l1' or 'l2', got {self.metric!r}")

    def __call__(self, pred: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return over_horizon(latent_distance(pred, self.goal, self.metric), self.final_only)


def readout_scale(readout_dims: Sequence[int] | None, scale: Mapping[int, float] | None) -> torch.Tensor | None:
    """Per readout output, the factor that turns its unit into metres (`scale`: state dim -> factor, 1 for the
    dims it leaves out; e.g. {5: 0.2}: a yaw error of 0.1 rad counts as 2 cm). None when there is nothing to scale.
    A state dim the readout does not read is an error naming the dims it reads."""
    if not scale:
        return None
    if readout_dims is None:
        raise ValueError("mpc.readout_scale needs a checkpoint with a state readout (trained with model.readout_weight > 0)")
    dims = [int(d) for d in readout_dims]
    missing = sorted(int(d) for d in scale if int(d) not in dims)
    if missing:
        raise ValueError(f"mpc.readout_scale names state dim(s) {missing}, which the model's readout does not read "
                         f"(it reads {dims}; train with model.readout_dims including them)")
    factors = {int(d): float(f) for d, f in scale.items()}
    return torch.tensor([factors.get(d, 1.0) for d in dims], dtype=torch.float32)


def readout_gap(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean distance over the last axis between two readouts (..., R), each output times its `scale`: the one
    distance both the readout cost and the sub-goal switch use."""
    diff = a - b
    return (diff if scale is None else diff * scale.to(diff)).norm(dim=-1)


@dataclass
class ReadoutGoalCost:
    """weight x the Euclidean distance between the readouts (e.g. end-effector xyz, metres) of the predicted
    latents and of the goal latent: the position the model predicts against the one it sees in the goal image.
    `scale` (R,) weighs each readout output (e.g. a yaw in radians into metres; `readout_scale`)."""

    readout: Callable[[torch.Tensor], torch.Tensor] | None
    goal: torch.Tensor  # the goal latent (N, D)
    weight: float
    final_only: bool = True
    scale: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.readout is None:
            raise ValueError("a readout cost needs a world model trained with a state readout (model.readout_weight > 0)")
        self.goal_readout = self.readout(self.goal)

    def __call__(self, pred: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.weight * over_horizon(readout_gap(self.readout(pred), self.goal_readout, self.scale), self.final_only)


def state_box(box: Mapping[int, Sequence[float]] | None, action_dim: int) -> tuple[list[int], torch.Tensor, torch.Tensor] | None:
    """`mpc.state_box` ({state dim: [low, high]}) as (dims, low, high), checked: each dim must be one an action
    changes (action dim d moves state dim d) and each range low <= high. None when empty."""
    if not box:
        return None
    ranges = {int(d): list(value) for d, value in box.items()}  # config.json keys are strings
    dims = sorted(ranges)
    bad = [d for d in dims if not 0 <= d < action_dim]
    if bad:
        raise ValueError(f"mpc.state_box names state dim(s) {bad}; the model's actions change dims 0..{action_dim - 1}")
    for d in dims:
        if len(ranges[d]) != 2 or float(ranges[d][0]) > float(ranges[d][1]):
            raise ValueError(f"mpc.state_box[{d}] must be [low, high] with low <= high, got {ranges[d]}")
    limits = torch.tensor([ranges[d] for d in dims], dtype=torch.float32)
    return dims, limits[:, 0], limits[:, 1]


@dataclass
class StateBoxCost:
    """weight x how far the planned robot state leaves a box, summed over the horizon and the dims: the state
    reached by adding each planned action to the last observed state (action dim d is the change of state dim d,
    as in delta-pose actions and our Franka envs' own). Outside the states the data covered the readout saturates
    (pick-and-place: the yaw read 0.5 rad while the arm turned to 1.2, so the planner kept turning) and the
    predictions are guesses; the box keeps the plan where they hold."""

    start: torch.Tensor  # (S,) the last observed state
    dims: list[int]
    low: torch.Tensor
    high: torch.Tensor
    weight: float

    def __call__(self, pred: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        reached = self.start[self.dims].to(actions) + actions[..., self.dims].cumsum(1)  # (K, H, B)
        low, high = self.low.to(actions), self.high.to(actions)
        outside = (low - reached).clamp_min(0) + (reached - high).clamp_min(0)
        return self.weight * outside.sum(dim=(1, 2))


@dataclass
class ActionCost:
    """The planned actions' size: per dim, weight x |action| in units of that dim's half-range, summed over the
    dims and the horizon (L1). A plan moves only as far as the goal terms repay: near a goal they are flat to
    within the model's noise, and the best of the sampled plans is then a random full-range move (pick-and-place:
    the hand jittered +-2-3 cm step to step around a sub-goal with 1.5 cm of clearance). For delta actions only
    (an absolute gripper command's size is not a motion)."""

    dims: list[int]
    weights: torch.Tensor  # (B,) per dim in `dims`: cost per half-range
    span: torch.Tensor  # (B,) the half-range of each

    def __call__(self, pred: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        size = actions[..., self.dims].abs() / self.span.to(actions)  # (K, H, B)
        return (size * self.weights.to(actions)).sum(dim=(1, 2))


def _weighted_dims(weights: Mapping[int, float], bounds: Bounds,
                   what: str) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """The dims of a per-dim action weight map, their weights and half-ranges; a dim outside the actions, or held
    fixed, is refused in one line."""
    dims = [int(d) for d in weights]
    bad = [d for d in dims if not 0 <= d < len(bounds.low) or d in bounds.fixed or bounds.high[d] <= bounds.low[d]]
    if bad:
        raise ValueError(f"{what}: dims {bad} are not free action dims (actions have {len(bounds.low)} "
                         f"dims, fixed {sorted(bounds.fixed)})")
    span = (bounds.high[dims] - bounds.low[dims]) / 2
    return dims, torch.tensor([float(weights[d]) for d in weights]), span


def action_cost(weights: Mapping[int, float] | None, bounds: Bounds) -> ActionCost | None:
    """The `mpc.action_cost` term for these bounds (None for none)."""
    return ActionCost(*_weighted_dims(weights, bounds, "mpc.action_cost")) if weights else None


@dataclass
class ActionChangeCost:
    """The planned actions' changes: per dim, weight x |a_t - a_t-1| in units of that dim's half-range, summed over
    the dims and the horizon, the first step against the action executed last (`previous`, when there is one).
    Where the model's predictions are off (a cube in hand, far from the data), each plan chose a full move one
    way and the next plan the move back: the hand shook +-10 cm step to step and threw the cube. This charges the
    reversal, not the move."""

    dims: list[int]
    weights: torch.Tensor  # (B,) per dim in `dims`: cost per half-range of change
    span: torch.Tensor  # (B,) the half-range of each
    previous: torch.Tensor | None = None  # (A,) the action executed last

    def __call__(self, pred: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        moves = actions[..., self.dims]  # (K, H, B)
        if self.previous is not None:
            before = self.previous.to(actions)[self.dims].expand(moves.shape[0], 1, -1)
            moves = torch.cat([before, moves], dim=1)
        change = (moves[:, 1:] - moves[:, :-1]).abs() / self.span.to(actions)  # (K, H or H - 1, B)
        return (change * self.weights.to(actions)).sum(dim=(1, 2))


def action_change_cost(weights: Mapping[int, float] | None, bounds: Bounds) -> ActionChangeCost | None:
    """The `mpc.action_change` term for these bounds (None for none); `previous` is set per plan."""
    return ActionChangeCost(*_weighted_dims(weights, bounds, "mpc.action_change")) if weights else None


@dataclass
class StateGoalCost:
    """weight x the distance between the goal's true xyz and the xyz reached by integrating the position deltas
    from the last observed state (the goal's true state: oracle checks only)."""

    start_xyz: torch.Tensor
    goal_xyz: torch.Tensor
    weight: float

    def __call__(self, pred: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.weight * (self.start_xyz + actions[..., :3].sum(1) - self.goal_xyz).norm(dim=-1)


def rollout_cost(model: WorldModelLike, z_context: torch.Tensor, terms: Sequence[CostTerm],
                 context_actions: torch.Tensor | None = None, states: torch.Tensor | None = None,
                 precision: str = "float32") -> CostFn:
    """Cost of candidate sequences from one observed context (C, N, D): the sum of `terms` over one rollout.

    `context_actions` (C - 1, A) and `states` (C, S) are the context's executed actions and states; they
    are a batch of 1 that the rollout broadcasts (never copies) to the K candidates. `precision="bfloat16"`
    runs the rollout's matrix products in bfloat16 (autocast; twice the float32 rate on CPUs with AVX512-BF16
    and on GPUs); the predictions are cast back and the cost terms stay in float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    if not terms:
        raise ValueError("a planning cost needs at least one term")

    ctx = z_context[None]
    past = None if context_actions is None else context_actions[None]
    st = None if states is None else states[None]

    def cost(actions: torch.Tensor) -> torch.Tensor:
        low = torch.autocast(z_context.device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
        with low:
            pred = model.rollout(ctx, actions.to(z_context.dtype), past, st)
        pred = pred.to(z_context.dtype)
        total = terms[0](pred, actions)
        for term in terms[1:]:
            total = total + term(pred, actions)
        return total

    return cost
