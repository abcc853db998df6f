"""Pieces shared by the training scripts: a resumable (and rank-aware) sampler, AdamW groups, RNG state,
the start check of an output folder and a graceful stop on Ctrl-C / SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Sampler

from common.errors import UserError


class ResumableSampler(Sampler[int]):
    """An endless stream of seeded permutations that can start at any position (for exact resume)."""

    def __init__(self, size: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1):
        if size == 0:
            raise ValueError("the dataset has no clips")
        self.size, self.seed, self.start, self.rank, self.world = size, seed, start, rank, world_size

    def __iter__(self):
        """Global position `start` onward; rank r takes every world_size-th index (a DistributedSampler)."""
        epoch, offset = divmod(self.start, self.size)
        position = self.start
        while True:
            order = np.random.default_rng((self.seed, epoch)).permutation(self.size)
            for index in order[offset:].tolist():
                if position % self.world == self.rank:
                    yield index
                position += 1
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:
        return 2**62


def param_groups(model: nn.Module) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or name.endswith("mask_token") else decay).append(p)
    return [{"params": decay, "wd_scale": 1.0}, {"params": no_decay, "wd_scale": 0.0, "weight_decay": 0.0}]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, encode, batches) -> int:
    """Set every BatchNorm's running statistics to the exact average over `batches` under the current weights.

    During training the running mean/variance trail the weights (a momentum average over old encoders); in eval
    mode an early checkpoint's readout was then 0.67 m off while train mode gave 0.07 m. `encode(batch)` runs the
    modules on one batch. Returns the number of BatchNorm layers (0: nothing done). Restores the training mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    model.train()
    for batch in batches:
        encode(batch)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)
    return len(norms)


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, rng: np.random.Generator,
           device: torch.device) -> tuple[int, list[float]]:
    """Load weights, optimizer and RNG states from a checkpoint folder; returns (step, loss history)."""
    from safetensors.torch import load_file

    from world_model.checkpoints import load_state_strict

    load_state_strict(model, load_file(folder / "model.safetensors", device=str(device)), str(folder))
    state = torch.load(folder / "training_state.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    restore_rng(rng, state["rng"])
    return state["step"], state["history"]


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, params, grad_clip: float | None, step: int,
                   checkpoint: Path) -> None:
    """Backward and update; a non-finite loss stops the run naming the step (the last checkpoint stays intact)."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}; the last good checkpoint "
                                 f"({checkpoint}) is untouched")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()


def loss_summary(history: list[float]) -> dict[str, float]:
    """Mean loss over the first and the last tenth of the steps (robust to single noisy steps)."""
    tenth = max(len(history) // 10, 1)
    return {"loss_start": float(np.mean(history[:tenth])), "loss_end": float(np.mean(history[-tenth:]))}


def check_start(last: Path, resume: bool, overwrite: bool = False) -> None:
    """Refuse to lose work: a checkpoint at `last` needs `resume=true` (or `overwrite=true`); `resume=true`
    needs a checkpoint. Checked before anything slow is loaded."""
    has_checkpoint = (last / "training_state.pt").exists()
    if resume and not has_checkpoint:
        raise UserError(f"resume=true, but {last} holds no training checkpoint to resume from; "
                        f"start without resume=true")
    if not resume and last.exists() and not overwrite:
        raise UserError(f"{last} already holds a checkpoint; continue it with resume=true, start over with "
                        f"overwrite=true, or choose another out=")


class GracefulStop:
    """While active, SIGINT (Ctrl-C) and SIGTERM ask the training loop to stop after the current step, with a
    checkpoint; a second Ctrl-C aborts at once. `requested` holds the signal's name."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, announce: bool = True):
        self.requested: str | None = None
        self.signum = 0
        self.announce = announce
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.signum, self.requested = signum, signal.Signals(signum).name
        if self.announce:
            print(f"\n{self.requested}: stopping after this step and saving a checkpoint (Ctrl-C again aborts "
                  f"without saving)", file=sys.stderr, flush=True)

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def agreed(self, world_size: int, device: torch.device) -> bool:
        """Whether to stop now; under DDP every rank stops at the same step if any rank was signalled."""
        if world_size > 1:
            import torch.distributed as dist

            flag = torch.tensor([self.signum], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if int(flag.item()) and self.requested is None:  # another rank was signalled
                self.signum, self.requested = int(flag.item()), signal.Signals(int(flag.item())).name
        return self.requested is not None


def exit_stopped(summary: dict[str, Any], total_steps: int, show: bool = True) -> None:
    """After a run stopped by a signal: say where its checkpoint is and how to resume; exit 128 + signal."""
    from common.cli import command_line

    if show:
        print(f"{summary['interrupted']}: stopped at step {summary['steps']} of {total_steps}, checkpoint "
              f"{summary['checkpoint']}\nresume with: {command_line(['resume=true'])}", flush=True)
    raise SystemExit(128 + signal.Signals[summary["interrupted"]].value)
