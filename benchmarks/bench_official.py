"""Cost of planning with the released V-JEPA 2-AC: `python benchmarks/bench_official.py [cpu_batch=1 threads=1]`.

Prints one JSON line at the released size (ViT-g encoder 1408 x 40 at 256 px, predictor 1024 x 24, one context
frame, CEM with 800 samples x 10 iterations x horizon 1, as in the paper; random weights, same arithmetic):
- `released_plan_gflop`: FLOPs of one plan (the observation's encoding + every candidate's rollout), counted by
  torch's FlopCounterMode on the meta device (no memory, exact shapes);
- `released_predictor_call_s_cpu_est` and `released_plan_s_cpu_est`: one predictor call on `cpu_batch` candidates
  timed on CPU and scaled to 800 candidates (cost is linear in the batch); the encoder's share is its FLOPs at
  the predictor's measured CPU rate (`measure_encoder=true` times one ViT-g frame instead);
- `released_plan_s_gpu`: a whole CEM plan (encode + 10 batched rollouts) timed under bf16 autocast, only when
  CUDA is available. The paper reports 16 s per action on an RTX 4090.
"""

from __future__ import annotations

if __name__ == "__main__":  # --help, typos and missing arguments are answered before the heavy imports below
    from common.cli import preflight

    preflight("bench_official")

import json
import time
from typing import Any

import torch
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from planners.costs import LatentGoalCost, rollout_cost
from planners.protocols import Bounds
from planners.solvers import CEMSolver
from world_model.encoder import EncoderConfig
from world_model.vjepa2_ac import PredictorConfig, VJEPA2ACConfig, VJEPA2ACWorldModel, build_modules


def build(arch: VJEPA2ACConfig, history: int, device: str | torch.device) -> VJEPA2ACWorldModel:
    """The world model at `arch` with random weights (on the meta device: shapes only)."""
    with torch.device(device):
        return VJEPA2ACWorldModel(*build_modules(arch), history=history).eval()


