"""One episode loop for the planner and the baseline agents, scored the same way.

An agent is reset with the episode's goal, then maps observations to the env actions to execute next
(one for a policy, the plan's first `execute` for the planner). The loop records every frame, stops on
success, termination or after `max_steps` env steps. An agent whose model sees cameras other than the env's
default view (`agent.cameras`, e.g. exterior and wrist) gets the goal, sub-goals and observations of each of them
(common/goal_env.py: `goal_views`, `subgoal_views`, `observation_views`); the recorded frames and the result's goal
images stay the default (exterior) view's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from common import goal_env
from planners.mpc import MPCPlanner, PlanStep


@dataclass
class EpisodeResult:
    success: bool
    final_distance: float
    steps: int
    plan_seconds_per_step: float
    frames: list[np.ndarray] = field(repr=False, default_factory=list)
    goal_image: np.ndarray | None = field(repr=False, default=None)
    subgoal_images: list[np.ndarray] = field(repr=False, default_factory=list)
    distances: list[float] = field(repr=False, default_factory=list)  # the env's task distance after reset and each step
    states: list[np.ndarray] = field(repr=False, default_factory=list)  # proprioceptive state, same times
    trace: list[PlanStep] = field(repr=False, default_factory=list)  # one entry per plan (planner agents)
    distance_unit: str = "m"  # the unit of the env's task distance (common.goal_env.distance_unit)
    readout_dims: tuple[int, ...] | None = None  # the state dims the planner's readout reads (trace's readouts)
    milestones: dict[str, int | None] = field(default_factory=dict)  # the env's stages: the first step each held

    @property
    def steps_to_success(self) -> int | None:
        return self.steps if self.success else None


def observe(env: Any, obs: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(pixels, state) from a Dict observation, or from render() and no state."""
    if isinstance(obs, dict) and "pixels" in obs:
        return obs["pixels"], obs.get("state")
    return env.render(), None


def observe_views(env: Any, obs: Any, cameras: list[str] | None) -> tuple[Any, np.ndarray | None]:
    """(pixels, state) for a model of `cameras`: as `observe` for the default view, else the named camera's frame
    (one camera) or a dict camera -> frame (several)."""
    if goal_env.default_view(cameras):
        return observe(env, obs)
    views = goal_env.observation_views(obs, cameras, getattr(getattr(env, "spec", None), "id", None) or type(env).__name__)
    return (views if len(views) > 1 else views[cameras[0]]), obs.get("state")


def first_view(image: Any) -> Any:
    """The default (first) view of a goal given per camera, for videos and plots; an image as it is."""
    return next(iter(image.values())) if isinstance(image, dict) else image


class Agent(Protocol):
    subgoals: bool  # plans through the env's sub-goal images before the goal (run_episode hands them over only then)

    def reset(self, env: Any, goal_image: np.ndarray | None, info: dict[str, Any], seed: int | None) -> None: ...

    def act(self, env: Any, obs: Any) -> list[Callable[[Any], np.ndarray]]:
        """The next actions, each a function of the observation it is executed against."""
        ...

    def plan_seconds_per_step(self) -> float: ...


class PlannerAgent:
    """The MPC planner; `to_env_action(model_action, obs)` maps its actions to the env's (identity if None).

    With `subgoals`, it plans through the env's sub-goal images (`info["subgoal_images"]`) before the goal. With a
    `rate` (planners.actions.ActionRate) each model action becomes the `rate.skip` env actions it stands for.
    """

    def __init__(self, planner: MPCPlanner, to_env_action: Callable[[np.ndarray, Any], np.ndarray] | None = None,
                 subgoals: bool = False, rate: Any = None, cameras: list[str] | None = None):
        self.planner, self.to_env_action, self.subgoals, self.rate = planner, to_env_action, subgoals, rate
        self.cameras = cameras if cameras is not None else planner.cameras  # the views the model sees (None: default)

    def reset(self, env: Any, goal_image: np.ndarray | None, info: dict[str, Any], seed: int | None) -> None:
        subgoals = list(info.get("subgoal_images", []))  # run_episode passes them only when self.subgoals
        self.planner.reset([*subgoals, goal_image] if subgoals else goal_image, info.get("goal_state"))

    def act(self, env: Any, obs: Any) -> list[Callable[[Any], np.ndarray]]:
        """The env actions of the planner's next chunk; before each model action after the first, the frame it
        starts from goes to `planner.observe`, so the model's context holds every frame it was trained with."""
        pixels, state = observe_views(env, obs, self.cameras)
        callbacks = []
        for i, model_action in enumerate(self.planner.act(pixels, state).numpy()):
            env_actions = self.rate.to_env(model_action) if self.rate is not None else [model_action]
            callbacks += [self._callback(env, a, observe=i > 0 and j == 0) for j, a in enumerate(env_actions)]
        return callbacks

    def _callback(self, env: Any, action: np.ndarray, observe: bool) -> Callable[[Any], np.ndarray]:
        def run(obs: Any) -> np.ndarray:
            if observe:
                self.planner.observe(*observe_views(env, obs, self.cameras))
            return self.to_env_action(action, obs) if self.to_env_action else action
        return run

    def plan_seconds_per_step(self) -> float:
        seconds = self.planner.plan_seconds
        return float(np.mean(seconds)) if seconds else 0.0


