"""Receding-horizon control in latent space: plan, execute the first k actions, observe, warm-start, replan.

The context is the model's full history of real observations (its `history` latest frames, the
actions executed between them and their states), not a single frame. Past frames are encoded once
and kept. With `execute` > 1 the context keeps one frame per executed action, as in training: the
frames observed between plans come through `observe` (the episode loop passes them), and those nobody
passed (a client that sends one frame per chunk) are filled with the model's own prediction of them
along the executed actions. The cost is the sum of the terms `MPCConfig` asks for (planners.costs).

The goal may be a sequence of images (sub-goals, as in V-JEPA 2-AC's pick-and-place): the planner aims
at one at a time and moves to the next when the observed latent comes within `subgoal_latent` of it
(or its readout within `subgoal_readout` metres), or after `subgoal_steps` of the model's steps on it (env steps / frameskip); the
last image is the goal and is never left. `subgoal_budget` caps the sub-goals' steps together: once spent, the planner
aims at the goal, so an approach that stalls near each sub-goal cannot use up the episode. `subgoal_stall` catches
that stall where it happens: a sub-goal whose readout is within `subgoal_near` metres and has not come closer by
`subgoal_gain` for that many steps counts as reached (the arm is as close as this model gets it). With
`subgoal_gripper` (the gripper's action and state dim) the gripper command is not planned on a sub-goal but held where
that sub-goal's image shows it (the model's readout of it: closed above `gripper_closed`): open on the approach,
closed on the grasp and the carry, as the expert does; on the final goal it is planned, or with `goal_gripper` held
as the goal image shows it too (open: the fingers let go as soon as the last sub-goal is reached). With
`gripper_settle` the readout switch waits for the fingers: a sub-goal is left that way only once the gripper's reading
(measured, from the observed state; without one, the model's readout of the frames) has changed by less than
`gripper_still` per step over that many observations (slow fingers still closing when the switch fired: the arm
lifted, the cube stayed). `release_hold` is the same care at the other end: on a release (a goal whose gripper is
held open right after one held closed) those action dims (e.g. the translation, [0, 1, 2]) are held at zero until the
observed gripper reading has fallen below `release_open`, so the hand stays where it let go while slow fingers open
(it rose and swung while they opened, and dragged the placed cube off its goal). Each plan appends a `PlanStep` to
`trace` for diagnostics.

A model of several camera views (`cameras`, from its checkpoint's `data.cameras`) takes every observation, goal and
sub-goal as a dict camera -> image (H, W, 3); all views are encoded together into one latent per frame.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from datasets.transforms import resize_uint8
from planners.costs import (
    LatentGoalCost,
    ReadoutGoalCost,
    StateBoxCost,
    StateGoalCost,
    action_change_cost,
    action_cost,
    latent_distance,
    readout_gap,
    readout_scale,
    rollout_cost,
    state_box,
)
from planners.protocols import Bounds, CostTerm, PlanResult, Solver, WorldModelLike


@dataclass
class MPCConfig:
    horizon: int = 1
    execute: int = 1  # actions executed per plan
    metric: str = "l1"  # l1 | l2
    final_only: bool = True  # cost at the end of the horizon (else summed over it)
    state_weight: float = 0.0  # true goal state term: oracle checks only
    readout_weight: float | None = 0.0  # weight of the model's state-readout distance (metres); None: resolved later
    subgoal_latent: float | None = None  # next sub-goal when the observed latent is this close (metric above)
    subgoal_readout: float | None = None  # ... or when the readout positions are this close (m; needs a readout)
    # state dim -> metres per unit of that readout output, in the readout cost and the switch (e.g. {5: 0.2}: yaw
    # radians; dims left out count 1, as metres); every dim named must be one the model's readout reads
    readout_scale: dict[int, float] | None = None
    subgoal_steps: int | None = None  # ... or after this many of the model's steps (actions) on one sub-goal
    subgoal_budget: int | None = None  # the model's steps on all sub-goals together; once spent, on to the final goal
    subgoal_stall: int | None = None  # ... or when the readout gap, within subgoal_near, has not improved for this many steps
    subgoal_near: float = 0.03  # m: how close a stalled readout must be to count as arrived
    subgoal_gain: float = 0.002  # m: an improvement of the best readout gap smaller than this counts as none
    # the gripper's dim (action and state): on each sub-goal held at 1 (closed) or 0 (open) as the model reads the
    # sub-goal image's gripper state (closed above gripper_closed), not planned; on the final goal, planned
    subgoal_gripper: int | None = None
    gripper_closed: float = 0.25
    goal_gripper: bool = False  # with subgoal_gripper: held on the final goal too, as its image shows it (else planned)
    gripper_settle: int | None = None  # with subgoal_gripper: the readout switch waits until the observed gripper
    gripper_still: float = 0.02  # reading has changed by less than gripper_still per step for gripper_settle steps
    # with subgoal_gripper: action dims held at 0 on a release (a goal whose gripper is held open right after one held
    # closed) until the observed gripper reading falls below release_open (e.g. [0, 1, 2]: the hand stays put)
    release_hold: list[int] | None = None
    release_open: float = 0.1
    # state dim -> [low, high]: the planned state (last observed + the planned deltas) is kept in this box, each unit
    # outside costing state_box_weight (e.g. {5: [-0.9, 0.9]}: the yaw the data covered); needs observed states
    state_box: dict[int, list[float]] | None = None
    state_box_weight: float = 10.0
    # action dim -> cost per half-range of its planned size, summed over the horizon (delta dims only; e.g.
    # {0: 0.05, 1: 0.05, 2: 0.05}): the plan moves only as far as the goal terms repay
    action_cost: dict[int, float] | None = None
    # action dim -> cost per half-range of change between consecutive planned actions (the first against the one
    # executed last), summed over the horizon (e.g. {0: 0.5, 1: 0.5, 2: 0.5}): no shaking back and forth
    action_change: dict[int, float] | None = None
    precision: str = "float32"  # float32 | bfloat16: the rollouts' matrix products (costs stay float32)


@dataclass
class PlanStep:
    """What one plan saw and chose (for the diagnostics plots)."""

    goal_index: int
    latent_distance: float  # observed latent to the current goal, in the cost's metric
    cost: float
    iteration_costs: list[float] = field(default_factory=list)
    observed_readout: np.ndarray | None = None  # readout of the observed latent (e.g. end-effector xyz)
    predicted_readout: np.ndarray | None = None  # (H, dims): readout along the chosen plan's rollout
    goal_readout: np.ndarray | None = None  # readout of the current (sub-)goal image's latent: what the plan aims at
    imagined: np.ndarray | None = None  # (2, S, S, 3) uint8: decoded predictions after the executed chunk, at the plan's end


def check_frame(frame: Any, what: str = "frame") -> np.ndarray:
    """A camera frame as planners take it: uint8 (H, W, 3); anything else is refused, naming what it is."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"{what}: expected a uint8 numpy array (H, W, 3), got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"{what}: expected shape (H, W, 3) RGB, got {frame.shape}")
    if frame.dtype != np.uint8:
        raise ValueError(f"{what}: expected dtype uint8 (0..255), got {frame.dtype}"
                         + (" (a float image in [0, 1]? multiply by 255 and convert)" if frame.dtype.kind == "f" else ""))
    return frame


