import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from common.cli import CONFIG_DIR
from recipes.collect import CollectConfig, collect
from world_model.checkpoints import save_checkpoint
from world_model.encoder import EncoderConfig, VideoViT
from world_model.feature_cache import Preprocessing, build_cache
from world_model.models import load_world_model
from world_model.train import _clips, train, train_config

ROOT = Path(__file__).resolve().parents[1]
TINY_LEWM = ["model=lewm", "model.encoder.img_size=32", "model.encoder.depth=2", "model.encoder.width=48",
             "model.encoder.num_heads=4", "model.encoder.embed_dim=32", "model.encoder.projector_hidden=64",
             "model.predictor.width=48", "model.predictor.depth=2", "model.predictor.num_heads=4",
             "model.sigreg_projections=64"]
TINY_AC = ["model=vjepa_ac", "model.predictor.width=48", "model.predictor.depth=2", "model.predictor.num_heads=4"]


@pytest.fixture(scope="module")
def sim_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim") / "reach"
    collect(CollectConfig(out=str(root), num_episodes=8, max_steps=24, workers=1, val_fraction=0.25,
                          env_kwargs={"image_size": 32}), progress=False)
    return root


@pytest.fixture(scope="module")
def encoder_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("enc") / "encoder"
    torch.manual_seed(0)
    config = EncoderConfig(size="micro", img_size=32, patch_size=8)
    save_checkpoint(path, VideoViT(config), {"encoder": config.to_dict()})
    return path


def _cfg(overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return train_config(compose("train", overrides=overrides))


def _common(data, out, steps=12):
    return [f"data.root={data}", "data.image_size=32", f"out={out}", f"optim.steps={steps}", "optim.batch_size=8",
            "optim.warmup=2", "optim.decay=4", "progress=false", "log_every=2"]


def test_vjepa_ac_trains_on_cached_features_like_on_pixels(sim_data, encoder_ckpt, tmp_path):
    overrides = TINY_AC + [f"model.encoder_checkpoint={encoder_ckpt}"]
    pixels = train(_cfg(overrides + _common(sim_data, tmp_path / "px", steps=30)))
    assert not pixels["feature_cache"]
    assert pixels["loss_end"] < pixels["loss_start"] and pixels["val_loss"] is not None
    build_cache(sim_data, encoder_ckpt, Preprocessing(image_size=32), progress=False)
    cached = train(_cfg(overrides + _common(sim_data, tmp_path / "fc", steps=30)))
    assert cached["feature_cache"]
    assert cached["history"] == pytest.approx(pixels["history"], rel=2e-2)  # float16 features
    model, config = load_world_model(tmp_path / "fc" / "checkpoints" / "last")
    assert config["family"] == "vjepa_ac" and config["history"] == 3
    frames = torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8)
    z = model.encode(frames)
    future = model.rollout(z, torch.zeros(2, 4, 7), states=torch.zeros(2, 3, 7))
    assert future.shape == (2, 4, 16, 96)


def test_lewm_trains_end_to_end_and_resumes_exactly(sim_data, tmp_path):
    straight = train(_cfg(TINY_LEWM + _common(sim_data, tmp_path / "a", steps=8)))
    assert straight["loss_end"] < straight["loss_start"]
    first = train(_cfg(TINY_LEWM + _common(sim_data, tmp_path / "b", steps=8) + ["stop_at=4"]))
    assert first["steps"] == 4
    resumed = train(_cfg(TINY_LEWM + _common(sim_data, tmp_path / "b", steps=8) + ["resume=true"]))
    assert resumed["history"] == pytest.approx(straight["history"], rel=1e-6)
    model, config = load_world_model(tmp_path / "b" / "checkpoints" / "last")
    assert config["family"] == "lewm" and model.encode(torch.zeros(1, 2, 3, 32, 32, dtype=torch.uint8)).shape == (1, 2, 1, 32)


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(sim_data, tmp_path):
    train(_cfg(TINY_LEWM + _common(sim_data, tmp_path, steps=2)))
    before = (tmp_path / "checkpoints" / "last" / "model.safetensors").read_bytes()
    with pytest.raises(FloatingPointError, match=r"non-finite loss .* at step \d"):
        train(_cfg(TINY_LEWM + _common(sim_data, tmp_path, steps=8) + [
            "resume=true", "optim.lr=1e30", "optim.start_lr=1e30", "optim.final_lr=1e30", "optim.grad_clip=null"]))
    assert (tmp_path / "checkpoints" / "last" / "model.safetensors").read_bytes() == before


def test_an_empty_data_folder_is_named_before_anything_loads(tmp_path):
    from common.errors import UserError
    from world_model.pretrain import DataConfig, PretrainConfig, pretrain

    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=f"^no .h5 episodes found in {tmp_path / 'empty'}$"):
        train(_cfg(TINY_LEWM + _common(tmp_path / "empty", tmp_path / "run") + ["model.readout_weight=0.5"]))
    with pytest.raises(UserError, match=f"^no .h5 episodes found in {tmp_path / 'empty'}$"):
        pretrain(PretrainConfig(data=DataConfig(root=str(tmp_path / "empty")), out=str(tmp_path / "pre")))
    assert not (tmp_path / "run").exists() and not (tmp_path / "pre").exists()


