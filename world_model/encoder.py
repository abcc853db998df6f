"""Video ViT encoder (V-JEPA): tubelet patch embedding, 3D sin-cos positions or 3D RoPE, no CLS token.

Parameter names follow Meta's V-JEPA 2 encoder (`patch_embed.proj`, `blocks.i.norm1`,
`blocks.i.attn.qkv`, `blocks.i.attn.proj`, `blocks.i.norm2`, `blocks.i.mlp.fc1/fc2`,
`norm`), so released checkpoints load with a strict key match (see `checkpoints.py`).
Blocks use timm's `Mlp` and `DropPath`; attention is written out here because the
RoPE positions must reach it, which timm's `Block` does not pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_

# name: (embed_dim, depth, num_heads, mlp_ratio) -- the V-JEPA 2 family plus small sizes for CPU work
SIZES: dict[str, tuple[int, int, int, float]] = {
    "micro": (96, 4, 3, 4.0),
    "tiny": (192, 12, 3, 4.0),
    "small": (384, 12, 6, 4.0),
    "base": (768, 12, 12, 4.0),
    "large": (1024, 24, 16, 4.0),
    "huge": (1280, 32, 16, 4.0),
    "giant": (1408, 40, 22, 48 / 11),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class EncoderConfig:
    """Everything needed to rebuild an encoder (stored in checkpoints' config.json)."""

    size: str = "tiny"
    img_size: int = 64
    patch_size: int = 16
    tubelet_size: int = 2
    in_chans: int = 3
    use_rope: bool = False
    rope_vjepa2_layout: bool = False  # True for Meta's released checkpoints (see rope_rotate)
    qkv_bias: bool = True
    drop_path: float = 0.0
    embed_dim: int | None = None  # None: from `size`
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float | None = None

    def resolved(self) -> tuple[int, int, int, float]:
        if self.size not in SIZES:
            raise ValueError(f"encoder size must be one of {sorted(SIZES)}, got {self.size!r}")
        dim, depth, heads, ratio = SIZES[self.size]
        return (self.embed_dim or dim, self.depth or depth, self.num_heads or heads, self.mlp_ratio or ratio)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sincos_3d(embed_dim: int, grid: tuple[int, int, int], device: torch.device | None = None) -> torch.Tensor:
    """(T*H*W, D) fixed sin-cos embedding, the channels split between time, height and width.

    Height and width get 2 * (D // 6) channels each and time the rest, so any even D works.
    """
    t, h, w = grid
    d_space = 2 * (embed_dim // 6)
    d_time = embed_dim - 2 * d_space

    def one_axis(n: int, dim: int) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64, device=device) / (dim / 2))
        out = torch.arange(n, dtype=torch.float64, device=device)[:, None] * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)  # (n, dim)

    et, eh, ew = one_axis(t, d_time), one_axis(h, d_space), one_axis(w, d_space)
    emb = torch.cat([
        et[:, None, None].expand(t, h, w, d_time),
        eh[None, :, None].expand(t, h, w, d_space),
        ew[None, None, :].expand(t, h, w, d_space),
    ], dim=-1)
    return emb.reshape(t * h * w, embed_dim).float()


