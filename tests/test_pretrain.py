import numpy as np
import pytest
import torch
from helpers import assert_resumed_like_straight, make_dataset

from common.errors import UserError
from recipes.collect import CollectConfig, collect
from world_model.checkpoints import load_encoder
from world_model.encoder import EncoderConfig
from world_model.jepa_predictor import PredictorConfig
from world_model.masks import MaskSpec, batch_masks, sample_mask
from world_model.pretrain import DataConfig, OptimConfig, PretrainConfig, pretrain
from world_model.schedules import cosine_increase, linear, warmup_constant_decay, warmup_cosine


def test_multiblock_masks_repeat_over_time_and_keep_context():
    rng = np.random.default_rng(0)
    mask = sample_mask((4, 8, 8), MaskSpec(8, 0.15), rng)
    assert all(np.array_equal(mask[0], mask[t]) for t in range(4))  # the spatial mask spans all frames
    assert 0 < mask.sum() < mask.size
    ratios = [sample_mask((2, 16, 16), MaskSpec(2, 0.7), rng).mean() for _ in range(50)]
    assert 0.6 < np.mean(ratios) < 0.99  # long-range masks hide most of the clip
    ctx, tgt = batch_masks(5, (2, 8, 8), MaskSpec(8, 0.15), rng)
    assert ctx.shape[0] == tgt.shape[0] == 5 and ctx.shape[1] + tgt.shape[1] <= 128
    for c, t in zip(ctx.tolist(), tgt.tolist()):
        assert not set(c) & set(t)


def test_schedules_follow_the_recipe():
    assert warmup_cosine(0, 100, 10, 2e-4, 6.25e-4, 1e-6) == pytest.approx(2e-4)
    assert warmup_cosine(10, 100, 10, 2e-4, 6.25e-4, 1e-6) == pytest.approx(6.25e-4)
    assert warmup_cosine(100, 100, 10, 2e-4, 6.25e-4, 1e-6) == pytest.approx(1e-6)
    assert warmup_cosine(100, 100, 10, 2e-4, 6.25e-4, 1e-6, stretch=1.25) > 1e-5  # stretched: not at the floor
    assert cosine_increase(0, 100, 0.04, 0.4) == pytest.approx(0.04)
    assert cosine_increase(100, 100, 0.04, 0.4) == pytest.approx(0.4)
    assert linear(50, 100, 0.998, 1.0) == pytest.approx(0.999)
    assert warmup_constant_decay(50, 100, 10, 20, 7.5e-5, 4.25e-4) == pytest.approx(4.25e-4)
    assert warmup_constant_decay(100, 100, 10, 20, 7.5e-5, 4.25e-4) == pytest.approx(0.0)


def _config(root, out, steps=40, num_frames=4, **kwargs):
    return PretrainConfig(
        data=DataConfig(root=str(root), split="all", image_size=32, crop_scale=(0.5, 1.0)),
        encoder=EncoderConfig(size="micro", img_size=32, patch_size=8), num_frames=num_frames,
        predictor=PredictorConfig(embed_dim=48, depth=2, num_heads=4),
        optim=OptimConfig(steps=steps, batch_size=8, warmup=5), out=str(out), progress=False,
        checkpoint_every=1000, log_every=5, **kwargs)


@pytest.mark.slow
def test_tiny_pretraining_on_collected_sim_data_lowers_the_loss_without_collapse(tmp_path):
    collect(CollectConfig(out=str(tmp_path / "data"), num_episodes=6, max_steps=30, workers=1,
                          env_kwargs={"image_size": 32}), progress=False)
    summary = pretrain(_config(tmp_path / "data", tmp_path / "run", steps=60))
    assert summary["loss_end"] < 0.7 * summary["loss_start"], summary
    assert summary["target_feature_std"] > 0.1  # collapse drives it to 0
    encoder = load_encoder(summary["checkpoint"])  # the EMA target encoder, for frozen use
    assert encoder.embed_dim == 96 and (tmp_path / "run" / "tb").is_dir()


def test_image_mode_runs_the_same_code_path(tmp_path):
    make_dataset(tmp_path / "data", num_episodes=3, length=10, image_size=32)
    summary = pretrain(_config(tmp_path / "data", tmp_path / "run", steps=4, num_frames=1))
    assert summary["steps"] == 4 and np.isfinite(summary["loss_end"])


