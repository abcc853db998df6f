"""Meta's released V-JEPA 2-AC (`vjepa2-ac-vitg.pt`): its predictor, its loader and its conventions, as a family.

The released predictor is not our AdaLN one: per time step it sees the tokens [action, state, N patch tokens],
block-causal attention (a token of step t sees every token of steps <= t) and 3D RoPE with V-JEPA 2's
frequency layout quirk; action and state tokens are rotated on time only (their height/width positions are 0,
a rotation by zero) and dropped at the output. Its blocks are the encoder's `Block` (same parameter names).

Conventions, exactly as Meta's code: each frame is encoded alone as a 2-frame tubelet [f, f]; the tokens get a
parameter-free layer norm, and so does every predictor output; the planning rollout carries the pose forward
with `common.rotations.compose_pose`; the fine-tuning loss is teacher forcing + the trainer's `rollout_steps`
rollout, L1 on layer-normed tokens, only the predictor trains.

`load_released(path)` reads only the `encoder` and `predictor` entries of the (11.7 GB) file, memory-mapped, and
loads both strictly; the architecture comes from the file name (`RELEASED`), overridable by a `<stem>.json`
beside the file or by the caller.
"""

from __future__ import annotations

import dataclasses
import json
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from common.droid import ACTION_DIM
from common.rotations import compose_pose
from world_model.checkpoints import load_state_strict, strip_prefixes
from world_model.encoder import IMAGENET_MEAN, IMAGENET_STD, Block, EncoderConfig, VideoViT
from world_model.models import FrozenEncoderModel, ModelSettings


@dataclass
class PredictorConfig:
    """The released predictor's sizes (`vit_ac_predictor` defaults: 1024 wide, 24 blocks, 16 heads)."""

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    action_dim: int = ACTION_DIM
    num_frames: int = 64  # frames its mask was built for: num_frames // tubelet time steps at most


@dataclass
class VJEPA2ACConfig:
    encoder: EncoderConfig
    predictor: PredictorConfig = field(default_factory=PredictorConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"encoder": dataclasses.asdict(self.encoder), "predictor": dataclasses.asdict(self.predictor)}


#: Released action-conditioned files: name (without .pt) -> architecture.
RELEASED: dict[str, VJEPA2ACConfig] = {
    "vjepa2-ac-vitg": VJEPA2ACConfig(EncoderConfig(size="giant", img_size=256, use_rope=True, rope_vjepa2_layout=True)),
}


def released_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> VJEPA2ACConfig:
    """The architecture of a released file: from its name, then `<stem>.json` beside it, then `overrides`.

    Overrides are {"encoder": {...}, "predictor": {...}} of field values; a file of an unknown name needs them
    (its sizes then start from the released ViT-g one).
    """
    path = Path(path)
    stem = path.name.removesuffix(".pt")
    sidecar = sidecar_settings(path)
    layers = [d for d in (sidecar, overrides or {}) if d]
    if stem not in RELEASED and not any(d.get("encoder") or d.get("predictor") for d in layers):
        raise ValueError(f"cannot tell the architecture of {path.name}: name it one of {sorted(RELEASED)} (.pt), put "
                         f"{{\"encoder\": {{...}}, \"predictor\": {{...}}}} in {path.with_name(stem + '.json')}, or pass "
                         f"the architecture")
    base = RELEASED.get(stem, RELEASED["vjepa2-ac-vitg"])
    encoder, predictor = dataclasses.asdict(base.encoder), dataclasses.asdict(base.predictor)
    for layer in layers:
        for name, target, cls in (("encoder", encoder, EncoderConfig), ("predictor", predictor, PredictorConfig)):
            unknown = sorted(set(layer.get(name) or {}) - {f.name for f in dataclasses.fields(cls)})
            if unknown:
                raise ValueError(f"{path}: unknown {name} settings {unknown}")
            target.update(layer.get(name) or {})
    return VJEPA2ACConfig(EncoderConfig(**encoder), PredictorConfig(**predictor))


