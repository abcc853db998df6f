"""V-JEPA pretraining of the video encoder: `python world_model/pretrain.py data.root=DIR`.

Masked latent prediction, as in the V-JEPA paper: each clip gets two 3D multi-block
masks (short- and long-range); the context encoder sees only the visible tokens; a
narrow predictor fills learnable mask tokens at the target positions; the loss is the
L1 distance to the layer-normed output of an EMA target encoder that sees the whole
clip, computed once per clip and shared by both masks. AdamW with V-JEPA's learning
rate, weight decay and EMA schedules (stretched by 1.25). `num_frames=1` is the image
(I-JEPA) mode: 2D multi-block masks on single frames, same code path.

Checkpoints (`<out>/checkpoints/last`) are folders of safetensors + config.json +
training state, written atomically; `resume=true` continues exactly (bit-identical with
`data.workers=0`). The collapse monitor logs the per-dimension standard deviation of the
target features and warns when it nears zero.
"""

from __future__ import annotations

if __name__ == "__main__":  # --help, typos and missing arguments are answered before the heavy imports below
    from common.cli import preflight

    preflight("pretrain")

import copy
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from common.config import build_config
from common.device import pick_device
from datasets.clips import ClipDataset, FrameTransform, Windows
from datasets.validate import require_episodes
from world_model.checkpoints import save_checkpoint
from world_model.encoder import EncoderConfig, VideoViT, preprocess
from world_model.jepa_predictor import MaskedPredictor, PredictorConfig
from world_model.masks import VJEPA_MASKS, MaskSpec, batch_masks
from world_model.schedules import cosine_increase, linear, warmup_cosine
from world_model.train_utils import (
    GracefulStop,
    ResumableSampler,
    check_start,
    exit_stopped,
    loss_summary,
    optimizer_step,
    param_groups,
    resume,
    rng_state,
)


@dataclass
class DataConfig:
    root: str = ""
    split: str = "train"
    camera: str | None = None
    fps: float | None = None
    frameskip: int | None = None
    image_size: int = 64
    crop_scale: tuple[float, float] | None = (0.3, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.35)
    workers: int = 0


@dataclass
class OptimConfig:
    steps: int = 1000
    batch_size: int = 32
    start_lr: float = 2e-4
    lr: float = 6.25e-4
    final_lr: float = 1e-6
    warmup: int = 100
    weight_decay: float = 0.04
    final_weight_decay: float = 0.4
    ema: tuple[float, float] = (0.998, 1.0)
    stretch: float = 1.25
    grad_clip: float | None = None


@dataclass
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(size="tiny", patch_size=8))
    predictor: PredictorConfig = field(default_factory=lambda: PredictorConfig(embed_dim=96, depth=4, num_heads=4))
    optim: OptimConfig = field(default_factory=OptimConfig)
    masks: list[MaskSpec] = field(default_factory=lambda: list(VJEPA_MASKS))
    num_frames: int = 4
    out: str = "runs/pretrain"
    seed: int = 0
    device: str | None = None  # default: cuda when available
    resume: bool = False
    overwrite: bool = False  # start over in an `out` that already holds a checkpoint
    stop_at: int | None = None  # stop (with a checkpoint) after this step; the schedules still span optim.steps
    checkpoint_every: int = 500
    log_every: int = 10
    collapse_std: float = 0.01  # warn when the mean per-dimension target std falls below this
    progress: bool = True


