"""Collect Droid-style episodes from a gymnasium env: `python -m recipes.collect env_id=FrankaReach-v0 out=DIR`.

Wiring above both `envs/` (the env and its policies) and `datasets/` (the episode writer).

Episodes are `episode_<i>.h5`, each seeded from (seed, i), written by worker
processes (one env each) and published atomically, so a rerun skips the ones
already there and finishes an interrupted collection. The env id, state
function and policy are checked before any worker starts; a worker that fails
(or dies) stops the run with its error in one line. Our Franka envs give
pixels and the DROID state in their observations and record their actions as
`action/cartesian_delta` (6) + `action/gripper_position`; any other env that
renders `rgb_array` works too: pixels come from `render()`, its actions are
recorded as `action/<action_name>` and its flat observation as `observation/env_state`; the robot pose keys
are written only where there is a pose: a Dict observation with a DROID `state`, or a `module:function` named
in `state_fn` that computes it. `policy=auto` is the mixture where the env has a scripted expert, else random.
`env_adapter=mujoco` (with `adapter` settings, as in cem_goal) collects through the goal-env adapter: its goal is
sampled at every reset, success is its own test, its scripted expert (`adapter.expert`) drives the `expert` and
`mixture` policies, and its `recorded_state()` (qpos, qvel) is written per step under `observation/sim_state/`,
from which `goals=dataset` restarts the env.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from common import goal_env
from common.config import build_config
from common.droid import CARTESIAN_DELTA_ACTION, CONTROL_HZ, EXTERIOR_CAMERA, FRANKA_ACTION_KEYS, WRIST_CAMERA
from common.errors import UserError
from common.seeding import derive_seed
from datasets.index import write_index
from datasets.schema import ENV_STATE, PRIVILEGED_GROUP, SIM_STATE
from datasets.writer import EpisodeWriter, remove_stale_temporaries
from envs import is_franka
from envs.policies import make_policy


@dataclass
class CollectConfig:
    env_id: str = "FrankaReach-v0"
    env_module: str | None = "envs"  # imported first so that the id is registered
    env_kwargs: dict[str, Any] | None = None
    env_adapter: str | None = None  # mujoco: collect through the goal-env adapter (envs/goal_adapter.py)
    adapter: dict[str, Any] | None = None  # its settings (goal, body, threshold, expert, ...)
    out: str = "data/reach"
    num_episodes: int = 10
    max_steps: int | None = None  # default: the env's max_episode_steps
    policy: str = "auto"  # auto (mixture if the env has expert_action, else random) | random | expert | mixture
    expert_noise: float = 0.1
    expert_weight: float = 0.5
    segment: int = 10
    theta: float = 0.15
    sigma: float = 0.35
    stop_on_success: bool = False
    seed: int = 0
    workers: int = 2
    camera: str = EXTERIOR_CAMERA
    state_fn: str | None = None  # "module:function(env, obs) -> (cartesian (6,), gripper)"
    action_name: str = "env"  # action key for envs that are not ours
    control_hz: float | None = None  # default: env.metadata["render_fps"], else 15
    index: bool = True
    val_fraction: float = 0.1


def episode_path(out: Path, i: int) -> Path:
    return out / f"episode_{i:06d}.h5"


def _load_function(spec: str) -> Callable:
    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"state_fn must look like 'module:function', got {spec!r}")
    return getattr(importlib.import_module(module), name)


def default_state(env: gym.Env, obs: Any) -> tuple[np.ndarray, float, np.ndarray | None] | None:
    """(cartesian (6,), gripper, joints or None) from a DROID-like Dict observation (`state`: xyz, Euler,
    gripper); None for any other observation: a flat vector's first numbers are no pose (cosines, targets,
    velocities), so such an env records only `observation/env_state` unless a `state_fn` computes its pose.
    """
    if isinstance(obs, dict) and "state" in obs:
        state = np.asarray(obs["state"], dtype=np.float64)
        joints = obs.get("joint_positions")
        return state[:6], float(state[6]) if len(state) > 6 else 0.0, None if joints is None else np.asarray(joints)
    return None


def has_expert(env_id: str, env_kwargs: dict[str, Any] | None = None) -> bool:
    """Whether the env offers a scripted expert (`expert_action`): from its class when the entry point names
    one, else from an instance."""
    from gymnasium.envs.registration import load_env_creator

    entry = gym.spec(env_id).entry_point
    creator = load_env_creator(entry) if isinstance(entry, str) else entry
    if isinstance(creator, type):
        return callable(getattr(creator, "expert_action", None))
    env = gym.make(env_id, **(env_kwargs or {}))
    try:
        return callable(getattr(env.unwrapped, "expert_action", None))
    finally:
        env.close()


def adapter_expert(cfg: CollectConfig) -> bool:
    """Whether the goal-env adapter of `cfg` is given a scripted expert (`adapter.expert`)."""
    return bool(cfg.env_adapter and (cfg.adapter or {}).get("expert"))


def resolve_policy(cfg: CollectConfig) -> str:
    """The policy `cfg.policy` names (auto: mixture where the env has a scripted expert, random otherwise);
    an expert-based policy for an env without one is refused here, before anything is collected."""
    if cfg.policy not in ("auto", "random", "expert", "mixture"):
        raise UserError(f"policy must be auto, random, expert or mixture, got {cfg.policy!r}")
    if cfg.policy == "random":
        return "random"
    expert = adapter_expert(cfg) or has_expert(cfg.env_id, cfg.env_kwargs)
    if cfg.policy == "auto":
        return "mixture" if expert else "random"
    if not expert:
        raise UserError(f"policy={cfg.policy} needs the env's scripted expert (expert_action), which {cfg.env_id} "
                        f"lacks; use policy=random (or policy=auto, which picks random for it)")
    return cfg.policy


class _Collector:
    """One env per worker process; collects whole episodes by index."""

    def __init__(self, cfg: CollectConfig):
        if cfg.env_module:
            importlib.import_module(cfg.env_module)
        self.cfg = cfg
        self.ours = is_franka(cfg.env_id)  # our Franka envs: DROID state and actions in their observations
        kwargs = dict(cfg.env_kwargs or {})
        if not self.ours:
            kwargs.setdefault("render_mode", "rgb_array")
        self.env = gym.make(cfg.env_id, **kwargs)
        if cfg.env_adapter:
            from envs.goal_adapter import wrap

            try:
                self.env = wrap(self.env, cfg.env_adapter, cfg.adapter, cfg.env_id)
            except Exception:
                self.env.close()
                raise
        task = goal_env.task(self.env)
        self.task = None if goal_env.lacks(task) else task  # scores success where the env's info has no is_success
        self.recorded_state = getattr(self.task, "recorded_state", None)
        self.privileged_state = getattr(task, "privileged_state", None)  # found once, read every step
        self.state_fn = _load_function(cfg.state_fn) if cfg.state_fn else default_state
        self.policy_name = resolve_policy(cfg)
        self.policy = make_policy(self.policy_name, cfg.expert_noise, cfg.expert_weight, cfg.segment, cfg.theta, cfg.sigma)
        self.max_steps = cfg.max_steps or (self.env.spec.max_episode_steps if self.env.spec else None) or 100
        self.control_hz = cfg.control_hz or float(self.env.metadata.get("render_fps") or CONTROL_HZ)
        # the exterior camera's framing (our Franka envs): a model trained on these frames plans in the same view
        view = getattr(self.env.unwrapped, "camera_view", None) if self.ours else None
        self.scene_attrs = {"camera_view": view} if view else {}

    def _images(self, obs: Any) -> dict[str, np.ndarray]:
        """Exterior frame under `cfg.camera`, plus `wrist_left` when the observation has `wrist_pixels`."""
        if isinstance(obs, dict) and "pixels" in obs:
            images = {self.cfg.camera: obs["pixels"]}
            if "wrist_pixels" in obs:
                images[WRIST_CAMERA] = obs["wrist_pixels"]
            return images
        frame = self.env.render()
        if not isinstance(frame, np.ndarray) or frame.ndim != 3:
            raise ValueError(f"{self.cfg.env_id}: render() must return an (H, W, 3) array in rgb_array mode")
        return {self.cfg.camera: np.ascontiguousarray(frame[..., :3], dtype=np.uint8)}

    def _privileged(self) -> dict[str, np.ndarray]:
        """The env's simulator-only quantities (`privileged_state()`, if it has one) under `observation/privileged/`."""
        if not callable(self.privileged_state):
            return {}
        return {f"{PRIVILEGED_GROUP}/{name}": np.asarray(value, np.float64) for name, value in self.privileged_state().items()}

    def _actions(self, action: np.ndarray) -> dict[str, np.ndarray]:
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if self.ours:
            return {FRANKA_ACTION_KEYS[0]: action[:6], FRANKA_ACTION_KEYS[1]: action[6]}
        return {self.cfg.action_name: action}

    def episode(self, i: int) -> dict[str, Any]:
        cfg = self.cfg
        seed = derive_seed(cfg.seed, i)
        obs, info = self.env.reset(seed=seed)
        self.policy.reset(self.env, seed)
        path = episode_path(Path(cfg.out), i)
        success = False
        task = self.env.unwrapped.__class__.__name__ if self.ours else cfg.env_id
        images = self._images(obs)
        with EpisodeWriter(path, cameras=list(images), control_hz=self.control_hz, task=task,
                           action_space=CARTESIAN_DELTA_ACTION if self.ours else cfg.action_name,
                           robot_type="franka_panda_sim" if self.ours else cfg.env_id,
                           attrs={"env_id": cfg.env_id, "seed": seed, "policy": self.policy_name,
                                  **self.scene_attrs}) as writer:
            for step in range(self.max_steps):
                images = images if step == 0 else self._images(obs)
                action = np.asarray(self.policy(obs))
                pose = self.state_fn(self.env.unwrapped, obs)
                cart, grip, joints = pose if pose is not None else (None, None, None)
                extras = {} if self.ours else {
                    ENV_STATE: np.asarray(gym.spaces.flatten(self.env.observation_space, obs), np.float64)}
                extras.update(self._privileged())
                if self.recorded_state is not None:  # the simulator state of this frame: goals=dataset resets to it
                    extras.update({f"{SIM_STATE}/{k}": np.asarray(v, np.float64) for k, v in self.recorded_state().items()})
                writer.add_step(images=images, cartesian_position=cart, gripper_position=grip,
                                joint_positions=joints, actions=self._actions(action), extras=extras)
                obs, _, terminated, truncated, info = self.env.step(action)
                if "is_success" in info or self.task is None:
                    success = success or bool(info.get("is_success", False))
                else:
                    success = success or self.task.is_success(self.task.task_distance())
                if terminated or truncated or (cfg.stop_on_success and success):
                    break
            writer.attrs["success"] = success
            steps = len(writer)
        return {"episode": i, "steps": steps, "success": success}

    def close(self) -> None:
        self.env.close()


