"""An external gymnasium MuJoCo env (Reacher-v5, not ours) through the goal-env adapter: goals, distance, success,
and the whole path collect -> train -> cem_goal -> evaluate."""

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from common import goal_env
from common.cli import CONFIG_DIR
from common.config import build_config
from common.errors import UserError
from envs.goal_adapter import MujocoGoalEnv, MujocoGoalSettings, wrap
from planners.cem_goal import evaluate
from planners.evaluate import EvaluateConfig, evaluate_seeds
from planners.factory import PlanConfig
from recipes.collect import CollectConfig, collect
from world_model.train import train, train_config

ROOT = Path(__file__).resolve().parents[1]  # (torch is imported above, before the first EGL context, as the suite does)
REACHER = {"render_mode": "rgb_array", "width": 32, "height": 32}
TINY_LEWM = ["model=lewm", "model.encoder.img_size=32", "model.encoder.depth=1", "model.encoder.width=32",
             "model.encoder.num_heads=2", "model.encoder.embed_dim=16", "model.encoder.projector_hidden=32",
             "model.predictor.width=32", "model.predictor.depth=1", "model.predictor.num_heads=2",
             "model.sigreg_projections=16"]


def test_the_adapter_samples_a_seeded_goal_restores_the_start_and_scores_by_a_body_position():
    env = MujocoGoalEnv(gym.make("Reacher-v5", **REACHER), MujocoGoalSettings(body="fingertip", threshold=0.02,
                                                                                subgoals=2))
    try:
        assert goal_env.task(env) is env and not goal_env.lacks(env)
        obs, info = env.reset(seed=3)
        start = env.unwrapped.data.qpos.copy()
        goal = env.goal_image().copy()
        assert goal.shape == (32, 32, 3) and goal.dtype == np.uint8 and not np.array_equal(goal, env.render())
        assert len(env.subgoal_images()) == 2
        np.testing.assert_allclose(obs, env.unwrapped._get_obs())  # the observation is the start's
        distance = env.task_distance()
        assert distance > 0.02 and not env.is_success(distance)
        env.reset(seed=3)
        np.testing.assert_array_equal(env.goal_image(), goal)  # seeded
        np.testing.assert_array_equal(env.unwrapped.data.qpos, start)
        env.set_state(env.goal_qpos, env.goal_qvel)  # at the goal: distance 0, success, the goal's image
        assert env.task_distance() == pytest.approx(0.0) and env.is_success(env.task_distance())
        np.testing.assert_array_equal(env.render(), goal)
        qpos, goal_qpos = start.copy(), start.copy()
        goal_qpos[:2] += 0.3
        env.reset(seed=5, options={"qpos": qpos, "goal_qpos": goal_qpos})  # recorded start and goal
        np.testing.assert_allclose(env.unwrapped.data.qpos, qpos)
        np.testing.assert_allclose(env.goal_qpos, goal_qpos)
    finally:
        env.close()


def test_the_adapter_names_what_it_needs():
    with pytest.raises(UserError, match=r"^env_adapter=mujoco wraps gymnasium MuJoCo envs .*Pendulum-v1 \(PendulumEnv\) is not one$"):
        wrap(gym.make("Pendulum-v1", render_mode="rgb_array"), "mujoco", env_id="Pendulum-v1")
    with pytest.raises(UserError, match=r"adapter.body='hand' is not a body of Reacher-v5; its bodies: world, body0"):
        wrap(gym.make("Reacher-v5", **REACHER), "mujoco", {"body": "hand"})
    with pytest.raises(UserError, match="make Reacher-v5 with render_mode='rgb_array', got None"):
        wrap(gym.make("Reacher-v5"), "mujoco")
    with pytest.raises(UserError, match="^env_adapter must be one of mujoco"):
        wrap(gym.make("Reacher-v5", **REACHER), "bullet")


