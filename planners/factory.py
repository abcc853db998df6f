"""Planner settings (typed) and the planner built from a checkpoint: shared by cem_goal, evaluate, the server
and the benchmarks. Hydra stops at each command's `main()`, which calls `plan_config(cfg)` once."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from common.device import pick_device
from planners.mpc import MPCConfig, MPCPlanner
from planners.protocols import Bounds, WorldModelLike
from planners.solvers import SOLVERS, make_solver

REPO = Path(__file__).resolve().parents[1]

#: `mpc.readout_weight: null` means this weight for checkpoints with a state readout, 0 for the others.
DEFAULT_READOUT_WEIGHT = 5.0


@dataclass
class SolverConfig:
    """The solver and its parameters; a parameter left None (or one the chosen solver does not take) keeps
    that solver's default."""

    name: str = "cem"  # cem | icem | mppi | gradient
    samples: int | None = None
    elites: int | None = None
    iterations: int | None = None
    init_std: float | None = None
    min_std: float | None = None
    momentum: float | None = None
    temperature: float | None = None
    lr: float | None = None
    restarts: int | None = None
    beta: float | None = None  # icem: colour of the sampling noise (0 white, 2 iCEM)
    keep_elites: float | None = None  # icem: fraction of elites kept into the next iteration and MPC step
    decay: float | None = None  # icem: population shrink factor per iteration
    tolerance: float | None = None  # icem: stop when the best cost improves by less than this fraction

    def make(self, seed: int) -> Any:
        if self.name not in SOLVERS:
            raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {self.name!r}")
        takes = inspect.signature(SOLVERS[self.name]).parameters
        kwargs = {k: v for k, v in dataclasses.asdict(self).items() if k in takes and v is not None}
        return make_solver(self.name, **{**kwargs, "seed": seed})


@dataclass
class GoalDataConfig:
    root: str | None = None  # a collected dataset with index.json (its validation split is never trained on)
    split: str = "val"
    offset: int = 15  # the goal is the frame this many steps after the episode's start
    camera: str | None = None


@dataclass
class PlanConfig:
    """Goal-image planning episodes (configs/cem_goal.yaml)."""

    agent: str = "planner"  # planner | random | oracle
    checkpoint: str = "checkpoints/reach_default"
    env_id: str = "FrankaReach-v0"
    env_module: str | None = "envs"  # imported first so the id is registered
    env_kwargs: dict[str, Any] | None = None
    env_adapter: str | None = None  # mujoco: give an external gymnasium MuJoCo env the goal-env protocol
    adapter: dict[str, Any] | None = None  # the adapter's settings (envs/goal_adapter.py MujocoGoalSettings)
    episodes: int = 10
    goals: str = "env"  # env | dataset
    goal_data: GoalDataConfig = field(default_factory=GoalDataConfig)
    max_steps: int = 30
    seed: int = 0
    device: str | None = None
    threads: int | None = None  # torch threads for planning (None: torch's default, one per core)
    video_dir: str | None = "runs/cem_goal"  # per episode: labelled MP4 and a PNG of diagnostics plots
    subgoals: bool = False  # plan through the env's sub-goal images (info["subgoal_images"]) before the goal
    control_hz: float | None = None  # the env's control rate, for a model trained at data.fps (None: its render_fps, else 15)
    progress: bool = True  # a progress bar per episode (steps, distance, planning time) on stderr
    # action dims held at 0 (a list) or at given values (a dict; a null value plans that dim, so an experiment preset
    # can free a dim its base preset holds: hydra merges a preset's dict into its base's, key by key)
    fixed_dims: list[int] | dict[int, float | None] | None = None
    ensemble: list[str] = field(default_factory=list)  # more checkpoints planned together with `checkpoint`'s model
    solver: SolverConfig = field(default_factory=SolverConfig)
    mpc: MPCConfig = field(default_factory=MPCConfig)

    def fixed(self) -> dict[int, float]:
        if isinstance(self.fixed_dims, dict):
            return {int(k): float(v) for k, v in self.fixed_dims.items() if v is not None}
        return {int(d): 0.0 for d in self.fixed_dims or ()}


