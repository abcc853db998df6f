"""Several trained world models planned as one (PETS-style ensembles against model error).

`WorldModelEnsemble(models)` is a world model to the planner: each member encodes the frame and rolls its own
latents out; the latents sit side by side along the channel axis, so the planner's mean-L1 latent cost is the mean of
the members' costs (equal widths) and the readout is the mean of the members' readouts. Each candidate is thus
scored by every model, and a plan one model mispredicts is not the cheapest unless the others agree. The members
must share what the planner relies on: history, token count, camera views, states.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn


class EnsembleReadout(nn.Module):
    """The mean of the members' readouts, each on its own channel slice of the ensemble's latent."""

    def __init__(self, readouts: Sequence[nn.Module], widths: Sequence[int]):
        super().__init__()
        self.readouts, self.widths = nn.ModuleList(readouts), list(widths)
        dims = {tuple(getattr(r, "dims", ())) for r in readouts}
        if len(dims) > 1:
            raise ValueError(f"ensemble members read different state dims {sorted(dims)}; their readouts cannot be averaged")
        self.dims = list(dims.pop())  # the state dims every member reads, in order

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        parts = z.split(self.widths, dim=-1)
        return torch.stack([readout(part) for readout, part in zip(self.readouts, parts)]).mean(0)


class WorldModelEnsemble(nn.Module):
    """Members' latents concatenated on the channel axis; `encode` and `rollout` run every member."""

    def __init__(self, models: Sequence[nn.Module], widths: Sequence[int]):
        super().__init__()
        if len(models) < 2:
            raise ValueError("an ensemble needs at least two world models")
        first = models[0]
        for i, model in enumerate(models[1:], 1):
            for name in ("history", "uses_states", "views"):
                if getattr(model, name, None) != getattr(first, name, None):
                    raise ValueError(f"ensemble member {i} has {name}={getattr(model, name, None)}, member 0 "
                                     f"{getattr(first, name, None)}: members must agree on it")
        self.models, self.widths = nn.ModuleList(models), list(widths)
        self.history, self.views = first.history, getattr(first, "views", 1)
        readouts = [getattr(model, "readout", None) for model in models]
        self.readout = EnsembleReadout(readouts, self.widths) if all(r is not None for r in readouts) else None

    @property
    def uses_states(self) -> bool:
        return bool(self.models[0].uses_states)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        latents = [model.encode(frames) for model in self.models]
        tokens = {z.shape[-2] for z in latents}
        if len(tokens) > 1:
            raise ValueError(f"ensemble members encode frames to different token counts {sorted(tokens)}")
        return torch.cat(latents, dim=-1)

    def rollout(self, z_context: torch.Tensor, actions: torch.Tensor, context_actions: torch.Tensor | None = None,
                states: torch.Tensor | None = None) -> torch.Tensor:
        parts = z_context.split(self.widths, dim=-1)
        return torch.cat([model.rollout(part, actions, context_actions, states)
                          for model, part in zip(self.models, parts)], dim=-1)

    def next_state(self, s_t: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.models[0].next_state(s_t, action)
