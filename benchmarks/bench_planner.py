"""Planner iteration throughput: CEM over LeWorldModel-sized (1 token) and V-JEPA-AC-sized (64 tokens) models.

Prints one JSON line: `plan_seconds_<model>` (one full CEM plan), `cem_iterations_per_s_<model>` and
`rollout_samples_per_s_<model>` (candidate sequences rolled out per second), for randomly initialised models.
"""

from __future__ import annotations

import json
import time

import torch

from planners.costs import latent_cost
from planners.solvers import Bounds, CEMSolver
from world_model.ac_predictor import ACPredictor, ACPredictorConfig
from world_model.encoder import EncoderConfig, VideoViT
from world_model.models import JEPAWorldModel, LeWMEncoder, LeWorldModel


def _time_plan(model, tokens: int, dim: int, cfg, states: bool, horizon: int) -> dict[str, float]:
    torch.manual_seed(cfg.seed)
    z = torch.randn(model.history, tokens, dim)
    cost = latent_cost(model, z, torch.randn(tokens, dim), context_actions=torch.zeros(model.history - 1, 7),
                       states=torch.zeros(model.history, 7) if states else None)
    solver = CEMSolver(samples=cfg.samples, elites=cfg.elites, iterations=cfg.iterations, seed=cfg.seed)
    bounds = Bounds.droid(gripper=(-1.0, 1.0))
    solver.solve(cost, horizon, bounds)  # warm-up
    start = time.perf_counter()
    for _ in range(cfg.repeats):
        solver.solve(cost, horizon, bounds)
    seconds = (time.perf_counter() - start) / cfg.repeats
    return {"plan_seconds": seconds, "cem_iterations_per_s": cfg.iterations / seconds,
            "rollout_samples_per_s": cfg.iterations * cfg.samples / seconds}


def main(cfg) -> None:
    lewm = LeWorldModel(LeWMEncoder(), ACPredictor(192, ACPredictorConfig(width=192, depth=6, num_heads=6, state_dim=0)),
                        history=3).eval()
    jepa = JEPAWorldModel(VideoViT(EncoderConfig(size="tiny", img_size=64, patch_size=8)),
                          ACPredictor(192, ACPredictorConfig(width=256, depth=6, num_heads=8)), history=3).eval()
    figures = {}
    runs = (("lewm", lewm, 1, 192, False, cfg.horizon_lewm), ("vjepa_ac", jepa, 64, 192, True, cfg.horizon_vjepa_ac))
    for name, model, tokens, dim, states, horizon in runs:
        for key, value in _time_plan(model, tokens, dim, cfg, states, horizon).items():
            figures[f"{key}_{name}"] = round(value, 4)
    print(json.dumps({**figures, "samples": cfg.samples, "iterations": cfg.iterations,
                      "horizon_lewm": cfg.horizon_lewm, "horizon_vjepa_ac": cfg.horizon_vjepa_ac,
                      "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    from datasets.cli import run

    run(main, "bench_planner")