#: The PlanConfig settings a checkpoint may carry in its config.json (`planning`), so it is evaluated as reported.
PLANNING_KEYS = ("env_id", "env_kwargs", "env_adapter", "adapter", "control_hz", "max_steps", "subgoals", "fixed_dims",
                 "solver", "mpc")


def checkpoint_planning(checkpoint: str | Path) -> dict[str, Any]:
    """The `planning` settings of a checkpoint's config.json ({} when it has none); unknown keys are errors."""
    import json

    folder = resolve_checkpoint(checkpoint)
    if is_released(folder):  # a released V-JEPA 2-AC file: its planning settings live in <stem>.json beside it
        from world_model.vjepa2_ac import sidecar_settings

        planning = sidecar_settings(folder).get("planning") or {}
        source = folder.with_name(folder.name.removesuffix(".pt") + ".json")
    else:
        source = folder / "config.json"
        planning = json.loads(source.read_text()).get("planning") or {}
    unknown = sorted(set(planning) - set(PLANNING_KEYS))
    if unknown:
        raise ValueError(f"{source}: unknown planning settings {unknown}; valid: {list(PLANNING_KEYS)}")
    return planning


def with_checkpoint_planning(raw: dict[str, Any], typed: set[str]) -> dict[str, Any]:
    """`raw` (a cem_goal-style config as a dict) with its checkpoint's planning settings filled in, except where
    the user typed a setting on the command line (`typed`: keys like `solver.samples`, `mpc`, `fixed_dims`)."""
    if raw.get("agent", "planner") != "planner" and "checkpoint" not in typed:
        return raw
    return merge_planning(raw, checkpoint_planning(raw["checkpoint"]), typed)


def merge_planning(raw: dict[str, Any], planning: dict[str, Any], typed: set[str] = frozenset()) -> dict[str, Any]:
    """`raw` with `planning` (a checkpoint's or an experiment's `planning` section) laid over it: solver, mpc and
    adapter merged key by key, everything else replaced, except the settings the user typed (`typed`)."""

    def user_set(key: str) -> bool:
        return any(key == t or key.startswith(t + ".") or t.startswith(key + ".") for t in typed)

    merged = dict(raw)
    for key, value in planning.items():
        if key in ("solver", "mpc", "adapter") and isinstance(value, dict):
            merged[key] = {**(raw.get(key) or {}),
                           **{k: v for k, v in value.items() if not user_set(f"{key}.{k}")}}
        elif not user_set(key):
            merged[key] = value
    return merged


def plan_settings(cls: type, cfg: Any, typed: set[str]) -> Any:
    """The typed planning config of a command: hydra's values, the checkpoint's planning settings, then what
    the user typed (`typed`), in increasing precedence."""
    from common.config import build_config, plain

    return build_config(cls, with_checkpoint_planning(plain(cfg), typed))


