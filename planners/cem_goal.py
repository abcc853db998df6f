"""Goal-image reaching with a trained world model: `python planners/cem_goal.py`.

Runs `episodes` goal-reaching episodes in a gymnasium env (default `FrankaReach-v0`) with an MPC
planner (CEM by default) over the model's latent space, or a baseline agent (`agent=random|oracle`),
prints one line per episode and a summary, writes one MP4 per episode (observed frames beside the goal
image), and ends with a JSON line holding `success_rate`, `mean_final_distance` and
`mean_plan_seconds_per_step`. Hydra stops at `main()`: below it, a `PlanConfig`. A checkpoint that sees the wrist
camera (`data.cameras` in its config.json) makes our Franka envs with `wrist_camera=True`, and one trained on frames of
another exterior framing (`data.camera_view`, recorded by collection) makes them in that view, unless `env_kwargs` says.
"""

from __future__ import annotations

if __name__ == "__main__":  # --help, typos and missing arguments are answered before the heavy imports below
    from common.cli import preflight

    preflight("cem_goal")

import importlib
import inspect
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from common import goal_env
from common.cli import command_line_keys
from common.device import pick_device
from common.droid import CONTROL_HZ, WRIST_CAMERA
from common.seeding import evaluation_seed
from datasets.index import load_index
from datasets.reader import EpisodeReader
from datasets.schema import JOINTS, SIM_STATE
from envs import is_franka
from envs.policies import make_policy
from planners.actions import ActionRate, franka_delta_pose_adapter
from planners.diagnostics import episode_plot, write_video
from planners.episodes import Agent, PlannerAgent, PolicyAgent, run_episode
from planners.factory import PlanConfig, build_planner, load_model, plan_settings, set_threads, with_ensemble
from planners.sim_greedy import SimGreedyAgent
from world_model.decoder import load_decoder
from world_model.models import model_cameras

AGENTS = ("planner", "random", "oracle", "sim_greedy")


@dataclass
class DatasetGoal:
    """A goal from a held-out episode: start at its frame 0, reach the frame `offset` steps later. `options` are
    the reset options that restore both (the goal-env protocol's `recorded_state` names, the goal's prefixed
    `goal_`; our Franka envs' `arm_qpos` / `goal_arm_qpos`)."""

    file: str
    options: dict[str, np.ndarray]
    goal_image: np.ndarray | dict[str, np.ndarray]  # camera -> image for a model of several views


def recorded_options(reader: EpisodeReader, offset: int) -> dict[str, np.ndarray] | None:
    """Reset options from frame 0 to frame `offset` of an episode: its recorded simulator state
    (`observation/sim_state/<name>` -> `name`, `goal_<name>`), else its joint positions (our Franka envs); None
    when it has neither."""
    keys = reader.keys()
    state = [k for k in keys if k.startswith(SIM_STATE + "/")]
    if state:
        options = {}
        for key in state:
            values = reader.read_frames(key, [0, offset])
            name = key[len(SIM_STATE) + 1:]
            options[name], options[f"goal_{name}"] = values[0], values[1]
        return options
    if JOINTS in keys:
        joints = reader.read_frames(JOINTS, [0, offset])
        return {"arm_qpos": joints[0], "goal_arm_qpos": joints[1]}
    return None


def dataset_goals(root: str | Path, split: str, offset: int, camera: str | None, count: int | None,
                  cameras: list[str] | None = None) -> list[DatasetGoal]:
    """`count` goals from the `split` episodes of `root` (cycled if fewer; None: one per usable episode), each
    `offset` steps ahead of the start; with several `cameras` each goal image is a dict camera -> image."""
    index = load_index(root)
    if index is None:
        raise FileNotFoundError(f"{root} has no index.json; run python -m datasets.index {root}")
    files = index["split"].get(split, [])
    usable = []
    for name in files:
        with EpisodeReader(Path(root) / name) as reader:
            options = recorded_options(reader, offset) if len(reader) > offset else None
            if options is None:
                continue
            if cameras and len(cameras) > 1:
                missing = [c for c in cameras if c not in reader.cameras]
                if missing:
                    raise ValueError(f"{Path(root) / name}: missing key 'observation/image/{missing[0]}': expected "
                                     f"cameras {cameras}, the episode has {reader.cameras}")
                image: Any = {c: reader.images(c, [offset])[0] for c in cameras}
            else:
                image = reader.images(camera or (cameras or reader.cameras)[0], [offset])[0]
            usable.append(DatasetGoal(name, options, image))
        if count is not None and len(usable) >= count:
            break
    if not usable:
        raise ValueError(f"{root}: no {split!r} episode longer than {offset} steps with a recorded simulator state "
                         f"({SIM_STATE}) or joint positions")
    return [usable[i % len(usable)] for i in range(len(usable) if count is None else count)]


