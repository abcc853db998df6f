"""Action-conditioned predictor: a frame-causal transformer modulated by actions through AdaLN-zero.

Tokens of frame t (all patch tokens, or one pooled token) attend to their own frame and the
`window - 1` frames before it. Each frame's action (and proprioceptive state) is embedded into a
conditioning vector that sets shift, scale and gate of the attention and MLP branches of every block
(DiT's adaptive LayerNorm). The modulation projections start at zero, so a fresh predictor ignores
the actions and each block is the identity: the output is then the residual path (input embedding
-> output projection). Output at frame t predicts the encoder tokens of frame t + 1.

Time positions are rotary (`time_positions="rope"`, the default): attention depends only on how many
frames apart two tokens are, so a frame's keys and values never change once computed, and a rollout
computes each new frame once against a cache of its window's keys and values (`run(..., past=cache)`)
instead of re-running the whole window at every step. Checkpoints written before that option
(`"absolute"`: the frame's index in the window added as a sin-cos embedding) still load and roll out
by recomputing their window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp, trunc_normal_

from world_model.encoder import rope_apply, rope_tables, sincos_3d

TIME_POSITIONS = ("rope", "absolute")


@dataclass
class ACPredictorConfig:
    width: int = 256
    depth: int = 6
    num_heads: int = 8
    mlp_ratio: float = 4.0
    action_dim: int = 7
    state_dim: int = 7  # 0: no proprioceptive input
    max_frames: int = 64
    time_positions: str = "rope"  # "rope": relative, rollouts cache keys/values; "absolute": the pre-cache scheme
    window: int = 0  # frames a token attends to (its own and earlier ones); 0: all. Models set their history.
    dropout: float = 0.0  # attention and MLP dropout while training (LeWorldModel: 0.1); none in eval mode

    def __post_init__(self) -> None:
        if self.time_positions not in TIME_POSITIONS:
            raise ValueError(f"time_positions must be one of {TIME_POSITIONS}, got {self.time_positions!r}")

    @classmethod
    def from_checkpoint(cls, entries: dict[str, Any]) -> ACPredictorConfig:
        """The config of a checkpoint's `predictor` entry; entries written before rotary time are `absolute`."""
        return cls(**{"time_positions": "absolute", **entries})


def frame_causal_mask(num_frames: int, tokens_per_frame: int, device: torch.device) -> torch.Tensor:
    """(T*N, T*N) boolean mask, True where a query token may attend a key token (key frame <= query frame)."""
    frame = torch.arange(num_frames, device=device).repeat_interleave(tokens_per_frame)
    return frame[:, None] >= frame[None, :]


def window_mask(query_frames: torch.Tensor, key_frames: torch.Tensor, tokens_per_frame: int,
                window: int) -> torch.Tensor | None:
    """Boolean (Tq*N, Tk*N) mask: key frame <= query frame and fewer than `window` frames back (0: no limit).

    None when every pair is allowed (a rollout step against a trimmed cache), so attention runs unmasked.
    """
    gap = query_frames[:, None] - key_frames[None, :]
    allowed = gap >= 0
    if window:
        allowed &= gap < window
    if bool(allowed.all()):
        return None
    return allowed.repeat_interleave(tokens_per_frame, 0).repeat_interleave(tokens_per_frame, 1)


