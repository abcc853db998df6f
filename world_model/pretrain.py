"""V-JEPA pretraining of the video encoder: `python world_model/pretrain.py data.root=DIR`.

Masked latent prediction, as in the V-JEPA paper: each clip gets two 3D multi-block
masks (short- and long-range); the context encoder sees only the visible tokens; a
narrow predictor fills learnable mask tokens at the target positions; the loss is the
L1 distance to the layer-normed output of an EMA target encoder that sees the whole
clip, computed once per clip and shared by both masks. AdamW with V-JEPA's learning
rate, weight decay and EMA schedules (stretched by 1.25). `num_frames=1` is the image
(I-JEPA) mode: 2D multi-block masks on single frames, same code path.

The later recipes of the seed `000_57dac4a534ebac6b.txt` ("Training schedules") are settings
(presets in `configs/experiment/`): `optim.schedule=vjepa2` is V-JEPA 2's warm-up -> constant ->
cool-down learning rate with fixed EMA and weight decay, boundaries as fractions of the run;
`progressive.switch_at` is its progressive resolution (few frames at low resolution, then more
frames at a higher resolution from that fraction of the run on); `images.batch_size` adds
V-JEPA 2.1's joint image training (a separate image loader of single frames from the same
episodes, through the same encoder, its loss added to the video loss in one step);
`progressive.distill` has a frozen low-resolution teacher (the target encoder at the switch,
fed the clip at the first phase's resolution) give the high-resolution student its targets.

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

from common.config import ConfigError, build_config
from common.device import pick_device
from datasets.clips import ClipDataset, FrameTransform, Windows
from datasets.validate import require_episodes
from world_model.checkpoints import save_checkpoint
from world_model.encoder import EncoderConfig, VideoViT, preprocess
from world_model.jepa_predictor import MaskedPredictor, PredictorConfig
from world_model.masks import VJEPA_MASKS, MaskSpec, batch_masks
from world_model.schedules import cosine_increase, linear, warmup_constant_cooldown, warmup_cosine
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
    schedule: str = "vjepa"  # vjepa | vjepa2 (warm-up, constant, cool-down; fixed weight decay and EMA)
    warmup_fraction: float = 12 / 252  # vjepa2: V-JEPA 2's 12K warm-up of 252K iterations
    cooldown_fraction: float = 12 / 252  # vjepa2: its 12K cool-down
    cooldown_lr: float | None = None  # vjepa2: learning rate the cool-down starts from (None: lr)

    def at(self, step: int) -> tuple[float, float, float]:
        """(learning rate, weight decay, EMA momentum) at `step` of the chosen recipe; vjepa2 holds the weight
        decay at `weight_decay` and the momentum at `ema[0]` (the seed: "fixed (not ramped)")."""
        if self.schedule == "vjepa2":
            lr = warmup_constant_cooldown(step, self.steps, self.warmup_fraction, self.cooldown_fraction,
                                          self.start_lr, self.lr, self.final_lr, self.cooldown_lr)
            return lr, self.weight_decay, self.ema[0]
        return (warmup_cosine(step, self.steps, self.warmup, self.start_lr, self.lr, self.final_lr, self.stretch),
                cosine_increase(step, self.steps, self.weight_decay, self.final_weight_decay, self.stretch),
                linear(step, self.steps, self.ema[0], self.ema[1], self.stretch))


@dataclass
class ProgressiveConfig:
    """V-JEPA 2's progressive resolution (seed: 16 frames 256x256 -> 64 frames 384x384 in the cool-down)."""

    switch_at: float | None = None  # fraction of optim.steps from which clips use the settings below; None: never
    num_frames: int = 4  # frames per clip after the switch
    image_size: int = 64  # frame size after the switch
    distill: bool = False  # after the switch, targets from a frozen copy of the target encoder at low resolution


@dataclass
class ImagesConfig:
    """V-JEPA 2.1's joint image + video training (seed: separate image/video workers, gradient aggregation)."""

    batch_size: int = 0  # single frames per step from a separate loader; 0: video only
    weight: float = 1.0  # the image loss's weight in the step's loss


