"""Slot attention over a frame's patch tokens and the feature decoder that trains it (DINOSAUR-style).

C-JEPA (seed `../shared/seeds/000_57dac4a534ebac6b.txt`, "C-JEPA") reads objects from a frozen VideoSAUR encoder
trained on DINOv2 features; neither is available offline, so the slots are learned here: `SlotAttention`
(Locatello et al.) groups the frozen encoder's patch tokens into K slots, and `SlotDecoder` reconstructs those
tokens from the slots (each slot decoded at every patch position, mixed by a softmax over slots), which is what
makes the slots bind to regions instead of collapsing. The initial slots are learned (not sampled), so slot k tends
to bind the same object in every frame: the predictor and the planners' latent distance rely on that order.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class SlotAttention(nn.Module):
    """(B, P, in_dim) tokens -> (slots (B, K, dim), attention (B, K, P): each token's share among the slots)."""

    def __init__(self, in_dim: int, num_slots: int, dim: int, iters: int = 3, hidden: int | None = None):
        super().__init__()
        self.num_slots, self.dim, self.iters = num_slots, dim, iters
        self.init = nn.Parameter(torch.randn(1, num_slots, dim) * dim**-0.5)
        self.norm_input = nn.LayerNorm(in_dim)
        self.to_k = nn.Linear(in_dim, dim, bias=False)
        self.to_v = nn.Linear(in_dim, dim, bias=False)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.norm_slots = nn.LayerNorm(dim)
        self.gru = nn.GRUCell(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden or 2 * dim), nn.ReLU(), nn.Linear(hidden or 2 * dim, dim))

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.norm_input(tokens)
        k, v = self.to_k(x), self.to_v(x)
        slots = self.init.expand(x.shape[0], -1, -1)
        attn = x.new_zeros(x.shape[0], self.num_slots, x.shape[1])
        for _ in range(self.iters):
            q = self.to_q(self.norm_slots(slots)) * self.dim**-0.5
            attn = torch.einsum("bkd,bpd->bkp", q, k).softmax(dim=1)  # slots compete for each token
            weights = (attn + 1e-8) / (attn + 1e-8).sum(-1, keepdim=True)
            updates = weights @ v
            slots = self.gru(updates.flatten(0, 1), slots.flatten(0, 1)).view_as(updates)
            slots = slots + self.mlp(self.norm_mlp(slots))
        return slots, attn


class SlotDecoder(nn.Module):
    """(B, K, dim) slots -> (reconstructed tokens (B, P, out_dim), mixing weights (B, K, P))."""

    def __init__(self, dim: int, out_dim: int, num_patches: int, hidden: int = 128):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, 1, num_patches, dim) * 0.02)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, out_dim + 1))

    def forward(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.mlp(slots[:, :, None] + self.pos)  # (B, K, P, out_dim + 1)
        alpha = h[..., -1].softmax(dim=1)
        return (alpha[..., None] * h[..., :-1]).sum(1), alpha
