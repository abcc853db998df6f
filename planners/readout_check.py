"""How well a world model's state readout reads the images a planner aims at: `python planners/readout_check.py
checkpoint=PATH`.

The planner's readout cost and its sub-goal switch compare the readout of the predicted latent with the readout of the
(sub-)goal image. A readout that misreads those images steers the arm to the wrong place however good the dynamics
are (pick-and-place: the 96-px exterior view read "open around the cube" as 0.15-0.21 closed, so the planner
half-closed the fingers over the cube). This resets the checkpoint's env (its task settings, as `evaluate.py` makes
it) on `episodes` evaluation seeds, renders each sub-goal, the goal and the start in the model's camera views, and
compares the readout of their latents with the robot state each image shows (`subgoal_states()`, `goal_state()` and
the observed state: the goal-env protocol). It prints a table of the mean absolute error per image and readout output
(metres, radians, gripper 0..1), and ends with one JSON line holding the same numbers. Nothing is planned.
"""

from __future__ import annotations

if __name__ == "__main__":  # --help, typos and missing arguments are answered before the heavy imports below
    from common.cli import preflight

    preflight("readout_check")

import json
import sys
from typing import Any

import numpy as np
import torch

from common import goal_env
from common.cli import command_line_keys
from common.device import pick_device
from common.droid import STATE_NAMES
from common.errors import UserError
from common.seeding import evaluation_seed
from planners.cem_goal import model_env
from planners.episodes import observe_views
from planners.factory import PlanConfig, load_model, plan_settings, set_threads
from planners.mpc import frame_pixels
from world_model.models import model_cameras


def image_names(subgoals: int) -> list[str]:
    """Row names: the sub-goal images in order, the goal image, the start frame."""
    return [f"sub-goal {i + 1}" for i in range(subgoals)] + ["goal", "start"]


def readout_errors(model: Any, env: Any, cameras: list[str], image_size: int | None, seeds: list[int],
                   device: torch.device) -> tuple[np.ndarray, list[str]]:
    """(len(seeds), images, readout dims) signed errors (readout - true state) and the image names, one reset per seed."""
    layer = goal_env.task(env)
    env_id = env.spec.id if getattr(env, "spec", None) else type(layer).__name__
    needs = ("goal_state", "subgoal_states") if callable(getattr(layer, "subgoal_images", None)) else ("goal_state",)
    goal_env.require(layer, env_id, needs, "a readout check")
    dims = list(model.readout.dims)
    views = cameras if len(cameras) > 1 else None  # the planner's convention: None for a one-view model
    errors, names = [], None
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        frame, state = observe_views(env, obs, cameras or None)
        if state is None:
            raise UserError(f"{env_id}: the observation has no robot state to compare the readout of the start frame "
                            "with")
        images = [*goal_env.subgoal_views(layer, cameras), goal_env.goal_views(layer, cameras), frame]
        states = [*(layer.subgoal_states() if "subgoal_states" in needs else []), layer.goal_state(), state]
        if len(images) != len(states):
            raise UserError(f"{type(layer).__name__}: {len(images) - 2} sub-goal images but {len(states) - 2} "
                            "sub-goal states (subgoal_states() must match subgoal_images())")
        names = names or image_names(len(images) - 2)
        pixels = torch.stack([frame_pixels(image, views, image_size, name) for image, name in zip(images, names)])
        with torch.no_grad():
            readout = model.readout(model.encode(pixels[:, None].to(device))[:, 0]).cpu().numpy()
        errors.append(readout - np.stack(states)[:, dims])
    return np.stack(errors), names or []


def check(config: PlanConfig) -> dict[str, Any]:
    """The readout's mean absolute error on the images of `config.episodes` resets, per image and readout output."""
    device = pick_device(config.device)
    threads = set_threads(config.threads)
    print(f"loading the world model {config.checkpoint} ...", file=sys.stderr, flush=True)
    model, model_config, checkpoint = load_model(config.checkpoint, device)
    if getattr(model, "readout", None) is None:
        raise UserError(f"{checkpoint}: this model has no state readout (train with model.readout_weight > 0); "
                        "there is nothing to check")
    cameras = model_cameras(model_config)
    env = model_env(config, model_config)
    try:
        seeds = [evaluation_seed(config.seed, episode) for episode in range(config.episodes)]
        errors, names = readout_errors(model, env, cameras, model_config.get("data", {}).get("image_size"), seeds,
                                       device)
    finally:
        env.close()
    dims = [int(d) for d in model.readout.dims]
    labels = [STATE_NAMES[d] if d < len(STATE_NAMES) else f"state[{d}]" for d in dims]
    mae = np.abs(errors).mean(0)
    print(f"readout of {checkpoint} on {len(seeds)} resets of {config.env_id} (seed {config.seed}): mean |error| "
          "(m, rad, gripper 0 open .. 1 closed)")
    width = max(len(n) for n in names)
    print(" " * width + "".join(f"{label:>9}" for label in labels))
    for name, row in zip(names, mae):
        print(f"{name:<{width}}" + "".join(f"{value:9.3f}" for value in row))
    return {"checkpoint": str(checkpoint), "env_id": config.env_id, "seed": config.seed, "resets": len(seeds),
            "cameras": cameras or None, "readout_dims": dims, "images": names,
            "mean_abs_error": {name: dict(zip(labels, map(float, row))) for name, row in zip(names, mae)},
            "device": str(device), "torch_threads": threads}


def main(cfg: Any) -> None:
    print(json.dumps(check(plan_settings(PlanConfig, cfg, command_line_keys()))))


if __name__ == "__main__":
    from common.cli import run

    run(main, "readout_check")
