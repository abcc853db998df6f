"""Action-conditioned predictor: a frame-causal transformer modulated by actions through AdaLN-zero.

Tokens of frame t (all patch tokens, or one pooled token) attend to their own frame
and earlier frames only. Each frame's action (and proprioceptive state) is embedded
into a conditioning vector that sets shift, scale and gate of the attention and MLP
branches of every block (DiT's adaptive LayerNorm). The modulation projections start
at zero, so a fresh predictor ignores the actions and each block is the identity:
the output is then the residual path (input embedding -> output projection).
Output at frame t predicts the encoder tokens of frame t + 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp, trunc_normal_

from world_model.encoder import sincos_3d


@dataclass
class ACPredictorConfig:
    width: int = 256
    depth: int = 6
    num_heads: int = 8
    mlp_ratio: float = 4.0
    action_dim: int = 7
    state_dim: int = 7  # 0: no proprioceptive input
    max_frames: int = 64


def frame_causal_mask(num_frames: int, tokens_per_frame: int, device: torch.device) -> torch.Tensor:
    """(T*N, T*N) boolean mask, True where a query token may attend a key token (key frame <= query frame)."""
    frame = torch.arange(num_frames, device=device).repeat_interleave(tokens_per_frame)
    return frame[:, None] >= frame[None, :]


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class AdaLNBlock(nn.Module):
    """Transformer block whose LayerNorms are modulated by a per-token conditioning vector (zero-initialised)."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(width, int(width * mlp_ratio), act_layer=lambda: nn.GELU(approximate="tanh"))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.adaLN_modulation[1].weight)
        nn.init.zeros_(self.adaLN_modulation[1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, N, C) tokens, cond (B, T, C) one conditioning vector per frame (modulation computed once per
        frame and broadcast over its N tokens, not once per token)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(cond)[:, :, None].chunk(6, dim=-1)
        b, t, n, c = x.shape
        h = _modulate(self.norm1(x), shift1, scale1).reshape(b, t * n, c)
        q, k, v = self.qkv(h).unflatten(-1, (3, self.num_heads, c // self.num_heads)).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + gate1 * self.proj(attn.transpose(1, 2).reshape(b, t, n, c))
        return x + gate2 * self.mlp(_modulate(self.norm2(x), shift2, scale2))


class ACPredictor(nn.Module):
    """predict(z (B, T, N, D), actions (B, T, A), states (B, T, S)) -> (B, T, N, D); frame t predicts t + 1."""

    def __init__(self, embed_dim: int, config: ACPredictorConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.embed_dim = embed_dim
        self.input_proj = nn.Linear(embed_dim, w)
        self.action_embed = nn.Sequential(nn.Linear(config.action_dim, w), nn.SiLU(), nn.Linear(w, w))
        self.state_embed = (nn.Sequential(nn.Linear(config.state_dim, w), nn.SiLU(), nn.Linear(w, w))
                            if config.state_dim else None)
        self.blocks = nn.ModuleList([AdaLNBlock(w, config.num_heads, config.mlp_ratio) for _ in range(config.depth)])
        self.norm = nn.LayerNorm(w, eps=1e-6)
        self.output_proj = nn.Linear(w, embed_dim)
        self.apply(self._init)
        for block in self.blocks:  # re-zero after the generic init
            nn.init.zeros_(block.adaLN_modulation[1].weight)
            nn.init.zeros_(block.adaLN_modulation[1].bias)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, z: torch.Tensor, actions: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        b, t, n, d = z.shape
        if d != self.embed_dim:
            raise ValueError(f"predictor expects tokens of width {self.embed_dim}, got {tuple(z.shape)}")
        if actions.shape[:2] != (b, t) or actions.shape[-1] != self.config.action_dim:
            raise ValueError(f"actions must be (B, T, {self.config.action_dim}) = ({b}, {t}, ...), got {tuple(actions.shape)}")
        if t > self.config.max_frames:
            raise ValueError(f"{t} frames exceed the predictor's max_frames={self.config.max_frames}")
        # temporal (frame) and spatial (token) sin-cos positions
        pos = sincos_3d(self.config.width, (t, n, 1), z.device).view(t, n, -1)
        x = self.input_proj(z) + pos.to(z.dtype)
        cond = self.action_embed(actions)
        if self.state_embed is not None:
            if states is None:
                raise ValueError(f"this predictor conditions on {self.config.state_dim}-D states; pass states")
            cond = cond + self.state_embed(states)
        mask = frame_causal_mask(t, n, z.device)
        for block in self.blocks:
            x = block(x, cond, mask)
        return self.output_proj(self.norm(x)).view(b, t, n, d)
