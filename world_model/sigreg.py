"""SIGReg: push a batch of embeddings toward an isotropic Gaussian (LeWorldModel).

For random unit directions u, the projections u.z of the batch should be N(0, 1).
The Epps-Pulley statistic compares their empirical characteristic function
phi(t) = mean_i exp(i t u.z_i) with the Gaussian's exp(-t^2 / 2), integrated over
t in [0, 3] with Gaussian weight w(t) = exp(-t^2 / 2) by the trapezoid rule on 17
knots, times the batch size. It is computed per time step and averaged.

Under DDP the directions come from a generator seeded by the step (the same on every
rank) and the characteristic function is all-reduced (averaged, weighted by batch
size), so N ranks compute exactly what one process computes on the concatenated batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _all_reduce_mean(x: torch.Tensor, count: int) -> tuple[torch.Tensor, int]:
    """Batch-size-weighted mean of `x` across ranks.

    The value is the global mean. The gradient flows into this rank's own share only, scaled
    by the world size, because DDP averages parameter gradients over ranks: after that average
    every parameter gets exactly the gradient of the single-process statistic.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, count
    world = dist.get_world_size()
    total = torch.tensor([float(count)], device=x.device)
    dist.all_reduce(total)
    weighted = x * count
    summed = weighted.detach().clone()
    dist.all_reduce(summed)
    local = world * weighted
    return (summed + local - local.detach()) / total, int(total.item())


def sigreg(z: torch.Tensor, num_projections: int = 1024, num_knots: int = 17, t_max: float = 3.0,
           seed: int = 0, distributed: bool = True) -> torch.Tensor:
    """Epps-Pulley SIGReg of embeddings z (B, D) or (B, T, D) (per time step, averaged over T).

    `distributed=False` keeps the statistic local even inside a process group (e.g. for validation
    run on one rank only).
    """
    if z.dim() == 2:
        z = z[:, None]
    b, t, d = z.shape
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    directions = torch.randn(d, num_projections, generator=gen).to(z.device, z.dtype)
    directions = directions / directions.norm(dim=0, keepdim=True)
    knots = torch.linspace(0.0, t_max, num_knots, device=z.device, dtype=z.dtype)
    proj = torch.einsum("btd,dp->tbp", z, directions)  # (T, B, P)
    arg = proj[..., None] * knots  # (T, B, P, K)
    ecf_real, ecf_imag = arg.cos().mean(1), arg.sin().mean(1)  # (T, P, K)
    ecf, n = _all_reduce_mean(torch.stack([ecf_real, ecf_imag]), b) if distributed else (
        torch.stack([ecf_real, ecf_imag]), b)
    gauss = torch.exp(-0.5 * knots**2)
    sq = (ecf[0] - gauss) ** 2 + ecf[1] ** 2  # |phi_emp - phi_gauss|^2
    integrand = sq * gauss  # weight w(t) = exp(-t^2 / 2)
    dt = knots[1] - knots[0]
    integral = dt * (integrand[..., 1:] + integrand[..., :-1]).sum(-1) / 2  # (T, P)
    return (n * integral).mean()
