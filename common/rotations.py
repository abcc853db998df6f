"""Rotations and poses in DROID's convention: extrinsic xyz Euler angles (scipy's "xyz"), deltas composed.

R = Rz(yaw) @ Ry(pitch) @ Rx(roll). A delta pose (Δxyz, Δrpy) moves a pose (p, R) to (p + Δxyz, R(Δrpy) @ R):
the rotation is applied on the left, in the base frame. `delta_pose_actions` is its inverse over a state
sequence (the V-JEPA 2-AC actions). Vectorised numpy, no scipy dependency; the environments, the robots,
the data layer and the planners all share these definitions.
"""

from __future__ import annotations

import numpy as np

from common.droid import ACTION_DIM


def euler_xyz_to_matrix(euler: np.ndarray) -> np.ndarray:
    """(..., 3) extrinsic xyz Euler angles -> (..., 3, 3) rotation matrices."""
    return _euler_to_matrix(np, np.asarray(euler, dtype=np.float64))


def matrix_to_euler_xyz(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) extrinsic xyz Euler angles, pitch in [-pi/2, pi/2]."""
    return _matrix_to_euler(np, np.asarray(m, dtype=np.float64))


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


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """(x, y, z, w) unit quaternion -> rotation matrix."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    """Rotation matrix -> (x, y, z, w) unit quaternion with w >= 0 (Shepperd's method)."""
    m = np.asarray(m, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i], q[j], q[k] = s / 4, (m[j, i] + m[i, j]) / s, (m[k, i] + m[i, k]) / s
    q = np.asarray(q)
    return q if q[3] >= 0 else -q


def apply_delta_pose(position: np.ndarray, rotation: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pose (p + Δxyz, R(Δrpy) @ R) reached from (position (3,), rotation (3, 3)) by delta[:6]."""
    delta = np.asarray(delta, dtype=np.float64)
    return np.asarray(position, dtype=np.float64) + delta[:3], euler_xyz_to_matrix(delta[3:6]) @ rotation


def delta_pose_actions(cartesian: np.ndarray, gripper: np.ndarray) -> np.ndarray:
    """V-JEPA 2-AC actions between consecutive states: (T, 6), (T,) -> (T - 1, 7).

    action k = (xyz_{k+1} - xyz_k, euler(R_{k+1} @ R_k^T), g_{k+1} - g_k), so the
    rotation part composed with R_k gives R_{k+1}.
    """
    cartesian = np.asarray(cartesian, dtype=np.float64)
    gripper = np.asarray(gripper, dtype=np.float64).reshape(len(cartesian))
    rot = euler_xyz_to_matrix(cartesian[:, 3:6])
    relative = rot[1:] @ np.swapaxes(rot[:-1], -1, -2)
    out = np.empty((len(cartesian) - 1, ACTION_DIM))
    out[:, 0:3] = cartesian[1:, :3] - cartesian[:-1, :3]
    out[:, 3:6] = matrix_to_euler_xyz(relative)
    out[:, 6] = gripper[1:] - gripper[:-1]
    return out


def _xp(x):  # noqa: ANN001, ANN202 - the array namespace of x: numpy, or torch for a tensor (imported lazily)
    if type(x).__module__.startswith("torch"):
        import torch

        return torch
    return np


def compose_pose(states, actions):  # noqa: ANN001, ANN201 - numpy arrays or torch tensors alike
    """The pose reached from DROID states (..., 7) by delta-pose actions (..., 7): V-JEPA 2-AC's planning rollout.

    xyz are added; the rotation becomes R(Δrpy) @ R(rpy), read back as extrinsic xyz Euler angles; the gripper is
    added and clipped to [0, 1] (Meta's `compute_new_pose`). Works on numpy arrays and torch tensors (any device,
    computed in float64, returned in the input's dtype), so the planners' batched rollouts use it as it is.
    """
    xp = _xp(states)
    dtype = states.dtype
    s, a = states.astype(np.float64) if xp is np else states.double(), actions
    a = a.astype(np.float64) if xp is np else a.to(s)
    rot = _euler_to_matrix(xp, a[..., 3:6]) @ _euler_to_matrix(xp, s[..., 3:6])
    gripper = xp.clip(s[..., 6:7] + a[..., 6:7], 0.0, 1.0)
    out = xp.concatenate([s[..., :3] + a[..., :3], _matrix_to_euler(xp, rot), gripper], -1)
    return out.astype(dtype) if xp is np else out.to(dtype)


def _euler_to_matrix(xp, e):  # noqa: ANN001, ANN202 - numpy or torch (xp), R = Rz(yaw) Ry(pitch) Rx(roll)
    ca, sa, cb, sb, cc, sc = (f(e[..., i]) for i in range(3) for f in (xp.cos, xp.sin))
    rows = [cc * cb, cc * sb * sa - sc * ca, cc * sb * ca + sc * sa,
            sc * cb, sc * sb * sa + cc * ca, sc * sb * ca - cc * sa,
            -sb, cb * sa, cb * ca]
    return xp.stack(rows, -1).reshape(*e.shape[:-1], 3, 3)


def _matrix_to_euler(xp, m):  # noqa: ANN001, ANN202 - numpy or torch (xp); at gimbal lock roll is 0
    pitch = xp.arcsin(xp.clip(-m[..., 2, 0], -1.0, 1.0))
    regular = xp.sqrt(m[..., 0, 0] ** 2 + m[..., 1, 0] ** 2) > 1e-9
    roll = xp.where(regular, xp.arctan2(m[..., 2, 1], m[..., 2, 2]), 0.0 * pitch)
    yaw = xp.where(regular, xp.arctan2(m[..., 1, 0], m[..., 0, 0]), xp.arctan2(-m[..., 0, 1], m[..., 1, 1]))
    return xp.stack([roll, pitch, yaw], -1)
