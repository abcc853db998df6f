"""The robot interface and its safety layer (real MuJoCo for SimRobot)."""

import sys
import time

import numpy as np
import pytest

from common.droid import CARTESIAN_KEY, GRIPPER_KEY, IMAGE_KEY, JOINTS_KEY, TIMESTAMP_KEY
from common.rotations import euler_xyz_to_matrix, matrix_to_quaternion, quaternion_to_matrix
from envs.franka_model import FR3_JOINT_LIMITS, HOME_QPOS, WORKSPACE_HIGH, WORKSPACE_LOW
from envs.robot import SimRobot
from envs.safety import SafetyLayer, SafetyLimits, SafetyStop


def obs(position=(0.5, 0.0, 0.3), age: float = 0.0) -> dict:
    return {CARTESIAN_KEY: np.array([*position, 0.0, 0.0, 0.0]), GRIPPER_KEY: np.array([0.0]),
            TIMESTAMP_KEY: time.monotonic() - age}


def test_per_step_limits_clip_translation_rotation_and_gripper():
    safety = SafetyLayer()
    out = safety.filter([0.2, -0.2, 0.01, 0.5, -0.01, -0.9, 1.7], obs())
    np.testing.assert_allclose(out, [0.075, -0.075, 0.01, 0.15, -0.01, -0.15, 1.0], atol=1e-7)
    assert safety.clip_counts == {"translation": 1, "rotation": 1, "workspace": 0, "gripper": 1}
    inside = safety.filter([0.01, 0.02, -0.03, 0.0, 0.0, 0.0, 0.5], obs())
    np.testing.assert_allclose(inside, [0.01, 0.02, -0.03, 0, 0, 0, 0.5], atol=1e-7)  # safe actions pass unchanged


