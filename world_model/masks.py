"""V-JEPA multi-block masks over a (time, height, width) token grid.

A mask is the union of `num_blocks` rectangles, each covering `spatial_scale` of the
frame's patches with an aspect ratio drawn from `aspect_ratio`, repeated over
`temporal_scale` of the time steps (all of them by default, as in V-JEPA). The
masked tokens are the prediction targets; the rest is the context. With a grid of
one time step this is I-JEPA's 2D multi-block masking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class MaskSpec:
    num_blocks: int
    spatial_scale: float
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    temporal_scale: float = 1.0


#: V-JEPA's two masks per clip: short-range (8 blocks x 0.15) and long-range (2 blocks x 0.7).
VJEPA_MASKS = (MaskSpec(8, 0.15), MaskSpec(2, 0.7))


def sample_mask(grid: tuple[int, int, int], spec: MaskSpec, rng: np.random.Generator) -> np.ndarray:
    """Boolean (T, H, W) array, True where a token is masked (a target); never masks everything."""
    t, h, w = grid
    for _ in range(20):
        mask = np.zeros(grid, dtype=bool)
        for _ in range(spec.num_blocks):
            area = spec.spatial_scale * h * w
            ratio = math.exp(rng.uniform(math.log(spec.aspect_ratio[0]), math.log(spec.aspect_ratio[1])))
            bh = int(np.clip(round(math.sqrt(area / ratio)), 1, h))
            bw = int(np.clip(round(math.sqrt(area * ratio)), 1, w))
            bt = int(np.clip(round(spec.temporal_scale * t), 1, t))
            top, left, start = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1), rng.integers(0, t - bt + 1)
            mask[start : start + bt, top : top + bh, left : left + bw] = True
        if 0 < mask.sum() < mask.size:
            return mask
    # degenerate grid (e.g. 1x1): keep one context token
    mask = np.ones(grid, dtype=bool)
    mask.flat[rng.integers(mask.size)] = False
    return mask


def batch_masks(batch_size: int, grid: tuple[int, int, int], spec: MaskSpec,
                rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(context indices (B, K), target indices (B, M)) with K and M equal across the batch.

    Clips keep min-over-batch counts (a random subset of the rest), as V-JEPA's collator does,
    so the batch stays rectangular.
    """
    masks = [sample_mask(grid, spec, rng).reshape(-1) for _ in range(batch_size)]
    keep = min(int((~m).sum()) for m in masks)
    pred = min(int(m.sum()) for m in masks)
    context, target = [], []
    for m in masks:
        ctx, tgt = np.flatnonzero(~m), np.flatnonzero(m)
        context.append(np.sort(rng.choice(ctx, keep, replace=False)))
        target.append(np.sort(rng.choice(tgt, pred, replace=False)))
    return torch.from_numpy(np.stack(context)), torch.from_numpy(np.stack(target))
