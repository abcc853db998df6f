"""The narrow V-JEPA predictor: context tokens + learnable mask tokens at the target positions -> target features."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
from timm.layers import trunc_normal_

from world_model.encoder import Block, sincos_3d


@dataclass
class PredictorConfig:
    embed_dim: int = 384  # predictor width (V-JEPA: 384)
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    use_rope: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MaskedPredictor(nn.Module):
    """Maps encoder tokens of the context to predictions of the encoder tokens at the target positions."""

    def __init__(self, encoder_dim: int, config: PredictorConfig):
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.predictor_embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList([Block(dim, config.num_heads, config.mlp_ratio, use_rope=config.use_rope)
                                     for _ in range(config.depth)])
        self.predictor_norm = nn.LayerNorm(dim, eps=1e-6)
        self.predictor_proj = nn.Linear(dim, encoder_dim)
        trunc_normal_(self.mask_token, std=0.02)
        self._sincos: dict[tuple[int, int, int], torch.Tensor] = {}

    def _positions(self, grid: tuple[int, int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        t, h, w = grid
        if grid not in self._sincos or self._sincos[grid].device != device:
            self._sincos[grid] = sincos_3d(self.config.embed_dim, grid, device)
        idx = torch.arange(t * h * w, device=device)
        coords = torch.stack([idx // (h * w), (idx % (h * w)) // w, idx % w], dim=-1).float()
        return self._sincos[grid], coords

    def forward(self, context: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor,
                grid: tuple[int, int, int]) -> torch.Tensor:
        """context (B, K, D_enc) at token indices context_idx (B, K) -> predictions (B, M, D_enc) at target_idx."""
        table, coords = self._positions(grid, context.device)
        x = self.predictor_embed(context)
        m = self.mask_token.expand(target_idx.shape[0], target_idx.shape[1], -1)
        if not self.config.use_rope:
            x = x + table[context_idx].to(x.dtype)
            m = m + table[target_idx].to(x.dtype)
        z = torch.cat([x, m], dim=1)
        positions = coords[torch.cat([context_idx, target_idx], dim=1)]
        for block in self.blocks:
            z = block(z, positions)
        return self.predictor_proj(self.predictor_norm(z[:, context.shape[1]:]))
