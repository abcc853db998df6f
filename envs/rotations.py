"""Extrinsic xyz Euler angles, DROID's orientation convention (scipy's "xyz").

R = Rz(yaw) @ Ry(pitch) @ Rx(roll). Vectorised numpy, no scipy dependency. This
sits in `envs/`, the bottom of the one-way data flow, so that the environments,
the data layer and the planners all share one definition.
"""

from __future__ import annotations

import numpy as np


def euler_xyz_to_matrix(euler: np.ndarray) -> np.ndarray:
    """(..., 3) extrinsic xyz Euler angles -> (..., 3, 3) rotation matrices."""
    euler = np.asarray(euler, dtype=np.float64)
    a, b, c = euler[..., 0], euler[..., 1], euler[..., 2]
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    m = np.empty((*euler.shape[:-1], 3, 3))
    m[..., 0, 0] = cc * cb
    m[..., 0, 1] = cc * sb * sa - sc * ca
    m[..., 0, 2] = cc * sb * ca + sc * sa
    m[..., 1, 0] = sc * cb
    m[..., 1, 1] = sc * sb * sa + cc * ca
    m[..., 1, 2] = sc * sb * ca - cc * sa
    m[..., 2, 0] = -sb
    m[..., 2, 1] = cb * sa
    m[..., 2, 2] = cb * ca
    return m


def matrix_to_euler_xyz(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) extrinsic xyz Euler angles, pitch in [-pi/2, pi/2]."""
    m = np.asarray(m, dtype=np.float64)
    sb = np.clip(-m[..., 2, 0], -1.0, 1.0)
    pitch = np.arcsin(sb)
    cb = np.sqrt(m[..., 0, 0] ** 2 + m[..., 1, 0] ** 2)
    regular = cb > 1e-9
    roll = np.where(regular, np.arctan2(m[..., 2, 1], m[..., 2, 2]), 0.0)
    yaw = np.where(regular, np.arctan2(m[..., 1, 0], m[..., 0, 0]), np.arctan2(-m[..., 0, 1], m[..., 1, 1]))
    return np.stack([roll, pitch, yaw], axis=-1)


def rotation_vector(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) axis * angle (angle in [0, pi])."""
    m = np.asarray(m, dtype=np.float64)
    cos = np.clip((np.trace(m, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    axis = np.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1)
    sin = np.sin(angle)
    small = sin < 1e-6
    scale = np.where(small, 0.5, angle / (2.0 * np.where(small, 1.0, sin)))
    vec = axis * scale[..., None]
    # near pi the antisymmetric part vanishes: take the axis from the symmetric part instead
    near_pi = small & (cos < 0)
    if np.any(near_pi):
        sym = (m[near_pi] + np.eye(3)) / 2.0
        col = np.argmax(np.diagonal(sym, axis1=-2, axis2=-1), axis=-1)
        ax = sym[np.arange(len(col)), :, col]
        ax /= np.linalg.norm(ax, axis=-1, keepdims=True)
        vec[near_pi] = ax * np.pi
    return vec
