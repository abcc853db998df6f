"""PushT-v0's scripted expert, measured on held-out seeds (neither collection's nor evaluation's).

Prints one JSON line:
- `task_success`: gym-pusht's own task (the T covering > 95 % of the fixed target within 300 steps), the expert with
  the collection noise; `task_mean_steps` over the successes;
- `oracle_success`: the anchors' protocol (goal = a demonstration's state 25 steps ahead, stable-worldmodel's state
  test, 50 steps), the noise-free expert aiming at the goal (cem_goal's agent=oracle); `random_success`: correlated
  noise (agent=random); `start_success`: goals already met at the start; `mean_start_distance` (px);
- `contact_share_mixture` / `contact_share_expert`: the share of steps in which the disc touches the T, under
  collection's default policy (the mixture) and under the expert alone, on gym-pusht's task.
"""

from __future__ import annotations

import json
import time

import numpy as np


def _episode(env, policy, seed: int, steps: int) -> tuple[bool, int, int, float]:
    """(success, steps run, steps with contact, start distance) of one episode of `policy` from `env.reset(seed)`."""
    obs, info = env.reset(seed=seed)
    policy.reset(env, seed)
    success, contacts, start = bool(info["is_success"]), 0, float(info["distance"])
    step = 0
    while step < steps and not success:
        obs, _, terminated, truncated, info = env.step(policy(obs))
        step += 1
        success, contacts = bool(info["is_success"]), contacts + info["touching"]
        if terminated or truncated:
            break
    return success, step, contacts, start


def main(cfg) -> None:
    import gymnasium as gym

    import envs  # noqa: F401 - registers PushT-v0
    from envs.policies import make_policy

    start_time = time.perf_counter()
    seeds = [cfg.seed_base + i for i in range(cfg.episodes)]
    task_env = gym.make("PushT-v0", goals="task", max_episode_steps=cfg.task_steps)
    expert = make_policy("expert", cfg.expert_noise)
    task = [_episode(task_env, expert, s, cfg.task_steps) for s in seeds]
    mixture = make_policy("mixture", cfg.expert_noise, cfg.expert_weight, cfg.segment)
    mixed = [_episode(task_env, mixture, s, cfg.mixture_steps) for s in seeds]
    task_env.close()
    eval_env = gym.make("PushT-v0")  # the anchors' goals and success test
    oracle = [_episode(eval_env, make_policy("expert", 0.0), s, cfg.eval_steps) for s in seeds]
    random = [_episode(eval_env, make_policy("random"), s, cfg.eval_steps) for s in seeds]
    eval_env.close()

    def rate(results) -> float:
        return round(float(np.mean([r[0] for r in results])), 3)

    print(json.dumps({
        "task_success": rate(task), "task_mean_steps": round(float(np.mean([r[1] for r in task if r[0]] or [np.nan])), 1),
        "oracle_success": rate(oracle), "random_success": rate(random),
        "start_success": round(float(np.mean([r[1] == 0 and r[0] for r in oracle])), 3),
        "mean_start_distance": round(float(np.mean([r[3] for r in oracle])), 1),
        "contact_share_mixture": round(sum(r[2] for r in mixed) / max(1, sum(r[1] for r in mixed)), 3),
        "contact_share_expert": round(sum(r[2] for r in task) / max(1, sum(r[1] for r in task)), 3),
        "episodes": cfg.episodes, "seeds": [seeds[0], seeds[-1]], "expert_noise": cfg.expert_noise,
        "seconds": round(time.perf_counter() - start_time, 1)}))


if __name__ == "__main__":
    from common.cli import run

    run(main, "bench_pusht_expert")