class VJEPA(nn.Module):
    """Context encoder, EMA target encoder and predictor, with the masked-prediction loss."""

    def __init__(self, encoder: EncoderConfig, predictor: PredictorConfig):
        super().__init__()
        self.encoder = VideoViT(encoder)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.predictor = MaskedPredictor(self.encoder.embed_dim, predictor)

    def loss(self, video: torch.Tensor, masks: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(L1 loss averaged over the masks, layer-normed target tokens) for a (B, C, T, H, W) clip."""
        grid = self.encoder.grid(video)
        with torch.no_grad():
            target = F.layer_norm(self.target_encoder(video), (self.encoder.embed_dim,))
        total = 0.0
        for context_idx, target_idx in masks:
            context = self.encoder(video, keep=context_idx)
            pred = self.predictor(context, context_idx, target_idx, grid)
            wanted = torch.gather(target, 1, target_idx[..., None].expand(-1, -1, target.shape[-1]))
            total = total + (pred - wanted).abs().mean()
        return total / len(masks), target

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        params_t = list(self.target_encoder.parameters())
        params_c = [p.detach() for p in self.encoder.parameters()]
        torch._foreach_mul_(params_t, momentum)
        torch._foreach_add_(params_t, params_c, alpha=1.0 - momentum)


def _to_jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o)))


def pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    """Run (or resume) a pretraining run; returns a summary with the loss history. SIGINT/SIGTERM stop it after
    the current step with a checkpoint (`summary["interrupted"]` names the signal)."""
    require_episodes(cfg.data.root)
    out = Path(cfg.out)
    last = out / "checkpoints" / "last"
    check_start(last, cfg.resume, cfg.overwrite)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    o = cfg.optim

    d = cfg.data
    dataset = ClipDataset(d.root, split=d.split, camera=d.camera,
                          windows=Windows(history=cfg.num_frames, future=0, fps=d.fps, frameskip=d.frameskip),
                          transform=FrameTransform(d.image_size, d.crop_scale, d.crop_ratio))
    model = VJEPA(cfg.encoder, cfg.predictor).to(device)
    optimizer = torch.optim.AdamW(param_groups(model), lr=o.lr, weight_decay=o.weight_decay)
    step, history = resume(last, model, optimizer, rng, device) if cfg.resume else (0, [])
    # the loader draws its worker seeds from its own generator, so building it never shifts the global RNG
    loader = DataLoader(dataset, batch_size=o.batch_size, sampler=ResumableSampler(len(dataset), cfg.seed, step * o.batch_size),
                        num_workers=cfg.data.workers, drop_last=True, persistent_workers=cfg.data.workers > 0,
                        generator=torch.Generator().manual_seed(cfg.seed + step))
    writer = None
    try:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    except ImportError:  # pragma: no cover - tensorboard is a dependency
        warnings.warn("tensorboard is not installed: no TensorBoard scalars", RuntimeWarning, stacklevel=2)

    def save() -> None:
        config = {"encoder": cfg.encoder.to_dict(), "predictor": cfg.predictor.to_dict(),
                  "encoder_prefix": "target_encoder.", "num_frames": cfg.num_frames, "pretrain": _to_jsonable(cfg)}
        save_checkpoint(last, model, config, {"optimizer": optimizer.state_dict(), "step": step, "history": history,
                                              "rng": rng_state(rng)})

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    bar = tqdm(total=o.steps, initial=step, desc="pretrain", unit="step", disable=not cfg.progress)
    batches = iter(loader)
    start_time, clips = time.perf_counter(), 0
    target_std = float("nan")
    end = min(o.steps, cfg.stop_at or o.steps)
    with GracefulStop() as stop:
        while step < end:
            frames = next(batches)["frames"].to(device, non_blocking=True)  # (B, T, 3, H, W) uint8
            video = preprocess(frames).permute(0, 2, 1, 3, 4)  # (B, 3, T, H, W)
            lr = warmup_cosine(step, o.steps, o.warmup, o.start_lr, o.lr, o.final_lr, o.stretch)
            wd = cosine_increase(step, o.steps, o.weight_decay, o.final_weight_decay, o.stretch)
            for group in optimizer.param_groups:
                group["lr"], group["weight_decay"] = lr, wd * group["wd_scale"]
            grid = model.encoder.grid(video)
            masks = [tuple(t.to(device) for t in batch_masks(video.shape[0], grid, spec, rng)) for spec in cfg.masks]
            with autocast:
                loss, target = model.loss(video, masks)
            optimizer_step(loss, optimizer, model.parameters(), o.grad_clip, step, last)
            model.update_target(linear(step, o.steps, o.ema[0], o.ema[1], o.stretch))
            step += 1
            clips += video.shape[0]
            history.append(loss.item())
            if step % cfg.log_every == 0 or step == o.steps:
                target_std = float(target.float().flatten(0, 1).std(0).mean())
                rate = clips / (time.perf_counter() - start_time)
                bar.set_postfix(loss=f"{loss.item():.4f}", std=f"{target_std:.3f}", clips_s=f"{rate:.1f}")
                if writer:
                    for name, value in (("loss", loss.item()), ("lr", lr), ("weight_decay", wd),
                                        ("target_feature_std", target_std), ("clips_per_s", rate)):
                        writer.add_scalar(f"pretrain/{name}", value, step)
                if target_std < cfg.collapse_std:
                    warnings.warn(f"representation collapse? mean per-dimension target std {target_std:.2e} < "
                                  f"{cfg.collapse_std} at step {step}", RuntimeWarning, stacklevel=2)
            bar.update()
            if stop.requested or step % cfg.checkpoint_every == 0 or step == end:
                save()
            if stop.requested:
                break
    bar.close()
    if writer:
        writer.close()
    return {"steps": step, **loss_summary(history), "interrupted": stop.requested,
            "target_feature_std": target_std, "checkpoint": str(last), "history": history,
            "clips_per_s": clips / max(time.perf_counter() - start_time, 1e-9)}


def main(cfg: Any) -> None:
    config = build_config(PretrainConfig, cfg)
    summary = pretrain(config)
    if summary["interrupted"]:
        exit_stopped(summary, config.optim.steps)
    print(f"pretrained {summary['steps']} steps: loss {summary['loss_start']:.4f} -> {summary['loss_end']:.4f}, "
          f"target feature std {summary['target_feature_std']:.3f}, {summary['clips_per_s']:.1f} clips/s, "
          f"checkpoint {summary['checkpoint']}")


if __name__ == "__main__":
    from common.cli import run

    run(main, "pretrain")