def check_config(cfg: CollectConfig) -> str:
    """What can be checked before a worker starts: the env id, the state function, the policy (returned,
    resolved: `auto` becomes mixture or random)."""
    if cfg.env_module:
        try:
            importlib.import_module(cfg.env_module)
        except ImportError as err:
            raise UserError(f"env_module {cfg.env_module!r} cannot be imported: {err}") from None
    try:
        gym.spec(cfg.env_id)
    except gym.error.Error as err:
        raise UserError(f"unknown env_id {cfg.env_id!r}: {err}") from None
    if cfg.state_fn:
        try:
            _load_function(cfg.state_fn)
        except (ImportError, AttributeError) as err:
            raise UserError(f"state_fn {cfg.state_fn!r} cannot be loaded: {err}") from None
    if cfg.env_adapter:  # its name and settings, before a worker makes the env
        from envs.goal_adapter import ADAPTERS

        if cfg.env_adapter not in ADAPTERS:
            raise UserError(f"env_adapter must be one of {', '.join(ADAPTERS)} (or null), got {cfg.env_adapter!r}")
        build_config(ADAPTERS[cfg.env_adapter][1], cfg.adapter or {}, "adapter")
    policy = resolve_policy(cfg)
    make_policy(policy, cfg.expert_noise, cfg.expert_weight, cfg.segment, cfg.theta, cfg.sigma)
    return policy


