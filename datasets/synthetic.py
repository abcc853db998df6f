"""Small synthetic Droid-style episodes for tests, benchmarks and smoke runs.

The arm pose follows a smooth random walk (with arbitrary orientations) and the
image shows a blob whose place and size follow the end effector over a
gradient background, so frames compress like rendered scenes and the pixels
actually depend on the state.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from datasets.writer import write_episode


def synthetic_trajectory(length: int, seed: int) -> dict[str, np.ndarray]:
    """Cartesian pose (T, 6), gripper (T,), joints (T, 7) and velocity commands (T, 6) that reproduce the poses."""
    rng = np.random.default_rng(seed)
    steps = np.cumsum(rng.normal(0.0, 0.01, size=(length, 6)), axis=0)
    cartesian = np.empty((length, 6))
    cartesian[:, :3] = np.array([0.5, 0.0, 0.3]) + steps[:, :3]
    cartesian[:, 3:] = rng.uniform(-np.pi, np.pi, size=3) + 5 * steps[:, 3:]
    cartesian[:, 3:] = (cartesian[:, 3:] + np.pi) % (2 * np.pi) - np.pi
    cartesian[:, 4] = np.clip(cartesian[:, 4], -1.5, 1.5)  # keep pitch away from the Euler singularity
    gripper = (np.sin(np.linspace(0, 3, length) + rng.uniform(0, 6)) > 0).astype(np.float64)
    joints = rng.normal(0.0, 0.5, size=(length, 7))
    velocity = np.zeros((length, 6))
    velocity[:-1] = np.diff(cartesian, axis=0)
    return {"cartesian": cartesian, "gripper": gripper, "joints": joints, "velocity": velocity}


def render_blob(cartesian: np.ndarray, gripper: np.ndarray, size: int = 64) -> np.ndarray:
    """(T, size, size, 3) uint8 frames of a blob placed by xy, sized by z, coloured by the gripper."""
    t = len(cartesian)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cx = np.clip(0.5 + (cartesian[:, 1] * 2.0), 0.05, 0.95).astype(np.float32)[:, None, None]
    cy = np.clip(0.5 + (cartesian[:, 0] - 0.5) * 2.0, 0.05, 0.95).astype(np.float32)[:, None, None]
    radius = np.clip(0.08 + 0.1 * cartesian[:, 2], 0.03, 0.3).astype(np.float32)[:, None, None]
    inside = ((xx - cx) ** 2 + (yy - cy) ** 2) < radius**2
    frames = np.empty((t, size, size, 3), dtype=np.uint8)
    frames[..., 0] = (60 + 120 * xx).astype(np.uint8)
    frames[..., 1] = (40 + 100 * yy).astype(np.uint8)
    frames[..., 2] = 90
    colour = np.where(gripper[:, None] > 0.5, [230, 40, 40], [40, 230, 40]).astype(np.uint8)
    frames[inside] = np.repeat(colour, inside.reshape(t, -1).sum(1), axis=0)
    return frames


def make_synthetic_episode(
    path: str | os.PathLike, length: int = 40, seed: int = 0, image_size: int = 64, control_hz: float = 15.0,
    cameras: tuple[str, ...] = ("exterior_1_left",), **writer_kwargs,
) -> Path:
    """Write one synthetic episode to `path` and return it."""
    traj = synthetic_trajectory(length, seed)
    frames = render_blob(traj["cartesian"], traj["gripper"], image_size)
    images = {cam: frames if i == 0 else frames[:, ::-1].copy() for i, cam in enumerate(cameras)}
    return write_episode(
        path, images=images, cartesian_position=traj["cartesian"], gripper_position=traj["gripper"],
        joint_positions=traj["joints"], control_hz=control_hz,
        actions={"cartesian_velocity": traj["velocity"], "gripper_position": traj["gripper"]},
        success=bool(seed % 2), task="synthetic blob", **writer_kwargs,
    )


def make_synthetic_dataset(
    root: str | os.PathLike, num_episodes: int = 10, length: int = 40, seed: int = 0, **kwargs,
) -> list[Path]:
    """Write `num_episodes` synthetic episodes named episode_00000.h5, ... under `root`."""
    root = Path(root)
    return [make_synthetic_episode(root / f"episode_{i:05d}.h5", length=length, seed=seed * 100003 + i, **kwargs)
            for i in range(num_episodes)]
