"""The pixel decoder on frozen latents (world_model/decoder.py): shapes, training beats the mean frame, it is found
beside the model and the episode videos show what the plan imagines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import PointGoalEnv, make_dataset, tiny_checkpoint

from common.errors import UserError
from planners.diagnostics import episode_video
from world_model.decoder import LatentDecoder, load_decoder, train_decoder


@pytest.mark.parametrize("size", [32, 64, 96])
def test_decoder_maps_tokens_to_images_of_the_model_size(size):
    torch.manual_seed(0)
    decoder = LatentDecoder(tokens=16, dim=8, image_size=size, width=16)
    out = decoder(torch.randn(2, 5, 16, 8))
    assert out.shape == (2, 5, 3, size, size) and float(out.detach().min()) >= 0 and float(out.detach().max()) <= 1
    images = decoder.images(torch.randn(3, 16, 8))
    assert images.shape == (3, size, size, 3) and images.dtype == np.uint8


def test_decoder_refuses_wrong_latents_and_sizes():
    with pytest.raises(ValueError, match=r"multiple of 16"):
        LatentDecoder(tokens=1, dim=8, image_size=40)
    with pytest.raises(ValueError, match=r"expects latents \(\.\.\., 4, 8\), got \(2, 1, 8\)"):
        LatentDecoder(tokens=4, dim=8, image_size=32)(torch.randn(2, 1, 8))


def test_trained_decoder_beats_the_mean_frame_and_is_found_beside_the_model(tmp_path):
    make_dataset(tmp_path / "data", num_episodes=6, length=30, image_size=32)
    checkpoint = tiny_checkpoint(tmp_path / "model", image_size=32)
    result = train_decoder(str(checkpoint), str(tmp_path / "data"), steps=300, batch_size=32, width=16,
                           max_frames=None, progress=False)
    assert result["out"] == str(checkpoint / "decoder")
    # the blob moves with the end effector: a decoder that reads the latent draws it where it is, the mean frame cannot
    assert result["val_mse"] < 0.8 * result["mean_frame_mse"], result
    decoder = load_decoder(checkpoint)
    z = torch.randn(4, 1, 16)
    assert decoder is not None and torch.equal(decoder(z), decoder(z))
    assert load_decoder(tmp_path / "data") is None  # a folder without one


def test_decoder_needs_a_world_model_not_an_encoder(tmp_path):
    make_dataset(tmp_path / "data", num_episodes=2, length=6, image_size=32)
    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "config.json").write_text('{"encoder": {}}')
    with pytest.raises(UserError, match=r"enc/config.json: no 'family'"):
        train_decoder(str(tmp_path / "enc"), str(tmp_path / "data"), steps=1, progress=False)


def test_episode_video_shows_the_imagined_frames(tmp_path, monkeypatch):
    import gymnasium as gym

    from common.config import build_config
    from planners import cem_goal
    from planners.factory import PlanConfig
    from world_model.checkpoints import save_checkpoint

    if "PointGoal-v0" not in gym.registry:
        gym.register("PointGoal-v0", entry_point=PointGoalEnv.make, max_episode_steps=50)
    checkpoint = tiny_checkpoint(tmp_path / "model", image_size=32, action_dim=2,
                                 data={"action_mode": "recorded", "recorded_actions": ["env"]})
    torch.manual_seed(0)
    decoder = LatentDecoder(1, 16, 32, 16)
    save_checkpoint(checkpoint / "decoder", decoder, {"decoder": decoder.settings()})
    results = []
    run_episode = cem_goal.run_episode
    monkeypatch.setattr(cem_goal, "run_episode", lambda *a, **k: results.append(run_episode(*a, **k)) or results[-1])
    cem_goal.evaluate(build_config(PlanConfig, {
        "checkpoint": str(checkpoint), "env_id": "PointGoal-v0", "env_module": None, "episodes": 1, "max_steps": 3,
        "fixed_dims": [], "video_dir": str(tmp_path / "videos"), "progress": False,
        "solver": {"samples": 8, "elites": 2, "iterations": 1}, "mpc": {"horizon": 2}}))
    (result,) = results
    assert result.trace and all(step.imagined.shape == (2, 32, 32, 3) for step in result.trace)
    # the chunk-end panel is the decoder's drawing of the plan's first predicted latent
    frames = episode_video(result, scale=2)
    assert frames[0].shape[1] == 4 * 32 * 2  # observation | goal | imagined chunk end | imagined plan end
    assert (tmp_path / "videos" / "episode_000.mp4").exists()