def inputs(model: VJEPA2ACWorldModel, device: str | torch.device, batch: int, horizon: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(context latents (C, N, D), states (C, 7), goal (N, D), candidate actions (batch, H, 7))."""
    n = (model.image_size // model.encoder.patch_size) ** 2
    d, c = model.encoder.embed_dim, model.history
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(c, n, d, generator=gen).to(device)
    goal = torch.randn(n, d, generator=gen).to(device)
    states = torch.tensor([[0.5, 0.0, 0.3, 3.1, 0.0, 0.0, 0.0]]).expand(c, 7).to(device)
    actions = (torch.randn(batch, horizon, 7, generator=gen) * 0.03).to(device)
    return z, states, goal, actions


def plan_cost(model: VJEPA2ACWorldModel, z: torch.Tensor, states: torch.Tensor, goal: torch.Tensor) -> Any:
    past = z.new_zeros(z.shape[0] - 1, 7)
    return rollout_cost(model, z, [LatentGoalCost(goal, "l1")], past, states)


@torch.no_grad()
def count_flops(arch: VJEPA2ACConfig, cfg: Any) -> tuple[float, float]:
    """(FLOPs of one candidate's rollout, FLOPs of encoding one frame), counted on the meta device."""
    model = build(arch, cfg.history, "meta")
    z, states, goal, actions = inputs(model, "meta", 1, cfg.horizon)
    cost = plan_cost(model, z, states, goal)
    with FlopCounterMode(display=False) as counter:
        cost(actions)
    rollout = counter.get_total_flops()
    frame = torch.zeros(1, 1, 3, model.image_size, model.image_size, dtype=torch.uint8, device="meta")
    with FlopCounterMode(display=False) as counter:
        model.encode(frame)
    return float(rollout), float(counter.get_total_flops())


@torch.no_grad()
def time_cpu(arch: VJEPA2ACConfig, cfg: Any) -> tuple[float, float | None]:
    """(seconds of one rollout for `cpu_batch` candidates, seconds to encode one frame or None) on CPU, float32."""
    model = build(arch, cfg.history, "meta")
    encoder = None
    if cfg.measure_encoder:
        model.encoder.to_empty(device="cpu")
        encoder = model.encoder
    model.predictor.to_empty(device="cpu")
    for param in model.predictor.parameters():  # plain random values (memory from to_empty may hold NaN)
        param.normal_(0.0, 0.02)
    z, states, goal, actions = inputs(model, "cpu", cfg.cpu_batch, cfg.horizon)
    cost = plan_cost(model, z, states, goal)
    cost(actions)  # warm-up
    start = time.perf_counter()
    for _ in range(cfg.cpu_repeats):
        cost(actions)
    rollout_s = (time.perf_counter() - start) / cfg.cpu_repeats
    encode_s = None
    if encoder is not None:
        for param in encoder.parameters():
            param.normal_(0.0, 0.02)
        frame = torch.zeros(1, 1, 3, model.image_size, model.image_size, dtype=torch.uint8)
        start = time.perf_counter()
        model.encode(frame)
        encode_s = time.perf_counter() - start
    return rollout_s, encode_s


def time_plan(arch: VJEPA2ACConfig, cfg: Any, device: str | torch.device = "cuda") -> float:
    """Seconds of one whole CEM plan (bf16 autocast on CUDA): encode the observation, then the solver."""
    device = torch.device(device)
    model = build(arch, cfg.history, device)
    if cfg.compile:
        model.compile_predictor()
    z, states, goal, _ = inputs(model, device, 1, cfg.horizon)
    frame = torch.zeros(1, 1, 3, model.image_size, model.image_size, dtype=torch.uint8, device=device)
    solver = CEMSolver(samples=cfg.samples, elites=cfg.elites, iterations=cfg.iterations, seed=0)
    droid = Bounds.droid(gripper=(-1.0, 1.0), fixed={3: 0.0, 4: 0.0, 5: 0.0})
    bounds = Bounds(droid.low.to(device), droid.high.to(device), droid.fixed)  # candidates sampled on the GPU

    def plan() -> None:
        with torch.no_grad():
            z_now = model.encode(frame)[0]
            solver.solve(plan_cost(model, torch.cat([z[:-1], z_now]), states, goal), cfg.horizon, bounds)
        if device.type == "cuda":
            torch.cuda.synchronize()

    plan()  # warm-up (and compilation)
    seconds = []
    for _ in range(cfg.gpu_repeats):
        start = time.perf_counter()
        plan()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def main(cfg: Any) -> None:
    torch.set_num_threads(int(cfg.threads))
    arch = VJEPA2ACConfig(EncoderConfig(**OmegaConf.to_container(cfg.encoder)),
                          PredictorConfig(**OmegaConf.to_container(cfg.predictor)))
    rollout_flops, frame_flops = count_flops(arch, cfg)
    plan_flops = rollout_flops * cfg.samples * cfg.iterations + frame_flops
    rollout_s, encode_s = time_cpu(arch, cfg)
    per_candidate_s = rollout_s / cfg.cpu_batch
    flops_per_s = rollout_flops * cfg.cpu_batch / rollout_s
    encode_est_s = encode_s if encode_s is not None else frame_flops / flops_per_s
    figures: dict[str, Any] = {
        "released_plan_gflop": round(plan_flops / 1e9, 1),
        "released_predictor_call_s_cpu_est": round(per_candidate_s * cfg.samples, 3),
        "released_plan_s_cpu_est": round(per_candidate_s * cfg.samples * cfg.iterations + encode_est_s, 2),
        "cpu_gflops": round(flops_per_s / 1e9, 2),
        "cpu_batch": int(cfg.cpu_batch), "threads": torch.get_num_threads(),
        "encoder_measured": encode_s is not None,
        "samples": int(cfg.samples), "iterations": int(cfg.iterations), "horizon": int(cfg.horizon),
        "history": int(cfg.history), "image_size": arch.encoder.img_size,
    }
    if torch.cuda.is_available():
        figures["released_plan_s_gpu"] = round(time_plan(arch, cfg, "cuda"), 3)
        figures["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(figures))


if __name__ == "__main__":
    from common.cli import run

    run(main, "bench_official")
