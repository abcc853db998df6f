"""Frozen-encoder feature cache: encode every episode once, train predictors on features instead of pixels.

`python world_model/cache_features.py data_root=DIR checkpoint=CKPT` writes `DIR/features/`
(or `cache_dir`): `meta.json` plus one `<episode>.hdf5` file per episode holding `features`
(T, N, D) float16, one frame per chunk (`.hdf5`, so dataset scans for `*.h5` never mistake
them for episodes). The cache is keyed by a hash of the encoder
weights and config and of the preprocessing (camera, image size, pooling); opening a
cache made by another encoder or preprocessing raises `CacheMismatchError` saying
what differs. Episode files are written atomically and a rerun skips finished ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm import tqdm

from common.device import pick_device
from datasets.index import load_index
from datasets.reader import EpisodeReader
from datasets.schema import EpisodeError
from datasets.transforms import resize_uint8
from datasets.validate import find_episodes
from world_model.checkpoints import load_encoder
from world_model.encoder import encode_frames

META = "meta.json"
FEATURES = "features"
SUFFIX = ".hdf5"


class CacheMismatchError(ValueError):
    """The cache was made by another encoder or preprocessing."""


@dataclass(frozen=True)
class Preprocessing:
    camera: str | None = None  # None: each episode's first camera
    image_size: int = 64
    pool: bool | int = False  # true / 1: one averaged token; g > 1: a g x g grid (world_model.encoder.encode_frames)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(checkpoint: str | os.PathLike, preprocessing: Preprocessing) -> dict[str, Any]:
    """What identifies a cache: the encoder's weights and config, and the preprocessing."""
    checkpoint = Path(checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    encoder = {"weights_sha256": file_digest(checkpoint / "model.safetensors"), "config": config["encoder"],
               "prefix": config.get("encoder_prefix", "")}
    preprocessing_key = asdict(preprocessing)
    if preprocessing.pool in (0, 1):  # pool=1 and pool=true make the same features (and keep older caches' keys)
        preprocessing_key["pool"] = bool(preprocessing.pool)
    key = {"encoder": encoder, "preprocessing": preprocessing_key}
    key["id"] = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return key


def check_key(cache_dir: Path, expected: dict[str, Any]) -> None:
    """Raise CacheMismatchError unless the cache at `cache_dir` was made with `expected`."""
    meta_path = cache_dir / META
    if not meta_path.exists():
        raise FileNotFoundError(f"{cache_dir} has no feature cache ({META} missing); build it with "
                                f"python world_model/cache_features.py")
    found = json.loads(meta_path.read_text())["key"]
    if found["id"] == expected["id"]:
        return
    differences = []
    if found["encoder"]["weights_sha256"] != expected["encoder"]["weights_sha256"]:
        differences.append("encoder weights differ (another checkpoint)")
    if found["encoder"]["config"] != expected["encoder"]["config"] or found["encoder"]["prefix"] != expected["encoder"]["prefix"]:
        differences.append(f"encoder config {found['encoder']['config']} vs {expected['encoder']['config']}")
    if found["preprocessing"] != expected["preprocessing"]:
        differences.append(f"preprocessing {found['preprocessing']} vs {expected['preprocessing']}")
    raise CacheMismatchError(f"feature cache {cache_dir} was made by another encoder or preprocessing: "
                             + "; ".join(differences) + ". Rebuild it (overwrite=true) or point to another cache_dir.")


def _episode_files(root: Path) -> list[Path]:
    index = load_index(root)
    if index is not None:
        return [root / e["file"] for e in index["episodes"]]
    return find_episodes(root)


@torch.no_grad()
def build_cache(data_root: str | os.PathLike, checkpoint: str | os.PathLike, preprocessing: Preprocessing,
                cache_dir: str | os.PathLike | None = None, batch_size: int = 64, device: str | None = None,
                overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Encode every episode of `data_root` with the encoder of `checkpoint`; returns counts."""
    root = Path(data_root)
    cache = Path(cache_dir) if cache_dir else root / FEATURES
    key = cache_key(checkpoint, preprocessing)
    if (cache / META).exists() and not overwrite:
        check_key(cache, key)
    elif (cache / META).exists():
        for old in cache.rglob(f"*{SUFFIX}"):
            old.unlink()
    cache.mkdir(parents=True, exist_ok=True)
    (cache / META).write_text(json.dumps({"key": key, "checkpoint": str(checkpoint), "dataset": str(root)}, indent=1))
    dev = pick_device(device)
    encoder = load_encoder(checkpoint).to(dev).eval()
    size = (preprocessing.image_size, preprocessing.image_size)
    done, skipped, failed = 0, 0, []
    for path in tqdm(_episode_files(root), desc="encode", unit="ep", disable=not progress):
        rel = path.relative_to(root)
        target = (cache / rel).with_suffix(SUFFIX)
        if target.exists():
            skipped += 1
            continue
        try:
            with EpisodeReader(path) as ep:
                camera = preprocessing.camera or ep.cameras[0]
                chunks = []
                for start in range(0, len(ep), batch_size):
                    frames = ep.images(camera, range(start, min(start + batch_size, len(ep))))
                    video = resize_uint8(torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2))), size)
                    z = encode_frames(encoder, video[None].to(dev), pool=preprocessing.pool)[0]
                    chunks.append(z.to(torch.float16).cpu().numpy())
        except EpisodeError as err:
            failed.append(str(err))
            continue
        features = np.concatenate(chunks)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with h5py.File(tmp, "w") as f:
            f.create_dataset(FEATURES, data=features, chunks=(1, *features.shape[1:]))
            f.attrs["episode"] = str(rel)
        os.replace(tmp, target)
        done += 1
    return {"encoded": done, "skipped_existing": skipped, "failed": failed, "cache_dir": str(cache), "key": key["id"]}


class FeatureCache:
    """Reads cached features of episodes; refuses a cache made by another encoder or preprocessing."""

    def __init__(self, cache_dir: str | os.PathLike, checkpoint: str | os.PathLike, preprocessing: Preprocessing):
        self.dir = Path(cache_dir)
        check_key(self.dir, cache_key(checkpoint, preprocessing))
        self._files: dict[str, h5py.File] = {}
        self._pid = os.getpid()

    def read(self, episode: str, frames: np.ndarray | list[int]) -> np.ndarray:
        """float16 (len(frames), N, D) features of `episode` (its path relative to the dataset root)."""
        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(episode)
        if f is None:
            path = (self.dir / episode).with_suffix(SUFFIX)
            if not path.exists():
                raise FileNotFoundError(f"{path}: episode {episode} is not in the feature cache; rerun the cache build")
            f = self._files[episode] = h5py.File(path, "r")
        ds = f[FEATURES]
        return np.stack([ds[int(i)] for i in frames])


class CachedFeatureClips(torch.utils.data.Dataset):
    """A ClipDataset (built with load_frames=False) whose samples carry cached `features` (T, N, D) float32."""

    def __init__(self, clips, cache: FeatureCache):
        self.clips, self.cache = clips, cache

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        sample = self.clips[i]
        episode = self.clips.episode_path(int(sample["episode"])).relative_to(self.clips.root).as_posix()
        sample["features"] = torch.from_numpy(self.cache.read(episode, sample["frame_ids"].numpy()).astype(np.float32))
        return sample