class PolicyAgent:
    """An `envs.policies` policy (correlated noise, scripted expert) as an agent."""

    subgoals = False

    def __init__(self, policy: Any):
        self.policy = policy

    def reset(self, env: Any, goal_image: np.ndarray | None, info: dict[str, Any], seed: int | None) -> None:
        self.policy.reset(env, seed if seed is not None else 0)  # the expert is found on the protocol's layer

    def act(self, env: Any, obs: Any) -> list[Callable[[Any], np.ndarray]]:
        return [self.policy]

    def plan_seconds_per_step(self) -> float:
        return 0.0


def run_episode(env: Any, agent: Agent, max_steps: int, seed: int | None = None, record: bool = True,
                reset_options: dict[str, Any] | None = None, goal_image: np.ndarray | None = None,
                progress: str | None = None) -> EpisodeResult:
    """One goal-reaching episode toward the env's goal image (or `goal_image`), scored by the env's own success
    test. The env implements the goal-env protocol (common/goal_env.py). `progress`: a progress-bar label (steps,
    distance, planning time), or None for no bar."""
    task = goal_env.task(env)
    cameras = getattr(agent, "cameras", None)
    obs, info = env.reset(seed=seed, options=reset_options)
    goal = goal_image if goal_image is not None else goal_env.goal_views(task, cameras)
    subgoals = goal_env.subgoal_views(task, cameras) if goal_image is None and agent.subgoals else []
    agent.reset(env, goal, {**info, "subgoal_images": subgoals}, seed)
    result = EpisodeResult(False, float("nan"), 0, 0.0, [], first_view(goal), [first_view(g) for g in subgoals],
                           distance_unit=goal_env.distance_unit(task))

    def log(obs: Any) -> None:
        result.final_distance = float(task.task_distance())
        result.success = bool(task.is_success(result.final_distance))
        result.distances.append(result.final_distance)
        for name, reached in (task.milestones() if hasattr(task, "milestones") else {}).items():
            if result.milestones.get(name) is None:
                result.milestones[name] = result.steps if reached else None
        if isinstance(obs, dict) and "state" in obs:
            result.states.append(np.asarray(obs["state"], dtype=np.float32))
        if record:
            result.frames.append(observe(env, obs)[0])

    log(obs)
    done = False
    bar = tqdm(total=max_steps, desc=progress, unit="step", leave=False, disable=progress is None)
    while result.steps < max_steps and not result.success and not done:
        for action in agent.act(env, obs):
            obs, _, terminated, truncated, _ = env.step(action(obs))
            result.steps += 1
            log(obs)
            bar.update()
            bar.set_postfix(distance=f"{result.final_distance:.3f}", plan_s=f"{agent.plan_seconds_per_step():.2f}")
            done = terminated or truncated
            if result.success or done or result.steps >= max_steps:
                break
    bar.close()
    result.plan_seconds_per_step = agent.plan_seconds_per_step()
    planner = getattr(agent, "planner", None)
    result.trace = list(getattr(planner, "trace", []))
    dims = getattr(getattr(getattr(planner, "model", None), "readout", None), "dims", None)
    result.readout_dims = None if dims is None else tuple(int(d) for d in dims)
    return result
