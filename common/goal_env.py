"""The goal-env protocol: what goal-image planning and its evaluation need from an env beyond gymnasium's API.

After `reset(seed=...)` (which samples the start and the goal for that seed) an env offers:
- `goal_image() -> (H, W, 3) uint8`: the scene rendered in the goal configuration;
- `task_distance() -> float`: the distance that decides success (metres for our tasks);
- `is_success(distance) -> bool`: the env's own success test (our pick-and-place also asks for a release);
and optionally `subgoal_images()` (intermediate goal images, in order) and `expert_action(rng, noise)` (a
scripted expert: the oracle baseline and data collection) and `privileged_state()` (e.g. the object's position,
recorded beside each step for probes and ablations, never an input of the models). Our Franka envs implement it directly; any env can.
`planners/cem_goal.py`, `evaluate.py` and the episode loop use only this, and say in one line what an env lacks.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from common.errors import UserError

REQUIRED = {
    "goal_image": "goal_image() -> (H, W, 3) uint8, the goal rendered after reset",
    "task_distance": "task_distance() -> float, the distance that decides success",
    "is_success": "is_success(distance) -> bool",
}
OPTIONAL = {
    "subgoal_images": "subgoal_images() -> list of (H, W, 3) uint8, intermediate goals in order",
    "expert_action": "expert_action(rng, noise) -> action, a scripted expert",
    "privileged_state": "privileged_state() -> {name: array}, simulator-only quantities recorded for diagnostics",
}


class GoalEnv(Protocol):
    def goal_image(self) -> np.ndarray: ...

    def task_distance(self) -> float: ...

    def is_success(self, distance: float) -> bool: ...


def task(env: Any) -> Any:
    """The layer of a (wrapped) env that implements the protocol: the outermost wrapper that has every required
    method (an adapter such as envs/goal_adapter.py), else the unwrapped env (ours implement it directly)."""
    layer = env
    while layer is not None:
        if not lacks(layer):
            return layer
        layer = getattr(layer, "env", None)
    return getattr(env, "unwrapped", env)


def lacks(env: Any, names: dict[str, str] | tuple[str, ...] = tuple(REQUIRED)) -> list[str]:
    """The protocol methods `env` (an unwrapped env) does not have."""
    return [name for name in names if not callable(getattr(env, name, None))]


def require(env: Any, env_id: str, names: tuple[str, ...] = tuple(REQUIRED), purpose: str = "goal-image planning",
            hint: str = "") -> None:
    """Raise one `UserError` line naming what `env` lacks for `purpose`, and where the protocol is described
    (plus `hint`, e.g. an adapter that would supply it)."""
    missing = lacks(env, names)
    if missing:
        described = "; ".join({**REQUIRED, **OPTIONAL}[name] for name in missing)
        raise UserError(f"{env_id} ({type(env).__name__}) cannot be used for {purpose}: it lacks {described} "
                        f"(the goal-env protocol, common/goal_env.py){hint}")
