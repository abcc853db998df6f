"""LeWorldModel's details from the seed (000_57dac4a534ebac6b.txt): 10 % predictor dropout, lambda by bisection."""

import math
import subprocess
import sys
from pathlib import Path

import torch
from helpers import make_dataset

from world_model.ac_predictor import ACPredictor, ACPredictorConfig
from world_model.models import LeWMSettings, build_model
from world_model.tune_lambda import bisect_log

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
TINY_LEWM = ["model=lewm", "model.encoder.img_size=32", "model.encoder.depth=1", "model.encoder.width=32",
             "model.encoder.num_heads=2", "model.encoder.embed_dim=16", "model.encoder.projector_hidden=32",
             "model.predictor.width=32", "model.predictor.depth=1", "model.predictor.num_heads=2",
             "model.sigreg_projections=16"]


def test_lewm_predictor_has_ten_percent_dropout_in_training_and_none_in_eval():
    settings = LeWMSettings()
    assert settings.predictor.dropout == 0.1 and settings.to_config(7)["predictor"]["dropout"] == 0.1
    assert ACPredictorConfig.from_checkpoint({}).dropout == 0.0  # older checkpoints and V-JEPA 2-AC: none
    predictor = ACPredictor(16, ACPredictorConfig(width=32, depth=2, num_heads=2, action_dim=3, state_dim=0, dropout=0.5))
    for block in predictor.blocks:  # let the actions reach the blocks (zero-initialised modulation is the identity)
        torch.nn.init.normal_(block.adaLN_modulation[1].weight, std=0.1)
    z, actions = torch.randn(2, 3, 4, 16), torch.randn(2, 3, 3)
    predictor.train()
    assert not torch.equal(predictor(z, actions), predictor(z, actions))  # dropout draws differ
    predictor.eval()
    assert torch.equal(predictor(z, actions), predictor(z, actions))  # eval mode: deterministic
    config = LeWMSettings(history=2).to_config(7)
    config["encoder"].update(img_size=32, depth=1, width=32, num_heads=2, embed_dim=16, projector_hidden=32)
    config["predictor"].update(width=32, depth=1, num_heads=2, state_dim=0)
    model = build_model(config).eval()  # what load_world_model returns to planners
    frames = torch.randint(0, 256, (1, 2, 3, 32, 32), dtype=torch.uint8)
    plans = torch.randn(4, 3, 7)
    first = model.rollout(model.encode(frames), plans)
    assert torch.equal(first, model.rollout(model.encode(frames), plans))


def test_bisection_finds_the_minimum_in_log_lambda_with_three_plus_steps_runs():
    calls = []

    def valley(lam):
        calls.append(lam)
        return (math.log(lam) - math.log(0.3)) ** 2

    best, value, order = bisect_log(valley, 0.01, 10.0, steps=6)
    assert len(calls) == len(set(calls)) == 9 and [lam for lam, _ in order] == calls
    assert abs(math.log(best / 0.3)) < 0.35 and value == min(v for _, v in order)
    best3, _, _ = bisect_log(valley, 0.01, 10.0, steps=3)
    assert abs(math.log(best / 0.3)) <= abs(math.log(best3 / 0.3))  # more runs, a closer lambda


def test_tune_lambda_command_runs_short_trainings_and_prints_a_summary(tmp_path):
    make_dataset(tmp_path / "data", num_episodes=4, length=12, image_size=32)
    overrides = TINY_LEWM + ["data.image_size=32", "data.val_fraction=0.25", "optim.steps=2", "optim.batch_size=4",
                             "optim.warmup=1", "optim.decay=1", "val_batches=1", "batchnorm_batches=1"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "world_model" / "tune_lambda.py"), str(tmp_path / "data"), f"out={tmp_path / 'tune'}",
         "train_overrides=[" + ",".join(f"'{o}'" for o in overrides) + "]", "steps=2", "probe_batches=2", "low=0.01", "high=1.0"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                                                                    "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    runs = [line for line in lines if line.startswith("run ")]
    assert [line.split(":")[0] for line in runs] == [f"run {i}/5" for i in range(1, 6)]
    assert runs[0].startswith("run 1/5: lambda=0.01 probe RMSE ") and "bracket [" in runs[0]
    assert lines[-1].startswith("best lambda ") and "after 5 runs over [0.01, 1]" in lines[-1]
    assert len(list((tmp_path / "tune").glob("lambda_*/checkpoints/last"))) == 5
    refused = subprocess.run([sys.executable, str(ROOT / "world_model" / "tune_lambda.py"), str(tmp_path / "data"),
                              "train_overrides=['model=vjepa_ac']"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert refused.returncode == 2 and refused.stderr.strip().endswith("got model family 'vjepa_ac'"), refused.stderr


def test_training_with_dropout_resumes_exactly(tmp_path):
    from hydra import compose, initialize_config_dir

    from common.cli import CONFIG_DIR
    from world_model.train import train, train_config

    make_dataset(tmp_path / "data", num_episodes=4, length=16, image_size=32)

    def run(out, *extra):
        overrides = TINY_LEWM + [f"data.root={tmp_path / 'data'}", "data.image_size=32", "data.val_fraction=0.25",
                                 f"out={tmp_path / out}", "optim.steps=6", "optim.batch_size=4", "optim.warmup=1",
                                 "optim.decay=2", "progress=false", *extra]
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            config = train_config(compose("train", overrides=overrides))
        assert config.model.predictor.dropout == 0.1  # the LeWM default
        return train(config)

    straight = run("a")
    run("b", "stop_at=3")
    # the dropout masks continue as in one run: the RNG state is in the checkpoint, and the validation at the stop
    # step draws nothing from it
    assert run("b", "resume=true")["history"] == straight["history"]