def test_resume_is_exact(tmp_path):
    make_dataset(tmp_path / "data", num_episodes=3, length=16, image_size=32)
    straight = pretrain(_config(tmp_path / "data", tmp_path / "a", steps=6))
    with pytest.raises(UserError, match="already holds a checkpoint; continue it with resume=true"):
        pretrain(_config(tmp_path / "data", tmp_path / "a", steps=6))  # a rerun never silently starts over
    cfg = _config(tmp_path / "data", tmp_path / "b", steps=6, stop_at=3)
    assert pretrain(cfg)["steps"] == 3
    cfg.stop_at, cfg.resume = None, True
    resumed = pretrain(cfg)
    assert_resumed_like_straight(straight, resumed, tmp_path / "a", tmp_path / "b")


def test_nan_loss_stops_with_the_step_and_keeps_the_checkpoint(tmp_path):
    make_dataset(tmp_path / "data", num_episodes=2, length=10, image_size=32)
    cfg = _config(tmp_path / "data", tmp_path / "run", steps=2)
    pretrain(cfg)
    before = (tmp_path / "run" / "checkpoints" / "last" / "model.safetensors").read_bytes()
    cfg.optim.steps, cfg.resume = 5, True
    cfg.optim.lr = cfg.optim.start_lr = cfg.optim.final_lr = 1e30  # one step at this rate wrecks the weights
    with pytest.raises(FloatingPointError, match="non-finite loss .* at step 3"):
        pretrain(cfg)
    assert (tmp_path / "run" / "checkpoints" / "last" / "model.safetensors").read_bytes() == before


def test_attentive_probe_beats_the_mean_baseline(tmp_path):
    from world_model.checkpoints import save_checkpoint
    from world_model.encoder import VideoViT
    from world_model.probe import run_probe

    collect(CollectConfig(out=str(tmp_path / "data"), num_episodes=16, max_steps=30, workers=1, val_fraction=0.25,
                          env_kwargs={"image_size": 32}), progress=False)
    config = EncoderConfig(size="micro", img_size=32, patch_size=8)
    save_checkpoint(tmp_path / "enc", VideoViT(config), {"encoder": config.to_dict()})
    result = run_probe(str(tmp_path / "enc"), str(tmp_path / "data"), image_size=32, steps=1000, progress=False,
                       positions=False)  # 360 frames: a position per token overfits them (0.95 of the baseline)
    assert result["val_frames"] == 120 and result["train_frames"] == 360
    assert result["val_rmse_m"] < 0.9 * result["baseline_rmse_m"], result  # measured 0.87 (random micro encoder)


def test_probe_positions_let_it_see_where_a_token_is(tmp_path):
    """Raw patches of a blob drawn at the end effector: every blob patch looks alike wherever it is, so only a
    probe that knows each token's index can read the position (checkpoint=pixels, the reference row)."""
    from helpers import make_dataset

    from world_model.probe import pixel_patches, run_probe

    frames = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).remainder(256).to(torch.uint8).view(1, 2, 3, 16, 16)
    patches = pixel_patches(frames)
    assert patches.shape == (1, 2, 4, 3 * 64)
    assert torch.equal(patches[0, 1, 3, :64], frames[0, 1, 0, 8:, 8:].flatten().float() / 255 - 0.5)  # patch (1, 1), red
    make_dataset(tmp_path / "data", num_episodes=12, length=30, image_size=32)
    runs = {flag: run_probe("pixels", str(tmp_path / "data"), image_size=32, steps=600, progress=False, positions=flag)
            for flag in (False, True)}
    assert runs[True]["val_rmse_m"] < 0.7 * runs[False]["val_rmse_m"], runs
    assert runs[True]["val_median_m"] < runs[True]["baseline_median_m"], runs


def test_the_nearest_neighbour_error_scores_the_latent_distance_across_episodes():
    """Tokens that encode the position pick a frame near the goal; tokens of noise pick one at random; a frame of the
    goal's own episode is never chosen, however close its latent."""
    from world_model.probe import nearest_neighbour_error

    gen = torch.Generator().manual_seed(0)
    xyz = torch.rand(400, 3, generator=gen)
    episodes = torch.arange(400) // 20
    faithful = xyz[:, None, :].repeat(1, 4, 1)  # (F, N=4, D=3)
    good = nearest_neighbour_error(faithful, xyz, episodes, goals=100)
    noise = nearest_neighbour_error(torch.rand(400, 4, 3, generator=gen), xyz, episodes, goals=100)
    assert good["nn_median_m"] < 0.25 * good["nn_random_median_m"], good
    # L1 in the latent, Euclidean in metres: near, not always at, the closest state there is
    assert good["nn_floor_median_m"] <= good["nn_median_m"] < 1.1 * good["nn_floor_median_m"], good
    assert noise["nn_median_m"] > 0.6 * noise["nn_random_median_m"], noise
    assert good["nn_median_m"] > 0.0  # were its own episode allowed, the goal frame itself (latent distance 0) would be


