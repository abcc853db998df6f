"""Goal-image reaching with a trained world model: `python planners/cem_goal.py`.

Runs `episodes` goal-reaching episodes in a gymnasium env (default `FrankaReach-v0`) with an MPC
planner (CEM by default) over the model's latent space, prints one line per episode and a summary,
writes one MP4 per episode (observed frames beside the goal image), and ends with a JSON line
holding `success_rate`, `mean_final_distance` and `mean_plan_seconds_per_step`.
"""

from __future__ import annotations

import importlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np

from common.device import pick_device
from common.seeding import evaluation_seed
from datasets.index import load_index
from datasets.reader import EpisodeReader
from datasets.schema import JOINTS
from envs.policies import make_policy
from planners.factory import build_planner, load_model
from planners.mpc import EpisodeResult, franka_delta_pose_adapter, run_episode, run_policy_episode


def side_by_side(frames: list[np.ndarray], goal: np.ndarray, scale: int = 4) -> list[np.ndarray]:
    up = lambda img: np.repeat(np.repeat(img, scale, 0), scale, 1)  # noqa: E731
    return [np.concatenate([up(f), up(goal)], axis=1) for f in frames]


@dataclass
class DatasetGoal:
    """A goal from a held-out episode: start at its frame 0, reach the frame `offset` steps later."""

    file: str
    start_qpos: np.ndarray
    goal_qpos: np.ndarray
    goal_image: np.ndarray


def dataset_goals(root: str | Path, split: str, offset: int, camera: str | None, count: int) -> list[DatasetGoal]:
    """`count` goals from the `split` episodes of `root` (cycled if fewer), each `offset` steps ahead of the start."""
    index = load_index(root)
    if index is None:
        raise FileNotFoundError(f"{root} has no index.json; run python -m datasets.index {root}")
    files = index["split"].get(split, [])
    usable = []
    for name in files:
        with EpisodeReader(Path(root) / name) as reader:
            if len(reader) <= offset or JOINTS not in reader.keys():
                continue
            cam = camera or reader.cameras[0]
            joints = reader.read(JOINTS)
            usable.append(DatasetGoal(name, joints[0], joints[offset], reader.images(cam, [offset])[0]))
        if len(usable) >= count:
            break
    if not usable:
        raise ValueError(f"{root}: no {split!r} episode longer than {offset} steps with joint positions")
    return [usable[i % len(usable)] for i in range(count)]


def evaluate(cfg: Any) -> dict[str, Any]:
    """Run `cfg.episodes` episodes with the planner (or a baseline `agent`) and return the summary."""
    if cfg.env_module:
        importlib.import_module(cfg.env_module)
    planner_agent = cfg.agent == "planner"
    if cfg.agent not in ("planner", "random", "oracle"):
        raise ValueError(f"agent must be planner, random or oracle, got {cfg.agent!r}")
    device = pick_device(cfg.device)
    model = config = checkpoint = None
    if planner_agent:
        model, config, checkpoint = load_model(cfg.checkpoint, device)
    kwargs = dict(cfg.env_kwargs or {})
    ours = str(gym.spec(cfg.env_id).entry_point).startswith("envs.")
    if ours:
        kwargs.setdefault("image_size", config.get("data", {}).get("image_size", 64) if config else 64)
    else:
        kwargs.setdefault("render_mode", "rgb_array")
    env = gym.make(cfg.env_id, **kwargs)
    goals = None
    if cfg.goals == "dataset":
        if not ours:
            raise ValueError("goals=dataset needs one of our Franka envs (it restores recorded joint configurations)")
        g = cfg.goal_data
        goals = dataset_goals(g.root, g.split, g.offset, g.camera, cfg.episodes)
    elif cfg.goals != "env":
        raise ValueError(f"goals must be 'env' or 'dataset', got {cfg.goals!r}")

    def reset_args(episode: int) -> tuple[dict | None, np.ndarray | None]:
        if goals is None:
            return None, None
        goal = goals[episode]
        return {"arm_qpos": goal.start_qpos, "goal_arm_qpos": goal.goal_qpos}, goal.goal_image

    if planner_agent:
        planner = build_planner(model, config, cfg, device, cfg.seed, env)
        adapter = franka_delta_pose_adapter if ours and config.get("data", {}).get("action_mode") == "delta_pose" else None

        def episode_fn(episode: int, seed: int, record: bool) -> EpisodeResult:
            planner.solver.reseed(seed)
            options, goal_image = reset_args(episode)
            return run_episode(env, planner, cfg.max_steps, seed=seed, to_env_action=adapter, record=record,
                               reset_options=options, goal_image=goal_image)
    else:
        if not ours:
            raise ValueError(f"agent={cfg.agent} needs one of our Franka envs (it uses their scripted expert/noise)")
        # random: DROID-scaled correlated noise; oracle: the scripted expert that knows the true goal position
        policy = make_policy("random" if cfg.agent == "random" else "expert", expert_noise=0.0)

        def episode_fn(episode: int, seed: int, record: bool) -> EpisodeResult:
            return run_policy_episode(env, policy, cfg.max_steps, seed=seed, record=record,
                                      reset_options=reset_args(episode)[0])

    out = Path(cfg.video_dir) if cfg.video_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    results = []
    for episode in range(cfg.episodes):
        result = episode_fn(episode, evaluation_seed(cfg.seed, episode), out is not None)
        results.append(result)
        print(f"episode {episode}: {'success' if result.success else 'failure'} in {result.steps} steps, "
              f"final distance {result.final_distance:.3f}, {result.plan_seconds_per_step:.3f} s planning per step")
        if out:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imageio.mimwrite(out / f"episode_{episode:03d}.mp4", side_by_side(result.frames, result.goal_image),
                                 fps=4, format="ffmpeg", macro_block_size=1)
    env.close()
    successes = np.array([r.success for r in results], dtype=float)
    distances = np.array([r.final_distance for r in results])
    summary = {
        "success_rate": float(successes.mean()),
        "success_stderr": float(successes.std(ddof=1) / np.sqrt(len(results))) if len(results) > 1 else 0.0,
        "mean_final_distance": float(distances.mean()),
        "mean_plan_seconds_per_step": float(np.mean([r.plan_seconds_per_step for r in results])),
        "episodes": len(results), "env_id": cfg.env_id, "agent": cfg.agent,
        "solver": cfg.solver.name if planner_agent else None, "checkpoint": str(checkpoint) if checkpoint else None,
        "max_steps": cfg.max_steps, "device": str(device),
        "goal_source": "env" if goals is None else f"{cfg.goal_data.root}:{cfg.goal_data.split}+{cfg.goal_data.offset}",
    }
    print(f"{cfg.env_id}: {int(successes.sum())}/{len(results)} successes, mean final distance "
          f"{summary['mean_final_distance']:.3f}, {summary['mean_plan_seconds_per_step']:.3f} s planning per step")
    return summary


def main(cfg: Any) -> None:
    print(json.dumps(evaluate(cfg)))


if __name__ == "__main__":
    from common.cli import run

    run(main, "cem_goal")
