import numpy as np

from common.rotations import delta_pose_actions, euler_xyz_to_matrix, matrix_to_euler_xyz


def _elementary(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    m = np.eye(3)
    m[i, i], m[j, j] = c, c
    m[i, j], m[j, i] = (-s, s) if axis != 1 else (s, -s)
    return m


def _extrinsic_xyz(euler) -> np.ndarray:
    """Independent construction: rotate about fixed x, then fixed y, then fixed z."""
    return _elementary(2, euler[2]) @ _elementary(1, euler[1]) @ _elementary(0, euler[0])


def _random_rotations(rng, n):
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], 1)


def test_euler_matrix_matches_independent_construction():
    rng = np.random.default_rng(0)
    euler = rng.uniform(-np.pi, np.pi, size=(200, 3)) * np.array([1, 0.5, 1])
    ours = euler_xyz_to_matrix(euler)
    for e, m in zip(euler, ours):
        np.testing.assert_allclose(m, _extrinsic_xyz(e), atol=1e-12)


def test_matrix_euler_round_trip_on_random_rotations():
    rotations = _random_rotations(np.random.default_rng(1), 500)
    back = euler_xyz_to_matrix(matrix_to_euler_xyz(rotations))
    np.testing.assert_allclose(back, rotations, atol=1e-9)


def test_delta_pose_composes_to_next_rotation():
    """For random rotations, R(action) @ R_k reproduces R_{k+1}; position and gripper are plain differences."""
    rng = np.random.default_rng(2)
    rotations = _random_rotations(rng, 300)
    euler = matrix_to_euler_xyz(rotations)
    cartesian = np.concatenate([rng.normal(size=(300, 3)), euler], axis=1)
    gripper = rng.uniform(size=300)
    actions = delta_pose_actions(cartesian, gripper)
    assert actions.shape == (299, 7)
    for k in range(299):
        relative = _extrinsic_xyz(actions[k, 3:6])
        np.testing.assert_allclose(relative @ rotations[k], rotations[k + 1], atol=1e-9)
    np.testing.assert_allclose(actions[:, :3], cartesian[1:, :3] - cartesian[:-1, :3])
    np.testing.assert_allclose(actions[:, 6], gripper[1:] - gripper[:-1])


def test_delta_pose_of_a_pure_yaw_step():
    cartesian = np.array([[0.5, 0.0, 0.3, np.pi, 0.0, 0.2], [0.6, 0.0, 0.3, np.pi, 0.0, 0.3]])
    actions = delta_pose_actions(cartesian, np.array([0.0, 1.0]))
    np.testing.assert_allclose(actions[0], [0.1, 0, 0, 0, 0, 0.1, 1.0], atol=1e-12)


def test_compose_pose_matches_meta_compute_new_pose_on_numpy_and_torch():
    import torch
    from helpers import vjepa2_ac_fixture
    from safetensors.torch import load_file

    from common.rotations import compose_pose

    ref = load_file(vjepa2_ac_fixture() / "reference.safetensors")
    states, actions, poses = ref["states"], ref["actions"], ref["plan_poses"]
    s2 = compose_pose(states[:, 1], actions[:, 1])
    s3 = compose_pose(s2, actions[:, 2])
    assert s3.dtype == torch.float32
    torch.testing.assert_close(torch.stack([s2, s3], 1), poses[:, 2:], atol=1e-6, rtol=0)
    as_numpy = compose_pose(states[:, 1].numpy(), actions[:, 1].numpy())
    np.testing.assert_allclose(as_numpy, poses[:, 2].numpy(), atol=1e-6)
    assert poses[0, 2, 6] == 1.0  # the gripper is clipped to [0, 1]
