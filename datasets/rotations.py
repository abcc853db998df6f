"""The V-JEPA 2-AC delta-pose actions computed from DROID state sequences."""

from __future__ import annotations

import numpy as np

from datasets.schema import DELTA_POSE_DIM
from envs.rotations import euler_xyz_to_matrix, matrix_to_euler_xyz

__all__ = ["delta_pose_actions", "euler_xyz_to_matrix", "matrix_to_euler_xyz"]


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
