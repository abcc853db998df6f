"""Our CEM planner against stable-worldmodel's, at LeWorldModel size: `python benchmarks/bench_peer.py [peer_python=PY]`.

Ours: `LeWorldModel` (the ViT-tiny `LeWMEncoder`, built but not run: plans start from latents) with an
`ACPredictor` of 6 AdaLN blocks, width 192, 6 heads, no states, rotary time with a key/value cache and a window
of `history` = 3 frames, random weights (the zero AdaLN projections filled so actions matter); the cost is
`rollout_cost` + `LatentGoalCost` from 3 context latents, the solver `planners.solvers.make_solver(ours.solver)`
(default CEM 300 samples x 30 iterations, 30 elites, horizon 5).

Peer (only with `peer_python=`, an interpreter whose environment has stable-worldmodel; it is never a dependency
of this project): `benchmarks/peer/swm_plan.py`, run by that interpreter in a subprocess, builds their `LeWM`
(`Predictor` of 6 AdaLN-zero blocks, `Embedder`, BatchNorm `MLP` projection) with the same FLOPs per token as ours
(`peer.*` sets their widths; the LeWM paper's values are in configs/bench_peer.yaml) and their `CEMSolver`
(300 x 30, top 30, horizon 5), configured as their `WorldModelPolicy` does, without an environment: the plan's
`info_dict` carries cached context and goal embeddings, so no encoder runs on either side.

Both run on CPU with the same torch thread count, one warm-up plan each, then `plans` timed plans interleaved
(ours, peer, ours, peer, ...). Prints one JSON line: `ours_plan_s`, `peer_plan_s` (mean seconds per plan),
`ratio` (peer / ours), `ours_gflop_per_plan`, `peer_gflop_per_plan` (torch's FlopCounterMode over one whole plan:
its rollouts), `*_mflop_per_token` (one frame through action embedding, predictor and output projection),
`*_params` (predictor parameters), `ours_model` / `peer_model` / `*_solver` (what each side built). Without
`peer_python` the peer keys are null. FlopCounterMode does not count CPU scaled-dot-product attention on either
side (no formula for its CPU kernel): at <= 3 one-token frames that is ~2 kFLOP per token and block, < 0.2 %.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from common.errors import UserError
from planners.costs import LatentGoalCost, rollout_cost
from planners.protocols import Bounds
from planners.solvers import make_solver
from world_model.ac_predictor import ACPredictor, ACPredictorConfig
from world_model.models import LeWMEncoder, LeWorldModel

ROOT = Path(__file__).resolve().parents[1]


class Ours:
    """This package's LeWorldModel-size model, cost and solver; `plan()` times one solve."""

    def __init__(self, cfg: Any):
        torch.manual_seed(cfg.seed)
        m, o = cfg.model, cfg.ours
        config = ACPredictorConfig(width=m.width, depth=m.depth, num_heads=o.num_heads, mlp_ratio=o.mlp_ratio,
                                   action_dim=m.action_dim, state_dim=0, window=cfg.history)
        predictor = ACPredictor(m.embed_dim, config)
        with torch.no_grad():  # AdaLN-zero starts as the identity: give it action-dependent weights
            for p in predictor.parameters():
                if p.ndim > 1 and not p.any():
                    p.normal_(0, 0.02)
        self.model = LeWorldModel(LeWMEncoder(embed_dim=m.embed_dim), predictor, history=cfg.history).eval()
        z = torch.randn(cfg.history, 1, m.embed_dim)
        self.cost = rollout_cost(self.model, z, [LatentGoalCost(torch.randn(1, m.embed_dim))],
                                 context_actions=torch.zeros(cfg.history - 1, m.action_dim))
        self.bounds = Bounds.droid(gripper=(-1.0, 1.0))
        if m.action_dim != len(self.bounds.low):
            raise ValueError(f"model.action_dim must be {len(self.bounds.low)} (DROID bounds), got {m.action_dim}")
        solver = dict(o.solver)
        name = solver.pop("name")
        self.solver = make_solver(name, seed=cfg.seed, **solver)
        self.horizon = cfg.horizon
        self.params = sum(p.numel() for p in predictor.parameters())
        head = m.width // o.num_heads
        self.describe = {
            "ours_model": f"world_model LeWorldModel: ACPredictor depth {m.depth} width {m.width} heads {o.num_heads}x"
                          f"{head} mlp {int(m.width * o.mlp_ratio)}, action embed {m.action_dim}->{m.width}->{m.width},"
                          f" rotary time + key/value cache, window {cfg.history}, {self.params / 1e6:.2f} M parameters;"
                          f" context {cfg.history} latents (ViT-tiny LeWMEncoder built, not run), each step computes"
                          " only the new frame",
            "ours_solver": f"{name} " + " ".join(f"{k}={v}" for k, v in solver.items()) + f" horizon {cfg.horizon}",
        }

    def plan(self) -> float:
        start = time.perf_counter()
        self.solver.solve(self.cost, self.horizon, self.bounds)
        return time.perf_counter() - start

    def flops(self) -> tuple[float, float]:
        """(FLOPs of one plan, FLOPs of one frame through the predictor)."""
        with FlopCounterMode(display=False) as counter:
            self.plan()
        plan = counter.get_total_flops()
        p = self.model.predictor
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            p.run(torch.randn(1, 1, 1, p.embed_dim), torch.randn(1, 1, p.config.action_dim))
        return plan, counter.get_total_flops()


