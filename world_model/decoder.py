"""A pixel decoder on frozen latents, for looking only: `python world_model/decoder.py checkpoint=CKPT data_root=DIR`.

DINO-WM and jepa-wms train a small decoder from their frozen latents back to pixels to show what a rollout
imagines; this is the same tool for our world models. It never trains into the world model and planning never
reads it: the world model's encoder is frozen, its frame latents (B, N, D) — the tokens the planner compares —
are encoded once, and a small convolutional decoder learns to map them to the frame (mean squared error on
pixels in [0, 1]). What it cannot draw, the latent does not hold (a cube missing from the decoded frame is a
cube the planner cannot see). It is saved beside the model as `<checkpoint>/decoder` (safetensors + config.json),
where `cem_goal.py` / `evaluate.py` find it: their episode videos then show the imagined frames next to reality.
With several camera views the decoder draws the first view from all the frame's tokens.
"""

from __future__ import annotations

if __name__ == "__main__":  # --help, typos and missing arguments are answered before the heavy imports below
    from common.cli import preflight

    preflight("decoder", positional=("checkpoint", "data_root"))

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file
from tqdm import tqdm

from common.device import pick_device
from common.errors import UserError
from datasets.clips import ClipDataset, FrameTransform, Windows
from world_model.checkpoints import save_checkpoint
from world_model.models import load_world_model, model_cameras
from world_model.probe import encode_paired

DECODER_FOLDER = "decoder"  # inside the world model's checkpoint folder