def test_an_external_mujoco_env_goes_from_collection_to_training_planning_and_evaluation(tmp_path):
    data = tmp_path / "data"
    summary = collect(CollectConfig(env_id="Reacher-v5", env_module=None, env_kwargs={"width": 32, "height": 32},
                                    out=str(data), num_episodes=4, max_steps=10, workers=1), progress=False)
    assert summary["collected"] == 4 and summary["policy"] == "random"  # auto: Reacher has no scripted expert
    overrides = TINY_LEWM + [f"data.root={data}", "data.image_size=32", "data.action_mode=recorded",
                             "data.recorded_actions=[env]", f"out={tmp_path / 'run'}", "optim.steps=3",
                             "optim.batch_size=4", "progress=false", "val_batches=1"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        trained = train(train_config(compose("train", overrides=overrides)))
    checkpoint = Path(trained["checkpoint"])
    plan = ["env_id=Reacher-v5", "env_module=null", "env_kwargs={width: 32, height: 32}", "env_adapter=mujoco",
            "adapter.body=fingertip", "adapter.threshold=0.02", "adapter.goal_steps=5", f"checkpoint={checkpoint}",
            "fixed_dims={}", "max_steps=3", "solver.samples=8", "solver.elites=2", "solver.iterations=1",
            "mpc.horizon=2", "threads=1", "progress=false"]
    result = subprocess.run([sys.executable, str(ROOT / "planners" / "cem_goal.py"), *plan, "episodes=1",
                             f"video_dir={tmp_path / 'videos'}"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    line = json.loads(result.stdout.splitlines()[-1])
    assert line["env_adapter"] == "mujoco" and line["episodes"] == 1 and line["mean_final_distance"] > 0
    assert (tmp_path / "videos" / "episode_000.mp4").exists()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose("evaluate", overrides=[o for o in plan if not o.startswith("fixed_dims")]
                      + ["fixed_dims=[]", "seeds=[0,1]", "episodes=1"])
    seeds = evaluate_seeds(build_config(EvaluateConfig, cfg))
    assert seeds["seeds"] == [0, 1] and len(seeds["per_seed"]) == 2 and seeds["agent"] == "planner"
    random = evaluate(build_config(PlanConfig, {"env_id": "Reacher-v5", "env_module": None, "agent": "random",
                                                "env_kwargs": {"width": 32, "height": 32}, "env_adapter": "mujoco",
                                                "adapter": {"body": "fingertip"}, "episodes": 1, "max_steps": 3,
                                                "video_dir": None, "progress": False}))
    assert random["agent"] == "random" and random["episodes"] == 1
    with pytest.raises(UserError, match=r"^Reacher-v5 \(ReacherEnv\) cannot be used for goal-image planning: it lacks "
                                        r"goal_image\(\).* a gymnasium MuJoCo env gets it from env_adapter=mujoco$"):
        evaluate(build_config(PlanConfig, {"env_id": "Reacher-v5", "env_module": None, "agent": "random",
                                           "env_kwargs": {"width": 32, "height": 32}, "episodes": 1, "video_dir": None}))


def test_a_readout_is_refused_on_episodes_without_a_robot_pose(tmp_path):
    collect(CollectConfig(env_id="Reacher-v5", env_module=None, env_kwargs={"width": 32, "height": 32},
                          out=str(tmp_path / "data"), num_episodes=2, max_steps=6, workers=1), progress=False)
    overrides = TINY_LEWM + [f"data.root={tmp_path / 'data'}", "data.image_size=32", "data.action_mode=recorded",
                             "data.recorded_actions=[env]", f"out={tmp_path / 'run'}", "optim.steps=1",
                             "optim.batch_size=2", "progress=false", "model.readout_weight=0.5"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        config = train_config(compose("train", overrides=overrides))
    with pytest.raises(ValueError, match=r"model.readout_weight > 0 trains a readout of the robot pose .* set "
                                         r"model.readout_weight=0 or collect with a state_fn"):
        train(config)
