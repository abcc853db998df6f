"""Planning-server latency over loopback: `python benchmarks/bench_server.py [checkpoint=PATH requests=50]`.

Starts `planners/serve.py` in a child process (real sockets), then runs 1 and then 8 concurrent
clients, each sending `requests` observations (64x64 images plus state) after setting a goal. Prints one
JSON line: round-trip percentiles `p50_ms_N`, `p95_ms_N`, `p99_ms_N`; the planner's own time
`plan_p50_ms_N` (the server's `infer_ms`); the server's time outside the planner `queue_p50_ms_N`
(queued behind other clients' plans, decoding, resizing); and the transport `transport_p50_ms_N` / `transport_p95_ms_N`
(round trip minus the time the request spent inside the server: encoding, sockets, decoding).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import numpy as np
import torch

from common.droid import CARTESIAN_KEY, GOAL_KEY, GRIPPER_KEY, IMAGE_KEY
from planners.client import PlanningClient
from planners.serve import spawn


def _client_run(port: int, requests: int, image_size: int, seed: int, out: list[dict[str, float]]) -> None:
    rng = np.random.default_rng(seed)
    with PlanningClient(f"ws://127.0.0.1:{port}", timeout=600) as client:
        client.infer({GOAL_KEY: rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)})
        for _ in range(requests):
            request = {IMAGE_KEY: rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8),
                       CARTESIAN_KEY: rng.uniform(-0.5, 0.5, 6), GRIPPER_KEY: rng.uniform(0, 1, 1)}
            start = time.perf_counter()
            reply = client.infer(request)
            rtt = (time.perf_counter() - start) * 1000
            timing = reply["server_timing"]
            out.append({"rtt": rtt, "plan": timing["infer_ms"], "server": timing["server_ms"]})


def _percentiles(samples: list[dict[str, float]], clients: int) -> dict[str, float]:
    rtt = np.array([s["rtt"] for s in samples])
    plan = np.array([s["plan"] for s in samples])
    server = np.array([s["server"] for s in samples])
    transport = rtt - server
    n = clients
    return {f"p50_ms_{n}": np.percentile(rtt, 50), f"p95_ms_{n}": np.percentile(rtt, 95),
            f"p99_ms_{n}": np.percentile(rtt, 99), f"plan_p50_ms_{n}": np.percentile(plan, 50),
            f"queue_p50_ms_{n}": np.percentile(server - plan, 50), f"transport_p50_ms_{n}": np.percentile(transport, 50),
            f"transport_p95_ms_{n}": np.percentile(transport, 95), f"requests_{n}": len(samples)}


def main(cfg: Any) -> None:
    proc, port = spawn(cfg.checkpoint, f"device={cfg.device}", *[str(o) for o in cfg.server_overrides])
    figures: dict[str, Any] = {}
    try:
        for clients in cfg.clients:
            samples: list[dict[str, float]] = []
            threads = [threading.Thread(target=_client_run, args=(port, cfg.requests, cfg.image_size, cfg.seed + i,
                                                                  samples)) for i in range(clients)]
            [t.start() for t in threads]
            [t.join() for t in threads]
            if len(samples) != clients * cfg.requests:
                raise RuntimeError(f"{clients} clients: {len(samples)} of {clients * cfg.requests} requests answered")
            figures.update(_percentiles(samples, clients))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(json.dumps({k: round(float(v), 3) if isinstance(v, float | np.floating) else v for k, v in figures.items()}
                     | {"checkpoint": str(cfg.checkpoint), "image_size": cfg.image_size, "device": cfg.device,
                        "torch_threads": torch.get_num_threads()}))  # the server's too: same environment


if __name__ == "__main__":
    from common.cli import run

    run(main, "bench_server")