def test_an_existing_run_is_kept_unless_resumed_or_overwritten(sim_data, tmp_path):
    from common.errors import UserError

    last = tmp_path / "checkpoints" / "last"
    with pytest.raises(UserError, match=f"resume=true, but {last} holds no training checkpoint"):
        train(_cfg(TINY_LEWM + _common(sim_data, tmp_path, steps=2) + ["resume=true"]))
    train(_cfg(TINY_LEWM + _common(sim_data, tmp_path, steps=2)))
    before = (last / "model.safetensors").read_bytes()
    with pytest.raises(UserError, match=f"{last} already holds a checkpoint; continue it with resume=true"):
        train(_cfg(TINY_LEWM + _common(sim_data, tmp_path, steps=3)))
    assert (last / "model.safetensors").read_bytes() == before
    assert train(_cfg(TINY_LEWM + _common(sim_data, tmp_path, steps=1) + ["overwrite=true", "seed=1"]))["steps"] == 1
    assert (last / "model.safetensors").read_bytes() != before


def test_ctrl_c_finishes_the_step_saves_and_says_how_to_resume(sim_data, tmp_path):
    from helpers import signal_after_steps

    overrides = TINY_LEWM + _common(sim_data, tmp_path, steps=100000) + ["progress=true", "checkpoint_every=100000"]
    status, out, err, seconds = signal_after_steps(
        [sys.executable, str(ROOT / "world_model" / "train.py"), *overrides], signal.SIGINT)
    assert status == 130, err[-3000:]
    assert "Traceback" not in err and seconds < 20, (seconds, err[-3000:])
    first, second = out.strip().splitlines()
    step = int(re.match(r"SIGINT: stopped at step (\d+) of 100000, checkpoint \S+/checkpoints/last$", first).group(1))
    assert step >= 2 and second == f"resume with: python {ROOT / 'world_model' / 'train.py'} {' '.join(overrides)} resume=true"
    assert torch.load(tmp_path / "checkpoints" / "last" / "training_state.pt", weights_only=False)["step"] == step
    resumed = train(_cfg(overrides + ["resume=true", f"stop_at={step + 1}", "progress=false"]))
    assert resumed["steps"] == step + 1 and len(resumed["history"]) == step + 1


def test_two_process_torchrun_trains_and_writes_one_checkpoint(sim_data, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "world_model" / "train.py"), *TINY_LEWM, *_common(sim_data, tmp_path, steps=4)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained lewm for 4 steps on 2 process(es)" in result.stdout
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["last"]
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "last").iterdir()) == [
        "config.json", "model.safetensors", "training_state.pt"]


def _readout_rmse(model, root, split="val"):
    from datasets.clips import ClipDataset, FrameTransform, Windows

    clips = ClipDataset(root, split=split, windows=Windows(history=1, future=0), transform=FrameTransform(image_size=32))
    frames = torch.stack([clips[i]["frames"] for i in range(len(clips))])
    xyz = torch.stack([clips[i]["states"][:, :3] for i in range(len(clips))])
    with torch.no_grad():
        pred = model.readout(model.encode(frames))
    mean = clips.state_statistics()[0][:3]
    return float((pred - xyz).pow(2).sum(-1).mean().sqrt()), float((xyz - torch.from_numpy(mean)).pow(2).sum(-1).mean().sqrt())


def test_lewm_state_readout_learns_the_position_and_ships_in_the_checkpoint(sim_data, tmp_path):
    summary = train(_cfg(TINY_LEWM + _common(sim_data, tmp_path, steps=60) + [
        "model.readout_weight=1.0", "optim.lr=2e-3", "optim.decay=10"]))
    model, config = load_world_model(tmp_path / "checkpoints" / "last")
    assert config["readout"] == {"dims": [0, 1, 2]}
    from datasets.clips import ClipDataset, Windows

    mean, std = ClipDataset(sim_data, split="train", windows=Windows(history=1, future=0)).state_statistics()
    assert torch.allclose(model.readout.mean, torch.from_numpy(mean[:3]))
    assert torch.allclose(model.readout.std, torch.from_numpy(std[:3]))
    model.train()  # batch statistics: LeWM's BatchNorm running averages lag behind a run this short
    rmse, baseline = _readout_rmse(model, sim_data, "train")
    assert rmse < 0.6 * baseline, (rmse, baseline)
    assert summary["loss_end"] < summary["loss_start"]


