"""Frozen evaluation with an attentive probe: `python world_model/probe.py checkpoint=CKPT data_root=DIR`.

Cross-attention pooling with one learnable query over the frozen encoder's patch
tokens of a single frame, then a linear head, trained to regress a position on the
training episodes and scored on the held-out ones (RMSE in metres and R^2, next to the
predict-the-mean baseline): `target=ee`, the end-effector (state[:3]), or `target=object`,
the object's centre that our manipulation envs record under `observation/privileged/`
(simulator-only: it tells whether the features see the cube, it never trains a model).
The checkpoint is either a pretrained encoder (world_model/pretrain.py: its layer-normed patch
tokens, as the frozen family sees them), a world model (world_model/train.py: the tokens its
planner compares, `model.encode`), or `pixels` (the frame's raw 8x8 patches: what the probe finds in
the image itself, the reference for the others); `pool=true` averages the tokens to one per frame (`pool=g`: to
a g x g grid), to compare a pooled latent with the token grid. Features are encoded once up front, since the
encoder is frozen. Beside the probe, `nn_median_m` scores the planner's own cost without training anything: for
held-out goal frames, how far (in metres) the frame whose latent is closest to the goal's lies from it.
"""

from __future__ import annotations

if __name__ == "__main__":  # --help, typos and missing arguments are answered before the heavy imports below
    from common.cli import preflight

    preflight("probe", positional=("checkpoint", "data_root"))

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn as nn
from timm.layers import trunc_normal_
from torch.utils.data import DataLoader
from tqdm import tqdm

from common.device import pick_device
from common.errors import UserError
from datasets.clips import ClipDataset, FrameTransform, Windows
from datasets.schema import PRIVILEGED_GROUP
from world_model.checkpoints import load_encoder
from world_model.encoder import encode_frames, pool_tokens
from world_model.models import load_world_model, model_cameras


class AttentiveProbe(nn.Module):
    """One learnable query attends over the tokens; a linear head reads the pooled vector.

    With `tokens` set, a learned embedding per token index is added before the attention: pooling averages what
    the tokens hold, so without it the probe cannot tell *where* a token sits, only what it shows — a position
    carried by which token sees the object (a token grid, raw patches) would be invisible to it.
    """

    def __init__(self, dim: int, out_dim: int, num_heads: int = 4, tokens: int = 0):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        trunc_normal_(self.query, std=0.02)
        self.position = nn.Parameter(torch.zeros(1, tokens, dim)) if tokens > 1 else None
        if self.position is not None:
            trunc_normal_(self.position, std=0.02)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.position is not None:
            tokens = tokens + self.position
        pooled, _ = self.attn(self.query.expand(tokens.shape[0], -1, -1), tokens, tokens, need_weights=False)
        return self.head(self.norm(pooled[:, 0]))


TARGETS = ("ee", "object")
OBJECT_KEY = f"{PRIVILEGED_GROUP}/object_position"


