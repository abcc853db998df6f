"""Training schedules as plain functions of the step (V-JEPA's recipe).

V-JEPA computes its schedules over 1.25x the steps it trains for (`stretch`), so
training stops before the learning rate reaches its floor and the EMA momentum 1.
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