#: What the planner observes: one image (H, W, 3) uint8, or with several camera views a dict camera -> image.
Frame = np.ndarray | Mapping[str, np.ndarray]


def frame_views(frame: Frame, cameras: Sequence[str] | None, what: str = "frame") -> list[np.ndarray]:
    """The images of one observation or goal in the order of `cameras` (None: a one-view model), each checked."""
    if cameras is None:
        if isinstance(frame, Mapping):
            raise ValueError(f"{what}: this model sees one camera: pass one image (H, W, 3), got views {sorted(frame)}")
        return [check_frame(frame, what)]
    if not isinstance(frame, Mapping):
        raise ValueError(f"{what}: this model sees cameras {list(cameras)}: pass a dict camera -> image (H, W, 3), "
                         f"got {type(frame).__name__}")
    missing = [camera for camera in cameras if camera not in frame]
    if missing:
        raise ValueError(f"{what}: this model sees cameras {list(cameras)}; missing {missing} (got {sorted(frame)})")
    return [check_frame(frame[camera], f"{what}[{camera}]") for camera in cameras]


def frame_pixels(frame: Frame, cameras: Sequence[str] | None, image_size: int | None, what: str = "frame"
                 ) -> torch.Tensor:
    """One observation as a model takes it: (3, H, W) uint8, or (V, 3, H, W) for several `cameras`; checked and
    resized to `image_size` (None: as it comes)."""
    views = []
    for image in frame_views(frame, cameras, what):
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        if image_size is not None:
            pixels = resize_uint8(pixels[None], (image_size, image_size))[0]
        views.append(pixels)
    return views[0] if len(views) == 1 else torch.stack(views)