class ObjectPositions:
    """Every episode's recorded object positions in one array, indexed by (episode, frame) without a Python loop."""

    def __init__(self, dataset: ClipDataset):
        arrays = []
        for e in range(len(dataset.episodes)):
            path = dataset.episode_path(e)
            with h5py.File(path, "r") as f:
                if OBJECT_KEY not in f:
                    raise UserError(f"{path}: target=object needs '{OBJECT_KEY}' (recorded by python -m recipes.collect "
                                    f"for envs with privileged_state(), e.g. FrankaPush-v0), which this episode lacks")
                arrays.append(np.asarray(f[OBJECT_KEY][:, :3], np.float32))
        self.offsets = torch.tensor(np.cumsum([0] + [len(a) for a in arrays[:-1]]), dtype=torch.long)
        self.values = torch.from_numpy(np.concatenate(arrays))

    def __call__(self, episode: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        return self.values[self.offsets[episode] + frame]


PIXELS = "pixels"  # checkpoint=pixels: the frame's own 8x8 patches as tokens, the reference row of the probe tables


def pixel_patches(frames: torch.Tensor, patch: int = 8) -> torch.Tensor:
    """uint8 frames (B, T, 3, H, W) -> raw patch tokens (B, T, (H/p)(W/p), 3p²) in [-0.5, 0.5]: what any encoder
    starts from, so a probe on them says what the probe itself can find in the image."""
    x = frames.float() / 255 - 0.5
    b, t, c, h, w = x.shape
    x = x.view(b, t, c, h // patch, patch, w // patch, patch).permute(0, 1, 3, 5, 2, 4, 6)
    return x.reshape(b, t, (h // patch) * (w // patch), c * patch * patch)


def frame_features(checkpoint: str, device: torch.device, pool: bool | int = False
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
    """frames (B, T, 3, H, W) uint8 -> tokens (B, T, N, D) of the checkpoint's frozen encoder or world model
    (`pixels`: the raw patches)."""
    if checkpoint == PIXELS:
        encode: Callable[[torch.Tensor], torch.Tensor] = pixel_patches
    else:
        config_path = Path(checkpoint) / "config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        if "family" in config:
            encode = load_world_model(checkpoint, device)[0].encode
        else:
            encode = partial(encode_frames, load_encoder(checkpoint).to(device).eval())
    return (lambda frames: pool_tokens(encode(frames), pool)) if pool else encode


@torch.no_grad()
def encode_paired(encode: Callable[[torch.Tensor], torch.Tensor], dataset: ClipDataset, batch_size: int,
                  device: torch.device, max_frames: int | None, progress: bool,
                  paired: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens (F, N, D) float32, `paired(batch)` (F, ...)) for up to `max_frames` frames of a single-frame dataset
    (drawn in a fixed shuffled order when capped): the encoder is frozen, so its features are computed once."""
    tokens, others, seen = [], [], 0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=max_frames is not None,
                        generator=torch.Generator().manual_seed(0))
    for batch in tqdm(loader, desc=f"encode {dataset.split}", unit="batch", disable=not progress):
        tokens.append(encode(batch["frames"].to(device))[:, 0].float().cpu())
        others.append(paired(batch))
        seen += len(batch["frames"])
        if max_frames is not None and seen >= max_frames:
            break
    return torch.cat(tokens)[:max_frames], torch.cat(others)[:max_frames]


def encode_split(encode: Callable[[torch.Tensor], torch.Tensor], dataset: ClipDataset, batch_size: int,
                 device: torch.device, max_frames: int | None, progress: bool, target: str = "ee"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens (F, N, D), target xyz (F, 3)) for up to `max_frames` frames of a single-frame dataset."""
    objects = ObjectPositions(dataset) if target == "object" else None

    def targets(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        xyz = batch["states"][:, 0, :3] if objects is None else objects(batch["episode"], batch["frame_ids"][:, 0])
        return torch.cat([xyz.float(), batch["episode"].float()[:, None]], 1)  # the episode rides along as column 3

    tokens, paired = encode_paired(encode, dataset, batch_size, device, max_frames, progress, targets)
    return tokens, paired[:, :3], paired[:, 3].long()


@torch.no_grad()
def nearest_neighbour_error(tokens: torch.Tensor, xyz: torch.Tensor, episodes: torch.Tensor, goals: int = 500,
                            seed: int = 0) -> dict[str, float]:
    """How well the planner's latent distance (mean L1 over tokens and channels, `planners.costs`) picks states: for
    up to `goals` frames taken as goal images, the frame of *another* episode whose latent is closest, and the
    distance in metres between its target and the goal's (median and mean), against a frame drawn at random. A
    planner with a perfect model stops where its cost is lowest, so this is the error such a planner would make if it
    could only choose among the recorded states; same-episode frames are left out, since a neighbouring frame is close
    in any feature. `nn_floor_median_m`: the closest state of another episode, what a perfect latent would pick."""
    if len(episodes.unique()) < 2:  # nothing to choose from: one held-out episode
        return {"nn_median_m": None, "nn_mean_m": None, "nn_random_median_m": None, "nn_goals": 0}
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(tokens), generator=gen)[:goals]
    flat = tokens.flatten(1)
    latent = torch.cdist(flat[pick], flat, p=1) / flat.shape[1]  # (G, F)
    latent[episodes[pick][:, None] == episodes[None, :]] = float("inf")
    metres = torch.cdist(xyz[pick], xyz)  # (G, F)
    chosen = metres.gather(1, latent.argmin(1, keepdim=True))[:, 0]
    other = episodes[pick][:, None] != episodes[None, :]
    random = metres.gather(1, torch.multinomial(other.float(), 1, generator=gen))[:, 0]  # one other-episode frame each
    floor = metres.masked_fill(~other, float("inf")).min(1).values  # the closest recorded state: no cost does better
    return {"nn_median_m": float(chosen.median()), "nn_mean_m": float(chosen.mean()),
            "nn_random_median_m": float(random.median()), "nn_floor_median_m": float(floor.median()),
            "nn_goals": len(pick)}


def run_probe(checkpoint: str, data_root: str, image_size: int | None = None, steps: int = 1500, batch_size: int = 64,
              lr: float = 3e-3, weight_decay: float = 0.01, max_frames: int | None = None, seed: int = 0,
              device: str | None = None, progress: bool = True, target: str = "ee", pool: bool | int = False,
              positions: bool = True) -> dict[str, Any]:
    """Train the probe on the train split, score it on the val split; returns the figures. `positions`: the probe
    learns an embedding per token index (see AttentiveProbe). `image_size` None: the size the checkpoint was trained
    at (a world model's data.image_size, an encoder's img_size; 64 for pixels)."""
    if target not in TARGETS:
        raise UserError(f"target={target!r}: expected one of {', '.join(TARGETS)}")
    torch.manual_seed(seed)
    dev = pick_device(device)
    encode = frame_features(checkpoint, dev, pool)
    config_path = Path(checkpoint) / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    cameras = model_cameras(config) if "family" in config else []  # a world model's camera views
    if image_size is None:
        image_size = int(config.get("data", {}).get("image_size") or config.get("encoder", {}).get("img_size") or 64)
    splits = {}
    for split in ("train", "val"):
        ds = ClipDataset(data_root, split=split, windows=Windows(history=1, future=0),
                         transform=FrameTransform(image_size=image_size), cameras=cameras or None)
        if len(ds) == 0:
            raise ValueError(f"{data_root} has no {split} frames; index it with a validation share (datasets.index)")
        splits[split] = encode_split(encode, ds, batch_size, dev, max_frames, progress, target)
    (x_train, y_train, _), (x_val, y_val, val_episodes) = splits["train"], splits["val"]
    mean, std = y_train.mean(0), y_train.std(0).clamp_min(1e-6)
    probe = AttentiveProbe(x_train.shape[-1], 3, tokens=x_train.shape[1] if positions else 0).to(dev)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(steps), desc="probe", unit="step", disable=not progress):
        idx = torch.randint(0, len(x_train), (batch_size,), generator=gen)
        pred = probe(x_train[idx].to(dev))
        loss = nn.functional.mse_loss(pred, ((y_train[idx] - mean) / std).to(dev))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    probe.eval()
    with torch.no_grad():
        pred = torch.cat([probe(x_val[i : i + 256].to(dev)).cpu() for i in range(0, len(x_val), 256)]) * std + mean
    err = pred - y_val
    baseline = y_val - mean
    r2 = 1.0 - (err**2).sum(0) / ((y_val - y_val.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    return {
        "checkpoint": str(checkpoint), "data_root": str(data_root),
        "target": target, "pool": pool, "positions": bool(positions), "tokens_per_frame": int(x_train.shape[1]),
        "val_rmse_m": float(err.pow(2).sum(1).mean().sqrt()),
        # the typical frame's error: the RMSE is dominated by the few frames where the object left the view
        "val_median_m": float(err.norm(dim=1).median()), "baseline_median_m": float(baseline.norm(dim=1).median()),
        "baseline_rmse_m": float(baseline.pow(2).sum(1).mean().sqrt()),
        "val_r2_xyz": [round(float(v), 4) for v in r2],
        "train_frames": len(x_train), "val_frames": len(x_val), "steps": steps,
        **nearest_neighbour_error(x_val, y_val, val_episodes, seed=seed),
    }


def main(cfg: Any) -> None:
    result = run_probe(cfg.checkpoint, cfg.data_root, cfg.image_size, cfg.steps, cfg.batch_size, cfg.lr,
                       cfg.weight_decay, cfg.max_frames, cfg.seed, cfg.device, cfg.progress, cfg.target,
                       cfg.pool, cfg.positions)
    print(json.dumps(result))


if __name__ == "__main__":
    from common.cli import run

    run(main, "probe", positional=("checkpoint", "data_root"))
