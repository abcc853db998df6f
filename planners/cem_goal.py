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
from pathlib import Path
from typing import Any

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np

from planners.factory import build_planner, load_model, pick_device
from planners.mpc import franka_delta_pose_adapter, run_episode


def side_by_side(frames: list[np.ndarray], goal: np.ndarray, scale: int = 4) -> list[np.ndarray]:
    up = lambda img: np.repeat(np.repeat(img, scale, 0), scale, 1)  # noqa: E731
    return [np.concatenate([up(f), up(goal)], axis=1) for f in frames]


def evaluate(cfg: Any) -> dict[str, Any]:
    device = pick_device(cfg.device)
    model, config, checkpoint = load_model(cfg.checkpoint, device)
    if cfg.env_module:
        importlib.import_module(cfg.env_module)
    kwargs = dict(cfg.env_kwargs or {})
    ours = str(gym.spec(cfg.env_id).entry_point).startswith("envs.")
    if ours:
        kwargs.setdefault("image_size", config.get("data", {}).get("image_size", 64))
    else:
        kwargs.setdefault("render_mode", "rgb_array")
    env = gym.make(cfg.env_id, **kwargs)
    planner = build_planner(model, config, cfg, device, cfg.seed, env)
    solver = planner.solver
    adapter = franka_delta_pose_adapter if ours and config.get("data", {}).get("action_mode") == "delta_pose" else None
    out = Path(cfg.video_dir) if cfg.video_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    results = []
    for episode in range(cfg.episodes):
        solver.reseed(cfg.seed * 1000 + episode)
        result = run_episode(env, planner, cfg.max_steps, seed=cfg.seed * 1000 + episode, to_env_action=adapter,
                             record=out is not None)
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
        "episodes": len(results), "env_id": cfg.env_id, "solver": cfg.solver.name, "checkpoint": str(checkpoint),
        "max_steps": cfg.max_steps, "device": str(device),
    }
    print(f"{cfg.env_id}: {int(successes.sum())}/{len(results)} successes, mean final distance "
          f"{summary['mean_final_distance']:.3f}, {summary['mean_plan_seconds_per_step']:.3f} s planning per step")
    return summary


def main(cfg: Any) -> None:
    print(json.dumps(evaluate(cfg)))


if __name__ == "__main__":
    from datasets.cli import run

    run(main, "cem_goal")
