"""Choose LeWorldModel's SIGReg weight by bisection: `python world_model/tune_lambda.py data_root=DIR`.

The seed (`../shared/seeds/000_57dac4a534ebac6b.txt`, "LeWorldModel (minimal)") gives LeWM one hyperparameter,
the SIGReg weight lambda (0.1 there), found by "bisection search for lambda: O(log n) tuning cost". Each candidate
lambda is one short `world_model/train.py` run (the `train_overrides`, e.g. `experiment=franka_lewm optim.steps=300`);
it is scored by a metric lambda does not enter: the validation RMSE of a ridge probe from the frozen latents to the
robot state (end-effector xyz by default), fitted on training clips, normalised by the state's spread (1.0: no
better than the mean; a collapsed latent scores about 1.0, a too-strong SIGReg that crowds out prediction scores
worse). The search runs in log lambda: three bracketing runs (low, middle, high), then each step halves the wider
gap beside the best lambda so far, so the bracket around the best shrinks geometrically: `3 + steps` runs in all.
"""

from __future__ import annotations

if __name__ == "__main__":  # --help, typos and missing arguments are answered before the heavy imports below
    from common.cli import preflight

    preflight("tune_lambda", positional=("data_root",))

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from common.config import ConfigError, build_config
from world_model.models import LeWMSettings, load_world_model
from world_model.train import TrainConfig, _clips, train


@dataclass
class TuneConfig:
    data_root: str = ""
    train_overrides: list[str] = field(default_factory=list)  # world_model/train.py overrides of every short run
    low: float = 0.01  # the lambda interval, searched in log space
    high: float = 10.0
    steps: int = 4  # bisection steps after the three bracketing runs
    probe_batches: int = 8  # training batches the ridge probe is fitted on (validation: as many)
    ridge: float = 1e-3  # the probe's ridge penalty (on standardised features)
    out: str = "runs/tune_lambda"  # one run folder per lambda: <out>/lambda_<value>
    seed: int = 0


def bisect_log(evaluate: Callable[[float], float], low: float, high: float, steps: int,
               report: Callable[[float, float, float, float], None] | None = None) -> tuple[float, float, list]:
    """Minimise `evaluate(lambda)` over [low, high] in log space with 3 + `steps` evaluations (none repeated).

    Returns (best lambda, its value, [(lambda, value), ...] in the order evaluated); `report(lambda, value,
    bracket low, bracket high)` after each evaluation.
    """
    if not 0 < low < high:
        raise ConfigError(f"low/high: expected 0 < low < high, got low={low}, high={high}")
    values: dict[float, float] = {}
    order: list[tuple[float, float]] = []

    def bracket() -> tuple[float, float, float]:
        points = sorted(values)
        i = min(range(len(points)), key=lambda j: values[points[j]])
        return points[max(i - 1, 0)], points[i], points[min(i + 1, len(points) - 1)]

    def score(x: float) -> None:
        values[x] = float(evaluate(math.exp(x)))
        order.append((math.exp(x), values[x]))
        if report:
            left, _, right = bracket()
            report(math.exp(x), values[x], math.exp(left), math.exp(right))

    a, b = math.log(low), math.log(high)
    for x in (a, (a + b) / 2, b):
        score(x)
    for _ in range(steps):
        left, best, right = bracket()
        gaps = [(best - left, (left + best) / 2), (right - best, (best + right) / 2)]
        width, x = max(gaps, key=lambda g: g[0])  # ties: the smaller lambda's side
        if width <= 1e-9 or x in values:
            break
        score(x)
    _, best, _ = bracket()
    return math.exp(best), values[best], order