@dataclass
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(size="tiny", patch_size=8))
    predictor: PredictorConfig = field(default_factory=lambda: PredictorConfig(embed_dim=96, depth=4, num_heads=4))
    optim: OptimConfig = field(default_factory=OptimConfig)
    masks: list[MaskSpec] = field(default_factory=lambda: list(VJEPA_MASKS))
    num_frames: int = 4
    progressive: ProgressiveConfig = field(default_factory=ProgressiveConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
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
    """Context encoder, EMA target encoder and predictor, with the masked-prediction loss; with `teacher`, a
    frozen encoder that gives low-resolution targets (V-JEPA 2.1's distillation)."""

    def __init__(self, encoder: EncoderConfig, predictor: PredictorConfig, teacher: bool = False):
        super().__init__()
        self.encoder = VideoViT(encoder)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.predictor = MaskedPredictor(self.encoder.embed_dim, predictor)
        self.teacher = copy.deepcopy(self.encoder).requires_grad_(False) if teacher else None

    @torch.no_grad()
    def targets(self, video: torch.Tensor, teacher_size: int | None = None) -> torch.Tensor:
        """Layer-normed target tokens of a (B, C, T, H, W) clip: the EMA target encoder's, or with `teacher_size`
        the teacher's on the clip resized to that size, interpolated to the clip's token grid."""
        if teacher_size is None:
            return F.layer_norm(self.target_encoder(video), (self.encoder.embed_dim,))
        b, c, t = video.shape[:3]
        low = F.interpolate(video.transpose(1, 2).flatten(0, 1), size=(teacher_size, teacher_size), mode="bilinear",
                            antialias=True, align_corners=False).unflatten(0, (b, t)).transpose(1, 2)
        features = self.teacher(low)  # (B, N_low, D)
        maps = features.transpose(1, 2).unflatten(2, self.teacher.grid(low))  # (B, D, t, h, w)
        maps = F.interpolate(maps, size=self.encoder.grid(video), mode="trilinear", align_corners=False)
        return F.layer_norm(maps.flatten(2).transpose(1, 2), (self.encoder.embed_dim,))

    def loss(self, video: torch.Tensor, masks: list[tuple[torch.Tensor, torch.Tensor]],
             teacher_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(L1 loss averaged over the masks, layer-normed target tokens) for a (B, C, T, H, W) clip."""
        grid = self.encoder.grid(video)
        target = self.targets(video, teacher_size)
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


def check(cfg: PretrainConfig) -> int | None:
    """Refuse inconsistent recipe settings in one line before anything slow; returns the switch step (or None)."""
    if cfg.optim.schedule not in ("vjepa", "vjepa2"):
        raise ConfigError(f"optim.schedule: expected vjepa or vjepa2, got {cfg.optim.schedule!r}")
    p = cfg.progressive
    if p.switch_at is None:
        if p.distill:
            raise ConfigError("progressive.distill: needs progressive.switch_at (the teacher is the low-resolution "
                              "phase's target encoder), got switch_at=null")
        return None
    if not 0.0 < p.switch_at < 1.0:
        raise ConfigError(f"progressive.switch_at: expected a fraction of the run in (0, 1), got {p.switch_at}")
    return int(round(p.switch_at * cfg.optim.steps))


def _phase(cfg: PretrainConfig, step: int, switch: int | None) -> tuple[int, int, int]:
    """(phase, frames per clip, frame size) at `step`: phase 1 from the progressive switch on."""
    if switch is not None and step >= switch:
        return 1, cfg.progressive.num_frames, cfg.progressive.image_size
    return 0, cfg.num_frames, cfg.data.image_size


class _Batches:
    """The phase's video loader and, for joint training, its image loader, started where `step` left them.

    Each loader has its own ResumableSampler, positioned by the steps taken in this phase, so a resume (before,
    at or after the progressive switch) draws the same clips as a straight run.
    """

    def __init__(self, cfg: PretrainConfig, step: int, switch: int | None):
        d, o = cfg.data, cfg.optim
        phase, frames, size = _phase(cfg, step, switch)
        self.phase, self.frames, self.size = phase, frames, size
        start = step - (switch if phase else 0)
        transform = FrameTransform(size, d.crop_scale, d.crop_ratio)

        def loader(num_frames: int, batch_size: int, seed: int) -> Any:
            dataset = ClipDataset(d.root, split=d.split, camera=d.camera, transform=transform,
                                  windows=Windows(history=num_frames, future=0, fps=d.fps, frameskip=d.frameskip))
            # the loader draws its worker seeds from its own generator, so building it never shifts the global RNG
            return iter(DataLoader(dataset, batch_size=batch_size, num_workers=d.workers, drop_last=True,
                                   sampler=ResumableSampler(len(dataset), seed, start * batch_size),
                                   persistent_workers=d.workers > 0,
                                   generator=torch.Generator().manual_seed(cfg.seed + step)))

        self.video = loader(frames, o.batch_size, cfg.seed + 1000 * phase)
        self.images = loader(1, cfg.images.batch_size, cfg.seed + 1000 * phase + 500) if cfg.images.batch_size else None


def _clip(batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    frames = batch["frames"].to(device, non_blocking=True)  # (B, T, 3, H, W) uint8
    return preprocess(frames).permute(0, 2, 1, 3, 4)  # (B, 3, T, H, W)


def pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    """Run (or resume) a pretraining run; returns a summary with the loss history. SIGINT/SIGTERM stop it after
    the current step with a checkpoint (`summary["interrupted"]` names the signal)."""
    switch = check(cfg)
    require_episodes(cfg.data.root)
    out = Path(cfg.out)
    last = out / "checkpoints" / "last"
    check_start(last, cfg.resume, cfg.overwrite)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    o = cfg.optim

    model = VJEPA(cfg.encoder, cfg.predictor, teacher=cfg.progressive.distill).to(device)
    optimizer = torch.optim.AdamW(param_groups(model), lr=o.lr, weight_decay=o.weight_decay)
    step, history = resume(last, model, optimizer, rng, device) if cfg.resume else (0, [])
    parts: dict[str, list[float]] = {"video": [], "image": []}
    if cfg.resume:
        parts = torch.load(last / "training_state.pt", map_location="cpu", weights_only=False).get("parts", parts)
    writer = None
    try:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    except ImportError:  # pragma: no cover - tensorboard is a dependency
        warnings.warn("tensorboard is not installed: no TensorBoard scalars", RuntimeWarning, stacklevel=2)

    batches: _Batches | None = None

    def save() -> None:
        frames, size = (batches.frames, batches.size) if batches else _phase(cfg, step, switch)[1:]
        config = {"encoder": {**cfg.encoder.to_dict(), "img_size": size}, "predictor": cfg.predictor.to_dict(),
                  "encoder_prefix": "target_encoder.", "num_frames": frames, "pretrain": _to_jsonable(cfg)}
        save_checkpoint(last, model, config, {"optimizer": optimizer.state_dict(), "step": step, "history": history,
                                              "parts": parts, "rng": rng_state(rng)})

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    bar = tqdm(total=o.steps, initial=step, desc="pretrain", unit="step", disable=not cfg.progress)
    start_time, clips = time.perf_counter(), 0
    target_std = float("nan")
    end = min(o.steps, cfg.stop_at or o.steps)
    with GracefulStop() as stop:
        while step < end:
            if batches is None or step == switch:
                batches = _Batches(cfg, step, switch)
                if step == switch and model.teacher is not None:  # the teacher: the low-resolution target encoder
                    model.teacher.load_state_dict(model.target_encoder.state_dict())
            teacher_size = cfg.data.image_size if batches.phase and model.teacher is not None else None
            video = _clip(next(batches.video), device)
            lr, wd, ema = o.at(step)
            for group in optimizer.param_groups:
                group["lr"], group["weight_decay"] = lr, wd * group["wd_scale"]
            grid = model.encoder.grid(video)
            masks = [tuple(t.to(device) for t in batch_masks(video.shape[0], grid, spec, rng)) for spec in cfg.masks]
            with autocast:
                loss, target = model.loss(video, masks, teacher_size)
                parts["video"].append(loss.item())
                if batches.images is not None:  # V-JEPA 2.1: both losses aggregated into one step
                    images = _clip(next(batches.images), device)
                    grid = model.encoder.grid(images)
                    image_masks = [tuple(t.to(device) for t in batch_masks(images.shape[0], grid, spec, rng))
                                   for spec in cfg.masks]
                    image_loss, _ = model.loss(images, image_masks, teacher_size)
                    parts["image"].append(image_loss.item())
                    loss = loss + cfg.images.weight * image_loss
            optimizer_step(loss, optimizer, model.parameters(), o.grad_clip, step, last)
            model.update_target(ema)
            step += 1
            clips += video.shape[0]
            history.append(loss.item())
            if step % cfg.log_every == 0 or step == o.steps:
                target_std = float(target.float().flatten(0, 1).std(0).mean())
                rate = clips / (time.perf_counter() - start_time)
                bar.set_postfix(loss=f"{loss.item():.4f}", std=f"{target_std:.3f}", clips_s=f"{rate:.1f}")
                if writer:
                    scalars = [("loss", loss.item()), ("lr", lr), ("weight_decay", wd), ("ema", ema),
                               ("num_frames", batches.frames), ("image_size", batches.size),
                               ("target_feature_std", target_std), ("clips_per_s", rate)]
                    scalars += [(f"{name}_loss", values[-1]) for name, values in parts.items() if values]
                    for name, value in scalars:
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
            "target_feature_std": target_std, "checkpoint": str(last), "history": history, "parts": parts,
            "clips_per_s": clips / max(time.perf_counter() - start_time, 1e-9)}


def main(cfg: Any) -> None:
    config = build_config(PretrainConfig, cfg)
    summary = pretrain(config)
    if summary["interrupted"]:
        exit_stopped(summary, config.optim.steps)
    image = summary["parts"]["image"]
    joint = f" (image loss {np.mean(image[:max(len(image) // 10, 1)]):.4f} -> {np.mean(image[-max(len(image) // 10, 1):]):.4f})" if image else ""
    print(f"pretrained {summary['steps']} steps: loss {summary['loss_start']:.4f} -> {summary['loss_end']:.4f}{joint}, "
          f"target feature std {summary['target_feature_std']:.3f}, {summary['clips_per_s']:.1f} clips/s, "
          f"checkpoint {summary['checkpoint']}")


if __name__ == "__main__":
    from common.cli import run

    run(main, "pretrain")
