"""Planner throughput: `python benchmarks/bench_planner.py [checkpoint=PATH]`.

Prints one JSON line:
- `lewm_size_plan_s`: seconds per full CEM plan (300 samples x 30 iterations x horizon 5) with a
  LeWorldModel-size predictor (6 AdaLN blocks, width 192, one token per frame, history 3), random weights;
- `default_plan_s`: seconds per plan of the shipped default model with its default planner settings
  (configs/cem_goal.yaml), from a real observation and goal of FrankaReach-v0;
- `rollout_gflops`: floating-point throughput of the LeWM-size rollouts inside the CEM plan (FLOPs counted
  by torch's FlopCounterMode over one CEM iteration's rollout, divided by its measured time);
- `matmul_gflops`: this machine's float32 matmul throughput (`matmul_size` squared, 2048 by default, same thread count) as the ceiling;
- `rollout_fraction_of_matmul`: the ratio of the two.
"""

from __future__ import annotations

import json
import time
from typing import Any

import torch
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from planners.costs import LatentGoalCost, rollout_cost
from planners.protocols import Bounds
from planners.solvers import CEMSolver
from world_model.ac_predictor import ACPredictor, ACPredictorConfig
from world_model.models import LeWMEncoder, LeWorldModel


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def _timed_plans(solver: CEMSolver, cost, horizon: int, bounds: Bounds, repeats: int) -> float:
    solver.solve(cost, horizon, bounds)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        solver.solve(cost, horizon, bounds)
    return (time.perf_counter() - start) / repeats


def lewm_size(cfg: Any) -> dict[str, float]:
    torch.manual_seed(cfg.seed)
    predictor = ACPredictor(192, ACPredictorConfig(width=192, depth=6, num_heads=6, state_dim=0))
    with torch.no_grad():  # AdaLN-zero starts as the identity: give it action-dependent weights
        for p in predictor.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0, 0.02)
    model = LeWorldModel(LeWMEncoder(depth=1), predictor, history=3).eval()
    z = torch.randn(3, 1, 192)
    cost = rollout_cost(model, z, [LatentGoalCost(torch.randn(1, 192))], context_actions=torch.zeros(2, 7))
    bounds = Bounds.droid(gripper=(-1.0, 1.0))
    c = cfg.lewm
    solver = CEMSolver(samples=c.samples, elites=c.elites, iterations=c.iterations, seed=cfg.seed)
    plan_s = _timed_plans(solver, cost, c.horizon, bounds, cfg.repeats)
    actions = torch.zeros(c.samples, c.horizon, 7)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            cost(actions)
        flops = counter.get_total_flops()
        cost(actions)
        start = time.perf_counter()
        for _ in range(cfg.rollout_repeats):
            cost(actions)
        rollout_s = (time.perf_counter() - start) / cfg.rollout_repeats
    return {"lewm_size_plan_s": plan_s, "rollout_gflops": flops / rollout_s / 1e9,
            "rollout_gflop_per_iteration": flops / 1e9, "rollout_ms_per_iteration": rollout_s * 1000}


def default_model(cfg: Any) -> dict[str, float]:
    import gymnasium as gym

    import envs  # noqa: F401 - registers the ids
    from common.config import build_config
    from planners.factory import PlanConfig, build_planner, load_model

    planner_cfg = OmegaConf.load(cfg.planner_config)
    planner_cfg.pop("defaults", None)
    plan = build_config(PlanConfig, planner_cfg)
    model, config, checkpoint = load_model(cfg.checkpoint, "cpu")
    planner = build_planner(model, config, plan.solver, plan.mpc, plan.fixed(), torch.device("cpu"), cfg.seed)
    env = gym.make(planner_cfg.env_id, image_size=config.get("data", {}).get("image_size", 64))
    try:
        obs, info = env.reset(seed=cfg.seed)
        planner.reset(info["goal_image"])
        for _ in range(cfg.repeats + 1):  # the first call warms up; every call plans from the same frame
            planner.act(obs["pixels"], obs["state"])
    finally:
        env.close()
    seconds = planner.plan_seconds[1:]
    return {"default_plan_s": sum(seconds) / len(seconds), "default_checkpoint": checkpoint.name,
            "default_solver": f"{planner_cfg.solver.name} {planner_cfg.solver.samples}x{planner_cfg.solver.iterations}"
                              f" horizon {planner_cfg.mpc.horizon}"}


def main(cfg: Any) -> None:
    figures: dict[str, Any] = {"matmul_gflops": matmul_gflops(cfg.matmul_size)}
    figures.update(lewm_size(cfg))
    figures["rollout_fraction_of_matmul"] = figures["rollout_gflops"] / figures["matmul_gflops"]
    if cfg.checkpoint:
        figures.update(default_model(cfg))
    figures["torch_threads"] = torch.get_num_threads()
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    from common.cli import run

    run(main, "bench_planner")
