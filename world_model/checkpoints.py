"""Loading encoder weights: Meta's released V-JEPA 2 checkpoints and our own checkpoint folders.

Released files (`vitl.pt`, `vith.pt`, `vitg.pt`, `vitg-384.pt`) are torch pickles holding
state dicts under `encoder` / `target_encoder`, with keys prefixed `module.backbone.`.
They are read from a local path only; nothing is downloaded. The load is strict: any
missing, unexpected or mis-shaped key raises an error that lists them all.

Our checkpoints are folders: `model.safetensors` + `config.json` (DESIGN.md, contract 2),
written to a temporary folder and renamed, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from world_model.encoder import EncoderConfig, VideoViT

#: Released V-JEPA 2 encoders: file name -> our config (all use RoPE and 16x16x2 tubelets).
OFFICIAL_ENCODERS: dict[str, EncoderConfig] = {
    "vitl": EncoderConfig(size="large", img_size=256, use_rope=True, rope_vjepa2_layout=True),
    "vith": EncoderConfig(size="huge", img_size=256, use_rope=True, rope_vjepa2_layout=True),
    "vitg": EncoderConfig(size="giant", img_size=256, use_rope=True, rope_vjepa2_layout=True),
    "vitg-384": EncoderConfig(size="giant", img_size=384, use_rope=True, rope_vjepa2_layout=True),
}
_PREFIXES = ("module.", "backbone.")


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not match the model; the message lists every difference."""


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DDP's `module.` and V-JEPA's `backbone.` prefixes from every key."""
    out = {}
    for key, value in state.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, assign: bool = False) -> None:
    """`load_state_dict(strict=True)` that reports missing, unexpected and mis-shaped keys together.

    `assign=True` makes the given tensors the parameters (a model built on the meta device, from mmap'd weights)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                       for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or misshaped:
        lines = [f"{source} does not match the model:"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                lines.append(f"  {title} ({len(keys)}): " + ", ".join(keys))
        raise CheckpointMismatchError("\n".join(lines))
    model.load_state_dict(state, strict=True, assign=assign)


def load_official_encoder(path: str | os.PathLike, config: EncoderConfig | None = None,
                          key: str = "encoder") -> VideoViT:
    """A released V-JEPA 2 encoder from a local file; `config` defaults from the file name (vitl, vith, ...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"V-JEPA 2 checkpoint {path} not found (download it yourself; nothing is fetched)")
    if config is None:
        name = path.name.removesuffix(".pt")
        if name not in OFFICIAL_ENCODERS:
            raise ValueError(f"cannot tell the architecture of {path.name}: pass a config, or name the file one of "
                             f"{sorted(OFFICIAL_ENCODERS)} (.pt)")
        config = OFFICIAL_ENCODERS[name]
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if key not in checkpoint:
        raise KeyError(f"{path} has no '{key}' entry (has {sorted(checkpoint)})")
    model = VideoViT(config)
    load_state_strict(model, strip_prefixes(checkpoint[key]), f"{path} [{key}]")
    return model


def save_checkpoint(folder: str | os.PathLike, model: torch.nn.Module, config: dict[str, Any],
                    extra: dict[str, Any] | None = None) -> Path:
    """Write `model.safetensors` + `config.json` (+ `training_state.pt` from `extra`) atomically."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        if extra is not None:
            torch.save(extra, tmp / "training_state.pt")
        mode = (tmp / "config.json").stat().st_mode & 0o777  # what the umask gives a plain file (0644 usually)
        os.chmod(tmp / "model.safetensors", mode)  # safetensors writes 0600: colleagues could not read it
        old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def load_encoder(folder: str | os.PathLike) -> VideoViT:
    """An encoder from our checkpoint folder (config.json `encoder` section + model.safetensors)."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{folder} is not a checkpoint folder (no config.json)")
    config = json.loads(config_path.read_text())
    model = VideoViT(EncoderConfig(**config["encoder"]))
    state = load_file(folder / "model.safetensors")
    prefix = config.get("encoder_prefix", "")
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    load_state_strict(model, state, str(folder / "model.safetensors"))
    return model
