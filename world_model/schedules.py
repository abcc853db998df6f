"""Training schedules as plain functions of the step (the V-JEPA, V-JEPA 2 and V-JEPA 2-AC recipes).

V-JEPA computes its schedules over 1.25x the steps it trains for (`stretch`), so
training stops before the learning rate reaches its floor and the EMA momentum 1.
V-JEPA 2 and 2.1 replace the cosine by warm-up -> long constant -> cool-down, with the
boundaries given here as fractions of the run (seed `000_57dac4a534ebac6b.txt`, "Training
schedules": 12K warm-up, 228K constant, 12K cool-down of 252K), so a short CPU run keeps
the recipe's proportions.
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, warmup: int, start: float, peak: float, final: float,
                  stretch: float = 1.0) -> float:
    """Linear warm-up from `start` to `peak` over `warmup` steps, then cosine to `final` at stretch*total."""
    if step < warmup:
        return start + (peak - start) * step / max(warmup, 1)
    span = max(stretch * total - warmup, 1)
    progress = min((step - warmup) / span, 1.0)
    return final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_increase(step: int, total: int, start: float, end: float, stretch: float = 1.0) -> float:
    """Weight decay: cosine from `start` up to `end` over stretch*total steps."""
    progress = min(step / max(stretch * total, 1), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def linear(step: int, total: int, start: float, end: float, stretch: float = 1.0) -> float:
    """EMA momentum: linear from `start` to `end` over stretch*total steps."""
    return start + (end - start) * min(step / max(stretch * total, 1), 1.0)


def warmup_constant_decay(step: int, total: int, warmup: int, decay: int, start: float, peak: float,
                          final: float = 0.0) -> float:
    """V-JEPA 2-AC: linear warm-up, constant, then linear decay to `final` over the last `decay` steps."""
    if step < warmup:
        return start + (peak - start) * step / max(warmup, 1)
    if step < total - decay:
        return peak
    return peak + (final - peak) * min((step - (total - decay)) / max(decay, 1), 1.0)


def phase_boundaries(total: int, warmup_fraction: float, cooldown_fraction: float) -> tuple[int, int]:
    """(first constant step, first cool-down step) of a `total`-step warm-up/constant/cool-down run."""
    warmup = int(round(warmup_fraction * total))
    cooldown = total - int(round(cooldown_fraction * total))
    if not 0 <= warmup <= cooldown <= total:
        raise ValueError(f"warm-up fraction {warmup_fraction} + cool-down fraction {cooldown_fraction} must fit in "
                         f"the run (0 <= warm-up <= 1 - cool-down)")
    return warmup, cooldown


def warmup_constant_cooldown(step: int, total: int, warmup_fraction: float, cooldown_fraction: float, start: float,
                             peak: float, final: float, cooldown_start: float | None = None) -> float:
    """V-JEPA 2 / 2.1: linear warm-up from `start` to `peak`, constant `peak`, then linear cool-down from
    `cooldown_start` (default `peak`; V-JEPA 2.1 cools from 6e-4 after a 5.25e-4 plateau) to `final` at `total`."""
    warmup, cooldown = phase_boundaries(total, warmup_fraction, cooldown_fraction)
    if step < warmup:
        return start + (peak - start) * step / max(warmup, 1)
    if step < cooldown:
        return peak
    high = peak if cooldown_start is None else cooldown_start
    return high + (final - high) * min((step - cooldown) / max(total - cooldown, 1), 1.0)