@dataclass
class KVCache:
    """Keys and values of the frames a next frame may attend to, per block: (B or 1, heads, F*N, head_dim).

    `frames` are their time indices, `next_frame` the index of the frame that follows; a batch of 1 is shared
    by every candidate (broadcast, not copied).
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    frames: torch.Tensor
    next_frame: int


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class AdaLNBlock(nn.Module):
    """Transformer block whose LayerNorms are modulated by a per-token conditioning vector (zero-initialised)."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float, dropout: float = 0.0):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(width, int(width * mlp_ratio), act_layer=lambda: nn.GELU(approximate="tanh"), drop=dropout)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.adaLN_modulation[1].weight)
        nn.init.zeros_(self.adaLN_modulation[1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, T, N, C) tokens, cond (B, T, C) one conditioning vector per frame (modulation computed once per
        frame and broadcast over its N tokens, not once per token); `rope` the (cos, sin) tables of the tokens'
        rotary time positions; `past` cached keys/values the tokens also attend to (placed before their own).
        Returns the new tokens and the keys/values they attended to (past and own; a batch of 1 broadcasts)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(cond)[:, :, None].chunk(6, dim=-1)
        h = _modulate(self.norm1(x), shift1, scale1)
        b, t, n, c = h.shape
        q, k, v = self.qkv(h.reshape(b, t * n, c)).unflatten(-1, (3, self.num_heads, c // self.num_heads)
                                                              ).permute(2, 0, 3, 1, 4)
        if rope is not None:
            cos, sin = (table.to(q.dtype) for table in rope)  # float32 tables, in the dtype autocast gave q and k
            q, k = rope_apply(q, cos, sin), rope_apply(k, cos, sin)
        if past is not None:
            k = torch.cat([past[0].expand(b, -1, -1, -1), k], dim=2)
            v = torch.cat([past[1].expand(b, -1, -1, -1), v], dim=2)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        x = x + gate1 * self.proj(attn.transpose(1, 2).reshape(b, t, n, c))
        return x + gate2 * self.mlp(_modulate(self.norm2(x), shift2, scale2)), (k, v)


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
        self.blocks = nn.ModuleList([AdaLNBlock(w, config.num_heads, config.mlp_ratio, config.dropout)
                                     for _ in range(config.depth)])
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

    @property
    def caches(self) -> bool:
        """Whether rollouts may cache keys/values (rotary time: a frame's keys never change once computed)."""
        return self.config.time_positions == "rope"

    def forward(self, z: torch.Tensor, actions: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        """Predictions for every frame of the clip (teacher forcing)."""
        return self.run(z, actions, states)[0]

    def run(self, z: torch.Tensor, actions: torch.Tensor, states: torch.Tensor | None = None,
            past: KVCache | None = None) -> tuple[torch.Tensor, KVCache | None]:
        """(predictions (B, T, N, D), the cache a next frame attends to) for frames that follow `past`.

        Inputs may have a batch of 1 where they are shared (a context) and B where they differ (candidate
        actions): they broadcast. Without rotary time (`absolute`) no cache is returned and `past` must be None.
        """
        b, t, n, d = z.shape
        if d != self.embed_dim:
            raise ValueError(f"predictor expects tokens of width {self.embed_dim}, got {tuple(z.shape)}")
        if actions.shape[1] != t or actions.shape[-1] != self.config.action_dim:
            raise ValueError(f"actions must be (B, T, {self.config.action_dim}) = ({b}, {t}, ...), got {tuple(actions.shape)}")
        if t > self.config.max_frames:
            raise ValueError(f"{t} frames exceed the predictor's max_frames={self.config.max_frames}")
        cond = self.action_embed(actions)
        if self.state_embed is not None:
            if states is None:
                raise ValueError(f"this predictor conditions on {self.config.state_dim}-D states; pass states")
            cond = cond + self.state_embed(states)
        if not self.caches:
            if past is not None:
                raise ValueError("a predictor with absolute time positions cannot continue from a cache")
            pos = sincos_3d(self.config.width, (t, n, 1), z.device).view(t, n, -1)  # frame index and token
            x = self.input_proj(z) + pos.to(z.dtype)
            mask = frame_causal_mask(t, n, z.device)
            for block in self.blocks:
                x = block(x, cond, mask)[0]
            return self.output_proj(self.norm(x)).view(*x.shape[:3], d), None
        # rotary time: token positions are absolute within a frame, frame positions relative through RoPE
        start = 0 if past is None else past.next_frame
        frames = torch.arange(start, start + t)  # on the CPU for the mask (None in a rollout step: nothing to copy)
        key_frames = frames if past is None else torch.cat([past.frames, frames])
        mask = window_mask(frames, key_frames, n, self.config.window)
        mask = None if mask is None else mask.to(z.device)
        time = torch.arange(start, start + t, device=z.device).repeat_interleave(n)  # made on the device: no copy
        rope = rope_tables(time, self.config.width // self.config.num_heads, torch.float32)  # exact angles, any autocast
        x = self.input_proj(z) + sincos_3d(self.config.width, (1, n, 1), z.device).to(z.dtype)
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            x, (k, v) = block(x, cond, mask, rope, None if past is None else (past.keys[i], past.values[i]))
            keys.append(k)
            values.append(v)
        cache = self._next_cache(keys, values, key_frames, n)
        return self.output_proj(self.norm(x)).view(*x.shape[:3], d), cache

    def _next_cache(self, keys: list[torch.Tensor], values: list[torch.Tensor], frames: torch.Tensor, n: int) -> KVCache:
        """The last `window - 1` frames' keys/values: all a next frame can attend to."""
        keep = len(frames) if not self.config.window else min(len(frames), self.config.window - 1)
        return KVCache([k[:, :, k.shape[2] - keep * n:] for k in keys], [v[:, :, v.shape[2] - keep * n:] for v in values],
                       frames[len(frames) - keep:], int(frames[-1]) + 1)
