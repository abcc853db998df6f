"""Clip-level image transforms: one random-resized-crop per clip, then resize.

Every frame of a clip gets the same crop, so motion between frames stays
consistent. Randomness comes from torch's global generator, which DataLoader
seeds per worker from the run's seed, so runs are reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def sample_crop(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a crop covering `scale` of the area with aspect ratio in `ratio` (torchvision's rule)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator).item())
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator).item())
            return top, left, h, w
    # fall back to a centre crop with the closest allowed aspect ratio
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resize_uint8(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(T, 3, H, W) uint8 -> (T, 3, *size) uint8 with antialiased bilinear resampling."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    out = F.interpolate(frames.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def random_resized_crop(
    frames: torch.Tensor, size: tuple[int, int], scale: tuple[float, float], ratio: tuple[float, float],
) -> torch.Tensor:
    """Crop every frame of a (T, 3, H, W) clip with one random box, then resize to `size`."""
    top, left, h, w = sample_crop(frames.shape[-2], frames.shape[-1], scale, ratio)
    return resize_uint8(frames[..., top : top + h, left : left + w], size)


@dataclass(frozen=True)
class FrameTransform:
    """What a clip's frames (T, 3, H, W) uint8 go through: a resize to `image_size`, or with `crop_scale` one
    random-resized-crop per clip first. The default keeps frames as stored."""

    image_size: int | tuple[int, int] | None = None
    crop_scale: tuple[float, float] | None = None
    crop_ratio: tuple[float, float] = (0.75, 1.3333333)

    def __post_init__(self) -> None:
        size = self.image_size
        object.__setattr__(self, "image_size", (size, size) if isinstance(size, int) else
                           (tuple(size) if size is not None else None))
        object.__setattr__(self, "crop_scale", tuple(self.crop_scale) if self.crop_scale is not None else None)
        object.__setattr__(self, "crop_ratio", tuple(self.crop_ratio))
        if self.crop_scale is not None and self.image_size is None:
            raise ValueError("crop_scale needs image_size (the size crops are resized to)")

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if self.crop_scale is not None:
            return random_resized_crop(frames, self.image_size, self.crop_scale, self.crop_ratio)
        if self.image_size is not None:
            return resize_uint8(frames, self.image_size)
        return frames
