"""The world-model contract (DESIGN.md, contract 2) and its two families.

Every model offers, on batched tensors:
- `encode(frames (B, T, 3, H, W)) -> z (B, T, N, D)`;
- `predict(z, actions (B, T, A), states (B, T, S) | None) -> z_next (B, T, N, D)`, frame t predicting t + 1;
- `rollout(z_context (B, C, N, D), actions (B, H, A), context_actions, states) -> z_future (B, H, N, D)`.

`rollout` keeps only the model's `history` latest frames as context, applies the planned action h
at the last frame, appends the prediction and repeats: one predictor call per step for all B
candidates together. States, when the model uses them, are carried forward by adding the action
(exact for position and gripper; Euler-angle addition approximates the rotation composition for
the small per-step rotations planners use).

A model may carry a `StateReadout`: a linear map from a frame's latent to proprioceptive
dimensions (the end-effector position by default), trained with the world model. Planners read
predicted and goal latents through it (`mpc.readout_weight`), a cost in metres.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from world_model.ac_predictor import ACPredictor, ACPredictorConfig
from world_model.checkpoints import load_state_strict
from world_model.encoder import EncoderConfig, VideoViT, encode_frames, preprocess


class StateReadout(nn.Module):
    """Latent (..., N, D) -> state dimensions `dims` (..., len(dims)) in physical units, via the token mean.

    Linear on purpose: trained jointly with an end-to-end encoder it makes the latent carry the
    end-effector position linearly, which is what a distance-based planning cost needs.
    """

    def __init__(self, dim: int, dims: list[int]):
        super().__init__()
        self.dims = [int(d) for d in dims]
        self.linear = nn.Linear(dim, len(self.dims))
        self.register_buffer("mean", torch.zeros(len(self.dims)))
        self.register_buffer("std", torch.ones(len(self.dims)))

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype).clamp_min(1e-6))

    def normalised(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z.mean(dim=-2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.normalised(z) * self.std + self.mean

    def loss(self, z: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """MSE in normalised units between the readout of latents (..., N, D) and the states (..., S)."""
        target = (states[..., self.dims] - self.mean) / self.std
        return torch.nn.functional.mse_loss(self.normalised(z), target)


class WorldModel(nn.Module):
    """Shared `predict` and `rollout`; subclasses define `encode`."""

    predictor: ACPredictor
    history: int
    readout: StateReadout | None

    def __init__(self) -> None:
        super().__init__()
        self.readout = None  # set by build_model when the checkpoint has one

    def encode(self, frames: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def uses_states(self) -> bool:
        return bool(self.predictor.config.state_dim)

    def predict(self, z: torch.Tensor, actions: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        return self.predictor(z, actions, states if self.uses_states else None)

    def rollout(self, z_context: torch.Tensor, actions: torch.Tensor, context_actions: torch.Tensor | None = None,
                states: torch.Tensor | None = None) -> torch.Tensor:
        """Predict H future latents from C context latents and H planned actions.

        `context_actions` (B, C - 1, A): the actions executed between the context frames (zeros if
        unknown); `states` (B, C, S): the context's proprioceptive states (needed when the model uses them).
        """
        b, c = z_context.shape[:2]
        h_steps, a_dim = actions.shape[1], actions.shape[2]
        if context_actions is None:
            context_actions = actions.new_zeros(b, c - 1, a_dim)
        if self.uses_states and states is None:
            raise ValueError("this world model conditions on proprioceptive states: pass states (B, C, S)")
        z_all, a_all = z_context, context_actions
        s_all = states
        out = []
        for h in range(h_steps):
            a_all = torch.cat([a_all, actions[:, h : h + 1]], dim=1)
            z_in, a_in = z_all[:, -self.history :], a_all[:, -self.history :]
            s_in = s_all[:, -self.history :] if s_all is not None else None
            z_next = self.predict(z_in, a_in, s_in)[:, -1:]
            out.append(z_next)
            z_all = torch.cat([z_all, z_next], dim=1)
            if s_all is not None:
                s_next = s_all[:, -1:].clone()
                width = min(s_next.shape[-1], a_dim)
                s_next[..., :width] = s_next[..., :width] + actions[:, h : h + 1, :width]
                s_all = torch.cat([s_all, s_next], dim=1)
        return torch.cat(out, dim=1)


class JEPAWorldModel(WorldModel):
    """V-JEPA 2-AC: a frozen video JEPA encoder (each frame alone, layer-normed) + the AdaLN AC predictor."""

    def __init__(self, encoder: VideoViT, predictor: ACPredictor, history: int = 4, pool: bool = False):
        super().__init__()
        self.encoder = encoder.requires_grad_(False).eval()
        self.predictor = predictor
        self.history = history
        self.pool = pool

    def train(self, mode: bool = True) -> JEPAWorldModel:
        super().train(mode)
        self.encoder.eval()  # frozen: always in eval mode
        return self

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return encode_frames(self.encoder, frames, pool=self.pool)


class LeWMEncoder(nn.Module):
    """LeWorldModel's encoder: a small ViT whose CLS token goes through an MLP projector with BatchNorm."""

    def __init__(self, img_size: int = 64, patch_size: int = 8, width: int = 192, depth: int = 12, num_heads: int = 3,
                 embed_dim: int = 192, projector_hidden: int = 1024):
        super().__init__()
        self.vit = VisionTransformer(img_size=img_size, patch_size=patch_size, embed_dim=width, depth=depth,
                                     num_heads=num_heads, num_classes=0, class_token=True, global_pool="token")
        self.projector = nn.Sequential(nn.Linear(width, projector_hidden), nn.BatchNorm1d(projector_hidden), nn.GELU(),
                                       nn.Linear(projector_hidden, embed_dim))
        self.embed_dim = embed_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, D) embeddings."""
        return self.projector(self.vit(images))


class LeWorldModel(WorldModel):
    """LeWorldModel: encoder and predictor trained end to end; one token per frame, so planning is cheap."""

    def __init__(self, encoder: LeWMEncoder, predictor: ACPredictor, history: int = 3):
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor
        self.history = history

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        z = self.encoder(preprocess(frames.flatten(0, 1)))
        return z.view(b, t, 1, -1)


def build_model(config: dict[str, Any]) -> WorldModel:
    """A world model from the plain `config.json` dict of a checkpoint (no hydra needed)."""
    family = config["family"]
    predictor_cfg = ACPredictorConfig(**config["predictor"])
    model: WorldModel
    if family == "vjepa_ac":
        encoder = VideoViT(EncoderConfig(**config["encoder_config"]))
        model = JEPAWorldModel(encoder, ACPredictor(encoder.embed_dim, predictor_cfg), config["history"], config["pool"])
    elif family == "lewm":
        encoder = LeWMEncoder(**config["encoder"])
        model = LeWorldModel(encoder, ACPredictor(encoder.embed_dim, predictor_cfg), config["history"])
    else:
        raise ValueError(f"model family must be 'vjepa_ac' or 'lewm', got {family!r}")
    if config.get("readout"):
        model.readout = StateReadout(model.encoder.embed_dim, config["readout"]["dims"])
    return model


def load_world_model(folder: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[WorldModel, dict[str, Any]]:
    """(model, config) from a checkpoint folder written by world_model/train.py."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    model = build_model(config)
    load_state_strict(model, load_file(folder / "model.safetensors"), str(folder))
    return model.to(device).eval(), config