def rope_tables(pos: torch.Tensor, dim: int, dtype: torch.dtype, vjepa2_layout: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of shape (..., N, dim) for `rope_apply`: compute once, rotate many heads and layers."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=dtype, device=pos.device) / (dim / 2.0))
    freq = pos.to(dtype)[..., None] * omega  # (..., N, D/2)
    if vjepa2_layout:
        return torch.cat([freq.cos(), freq.cos()], dim=-1), torch.cat([freq.sin(), freq.sin()], dim=-1)
    return freq.cos().repeat_interleave(2, dim=-1), freq.sin().repeat_interleave(2, dim=-1)


def rope_apply(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the channel pairs (2i, 2i+1) of x (..., N, D) by the angles whose tables `rope_tables` made."""
    y1, y2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    rotated = torch.stack((-y2, y1), dim=-1).flatten(-2)
    return x * cos + rotated * sin


def rope_rotate(x: torch.Tensor, pos: torch.Tensor, vjepa2_layout: bool = False) -> torch.Tensor:
    """Rotary embedding of (B, heads, N, D) features at positions (N,) or (B, heads, N).

    Channel pairs (2i, 2i+1) rotate by angle pos * f_i. `vjepa2_layout=True` reproduces V-JEPA 2's
    released encoders instead, whose frequencies are laid out [f_0..f_{D/2-1}] twice rather than
    interleaved (a known quirk their checkpoints were trained with; it breaks exact relativity).
    """
    return rope_apply(x, *rope_tables(pos, x.shape[-1], x.dtype, vjepa2_layout))


class Attention(nn.Module):
    """Multi-head self-attention with optional 3D RoPE over (time, height, width) token positions."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, use_rope: bool = False,
                 vjepa2_layout: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rope = use_rope
        self.vjepa2_layout = vjepa2_layout
        self.rope_dim = 2 * ((self.head_dim // 3) // 2)  # channels per axis (V-JEPA 2)

    def _rope(self, t: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        parts, s = [], 0
        for axis in range(3):
            parts.append(rope_rotate(t[..., s : s + self.rope_dim], positions[..., axis], self.vjepa2_layout))
            s += self.rope_dim
        parts.append(t[..., s:])
        return torch.cat(parts, dim=-1)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        if self.use_rope:
            pos = positions[:, None] if positions.dim() == 3 else positions  # (B, 1, N, 3) or (N, 3)
            q, k = self._rope(q, pos), self._rope(k, pos)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)); x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool = True, use_rope: bool = False,
                 drop_path: float = 0.0, vjepa2_layout: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, use_rope, vjepa2_layout)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), positions, attn_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VideoViT(nn.Module):
    """Video ViT over (B, C, T, H, W) clips; T is padded to a whole tubelet by repeating the last frame."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        dim, depth, heads, ratio = config.resolved()
        self.embed_dim, self.depth, self.num_heads = dim, depth, heads
        self.patch_size, self.tubelet_size = config.patch_size, config.tubelet_size
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv3d(config.in_chans, dim, kernel_size=(config.tubelet_size, config.patch_size,
                                          config.patch_size), stride=(config.tubelet_size, config.patch_size, config.patch_size))
        self.blocks = nn.ModuleList([
            Block(dim, heads, ratio, config.qkv_bias, config.use_rope, config.drop_path * i / max(depth - 1, 1),
                  config.rope_vjepa2_layout)
            for i in range(depth)
        ])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self._sincos: dict[tuple[int, int, int], torch.Tensor] = {}
        self.apply(self._init_weights)
        for i, block in enumerate(self.blocks):  # V-JEPA's depth-scaled init of the residual projections
            block.attn.proj.weight.data.div_(math.sqrt(2.0 * (i + 1)))
            block.mlp.fc2.weight.data.div_(math.sqrt(2.0 * (i + 1)))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Conv3d)):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def grid(self, video: torch.Tensor) -> tuple[int, int, int]:
        _, _, t, h, w = video.shape
        return (math.ceil(t / self.tubelet_size), h // self.patch_size, w // self.patch_size)

    def token_positions(self, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        """(N, 3) float (time, row, column) of every token, in the token order."""
        t, h, w = grid
        idx = torch.arange(t * h * w, device=device)
        return torch.stack([idx // (h * w), (idx % (h * w)) // w, idx % w], dim=-1).float()

    def position_embedding(self, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        key = grid
        if key not in self._sincos or self._sincos[key].device != device:
            self._sincos[key] = sincos_3d(self.embed_dim, grid, device)
        return self._sincos[key]

    def forward(self, video: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens (B, N, D) of a (B, C, T, H, W) clip; with `keep` (B, K) token indices, only those tokens."""
        if video.dim() == 4:
            video = video.unsqueeze(2)
        if video.shape[2] % self.tubelet_size:
            pad = self.tubelet_size - video.shape[2] % self.tubelet_size
            video = torch.cat([video, video[:, :, -1:].expand(-1, -1, pad, -1, -1)], dim=2)
        grid = self.grid(video)
        x = self.patch_embed.proj(video).flatten(2).transpose(1, 2)  # (B, N, D)
        positions = self.token_positions(grid, x.device)
        if not self.config.use_rope:
            x = x + self.position_embedding(grid, x.device).to(x.dtype)
        if keep is not None:
            x = torch.gather(x, 1, keep[..., None].expand(-1, -1, x.shape[-1]))
            positions = positions[keep]  # (B, K, 3)
        for block in self.blocks:
            x = block(x, positions)
        return self.norm(x)


def preprocess(frames: torch.Tensor) -> torch.Tensor:
    """uint8 or [0, 1] float frames (..., 3, H, W) -> ImageNet-normalised float."""
    x = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def pool_grid(tokens: torch.Tensor, grid: int) -> torch.Tensor:
    """(..., P, D) tokens of a square patch map -> (..., grid * grid, D), each the mean over its cell of the map.

    grid 1 is the mean over all patches; a grid keeps *where* things are, which one averaged token loses.
    """
    p, d = tokens.shape[-2:]
    side = int(round(p**0.5))
    if side * side != p or not 1 <= grid <= side:
        raise ValueError(f"pooling {p} patch tokens to a {grid} x {grid} grid: expected a square patch map of at "
                         f"least {grid} x {grid} patches")
    x = tokens.reshape(-1, side, side, d).permute(0, 3, 1, 2)  # (B', D, side, side)
    pooled = F.adaptive_avg_pool2d(x, grid).flatten(2).transpose(1, 2)  # (B', grid*grid, D)
    return pooled.reshape(*tokens.shape[:-2], grid * grid, d)


@torch.no_grad()
def encode_frames(encoder: VideoViT, frames: torch.Tensor, pool: bool | int = False) -> torch.Tensor:
    """V-JEPA 2-AC frozen features: each frame of (B, T, 3, H, W) encoded alone (repeated to fill a tubelet).

    Returns layer-normed tokens (B, T, N, D): all patch tokens (`pool` false or 0), one token averaged over the
    patches (true or 1), or the patches averaged to a g x g grid (`pool=g`, N = g * g).
    """
    b, t = frames.shape[:2]
    x = preprocess(frames.flatten(0, 1))  # (B*T, 3, H, W)
    video = x.unsqueeze(2).expand(-1, -1, encoder.tubelet_size, -1, -1)
    tokens = F.layer_norm(encoder(video), (encoder.embed_dim,))
    return pool_tokens(tokens.unflatten(0, (b, t)), pool)


def pool_tokens(tokens: torch.Tensor, pool: bool | int) -> torch.Tensor:
    """(..., P, D) patch tokens as `pool` says: false / 0 all of them, true / 1 their mean, g a g x g grid."""
    if pool is True or pool == 1:
        return tokens.mean(-2, keepdim=True)  # bit for bit what the caches made before grids hold
    return pool_grid(tokens, int(pool)) if pool else tokens