class MPCPlanner:
    """Holds the goal and the observed history; `act` returns the next actions to execute."""

    def __init__(self, model: WorldModelLike, solver: Solver, bounds: Bounds, config: MPCConfig,
                 device: str | torch.device = "cpu", image_size: int | None = None,
                 cameras: Sequence[str] | None = None):
        if config.execute > config.horizon:
            raise ValueError(f"cannot execute {config.execute} actions of a {config.horizon}-step plan")
        readout = getattr(model, "readout", None)
        if config.readout_weight and readout is None:
            raise ValueError("mpc.readout_weight > 0 needs a checkpoint with a state readout (trained with "
                             "model.readout_weight > 0); pass mpc.readout_weight=0 for this one")
        if config.subgoal_stall is not None and readout is None:
            raise ValueError("mpc.subgoal_stall watches the readout's distance to the sub-goal: it needs a checkpoint "
                             "with a state readout; pass mpc.subgoal_stall=null for this one")
        gripper = config.subgoal_gripper
        if config.gripper_settle is not None and config.gripper_settle < 2:
            raise ValueError(f"mpc.gripper_settle={config.gripper_settle}: expected at least 2 observed frames (or null)")
        if (config.goal_gripper or config.gripper_settle is not None or config.release_hold) and gripper is None:
            raise ValueError("mpc.goal_gripper, mpc.gripper_settle and mpc.release_hold act on the gripper that "
                             "mpc.subgoal_gripper names: set mpc.subgoal_gripper to the gripper's dim (e.g. 6)")
        bad = [d for d in config.release_hold or [] if not 0 <= d < len(bounds.low) or d == gripper]
        if bad:
            raise ValueError(f"mpc.release_hold={list(config.release_hold)}: {bad} not an arm action dim (expected "
                             f"indices in 0..{len(bounds.low) - 1} other than the gripper's {gripper})")
        if gripper is not None and (gripper not in getattr(readout, "dims", []) or not 0 <= gripper < len(bounds.low)):
            raise ValueError(f"mpc.subgoal_gripper={gripper}: needs a readout of that state dim (this checkpoint reads "
                             f"{getattr(readout, 'dims', None)}) and an action dim of that index ({len(bounds.low)} dims)")
        # (R,) metres per unit of each readout output (config.readout_scale as a tensor), or None
        self.readout_factors = readout_scale(getattr(readout, "dims", None), config.readout_scale)
        self.state_box = state_box(config.state_box, len(bounds.low))  # (dims, low, high) or None
        self.action_cost = action_cost(config.action_cost, bounds)
        self.action_change = action_change_cost(config.action_change, bounds)
        self.device = torch.device(device)
        self.model, self.solver, self.bounds, self.config = model, solver, bounds.to(self.device), config
        self.image_size = image_size  # frames of another size are resized to it (None: taken as they come)
        self.decoder: Any = None  # a LatentDecoder (world_model/decoder.py): each plan's imagined frames for the videos
        # several views: each frame is a dict camera -> image, encoded in this order (None: one image per frame)
        self.cameras = list(cameras) if cameras is not None and len(cameras) > 1 else None
        views = getattr(model, "views", 1)
        if views != (len(self.cameras) if self.cameras else 1):
            raise ValueError(f"the model sees {views} camera view(s); the planner was given cameras {list(cameras or [])}")
        self.reset(None)

    def reset(self, goal: Frame | Sequence[Frame] | None, goal_state: np.ndarray | None = None) -> None:
        """Start an episode toward `goal`: one image (H, W, 3) uint8 (a dict camera -> image for several views), or
        sub-goal images in order, the goal last (a list, or images stacked as (K, H, W, 3))."""
        self.latents: list[torch.Tensor] = []
        self.states: list[torch.Tensor] = []
        self.executed: list[torch.Tensor] = []
        self.plan: torch.Tensor | None = None
        self.between: list[tuple[torch.Tensor, torch.Tensor | None]] = []  # frames observed since the last plan
        self.predicted: list[tuple[torch.Tensor, torch.Tensor | None]] = []  # the model's view of those frames
        self.plan_seconds: list[float] = []
        self.trace: list[PlanStep] = []
        self.goal_state = None if goal_state is None else torch.as_tensor(goal_state, dtype=torch.float32)
        single = isinstance(goal, Mapping) or (isinstance(goal, np.ndarray) and goal.ndim != 4)
        frames = [] if goal is None else [goal] if single else list(goal)
        self.goals = [self._encode(frame, "goal") for frame in frames]
        readout = getattr(self.model, "readout", None)
        with torch.no_grad():  # what the model reads in each (sub-)goal image: the switch, gripper rule and plots use it
            self.goal_readouts = [readout(z) for z in self.goals] if readout is not None else []
        self.goal_bounds = self._bounds_per_goal()
        self.releases = self._releases()
        self.released = False  # the fingers of the current release have opened (release_hold)
        self.gripper_readings: list[float] = []  # the gripper's reading of each observed frame (gripper_settle)
        self._next_goal(0)
        self.steps_on_subgoals = 0

    def _next_goal(self, index: int) -> None:
        """Aim at goal `index` from now on: its step count and its stall watch start afresh."""
        self.goal_index, self.steps_on_goal, self.released = index, 0, False
        self.best_gap, self.best_gap_step = float("inf"), 0  # the closest readout gap to it so far, and when

    def _bounds_per_goal(self) -> list[Bounds]:
        """The action bounds on each goal: the gripper held as each sub-goal image shows it (`subgoal_gripper`), and
        as the goal image shows it with `goal_gripper`."""
        dim, base = self.config.subgoal_gripper, self.bounds
        if dim is None:
            return [base] * len(self.goals)
        index = self.model.readout.dims.index(dim)
        held = self.goal_readouts if self.config.goal_gripper else self.goal_readouts[:-1]
        bounds = []
        for read in held:
            closed = float(read[index]) > self.config.gripper_closed
            value = min(max(1.0 if closed else 0.0, float(base.low[dim])), float(base.high[dim]))
            bounds.append(Bounds(base.low, base.high, {**base.fixed, dim: value}))
        return bounds + [base] * (len(self.goals) - len(bounds))

    def _releases(self) -> list[bool]:
        """Which goals are releases: the gripper held open on it, held closed on the goal before it."""
        dim = self.config.subgoal_gripper
        held = [b.fixed.get(dim) for b in self.goal_bounds] if dim is not None else [None] * len(self.goals)
        return [i > 0 and held[i] == 0.0 and held[i - 1] == 1.0 for i in range(len(held))]

    def _bounds_now(self, read: torch.Tensor | None, state: np.ndarray | None) -> Bounds:
        """The action bounds for this plan: the current goal's, with the `release_hold` dims at zero while its
        release is under way (the observed gripper reading not yet below `release_open`)."""
        bounds, c = self.goal_bounds[self.goal_index], self.config
        if not c.release_hold or not self.releases[self.goal_index] or self.released:
            return bounds
        if self._gripper_reading(read, state) < c.release_open:
            self.released = True
            return bounds
        return Bounds(bounds.low, bounds.high, {**bounds.fixed, **{d: 0.0 for d in c.release_hold}})

    @property
    def z_goal(self) -> torch.Tensor | None:
        return self.goals[self.goal_index] if self.goals else None

    def views(self, frame: Frame, what: str = "frame") -> list[np.ndarray]:
        """The images of one observation or goal, in the model's camera order, each checked."""
        return frame_views(frame, self.cameras, what)

    def pixels(self, frame: Frame, what: str = "frame") -> torch.Tensor:
        """One observation as the model takes it: (3, H, W) uint8, or (V, 3, H, W) with several views; checked and
        resized to the model's image size."""
        return frame_pixels(frame, self.cameras, self.image_size, what)

    @torch.no_grad()
    def _encode(self, frame: Frame, what: str = "frame") -> torch.Tensor:
        pixels = self.pixels(frame, what)[None, None]  # (1, 1, [V,] 3, H, W)
        return self.model.encode(pixels.to(self.device))[0, 0]  # (N, D); V views: (V*N, D)

    @torch.no_grad()
    def _reached(self, z: torch.Tensor, read: torch.Tensor | None) -> bool:
        """Whether the observed latent `z` (its readout `read`) counts as having reached the current sub-goal."""
        c = self.config
        if c.subgoal_steps is not None and self.steps_on_goal >= c.subgoal_steps:
            return True
        if c.subgoal_latent is not None and float(latent_distance(z[None, None], self.z_goal, c.metric)) < c.subgoal_latent:
            return True
        if read is None or (c.subgoal_readout is None and c.subgoal_stall is None):
            return False
        gap = float(readout_gap(read, self.goal_readouts[self.goal_index], self.readout_factors))
        if c.subgoal_readout is not None and gap < c.subgoal_readout and self._gripper_settled():
            return True
        if c.subgoal_stall is None:
            return False
        if gap < self.best_gap - c.subgoal_gain:
            self.best_gap, self.best_gap_step = gap, self.steps_on_goal
        return gap < c.subgoal_near and self.steps_on_goal - self.best_gap_step >= c.subgoal_stall

    def _gripper_settled(self) -> bool:
        """Whether the gripper's reading of the last `gripper_settle` observed frames has held still (always, without
        gripper_settle)."""
        c = self.config
        if c.gripper_settle is None:
            return True
        recent = self.gripper_readings  # the last gripper_settle readings (_watch_gripper keeps no more)
        return len(recent) == c.gripper_settle and bool(np.all(np.abs(np.diff(recent)) < c.gripper_still))

    def _gripper_reading(self, read: torch.Tensor, state: np.ndarray | None) -> float:
        """The gripper's reading of this observation: the measured one (proprioception) when the state is given,
        else the model's readout `read` of the frame."""
        dim = self.config.subgoal_gripper
        return float(state[dim]) if state is not None else float(read[self.model.readout.dims.index(dim)])

    def _watch_gripper(self, read: torch.Tensor, state: np.ndarray | None) -> None:
        """Record the gripper's reading of this observation for `gripper_settle`."""
        reading = self._gripper_reading(read, state)
        self.gripper_readings = (self.gripper_readings + [reading])[-self.config.gripper_settle:]

    def _advance(self, z: torch.Tensor, read: torch.Tensor | None) -> None:
        """Move past every sub-goal the observed latent `z` counts as having reached, or to the final goal once the
        sub-goals' step budget is spent."""
        last, budget = len(self.goals) - 1, self.config.subgoal_budget
        if budget is not None and self.goal_index < last and self.steps_on_subgoals >= budget:
            self._next_goal(last)
        while self.goal_index < last and self._reached(z, read):
            self._next_goal(self.goal_index + 1)

    def cost_terms(self, states: torch.Tensor | None) -> list[CostTerm]:
        """The terms of the cost toward the current goal, as the config asks."""
        c = self.config
        terms: list[CostTerm] = [LatentGoalCost(self.z_goal, c.metric, c.final_only)]
        if c.readout_weight:
            terms.append(ReadoutGoalCost(self.model.readout, self.z_goal, c.readout_weight, c.final_only,
                                         self.readout_factors))
        if self.action_cost is not None:
            terms.append(self.action_cost)
        if self.action_change is not None:
            last = self.executed[-1].to(self.device) if self.executed else None
            terms.append(replace(self.action_change, previous=last))
        if self.state_box is not None:
            if not self.states:
                raise RuntimeError("mpc.state_box needs the observed robot state: pass state= to act()")
            terms.append(StateBoxCost(self.states[-1].to(self.device), *self.state_box, c.state_box_weight))
        if c.state_weight and self.goal_state is not None and states is not None:
            terms.append(StateGoalCost(states[-1, :3], self.goal_state[:3].to(self.device), c.state_weight))
        return terms

    def observe(self, frame: Frame, state: np.ndarray | None = None) -> None:
        """A frame observed between plans (after each executed action but the last of a chunk): it joins the
        model's context in its place. Only models with a history > 1 encode it."""
        if len(self.between) >= max(self.config.execute - 1, 0):
            raise RuntimeError(f"observe: {len(self.between)} frames already observed since the last plan, which "
                               f"executed {self.config.execute} actions; call act with the frame after the last one")
        z = self._encode(frame) if self.model.history > 1 else None
        self.between.append((z, None if state is None else torch.as_tensor(state, dtype=torch.float32)))

    def _remember(self, z: torch.Tensor, state: torch.Tensor | None) -> None:
        h = self.model.history
        self.latents = (self.latents + [z])[-h:]
        if state is not None:
            self.states = (self.states + [state])[-h:]

    def act(self, frame: Frame, state: np.ndarray | None = None) -> torch.Tensor:
        """Observe one frame (H, W, 3) uint8 (a dict camera -> image for several views) and the state, plan, return
        the next (k, A) actions."""
        if self.z_goal is None:
            raise RuntimeError("MPCPlanner.act needs reset(goal_frame) first")
        h = self.model.history
        z_now = self._encode(frame)
        readout = getattr(self.model, "readout", None)
        with torch.no_grad():  # what the model reads in this frame: the switch, the gripper watch and the trace use it
            read_now = readout(z_now) if readout is not None else None
        if self.config.gripper_settle is not None:
            self._watch_gripper(read_now, state)
        self._advance(z_now, read_now)
        if h > 1:  # the frames between the last plan and this one: observed ones, else the model's prediction
            for z, s in self.between + self.predicted[len(self.between):]:
                self._remember(z, s)
        self.between = []
        self._remember(z_now, None if state is None else torch.as_tensor(state, dtype=torch.float32))
        context = torch.stack(self.latents)
        past = torch.stack(self.executed[-(len(self.latents) - 1):]).to(self.device) if len(self.latents) > 1 else None
        states = torch.stack(self.states).to(self.device) if self.states and self.model.uses_states else None
        cost = rollout_cost(self.model, context, self.cost_terms(states), past, states, self.config.precision)
        init = None
        if self.plan is not None:  # warm start: the previous plan shifted by what was executed
            init = self.plan[self.config.execute:]
        start = time.perf_counter()
        result = self.solver.solve(cost, self.config.horizon, self._bounds_now(read_now, state), init)
        self.plan_seconds.append(time.perf_counter() - start)
        self.plan = result.actions.detach().cpu()
        chosen = self.plan[: self.config.execute]
        self.executed = (self.executed + list(chosen))[-h:]
        self.steps_on_goal += len(chosen)
        if self.goal_index < len(self.goals) - 1:
            self.steps_on_subgoals += len(chosen)
        self.predicted = self._predict_between(context, past, states, chosen) if h > 1 and len(chosen) > 1 else []
        self.trace.append(self._plan_step(z_now, read_now, context, past, states, result))
        return chosen

    @torch.no_grad()
    def _predict_between(self, context: torch.Tensor, past: torch.Tensor | None, states: torch.Tensor | None,
                         chosen: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """The model's latents (and integrated states) of the frames after each chosen action but the last."""
        inner = chosen[:-1][None].to(context)
        z = self.model.rollout(context[None], inner, None if past is None else past[None],
                               None if states is None else states[None])[0]
        s = [None] * len(z)
        if states is not None:
            s_t, s = states[-1:][None], []
            for i in range(len(z)):
                s_t = self.model.next_state(s_t, inner[:, i : i + 1])
                s.append(s_t[0, 0].cpu())
        return list(zip(z, s))

    @torch.no_grad()
    def _plan_step(self, z_now: torch.Tensor, read_now: torch.Tensor | None, context: torch.Tensor,
                   past: torch.Tensor | None, states: torch.Tensor | None, result: PlanResult) -> PlanStep:
        step = PlanStep(self.goal_index, float(latent_distance(z_now[None, None], self.z_goal, self.config.metric)),
                        result.cost, list(result.history))
        readout = getattr(self.model, "readout", None)
        if readout is None and self.decoder is None:
            return step
        # one more rollout, of the chosen plan only
        pred = self.model.rollout(context[None], result.actions[None].to(context), None if past is None else past[None],
                                  None if states is None else states[None])[0]
        if readout is not None:
            step.observed_readout = read_now.cpu().numpy()
            step.predicted_readout = readout(pred).cpu().numpy()
            step.goal_readout = self.goal_readouts[self.goal_index].cpu().numpy()
        if self.decoder is not None:
            step.imagined = self.decoder.images(pred[[min(self.config.execute, len(pred)) - 1, -1]])
        return step
