"""Train an action-conditioned world model: `python world_model/train.py model=vjepa_ac|lewm data.root=DIR`.

- `model=vjepa_ac`: frozen V-JEPA encoder (features from the cache when a valid one exists) + AdaLN
  AC predictor; loss = L1 teacher forcing over the clip + L1 rollout over `rollout_steps` from the
  first `history` frames, on layer-normed targets.
- `model=lewm`: LeWorldModel, encoder and predictor trained end to end; loss = next-embedding MSE +
  lambda * SIGReg (no EMA, no stop-gradient).
- either family, `model.readout_weight > 0`: a linear `StateReadout` (latent -> end-effector xyz by
  default) trained on the encoded and the predicted latents, added to the loss with that weight; it
  ships in the checkpoint and gives planners a cost in metres (`mpc.readout_weight`).

AdamW with a warm-up-constant-decay schedule, gradient clipping, bf16 autocast on CUDA, validation loss on
held-out episodes each epoch, progress bar, TensorBoard, atomic checkpoints (`resume=true` continues), and a
non-finite loss stops the run naming the step with the last good checkpoint intact.
`torchrun --nproc_per_node=N world_model/train.py ...` runs DDP (gloo on CPU, NCCL on CUDA); only rank 0
writes checkpoints and logs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from datasets.clips import ClipDataset
from world_model.ac_predictor import ACPredictor, ACPredictorConfig
from world_model.checkpoints import load_encoder, save_checkpoint
from world_model.feature_cache import CachedFeatureClips, CacheMismatchError, FeatureCache, Preprocessing
from world_model.models import (  # noqa: F401 - re-exported
    JEPAWorldModel,
    StateReadout,
    WorldModel,
    build_model,
    load_world_model,
)
from world_model.schedules import warmup_constant_decay
from world_model.sigreg import sigreg
from world_model.train_utils import (
    ResumableSampler,
    loss_summary,
    optimizer_step,
    param_groups,
    resume,
    rng_state,
)


def _setup_distributed() -> tuple[int, int, torch.device | None]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, None
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank = dist.get_rank()
    device = None
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    return rank, world, device


def _clips(cfg: Any, split: str, frames: int, load_frames: bool = True) -> ClipDataset:
    d = cfg.data
    return ClipDataset(d.root, split=split, history=frames, future=0, fps=d.fps, frameskip=d.frameskip,
                       camera=d.camera, image_size=d.image_size, action_mode=d.action_mode,
                       recorded_actions=list(d.recorded_actions), recorded_reduce=d.recorded_reduce,
                       val_fraction=d.val_fraction, load_frames=load_frames)


def _model_and_config(cfg: Any, action_dim: int) -> tuple[WorldModel, dict[str, Any]]:
    m = cfg.model
    predictor = {**dict(m.predictor), "action_dim": action_dim}
    readout = {"dims": [int(d) for d in m.readout_dims]} if m.get("readout_weight", 0.0) > 0 else None
    if m.family == "vjepa_ac":
        encoder_path = Path(m.encoder_checkpoint)
        enc_config = json.loads((encoder_path / "config.json").read_text())["encoder"]
        config = {"family": "vjepa_ac", "encoder_checkpoint": str(encoder_path), "encoder_config": enc_config,
                  "predictor": predictor, "history": m.history, "pool": m.pool}
        encoder = load_encoder(encoder_path)
        model = JEPAWorldModel(encoder, ACPredictor(encoder.embed_dim, ACPredictorConfig(**predictor)), m.history, m.pool)
    else:
        config = {"family": "lewm", "encoder": dict(m.encoder), "predictor": predictor, "history": m.history}
        model = build_model(config)
    if readout:
        config["readout"] = readout
        model.readout = StateReadout(model.encoder.embed_dim, readout["dims"])
    d = cfg.data
    config["data"] = {"image_size": d.image_size, "camera": d.camera, "fps": d.fps, "frameskip": d.frameskip,
                      "action_mode": d.action_mode, "recorded_actions": list(d.recorded_actions),
                      "recorded_reduce": d.recorded_reduce}
    return model, config


def _latents(model: WorldModel, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    if "features" in batch:
        return batch["features"].to(device)
    return model.encode(batch["frames"].to(device))


def compute_loss(model: WorldModel, batch: dict[str, torch.Tensor], cfg: Any, device: torch.device,
                 step: int, distributed: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
    """The family's training loss on one batch, and its parts for logging (`distributed=False`: no collectives)."""
    predictor = model.predictor
    actions = batch["actions"].to(device)
    states = batch["states"].to(device) if model.uses_states else None
    h = cfg.model.history
    if cfg.model.family == "vjepa_ac":
        with torch.no_grad():
            z = _latents(model, batch, device)  # layer-normed frozen features (B, T, N, D)
        t = z.shape[1]
        pred = predictor(z[:, :-1], actions[:, : t - 1], None if states is None else states[:, :-1])
        teacher = (pred - z[:, 1:]).abs().mean()
        # autoregressive rollout from the first `history` frames
        z_ctx, s_ctx = z[:, :h], None if states is None else states[:, :h]
        a_ctx = actions[:, : h - 1]
        outs = []
        for k in range(cfg.model.rollout_steps):
            a_in = torch.cat([a_ctx, actions[:, h - 1 + k : h + k]], dim=1)[:, -h:]
            s_in = None if s_ctx is None else s_ctx[:, -h:]
            z_next = predictor(z_ctx[:, -h:], a_in, s_in)[:, -1:]
            outs.append(z_next)
            z_ctx = torch.cat([z_ctx, z_next], dim=1)
            a_ctx = torch.cat([a_ctx, actions[:, h - 1 + k : h + k]], dim=1)
            if s_ctx is not None:
                s_ctx = torch.cat([s_ctx, states[:, h + k : h + k + 1]], dim=1)
        rollout = (torch.cat(outs, dim=1) - z[:, h : h + cfg.model.rollout_steps]).abs().mean()
        loss, parts = teacher + rollout, {"teacher_forcing": teacher.item(), "rollout": rollout.item()}
    else:
        z = _latents(model, batch, device)  # (B, h + 1, 1, D), with gradients
        pred = predictor(z[:, :-1], actions, None if states is None else states[:, :-1])
        mse = F.mse_loss(pred, z[:, 1:])
        reg = sigreg(z[:, :, 0], num_projections=cfg.model.sigreg_projections, seed=cfg.seed * 1_000_003 + step,
                     distributed=distributed)
        loss, parts = mse + cfg.model.sigreg_lambda * reg, {"mse": mse.item(), "sigreg": reg.item()}
    if model.readout is not None:  # position readout of the observed and of the predicted (teacher-forced) frames
        all_states = batch["states"].to(device)
        readout = model.readout.loss(z, all_states) + model.readout.loss(pred, all_states[:, 1 : 1 + pred.shape[1]])
        loss = loss + cfg.model.readout_weight * readout
        parts["readout"] = readout.item()
    return loss, parts