def is_released(checkpoint: Path) -> bool:
    """Whether a resolved checkpoint is a released V-JEPA 2-AC `.pt` file rather than our folder."""
    return checkpoint.suffix == ".pt" and checkpoint.is_file()


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder or a released V-JEPA 2-AC `.pt` file: as given, or relative to the repository."""
    checkpoint = Path(path).expanduser()
    if not checkpoint.is_absolute() and not checkpoint.exists():
        checkpoint = REPO / checkpoint
    if not is_released(checkpoint) and not (checkpoint / "config.json").exists():
        raise FileNotFoundError(f"no world-model checkpoint at {checkpoint} (expected config.json and "
                                f"model.safetensors, or a released vjepa2-ac-vitg.pt); train one with "
                                f"python world_model/train.py or pass checkpoint=PATH")
    return checkpoint


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (when given) and return the count planning will use."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def load_model(path: str | Path, device: str | torch.device | None = None) -> tuple[Any, dict[str, Any], Path]:
    """(model, its config.json, the resolved folder); a released V-JEPA 2-AC `.pt` file is built from the file."""
    from world_model.models import load_world_model

    checkpoint = resolve_checkpoint(path)
    if is_released(checkpoint):
        from world_model.vjepa2_ac import load_released_model

        model, config = load_released_model(checkpoint, pick_device(device))
        return model, config, checkpoint
    model, config = load_world_model(checkpoint, pick_device(device))
    return model, config, checkpoint


def with_ensemble(model: Any, model_config: dict[str, Any], paths: list[str], device: torch.device) -> Any:
    """`model` alone, or with the models of `paths` as one `WorldModelEnsemble` (world_model/ensemble.py): each
    candidate is scored by every member. The members must have been trained on the same frames and actions as
    `model` (image size, action mode); the first checkpoint's planning settings apply."""
    if not paths:
        return model
    from world_model.ensemble import WorldModelEnsemble

    members, keys = [model], ("image_size", "action_mode", "cameras")
    for path in paths:
        member, config, checkpoint = load_model(path, device)
        differ = [k for k in keys if config.get("data", {}).get(k) != model_config.get("data", {}).get(k)]
        if differ:
            raise ValueError(f"ensemble member {checkpoint}: data.{differ[0]}={config.get('data', {}).get(differ[0])!r}, "
                             f"the main checkpoint's {model_config.get('data', {}).get(differ[0])!r}: members must agree")
        members.append(member)
    size = int(model_config.get("data", {}).get("image_size") or 64)
    views = getattr(model, "views", 1)
    probe = torch.zeros(1, 1, *([views] if views > 1 else []), 3, size, size, dtype=torch.uint8, device=device)
    with torch.no_grad():
        widths = [int(m.encode(probe).shape[-1]) for m in members]
    return WorldModelEnsemble(members, widths).eval()


def model_bounds(config: dict[str, Any], fixed: dict[int, float], env: Any = None, rate: Any = None) -> Bounds:
    """Action bounds in the model's action space: DROID's delta-pose limits, or the env's own box; with a
    frameskip (`rate`, a planners.actions.ActionRate) the box of the env actions one model action stands for."""
    if config.get("data", {}).get("action_mode", "delta_pose") == "delta_pose":
        bounds = Bounds.droid(gripper=(-1.0, 1.0), fixed=fixed)
        if rate is not None:
            low, high = rate.bounds(bounds.low.numpy(), bounds.high.numpy())
            bounds = Bounds(torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32), fixed)
    elif env is not None:
        space = env.action_space
        low, high = (space.low, space.high) if rate is None else rate.bounds(space.low, space.high)
        bounds = Bounds(torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32), fixed)
    else:
        raise ValueError("a model trained on recorded actions needs the env's action space for its bounds")
    bad = [d for d in fixed if not 0 <= d < len(bounds.low)]
    if bad:
        raise ValueError(f"fixed_dims {bad} outside the model's {len(bounds.low)}-D action space (pass fixed_dims=[] for none)")
    return bounds


def resolve_mpc(model: WorldModelLike, mpc: MPCConfig) -> MPCConfig:
    """`mpc` with `readout_weight: None` resolved from whether the model has a readout."""
    if mpc.readout_weight is not None:
        return mpc
    has_readout = getattr(model, "readout", None) is not None
    return dataclasses.replace(mpc, readout_weight=DEFAULT_READOUT_WEIGHT if has_readout else 0.0)


def build_planner(model: WorldModelLike, model_config: dict[str, Any], solver: SolverConfig, mpc: MPCConfig,
                  fixed: dict[int, float], device: torch.device, seed: int, env: Any = None, rate: Any = None
                  ) -> MPCPlanner:
    """An MPC planner over `model` with the given solver and MPC settings (`rate`: the model's frameskip mapping,
    planners.actions.ActionRate, for its bounds)."""
    from world_model.models import model_cameras

    image_size = model_config.get("data", {}).get("image_size")
    return MPCPlanner(model, solver.make(seed), model_bounds(model_config, fixed, env, rate), resolve_mpc(model, mpc), device,
                      image_size, model_cameras(model_config))  # the planner moves the bounds to its device
