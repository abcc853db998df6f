"""The goal-env protocol (common/goal_env.py) for any gymnasium MuJoCo env, through `set_state` and `render`.

gymnasium's MuJoCo envs (Reacher, Pusher, ...) have no goal image, distance or success test of their own. This
wrapper gives them one: after the env's own `reset(seed)` (the start), the goal is the state reached after
`goal_steps` steps of seeded correlated-noise actions from that start, rendered with the env's renderer (the
camera chosen when the env was made: `camera_id`, `camera_name` or `default_camera_config` in its kwargs, the
same one every observation uses), then the start state is restored. The distance is the Euclidean distance of a
body's world position (`body`, metres) or of chosen `qpos` entries (`qpos_dims`) to the goal's; success is that
distance below `threshold`. `reset(options={"qpos", "qvel", "goal_qpos", "goal_qvel"})` starts from (and aims
at) recorded states instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from common.errors import UserError
from common.seeding import derive_seed
from envs.policies import CorrelatedNoisePolicy


@dataclass
class MujocoGoalSettings:
    """How the adapter samples goals and scores them (configs/cem_goal.yaml `adapter`)."""

    goal_steps: int = 20  # the goal: the state after this many random actions from the start
    body: str | None = None  # distance between this body's world positions (metres)
    qpos_dims: list[int] | None = None  # ... or between these qpos entries (None: all of qpos)
    threshold: float = 0.05  # success: distance below this
    subgoals: int = 0  # intermediate goal images, evenly spaced along the path to the goal
    theta: float = 0.15  # the random actions' Ornstein-Uhlenbeck pull toward 0 per step
    sigma: float = 0.35  # ... and noise per step (normalised action units)


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
        self._goal_image: np.ndarray | None = None
        self._subgoals: list[np.ndarray] = []
        self.goal_qpos = self.goal_qvel = self.goal_point = None

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
            path = []
        else:
            path = self._random_path(int(base.np_random.integers(2**31)) if seed is None else seed)
        self.goal_qpos, self.goal_qvel = self._state()
        self.set_state(self.goal_qpos, self.goal_qvel)  # after mj_step the kinematics lag qpos by a step: recompute
        self.goal_point = self._point()
        self._goal_image = np.ascontiguousarray(base.render()[..., :3])
        self._subgoals = []
        for qpos, qvel in self._subgoal_states(path):
            self.set_state(qpos, qvel)
            self._subgoals.append(np.ascontiguousarray(base.render()[..., :3]))
        self.set_state(*start)
        if "qpos" in recorded and hasattr(base, "_get_obs"):  # the observation of the recorded start
            obs = base._get_obs()
        return obs, {**info, "goal_qpos": self.goal_qpos.copy()}

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


ADAPTERS = {"mujoco": (MujocoGoalEnv, MujocoGoalSettings)}


def wrap(env: gym.Env, adapter: str, settings: dict[str, Any] | None = None, env_id: str | None = None) -> gym.Env:
    """`env` wrapped in the named goal-env adapter (`mujoco`), its settings from a plain dict."""
    from common.config import build_config

    if adapter not in ADAPTERS:
        raise UserError(f"env_adapter must be one of {', '.join(ADAPTERS)} (or null), got {adapter!r}")
    cls, settings_cls = ADAPTERS[adapter]
    return cls(env, build_config(settings_cls, settings or {}, "adapter"), env_id)
