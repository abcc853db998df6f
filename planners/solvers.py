"""Latent-space planners: CEM, MPPI and gradient descent on action sequences, behind one interface.

A solver gets a cost function over candidate action sequences — `cost(actions (K, H, A)) -> (K,)`,
which rolls the world model out for all K candidates in one batched call per step — plus the
action bounds, and returns the best sequence (H, A). No Python loop runs over candidates.
Solvers are seeded (their own torch.Generator) and deterministic on CPU.
"""

from __future__ import annotations

import torch

from planners.protocols import Bounds, CostFn, PlanResult


class Solver:
    """Base of the sampling solvers (planners.protocols.Solver): a seeded generator, the initial mean, sampling."""

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def solve(self, cost: CostFn, horizon: int, bounds: Bounds, init: torch.Tensor | None = None) -> PlanResult:
        raise NotImplementedError

    @staticmethod
    def _initial_mean(horizon: int, bounds: Bounds, init: torch.Tensor | None) -> torch.Tensor:
        mean = ((bounds.low + bounds.high) / 2).expand(horizon, -1).clone()
        if init is not None:
            mean[: len(init)] = init[:horizon]
        return bounds.clip(mean)

    def _sample(self, mean: torch.Tensor, std: torch.Tensor, num: int) -> torch.Tensor:
        noise = torch.randn((num, *mean.shape), generator=self.generator).to(mean.device, mean.dtype)
        return mean + std * noise


class CEMSolver(Solver):
    """Cross-entropy method: Gaussian over sequences, refit to the top-k elites, with momentum and a std floor."""

    def __init__(self, samples: int = 300, elites: int = 30, iterations: int = 10, init_std: float = 1.0,
                 min_std: float = 0.05, momentum: float = 0.1, seed: int = 0):
        super().__init__(seed)
        if elites > samples:
            raise ValueError(f"elites ({elites}) cannot exceed samples ({samples})")
        self.samples, self.elites, self.iterations = samples, elites, iterations
        self.init_std, self.min_std, self.momentum = init_std, min_std, momentum

    @torch.no_grad()
    def solve(self, cost: CostFn, horizon: int, bounds: Bounds, init: torch.Tensor | None = None) -> PlanResult:
        span = (bounds.high - bounds.low) / 2  # std is relative to the half-range of each dimension
        mean = self._initial_mean(horizon, bounds, init)
        std = (self.init_std * span).expand(horizon, -1).clone()
        best, best_cost, history = mean.clone(), float("inf"), []
        for _ in range(self.iterations):
            candidates = bounds.clip(self._sample(mean, std, self.samples))
            candidates[0] = mean  # keep the current mean in the running
            costs = cost(candidates)
            order = torch.argsort(costs)[: self.elites]
            elites = candidates[order]
            history.append(float(costs[order[0]]))
            if costs[order[0]] < best_cost:
                best_cost, best = float(costs[order[0]]), candidates[order[0]].clone()
            mean = self.momentum * mean + (1 - self.momentum) * elites.mean(0)
            std = self.momentum * std + (1 - self.momentum) * elites.std(0)
            std = torch.maximum(std, self.min_std * span)
        return PlanResult(best, best_cost, self.iterations, history)


class MPPISolver(Solver):
    """Model-predictive path integral: exponentially (temperature) weighted average of sampled sequences."""

    def __init__(self, samples: int = 300, iterations: int = 10, init_std: float = 0.5, temperature: float = 0.05,
                 min_std: float = 0.05, seed: int = 0):
        super().__init__(seed)
        self.samples, self.iterations, self.init_std = samples, iterations, init_std
        self.temperature, self.min_std = temperature, min_std

    @torch.no_grad()
    def solve(self, cost: CostFn, horizon: int, bounds: Bounds, init: torch.Tensor | None = None) -> PlanResult:
        span = (bounds.high - bounds.low) / 2
        mean = self._initial_mean(horizon, bounds, init)
        std = (self.init_std * span).expand(horizon, -1).clone()
        best, best_cost, history = mean.clone(), float("inf"), []
        for _ in range(self.iterations):
            candidates = bounds.clip(self._sample(mean, std, self.samples))
            candidates[0] = mean
            costs = cost(candidates)
            weights = torch.softmax(-(costs - costs.min()) / self.temperature, dim=0)
            i = int(torch.argmin(costs))
            history.append(float(costs[i]))
            if float(costs[i]) < best_cost:
                best_cost, best = float(costs[i]), candidates[i].clone()
            mean = bounds.clip((weights[:, None, None] * candidates).sum(0))
            var = (weights[:, None, None] * (candidates - mean) ** 2).sum(0)
            std = torch.maximum(var.sqrt(), self.min_std * span)
        final = float(cost(mean[None])[0])
        if final < best_cost:
            best, best_cost = mean, final
        return PlanResult(best, best_cost, self.iterations, history)