class WorkerError(UserError):
    """An episode failed in a worker process; the message carries the worker's error."""


_worker: _Collector | None = None
_worker_error: Exception | None = None


def _init_worker(cfg: CollectConfig) -> None:
    global _worker, _worker_error
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        _worker = _Collector(cfg)
    except Exception as err:  # raised with the first episode: a pool restarts a failing initializer forever
        _worker_error = err


def _run_episode(i: int) -> dict[str, Any]:
    try:
        if _worker_error is not None:
            raise _worker_error
        return _worker.episode(i)
    except Exception as err:  # a plain message travels back whatever the error's type
        raise WorkerError(f"episode {i} failed in a worker process: {type(err).__name__}: {err} "
                          f"(workers=1 shows the traceback)") from None


def _collect_in_workers(cfg: CollectConfig, todo: list[int], results: list[dict[str, Any]], bar: tqdm) -> None:
    """Episodes `todo` on worker processes; the first failure (or a worker that dies) stops the run."""
    ctx = mp.get_context("spawn")  # fresh processes: each creates its own GL context and env
    with ProcessPoolExecutor(min(cfg.workers, len(todo)), mp_context=ctx, initializer=_init_worker,
                             initargs=(cfg,)) as pool:
        futures = [pool.submit(_run_episode, i) for i in todo]
        try:
            for future in as_completed(futures):
                results.append(future.result())
                bar.update()
        except BrokenProcessPool:
            raise WorkerError("a worker process died (killed, or crashed in native code); workers=1 shows "
                              "where") from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # episodes already running finish, the rest never start