#: What `<stem>.json` beside a released file may hold.
SIDECAR_KEYS = ("encoder", "predictor", "history", "state_frame", "data", "planning", "compile")


def sidecar_settings(path: str | os.PathLike) -> dict[str, Any]:
    """`<stem>.json` beside a released file ({} when absent): architecture, history, data and planning settings."""
    path = Path(path)
    sidecar = path.with_name(path.name.removesuffix(".pt") + ".json")
    if not sidecar.exists():
        return {}
    try:
        settings = json.loads(sidecar.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{sidecar}: not valid JSON ({err})") from err
    unknown = sorted(set(settings) - set(SIDECAR_KEYS))
    if unknown:
        raise ValueError(f"{sidecar}: unknown settings {unknown}; valid: {list(SIDECAR_KEYS)}")
    return settings


# -- the predictor ---------------------------------------------------------------------------------------


def block_causal_mask(steps: int, tokens_per_step: int, device: torch.device | None = None) -> torch.Tensor:
    """(S*K, S*K) boolean mask, True where a token may attend: every token of steps <= its own."""
    step = torch.arange(steps, device=device).repeat_interleave(tokens_per_step)
    return step[:, None] >= step[None, :]


class VJEPA2ACPredictor(nn.Module):
    """Meta's `VisionTransformerPredictorAC` (use_rope, frame-causal, no extrinsics): parameter names as released.

    forward(z (B, T, N, D), actions (B, T, A), states (B, T, A)) -> raw tokens (B, T, N, D); slot t predicts t + 1.
    """

    COND_TOKENS = 2  # action, state

    def __init__(self, encoder_dim: int, grid: tuple[int, int], tubelet_size: int, config: PredictorConfig):
        super().__init__()
        self.config, self.grid, self.encoder_dim = config, grid, encoder_dim
        self.max_steps = config.num_frames // tubelet_size
        d = config.embed_dim
        self.predictor_embed = nn.Linear(encoder_dim, d)
        self.action_encoder = nn.Linear(config.action_dim, d)
        self.state_encoder = nn.Linear(config.action_dim, d)
        self.extrinsics_encoder = nn.Linear(config.action_dim - 1, d)  # in every released file, unused
        self.predictor_blocks = nn.ModuleList([Block(d, config.num_heads, config.mlp_ratio, qkv_bias=True, use_rope=True,
                                                     vjepa2_layout=True) for _ in range(config.depth)])
        self.predictor_norm = nn.LayerNorm(d, eps=1e-6)
        self.predictor_proj = nn.Linear(d, encoder_dim)
        self.apply(self._init)
        for i, block in enumerate(self.predictor_blocks):
            block.attn.proj.weight.data.div_((2.0 * (i + 1)) ** 0.5)
            block.mlp.fc2.weight.data.div_((2.0 * (i + 1)) ** 0.5)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def positions(self, steps: int, device: torch.device) -> torch.Tensor:
        """(S*(2+N), 3) (time, row, column) per token; action and state tokens sit at (t, 0, 0)."""
        h, w = self.grid
        cell = torch.arange(h * w, device=device)
        patch = torch.stack([torch.zeros_like(cell), cell // w, cell % w], -1)
        per_step = torch.cat([patch.new_zeros(self.COND_TOKENS, 3), patch])  # (2 + N, 3)
        pos = per_step[None].repeat(steps, 1, 1)
        pos[..., 0] = torch.arange(steps, device=device)[:, None]
        return pos.flatten(0, 1).float()

    def forward(self, z: torch.Tensor, actions: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        b, t, n, d = z.shape
        if n != self.grid[0] * self.grid[1] or d != self.encoder_dim:
            raise ValueError(f"the predictor takes (B, T, {self.grid[0] * self.grid[1]}, {self.encoder_dim}) tokens, "
                             f"got {tuple(z.shape)}")
        for name, x in (("actions", actions), ("states", states)):
            if x.shape[:2] != (b, t) or x.shape[-1] != self.config.action_dim:
                raise ValueError(f"{name} must be (B, T, {self.config.action_dim}) = ({b}, {t}, ...), got {tuple(x.shape)}")
        if t > self.max_steps:
            raise ValueError(f"{t} time steps exceed the predictor's {self.max_steps} (num_frames / tubelet)")
        x = torch.cat([self.action_encoder(actions)[:, :, None], self.state_encoder(states)[:, :, None],
                       self.predictor_embed(z)], dim=2).flatten(1, 2)  # (B, T*(2+N), C)
        positions = self.positions(t, z.device)
        mask = block_causal_mask(t, self.COND_TOKENS + n, z.device)
        for block in self.predictor_blocks:
            x = block(x, positions, mask)
        x = x.unflatten(1, (t, self.COND_TOKENS + n))[:, :, self.COND_TOKENS:]
        return self.predictor_proj(self.predictor_norm(x))


# -- conventions ------------------------------------------------------------------------------------------


def preprocess_clip(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 frames (B, T, 3, H, W) -> (B, 3, T, size, size) float: Meta's eval transform exactly.

    Centre square crop, bilinear resize (align_corners=False), then (x - 255 mean) / (255 std) on 0..255 pixels.
    """
    b, t = frames.shape[:2]
    x = frames.float()
    h, w = x.shape[-2:]
    side = min(h, w)
    x = x[..., (h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
    if side != size:
        x = F.interpolate(x.flatten(0, 1), size=(size, size), mode="bilinear", align_corners=False).unflatten(0, (b, t))
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1) * 255.0
    return ((x - mean) / std).transpose(1, 2)


STATE_FRAMES = ("tcp", "droid")


def to_droid_frame(states: torch.Tensor) -> torch.Tensor:
    """States (..., 7) in our TCP convention -> DROID's: the end-effector frame turned back 180 degrees about x.

    Our envs and robots report R_tcp = R_ee @ Rx(pi), so gripper-down reads roll 0; DROID (the released model's
    data) reads it as roll +-pi. With extrinsic xyz angles R @ Rx(pi) is roll + pi (wrapped); actions, applied on
    the left, are the same in both conventions.
    """
    roll = torch.remainder(states[..., 3:4] + 2 * torch.pi, 2 * torch.pi) - torch.pi
    return torch.cat([states[..., :3], roll, states[..., 4:]], dim=-1)


def layer_norm(z: torch.Tensor) -> torch.Tensor:
    """The parameter-free layer norm V-JEPA 2-AC puts on every token it compares (normalize_reps)."""
    return F.layer_norm(z.float(), (z.shape[-1],))


def encode_tokens(encoder: VideoViT, clip: torch.Tensor) -> torch.Tensor:
    """Raw encoder tokens (B, T, N, D) of a preprocessed clip (B, 3, T, H, W), each frame alone as [f, f]."""
    b, _, t = clip.shape[:3]
    frames = clip.transpose(1, 2).flatten(0, 1).unsqueeze(2).expand(-1, -1, encoder.tubelet_size, -1, -1)
    return encoder(frames).unflatten(0, (b, t))


# -- loading ------------------------------------------------------------------------------------------------


class _Pair(nn.Module):
    def __init__(self, encoder: nn.Module, predictor: nn.Module):
        super().__init__()
        self.encoder, self.predictor = encoder, predictor


def build_modules(config: VJEPA2ACConfig) -> tuple[VideoViT, VJEPA2ACPredictor]:
    """The encoder and predictor of an architecture (random weights)."""
    encoder = VideoViT(config.encoder)
    grid = (config.encoder.img_size // config.encoder.patch_size,) * 2
    return encoder, VJEPA2ACPredictor(encoder.embed_dim, grid, config.encoder.tubelet_size, config.predictor)


def read_released(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The `encoder.*` and `predictor.*` weights of a released file, prefixes stripped, memory-mapped.

    Only those two entries are touched: the optimizer state and target encoder of the 11.7 GB file stay on disk.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"V-JEPA 2-AC checkpoint {path} not found (download it yourself; nothing is fetched)")
    checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    missing = [k for k in ("encoder", "predictor") if k not in checkpoint]
    if missing:
        raise KeyError(f"{path}: no {' and '.join(repr(k) for k in missing)} entry (has {sorted(checkpoint)})")
    return {f"{name}.{k}": v.float() if v.is_floating_point() else v  # float32 as the modules (no copy if already)
            for name in ("encoder", "predictor") for k, v in strip_prefixes(checkpoint[name]).items()}


def load_released(path: str | os.PathLike, overrides: dict[str, Any] | None = None
                  ) -> tuple[VideoViT, VJEPA2ACPredictor, VJEPA2ACConfig]:
    """(encoder, predictor, architecture) of a released file, both loaded strictly: one error lists every
    missing, unexpected and mis-shaped key of either."""
    config = released_config(path, overrides)
    with torch.device("meta"):  # no random init of 1.3 B parameters: the file's tensors become the parameters
        encoder, predictor = build_modules(config)
    load_state_strict(_Pair(encoder, predictor), read_released(path), str(path), assign=True)
    return encoder.eval(), predictor.eval(), config


# -- the family ---------------------------------------------------------------------------------------------


@dataclass
class VJEPA2ACSettings(ModelSettings):
    """`model=vjepa2_ac`: fine-tune the released predictor (configs/model/vjepa2_ac.yaml)."""

    family: str = "vjepa2_ac"
    checkpoint: str = ""  # the released vjepa2-ac-vitg.pt (or a file of that layout)
    encoder: dict[str, Any] | None = None  # architecture overrides (EncoderConfig fields); None: from the file name
    predictor: dict[str, Any] | None = None  # ... (PredictorConfig fields)
    history: int = 1  # context frames when planning (Meta's notebook plans from the current frame)
    train_frames: int = 4  # frames per training clip: teacher forcing over train_frames - 1 transitions
    rollout_steps: int = 2  # the trainer's auto_steps: its rollout loss covers this many frames
    state_frame: str = "tcp"  # the data's pose convention: tcp (our envs and robots) | droid (datasets.convert_droid)

    def clip_frames(self) -> int:
        return self.train_frames

    def to_config(self, action_dim: int) -> dict[str, Any]:
        if not self.checkpoint:
            raise ValueError("model.checkpoint is required for family vjepa2_ac (the released vjepa2-ac-vitg.pt)")
        if action_dim != ACTION_DIM:
            raise ValueError(f"the released predictor takes {ACTION_DIM}-D delta-pose actions; the data gives {action_dim}-D "
                             f"(use data.action_mode=delta_pose)")
        if not 1 <= self.rollout_steps < self.train_frames:
            raise ValueError(f"rollout_steps ({self.rollout_steps}) must be >= 1 and below train_frames ({self.train_frames})")
        overrides = {"encoder": self.encoder or {}, "predictor": self.predictor or {}}
        if self.state_frame not in STATE_FRAMES:
            raise ValueError(f"model.state_frame must be one of {STATE_FRAMES}, got {self.state_frame!r}")
        config = {"family": self.family, "history": self.history, "released_checkpoint": str(self.checkpoint),
                  "state_frame": self.state_frame,
                  **released_config(self.checkpoint, overrides).to_dict(),
                  "loss": {"readout_weight": self.readout_weight, "rollout_steps": self.rollout_steps}}
        if self.readout_weight > 0:
            config["readout"] = {"dims": [int(d) for d in self.readout_dims]}
        return config


class VJEPA2ACWorldModel(FrozenEncoderModel):
    """The released V-JEPA 2-AC behind the world-model contract: frozen encoder, Meta's predictor and conventions.

    `predict` and `rollout` return layer-normed tokens; `rollout` without `future_states` composes the poses
    (`compose_pose`), keeps the whole context (as Meta's planner) and makes one predictor call per step for all
    candidates. On CUDA both run under bf16 autocast (`autocast=False` turns it off).
    """

    family = "vjepa2_ac"
    Settings = VJEPA2ACSettings
    multi_view = False  # Meta's predictor is built for one camera's token grid
    predictor: VJEPA2ACPredictor  # type: ignore[assignment]

    def __init__(self, encoder: VideoViT, predictor: VJEPA2ACPredictor, history: int = 1, rollout_steps: int = 2,
                 readout_weight: float = 0.0, autocast: bool = True, state_frame: str = "droid"):
        super().__init__(predictor, history, readout_weight)  # type: ignore[arg-type]
        if state_frame not in STATE_FRAMES:
            raise ValueError(f"state_frame must be one of {STATE_FRAMES}, got {state_frame!r}")
        self.state_frame = state_frame  # "tcp": states come in our envs' convention and are turned to DROID's
        self.encoder = encoder.requires_grad_(False).eval()
        self.rollout_steps = rollout_steps
        self.autocast = autocast
        self.image_size = encoder.config.img_size
        object.__setattr__(self, "_compiled", None)  # not a submodule: the state dict stays the predictor's

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VJEPA2ACWorldModel:
        arch = VJEPA2ACConfig(EncoderConfig(**config["encoder"]), PredictorConfig(**config["predictor"]))
        loss = config.get("loss", {})
        return cls(*build_modules(arch), config.get("history", 1), loss.get("rollout_steps", 2),
                   loss.get("readout_weight", 0.0), state_frame=config.get("state_frame", "droid"))

    def load_pretrained(self, config: dict[str, Any], assign: bool = False) -> None:
        """The released file's weights (`assign=True`: they become the parameters of a model built on meta)."""
        load_state_strict(_Pair(self.encoder, self.predictor), read_released(config["released_checkpoint"]),
                          config["released_checkpoint"], assign=assign)

    def compile_predictor(self, **kwargs: Any) -> VJEPA2ACWorldModel:
        """Run the predictor calls through `torch.compile` (optional; the weights and state dict are unchanged)."""
        object.__setattr__(self, "_compiled", torch.compile(self.predictor, **kwargs))
        return self

    def trainable(self) -> nn.Module:
        return nn.ModuleList([self.predictor] + ([self.readout] if self.readout is not None else []))

    @property
    def uses_states(self) -> bool:
        return True

    def _autocast(self, device: torch.device) -> AbstractContextManager[Any]:
        if self.autocast and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (B, T, 3, H, W) -> layer-normed tokens (B, T, N, D), each frame encoded alone."""
        with self._autocast(frames.device):
            return layer_norm(encode_tokens(self.encoder, preprocess_clip(frames, self.image_size)))

    def predict(self, z: torch.Tensor, actions: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        """Layer-normed predictions (B, T, N, D) of frames 1..T from frames 0..T-1, their actions and states."""
        if states is None:
            raise ValueError("V-JEPA 2-AC conditions on proprioceptive states: pass states (B, T, 7)")
        if self.state_frame == "tcp":
            states = to_droid_frame(states)
        with self._autocast(z.device):
            return layer_norm((self.predictor if self._compiled is None else self._compiled)(z, actions, states))

    def rollout(self, z_context: torch.Tensor, actions: torch.Tensor, context_actions: torch.Tensor | None = None,
                states: torch.Tensor | None = None, future_states: torch.Tensor | None = None) -> torch.Tensor:
        """H future latents (K, H, N, D) from the context (1 or K, C, N, D), its C - 1 executed actions and C states.

        Each step predicts from the whole sequence so far; the pose of a predicted frame is `future_states` when
        known (training), else `compose_pose(last pose, its action)` (Meta's planning rollout).
        """
        if states is None:
            raise ValueError("V-JEPA 2-AC conditions on proprioceptive states: pass states (B, C, 7)")
        k, c = actions.shape[0], z_context.shape[1]
        device = z_context.device  # candidates may be sampled elsewhere (e.g. on the CPU)

        def batch(x: torch.Tensor | None) -> torch.Tensor | None:  # a context of batch 1 is shared by the K candidates
            return None if x is None else x.to(device).expand(k, *x.shape[1:])

        if context_actions is None:
            context_actions = actions.new_zeros(1, c - 1, actions.shape[-1])
        actions, future_states = actions.to(device), batch(future_states)
        z_all, a_all, s_all = batch(z_context), batch(context_actions), batch(states)
        out = []
        for h in range(actions.shape[1]):
            a_all = torch.cat([a_all, actions[:, h : h + 1]], dim=1)
            z_next = self.predict(z_all, a_all, s_all)[:, -1:]
            out.append(z_next)
            if h == actions.shape[1] - 1:
                break
            z_all = torch.cat([z_all, z_next.to(z_all.dtype)], dim=1)
            s_next = future_states[:, h : h + 1] if future_states is not None else \
                compose_pose(s_all[:, -1], actions[:, h].to(s_all.dtype))[:, None]
            s_all = torch.cat([s_all, s_next], dim=1)
        return torch.cat(out, dim=1)

    def trainer_rollout(self, z: torch.Tensor, teacher: torch.Tensor, actions: torch.Tensor, states: torch.Tensor,
                        steps: int) -> torch.Tensor:
        """Meta's training rollout (auto_steps): from [z0, teacher-forced frame 1], `steps` frames with true states."""
        seq = torch.cat([z[:, :1], teacher[:, :1]], dim=1)
        for n in range(1, steps):
            seq = torch.cat([seq, self.predict(seq, actions[:, : n + 1], states[:, : n + 1])[:, -1:]], dim=1)
        return seq[:, 1:]

    def prediction_loss(self, z: torch.Tensor, batch: dict[str, torch.Tensor], seed: int, distributed: bool
                        ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """L1 teacher forcing over the clip + L1 of the trainer's rollout (both on layer-normed tokens)."""
        z = z.detach()
        t = z.shape[1]
        actions, states = batch["actions"][:, : t - 1], batch["states"]
        teacher = self.predict(z[:, :-1], actions, states[:, :-1])
        jloss = (teacher - z[:, 1:]).abs().mean()
        rolled = self.trainer_rollout(z, teacher, actions, states, self.rollout_steps)
        sloss = (rolled - z[:, 1 : 1 + rolled.shape[1]]).abs().mean()
        return jloss + sloss, {"teacher_forcing": jloss.item(), "rollout": sloss.item()}, teacher


def released_model_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `config.json` equivalent of a released file (architecture, history, state frame, data and planning
    settings: defaults < `<stem>.json` < `overrides`). States default to our envs' and robots' TCP convention."""
    path = Path(path)
    sidecar = {**sidecar_settings(path), **{k: v for k, v in (overrides or {}).items() if k not in ("encoder", "predictor")}}
    arch = released_config(path, overrides)
    data = {"image_size": arch.encoder.img_size, "camera": None, "fps": None, "frameskip": None,
            "action_mode": "delta_pose", "recorded_actions": [], "recorded_reduce": "sum", **sidecar.get("data", {})}
    config = {"family": VJEPA2ACWorldModel.family, "history": int(sidecar.get("history", 1)),
              "state_frame": sidecar.get("state_frame", "tcp"),
              "released_checkpoint": str(path), **arch.to_dict(), "loss": {}, "data": data}
    if sidecar.get("planning"):
        config["planning"] = sidecar["planning"]
    if sidecar.get("compile"):
        config["compile"] = True
    return config


def load_released_model(path: str | os.PathLike, device: str | torch.device = "cpu",
                        overrides: dict[str, Any] | None = None) -> tuple[VJEPA2ACWorldModel, dict[str, Any]]:
    """(world model in eval mode, its config) straight from a released `.pt` file: what planners load."""
    config = released_model_config(path, overrides)
    with torch.device("meta"):
        model = VJEPA2ACWorldModel.from_config(config)
    model.load_pretrained(config, assign=True)
    model = model.to(device).eval()
    if config.get("compile") and torch.device(device).type == "cuda":  # `"compile": true` in <stem>.json
        model.compile_predictor()
    return model, config