def test_vjepa_state_readout_trains_with_the_predictor_and_leaves_the_encoder_frozen(sim_data, encoder_ckpt, tmp_path):
    from world_model.train import initial_model

    cfg = _cfg(TINY_AC + [f"model.encoder_checkpoint={encoder_ckpt}", "model.readout_weight=1.0"]
               + _common(sim_data, tmp_path))
    clips = _clips(cfg.data, "train", cfg.model.history + cfg.model.rollout_steps)
    model, config = initial_model(cfg, clips.action_dim)
    assert config["readout"] == {"dims": [0, 1, 2]}
    batch = torch.utils.data.default_collate([clips[i] for i in range(4)])
    loss, parts = model.loss(batch, distributed=False)
    loss.backward()
    assert parts["readout"] > 0 and model.readout.linear.weight.grad.abs().sum() > 0
    assert model.predictor.output_proj.weight.grad is not None
    assert all(p.grad is None for p in model.encoder.parameters())
    save_checkpoint(tmp_path / "ckpt", model, config)
    loaded, _ = load_world_model(tmp_path / "ckpt")
    assert torch.equal(loaded.readout.linear.weight, model.readout.linear.weight)


def test_lewm_with_a_token_grid_trains_and_plans(sim_data, tmp_path):
    summary = train(_cfg(TINY_LEWM + _common(sim_data, tmp_path, steps=6) + ["model.encoder.grid=2"]))
    assert summary["steps"] == 6 and summary["loss_end"] == summary["loss_end"]  # finite
    model, config = load_world_model(tmp_path / "checkpoints" / "last")
    assert config["encoder"]["grid"] == 2
    z = model.encode(torch.zeros(1, 3, 3, 32, 32, dtype=torch.uint8))
    assert z.shape == (1, 3, 4, 32)  # 2 x 2 tokens per frame
    assert model.rollout(z, torch.zeros(5, 2, 7).new_zeros(1, 2, 7)).shape == (1, 2, 4, 32)


def test_batchnorm_statistics_are_recalibrated_to_the_current_weights():
    """LeWM's projector BatchNorm: after recalibration its running mean is the exact mean of its inputs over the
    batches, so eval mode (planning) sees the statistics of the weights it runs with, not a lagging average."""
    from world_model.models import LeWMEncoder
    from world_model.train_utils import recalibrate_batchnorm

    torch.manual_seed(0)
    encoder = LeWMEncoder(img_size=32, patch_size=8, width=48, depth=1, num_heads=4, embed_dim=16, projector_hidden=32)
    norm = encoder.projector[1]
    norm.running_mean.fill_(5.0)  # a stale average
    batches = [torch.randn(8, 3, 32, 32) for _ in range(3)]
    encoder.eval()
    assert recalibrate_batchnorm(encoder, encoder, batches) == 1
    assert not encoder.training and norm.momentum == 0.1
    with torch.no_grad():
        inputs = torch.cat([encoder.projector[0](encoder.vit(b)) for b in batches])
    torch.testing.assert_close(norm.running_mean, inputs.mean(0), rtol=1e-5, atol=1e-5)
    per_batch_var = inputs.unflatten(0, (3, 8)).var(1).mean(0)  # BatchNorm keeps the unbiased batch variance
    torch.testing.assert_close(norm.running_var, per_batch_var, rtol=1e-4, atol=1e-5)


def test_a_wall_clock_budget_stops_after_the_step_that_crosses_it_with_a_resumable_checkpoint(sim_data, tmp_path, capsys):
    from world_model.train import main

    overrides = TINY_LEWM + _common(sim_data, tmp_path, steps=6) + ["checkpoint_every=1000"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        main(compose("train", overrides=overrides + ["max_minutes=0.0001"]))  # 6 ms: crossed by the first step
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("trained lewm for 1 steps") and "stopped by max_minutes=0.0001 at step 1 of 6" in line
    assert line.endswith("resume=true")
    last = tmp_path / "checkpoints" / "last"
    assert torch.load(last / "training_state.pt", weights_only=False)["step"] == 1
    resumed = train(_cfg(overrides + ["resume=true", "max_minutes=10"]))
    assert resumed["steps"] == 6 and not resumed["out_of_time"] and len(resumed["history"]) == 6


def test_validation_runs_every_val_every_steps_or_each_epoch(sim_data, tmp_path):
    every = train(_cfg(TINY_LEWM + _common(sim_data, tmp_path / "a", steps=5) + ["val_every=2", "val_batches=1"]))
    assert [step for step, _ in every["validations"]] == [2, 4, 5]  # and at the end
    cfg = _cfg(TINY_LEWM + _common(sim_data, tmp_path))
    clips = len(_clips(cfg.data, "train", cfg.model.clip_frames(), load_frames=False))
    batch = clips // 3  # three steps per epoch
    epochs = train(_cfg(TINY_LEWM + _common(sim_data, tmp_path / "b", steps=5) + ["val_batches=1", f"optim.batch_size={batch}"]))
    assert [step for step, _ in epochs["validations"]] == [3, 5]
    with pytest.raises(ValueError, match="val_every must be >= 1 step"):
        train(_cfg(TINY_LEWM + _common(sim_data, tmp_path / "c", steps=5) + ["val_every=0"]))