def _features(model: Any, loader: DataLoader, batches: int, dims: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    with torch.no_grad():
        for _, batch in zip(range(batches), loader):
            z = model.encode(batch["frames"])  # (B, T, N, D)
            xs.append(z.mean(2).flatten(0, 1).double())
            ys.append(batch["states"][..., dims].flatten(0, 1).double())
    return torch.cat(xs), torch.cat(ys)


def probe_rmse(checkpoint: str | Path, config: TrainConfig, batches: int, ridge: float) -> float:
    """Validation RMSE (in units of the state's standard deviation, averaged over the readout dims) of a ridge
    probe from a trained model's frozen latents to states[readout_dims], fitted on training clips."""
    model, _ = load_world_model(checkpoint)
    dims = list(config.model.readout_dims)
    frames = config.model.clip_frames()
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(_clips(config.data, "train", frames), batch_size=config.optim.batch_size, shuffle=True,
                              generator=generator)
    val_loader = DataLoader(_clips(config.data, "val", frames), batch_size=config.optim.batch_size, shuffle=False)
    x, y = _features(model, train_loader, batches, dims)
    xv, yv = _features(model, val_loader, batches, dims)
    if len(xv) == 0:
        raise ValueError(f"{config.data.root} has no validation clips to score lambda on (data.val_fraction or the "
                         f"index's split)")
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    y_mean, y_std = y.mean(0), y.std(0).clamp_min(1e-8)
    design = torch.cat([(x - mean) / std, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    gram = design.T @ design + ridge * len(x) * torch.eye(design.shape[1], dtype=x.dtype)
    weights = torch.linalg.solve(gram, design.T @ ((y - y_mean) / y_std))
    pred = torch.cat([(xv - mean) / std, torch.ones(len(xv), 1, dtype=x.dtype)], 1) @ weights
    return float((((pred - (yv - y_mean) / y_std) ** 2).mean(0)).sqrt().mean())


def tune(cfg: TuneConfig, train_config_for: Callable[[float, str], TrainConfig],
         print_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """Bisection over lambda; `train_config_for(lambda, out)` is the short run's typed config (built from hydra in
    `main`). Returns the best lambda, its probe RMSE, every run and the best run's checkpoint."""
    total = 3 + cfg.steps
    runs: list[dict[str, Any]] = []

    def evaluate(lam: float) -> float:
        out = str(Path(cfg.out) / f"lambda_{lam:.4g}")
        config = train_config_for(lam, out)
        summary = train(config)
        rmse = probe_rmse(summary["checkpoint"], config, cfg.probe_batches, cfg.ridge)
        runs.append({"lambda": lam, "probe_rmse": rmse, "val_loss": summary["val_loss"],
                     "checkpoint": summary["checkpoint"]})
        return rmse

    def report(lam: float, value: float, left: float, right: float) -> None:
        print_fn(f"run {len(runs)}/{total}: lambda={lam:.4g} probe RMSE {value:.4f} (bracket [{left:.4g}, {right:.4g}])")

    best, value, _ = bisect_log(evaluate, cfg.low, cfg.high, cfg.steps, report)
    chosen = next(r for r in runs if r["lambda"] == best)
    return {"lambda": best, "probe_rmse": value, "runs": runs, "checkpoint": chosen["checkpoint"]}


def main(cfg: Any) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from common.cli import CONFIG_DIR
    from world_model.train import train_config

    config = build_config(TuneConfig, cfg)

    def train_config_for(lam: float, out: str) -> TrainConfig:
        """train.py's config with the overrides, as `python world_model/train.py ...` would compose it."""
        return train_config(composed([f"model.sigreg_lambda={lam}", f"out={out}", "overwrite=true",
                                      "progress=false"]))

    def composed(extra: list[str]) -> Any:
        overrides = [*config.train_overrides, f"data.root={config.data_root}", f"seed={config.seed}", *extra]
        if GlobalHydra.instance().is_initialized():  # inside this hydra app: same config folder
            return compose("train", overrides=overrides)
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            return compose("train", overrides=overrides)

    family = composed([]).model.family
    if family != LeWMSettings.family:
        raise ConfigError(f"train_overrides: expected a LeWorldModel run (model=lewm: SIGReg's lambda), got model "
                          f"family {family!r}")

    result = tune(config, train_config_for)
    print(f"best lambda {result['lambda']:.4g} (probe RMSE {result['probe_rmse']:.4f}) after {len(result['runs'])} "
          f"runs over [{config.low:.4g}, {config.high:.4g}]; checkpoint {result['checkpoint']}")


if __name__ == "__main__":
    from common.cli import run

    run(main, "tune_lambda", positional=("data_root",))
