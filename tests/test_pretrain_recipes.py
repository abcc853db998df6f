"""The V-JEPA 2 and 2.1 recipes of the seed (000_57dac4a534ebac6b.txt, "Training schedules") as pretrain settings."""

import json

import numpy as np
import pytest
import torch
from helpers import assert_resumed_like_straight, make_dataset

from common.config import ConfigError
from world_model.checkpoints import load_encoder
from world_model.encoder import EncoderConfig
from world_model.jepa_predictor import PredictorConfig
from world_model.pretrain import (
    VJEPA,
    DataConfig,
    ImagesConfig,
    OptimConfig,
    PretrainConfig,
    ProgressiveConfig,
    pretrain,
)
from world_model.schedules import phase_boundaries, warmup_constant_cooldown

torch.set_num_threads(1)


def test_vjepa2_schedule_keeps_the_seeds_proportions_and_fixes_ema_and_weight_decay():
    assert phase_boundaries(252, 12 / 252, 12 / 252) == (12, 240)  # the seed's 12K / 228K / 12K
    o = OptimConfig(schedule="vjepa2", steps=504, start_lr=0.0, lr=5e-4, final_lr=0.0, weight_decay=0.04,
                    ema=(0.99925, 0.99925), warmup_fraction=12 / 252, cooldown_fraction=12 / 252)
    lrs = [o.at(s)[0] for s in range(505)]
    assert lrs[0] == 0.0 and lrs[12] == pytest.approx(2.5e-4)  # linear warm-up over 24 steps
    assert all(lr == 5e-4 for lr in lrs[24:481])  # the long constant
    assert lrs[492] == pytest.approx(2.5e-4) and lrs[504] == pytest.approx(0.0)  # linear cool-down over 24 steps
    assert all(a >= b for a, b in zip(lrs[480:], lrs[481:]))
    assert {o.at(s)[1:] for s in range(0, 505, 7)} == {(0.04, 0.99925)}  # fixed, not ramped
    # V-JEPA 2.1: the cool-down starts from its own rate (6e-4 after a 5.25e-4 plateau)
    assert warmup_constant_cooldown(135, 147, 12 / 147, 12 / 147, 1e-4, 5.25e-4, 1e-6, 6e-4) == pytest.approx(6e-4)
    assert warmup_constant_cooldown(147, 147, 12 / 147, 12 / 147, 1e-4, 5.25e-4, 1e-6, 6e-4) == pytest.approx(1e-6)
    ramped = OptimConfig(steps=100)  # the first V-JEPA recipe still ramps both
    assert ramped.at(0)[1:] != ramped.at(50)[1:]


def _config(root, out, steps=8, **kwargs):
    kwargs.setdefault("progressive", ProgressiveConfig(switch_at=0.5, num_frames=4, image_size=32))
    return PretrainConfig(
        data=DataConfig(root=str(root), split="all", image_size=16, crop_scale=(0.5, 1.0)),
        encoder=EncoderConfig(size="micro", img_size=32, patch_size=8, depth=2), num_frames=2,
        predictor=PredictorConfig(embed_dim=48, depth=1, num_heads=4),
        optim=OptimConfig(schedule="vjepa2", steps=steps, batch_size=4, warmup_fraction=0.25, cooldown_fraction=0.25,
                          ema=(0.99, 0.99)),
        out=str(out), progress=False, checkpoint_every=1000, log_every=1, **kwargs)


def test_progressive_resolution_switches_at_the_configured_fraction(tmp_path, monkeypatch):
    make_dataset(tmp_path / "data", num_episodes=2, length=12, image_size=32)
    seen = []
    original = VJEPA.loss

    def spy(self, video, masks, teacher_size=None):
        seen.append(tuple(video.shape[2:]))
        return original(self, video, masks, teacher_size)

    monkeypatch.setattr(VJEPA, "loss", spy)
    summary = pretrain(_config(tmp_path / "data", tmp_path / "run", steps=8,
                               progressive=ProgressiveConfig(switch_at=0.75, num_frames=4, image_size=32)))
    assert summary["steps"] == 8
    assert seen == [(2, 16, 16)] * 6 + [(4, 32, 32)] * 2  # 2 frames at 16 px, then 4 frames at 32 px from step 6
    config = json.loads((tmp_path / "run" / "checkpoints" / "last" / "config.json").read_text())
    assert config["num_frames"] == 4 and config["encoder"]["img_size"] == 32  # what the frozen encoder last saw
    with pytest.raises(ConfigError, match="progressive.switch_at: expected a fraction of the run in"):
        pretrain(_config(tmp_path / "data", tmp_path / "x", progressive=ProgressiveConfig(switch_at=1.5)))


@pytest.mark.parametrize("stop_at", [3, 4, 6])  # before, at and after the switch (step 4)
def test_resume_is_exact_across_the_resolution_switch(tmp_path, stop_at):
    make_dataset(tmp_path / "data", num_episodes=2, length=12, image_size=32)
    straight = pretrain(_config(tmp_path / "data", tmp_path / "a"))
    cfg = _config(tmp_path / "data", tmp_path / "b", stop_at=stop_at)
    assert pretrain(cfg)["steps"] == stop_at
    cfg.stop_at, cfg.resume = None, True
    resumed = pretrain(cfg)
    assert_resumed_like_straight(straight, resumed, tmp_path / "a", tmp_path / "b")


