"""Seed derivation: one rule for every stream that needs many seeds from one.

Data collection seeds episode i of run seed s with `derive_seed(s, i)`; evaluation uses seeds from
`EVAL_SEED_BASE` upward, far above every collection seed for s < 999, so evaluation goals are never
training goals.
"""

from __future__ import annotations

SEED_STRIDE = 1_000_003  # a prime, so (seed, index) pairs do not collide for index < stride
EVAL_SEED_BASE = 1_000_000_000


def derive_seed(seed: int, index: int) -> int:
    """The seed of item `index` (episode, step, plan) of a stream seeded with `seed`."""
    return int(seed) * SEED_STRIDE + int(index)


def evaluation_seed(seed: int, episode: int) -> int:
    """Env seed of an evaluation episode: disjoint from every collection seed."""
    return EVAL_SEED_BASE + int(seed) * 10_000 + int(episode)
