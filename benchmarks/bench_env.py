"""Env stepping throughput with 64x64 rendering on one core.

Prints one JSON line: `steps_per_s` (the slowest env id) and `steps_per_s_<env id>` for
each id, with the share of a step spent rendering (`render_ms_<env id>`).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np


def main(cfg) -> None:
    if cfg.one_core:
        os.environ["LP_NUM_THREADS"] = "1"  # Mesa's llvmpipe renders with one thread
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    os.environ.setdefault("MUJOCO_GL", "egl")
    import gymnasium as gym

    import envs  # noqa: F401  (registers the ids)
    from common.droid import EXTERIOR_CAMERA

    figures: dict[str, float] = {}
    for env_id in cfg.env_ids:
        env = gym.make(env_id, image_size=cfg.image_size)
        env.action_space.seed(cfg.seed)
        env.reset(seed=cfg.seed)
        for _ in range(20):  # warm-up
            env.step(env.action_space.sample())
        start = time.perf_counter()
        for _ in range(cfg.steps):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        seconds = time.perf_counter() - start
        unwrapped = env.unwrapped
        t0 = time.perf_counter()
        for _ in range(200):
            unwrapped._render(unwrapped.data, EXTERIOR_CAMERA, unwrapped.image_size)
        render_ms = (time.perf_counter() - t0) / 200 * 1e3
        env.close()
        figures[f"steps_per_s_{env_id}"] = round(cfg.steps / seconds, 1)
        figures[f"render_ms_{env_id}"] = round(render_ms, 3)
    rates = [v for k, v in figures.items() if k.startswith("steps_per_s_")]
    print(json.dumps({"steps_per_s": min(rates), **figures, "image_size": cfg.image_size,
                      "one_core": bool(cfg.one_core), "steps_timed": cfg.steps, "steps_per_s_mean": round(float(np.mean(rates)), 1)}))


if __name__ == "__main__":
    from common.cli import run

    run(main, "bench_env")
