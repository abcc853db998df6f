import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import make_dataset

from datasets import EpisodeReader
from world_model.checkpoints import save_checkpoint
from world_model.encoder import EncoderConfig, VideoViT, encode_frames
from world_model.feature_cache import CacheMismatchError, FeatureCache, Preprocessing, build_cache


def _checkpoint(path, seed):
    torch.manual_seed(seed)
    config = EncoderConfig(size="micro", img_size=32, patch_size=8)
    model = VideoViT(config).eval()
    save_checkpoint(path, model, {"encoder": config.to_dict()})
    return model


def test_cache_matches_direct_encoding_and_refuses_other_encoders(tmp_path):
    make_dataset(tmp_path / "data", num_episodes=2, length=12, image_size=32)
    model = _checkpoint(tmp_path / "enc_a", 0)
    _checkpoint(tmp_path / "enc_b", 1)
    pre = Preprocessing(image_size=32)
    summary = build_cache(tmp_path / "data", tmp_path / "enc_a", pre, batch_size=5, progress=False)
    assert summary["encoded"] == 2
    cache = FeatureCache(tmp_path / "data" / "features", tmp_path / "enc_a", pre)
    feats = cache.read("episode_001.h5", [0, 7, 11])
    assert feats.dtype == np.float16 and feats.shape == (3, 16, 96)
    with EpisodeReader(tmp_path / "data" / "episode_001.h5") as ep:
        frames = torch.from_numpy(ep.images("exterior_1_left", [0, 7, 11])).permute(0, 3, 1, 2)
    direct = encode_frames(model, frames[None])[0].numpy()
    np.testing.assert_allclose(feats.astype(np.float32), direct, atol=2e-2, rtol=1e-2)

    with pytest.raises(CacheMismatchError, match="encoder weights differ"):
        FeatureCache(tmp_path / "data" / "features", tmp_path / "enc_b", pre)
    with pytest.raises(CacheMismatchError, match="preprocessing"):
        FeatureCache(tmp_path / "data" / "features", tmp_path / "enc_a", Preprocessing(image_size=32, pool=True))
    with pytest.raises(CacheMismatchError):
        build_cache(tmp_path / "data", tmp_path / "enc_b", pre, progress=False)
    assert build_cache(tmp_path / "data", tmp_path / "enc_a", pre, progress=False)["skipped_existing"] == 2


def test_cache_cli(tmp_path):
    make_dataset(tmp_path / "data", num_episodes=2, length=6, image_size=32)
    _checkpoint(tmp_path / "enc", 0)
    cmd = [sys.executable, "world_model/cache_features.py", str(tmp_path / "data"), str(tmp_path / "enc"),
           "image_size=32", "pool=true", "progress=false"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("encoded 2 episodes")
    cache = FeatureCache(tmp_path / "data" / "features", tmp_path / "enc", Preprocessing(image_size=32, pool=True))
    assert cache.read("episode_000.h5", [5]).shape == (1, 1, 96)
    FeatureCache(tmp_path / "data" / "features", tmp_path / "enc", Preprocessing(image_size=32, pool=1))  # = true
    with pytest.raises(CacheMismatchError, match="preprocessing"):  # a 2 x 2 grid is other features
        FeatureCache(tmp_path / "data" / "features", tmp_path / "enc", Preprocessing(image_size=32, pool=2))
    build_cache(tmp_path / "data", tmp_path / "enc", Preprocessing(image_size=32, pool=2), overwrite=True,
                progress=False)
    cache = FeatureCache(tmp_path / "data" / "features", tmp_path / "enc", Preprocessing(image_size=32, pool=2))
    assert cache.read("episode_000.h5", [5]).shape == (1, 4, 96)
