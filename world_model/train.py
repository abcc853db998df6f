"""Train an action-conditioned world model: `python world_model/train.py model=vjepa_ac|lewm data.root=DIR`.

The family (a `world_model.models.WorldModel` subclass) computes its own loss (`model.loss(batch)`):
- `model=vjepa_ac`: frozen V-JEPA encoder (features from the cache when a valid one exists) + AdaLN
  AC predictor; L1 teacher forcing + L1 rollout on layer-normed targets;
- `model=lewm`: LeWorldModel end to end; next-embedding MSE + lambda * SIGReg;
- either family, `model.readout_weight > 0`: a linear `StateReadout` (latent -> end-effector xyz by
  default) trained on the encoded and the predicted latents; it ships in the checkpoint and gives
  planners a cost in metres (`mpc.readout_weight`).

This loop only steps: AdamW with a warm-up-constant-decay schedule, gradient clipping, bf16 autocast on
CUDA, validation loss on held-out episodes each epoch (or every `val_every` steps), progress bar, TensorBoard,
atomic checkpoints (`resume=true` continues), a wall-clock budget (`max_minutes`: stop after the step that
crosses it, with a checkpoint, resumable), and a non-finite loss stops the run naming the step with the last good
checkpoint intact. `torchrun --nproc_per_node=N world_model/train.py ...` runs DDP (gloo on CPU, NCCL on
CUDA); only rank 0 writes checkpoints and logs. Hydra stops at `main()`: below it, a `TrainConfig`.
"""

from __future__ import annotations

if __name__ == "__main__":  # --help, typos and missing arguments are answered before the heavy imports below
    from common.cli import preflight

    preflight("train")

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from common.cli import command_line
from common.config import build_config, plain
from common.device import pick_device
from common.droid import FRANKA_ACTION_KEYS
from common.seeding import derive_seed
from datasets.clips import ClipActions, ClipDataset, FrameTransform, Windows
from datasets.validate import require_episodes
from world_model.checkpoints import save_checkpoint
from world_model.feature_cache import CachedFeatureClips, CacheMismatchError
from world_model.models import ModelSettings, WorldModel, build_model, load_world_model  # noqa: F401 - re-exported
from world_model.schedules import warmup_constant_decay
from world_model.train_utils import (
    GracefulStop,
    ResumableSampler,
    check_start,
    exit_stopped,
    loss_summary,
    optimizer_step,
    param_groups,
    recalibrate_batchnorm,
    resume,
    rng_state,
)


@dataclass
class TrainDataConfig:
    root: str = ""
    camera: str | None = None
    cameras: tuple[str, ...] | None = None  # several camera views per frame (e.g. exterior_1_left, wrist_left)
    fps: float | None = None  # target frame rate (frameskip from each file's control_hz)
    frameskip: int | None = None  # or a fixed frameskip
    image_size: int = 64
    action_mode: str = "delta_pose"  # delta_pose (V-JEPA 2-AC, from states) | recorded
    recorded_actions: tuple[str, ...] = FRANKA_ACTION_KEYS
    recorded_reduce: str = "sum"  # sum | stack | last over the frameskip
    val_fraction: float = 0.1  # used when the folder has no index.json
    workers: int = 0


@dataclass
class TrainOptimConfig:
    """Warm-up-constant-decay (V-JEPA 2-AC: 7.5e-5 -> 4.25e-4 -> 0)."""

    steps: int = 1000
    batch_size: int = 32
    start_lr: float = 7.5e-5
    lr: float = 4.25e-4
    final_lr: float = 0.0
    warmup: int = 50
    decay: int = 200
    weight_decay: float = 0.04
    grad_clip: float | None = 1.0