class LatentDecoder(nn.Module):
    """Frame latents (B, N, D) -> RGB (B, 3, S, S) in [0, 1]: the tokens flattened through a linear map to an
    (S/16)² feature map, then four ×2 upsampling conv blocks."""

    def __init__(self, tokens: int, dim: int, image_size: int = 64, width: int = 64):
        super().__init__()
        if image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16 (four x2 upsamplings), got {image_size}")
        self.tokens, self.dim, self.image_size, self.width = tokens, dim, image_size, width
        self.base = image_size // 16
        channels = [4 * width, 2 * width, 2 * width, width, width]
        self.norm = nn.LayerNorm(dim)
        self.project = nn.Linear(tokens * dim, channels[0] * self.base**2)
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1),
                       nn.GroupNorm(8, c_out), nn.GELU()]
        self.up = nn.Sequential(*blocks, nn.Conv2d(channels[-1], 3, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[-2:] != (self.tokens, self.dim):
            raise ValueError(f"decoder expects latents (..., {self.tokens}, {self.dim}), got {tuple(z.shape)}")
        lead = z.shape[:-2]
        x = self.project(self.norm(z.reshape(-1, self.tokens, self.dim)).flatten(1))
        x = self.up(x.view(-1, 4 * self.width, self.base, self.base))
        return torch.sigmoid(x).view(*lead, 3, self.image_size, self.image_size)

    def settings(self) -> dict[str, int]:
        return {"tokens": self.tokens, "dim": self.dim, "image_size": self.image_size, "width": self.width}

    @torch.no_grad()
    def images(self, z: torch.Tensor) -> np.ndarray:
        """Latents (..., N, D) -> uint8 images (..., S, S, 3), as the videos show them."""
        pixels = self(z.float()).mul(255).round().clamp(0, 255).to(torch.uint8)
        return pixels.movedim(-3, -1).cpu().numpy()


def load_decoder(checkpoint: str | Path, device: torch.device | str = "cpu") -> LatentDecoder | None:
    """The decoder saved beside a world model (`<checkpoint>/decoder`), or None when it has none."""
    folder = Path(checkpoint) / DECODER_FOLDER
    if not (folder / "config.json").exists():
        return None
    config = json.loads((folder / "config.json").read_text())
    decoder = LatentDecoder(**config["decoder"])
    decoder.load_state_dict(load_file(folder / "model.safetensors"))
    return decoder.to(device).eval()


def first_view(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The frames (B, 3, H, W) uint8 a decoder learns to draw: a single-frame batch's first camera view."""
    pixels = batch["frames"]
    return pixels[:, 0, 0] if pixels.dim() == 6 else pixels[:, 0]


def train_decoder(checkpoint: str, data_root: str, out: str | None = None, steps: int = 2000, batch_size: int = 64,
                  lr: float = 2e-3, width: int = 64, max_frames: int | None = 8000, seed: int = 0,
                  device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train a decoder on the train split's frames, score it on the val split, save it; returns the figures."""
    if not (Path(checkpoint) / "config.json").exists():
        raise UserError(f"{checkpoint}: not a world-model checkpoint folder (no config.json)")
    config = json.loads((Path(checkpoint) / "config.json").read_text())
    if "family" not in config:
        raise UserError(f"{checkpoint}/config.json: no 'family': the decoder reads a trained world model "
                        "(world_model/train.py), not a pretrained encoder")
    torch.manual_seed(seed)
    dev = pick_device(device)
    model = load_world_model(checkpoint, dev)[0].eval()
    image_size = int(config.get("data", {}).get("image_size", 64))
    cameras = model_cameras(config) or None
    splits = {}
    for split in ("train", "val"):
        ds = ClipDataset(data_root, split=split, windows=Windows(history=1, future=0),
                         transform=FrameTransform(image_size=image_size), cameras=cameras)
        if len(ds) == 0:
            raise UserError(f"{data_root} has no {split} frames; index it with a validation share (datasets.index)")
        splits[split] = encode_paired(model.encode, ds, batch_size, dev, max_frames, progress, first_view)
    (z_train, x_train), (z_val, x_val) = splits["train"], splits["val"]
    decoder = LatentDecoder(z_train.shape[1], z_train.shape[2], image_size, width).to(dev)
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(range(steps), desc="decoder", unit="step", disable=not progress)
    for step in bar:
        idx = torch.randint(0, len(z_train), (batch_size,), generator=gen)
        loss = nn.functional.mse_loss(decoder(z_train[idx].to(dev)), x_train[idx].to(dev).float() / 255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0:
            bar.set_postfix(mse=f"{loss.item():.4f}")
    decoder.eval()
    with torch.no_grad():
        mse = torch.cat([(decoder(z_val[i : i + 256].to(dev)).cpu() - x_val[i : i + 256].float() / 255).pow(2)
                         .flatten(1).mean(1) for i in range(0, len(z_val), 256)])
    # the floor to beat: every val frame drawn as the mean training frame
    mean_frame = x_train.float().mean(0) / 255
    baseline = (x_val.float() / 255 - mean_frame).pow(2).flatten(1).mean(1)
    result = {"val_mse": float(mse.mean()), "val_psnr_db": float(-10 * torch.log10(mse.mean())),
              "mean_frame_mse": float(baseline.mean()), "train_frames": len(z_train), "val_frames": len(z_val),
              "steps": steps, "tokens": int(z_train.shape[1]), "dim": int(z_train.shape[2])}
    folder = Path(out) if out else Path(checkpoint) / DECODER_FOLDER
    save_checkpoint(folder, decoder, {"decoder": decoder.settings(), "world_model": str(checkpoint),
                                      "data_root": str(data_root), **result})
    result["out"] = str(folder)
    return result


def main(cfg: Any) -> None:
    result = train_decoder(cfg.checkpoint, cfg.data_root, cfg.out, cfg.steps, cfg.batch_size, cfg.lr, cfg.width,
                           cfg.max_frames, cfg.seed, cfg.device, cfg.progress)
    print(json.dumps(result))
    print(f"decoder: val PSNR {result['val_psnr_db']:.1f} dB (MSE {result['val_mse']:.4f}, mean frame "
          f"{result['mean_frame_mse']:.4f}) -> {result['out']}")


if __name__ == "__main__":
    from common.cli import run

    run(main, "decoder", positional=("checkpoint", "data_root"))