def test_sigterm_stops_pretraining_with_a_checkpoint(tmp_path):
    import signal
    import sys
    from pathlib import Path

    from helpers import signal_after_steps

    make_dataset(tmp_path / "data", num_episodes=2, length=10, image_size=32)
    script = Path(__file__).resolve().parents[1] / "world_model" / "pretrain.py"
    status, out, err, seconds = signal_after_steps(
        [sys.executable, str(script), f"data.root={tmp_path / 'data'}", f"out={tmp_path / 'run'}", "data.image_size=32",
         "encoder.size=micro", "encoder.img_size=32", "predictor.embed_dim=48", "predictor.depth=1", "optim.steps=100000",
         "optim.batch_size=4", "num_frames=2", "checkpoint_every=100000"], signal.SIGTERM, steps=1)
    assert status == 143 and "Traceback" not in err and seconds < 20, (status, seconds, err[-3000:])
    assert out.splitlines()[0].startswith("SIGTERM: stopped at step ")
    assert out.splitlines()[1].startswith(f"resume with: python {script} ") and out.splitlines()[1].endswith(" resume=true")
    step = int(out.split("stopped at step ")[1].split()[0])
    assert torch.load(tmp_path / "run" / "checkpoints" / "last" / "training_state.pt", weights_only=False)["step"] == step


def test_object_probe_targets_are_the_recorded_cube_positions(tmp_path):
    """target=object reads observation/privileged/object_position at each sample's own (episode, frame)."""
    import h5py

    from datasets.clips import ClipDataset, FrameTransform, Windows
    from world_model.probe import OBJECT_KEY, ObjectPositions

    collect(CollectConfig(env_id="FrankaPush-v0", out=str(tmp_path / "push"), num_episodes=3, max_steps=12, workers=1,
                          val_fraction=0.34, env_kwargs={"image_size": 32}), progress=False)
    ds = ClipDataset(tmp_path / "push", split="train", windows=Windows(history=1, future=0),
                     transform=FrameTransform(image_size=32))
    objects = ObjectPositions(ds)
    samples = [ds[i] for i in (0, 5, 13, len(ds) - 1)]
    got = objects(torch.stack([s["episode"] for s in samples]), torch.stack([s["frame_ids"][0] for s in samples]))
    for sample, value in zip(samples, got):
        with h5py.File(ds.episode_path(int(sample["episode"])), "r") as f:
            expected = f[OBJECT_KEY][int(sample["frame_ids"][0])]
        assert torch.allclose(value, torch.as_tensor(expected, dtype=torch.float32))
    assert len({tuple(v.tolist()) for v in objects.values}) > 3  # the cube moves, so the targets differ


def test_probe_reads_a_world_model_checkpoint_pooled_or_not(tmp_path):
    from helpers import tiny_checkpoint

    from world_model.checkpoints import save_checkpoint
    from world_model.encoder import VideoViT
    from world_model.probe import run_probe

    collect(CollectConfig(env_id="FrankaPush-v0", out=str(tmp_path / "push"), num_episodes=3, max_steps=8, workers=1,
                          val_fraction=0.34, env_kwargs={"image_size": 32}), progress=False)
    config = EncoderConfig(size="micro", img_size=32, patch_size=8)
    save_checkpoint(tmp_path / "enc", VideoViT(config), {"encoder": config.to_dict()})
    lewm = tiny_checkpoint(tmp_path / "lewm")
    # no image_size: the probe takes the size each checkpoint was trained at (32 here; a 64 would not fit them)
    runs = {(name, pool): run_probe(str(path), str(tmp_path / "push"), steps=3, progress=False, target="object",
                                    pool=pool)
            for name, path in (("vjepa", tmp_path / "enc"), ("lewm", lewm)) for pool in (False, True)}
    assert {key: r["tokens_per_frame"] for key, r in runs.items()} == {
        ("vjepa", False): 16, ("vjepa", True): 1, ("lewm", False): 1, ("lewm", True): 1}
    assert all(r["target"] == "object" and np.isfinite(r["val_rmse_m"]) and r["val_frames"] == 8 for r in runs.values())


def test_object_probe_on_data_without_objects_is_one_line(tmp_path):
    from world_model.checkpoints import save_checkpoint
    from world_model.encoder import VideoViT
    from world_model.probe import run_probe

    make_dataset(tmp_path / "data", num_episodes=4, length=6, image_size=32)
    config = EncoderConfig(size="micro", img_size=32, patch_size=8)
    save_checkpoint(tmp_path / "enc", VideoViT(config), {"encoder": config.to_dict()})
    with pytest.raises(UserError, match="target=object needs 'observation/privileged/object_position'"):
        run_probe(str(tmp_path / "enc"), str(tmp_path / "data"), image_size=32, steps=2, progress=False, target="object")