def colored_noise(shape: tuple[int, ...], beta: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise (K, H, A) whose power spectrum over the horizon axis falls as 1/f^beta, unit variance per step.

    beta = 0 is white noise; beta = 2 (iCEM's choice) gives smooth, correlated action sequences, which explore
    like a persistent push rather than jitter.
    """
    k, horizon, dims = shape
    if beta == 0 or horizon < 2:
        return torch.randn(shape, generator=generator)
    freqs = torch.fft.rfftfreq(horizon)
    freqs[0] = freqs[1]  # no infinite power at f = 0
    scale = freqs ** (-beta / 2)
    spectrum = torch.complex(torch.randn((k, dims, len(freqs)), generator=generator),
                             torch.randn((k, dims, len(freqs)), generator=generator)) * scale
    noise = torch.fft.irfft(spectrum, n=horizon)  # (K, A, H)
    noise = noise / noise.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-8)  # unit power per sequence
    return noise.transpose(1, 2).contiguous()


class ICEMSolver(Solver):
    """iCEM (Pinneri et al., 2020): CEM with coloured-noise samples, a shrinking population, elites kept across
    iterations and (shifted) across MPC steps, the mean added in the last iteration, and an early stop when
    the best cost stops improving by more than `tolerance` (relative)."""

    def __init__(self, samples: int = 300, elites: int = 30, iterations: int = 5, init_std: float = 1.0,
                 min_std: float = 0.05, momentum: float = 0.1, beta: float = 2.0, keep_elites: float = 0.3,
                 decay: float = 1.25, tolerance: float | None = None, seed: int = 0):
        super().__init__(seed)
        if elites > samples:
            raise ValueError(f"elites ({elites}) cannot exceed samples ({samples})")
        self.samples, self.elites, self.iterations = samples, elites, iterations
        self.init_std, self.min_std, self.momentum = init_std, min_std, momentum
        self.beta, self.keep_elites, self.decay, self.tolerance = beta, keep_elites, decay, tolerance
        self._kept: torch.Tensor | None = None  # elites of the last solve, for the next MPC step

    def reseed(self, seed: int) -> None:
        super().reseed(seed)
        self._kept = None  # a new episode starts without the last one's elites

    @torch.no_grad()
    def solve(self, cost: CostFn, horizon: int, bounds: Bounds, init: torch.Tensor | None = None) -> PlanResult:
        span = (bounds.high - bounds.low) / 2
        mean = self._initial_mean(horizon, bounds, init)
        std = (self.init_std * span).expand(horizon, -1).clone()
        kept = None
        if self._kept is not None and init is not None:  # shift last step's elites like the warm-started mean
            shift = horizon - len(init)
            kept = torch.cat([self._kept[:, shift:], mean[None, horizon - shift :].expand(len(self._kept), -1, -1)], 1)
        best, best_cost, history = mean.clone(), float("inf"), []
        for i in range(self.iterations):
            num = max(int(self.samples * self.decay ** -i), 2 * self.elites)
            noise = colored_noise((num, horizon, len(bounds.low)), self.beta, self.generator).to(mean)
            candidates = bounds.clip(mean + std * noise)
            extra = [c for c in (kept, mean[None] if i == self.iterations - 1 else None) if c is not None]
            if extra:
                candidates = torch.cat([candidates, bounds.clip(torch.cat(extra))])
            costs = cost(candidates)
            order = torch.argsort(costs)[: self.elites]
            elites = candidates[order]
            kept = elites[: max(int(self.keep_elites * self.elites), 1)]
            history.append(float(costs[order[0]]))
            previous = best_cost
            if costs[order[0]] < best_cost:
                best_cost, best = float(costs[order[0]]), candidates[order[0]].clone()
            mean = self.momentum * mean + (1 - self.momentum) * elites.mean(0)
            std = torch.maximum(self.momentum * std + (1 - self.momentum) * elites.std(0), self.min_std * span)
            if self.tolerance is not None and i > 0 and previous - best_cost <= self.tolerance * abs(previous):
                break
        self._kept = kept
        return PlanResult(best, best_cost, len(history), history)


class GradientSolver(Solver):
    """Adam on the action sequence through the differentiable rollout, projected onto the bounds each step.

    Several random restarts run in parallel as one batch; the best is returned.
    """

    def __init__(self, iterations: int = 100, lr: float = 0.01, restarts: int = 8, seed: int = 0):
        super().__init__(seed)
        self.iterations, self.lr, self.restarts = iterations, lr, restarts

    def solve(self, cost: CostFn, horizon: int, bounds: Bounds, init: torch.Tensor | None = None) -> PlanResult:
        span = (bounds.high - bounds.low) / 2
        mean = self._initial_mean(horizon, bounds, init)
        starts = bounds.clip(self._sample(mean, 0.5 * span.expand(horizon, -1), self.restarts))
        starts[0] = mean
        actions = starts.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([actions], lr=self.lr)
        history = []
        for _ in range(self.iterations):
            costs = cost(actions)
            history.append(float(costs.min().detach()))
            optimizer.zero_grad(set_to_none=True)
            costs.sum().backward()
            optimizer.step()
            with torch.no_grad():
                actions.copy_(bounds.clip(actions))
        with torch.no_grad():
            costs = cost(actions)
            i = int(torch.argmin(costs))
            return PlanResult(actions[i].detach().clone(), float(costs[i]), self.iterations, history)


SOLVERS = {"cem": CEMSolver, "icem": ICEMSolver, "mppi": MPPISolver, "gradient": GradientSolver}


def make_solver(name: str, **kwargs) -> Solver:
    if name not in SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {name!r}")
    return SOLVERS[name](**kwargs)