def test_workspace_box_shortens_the_step_at_the_boundary():
    limits = SafetyLimits(workspace_low=(0.3, -0.2, 0.05), workspace_high=(0.6, 0.2, 0.5))
    safety = SafetyLayer(limits)
    out = safety.filter([0.05, 0.05, -0.05, 0, 0, 0, 0], obs(position=(0.58, 0.19, 0.07)))
    np.testing.assert_allclose(out[:3], [0.02, 0.01, -0.02], atol=1e-6)
    assert safety.clip_counts["workspace"] == 1
    # already outside (e.g. pushed by hand): it moves back toward the box at most one step limit, never further out
    out = safety.filter([0.05, 0.0, 0.0, 0, 0, 0, 0], obs(position=(0.7, 0.0, 0.3)))
    np.testing.assert_allclose(out[:3], [-0.075, 0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("action, reason", [
    ([np.nan, 0, 0, 0, 0, 0, 0], "non-finite action at indices \\[0\\]"),
    ([0, 0, 0, 0, 0, np.inf, 0], "non-finite action at indices \\[5\\]"),
    ([0, 0, 0], "shape \\(7,\\)"),
    ("go", "not numeric"),
])
def test_bad_actions_stop(action, reason):
    with pytest.raises(SafetyStop, match=reason):
        SafetyLayer().filter(action, obs())


def test_stale_or_non_finite_observations_stop():
    safety = SafetyLayer(SafetyLimits(observation_timeout_s=0.2))
    with pytest.raises(SafetyStop, match="stale observation"):
        safety.filter(np.zeros(7), obs(age=0.5))
    bad = obs()
    bad[CARTESIAN_KEY][1] = np.nan
    with pytest.raises(SafetyStop, match="non-finite observation"):
        safety.filter(np.zeros(7), bad)
    no_time = obs()
    del no_time[TIMESTAMP_KEY]
    with pytest.raises(SafetyStop, match="stale"):
        safety.filter(np.zeros(7), no_time)


def test_quaternion_helpers_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = euler_xyz_to_matrix(rng.uniform(-np.pi, np.pi, 3))
        q = matrix_to_quaternion(m)
        assert q[3] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-9
        np.testing.assert_allclose(quaternion_to_matrix(q), m, atol=1e-9)


def test_sim_robot_observes_acts_safely_and_stops():
    robot = SimRobot("FrankaReach-v0", image_size=32)
    try:
        first = robot.reset(seed=3)
        assert first[IMAGE_KEY].shape == (32, 32, 3) and first[IMAGE_KEY].dtype == np.uint8
        assert first[CARTESIAN_KEY].shape == (6,) and first[GRIPPER_KEY].shape == (1,) and first[JOINTS_KEY].shape == (7,)
        assert robot.goal_image().shape == (32, 32, 3)
        sent = robot.act([0.5, 0.0, 0.0, 0, 0, 0, 0])  # 50 cm asked, 7.5 cm sent
        assert sent[0] == pytest.approx(0.075)
        after = robot.observe()
        assert 0.02 < after[CARTESIAN_KEY][0] - first[CARTESIAN_KEY][0] < 0.08
        with pytest.raises(SafetyStop, match="non-finite"):
            robot.act([np.nan] * 7)
        robot.safety.limits.observation_timeout_s = 0.05
        time.sleep(0.1)
        with pytest.raises(SafetyStop, match="stale"):
            robot.act(np.zeros(7))
    finally:
        robot.close()


def test_act_before_observe_is_refused():
    robot = SimRobot("FrankaReach-v0", image_size=32)
    try:
        with pytest.raises(SafetyStop, match="before any observe"):
            robot.act(np.zeros(7))
    finally:
        robot.close()


def test_franky_robot_explains_the_missing_package(monkeypatch):
    # franky-control comes with the `robot` extra; without it the error says how to install it
    from envs.robot import FrankyRobot

    monkeypatch.setitem(sys.modules, "franky", None)  # what `import franky` sees when it is not installed
    with pytest.raises(ImportError, match=r'pip install -e "\.\[robot\]"'):
        FrankyRobot("172.16.0.2", camera=lambda: np.zeros((4, 4, 3), np.uint8))


def test_joint_guard_stops_near_a_limit_and_only_when_limits_are_known():
    limits = SafetyLimits(joint_limits=FR3_JOINT_LIMITS, joint_margin=0.05)
    home = obs()
    home[JOINTS_KEY] = np.array(HOME_QPOS)
    SafetyLayer(limits).filter(np.zeros(7), home)  # well inside: passes
    near = dict(home, **{JOINTS_KEY: np.array([*HOME_QPOS[:5], 0.57, HOME_QPOS[6]])})  # joint 6: FR3 low 0.5445
    with pytest.raises(SafetyStop, match="joint 6 at 0.570 rad is within 0.05 rad of its limit"):
        SafetyLayer(limits).filter(np.zeros(7), near)
    with pytest.raises(SafetyStop, match="finite"):
        SafetyLayer(limits).filter(np.zeros(7), dict(home, **{JOINTS_KEY: np.full(7, np.nan)}))
    SafetyLayer().filter(np.zeros(7), near)  # no joint limits configured (sim robots): no joint check


def test_workspace_box_bounds_the_commanded_origin():
    # a robot that integrates commanded targets passes its target: the box bounds the target, not the measured pose
    safety = SafetyLayer()
    high = np.array(WORKSPACE_HIGH)
    out = safety.filter([0.05, 0, 0, 0, 0, 0, 0], obs(position=high - [0.1, 0.1, 0.1]), origin=high - [0.02, 0.1, 0.1])
    np.testing.assert_allclose(out[:3], [0.02, 0, 0], atol=1e-6)
    with pytest.raises(SafetyStop, match="non-finite command origin"):
        safety.filter(np.zeros(7), obs(), origin=[np.nan, 0, 0])


def test_default_workspace_box_is_the_reachable_one():
    # the box the FR3 reaches gripper-down (tests/test_franky.py drives franky-sim to its corners)
    assert SafetyLimits().workspace_low == WORKSPACE_LOW == (0.35, -0.3, 0.015)
    assert SafetyLimits().workspace_high == WORKSPACE_HIGH == (0.65, 0.3, 0.45)
