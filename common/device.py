"""Device choice: one rule for every command (CUDA when present, unless a device is named)."""

from __future__ import annotations

from typing import Any


def pick_device(name: Any = None) -> Any:
    """`torch.device(name)`, or cuda when available and `name` is None/empty."""
    import torch

    if isinstance(name, torch.device):
        return name
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