def takes_argument(env_id: str, name: str) -> bool:
    """Whether the registered env's constructor names the argument `name` (e.g. image_size)."""
    from gymnasium.envs.registration import load_env_creator

    entry = gym.spec(env_id).entry_point
    creator = load_env_creator(entry) if isinstance(entry, str) else entry
    try:
        return name in inspect.signature(creator).parameters
    except (TypeError, ValueError):
        return False


def make_env(config: PlanConfig, kwargs: dict[str, Any]) -> gym.Env:
    """The env of `config`, wrapped in its goal-env adapter (`env_adapter`) when it names one."""
    env = gym.make(config.env_id, **kwargs)
    if not config.env_adapter:
        return env
    from envs.goal_adapter import wrap

    try:
        return wrap(env, config.env_adapter, config.adapter, config.env_id)
    except Exception:
        env.close()
        raise


def model_env(config: PlanConfig, model_config: dict[str, Any] | None) -> gym.Env:
    """The env of `config` as the model (its checkpoint's config, or None for a baseline) sees it: frames at the
    model's size, the wrist camera when the model sees it, the exterior framing its frames were recorded with;
    `config.env_kwargs` wins over each."""
    kwargs = dict(config.env_kwargs or {})
    ours = is_franka(config.env_id)
    data = (model_config or {}).get("data", {})
    if ours or takes_argument(config.env_id, "image_size"):  # frames at the model's size (Franka, PushT-v0)
        kwargs.setdefault("image_size", data.get("image_size", 64))
    if ours and model_config and WRIST_CAMERA in model_cameras(model_config):
        kwargs.setdefault("wrist_camera", True)  # the checkpoint sees the wrist camera
    if ours and data.get("camera_view"):
        kwargs.setdefault("camera_view", data["camera_view"])  # the framing the model's frames were recorded with
    if not ours:
        kwargs.setdefault("render_mode", "rgb_array")
    return make_env(config, kwargs)


