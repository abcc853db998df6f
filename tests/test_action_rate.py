"""Frameskip-aware planning: a model trained at a lower rate than the env's control rate acts through the env
actions its clips stood for (planners.actions.ActionRate), and a frameskip-3 model plans in a 1-step env."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import PointGoalEnv, tiny_checkpoint

from common.config import build_config
from common.rotations import apply_delta_pose, delta_pose_actions, euler_xyz_to_matrix, matrix_to_euler_xyz
from datasets.clip_actions import ClipActions
from planners.actions import ActionRate
from planners.cem_goal import evaluate
from planners.episodes import PlannerAgent, run_episode
from planners.factory import PlanConfig, SolverConfig, build_planner, load_model
from planners.mpc import MPCConfig


@pytest.mark.parametrize("reduce", ["sum", "stack", "last"])
def test_recorded_commands_split_and_reduce_back_as_the_clip_dataset_did(reduce):
    rate = ActionRate(3, "recorded", reduce)
    rng = np.random.default_rng(0)
    steps = rng.uniform(-1, 1, (3, 2)) if reduce == "stack" else np.repeat(rng.uniform(-1, 1, (1, 2)), 3, 0)
    clip = ClipActions("recorded", ("env",), reduce)
    model_action = clip(None, None, {"action/env": steps}, np.array([0, 3]), 3)[0]  # what training saw
    np.testing.assert_allclose(rate.to_model(steps), model_action)
    np.testing.assert_allclose(rate.to_env(model_action), steps, atol=1e-6)  # and back
    low, high = rate.bounds(-np.ones(2), np.ones(2))
    assert len(low) == len(model_action) and high.max() == {"sum": 3.0, "stack": 1.0, "last": 1.0}[reduce]


def test_a_delta_pose_splits_into_equal_steps_that_compose_to_it():
    rate = ActionRate(3, "delta_pose")
    action = np.array([0.09, -0.03, 0.06, 0.2, -0.1, 0.3, 0.6])
    steps = rate.to_env(action)
    assert steps.shape == (3, 7)
    position, rotation, gripper = np.zeros(3), euler_xyz_to_matrix(np.array([np.pi, 0.1, 0.0])), [0.0]
    poses = [np.concatenate([position, matrix_to_euler_xyz(rotation)])]
    for step in steps.astype(np.float64):  # integrated as the env applies them: xyz added, R(d) R
        position, rotation = apply_delta_pose(position, rotation, step)
        gripper.append(gripper[-1] + step[6])
        poses.append(np.concatenate([position, matrix_to_euler_xyz(rotation)]))
    clip = delta_pose_actions(np.stack(poses)[[0, 3]], np.array(gripper)[[0, 3]])[0]  # the dataset's action
    np.testing.assert_allclose(clip, action, atol=1e-5)
    np.testing.assert_allclose(rate.to_model(steps), action, atol=1e-5)


def test_the_frameskip_comes_from_the_checkpoints_data_and_the_env_rate():
    assert ActionRate.for_model({"fps": 5.0, "action_mode": "recorded"}, 15.0) == ActionRate(3, "recorded", "sum")
    assert ActionRate.for_model({"frameskip": 2, "recorded_reduce": "stack"}, 50.0) == ActionRate(2, "delta_pose", "stack")
    assert ActionRate.for_model({}, 15.0).skip == 1
    with pytest.raises(ValueError, match="recorded_reduce must be one of"):
        ActionRate(2, "recorded", "mean")


class _Recorder(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.actions = []

    def step(self, action):
        self.actions.append(np.asarray(action))
        return self.env.step(action)


def test_a_frameskip_3_model_plans_in_a_1_step_env(tmp_path):
    data = {"action_mode": "recorded", "recorded_actions": ["env"], "recorded_reduce": "sum", "frameskip": 3}
    checkpoint = tiny_checkpoint(tmp_path / "ckpt", action_dim=2, data=data)
    model, config, _ = load_model(checkpoint)
    env = _Recorder(PointGoalEnv.make(image_size=32))
    rate = ActionRate.for_model(config["data"], float(env.metadata["render_fps"]))
    planner = build_planner(model, config, SolverConfig(samples=16, elites=4, iterations=2), MPCConfig(horizon=2),
                            {}, torch.device("cpu"), 0, env, rate)
    assert torch.allclose(planner.bounds.high, torch.full((2,), 0.3))  # three env steps of at most 0.1 each
    result = run_episode(env, PlannerAgent(planner, None, False, rate), max_steps=6, seed=1)
    assert result.steps == 6 and len(result.trace) == 2  # one plan per model step of three env steps
    executed = np.stack(env.actions)
    for plan, model_action in enumerate(planner.executed[-2:]):
        np.testing.assert_allclose(executed[3 * plan: 3 * plan + 3], np.repeat(model_action.numpy()[None] / 3, 3, 0),
                                   atol=1e-6)
    assert np.abs(executed).max() <= 0.1 + 1e-6
    if "PointGoal-v0" not in gym.registry:
        gym.register("PointGoal-v0", entry_point=PointGoalEnv.make, max_episode_steps=50)
    summary = evaluate(build_config(PlanConfig, {
        "checkpoint": str(checkpoint), "env_id": "PointGoal-v0", "env_module": None, "episodes": 1, "max_steps": 6,
        "fixed_dims": [], "video_dir": None, "progress": False, "solver": {"samples": 8, "elites": 2, "iterations": 1}}))
    assert summary["frameskip"] == 3 and summary["episodes"] == 1