def collect(cfg: CollectConfig, progress: bool = True) -> dict[str, Any]:
    """Collect the missing episodes of `cfg.out`; returns counts, success rate and timing."""
    policy = check_config(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    stale = remove_stale_temporaries(out)  # left by an interrupted earlier run
    todo = [i for i in range(cfg.num_episodes) if not episode_path(out, i).exists()]
    start = time.perf_counter()
    results: list[dict[str, Any]] = []
    bar = tqdm(total=len(todo), desc=f"collect {cfg.env_id}", unit="ep", disable=not progress)
    try:
        if todo and cfg.workers > 1:
            _collect_in_workers(cfg, todo, results, bar)
        elif todo:
            collector = _Collector(cfg)
            try:
                for i in todo:
                    results.append(collector.episode(i))
                    bar.update()
            finally:
                collector.close()
    finally:
        bar.close()  # before an error is printed, so that it gets a line of its own
    seconds = time.perf_counter() - start
    steps = sum(r["steps"] for r in results)
    summary = {
        "collected": len(results), "removed_stale": len(stale), "skipped_existing": cfg.num_episodes - len(todo), "steps": steps,
        "success_rate": float(np.mean([r["success"] for r in results])) if results else None,
        "policy": policy, "seconds": round(seconds, 2), "steps_per_s": round(steps / seconds, 1) if seconds > 0 and steps else None,
    }
    if cfg.index:
        index = write_index(out, val_fraction=cfg.val_fraction, seed=cfg.seed, progress=False)
        summary["indexed"] = index["num_episodes"]
    return summary


def main(cfg: Any) -> None:
    config = build_config(CollectConfig, cfg)
    summary = collect(config)
    rate = "n/a" if summary["success_rate"] is None else f"{100 * summary['success_rate']:.0f}%"
    chosen = (f"policy {summary['policy']}" + (" (auto: the env has a scripted expert)" if summary["policy"] == "mixture"
              else " (auto: the env has no scripted expert)") if config.policy == "auto" else f"policy {summary['policy']}")
    print(f"collected {summary['collected']} episodes ({summary['steps']} steps, {summary['steps_per_s']} steps/s) "
          f"of {config.env_id} into {config.out} with {chosen}: {summary['skipped_existing']} already there, "
          f"success {rate}")


if __name__ == "__main__":
    from common.cli import run

    run(main, "collect")
