"""C-JEPA-style object-centric world model (family `cjepa`): frozen encoder -> slots -> AdaLN predictor.

The seed (`../shared/seeds/000_57dac4a534ebac6b.txt`, "C-JEPA"): a frozen object-centric encoder, only the
predictor trained. Here the frozen part is a V-JEPA encoder checkpoint (`world_model/pretrain.py`); its patch
tokens are grouped into K slots by slot attention trained here with a feature-reconstruction loss
(`world_model/slots.py`; the seed's VideoSAUR-on-DINOv2 is not available offline). The predictor sees the slots
detached (prediction never reshapes them) and learns with **object-level masking**: for each clip, a fraction of
the slots is replaced by a learnable mask token in every context frame but the first, so the predictor must
carry those objects forward from their first appearance and the other objects. The latent of a frame is its
slots, (K, slot_dim) tokens, so the planners run on it unchanged (`z (B, T, N, D)` with N = K; V camera views:
K slots per view, N = V*K).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from world_model.ac_predictor import ACPredictor, ACPredictorConfig
from world_model.encoder import EncoderConfig, VideoViT, encode_frames
from world_model.models import FrozenEncoderModel, ModelSettings
from world_model.slots import SlotAttention, SlotDecoder


@dataclass
class CJEPASettings(ModelSettings):
    family: str = "cjepa"
    encoder_checkpoint: str = ""  # checkpoint folder of a pretrained encoder (world_model/pretrain.py), frozen
    num_slots: int = 4  # objects per frame (the latent's tokens)
    slot_dim: int = 64  # width of a slot
    slot_iters: int = 3  # slot-attention iterations
    decoder_hidden: int = 128  # hidden width of the slot decoder's MLP
    mask_slots: float = 0.25  # fraction of the slots masked over the context frames (object-level masking)
    reconstruction_weight: float = 1.0  # weight of the slots' feature reconstruction in the loss

    def to_config(self, action_dim: int) -> dict[str, Any]:
        if not self.encoder_checkpoint:
            raise ValueError("model.encoder_checkpoint is required for family cjepa (a world_model/pretrain.py "
                             "checkpoint folder)")
        if self.readout_weight > 0:
            raise ValueError(f"model.readout_weight: family cjepa has no state readout (its latent is slots); "
                             f"expected 0, got {self.readout_weight}")
        config_path = Path(self.encoder_checkpoint) / "config.json"
        if not config_path.exists():
            raise FileNotFoundError(f"{self.encoder_checkpoint} is not an encoder checkpoint folder (no config.json)")
        config = self.base_config(action_dim)
        config.update({"encoder_checkpoint": str(self.encoder_checkpoint),
                       "encoder_config": json.loads(config_path.read_text())["encoder"],
                       "slots": {"num_slots": self.num_slots, "slot_dim": self.slot_dim, "iters": self.slot_iters,
                                 "decoder_hidden": self.decoder_hidden}})
        config["loss"].update({"mask_slots": self.mask_slots, "reconstruction_weight": self.reconstruction_weight})
        return config


class ObjectMask(nn.Module):
    """C-JEPA's object-level masking: chosen slots of each clip replaced by a learnable token after frame 0."""

    def __init__(self, dim: int):
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, z: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
        """z (B, T, K, D) -> z with round(fraction * K) slots per clip masked in frames 1..T-1 (seeded)."""
        b, t, k, _ = z.shape
        count = int(round(fraction * k))
        if count == 0 or t < 2:
            return z
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.rand(b, k, generator=generator).argsort(dim=1)[:, :count]  # (B, count), no loop over clips
        hidden = torch.zeros(b, t, k, 1, dtype=torch.bool)
        hidden[torch.arange(b)[:, None], 1:, chosen] = True
        return torch.where(hidden.to(z.device), self.mask_token.to(z.dtype), z)


class CJEPAWorldModel(FrozenEncoderModel):
    """Frozen V-JEPA encoder, trained slot attention + decoder, AdaLN predictor over the slots (object masking).

    Loss: MSE of the predicted next slots (inputs object-masked, slots detached) + `reconstruction_weight` x MSE of
    the frozen patch tokens decoded from the slots (what trains the slot module).
    """

    family = "cjepa"
    Settings = CJEPASettings

    def __init__(self, encoder: VideoViT, predictor: ACPredictor, history: int, slots: dict[str, int],
                 mask_slots: float = 0.25, reconstruction_weight: float = 1.0):
        super().__init__(predictor, history)
        self.encoder = encoder.requires_grad_(False).eval()
        patches = (encoder.config.img_size // encoder.patch_size) ** 2
        self.slots = SlotAttention(encoder.embed_dim, slots["num_slots"], slots["slot_dim"], slots["iters"])
        self.decoder = SlotDecoder(slots["slot_dim"], encoder.embed_dim, patches, slots["decoder_hidden"])
        self.masking = ObjectMask(slots["slot_dim"])
        self.mask_slots, self.reconstruction_weight = mask_slots, reconstruction_weight

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CJEPAWorldModel:
        encoder = VideoViT(EncoderConfig(**config["encoder_config"]))
        loss = config.get("loss", {})
        predictor = ACPredictor(config["slots"]["slot_dim"], ACPredictorConfig.from_checkpoint(config["predictor"]))
        return cls(encoder, predictor, config["history"], config["slots"], loss.get("mask_slots", 0.25),
                   loss.get("reconstruction_weight", 1.0))

    def trainable(self) -> nn.Module:
        return nn.ModuleList([self.slots, self.decoder, self.masking, self.predictor])

    def _slots(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(slots (B, T, K, D), frozen patch tokens (B*T, P, D_enc)) of (B, T, 3, H, W) uint8 frames."""
        tokens = encode_frames(self.encoder, frames).flatten(0, 1)  # frozen, layer-normed, no gradient
        slots, _ = self.slots(tokens)
        return slots.unflatten(0, frames.shape[:2]), tokens

    def _encode(self, frames: torch.Tensor, views: torch.Tensor | None = None) -> torch.Tensor:
        return self._slots(frames)[0]  # several views: K slots per view, told apart by token position

    def loss(self, batch: dict[str, torch.Tensor], seed: int = 0, distributed: bool = True
             ) -> tuple[torch.Tensor, dict[str, float]]:
        z, tokens = self._slots(self.flat_views(batch["frames"]))  # each view's slots reconstruct its own tokens
        reconstruction = F.mse_loss(self.decoder(z.flatten(0, 1))[0], tokens)
        prediction, parts, _ = self.prediction_loss(self.merge_views(z), batch, seed, distributed)
        parts["reconstruction"] = reconstruction.item()
        return prediction + self.reconstruction_weight * reconstruction, parts

    def prediction_loss(self, z: torch.Tensor, batch: dict[str, torch.Tensor], seed: int, distributed: bool
                        ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        z = z.detach()  # only the predictor learns from prediction; the slots come from reconstruction
        context = self.masking(z[:, :-1], self.mask_slots, seed)
        pred = self.predict(context, batch["actions"], batch["states"][:, :-1])
        loss = F.mse_loss(pred, z[:, 1:])
        return loss, {"prediction": loss.item()}, pred