class TrainStep(torch.nn.Module):
    """The loss as a module, so DDP's forward (and its gradient hooks) wraps the whole computation."""

    def __init__(self, model: WorldModel, cfg: Any, device: torch.device):
        super().__init__()
        self.model, self.cfg, self.device = model, cfg, device

    def forward(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return compute_loss(self.model, batch, self.cfg, self.device, step)


def train(cfg: Any) -> dict[str, Any]:
    """Run (or resume) training; returns a summary (rank 0's view)."""
    rank, world, dist_device = _setup_distributed()
    device = dist_device or torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(cfg.seed + rank)
    rng = np.random.default_rng(cfg.seed + rank)
    m, o = cfg.model, cfg.optim
    frames = m.history + (m.rollout_steps if m.family == "vjepa_ac" else 1)
    use_cache = m.family == "vjepa_ac" and m.use_cache
    cache = None
    if use_cache:
        try:
            cache = FeatureCache(Path(cfg.data.root) / "features", m.encoder_checkpoint,
                                 Preprocessing(cfg.data.camera, cfg.data.image_size, m.pool))
        except (FileNotFoundError, CacheMismatchError) as err:
            if rank == 0:
                print(f"no valid feature cache, encoding pixels on the fly: {err}")
    train_clips = _clips(cfg, "train", frames, load_frames=cache is None)
    val_clips = _clips(cfg, "val", frames, load_frames=cache is None)
    train_set = CachedFeatureClips(train_clips, cache) if cache else train_clips
    val_set = CachedFeatureClips(val_clips, cache) if cache else val_clips
    model, config = _model_and_config(cfg, train_clips.action_dim)
    if model.readout is not None:  # normalise the readout's targets with the training split's statistics
        mean, std = train_clips.state_statistics()
        dims = model.readout.dims
        model.readout.set_normalisation(torch.from_numpy(mean[dims]), torch.from_numpy(std[dims]))
    model.to(device)
    trainable: torch.nn.Module = model
    if m.family == "vjepa_ac":  # the frozen encoder never trains
        trainable = torch.nn.ModuleList([model.predictor] + ([model.readout] if model.readout is not None else []))
    step_fn = TrainStep(model, cfg, device)
    if world > 1:  # the frozen encoder has no gradients, so DDP only synchronises what trains
        step_fn = DistributedDataParallel(step_fn, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(param_groups(trainable), lr=o.lr, weight_decay=o.weight_decay)
    out = Path(cfg.out)
    last = out / "checkpoints" / "last"
    step, history = resume(last, model, optimizer, rng, device) if cfg.resume and last.exists() else (0, [])
    sampler = ResumableSampler(len(train_set), cfg.seed, step * o.batch_size * world, rank, world)
    loader = DataLoader(train_set, batch_size=o.batch_size, sampler=sampler, num_workers=cfg.data.workers,
                        drop_last=True, generator=torch.Generator().manual_seed(cfg.seed + step))
    steps_per_epoch = max(len(train_set) // (o.batch_size * world), 1)
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))

    def save() -> None:
        if rank == 0:
            save_checkpoint(last, model, config, {"optimizer": optimizer.state_dict(), "step": step,
                                                  "history": history, "rng": rng_state(rng)})

    def validate() -> float | None:
        if len(val_set) == 0 or cfg.val_batches <= 0:
            return None
        model.eval()
        losses = []
        with torch.no_grad():
            vloader = DataLoader(val_set, batch_size=o.batch_size, shuffle=False)
            for i, batch in enumerate(vloader):
                if i >= cfg.val_batches:
                    break
                losses.append(compute_loss(model, batch, cfg, device, step, distributed=False)[0].item())
        model.train()
        return float(np.mean(losses))

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    end = min(o.steps, cfg.stop_at or o.steps)
    bar = tqdm(total=o.steps, initial=step, desc=f"train {m.family}", unit="step", disable=not cfg.progress or rank != 0)
    batches = iter(loader)
    model.train()
    start_time, clips, val_loss = time.perf_counter(), 0, None
    while step < end:
        batch = next(batches)
        lr = warmup_constant_decay(step, o.steps, o.warmup, o.decay, o.start_lr, o.lr, o.final_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast:
            loss, parts = step_fn(batch, step)
        optimizer_step(loss, optimizer, trainable.parameters(), o.grad_clip, step, last)
        step += 1
        clips += o.batch_size * world
        history.append(loss.item())
        if rank == 0 and (step % cfg.log_every == 0 or step == end):
            rate = clips / (time.perf_counter() - start_time)
            bar.set_postfix(loss=f"{loss.item():.4f}", clips_s=f"{rate:.1f}")
            for name, value in {"loss": loss.item(), "lr": lr, "clips_per_s": rate, **parts}.items():
                writer.add_scalar(f"train/{name}", value, step)
        if step % steps_per_epoch == 0 or step == end:
            if rank == 0:
                val_loss = validate()
                if val_loss is not None:
                    writer.add_scalar("val/loss", val_loss, step)
            if world > 1:
                dist.barrier()
        bar.update()
        if step % cfg.checkpoint_every == 0 or step == end:
            save()
    bar.close()
    if writer:
        writer.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"steps": step, **loss_summary(history),
            "val_loss": val_loss, "checkpoint": str(last), "history": history, "rank": rank, "world_size": world,
            "clips_per_s": clips / max(time.perf_counter() - start_time, 1e-9), "feature_cache": cache is not None}


def main(cfg: Any) -> None:
    summary = train(cfg)
    if summary["rank"] == 0:
        print(f"trained {cfg.model.family} for {summary['steps']} steps on {summary['world_size']} process(es): "
              f"loss {summary['loss_start']:.4f} -> {summary['loss_end']:.4f}, val {summary['val_loss']}, "
              f"{summary['clips_per_s']:.1f} clips/s, checkpoint {summary['checkpoint']}")


if __name__ == "__main__":
    from common.cli import run

    run(main, "train")
