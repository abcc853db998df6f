"""The peer side of benchmarks/bench_peer.py: stable-worldmodel's LeWM and CEMSolver, run by *its* interpreter.

    /path/to/peer-venv/bin/python benchmarks/peer/swm_plan.py [--threads 1 --samples 300 ...] [--plans N]

stable-worldmodel lives in an environment of its own (it is never a dependency of this project, and this file is
never imported by the package or collected by pytest); it imports only stable_worldmodel, torch and gymnasium
(whose Box is the action space stable-worldmodel's solvers are configured with). stable-worldmodel 0.1.1's
`import stable_worldmodel` also needs opencv-python-headless and imageio (its wrappers import cv2 and imageio, which
only its `env` / `format` extras bring): `pip install stable-worldmodel==0.1.1 opencv-python-headless imageio`.

It builds their LeWorldModel (`stable_worldmodel.wm.lewm`: `Predictor` of AdaLN-zero `ConditionalBlock`s,
`Embedder` for the actions, the BatchNorm `MLP` after the predictor) with random weights (the zero-initialised
AdaLN projections filled, so actions matter) and their `CEMSolver`, configured the way their
`WorldModelPolicy.set_env` does (an action Box, one env, a `PlanConfig`) but without an environment: the plan's
`info_dict` carries the context and goal embeddings under `emb` / `goal_emb`, which `LeWM.rollout` and
`LeWM.get_cost` reuse when present (their own solve stores them there after its first iteration), so no encoder
runs during a plan, as on our side. `pixels` / `goal` are placeholders their API asserts on (only `pixels`'
frame count is read).

Then one warm-up plan, one plan under torch's FlopCounterMode (FLOPs of its rollouts), and one frame through
action embedding + predictor + projection under FlopCounterMode (FLOPs per token). It prints one JSON line with
those figures (`ready`), then serves a line protocol on stdin/stdout: `plan` runs one timed plan and answers
`{"plan_s": seconds}`; `quit` or end of input exits. With `--plans N` it instead runs N timed plans itself and
prints one more JSON line with their mean `plan_s`. Anything else they print (CEMSolver prints its solve time
on stdout) goes to stderr, so stdout carries only the protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--embed-dim", type=int, default=192, help="latent width (one token per frame)")
    p.add_argument("--hidden", type=int, default=192, help="predictor width")
    p.add_argument("--depth", type=int, default=6, help="predictor blocks")
    p.add_argument("--heads", type=int, default=6, help="attention heads (LeWM paper: 16)")
    p.add_argument("--dim-head", type=int, default=32, help="width per head (LeWM paper: 64)")
    p.add_argument("--mlp-dim", type=int, default=768, help="predictor MLP width (LeWM paper: 2048)")
    p.add_argument("--pred-proj-hidden", type=int, default=192,
                   help="hidden width of the BatchNorm MLP after the predictor (LeWM paper: 2048; 0: none)")
    p.add_argument("--action-mlp-scale", type=int, default=1,
                   help="the action Embedder's hidden width as a multiple of embed-dim (LeWM: 4)")
    p.add_argument("--num-frames", type=int, default=3, help="frames the predictor sees (history)")
    p.add_argument("--history-len", type=int, default=1, help="observed frames in a plan's context")
    p.add_argument("--action-dim", type=int, default=7)
    p.add_argument("--horizon", type=int, default=5)
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--topk", type=int, default=30)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--var-scale", type=float, default=1.0)
    p.add_argument("--image-size", type=int, default=224, help="placeholder pixels' size (never encoded)")
    p.add_argument("--plans", type=int, default=0, help="run N timed plans and exit (0: serve the line protocol)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)  # stdout: the protocol only
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr

    import importlib.metadata

    import torch
    from gymnasium.spaces import Box
    from stable_worldmodel.policy import PlanConfig
    from stable_worldmodel.solver import CEMSolver
    from stable_worldmodel.wm.lewm import LeWM
    from stable_worldmodel.wm.lewm import module as lewm_module
    from torch.utils.flop_counter import FlopCounterMode

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    predictor_cls = getattr(lewm_module, "ARPredictor", None) or lewm_module.Predictor  # renamed after 0.1.x
    predictor = predictor_cls(num_frames=args.num_frames, depth=args.depth, heads=args.heads, mlp_dim=args.mlp_dim,
                              input_dim=args.embed_dim, hidden_dim=args.hidden, output_dim=args.embed_dim,
                              dim_head=args.dim_head, dropout=0.0, emb_dropout=0.0)
    action_encoder = lewm_module.Embedder(input_dim=args.action_dim, emb_dim=args.embed_dim,
                                          mlp_scale=args.action_mlp_scale)
    pred_proj = (lewm_module.MLP(input_dim=args.embed_dim, hidden_dim=args.pred_proj_hidden,
                                 output_dim=args.embed_dim, norm_fn=torch.nn.BatchNorm1d)
                 if args.pred_proj_hidden else None)
    model = LeWM(encoder=None, predictor=predictor, action_encoder=action_encoder, pred_proj=pred_proj)
    with torch.no_grad():  # AdaLN-zero starts as the identity: give it action-dependent weights
        for p in model.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0, 0.02)
    model.eval()

    solver = CEMSolver(model, batch_size=1, num_samples=args.samples, var_scale=args.var_scale,
                       n_steps=args.iterations, topk=args.topk, device="cpu", seed=args.seed)
    config = PlanConfig(horizon=args.horizon, receding_horizon=args.horizon, history_len=args.history_len,
                        action_block=1)
    solver.configure(action_space=Box(-1.0, 1.0, shape=(1, args.action_dim)), n_envs=1, config=config)
    s = args.image_size
    info = {"pixels": torch.zeros(1, args.history_len, 3, s, s), "goal": torch.zeros(1, 1, 3, s, s),
            "emb": torch.randn(1, args.history_len, args.embed_dim), "goal_emb": torch.randn(1, 1, args.embed_dim)}

    def plan() -> float:
        start = time.perf_counter()
        solver.solve(dict(info))
        return time.perf_counter() - start

    plan()  # warm-up
    with FlopCounterMode(display=False) as counter:
        plan()
    plan_flops = counter.get_total_flops()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:  # one frame: the per-token cost
        model.predict(torch.randn(1, 1, args.embed_dim), action_encoder(torch.randn(1, 1, args.action_dim)))
    token_flops = counter.get_total_flops()
    params = sum(p.numel() for m in (predictor, action_encoder, pred_proj) if m is not None for p in m.parameters())
    ready = {
        "ready": True, "version": importlib.metadata.version("stable-worldmodel"), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "params": params, "gflop_per_plan": plan_flops / 1e9,
        "mflop_per_token": token_flops / 1e6,
        "model": f"stable_worldmodel.wm.lewm.LeWM: {predictor_cls.__name__} depth {args.depth} width {args.hidden}"
                 f" heads {args.heads}x{args.dim_head} mlp {args.mlp_dim} num_frames {args.num_frames}, Embedder"
                 f" {args.action_dim}->{args.action_mlp_scale * args.embed_dim}->{args.embed_dim}, pred_proj "
                 + (f"BatchNorm MLP {args.pred_proj_hidden}" if args.pred_proj_hidden else "none")
                 + f", {params / 1e6:.2f} M parameters; context {args.history_len} frame(s) from cached embeddings"
                 " (encoder not run), every step re-runs its last num_frames frames",
        "solver": f"CEMSolver {args.samples} x {args.iterations} topk {args.topk} var_scale {args.var_scale}"
                  f" horizon {args.horizon}",
    }
    protocol.write(json.dumps(ready) + "\n")
    if args.plans > 0:
        seconds = [plan() for _ in range(args.plans)]
        protocol.write(json.dumps({"plan_s": sum(seconds) / len(seconds), "plans": len(seconds)}) + "\n")
        return
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command == "plan":
            protocol.write(json.dumps({"plan_s": plan()}) + "\n")
        elif command:
            protocol.write(json.dumps({"error": f"unknown command {command!r}"}) + "\n")


if __name__ == "__main__":
    main()