@dataclass
class TrainConfig:
    model: ModelSettings
    data: TrainDataConfig = field(default_factory=TrainDataConfig)
    optim: TrainOptimConfig = field(default_factory=TrainOptimConfig)
    out: str = "runs/train"
    seed: int = 0
    device: str | None = None
    resume: bool = False
    overwrite: bool = False  # start over in an `out` that already holds a checkpoint (replaced at the first save)
    stop_at: int | None = None  # stop (with a checkpoint) after this step; the schedule still spans optim.steps
    max_minutes: float | None = None  # wall-clock budget of this run: stop (with a checkpoint) after the step that crosses it
    val_every: int | None = None  # steps between validation passes (None: each epoch)
    checkpoint_every: int = 500
    log_every: int = 10
    val_batches: int = 20
    batchnorm_batches: int = 10  # training batches that set BatchNorm statistics before validation and saving
    progress: bool = True
    #: How planners should use the model (env id and kwargs, step budget, solver, MPC, fixed dims, sub-goals):
    #: written to config.json as `planning`, read by planners/cem_goal.py, evaluate.py and serve.py.
    planning: dict[str, Any] | None = None


def train_config(cfg: Any) -> TrainConfig:
    """The typed config from hydra's (or a plain dict): the `model` section is the family's own `Settings`."""
    raw = plain(cfg)
    model = raw.pop("model", None) or {}
    settings = build_config(WorldModel.family_class(model.get("family", "")).Settings, model, "model")
    return build_config(TrainConfig, {**raw, "model": settings})


def data_config(data: TrainDataConfig) -> dict[str, Any]:
    """The data settings a checkpoint carries, so that planners feed the model what it was trained on."""
    return {"image_size": data.image_size, "camera": data.camera,
            "cameras": list(data.cameras) if data.cameras else None, "fps": data.fps, "frameskip": data.frameskip,
            "action_mode": data.action_mode, "recorded_actions": list(data.recorded_actions),
            "recorded_reduce": data.recorded_reduce}


def _clips(data: TrainDataConfig, split: str, frames: int, load_frames: bool = True) -> ClipDataset:
    return ClipDataset(data.root, split=split, windows=Windows(history=frames, future=0, fps=data.fps, frameskip=data.frameskip),
                       actions=ClipActions(data.action_mode, data.recorded_actions, data.recorded_reduce),
                       transform=FrameTransform(image_size=data.image_size), camera=data.camera, cameras=data.cameras,
                       val_fraction=data.val_fraction, load_frames=load_frames)


def _feature_cache(config: TrainConfig, rank: int) -> Any:
    """The frozen encoder's feature cache of the dataset, when the family reads one and a valid one exists."""
    if config.data.cameras and len(config.data.cameras) > 1:
        if rank == 0 and getattr(config.model, "use_cache", False):
            print(f"the feature cache holds one camera; encoding the pixels of the {len(config.data.cameras)} views "
                  f"{list(config.data.cameras)} on the fly")
        return None
    try:
        return config.model.feature_cache(config.data.root, config.data.camera, config.data.image_size)
    except (FileNotFoundError, CacheMismatchError) as err:
        if rank == 0:
            print(f"no valid feature cache, encoding pixels on the fly: {err}")
        return None


def initial_model(config: TrainConfig, action_dim: int, camera_view: str | None = None) -> tuple[WorldModel, dict[str, Any]]:
    """(the model a run starts from, its config.json): built from the settings, pretrained parts loaded.
    `camera_view`: the framing the data was recorded with, carried so that planners make the env in that view."""
    model_config = {**config.model.to_config(action_dim), "data": data_config(config.data)}
    if camera_view:
        model_config["data"]["camera_view"] = camera_view
    if config.planning:
        model_config["planning"] = dict(config.planning)
    model = build_model(model_config)
    model.load_pretrained(model_config)
    return model, model_config


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


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class TrainStep(torch.nn.Module):
    """The model's loss as a module, so DDP's forward (and its gradient hooks) wraps the whole computation."""

    def __init__(self, model: WorldModel):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor], seed: int) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.loss(batch, seed=seed)


