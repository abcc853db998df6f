"""Evaluate goal reaching over several seeds: `python planners/evaluate.py checkpoint=PATH seeds=[0,1,2]`.

Goals come from the env's own goal sampler (fresh seeds, never training episodes) or, with
`goals=dataset goal_data.root=DIR`, from held-out validation episodes (start at frame 0, goal image
the recorded frame `goal_data.offset` steps later; an env other than ours restarts from the simulator state
collection recorded through the goal-env protocol, and a goal already reached at the start is skipped). Prints one JSON line with per-seed results and
mean ± standard error (over seeds) of the success rate and the final distance. Uses the same settings as
`planners/cem_goal.py` (solver, MPC, env, step budget), plus `seeds`.
"""

from __future__ import annotations

if __name__ == "__main__":  # --help, typos and missing arguments are answered before the heavy imports below
    from common.cli import preflight

    preflight("evaluate")

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.cli import command_line_keys
from planners.cem_goal import evaluate
from planners.factory import PlanConfig, plan_settings


@dataclass
class EvaluateConfig(PlanConfig):
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])


def mean_stderr(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1) / np.sqrt(len(arr))) if len(arr) > 1 else 0.0


def evaluate_seeds(config: EvaluateConfig) -> dict[str, Any]:
    """`evaluate` once per seed (no videos); mean ± standard error over the seeds."""
    per_seed = [evaluate(dataclasses.replace(config, seed=int(seed), video_dir=None)) for seed in config.seeds]
    success, success_se = mean_stderr([r["success_rate"] for r in per_seed])
    distance, distance_se = mean_stderr([r["mean_final_distance"] for r in per_seed])
    milestones = per_seed[0].get("milestones") or {}
    return {
        "success_rate": success, "success_rate_stderr": success_se,
        "mean_final_distance": distance, "mean_final_distance_stderr": distance_se,
        "mean_plan_seconds_per_step": float(np.mean([r["mean_plan_seconds_per_step"] for r in per_seed])),
        "seeds": list(config.seeds), "episodes_per_seed": config.episodes, "max_steps": config.max_steps,
        "env_id": config.env_id, "agent": config.agent, "checkpoint": per_seed[0]["checkpoint"],
        "solver": per_seed[0]["solver"], "goal_source": per_seed[0]["goal_source"],
        # the env's stages reached: per stage, mean and standard error over the seeds of the share of episodes
        "milestones": {name: mean_stderr([r["milestones"][name] for r in per_seed]) for name in milestones} or None,
        "per_seed": per_seed,
    }


def main(cfg: Any) -> None:
    print(json.dumps(evaluate_seeds(plan_settings(EvaluateConfig, cfg, command_line_keys()))))


if __name__ == "__main__":
    from common.cli import run

    run(main, "evaluate")
