"""Extrinsic xyz Euler angles (DROID's convention) and the V-JEPA 2-AC delta-pose actions.

DROID stores orientation as extrinsic xyz Euler angles (scipy's "xyz"):
R = Rz(yaw) @ Ry(pitch) @ Rx(roll). Vectorised numpy, no scipy dependency.
"""

from __future__ import annotations

import numpy as np

from datasets.schema import DELTA_POSE_DIM


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


def delta_pose_actions(cartesian: np.ndarray, gripper: np.ndarray) -> np.ndarray:
    """V-JEPA 2-AC actions between consecutive states: (T, 6), (T,) -> (T - 1, 7).

    action k = (xyz_{k+1} - xyz_k, euler(R_{k+1} @ R_k^T), g_{k+1} - g_k), so the
    rotation part composed with R_k gives R_{k+1}.
    """
    cartesian = np.asarray(cartesian, dtype=np.float64)
    gripper = np.asarray(gripper, dtype=np.float64).reshape(len(cartesian))
    rot = euler_xyz_to_matrix(cartesian[:, 3:6])
    relative = rot[1:] @ np.swapaxes(rot[:-1], -1, -2)
    out = np.empty((len(cartesian) - 1, DELTA_POSE_DIM))
    out[:, 0:3] = cartesian[1:, :3] - cartesian[:-1, :3]
    out[:, 3:6] = matrix_to_euler_xyz(relative)
    out[:, 6] = gripper[1:] - gripper[:-1]
    return out
