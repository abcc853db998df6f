"""Pieces shared by the training scripts: a resumable (and rank-aware) sampler, AdamW groups, RNG state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import Sampler


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
