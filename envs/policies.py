"""Data-collection policies: smooth random exploration, scripted experts, and mixtures.

A policy is reset with the env and a seed, then maps observations to actions.
Everything random draws from the policy's own seeded generator, so an episode
is reproducible from (env seed, policy seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from common import goal_env


class Policy(Protocol):
    def reset(self, env: gym.Env, seed: int) -> None: ...

    def __call__(self, obs: Any) -> np.ndarray: ...


class CorrelatedNoisePolicy:
    """Ornstein-Uhlenbeck noise in the normalised action box, so the arm travels instead of jittering.

    u <- u - theta * u + sigma * N(0, 1) in [-1, 1]^d, mapped onto the action bounds. With the
    defaults consecutive actions are strongly correlated (the arm keeps a heading for ~5-10 steps).
    A gripper-like last dimension of a [0, 1] box flips between open and closed with `flip_prob`.
    """

    def __init__(self, theta: float = 0.15, sigma: float = 0.35, flip_prob: float = 0.03, gripper_dim: int | None = -1):
        self.theta, self.sigma, self.flip_prob, self.gripper_dim = theta, sigma, flip_prob, gripper_dim
        self.space: gym.spaces.Box | None = None

    def reset(self, env: gym.Env, seed: int) -> None:
        if not isinstance(env.action_space, gym.spaces.Box):
            raise ValueError(f"CorrelatedNoisePolicy needs a Box action space, got {env.action_space}")
        self.space = env.action_space
        self.rng = np.random.default_rng(seed)
        self.u = self.rng.uniform(-1.0, 1.0, size=self.space.shape)
        self.gripper = float(self.rng.integers(0, 2))

    def __call__(self, obs: Any) -> np.ndarray:
        self.u += -self.theta * self.u + self.sigma * self.rng.normal(size=self.u.shape)
        self.u = np.clip(self.u, -1.0, 1.0)
        low, high = self.space.low, self.space.high
        action = low + (self.u + 1.0) / 2.0 * (high - low)
        g = self.gripper_dim
        if g is not None and low.ndim == 1 and low[g] == 0.0 and high[g] == 1.0:
            if self.rng.random() < self.flip_prob:
                self.gripper = 1.0 - self.gripper
            action[g] = self.gripper
        return action.astype(self.space.dtype)


class ExpertPolicy:
    """The env's scripted expert (`expert_action` of the layer that implements the goal-env protocol: our env, or
    a goal-env adapter around another) with Gaussian action noise."""

    def __init__(self, noise: float = 0.1):
        self.noise = noise

    def reset(self, env: gym.Env, seed: int) -> None:
        task = goal_env.task(env)
        if not callable(getattr(task, "expert_action", None)):
            raise ValueError(f"{env.spec.id if env.spec else env} has no scripted expert (expert_action)")
        self.env = task
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: Any) -> np.ndarray:
        return self.env.expert_action(self.rng, self.noise)


class MixturePolicy:
    """Switches between policies every `segment` steps, picking each with its weight."""

    def __init__(self, policies: Sequence[Policy], weights: Sequence[float], segment: int = 10):
        if len(policies) != len(weights) or not policies:
            raise ValueError("MixturePolicy needs one weight per policy")
        self.policies = list(policies)
        self.weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
        self.segment = segment

    def reset(self, env: gym.Env, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        for i, policy in enumerate(self.policies):
            policy.reset(env, seed * 31 + i + 1)
        self.t = 0
        self.current = 0

    def __call__(self, obs: Any) -> np.ndarray:
        if self.t % self.segment == 0:
            self.current = int(self.rng.choice(len(self.policies), p=self.weights))
        self.t += 1
        actions = [policy(obs) for policy in self.policies]  # every policy advances its own state
        return actions[self.current]


def make_policy(name: str, expert_noise: float = 0.1, expert_weight: float = 0.5, segment: int = 10,
                theta: float = 0.15, sigma: float = 0.35) -> Policy:
    """`random`, `expert` or `mixture` (expert with probability `expert_weight` per segment)."""
    if name == "random":
        return CorrelatedNoisePolicy(theta, sigma)
    if name == "expert":
        return ExpertPolicy(expert_noise)
    if name == "mixture":
        return MixturePolicy([ExpertPolicy(expert_noise), CorrelatedNoisePolicy(theta, sigma)],
                             [expert_weight, 1.0 - expert_weight], segment)
    raise ValueError(f"policy must be 'random', 'expert' or 'mixture', got {name!r}")
