"""The benchmark scripts keep running: each prints one JSON line with its documented keys."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bench_data_prints_one_json_line():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_data.py"), "num_episodes=4", "episode_length=20",
         "num_clips=128", "batch_size=16"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    figures = json.loads(lines[0])
    assert figures["clips_per_s_1proc"] > 0 and figures["clips_per_s_2workers"] > 0
    assert figures["episodes"] == 4 and figures["clip_frames"] == 4


def test_bench_pretrain_prints_one_json_line():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_pretrain.py"), "steps=2", "batch_size=4", "num_episodes=2",
         "encoder_size=micro"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["pretrain_steps_per_s"] > 0 and figures["clips_per_s"] > 0


def test_bench_train_prints_one_json_line():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), "steps=1", "batch_size=2", "num_episodes=3",
         "image_size=32"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for family in ("vjepa_ac", "vjepa_ac_cached", "lewm"):
        assert figures[f"train_steps_per_s_{family}"] > 0


@pytest.mark.parametrize("data", [{"cameras": None}, {"cameras": ["exterior_1_left", "wrist_left"]},
                                  {"cameras": None, "action_mode": "recorded"}])
def test_bench_planner_prints_one_json_line(tmp_path, data):
    """Also for a model of two camera views (the shipped push model), planned from every view of its env, and for one
    trained on recorded actions (the shipped pick-and-place model), bounded by its env's action space."""
    from helpers import tiny_checkpoint

    checkpoint = tiny_checkpoint(tmp_path / "tiny", data=data)
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_planner.py"), "lewm.solver.samples=16", "lewm.solver.elites=4",
         "lewm.solver.iterations=2", "lewm.samples_for_throughput=16", "repeats=1", "rollout_repeats=1", "matmul_size=256", f"checkpoint={checkpoint}",
         "planner_config=" + str(ROOT / "configs" / "cem_goal.yaml")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    figures = json.loads(lines[0])
    for key in ("lewm_size_plan_s", "default_plan_s", "rollout_gflops", "matmul_gflops"):
        assert figures[key] > 0, key
    assert figures["lewm_size_plan_s_bf16"] > 0 and figures["lewm_size_rollouts_per_plan"] > 0
    assert 0 < figures["lewm_size_gflop_per_plan"] < figures["uncached_cem_gflop_per_plan"]


def test_bench_server_prints_one_json_line(tmp_path):
    from helpers import tiny_checkpoint

    checkpoint = tiny_checkpoint(tmp_path / "tiny")
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_server.py"), f"checkpoint={checkpoint}", "requests=3",
         "clients=[1,3]", 'server_overrides=["solver.samples=8","solver.elites=2","solver.iterations=1"]'],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    figures = json.loads(lines[0])
    assert figures["requests_1"] == 3 and figures["requests_3"] == 9
    for n in (1, 3):
        assert 0 < figures[f"p50_ms_{n}"] <= figures[f"p95_ms_{n}"] <= figures[f"p99_ms_{n}"]
        assert 0 < figures[f"transport_p50_ms_{n}"] < figures[f"p50_ms_{n}"]


def test_bench_startup_prints_one_json_line():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_startup.py"), "repeats=1", "episodes=2",
                             "episode_length=10"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    figures = json.loads(lines[0])
    for key in ("help_s", "bad_override_s", "validate_first_line_s"):
        assert 0 < figures[key] < 120, key
    assert figures["validate_first_line_s"] <= figures["validate_total_s"] and figures["cpu_count"] >= 1


def test_bench_official_prints_one_json_line():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_official.py"), "encoder.size=micro", "encoder.img_size=64",
         "predictor.embed_dim=64", "predictor.depth=2", "predictor.num_heads=4", "samples=16", "iterations=2"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    figures = json.loads(lines[0])
    assert figures["released_plan_gflop"] > 0 and figures["released_plan_s_cpu_est"] > 0
    assert figures["released_predictor_call_s_cpu_est"] > 0 and figures["threads"] == 1
    import torch

    assert ("released_plan_s_gpu" in figures) == torch.cuda.is_available()


def test_bench_officials_whole_plan_runs_on_any_device():
    import torch
    from omegaconf import OmegaConf

    from world_model.encoder import EncoderConfig
    from world_model.vjepa2_ac import PredictorConfig, VJEPA2ACConfig

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_official import time_plan

    torch.set_num_threads(1)
    cfg = OmegaConf.create({"history": 1, "horizon": 1, "samples": 8, "elites": 2, "iterations": 2, "compile": False,
                            "gpu_repeats": 1})
    arch = VJEPA2ACConfig(EncoderConfig(size="micro", img_size=32, depth=1, use_rope=True, rope_vjepa2_layout=True),
                          PredictorConfig(embed_dim=32, depth=1, num_heads=2))
    assert time_plan(arch, cfg, "cpu") > 0


PEER_TINY = ["threads=1", "model.depth=1", "ours.solver.samples=8", "ours.solver.elites=2", "ours.solver.iterations=1"]


def test_bench_peer_without_peer_prints_ours_only():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_peer.py"), *PEER_TINY],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    figures = json.loads(lines[0])
    assert figures["ours_plan_s"] > 0 and len(figures["ours_plans_s"]) == 3
    assert figures["ours_gflop_per_plan"] > 0 and figures["ours_mflop_per_token"] > 0 and figures["ours_params"] > 0
    assert "ACPredictor depth 1" in figures["ours_model"] and figures["ours_solver"].startswith("icem samples=8")
    for key in ("peer_plan_s", "ratio", "peer_gflop_per_plan", "peer_mflop_per_token", "peer_model"):
        assert figures[key] is None, key


FAKE_PEER = '''
import json, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
print(json.dumps({"ready": True, "version": "0.0-fake", "torch": "x", "threads": int(args["threads"]), "params": 1,
                  "gflop_per_plan": 2.0, "mflop_per_token": 1.5, "model": "fake " + args["heads"], "solver": "fake"}),
      flush=True)
for line in sys.stdin:
    if line.strip() == "quit":
        break
    print(json.dumps({"plan_s": 0.5}), flush=True)
'''


def test_bench_peer_interleaves_with_a_peer_process(tmp_path):
    """The peer protocol (benchmarks/peer/swm_plan.py's) against a stand-in that needs no stable-worldmodel."""
    fake = tmp_path / "fake_peer.py"
    fake.write_text(FAKE_PEER)
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_peer.py"), *PEER_TINY,
                             f"peer_python={sys.executable}", f"peer_script={fake}", "peer.heads=16"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["peer_plan_s"] == 0.5 and figures["peer_plans_s"] == [0.5] * 3
    assert abs(figures["ratio"] * figures["ours_plan_s"] - 0.5) < 0.05
    assert figures["peer_gflop_per_plan"] == 2.0 and figures["peer_model"] == "fake 16" and figures["torch_threads"] == 1


def test_bench_peer_refuses_a_missing_interpreter(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_peer.py"), *PEER_TINY,
                             f"peer_python={tmp_path / 'nope'}"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "peer_python" in result.stderr and not result.stdout
