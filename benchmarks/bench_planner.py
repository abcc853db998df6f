"""Planner throughput: `python benchmarks/bench_planner.py [checkpoint=PATH]`.

Prints one JSON line:
- `lewm_size_plan_s`: seconds per plan with a LeWorldModel-size predictor (6 AdaLN blocks, width 192, one token
  per frame, history 3, random weights) and the planner of `lewm.solver` (configs/bench_planner.yaml), horizon 5,
  cached rollouts; `lewm_size_plan_s_bf16` the same with bfloat16 rollouts (`mpc.precision=bfloat16`);
  `lewm_size_plan_s_gpu` on CUDA when there is a GPU;
- `lewm_size_gflop_per_plan` / `lewm_size_rollouts_per_plan`: the work of that plan (FLOPs counted by torch's
  FlopCounterMode, rollouts = candidate sequences evaluated); `uncached_cem_gflop_per_plan` /
  `uncached_cem_rollouts_per_plan`: the work of the plan before cached rollouts (CEM 300 x 30, each step
  re-running the 3-frame window), for comparison;
- `default_plan_s`: seconds per plan of the shipped default model with its planning settings (its config.json,
  over configs/cem_goal.yaml), from a real observation and goal of its env (every camera view it sees);
- with `compare=true`, `ab_uncached_cem_s` / `ab_cached_cem_s` / `ab_cached_chosen_s`: seconds per plan of each
  repeat, interleaved: CEM 300 x 30 re-running the window, the same CEM cached, the chosen solver cached;
- `rollout_gflops`: floating-point throughput of the LeWM-size rollouts (one 300-candidate rollout, counted and
  timed), `matmul_gflops`: this machine's float32 matmul throughput (`matmul_size` squared) as the ceiling,
  `rollout_fraction_of_matmul` their ratio; `torch_threads`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from common.config import build_config, plain
from planners.costs import LatentGoalCost, rollout_cost
from planners.factory import SolverConfig
from planners.protocols import Bounds, Solver
from world_model.ac_predictor import ACPredictor, ACPredictorConfig
from world_model.models import LeWMEncoder, LeWorldModel


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def _timed_plans(solver: Solver, cost: Callable, horizon: int, bounds: Bounds, repeats: int) -> float:
    solver.solve(cost, horizon, bounds)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        solver.solve(cost, horizon, bounds)
    return (time.perf_counter() - start) / repeats


def _plan_work(solver: Solver, cost: Callable, horizon: int, bounds: Bounds) -> tuple[float, int]:
    """(GFLOP, candidate rollouts) of one plan."""
    rollouts = 0

    def counted(actions: torch.Tensor) -> torch.Tensor:
        nonlocal rollouts
        rollouts += actions.shape[0]
        return cost(actions)

    with FlopCounterMode(display=False) as counter:
        solver.solve(counted, horizon, bounds)
    return counter.get_total_flops() / 1e9, rollouts


def lewm_size_model(time_positions: str = "rope", seed: int = 0) -> LeWorldModel:
    """The LeWorldModel-size world model (random weights that make the actions matter)."""
    torch.manual_seed(seed)
    predictor = ACPredictor(192, ACPredictorConfig(width=192, depth=6, num_heads=6, state_dim=0,
                                                   time_positions=time_positions, window=3))
    with torch.no_grad():  # AdaLN-zero starts as the identity: give it action-dependent weights
        for p in predictor.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0, 0.02)
    return LeWorldModel(LeWMEncoder(depth=1), predictor, history=3).eval()


def lewm_size(cfg: Any) -> dict[str, float]:
    c = cfg.lewm
    bounds = Bounds.droid(gripper=(-1.0, 1.0))
    solver_config = build_config(SolverConfig, plain(c.solver))
    figures: dict[str, float] = {}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        model = lewm_size_model(seed=cfg.seed).to(device)
        z, goal = torch.randn(3, 1, 192, device=device), torch.randn(1, 192, device=device)
        for precision in ("float32", "bfloat16"):
            cost = rollout_cost(model, z, [LatentGoalCost(goal, final_only=c.final_only)],
                                context_actions=torch.zeros(2, 7, device=device), precision=precision)
            seconds = _timed_plans(solver_config.make(cfg.seed), cost, c.horizon, bounds.to(device), cfg.repeats)
            key = "lewm_size_plan_s" + ("_bf16" if precision == "bfloat16" else "") + ("_gpu" if device == "cuda" else "")
            figures[key] = seconds
            if device == "cpu" and precision == "float32":
                gflop, rollouts = _plan_work(solver_config.make(cfg.seed), cost, c.horizon, bounds)
                figures.update({"lewm_size_gflop_per_plan": gflop, "lewm_size_rollouts_per_plan": rollouts,
                                "lewm_size_solver": solver_config.name})
                figures.update(_rollout_throughput(cost, c.samples_for_throughput, c.horizon, cfg.rollout_repeats))
    # the work of the plan before cached rollouts: CEM 300 x 30 re-running the window (one iteration, counted)
    before = lewm_size_model("absolute", cfg.seed)
    cost = rollout_cost(before, torch.randn(3, 1, 192), [LatentGoalCost(torch.randn(1, 192))],
                        context_actions=torch.zeros(2, 7))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        cost(torch.zeros(10, c.horizon, 7))  # FLOPs are linear in the candidates: count 10, scale to 300
    figures.update({"uncached_cem_gflop_per_plan": 30 * 30 * counter.get_total_flops() / 1e9,
                    "uncached_cem_rollouts_per_plan": 300 * 30})
    return figures


def interleaved_comparison(cfg: Any) -> dict[str, list[float]]:
    """Seconds per plan, interleaved (A B C, `repeats` rounds): CEM 300 x 30 re-running the window (before
    cached rollouts), the same CEM with cached rollouts, and the chosen solver with cached rollouts."""
    c = cfg.lewm
    bounds = Bounds.droid(gripper=(-1.0, 1.0))
    z, goal = torch.randn(3, 1, 192), torch.randn(1, 192)
    cem = SolverConfig(name="cem", samples=300, elites=30, iterations=30)
    setups = {"uncached_cem": ("absolute", cem), "cached_cem": ("rope", cem),
              "cached_chosen": ("rope", build_config(SolverConfig, plain(c.solver)))}
    costs = {name: rollout_cost(lewm_size_model(time_positions, cfg.seed), z, [LatentGoalCost(goal, final_only=c.final_only)],
                                context_actions=torch.zeros(2, 7)) for name, (time_positions, _) in setups.items()}
    times: dict[str, list[float]] = {f"ab_{name}_s": [] for name in setups}
    for round_ in range(cfg.repeats + 1):  # the first round warms up
        for name, (_, solver) in setups.items():
            start = time.perf_counter()
            solver.make(cfg.seed).solve(costs[name], c.horizon, bounds)
            if round_:
                times[f"ab_{name}_s"].append(round(time.perf_counter() - start, 4))
    return times


def _rollout_throughput(cost: Callable, samples: int, horizon: int, repeats: int) -> dict[str, float]:
    actions = torch.zeros(samples, horizon, 7)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            cost(actions)
        flops = counter.get_total_flops()
        cost(actions)
        start = time.perf_counter()
        for _ in range(repeats):
            cost(actions)
        rollout_s = (time.perf_counter() - start) / repeats
    return {"rollout_gflops": flops / rollout_s / 1e9, "rollout_ms_per_iteration": rollout_s * 1000}


def default_model(cfg: Any) -> dict[str, float]:
    from common import goal_env
    from planners.cem_goal import model_env
    from planners.episodes import observe_views
    from planners.factory import PlanConfig, build_planner, load_model, with_checkpoint_planning
    from world_model.models import model_cameras

    planner_cfg = OmegaConf.load(cfg.planner_config)
    planner_cfg.pop("defaults", None)
    raw = with_checkpoint_planning({**plain(planner_cfg), "checkpoint": cfg.checkpoint}, set())
    plan = build_config(PlanConfig, raw)
    model, config, checkpoint = load_model(cfg.checkpoint, "cpu")
    cameras = model_cameras(config)
    env = model_env(plan, config)  # the checkpoint's env as it plans there: its settings, size and cameras
    try:  # the env's action space bounds a model trained on recorded actions
        planner = build_planner(model, config, plan.solver, plan.mpc, plan.fixed(), torch.device("cpu"), cfg.seed, env)
        obs, _ = env.reset(seed=cfg.seed)
        planner.reset(goal_env.goal_views(goal_env.task(env), cameras))
        frame, state = observe_views(env, obs, cameras)
        for _ in range(cfg.repeats + 1):  # the first call warms up; every call plans from the same frame
            planner.act(frame, state)
    finally:
        env.close()
    seconds = planner.plan_seconds[1:]
    return {"default_plan_s": sum(seconds) / len(seconds), "default_checkpoint": checkpoint.name,
            "default_solver": f"{plan.solver.name} {plan.solver.samples}x{plan.solver.iterations} horizon {plan.mpc.horizon}"
                              f" {plan.mpc.precision}"}


def main(cfg: Any) -> None:
    figures: dict[str, Any] = {"matmul_gflops": matmul_gflops(cfg.matmul_size)}
    figures.update(lewm_size(cfg))
    figures["rollout_fraction_of_matmul"] = figures["rollout_gflops"] / figures["matmul_gflops"]
    if cfg.checkpoint:
        figures.update(default_model(cfg))
    if cfg.compare:
        figures.update(interleaved_comparison(cfg))
    figures["torch_threads"] = torch.get_num_threads()
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    from common.cli import run

    run(main, "bench_planner")
