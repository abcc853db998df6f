"""The goal-env protocol: what goal-image planning and its evaluation need from an env beyond gymnasium's API.

After `reset(seed=...)` (which samples the start and the goal for that seed) an env offers:
- `goal_image() -> (H, W, 3) uint8`: the scene rendered in the goal configuration;
- `task_distance() -> float`: the distance that decides success (metres for our tasks);
- `is_success(distance) -> bool`: the env's own success test (our pick-and-place also asks for a release);
and optionally `subgoal_images()` (intermediate goal images, in order), `goal_state()` / `subgoal_states()` (the
robot state those images show: `planners/readout_check.py` scores a readout on them), `expert_action(rng, noise)` (a
scripted expert: the oracle baseline and data collection), `privileged_state()` (e.g. the object's position,
recorded beside each step for probes and ablations, never an input of the models), a `distance_unit` attribute
(the unit of `task_distance()` for plots and logs: `distance_unit(env)`, "m" when absent) and `recorded_state() ->
{name: array}` (the simulator state collection records per step under `observation/sim_state/<name>`;
`reset(options={name: value, ..., "goal_" + name: value})` then starts from one recorded step and aims at another:
`goals=dataset`) and `milestones() -> {name: bool}` (which stages of the task hold in the current state, e.g.
pick-and-place's grasped / lifted / over_goal: the evaluation reports how many episodes got how far, from the
simulator, for diagnostics only). Our Franka envs implement it directly (their dataset goals restart from the recorded joint
positions); any env can.

Several cameras (a model trained on `data.cameras`): `goal_image(camera=NAME)` (and `subgoal_images(camera=NAME)`)
render the goal from that camera, and a Dict observation holds each camera's frame under `OBSERVATION_PIXELS`
(`pixels`: the exterior camera, `wrist_pixels`: the wrist camera). An env with one camera needs neither:
`goal_views`/`subgoal_views` call `goal_image()` as before when the model sees one view.
`planners/cem_goal.py`, `evaluate.py` and the episode loop use only this, and say in one line what an env lacks.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from common.droid import EXTERIOR_CAMERA, WRIST_CAMERA
from common.errors import UserError

#: Where a Dict observation holds each camera's frame (our Franka envs; `pixels` alone for one-camera envs).
OBSERVATION_PIXELS = {EXTERIOR_CAMERA: "pixels", WRIST_CAMERA: "wrist_pixels"}

REQUIRED = {
    "goal_image": "goal_image() -> (H, W, 3) uint8, the goal rendered after reset",
    "task_distance": "task_distance() -> float, the distance that decides success",
    "is_success": "is_success(distance) -> bool",
}
OPTIONAL = {
    "subgoal_images": "subgoal_images() -> list of (H, W, 3) uint8, intermediate goals in order",
    "expert_action": "expert_action(rng, noise) -> action, a scripted expert",
    "privileged_state": "privileged_state() -> {name: array}, simulator-only quantities recorded for diagnostics",
    "recorded_state": "recorded_state() -> {name: array}, the simulator state to record and reset to (goals=dataset)",
}
#: What a readout check (planners/readout_check.py) compares the readout of the goal and sub-goal images with.
GOAL_STATES = {
    "goal_state": "goal_state() -> (S,) array, the robot state the goal image shows",
    "subgoal_states": "subgoal_states() -> list of (S,) arrays, the robot states the sub-goal images show",
}


def distance_unit(task_layer: Any) -> str:
    """The unit of the env's `task_distance()` (its `distance_unit` attribute; metres unless it says otherwise)."""
    return str(getattr(task_layer, "distance_unit", "m"))


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
        described = "; ".join({**REQUIRED, **OPTIONAL, **GOAL_STATES}[name] for name in missing)
        raise UserError(f"{env_id} ({type(env).__name__}) cannot be used for {purpose}: it lacks {described} "
                        f"(the goal-env protocol, common/goal_env.py){hint}")


def _takes_camera(method: Any) -> bool:
    try:
        return "camera" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _per_camera(env: Any, name: str, cameras: Sequence[str]) -> Any:
    method = getattr(env, name)
    if not _takes_camera(method):
        raise UserError(f"{type(env).__name__}.{name}() renders one camera; a model that sees cameras {list(cameras)} "
                        f"needs {name}(camera=NAME) (the goal-env protocol, common/goal_env.py)")
    return method


def default_view(cameras: Sequence[str] | None) -> bool:
    """Whether a model of these cameras sees the env's default view only (no camera named, or the exterior one)."""
    return not cameras or list(cameras) == [EXTERIOR_CAMERA]


def goal_views(env: Any, cameras: Sequence[str] | None = None) -> np.ndarray | dict[str, np.ndarray]:
    """The goal image a model of `cameras` needs: `goal_image()` for the default view, the named camera's image
    for one other camera, camera -> image for several."""
    if default_view(cameras):
        return env.goal_image()
    goal_image = _per_camera(env, "goal_image", cameras)
    views = {camera: goal_image(camera=camera) for camera in cameras}
    return views if len(views) > 1 else views[cameras[0]]


def subgoal_views(env: Any, cameras: Sequence[str] | None = None) -> list[Any]:
    """The sub-goal images in order, each as `goal_views` gives the goal; [] without sub-goals."""
    if not callable(getattr(env, "subgoal_images", None)):
        return []
    if default_view(cameras):
        return list(env.subgoal_images())
    subgoal_images = _per_camera(env, "subgoal_images", cameras)
    per_camera = {camera: list(subgoal_images(camera=camera)) for camera in cameras}
    views = [{camera: per_camera[camera][i] for camera in cameras} for i in range(len(per_camera[cameras[0]]))]
    return views if len(cameras) > 1 else [v[cameras[0]] for v in views]


def observation_views(obs: Any, cameras: Sequence[str], env_id: str = "the env") -> dict[str, np.ndarray]:
    """camera -> frame from a Dict observation (`OBSERVATION_PIXELS`); a camera it lacks is one line."""
    views = {}
    for camera in cameras:
        key = OBSERVATION_PIXELS.get(camera)
        if not isinstance(obs, dict) or key not in obs:
            have = sorted(k for k in obs if k in OBSERVATION_PIXELS.values()) if isinstance(obs, dict) else []
            raise UserError(f"{env_id}: the model sees cameras {list(cameras)}, but the observation has no frame of "
                            f"{camera!r} (key {key!r}; it has {have})"
                            + ("; make the env with env_kwargs.wrist_camera=true" if camera == WRIST_CAMERA else ""))
        views[camera] = obs[key]
    return views
