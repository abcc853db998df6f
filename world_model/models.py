"""The world-model contract (DESIGN: contract 2) and its families, each a class that knows its own loss.

Every model offers, on batched tensors:
- `encode(frames (B, T, 3, H, W) uint8) -> z (B, T, N, D)`; a model of V camera views (`data.cameras` in its
  config.json) takes `(B, T, V, 3, H, W)` and returns `(B, T, V*N, D)`: each view encoded alone by the same encoder
  (LeWorldModel: plus a learned view embedding), the views' tokens concatenated per frame in camera order;
- `predict(z, actions (B, T, A), states (B, T, S) | None) -> z_next (B, T, N, D)`, frame t predicting t + 1;
- `rollout(z_context (B, C, N, D), actions (B, H, A), context_actions, states) -> z_future (B, H, N, D)`:
  the one autoregressive rollout, used by training (its multistep loss) and by the planners;
- `loss(batch) -> (loss, parts)`: the family's training loss on a batch of clips (nanoGPT-style), the
  state-readout term included.

`rollout` applies the planned action h at the last frame, appends the prediction and repeats: one
predictor call per step for all B candidates together, each frame attending to the model's `history`
latest frames (with rotary time, through a cache of their keys/values, so each step computes one new
frame). States, when the model uses them, are the given `future_states` (training: the
recorded ones) or carried forward from the actions: for delta-pose actions on DROID states the pose
composition of V-JEPA 2-AC (`common.rotations.compose_pose`: xyz added, R(delta) R, gripper clipped),
otherwise added.

A family is a subclass with a `family` name, a `Settings` dataclass (the `model:` section of
configs/train.yaml) and `from_config` (rebuild from a checkpoint's `config.json`); subclassing
registers it, so `build_model(config)` is the one way to build any model. A model may carry a
`StateReadout` (attached in `build_model` only): a linear map from a frame's latent to proprioceptive
dimensions (the end-effector position by default), trained with the world model; planners read
predicted and goal latents through it, a cost in metres.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import VisionTransformer

from common.droid import ACTION_DIM, STATE_DIM
from common.errors import UserError
from common.rotations import compose_pose
from world_model.ac_predictor import ACPredictor, ACPredictorConfig
from world_model.checkpoints import load_encoder, load_state_strict
from world_model.encoder import EncoderConfig, VideoViT, encode_frames, pool_grid, preprocess
from world_model.sigreg import sigreg


class StateReadout(nn.Module):
    """Latent (..., N, D) -> state dimensions `dims` (..., len(dims)) in physical units, via the token mean.

    Linear on purpose: trained jointly with an end-to-end encoder it makes the latent carry the
    end-effector position linearly, which is what a distance-based planning cost needs. With V camera views
    the token mean is taken per view and the V means are concatenated (V * D inputs), so each view has weights
    of its own (the wrist view sees the arm's position differently from the exterior one).
    """

    def __init__(self, dim: int, dims: list[int], views: int = 1):
        super().__init__()
        self.dims = [int(d) for d in dims]
        self.views = int(views)
        self.linear = nn.Linear(dim * self.views, len(self.dims))
        self.register_buffer("mean", torch.zeros(len(self.dims)))
        self.register_buffer("std", torch.ones(len(self.dims)))

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype).clamp_min(1e-6))

    def normalised(self, z: torch.Tensor) -> torch.Tensor:
        if self.views == 1:
            return self.linear(z.mean(dim=-2))
        return self.linear(z.unflatten(-2, (self.views, -1)).mean(dim=-2).flatten(-2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.normalised(z) * self.std + self.mean

    def loss(self, z: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """MSE in normalised units between the readout of latents (..., N, D) and the states (..., S)."""
        target = (states[..., self.dims] - self.mean) / self.std
        return F.mse_loss(self.normalised(z), target)


def model_cameras(config: dict[str, Any]) -> list[str]:
    """The cameras a checkpoint's model sees, in order: its `data.cameras`, else `[data.camera]`; [] when it took
    each episode's first camera (config.json written before `data.cameras`, or no camera named)."""
    data = config.get("data") or {}
    if data.get("cameras"):
        return [str(c) for c in data["cameras"]]
    return [str(data["camera"])] if data.get("camera") else []


def model_views(config: dict[str, Any]) -> int:
    """Camera views per frame of a checkpoint's model (1 unless `data.cameras` names several)."""
    return max(len(model_cameras(config)), 1)


@dataclass
class ModelSettings:
    """What every family is trained with (`model:` in configs/train.yaml); families add their own fields."""

    family: str = ""
    history: int = 3
    readout_weight: float = 0.0  # > 0: train a linear latent -> state[readout_dims] readout with this weight
    readout_dims: tuple[int, ...] = (0, 1, 2)  # end-effector xyz
    predictor: ACPredictorConfig = field(default_factory=ACPredictorConfig)  # its action_dim comes from the data

    def clip_frames(self) -> int:
        """Frames per training clip."""
        return self.history + 1

    def base_config(self, action_dim: int) -> dict[str, Any]:
        """The config.json entries every family shares."""
        config: dict[str, Any] = {
            "family": self.family, "history": self.history,
            "predictor": {**dataclasses.asdict(self.predictor), "action_dim": int(action_dim),
                          "window": self.predictor.window or self.history},
            "loss": {"readout_weight": self.readout_weight},
        }
        if self.readout_weight > 0:
            config["readout"] = {"dims": [int(d) for d in self.readout_dims]}
        return config

    def to_config(self, action_dim: int) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def feature_cache(self, data_root: str, camera: str | None, image_size: int) -> Any:
        """The dataset's cache of frozen features this family trains on, or None (encode pixels)."""
        return None


class WorldModel(nn.Module):
    """Shared contract: `predict`, `rollout`, `loss`; families define `encode` and `prediction_loss`."""

    family: ClassVar[str] = ""
    Settings: ClassVar[type[ModelSettings]] = ModelSettings
    families: ClassVar[dict[str, type[WorldModel]]] = {}
    multi_view: ClassVar[bool] = True  # whether the family can see several camera views (`data.cameras`)

    predictor: ACPredictor
    encoder: nn.Module

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("family"):
            WorldModel.families[cls.family] = cls

    def __init__(self, predictor: ACPredictor, history: int, readout_weight: float = 0.0) -> None:
        super().__init__()
        if getattr(predictor, "caches", False) and not predictor.config.window:
            predictor.config.window = history  # a frame attends to the model's history (config.json records it)
        self.predictor = predictor
        self.history = history
        self.readout_weight = readout_weight
        self.readout: StateReadout | None = None  # attached by build_model when the config has one
        self.pose_states = False  # states (xyz, rpy, gripper) moved by delta-pose actions: compose, not add
        self.views = 1  # camera views per frame (set by build_model from data.cameras)
        self.cameras: list[str] = []  # their names, in order ([]: one unnamed camera)

    @classmethod
    def family_class(cls, name: str) -> type[WorldModel]:
        if name not in cls.families:
            raise ValueError(f"model family must be one of {sorted(cls.families)}, got {name!r}")
        return cls.families[name]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WorldModel:  # pragma: no cover - abstract
        """The architecture described by a checkpoint's config.json (weights not loaded)."""
        raise NotImplementedError

    def load_pretrained(self, config: dict[str, Any]) -> None:
        """Weights a fresh training run starts from that are not random (e.g. a frozen encoder)."""

    # -- the contract ----------------------------------------------------------------
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (B, T, 3, H, W) -> latents (B, T, N, D); with V views (B, T, V, 3, H, W) -> (B, T, V*N, D)."""
        flat = self.flat_views(frames)
        views = None
        if self.views > 1:  # the view of each frame of the flattened batch (B*T*V frames, views innermost)
            views = torch.arange(self.views, device=frames.device).repeat(flat.shape[0] * flat.shape[1] // self.views)
        return self.merge_views(self._encode(flat, views))

    def _encode(self, frames: torch.Tensor, views: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover
        """The family's encoder: frames (B, T, 3, H, W) -> (B, T, N, D), each frame alone; `views` (B*T,) the camera
        view of each frame (None: one view) for families that embed it."""
        raise NotImplementedError

    def flat_views(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames of this model's views as one sequence: (B, T, 3, H, W) for one view, (B, T, V, 3, H, W) ->
        (B, T*V, 3, H, W) for V; anything else is refused naming the shape expected."""
        v = self.views
        if frames.dim() == 6 and frames.shape[2] == v:
            return frames.flatten(1, 2)
        if frames.dim() == 5 and v == 1:
            return frames
        seen = f"{v} camera views {self.cameras}" if v > 1 else "one camera view"
        raise ValueError(f"this model sees {seen}: expected frames (B, T, {v}, 3, H, W)"
                         + (" or (B, T, 3, H, W)" if v == 1 else "") + f", got {tuple(frames.shape)}")

    def merge_views(self, z: torch.Tensor) -> torch.Tensor:
        """(B, T*V, N, D) per-view latents -> (B, T, V*N, D): each frame's views' tokens side by side."""
        if self.views == 1:
            return z
        return z.unflatten(1, (-1, self.views)).flatten(2, 3)

    @property
    def uses_states(self) -> bool:
        return bool(self.predictor.config.state_dim)

    def predict(self, z: torch.Tensor, actions: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        return self.predictor(z, actions, states if self.uses_states else None)

    def rollout(self, z_context: torch.Tensor, actions: torch.Tensor, context_actions: torch.Tensor | None = None,
                states: torch.Tensor | None = None, future_states: torch.Tensor | None = None) -> torch.Tensor:
        """Predict H future latents from C context latents and H planned actions.

        `context_actions` (B, C - 1, A): the actions executed between the context frames (zeros if
        unknown); `states` (B, C, S): the context's proprioceptive states (needed when the model uses
        them); `future_states` (B, >= H - 1, S): the states of the predicted frames when they are known
        (training), else they are integrated from the actions. The context, its actions and states may
        have a batch of 1 shared by all B candidate action sequences (broadcast, never copied).

        With rotary time (`predictor.caches`) the context's first C - 1 frames run once, and each step
        runs only the newest frame against the cached keys/values of its window; otherwise each step
        re-runs the last `history` frames.
        """
        b, c = z_context.shape[:2]
        h_steps, a_dim = actions.shape[1], actions.shape[2]
        if context_actions is None:
            context_actions = actions.new_zeros(b, c - 1, a_dim)
        if not self.uses_states:
            states = None
        elif states is None:
            raise ValueError("this world model conditions on proprioceptive states: pass states (B, C, S)")
        if not self.predictor.caches:
            return self._rollout_window(z_context, actions, context_actions, states, future_states)
        c = min(c, self.history)  # the model's history latest frames
        z_context, context_actions = z_context[:, -c:], context_actions[:, context_actions.shape[1] - (c - 1):]
        states = None if states is None else states[:, -c:]
        cache = None
        if c > 1:
            s_prefix = None if states is None else states[:, :-1]
            cache = self.predictor.run(z_context[:, :-1], context_actions, s_prefix)[1]
        z_t, s_t, out = z_context[:, -1:], None if states is None else states[:, -1:], []
        for h in range(h_steps):
            z_t, cache = self.predictor.run(z_t, actions[:, h : h + 1], s_t, cache)
            out.append(z_t)
            if s_t is not None and h < h_steps - 1:
                s_t = self.next_state(s_t, actions[:, h : h + 1], future_states, h)
        return torch.cat(out, dim=1)

    def next_state(self, s_t: torch.Tensor, action: torch.Tensor, future_states: torch.Tensor | None = None, h: int = 0
                   ) -> torch.Tensor:
        """The state after `action`: the recorded one when known, else integrated from the action (delta-pose
        actions compose with the pose as V-JEPA 2-AC's planning does; other actions are added)."""
        if future_states is not None:
            return future_states[:, h : h + 1]
        if self.pose_states:
            return compose_pose(s_t.expand(*action.shape[:2], -1), action)
        width = min(s_t.shape[-1], action.shape[-1])
        return torch.cat([s_t[..., :width] + action[..., :width], s_t[..., width:].expand(*action.shape[:2], -1)], -1)

    def _rollout_window(self, z_context: torch.Tensor, actions: torch.Tensor, context_actions: torch.Tensor,
                        states: torch.Tensor | None, future_states: torch.Tensor | None) -> torch.Tensor:
        """The rollout of absolute-time predictors: each step re-runs the last `history` frames."""
        k = actions.shape[0]
        z_all = z_context.expand(k, -1, -1, -1)
        a_all = context_actions.expand(k, -1, -1)
        s_all = None if states is None else states.expand(k, -1, -1)
        out = []
        for h in range(actions.shape[1]):
            a_all = torch.cat([a_all, actions[:, h : h + 1]], dim=1)
            s_in = s_all[:, -self.history :] if s_all is not None else None
            z_next = self.predict(z_all[:, -self.history :], a_all[:, -self.history :], s_in)[:, -1:]
            out.append(z_next)
            if h == actions.shape[1] - 1:
                break
            z_all = torch.cat([z_all, z_next], dim=1)
            if s_all is not None:
                s_all = torch.cat([s_all, self.next_state(s_all[:, -1:], actions[:, h : h + 1], future_states, h)], 1)
        return torch.cat(out, dim=1)

    # -- training ---------------------------------------------------------------------
    def trainable(self) -> nn.Module:
        """The modules an optimizer updates (everything, unless part of the model is frozen)."""
        return self

    def latents(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, T, N, D) latents of a batch: its cached `features` when it has them, else encoded frames."""
        return batch["features"] if "features" in batch else self.encode(batch["frames"])

    def prediction_loss(self, z: torch.Tensor, batch: dict[str, torch.Tensor], seed: int, distributed: bool
                        ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:  # pragma: no cover - abstract
        """(loss, its parts, the teacher-forced predictions of frames 1..) of the family."""
        raise NotImplementedError

    def loss(self, batch: dict[str, torch.Tensor], seed: int = 0, distributed: bool = True
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss on a batch of clips (tensors on the model's device) and its parts for logging.

        `seed` makes any randomness of the loss reproducible (the trainer derives it from the step);
        `distributed=False` keeps statistics local (validation on one rank).
        """
        z = self.latents(batch)
        loss, parts, pred = self.prediction_loss(z, batch, seed, distributed)
        if self.readout is not None and self.readout_weight > 0:  # position of observed and predicted frames
            states = batch["states"]
            readout = self.readout.loss(z, states) + self.readout.loss(pred, states[:, 1 : 1 + pred.shape[1]])
            loss = loss + self.readout_weight * readout
            parts["readout"] = readout.item()
        return loss, parts


# -- V-JEPA 2-AC: frozen video encoder + AC predictor ---------------------------------------------------


@dataclass
class JEPASettings(ModelSettings):
    family: str = "vjepa_ac"
    encoder_checkpoint: str = ""  # checkpoint folder of a pretrained encoder (world_model/pretrain.py)
    pool: bool | int = False  # true: one averaged token per frame (cheaper planning); g: a g x g grid of tokens
    use_cache: bool = True  # read <data.root>/features when made by this encoder and preprocessing
    rollout_steps: int = 2  # autoregressive steps of the rollout loss

    def clip_frames(self) -> int:
        return self.history + self.rollout_steps

    def to_config(self, action_dim: int) -> dict[str, Any]:
        if not self.encoder_checkpoint:
            raise ValueError("model.encoder_checkpoint is required for family vjepa_ac (a world_model/pretrain.py "
                             "checkpoint folder)")
        encoder_path = Path(self.encoder_checkpoint)
        config_path = encoder_path / "config.json"
        if not config_path.exists():
            raise FileNotFoundError(f"{encoder_path} is not an encoder checkpoint folder (no config.json)")
        config = self.base_config(action_dim)
        config.update({"encoder_checkpoint": str(encoder_path), "pool": self.pool,
                       "encoder_config": json.loads(config_path.read_text())["encoder"]})
        config["loss"]["rollout_steps"] = self.rollout_steps
        return config

    def feature_cache(self, data_root: str, camera: str | None, image_size: int) -> Any:
        """`<data_root>/features` when made by this encoder and preprocessing (raises saying what differs)."""
        if not self.use_cache:
            return None
        from world_model.feature_cache import FeatureCache, Preprocessing

        return FeatureCache(Path(data_root) / "features", self.encoder_checkpoint,
                            Preprocessing(camera, image_size, self.pool))


class FrozenEncoderModel(WorldModel):
    """A family whose encoder is frozen: it stays in eval mode while the rest trains, and a fresh run loads it
    from `encoder_checkpoint` (a world_model/pretrain.py folder)."""

    def load_pretrained(self, config: dict[str, Any]) -> None:
        self.encoder.load_state_dict(load_encoder(config["encoder_checkpoint"]).state_dict())

    def train(self, mode: bool = True) -> FrozenEncoderModel:
        super().train(mode)
        self.encoder.eval()  # frozen: always in eval mode
        return self


class JEPAWorldModel(FrozenEncoderModel):
    """V-JEPA 2-AC: a frozen video JEPA encoder (each frame alone, layer-normed) + the AdaLN AC predictor.

    Loss: L1 teacher forcing over the clip + L1 of a `rollout_steps` autoregressive rollout from the
    first `history` frames, on the layer-normed frozen features (only the predictor and readout train).
    """

    family = "vjepa_ac"
    Settings = JEPASettings

    def __init__(self, encoder: VideoViT, predictor: ACPredictor, history: int = 4, pool: bool = False,
                 rollout_steps: int = 2, readout_weight: float = 0.0):
        super().__init__(predictor, history, readout_weight)
        self.encoder = encoder.requires_grad_(False).eval()
        self.pool = pool
        self.rollout_steps = rollout_steps

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> JEPAWorldModel:
        encoder = VideoViT(EncoderConfig(**config["encoder_config"]))
        loss = config.get("loss", {})
        return cls(encoder, ACPredictor(encoder.embed_dim, ACPredictorConfig.from_checkpoint(config["predictor"])), config["history"],
                   config["pool"], loss.get("rollout_steps", 2), loss.get("readout_weight", 0.0))

    def trainable(self) -> nn.Module:
        return nn.ModuleList([self.predictor] + ([self.readout] if self.readout is not None else []))

    def _encode(self, frames: torch.Tensor, views: torch.Tensor | None = None) -> torch.Tensor:
        return encode_frames(self.encoder, frames, pool=self.pool)  # frozen: views told apart by token position

    def prediction_loss(self, z: torch.Tensor, batch: dict[str, torch.Tensor], seed: int, distributed: bool
                        ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        z = z.detach()
        actions, states = batch["actions"], batch["states"]
        h, k, t = self.history, self.rollout_steps, z.shape[1]
        pred = self.predict(z[:, :-1], actions[:, : t - 1], states[:, :-1])
        teacher = (pred - z[:, 1:]).abs().mean()
        rolled = self.rollout(z[:, :h], actions[:, h - 1 : h - 1 + k], actions[:, : h - 1], states[:, :h],
                              future_states=states[:, h : h + k - 1])
        rollout = (rolled - z[:, h : h + k]).abs().mean()
        return teacher + rollout, {"teacher_forcing": teacher.item(), "rollout": rollout.item()}, pred


# -- LeWorldModel: end-to-end ViT encoder + AC predictor, SIGReg -------------------------------------------


@dataclass
class LeWMEncoderSettings:
    img_size: int = 64
    patch_size: int = 8
    width: int = 192
    depth: int = 12
    num_heads: int = 3
    embed_dim: int = 192
    projector_hidden: int = 1024
    grid: int = 0  # 0: one token per frame (the CLS token, LeWorldModel); g: the patch tokens pooled to g x g tokens


@dataclass
class LeWMSettings(ModelSettings):
    family: str = "lewm"
    encoder: LeWMEncoderSettings = field(default_factory=LeWMEncoderSettings)
    # LeWorldModel trains its predictor with 10 % dropout (seed 000_57dac4a534ebac6b.txt, "Training stability tricks")
    predictor: ACPredictorConfig = field(default_factory=lambda: ACPredictorConfig(dropout=0.1))
    sigreg_lambda: float = 0.1
    sigreg_projections: int = 1024

    def to_config(self, action_dim: int) -> dict[str, Any]:
        config = self.base_config(action_dim)
        config["encoder"] = dataclasses.asdict(self.encoder)
        config["loss"].update({"sigreg_lambda": self.sigreg_lambda, "sigreg_projections": self.sigreg_projections})
        return config


class LeWMEncoder(nn.Module):
    """LeWorldModel's encoder: a small ViT whose CLS token goes through an MLP projector with BatchNorm.

    With `grid=g` the frame is g x g tokens instead (the patch tokens average-pooled to a g x g grid, each through
    the same projector): a small object that one pooled token drowns out keeps a place of its own. With `views=V`
    (several cameras) one learned embedding per view is added to every patch token of that view's images, so the
    one shared ViT knows which camera it is looking at.
    """

    def __init__(self, img_size: int = 64, patch_size: int = 8, width: int = 192, depth: int = 12, num_heads: int = 3,
                 embed_dim: int = 192, projector_hidden: int = 1024, grid: int = 0, views: int = 1):
        super().__init__()
        if grid and (img_size // patch_size) % grid:
            raise ValueError(f"grid {grid} must divide the {img_size // patch_size} patches per side")
        self.grid = grid
        self.vit = VisionTransformer(img_size=img_size, patch_size=patch_size, embed_dim=width, depth=depth,
                                     num_heads=num_heads, num_classes=0, class_token=True, global_pool="token")
        self.projector = nn.Sequential(nn.Linear(width, projector_hidden), nn.BatchNorm1d(projector_hidden), nn.GELU(),
                                       nn.Linear(projector_hidden, embed_dim))
        self.embed_dim = embed_dim
        self.view_embed = nn.Parameter(trunc_normal_(torch.zeros(views, width), std=0.02)) if views > 1 else None

    def _features(self, images: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """timm's `forward_features` with each image's view embedding added to its patch tokens."""
        vit = self.vit
        x = vit.patch_embed(images) + self.view_embed[views][:, None].to(images.dtype)
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))
        return vit.norm(vit.blocks(x))

    def forward(self, images: torch.Tensor, views: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, N, D) embeddings (N = 1, or grid x grid); `views` (B,) the camera
        view of each image, required when the encoder has several."""
        features = None
        if self.view_embed is not None:
            if views is None:
                raise ValueError(f"this encoder sees {len(self.view_embed)} camera views: pass each image's view")
            features = self._features(images, views)
        if not self.grid:
            return self.projector(self.vit(images) if features is None else self.vit.forward_head(features))[:, None]
        if features is None:
            features = self.vit.forward_features(images)
        pooled = pool_grid(features[:, self.vit.num_prefix_tokens:], self.grid)  # (B, g*g, width)
        return self.projector(pooled.flatten(0, 1)).unflatten(0, pooled.shape[:2])


class LeWorldModel(WorldModel):
    """LeWorldModel: encoder and predictor trained end to end; one token per frame, so planning is cheap.

    Loss: next-embedding MSE (teacher forcing) + lambda * SIGReg (no EMA, no stop-gradient).
    """

    family = "lewm"
    Settings = LeWMSettings

    def __init__(self, encoder: LeWMEncoder, predictor: ACPredictor, history: int = 3, sigreg_lambda: float = 0.1,
                 sigreg_projections: int = 1024, readout_weight: float = 0.0):
        super().__init__(predictor, history, readout_weight)
        self.encoder = encoder
        self.sigreg_lambda, self.sigreg_projections = sigreg_lambda, sigreg_projections

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LeWorldModel:
        encoder = LeWMEncoder(**config["encoder"], views=model_views(config))
        loss = config.get("loss", {})
        return cls(encoder, ACPredictor(encoder.embed_dim, ACPredictorConfig.from_checkpoint(config["predictor"])), config["history"],
                   loss.get("sigreg_lambda", 0.1), loss.get("sigreg_projections", 1024), loss.get("readout_weight", 0.0))

    def _encode(self, frames: torch.Tensor, views: torch.Tensor | None = None) -> torch.Tensor:
        b, t = frames.shape[:2]
        z = self.encoder(preprocess(frames.flatten(0, 1)), views)  # (B*T, N, D)
        return z.unflatten(0, (b, t))

    def prediction_loss(self, z: torch.Tensor, batch: dict[str, torch.Tensor], seed: int, distributed: bool
                        ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        pred = self.predict(z[:, :-1], batch["actions"], batch["states"][:, :-1])
        mse = F.mse_loss(pred, z[:, 1:])
        # (B*N, T, D): every token a sample of the isotropy test; with V views N = V x tokens per view, so every
        # view's tokens are samples of the one test (one shared embedding space, every view on the same scale)
        tokens = z.transpose(1, 2).flatten(0, 1)
        reg = sigreg(tokens, num_projections=self.sigreg_projections, seed=seed, distributed=distributed)
        return mse + self.sigreg_lambda * reg, {"mse": mse.item(), "sigreg": reg.item()}, pred


# -- building and loading ----------------------------------------------------------------------------------


def build_model(config: dict[str, Any]) -> WorldModel:
    """The one way to build a world model: from the plain `config.json` dict of a checkpoint (no hydra)."""
    family = WorldModel.family_class(config["family"])
    cameras, views = model_cameras(config), model_views(config)
    if views > 1 and not family.multi_view:
        raise ValueError(f"family {family.family} sees one camera; data.cameras names {views}: {cameras}")
    model = family.from_config(config)
    model.views, model.cameras = views, cameras
    predictor = getattr(model.predictor, "config", None)
    model.pose_states = (config.get("data", {}).get("action_mode", "delta_pose") == "delta_pose"
                         and getattr(predictor, "state_dim", 0) == STATE_DIM and getattr(predictor, "action_dim", 0) == ACTION_DIM)
    if config.get("readout"):
        model.readout = StateReadout(model.encoder.embed_dim, config["readout"]["dims"], views)
    return model


def load_world_model(folder: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[WorldModel, dict[str, Any]]:
    """(model in eval mode, config) from a checkpoint folder written by world_model/train.py."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    try:
        config = json.loads(config_path.read_text())
        model = build_model(config)
    except json.JSONDecodeError as err:
        raise UserError(f"{config_path}: not valid JSON ({err})") from err
    except KeyError as err:
        raise UserError(f"{config_path}: missing key {err} (not a world_model/train.py checkpoint, or damaged)") from err
    except ValueError as err:
        raise UserError(f"{config_path}: {err}") from err
    try:
        state = load_file(weights_path)
    except FileNotFoundError as err:
        raise UserError(f"{weights_path}: missing (a checkpoint folder holds config.json and model.safetensors)") from err
    except Exception as err:  # safetensors raises its own error type for truncated or garbled files
        raise UserError(f"{weights_path}: unreadable ({type(err).__name__}: {err}); the file is truncated or "
                        f"not a safetensors file") from err
    load_state_strict(model, state, str(folder))
    return model.to(device).eval(), config


import world_model.cjepa  # noqa: E402, F401 - registers the C-JEPA-style object-centric family (`cjepa`)
import world_model.vjepa2_ac  # noqa: E402, F401 - registers Meta's released V-JEPA 2-AC family (`vjepa2_ac`)