def peer_command(cfg: Any, threads: int) -> list[str]:
    """The command line that starts the peer side, with our settings as its flags (checked before anything slow)."""
    python = Path(cfg.peer_python).expanduser()
    if not python.is_file():
        raise UserError(f"peer_python {python} is not a file (a Python interpreter with stable-worldmodel)")
    script = Path(cfg.peer_script)
    script = script if script.is_absolute() else ROOT / script
    if not script.is_file():
        raise UserError(f"peer_script {script} not found")
    m, p = cfg.model, cfg.peer
    args = {"threads": threads, "seed": cfg.seed, "embed-dim": m.embed_dim, "hidden": m.width, "depth": m.depth,
            "heads": p.heads, "dim-head": p.dim_head, "mlp-dim": p.mlp_dim, "pred-proj-hidden": p.pred_proj_hidden,
            "action-mlp-scale": p.action_mlp_scale, "num-frames": cfg.history, "history-len": p.history_len,
            "action-dim": m.action_dim, "horizon": cfg.horizon, "samples": p.solver.samples,
            "topk": p.solver.topk, "iterations": p.solver.iterations, "var-scale": p.solver.var_scale}
    return [str(python), str(script)] + [f"--{k}={v}" for k, v in args.items()]


class Peer:
    """stable-worldmodel's side, in a subprocess of `peer_python` that speaks benchmarks/peer/swm_plan.py's protocol."""

    def __init__(self, command: list[str]):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # their environment, not ours
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                        text=True, env=env)
        self.ready = self._answer()

    def _answer(self) -> dict[str, Any]:
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            self.stderr.seek(0)
            tail = self.stderr.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"the peer process exited ({code}) without an answer; its stderr ends:\n{tail}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the peer process: {answer['error']}")
        return answer

    def plan(self) -> float:
        self.process.stdin.write("plan\n")
        self.process.stdin.flush()
        return float(self._answer()["plan_s"])

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.stderr.close()


def main(cfg: Any) -> None:
    if cfg.plans < 3:
        raise ValueError(f"plans must be at least 3, got {cfg.plans}")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    threads = torch.get_num_threads()
    command = peer_command(cfg, threads) if cfg.peer_python else None
    ours = Ours(cfg)
    ours.plan()  # warm-up
    ours_flops, ours_token_flops = ours.flops()
    figures: dict[str, Any] = {
        "ours_plan_s": None, "peer_plan_s": None, "ratio": None,
        "ours_gflop_per_plan": ours_flops / 1e9, "peer_gflop_per_plan": None,
        "ours_mflop_per_token": ours_token_flops / 1e6, "peer_mflop_per_token": None,
        "ours_params": ours.params, "peer_params": None, **ours.describe,
        "peer_model": None, "peer_solver": None, "peer_version": None, "peer_torch": None,
    }
    peer = Peer(command) if command else None
    try:
        if peer is not None and peer.ready["threads"] != threads:
            raise RuntimeError(f"the peer runs {peer.ready['threads']} torch threads, ours {threads}")
        ours_s, peer_s = [], []
        for _ in range(cfg.plans):  # interleaved: A B A B ...
            ours_s.append(ours.plan())
            if peer is not None:
                peer_s.append(peer.plan())
    finally:
        if peer is not None:
            peer.close()
    figures["ours_plan_s"] = sum(ours_s) / len(ours_s)
    figures["ours_plans_s"] = [round(s, 4) for s in ours_s]
    if peer is not None:
        r = peer.ready
        figures.update({"peer_plan_s": sum(peer_s) / len(peer_s), "peer_plans_s": [round(s, 4) for s in peer_s],
                        "peer_gflop_per_plan": r["gflop_per_plan"], "peer_mflop_per_token": r["mflop_per_token"],
                        "peer_params": r["params"], "peer_model": r["model"], "peer_solver": r["solver"],
                        "peer_version": r["version"], "peer_torch": r["torch"]})
        figures["ratio"] = figures["peer_plan_s"] / figures["ours_plan_s"]
    figures.update({"plans": cfg.plans, "torch_threads": threads, "torch": torch.__version__})
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    from common.cli import run

    run(main, "bench_peer")
