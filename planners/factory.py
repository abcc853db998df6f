"""Build a goal-reaching planner from a checkpoint and a config: shared by cem_goal, evaluate and the server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from common.device import pick_device
from planners.mpc import MPCConfig, MPCPlanner
from planners.solvers import Bounds, make_solver
from world_model.models import WorldModel, load_world_model

REPO = Path(__file__).resolve().parents[1]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder: as given, or relative to the repository (the shipped default)."""
    checkpoint = Path(path).expanduser()
    if not checkpoint.is_absolute() and not checkpoint.exists():
        checkpoint = REPO / checkpoint
    if not (checkpoint / "config.json").exists():
        raise FileNotFoundError(f"no world-model checkpoint at {checkpoint} (expected config.json and "
                                f"model.safetensors); train one with python world_model/train.py or pass checkpoint=PATH")
    return checkpoint


def load_model(path: str | Path, device: str | torch.device | None = None) -> tuple[WorldModel, dict[str, Any], Path]:
    checkpoint = resolve_checkpoint(path)
    model, config = load_world_model(checkpoint, pick_device(device) if not isinstance(device, torch.device) else device)
    return model, config, checkpoint


def model_bounds(config: dict[str, Any], fixed: dict[int, float], env: gym.Env | None = None) -> Bounds:
    """Action bounds in the model's action space: DROID's delta-pose limits, or the env's own box."""
    if config.get("data", {}).get("action_mode", "delta_pose") == "delta_pose":
        bounds = Bounds.droid(gripper=(-1.0, 1.0), fixed=fixed)
    elif env is not None:
        space = env.action_space
        bounds = Bounds(torch.as_tensor(space.low, dtype=torch.float32), torch.as_tensor(space.high, dtype=torch.float32),
                        fixed)
    else:
        raise ValueError("a model trained on recorded actions needs the env's action space for its bounds")
    bad = [d for d in fixed if not 0 <= d < len(bounds.low)]
    if bad:
        raise ValueError(f"fixed_dims {bad} outside the model's {len(bounds.low)}-D action space (pass fixed_dims={{}})")
    return bounds


#: `mpc.readout_weight: null` means this weight for checkpoints with a state readout, 0 for the others.
DEFAULT_READOUT_WEIGHT = 5.0


def mpc_config(model: WorldModel, mpc: Any) -> MPCConfig:
    """MPCConfig from the `mpc` section; resolves `readout_weight: null` from whether the model has a readout."""
    values = dict(mpc)
    if values.get("readout_weight") is None:
        values["readout_weight"] = DEFAULT_READOUT_WEIGHT if getattr(model, "readout", None) is not None else 0.0
    return MPCConfig(**values)


def build_planner(model: WorldModel, config: dict[str, Any], cfg: Any, device: torch.device, seed: int,
                  env: gym.Env | None = None) -> MPCPlanner:
    """An MPC planner from a cem_goal-style config (`solver`, `mpc`, `fixed_dims`)."""
    fixed = {int(k): float(v) for k, v in (cfg.fixed_dims or {}).items()}
    solver_args = {k: v for k, v in dict(cfg.solver).items() if k != "name"}
    solver = make_solver(cfg.solver.name, seed=seed, **solver_args)
    return MPCPlanner(model, solver, model_bounds(config, fixed, env), mpc_config(model, cfg.mpc), device)
