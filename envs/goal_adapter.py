"""The goal-env protocol (common/goal_env.py) for any gymnasium MuJoCo env, through `set_state` and `render`.

gymnasium's MuJoCo envs (Reacher, Pusher, ...) have no goal image, distance or success test of their own. This
wrapper gives them one. After the env's own `reset(seed)` (the start) it builds a goal state, renders it with the
env's renderer (the camera chosen when the env was made: `camera_id`, `camera_name` or `default_camera_config` in
its kwargs, the same one every observation uses) and restores the start. Two kinds of goal (`goal`):

- `random` (the default): the state reached after `goal_steps` steps of seeded correlated-noise actions from the
  start. Right for reaching (Reacher's fingertip), wrong for pushing: random torques rarely touch Pusher's object.
- `target`: the start state with chosen qpos entries (`target_dims`, e.g. Pusher-v5's object slides, qpos 7-8)
  set to a target, every velocity zero: the env's own goal read from other qpos entries (`env_goal_dims`, Pusher's
  goal marker slides, qpos 9-10; the marker and the object share their base position, so equal slides put the
  object on the marker), or a target drawn uniformly in `target_low`..`target_high` (seeded, at least
  `target_min_distance` from the start's entries; written into `env_goal_dims` too, so the env's own marker shows
  it). Everything else keeps its start value, so the goal image shows the object at the goal and the rest of the
  scene, the arm included, as it was at the start. Why the start pose and not, as our FrankaPush does, the arm
  behind the object at the goal: in Pusher-v5 the arm always starts in the same pose (qpos 0; only its velocities
  are randomised), so every goal image shows one and the same arm pose, the object's position is the only thing
  that differs between start and goal images (the task, nothing else), and the arm's pose in the goal image is
  one the arm can always return to; a pose "behind the object at the goal" would need an IK solution the arm does
  not have for every goal (Pusher's arm cannot reach behind objects near its base). A planner scoring latent
  distance to that image is also pulled toward the start pose, which is why success is decided on the object
  alone (`body`).
- `expert`: the state the scripted expert (`expert`, required) reaches from the start, without noise, pushing toward
  the target of `target` (the env's own or a drawn one): it runs until the tracked distance to that target is below
  `expert_stop` or for `goal_steps` steps, and its last state (velocities zeroed) is the goal; its sub-goals are
  states evenly spaced along that run. This is the anchors' protocol (a demonstration's later state as the goal, as
  Push-T's `goals: expert`), and the right one for a pixel planner where `target` is not: in Pusher-v5's top-down
  view the arm's start pose is out of the picture, so a `target` goal image shows no arm at all, and a planner
  matching it takes the arm out of view (README, "Pusher-v5"); the expert's last state shows the hand where a push
  toward that goal ends. Success is judged against where the object is in the goal image, which the expert may
  leave short of the target (how often: `python planners/evaluate.py agent=oracle ...` on the same goals).

`shadows=false` turns the lights' shadows off (every frame, observations included: set it for collection and
planning alike). The distance is the Euclidean distance of a body's world position (`body`, metres; Pusher: `object`) or of chosen
`qpos` entries (`qpos_dims`) to the goal's; success is that distance below `threshold`. An optional scripted expert
(`expert`: a name of envs/mujoco_tasks.py's EXPERTS, e.g. `pusher`, or `module:Class`) gives the adapter
`expert_action(rng, noise)` toward its goal; `privileged_state()` is the `body`'s position (for probes).
`recorded_state()` is the simulator state (qpos, qvel) that
collection records per step; `reset(options={"qpos", "qvel", "goal_qpos", "goal_qvel"})` starts from (and aims at)
such recorded states instead (`goals=dataset`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from common.errors import UserError
from common.seeding import derive_seed
from envs.policies import CorrelatedNoisePolicy

GOALS = ("random", "target", "expert")
EXPERT_TRIES = 10  # goal=expert: starts tried per seed before giving up


@dataclass
class MujocoGoalSettings:
    """How the adapter samples goals and scores them (configs/cem_goal.yaml `adapter`)."""

    goal: str = "random"  # random: the state after goal_steps random actions | target: target_dims set to a target | expert: where the expert's push toward that target ends
    goal_steps: int = 20  # goal=random: this many random actions from the start; goal=expert: the expert's steps at most
    expert_stop: float = 0.02  # goal=expert: stop the expert this close (body/qpos distance) to the target
    target_dims: list[int] | None = None  # goal=target: the qpos entries set to the target (Pusher-v5: [7, 8])
    env_goal_dims: list[int] | None = None  # ... the target read from these qpos entries (the env's own goal; Pusher: [9, 10])
    target_low: list[float] | None = None  # ... or drawn uniformly in target_low..target_high (written into env_goal_dims)
    target_high: list[float] | None = None
    target_min_distance: float = 0.0  # ... a drawn target at least this far from the start's target_dims
    body: str | None = None  # distance between this body's world positions (metres)
    qpos_dims: list[int] | None = None  # ... or between these qpos entries (None: all of qpos)
    threshold: float = 0.05  # success: distance below this
    subgoals: int = 0  # intermediate goal images, evenly spaced along the path to the goal
    theta: float = 0.15  # the random actions' Ornstein-Uhlenbeck pull toward 0 per step
    sigma: float = 0.35  # ... and noise per step (normalised action units)
    expert: str | None = None  # a scripted expert (envs/mujoco_tasks.py EXPERTS name, e.g. pusher, or module:Class)
    shadows: bool = True  # false: the env's lights cast no shadows (software rendering of a 64-px Pusher frame: 2 vs 59 ms)


class MujocoGoalEnv(gym.Wrapper):
    """A gymnasium MuJoCo env with the goal-env protocol (goal_image, task_distance, is_success, subgoal_images)."""

    def __init__(self, env: gym.Env, settings: MujocoGoalSettings | None = None, env_id: str | None = None):
        super().__init__(env)
        self.settings = settings or MujocoGoalSettings()
        name = env_id or (env.spec.id if env.spec else type(env.unwrapped).__name__)
        base = env.unwrapped
        missing = [m for m in ("set_state", "render", "do_simulation") if not callable(getattr(base, m, None))]
        if missing or not hasattr(base, "data") or not hasattr(base, "model"):
            raise UserError(f"env_adapter=mujoco wraps gymnasium MuJoCo envs (model, data, set_state, do_simulation, render); "
                            f"{name} ({type(base).__name__}) is not one")
        if getattr(base, "render_mode", None) != "rgb_array":
            raise UserError(f"env_adapter=mujoco renders goal images: make {name} with render_mode='rgb_array', "
                            f"got {getattr(base, 'render_mode', None)!r}")
        if self.settings.body is not None:
            try:
                base.model.body(self.settings.body)
            except KeyError:
                bodies = [base.model.body(i).name for i in range(base.model.nbody)]
                raise UserError(f"adapter.body={self.settings.body!r} is not a body of {name}; its bodies: "
                                f"{', '.join(bodies)}") from None
        if self.settings.goal_steps < 1:
            raise UserError(f"adapter.goal_steps must be >= 1, got {self.settings.goal_steps}")
        self._check_target(name, base.model.nq)
        if not self.settings.shadows:
            base.model.light_castshadow[:] = False
        self._expert = None
        if self.settings.expert:
            self._expert = make_expert(self.settings.expert, env, name)
            self.expert_action = self._expert_action  # the protocol's optional method, only where there is an expert
        self._goal_image: np.ndarray | None = None
        self._subgoals: list[np.ndarray] = []
        self.goal_qpos = self.goal_qvel = self.goal_point = None

    def _check_target(self, name: str, nq: int) -> None:
        s = self.settings
        if s.goal not in GOALS:
            raise UserError(f"adapter.goal must be one of {', '.join(GOALS)}, got {s.goal!r}")
        if s.goal == "expert" and not s.expert:
            raise UserError("adapter.goal=expert needs adapter.expert (the scripted expert whose push ends at the goal)")
        if s.goal == "random":
            return
        if not s.target_dims:
            raise UserError("adapter.goal=target needs adapter.target_dims (the qpos entries the goal sets)")
        sampled = s.target_low is not None or s.target_high is not None
        if not sampled and not s.env_goal_dims:
            raise UserError("adapter.goal=target needs adapter.env_goal_dims (the env's own goal) or "
                            "adapter.target_low and adapter.target_high (a drawn target)")
        n = len(s.target_dims)
        lengths = {"env_goal_dims": s.env_goal_dims, "target_low": s.target_low, "target_high": s.target_high}
        for key, value in lengths.items():
            if value is not None and len(value) != n:
                raise UserError(f"adapter.{key} must have one entry per target_dims entry ({n}), got {list(value)}")
        if sampled and (s.target_low is None or s.target_high is None):
            raise UserError("adapter.target_low and adapter.target_high go together")
        bad = [d for d in [*s.target_dims, *(s.env_goal_dims or [])] if not 0 <= int(d) < nq]
        if bad:
            raise UserError(f"adapter qpos entries {bad} are outside {name}'s qpos (size {nq})")

    # -- state ----------------------------------------------------------------------------------------------
    def _state(self) -> tuple[np.ndarray, np.ndarray]:
        data = self.env.unwrapped.data
        return data.qpos.copy(), data.qvel.copy()

    def _point(self) -> np.ndarray:
        """What the distance compares: the body's world position, or the chosen qpos entries."""
        data = self.env.unwrapped.data
        if self.settings.body is not None:
            return np.asarray(data.body(self.settings.body).xpos, dtype=np.float64).copy()
        qpos = np.asarray(data.qpos, dtype=np.float64)
        return qpos[list(self.settings.qpos_dims)] if self.settings.qpos_dims is not None else qpos.copy()

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
        self.env.unwrapped.set_state(np.asarray(qpos, dtype=np.float64), np.asarray(qvel, dtype=np.float64))

    def privileged_state(self) -> dict[str, np.ndarray]:
        """The world position of the body the distance tracks (`body`; Pusher-v5: the object), recorded beside each
        step as `object_position` for probes (`world_model/probe.py target=object`); nothing without a `body`."""
        if self.settings.body is None:
            return {}
        return {"object_position": np.asarray(self.env.unwrapped.data.body(self.settings.body).xpos, np.float64).copy()}

    def recorded_state(self) -> dict[str, np.ndarray]:
        """The simulator state to record per step: `reset(options=...)` restarts from it (and aims at it as a
        goal, with the `goal_` prefix)."""
        qpos, qvel = self._state()
        return {"qpos": qpos, "qvel": qvel}

    # -- gymnasium ------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        options = dict(options or {})
        recorded = {k: options.pop(k) for k in ("qpos", "qvel", "goal_qpos", "goal_qvel") if k in options}
        obs, info = self.env.reset(seed=seed, options=options or None)
        base = self.env.unwrapped
        if "qpos" in recorded:
            self.set_state(recorded["qpos"], recorded.get("qvel", np.zeros(base.model.nv)))
        start = self._state()
        if "goal_qpos" in recorded:
            self.set_state(recorded["goal_qpos"], recorded.get("goal_qvel", np.zeros(base.model.nv)))
            subgoals = []
        elif self.settings.goal == "target":
            start, target = self._place_target(start, self._goal_seed(seed))
            subgoals = self._target_path(start, target)
            self.set_state(*subgoals.pop())
        elif self.settings.goal == "expert":
            start, path = self._expert_goal(self._goal_seed(seed), start, options)
            subgoals = self._subgoal_states(path)
            self.set_state(path[-1][0], np.zeros_like(path[-1][1]))
        else:
            subgoals = self._subgoal_states(self._random_path(self._goal_seed(seed)))
        self.goal_qpos, self.goal_qvel = self._state()
        self.set_state(self.goal_qpos, self.goal_qvel)  # after mj_step the kinematics lag qpos by a step: recompute
        self.goal_point = self._point()
        self._goal_image = np.ascontiguousarray(base.render()[..., :3])
        self._subgoals = []
        for qpos, qvel in subgoals:
            self.set_state(qpos, qvel)
            self._subgoals.append(np.ascontiguousarray(base.render()[..., :3]))
        self.set_state(*start)
        if self._expert is not None and callable(getattr(self._expert, "reset", None)):
            self._expert.reset()
        if ("qpos" in recorded or self.settings.goal != "random") and hasattr(base, "_get_obs"):
            obs = base._get_obs()  # the observation of the start actually set
        return obs, {**info, "goal_qpos": self.goal_qpos.copy()}

    def _goal_seed(self, seed: int | None) -> int:
        return int(self.env.unwrapped.np_random.integers(2**31)) if seed is None else seed

    def _place_target(self, start: tuple[np.ndarray, np.ndarray], seed: int
                      ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        """(the start, the target): the env's own goal (`env_goal_dims`), or a drawn target, then also written
        into the env's own goal entries of the start, so that the env's marker shows it."""
        s = self.settings
        if s.target_low is None:
            return start, start[0][list(s.env_goal_dims)].copy()
        rng = np.random.default_rng(derive_seed(seed, 2))
        low, high = np.asarray(s.target_low, dtype=np.float64), np.asarray(s.target_high, dtype=np.float64)
        qpos, qvel = start[0].copy(), start[1].copy()
        now = qpos[list(s.target_dims)]
        for _ in range(1000):
            target = rng.uniform(low, high)
            if np.linalg.norm(target - now) >= s.target_min_distance:
                break
        else:
            raise UserError(f"adapter: no target in {list(low)}..{list(high)} is {s.target_min_distance} from the start "
                            f"{list(now)} in 1000 draws")
        if s.env_goal_dims:
            qpos[list(s.env_goal_dims)] = target
            self.set_state(qpos, qvel)
        return (qpos, qvel), target

    def _target_path(self, start: tuple[np.ndarray, np.ndarray], target: np.ndarray
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
        """goal=target: states with the target entries moved evenly from the start's to the target (the last is
        the goal; the ones before it are the sub-goals), every velocity zero."""
        qpos = start[0]
        dims = list(self.settings.target_dims)
        steps = self.settings.subgoals + 1
        path = []
        for k in range(1, steps + 1):
            q = qpos.copy()
            q[dims] = target if k == steps else qpos[dims] + (target - qpos[dims]) * k / steps
            path.append((q, np.zeros_like(start[1])))
        return path

    def _expert_goal(self, seed: int, start: tuple[np.ndarray, np.ndarray], options: dict[str, Any]
                     ) -> tuple[tuple[np.ndarray, np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
        """goal=expert: (the start, the expert's path from it, whose last state is the goal). A start from which
        the expert does not bring the tracked point within `threshold` of its target (Pusher-v5: 2 of 10, objects
        near the arm's base) would make a goal that is met at the start, so the env is reset again from seeds
        derived from `seed` until one works (deterministic per seed; up to EXPERT_TRIES starts)."""
        for attempt in range(EXPERT_TRIES):
            if attempt:
                self.env.reset(seed=derive_seed(seed, 10 + attempt), options=options or None)
                start = self._state()
            start, target = self._place_target(start, derive_seed(seed, 20 + attempt) if attempt else seed)
            path, missed = self._expert_path(start, target)
            if missed < self.settings.threshold:
                return start, path
        raise UserError(f"adapter.goal=expert: the expert ({self.settings.expert}) did not reach its target within "
                        f"{self.settings.threshold} in {self.settings.goal_steps} steps from any of {EXPERT_TRIES} starts "
                        f"of seed {seed} (last miss {missed:.3f}); raise adapter.goal_steps")

    def _expert_path(self, start: tuple[np.ndarray, np.ndarray], target: np.ndarray
                     ) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
        """(the states after each of the noiseless expert's steps from `start` toward `target` (the target_dims'
        values), until the tracked point is `expert_stop` from the target or `goal_steps` are spent; that point's
        final distance to the target)."""
        s, base = self.settings, self.env.unwrapped
        self.set_state(*start)
        aim = start[0].copy()
        aim[list(s.target_dims)] = target
        self.set_state(aim, np.zeros_like(start[1]))
        point = self._point()  # where the tracked body would be with the target entries reached
        self.set_state(*start)
        if callable(getattr(self._expert, "reset", None)):
            self._expert.reset()
        path, missed = [start], float(np.linalg.norm(self._point() - point))
        for _ in range(s.goal_steps):
            base.do_simulation(self._expert(point, None, 0.0), base.frame_skip)
            path.append(self._state())
            missed = float(np.linalg.norm(self._point() - point))
            if missed < s.expert_stop:
                break
        return path, missed

    def _random_path(self, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Step the simulator `goal_steps` times with seeded correlated noise; the states after each step."""
        policy = CorrelatedNoisePolicy(self.settings.theta, self.settings.sigma, gripper_dim=None)
        policy.reset(self.env, derive_seed(seed, 1))
        base, path = self.env.unwrapped, []
        for _ in range(self.settings.goal_steps):
            base.do_simulation(policy(None), base.frame_skip)
            path.append(self._state())
        return path

    def _subgoal_states(self, path: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        n = self.settings.subgoals
        if not n or not path:
            return []
        return [path[int(round(len(path) * (k + 1) / (n + 1))) - 1] for k in range(n)]

    # -- the goal-env protocol ------------------------------------------------------------------------------
    def goal_image(self) -> np.ndarray:
        if self._goal_image is None:
            raise RuntimeError("goal_image() before reset()")
        return self._goal_image

    def subgoal_images(self) -> list[np.ndarray]:
        return list(self._subgoals)

    def task_distance(self) -> float:
        if self.goal_point is None:
            raise RuntimeError("task_distance() before reset()")
        return float(np.linalg.norm(self._point() - self.goal_point))

    def is_success(self, distance: float) -> bool:
        return bool(distance < self.settings.threshold)

    def _expert_action(self, rng: np.random.Generator | None = None, noise: float = 0.0) -> np.ndarray:
        """The scripted expert's action toward the goal (`adapter.expert`), with its noise."""
        if self.goal_point is None:
            raise RuntimeError("expert_action() before reset()")
        return self._expert(self.goal_point, rng, noise)


def make_expert(spec: str, env: gym.Env, name: str) -> Any:
    """The expert `spec` names (envs/mujoco_tasks.py EXPERTS, or `module:Class`), built on `env`."""
    import importlib

    from envs.mujoco_tasks import EXPERTS

    if spec in EXPERTS:
        factory = EXPERTS[spec]
    elif ":" in spec:
        module, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise UserError(f"adapter.expert {spec!r} cannot be loaded: {err}") from None
    else:
        raise UserError(f"adapter.expert must be one of {', '.join(EXPERTS)} or module:Class, got {spec!r}")
    try:
        return factory(env)
    except KeyError as err:  # a body or joint the expert needs is not in this env's model
        raise UserError(f"adapter.expert={spec} does not fit {name}: {err}") from None


ADAPTERS = {"mujoco": (MujocoGoalEnv, MujocoGoalSettings)}


def wrap(env: gym.Env, adapter: str, settings: dict[str, Any] | None = None, env_id: str | None = None) -> gym.Env:
    """`env` wrapped in the named goal-env adapter (`mujoco`), its settings from a plain dict."""
    from common.config import build_config

    if adapter not in ADAPTERS:
        raise UserError(f"env_adapter must be one of {', '.join(ADAPTERS)} (or null), got {adapter!r}")
    cls, settings_cls = ADAPTERS[adapter]
    return cls(env, build_config(settings_cls, settings or {}, "adapter"), env_id)
