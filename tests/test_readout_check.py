"""planners/readout_check.py: the readout's error on the images a planner aims at (sub-goals, goal, start)."""

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import tiny_checkpoint

import envs  # noqa: F401  (registers the Franka envs)
from common.seeding import evaluation_seed
from planners.factory import load_model
from planners.readout_check import readout_errors

ROOT = Path(__file__).resolve().parents[1]


def test_pick_and_place_subgoal_states_are_what_its_subgoal_images_show():
    """open above the cube, open around it, grasped, carried above the goal: the states of those configurations."""
    env = gym.make("FrankaPickPlace-v0", image_size=32).unwrapped
    try:
        env.reset(seed=3)
        states = env.subgoal_states()
        cube = env.cube_pos(env.data)
    finally:
        env.close()
    assert len(states) == len(env.subgoal_images()) == 4
    above, around, grasped, carried = states
    np.testing.assert_allclose(around[:2], cube[:2], atol=0.01)  # the TCP at the cube
    assert above[2] > around[2] + 0.05 and carried[2] > grasped[2] + 0.05  # above it, then lifted
    assert above[6] < 0.1 and around[6] < 0.1 and grasped[6] > 0.3  # open, open, closed on the cube
    np.testing.assert_allclose(grasped[:3], around[:3], atol=0.01)  # the grasp closes where the fingers were


def test_the_errors_are_the_readout_of_each_image_minus_the_state_it_shows(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "ckpt", readout_dims=[0, 1, 2, 6])
    model, _, _ = load_model(checkpoint)
    env = gym.make("FrankaPickPlace-v0", image_size=32)
    seeds = [evaluation_seed(0, 0), evaluation_seed(0, 1)]
    try:
        errors, names = readout_errors(model, env, [], 32, seeds, torch.device("cpu"))
        env.reset(seed=seeds[1])  # the second reset again: its goal image and state by hand
        task = env.unwrapped
        goal, goal_state = task.goal_image(), task.goal_state()
        subgoal, subgoal_state = task.subgoal_images()[1], task.subgoal_states()[1]
    finally:
        env.close()
    assert names == ["sub-goal 1", "sub-goal 2", "sub-goal 3", "sub-goal 4", "goal", "start"]
    assert errors.shape == (2, 6, 4)
    with torch.no_grad():
        read = model.readout(model.encode(torch.from_numpy(np.stack([subgoal, goal])).permute(0, 3, 1, 2)[:, None])[:, 0])
    expected = read.numpy() - np.stack([subgoal_state, goal_state])[:, [0, 1, 2, 6]]
    np.testing.assert_allclose(errors[1, [1, 4]], expected, rtol=1e-5, atol=1e-6)


def _check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "planners/readout_check.py"), *args, "threads=1"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.parametrize("readout", [True, False])
def test_the_command_prints_a_table_and_a_json_line_or_says_there_is_no_readout(tmp_path, readout):
    checkpoint = tiny_checkpoint(tmp_path / "ckpt", readout_dims=[0, 1, 2] if readout else None)
    result = _check(f"checkpoint={checkpoint}", "env_id=FrankaPush-v0", "episodes=2")
    if not readout:
        assert result.returncode != 0
        errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
        assert errors == [f"error: {checkpoint}: this model has no state readout (train with model.readout_weight > 0);"
                          " there is nothing to check"], result.stderr[-2000:]
        return
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["images"] == ["sub-goal 1", "sub-goal 2", "goal", "start"] and summary["resets"] == 2
    assert lines[-6].split() == ["x", "y", "z"] and lines[-2].split()[0] == "start"
    assert all(len(row) == 3 and all(v >= 0 for v in row.values()) for row in summary["mean_abs_error"].values())


def test_an_env_without_goal_states_is_told_what_it_lacks(tmp_path):
    from helpers import PointGoalEnv

    from common.errors import UserError

    model, _, _ = load_model(tiny_checkpoint(tmp_path / "ckpt", readout_dims=[0, 1]))
    env = PointGoalEnv.make()
    with pytest.raises(UserError, match=r"cannot be used for a readout check: it lacks goal_state\(\) -> \(S,\) array"):
        readout_errors(model, env, [], 32, [0], torch.device("cpu"))