def evaluate(config: PlanConfig) -> dict[str, Any]:
    """Run `config.episodes` episodes with the planner (or a baseline `agent`) and return the summary."""
    if config.agent not in AGENTS:
        raise ValueError(f"agent must be one of {', '.join(AGENTS)}, got {config.agent!r}")
    if config.goals not in ("env", "dataset"):
        raise ValueError(f"goals must be 'env' or 'dataset', got {config.goals!r}")
    if config.env_module:
        importlib.import_module(config.env_module)
    gym.spec(config.env_id)  # an unknown id fails here, before the model loads
    planner_agent = config.agent == "planner"
    uses_model = planner_agent or config.agent == "sim_greedy"  # sim_greedy: the model's cost, the simulator's dynamics
    device = pick_device(config.device)
    threads = set_threads(config.threads)
    model = model_config = checkpoint = None
    if uses_model:
        print(f"loading the world model {config.checkpoint} ...", file=sys.stderr, flush=True)
        model, model_config, checkpoint = load_model(config.checkpoint, device)
        model = with_ensemble(model, model_config, list(config.ensemble or []), device)
    ours = is_franka(config.env_id)  # our Franka envs: DROID state and delta-pose actions, dataset goals
    cameras = model_cameras(model_config) if model_config else []
    env = model_env(config, model_config)
    hint = ("; a gymnasium MuJoCo env gets it from env_adapter=mujoco" if not config.env_adapter
            and callable(getattr(env.unwrapped, "set_state", None)) else "")
    goal_env.require(goal_env.task(env), config.env_id, hint=hint)
    if config.agent == "oracle":
        goal_env.require(goal_env.task(env), config.env_id, ("expert_action",), "agent=oracle")
    goals = None
    if config.goals == "dataset":
        if not ours:  # another env restarts from the simulator state collection recorded through the protocol
            goal_env.require(goal_env.task(env), config.env_id, ("recorded_state",), "goals=dataset", hint)
        g = config.goal_data
        goals = dataset_goals(g.root, g.split, g.offset, g.camera, None, cameras)

    agent: Agent
    if uses_model:
        control_hz = config.control_hz or float(env.metadata.get("render_fps") or CONTROL_HZ)  # as collect records it
        rate = ActionRate.for_model(model_config.get("data", {}), control_hz)
        planner = build_planner(model, model_config, config.solver, config.mpc, config.fixed(), device, config.seed, env,
                                rate)
        delta_pose = model_config.get("data", {}).get("action_mode") == "delta_pose"
        agent = PlannerAgent(planner, franka_delta_pose_adapter if ours and delta_pose else None, config.subgoals, rate,
                             cameras) if planner_agent else SimGreedyAgent(planner)
    else:  # random: correlated noise in the env's action box; oracle: the env's scripted expert (knows the goal)
        agent = PolicyAgent(make_policy("random" if config.agent == "random" else "expert", expert_noise=0.0))

    out = Path(config.video_dir) if config.video_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
        if planner_agent:  # a pixel decoder beside the model (world_model/decoder.py) shows the imagined frames
            planner.decoder = load_decoder(checkpoint, device)
    results = []
    next_goal = skipped = 0
    for episode in range(config.episodes):
        seed = evaluation_seed(config.seed, episode)
        while True:
            if planner_agent:
                planner.solver.reseed(seed)
            options, goal_image = None, None
            if goals is not None:
                goal, next_goal = goals[next_goal % len(goals)], next_goal + 1
                options, goal_image = goal.options, goal.goal_image
            result = run_episode(env, agent, config.max_steps, seed=seed, record=out is not None, reset_options=options,
                                 goal_image=goal_image, progress=f"episode {episode}" if config.progress else None)
            # a dataset goal its episode never left (the object unmoved over the offset) is reached at the start:
            # skipped for the next one, unless every goal is
            if goals is None or result.steps or not result.success or skipped >= len(goals):
                break
            skipped += 1
        results.append(result)
        print(f"episode {episode}: {'success' if result.success else 'failure'} in {result.steps} steps, "
              f"final distance {result.final_distance:.3f}, {result.plan_seconds_per_step:.3f} s planning per step"
              + "".join(f", {name} at {step}" for name, step in result.milestones.items() if step is not None))
        if out:
            write_video(result, out / f"episode_{episode:03d}.mp4")
            episode_plot(result, out / f"episode_{episode:03d}.png")
    env.close()
    successes = np.array([r.success for r in results], dtype=float)
    distances = np.array([r.final_distance for r in results])
    g = config.goal_data
    summary = {
        "success_rate": float(successes.mean()),
        "success_stderr": float(successes.std(ddof=1) / np.sqrt(len(results))) if len(results) > 1 else 0.0,
        "mean_final_distance": float(distances.mean()),
        "mean_steps_to_success": float(np.mean([r.steps for r in results if r.success])) if successes.any() else None,
        "subgoals": bool(config.subgoals),
        "mean_plan_seconds_per_step": float(np.mean([r.plan_seconds_per_step for r in results])),
        "episodes": len(results), "env_id": config.env_id, "env_adapter": config.env_adapter, "agent": config.agent,
        "solver": config.solver.name if planner_agent else None,
        "fixed_dims": {str(d): v for d, v in config.fixed().items()} if planner_agent else None,
        "frameskip": rate.skip if planner_agent else None, "checkpoint": str(checkpoint) if checkpoint else None,
        "max_steps": config.max_steps, "device": str(device), "torch_threads": threads,
        "goal_source": "env" if goals is None else f"{g.root}:{g.split}+{g.offset}",
        "cameras": cameras or None, "goals_reached_at_start_skipped": skipped,
        # the env's stages (goal-env `milestones`, e.g. pick-and-place: grasped, lifted, over_goal): the fraction of
        # episodes that got there, from the simulator (diagnostics)
        "milestones": {name: float(np.mean([r.milestones.get(name) is not None for r in results]))
                       for name in results[0].milestones} if results and results[0].milestones else None,
    }
    print(f"{config.env_id}: {int(successes.sum())}/{len(results)} successes, mean final distance "
          f"{summary['mean_final_distance']:.3f}, {summary['mean_plan_seconds_per_step']:.3f} s planning per step"
          + "".join(f", {name} {share:.0%}" for name, share in (summary["milestones"] or {}).items())
          + (f"; videos and plots in {out}" if out else "") + "; the JSON summary follows")
    return summary


def main(cfg: Any) -> None:
    print(json.dumps(evaluate(plan_settings(PlanConfig, cfg, command_line_keys()))))


if __name__ == "__main__":
    from common.cli import run

    run(main, "cem_goal")