def test_a_joint_step_steps_both_the_video_and_the_image_loss(tmp_path):
    make_dataset(tmp_path / "data", num_episodes=2, length=12, image_size=32)
    runs = {}
    for weight in (1.0, 0.0):
        cfg = _config(tmp_path / "data", tmp_path / f"w{weight}", steps=3, progressive=ProgressiveConfig(),
                      images=ImagesConfig(batch_size=4, weight=weight))
        runs[weight] = pretrain(cfg)
    joint = runs[1.0]
    assert len(joint["parts"]["video"]) == len(joint["parts"]["image"]) == 3  # both parts logged every step
    assert joint["history"] == pytest.approx([v + i for v, i in zip(joint["parts"]["video"], joint["parts"]["image"])])
    assert runs[0.0]["history"] == pytest.approx(runs[0.0]["parts"]["video"])
    # same data, masks and RNG draws; only the image loss's gradient differs -> it moved the weights
    a = load_encoder(tmp_path / "w1.0" / "checkpoints" / "last").state_dict()
    b = load_encoder(tmp_path / "w0.0" / "checkpoints" / "last").state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    # and each part alone has a gradient on the shared encoder
    model = VJEPA(EncoderConfig(size="micro", img_size=32, patch_size=8, depth=1), PredictorConfig(48, 1, 4))
    from world_model.masks import VJEPA_MASKS, batch_masks

    rng = np.random.default_rng(0)
    for video in (torch.randn(2, 3, 4, 16, 16), torch.randn(2, 3, 1, 16, 16)):  # a clip, an image
        masks = [batch_masks(2, model.encoder.grid(video), spec, rng) for spec in VJEPA_MASKS]
        model.zero_grad()
        model.loss(video, masks)[0].backward()
        assert model.encoder.patch_embed.proj.weight.grad.abs().sum() > 0


def test_distillation_takes_targets_from_the_low_resolution_teacher_frozen_at_the_switch(tmp_path):
    make_dataset(tmp_path / "data", num_episodes=2, length=12, image_size=32)
    distill = ProgressiveConfig(switch_at=0.5, num_frames=4, image_size=32, distill=True)
    pretrain(_config(tmp_path / "data", tmp_path / "before", progressive=distill, stop_at=4))
    pretrain(_config(tmp_path / "data", tmp_path / "run", progressive=distill))
    from safetensors.torch import load_file

    before = load_file(tmp_path / "before" / "checkpoints" / "last" / "model.safetensors")
    after = load_file(tmp_path / "run" / "checkpoints" / "last" / "model.safetensors")
    teacher = {k[len("teacher."):]: v for k, v in after.items() if k.startswith("teacher.")}
    assert teacher and all(torch.equal(v, before[f"target_encoder.{k}"]) for k, v in teacher.items())
    assert any(not torch.equal(v, after[f"target_encoder.{k}"]) for k, v in teacher.items())  # the student moved on
    model = VJEPA(EncoderConfig(size="micro", img_size=32, patch_size=8, depth=1), PredictorConfig(48, 1, 4), teacher=True)
    targets = model.targets(torch.randn(2, 3, 4, 32, 32), teacher_size=16)
    assert targets.shape == (2, 2 * 4 * 4, 96)  # the teacher's 2x2x2 grid interpolated to the student's 2x4x4
    with pytest.raises(ConfigError, match="progressive.distill: needs progressive.switch_at"):
        pretrain(_config(tmp_path / "data", tmp_path / "x", progressive=ProgressiveConfig(distill=True)))


def test_resume_is_exact_across_the_switch_with_joint_images_and_distillation(tmp_path):
    make_dataset(tmp_path / "data", num_episodes=2, length=12, image_size=32)
    extra = {"images": ImagesConfig(batch_size=3),
             "progressive": ProgressiveConfig(switch_at=0.5, num_frames=4, image_size=32, distill=True)}
    straight = pretrain(_config(tmp_path / "data", tmp_path / "a", **extra))
    cfg = _config(tmp_path / "data", tmp_path / "b", stop_at=3, **extra)
    pretrain(cfg)
    cfg.stop_at, cfg.resume = None, True
    resumed = pretrain(cfg)
    assert resumed["history"] == straight["history"] and resumed["parts"] == straight["parts"]


def test_the_presets_carry_the_seeds_recipes():
    from hydra import compose, initialize_config_dir

    from common.cli import CONFIG_DIR
    from common.config import build_config

    def preset(name):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            return build_config(PretrainConfig, compose("pretrain", [f"experiment={name}", "data.root=/d"]))

    v2, v21 = preset("franka_vjepa2_pretrain"), preset("franka_vjepa2_1_pretrain")
    for cfg in (v2, v21):
        assert cfg.optim.schedule == "vjepa2" and cfg.optim.ema == (0.99925, 0.99925) and cfg.optim.weight_decay == 0.04
        assert cfg.progressive.image_size == cfg.encoder.img_size > cfg.data.image_size
        assert cfg.progressive.num_frames > cfg.num_frames
        warmup, cooldown = phase_boundaries(cfg.optim.steps, cfg.optim.warmup_fraction, cfg.optim.cooldown_fraction)
        assert round(cfg.progressive.switch_at * cfg.optim.steps) == cooldown  # higher resolution in the cool-down
    assert phase_boundaries(252, v2.optim.warmup_fraction, v2.optim.cooldown_fraction) == (12, 240)
    assert phase_boundaries(147, v21.optim.warmup_fraction, v21.optim.cooldown_fraction) == (12, 135)
    assert v2.images.batch_size == 0 and v21.images.batch_size > 0
    assert (v21.optim.start_lr, v21.optim.lr, v21.optim.cooldown_lr, v21.optim.final_lr) == (1e-4, 5.25e-4, 6e-4, 1e-6)