def train(config: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training; returns a summary (rank 0's view). SIGINT/SIGTERM stop it after the current
    step with a checkpoint (`summary["interrupted"]` names the signal); so does the step that crosses
    `max_minutes` (`summary["out_of_time"]`), counted from this call."""
    started = time.monotonic()
    if config.max_minutes is not None and config.max_minutes <= 0:
        raise ValueError(f"max_minutes must be > 0 (or null for no budget), got {config.max_minutes}")
    if config.val_every is not None and config.val_every < 1:
        raise ValueError(f"val_every must be >= 1 step (or null: each epoch), got {config.val_every}")
    if config.data.camera and config.data.cameras and list(config.data.cameras) != [config.data.camera]:
        raise ValueError(f"set data.camera or data.cameras, not both (data.camera={config.data.camera}, "
                         f"data.cameras={list(config.data.cameras)})")
    require_episodes(config.data.root)
    out = Path(config.out)
    last = out / "checkpoints" / "last"
    check_start(last, config.resume, config.overwrite)
    rank, world, dist_device = _setup_distributed()
    device = dist_device or pick_device(config.device)
    torch.manual_seed(config.seed + rank)
    rng = np.random.default_rng(config.seed + rank)
    m, o = config.model, config.optim
    cache = _feature_cache(config, rank)
    frames = m.clip_frames()
    train_clips = _clips(config.data, "train", frames, load_frames=cache is None)
    val_clips = _clips(config.data, "val", frames, load_frames=cache is None)
    train_set = CachedFeatureClips(train_clips, cache) if cache else train_clips
    val_set = CachedFeatureClips(val_clips, cache) if cache else val_clips
    model, model_config = initial_model(config, train_clips.action_dim, train_clips.camera_view)
    if model.readout is not None and not train_clips.has_pose:
        raise ValueError(f"model.readout_weight > 0 trains a readout of the robot pose (states {list(model.readout.dims)}), "
                         f"which {config.data.root} lacks (its episodes hold only observation/env_state: collected "
                         f"without a state_fn); set model.readout_weight=0 or collect with a state_fn")
    if model.readout is not None:  # normalise the readout's targets with the training split's statistics
        mean, std = train_clips.state_statistics()
        dims = model.readout.dims
        model.readout.set_normalisation(torch.from_numpy(mean[dims]), torch.from_numpy(std[dims]))
    model.to(device)
    trainable = model.trainable()
    step_fn: torch.nn.Module = TrainStep(model)
    if world > 1:  # a frozen encoder has no gradients, so DDP only synchronises what trains
        step_fn = DistributedDataParallel(step_fn, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(param_groups(trainable), lr=o.lr, weight_decay=o.weight_decay)
    step, history = resume(last, model, optimizer, rng, device) if config.resume else (0, [])
    sampler = ResumableSampler(len(train_set), config.seed, step * o.batch_size * world, rank, world)
    loader = DataLoader(train_set, batch_size=o.batch_size, sampler=sampler, num_workers=config.data.workers,
                        drop_last=True, generator=torch.Generator().manual_seed(config.seed + step))
    steps_per_epoch = max(len(train_set) // (o.batch_size * world), 1)
    val_every = config.val_every or steps_per_epoch
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))

    def recalibrate() -> None:
        """BatchNorm statistics that match the current weights, before anything runs in eval mode."""
        loader = DataLoader(train_set, batch_size=o.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(derive_seed(config.seed, step)))
        batches = (to_device(b, device) for _, b in zip(range(config.batchnorm_batches), loader))
        recalibrate_batchnorm(model, model.latents, batches)

    def save() -> None:
        if rank == 0:
            recalibrate()
            save_checkpoint(last, model, model_config, {"optimizer": optimizer.state_dict(), "step": step,
                                                        "history": history, "rng": rng_state(rng)})

    def validate() -> float | None:
        if len(val_set) == 0 or config.val_batches <= 0:
            return None
        recalibrate()
        model.eval()
        losses = []
        with torch.no_grad():
            # its own generator: iterating a loader without one draws from the global RNG, so a validation at a
            # stop_at step would shift the dropout masks of a resumed run away from a straight one's. Shuffled with
            # a fixed seed (the same clips at every validation): consecutive clips of one episode make batches whose
            # latents are far from isotropic, so SIGReg read 1.9 on Push-T's first val batches against 0.26 on drawn ones
            vloader = DataLoader(val_set, batch_size=o.batch_size, shuffle=True,
                                 generator=torch.Generator().manual_seed(config.seed))
            for i, batch in enumerate(vloader):
                if i >= config.val_batches:
                    break
                loss, _ = model.loss(to_device(batch, device), seed=derive_seed(config.seed, step), distributed=False)
                losses.append(loss.item())
        model.train()
        return float(np.mean(losses))

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    end = min(o.steps, config.stop_at or o.steps)
    bar = tqdm(total=o.steps, initial=step, desc=f"train {m.family}", unit="step", disable=not config.progress or rank != 0)
    batches = iter(loader)
    model.train()
    start_time, clips, val_loss, validations, out_of_time = time.perf_counter(), 0, None, [], False
    with GracefulStop(announce=rank == 0) as stop:
        while step < end:
            batch = to_device(next(batches), device)
            lr = warmup_constant_decay(step, o.steps, o.warmup, o.decay, o.start_lr, o.lr, o.final_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast:
                loss, parts = step_fn(batch, derive_seed(config.seed, step))
            optimizer_step(loss, optimizer, trainable.parameters(), o.grad_clip, step, last)
            step += 1
            clips += o.batch_size * world
            history.append(loss.item())
            if rank == 0 and (step % config.log_every == 0 or step == end):
                rate = clips / (time.perf_counter() - start_time)
                bar.set_postfix(loss=f"{loss.item():.4f}", clips_s=f"{rate:.1f}")
                for name, value in {"loss": loss.item(), "lr": lr, "clips_per_s": rate, **parts}.items():
                    writer.add_scalar(f"train/{name}", value, step)
            bar.update()
            out_of_time = step < end and over_budget(started, config.max_minutes, world, device)
            if stop.agreed(world, device) or out_of_time:
                save()  # the step is done: keep it, and skip the validation pass
                break
            if step % val_every == 0 or step == end:
                if rank == 0:
                    val_loss = validate()
                    if val_loss is not None:
                        writer.add_scalar("val/loss", val_loss, step)
                        validations.append((step, val_loss))
                if world > 1:
                    dist.barrier()
            if step % config.checkpoint_every == 0 or step == end:
                save()
    bar.close()
    if writer:
        writer.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"steps": step, **loss_summary(history), "interrupted": stop.requested, "out_of_time": out_of_time,
            "max_minutes": config.max_minutes, "val_loss": val_loss, "validations": validations, "checkpoint": str(last), "history": history, "rank": rank, "world_size": world,
            "clips_per_s": clips / max(time.perf_counter() - start_time, 1e-9), "feature_cache": cache is not None}


def over_budget(started: float, max_minutes: float | None, world: int, device: torch.device) -> bool:
    """Whether `max_minutes` have passed since `started` (time.monotonic); under DDP every rank stops at the same
    step when any rank's clock says so."""
    if max_minutes is None:
        return False
    over = time.monotonic() - started >= 60.0 * max_minutes
    if world > 1:
        flag = torch.tensor([int(over)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        over = bool(flag.item())
    return over


def main(cfg: Any) -> None:
    config = train_config(cfg)
    summary = train(config)
    if summary["interrupted"]:
        exit_stopped(summary, config.optim.steps, show=summary["rank"] == 0)
    if summary["rank"] == 0:
        print(f"trained {config.model.family} for {summary['steps']} steps on {summary['world_size']} process(es): "
              f"loss {summary['loss_start']:.4f} -> {summary['loss_end']:.4f}, val {summary['val_loss']}, "
              f"{summary['clips_per_s']:.1f} clips/s, checkpoint {summary['checkpoint']}"
              + (f"; stopped by max_minutes={config.max_minutes} at step {summary['steps']} of {config.optim.steps}, "
                 f"resume with: {command_line(['resume=true'])}" if summary["out_of_time"] else ""))


if __name__ == "__main__":
    from common.cli import run

    run(main, "train")
