"""gymnasium's Pusher-v5 through the goal-env adapter: goals that put the object on a target, the scripted expert,
collect -> train -> cem_goal -> evaluate, and goals=dataset restarting an external env at a recorded state."""

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from common import goal_env
from common.cli import CONFIG_DIR
from common.config import build_config
from common.errors import UserError
from datasets.reader import EpisodeReader
from datasets.schema import CARTESIAN, ENV_STATE, PRIVILEGED_GROUP, SIM_STATE, EpisodeError
from datasets.validate import check_episode
from envs.goal_adapter import wrap
from planners.cem_goal import dataset_goals, evaluate, make_env
from planners.evaluate import EvaluateConfig, evaluate_seeds
from planners.factory import PlanConfig
from recipes.collect import CollectConfig, collect
from world_model.train import train, train_config

ROOT = Path(__file__).resolve().parents[1]  # (torch is imported above, before the first EGL context, as the suite does)
CAMERA = {"distance": 1.1, "elevation": -90.0, "azimuth": 90.0, "lookat": [0.45, -0.2, -0.3]}
KWARGS = {"width": 32, "height": 32, "max_episode_steps": 200, "default_camera_config": CAMERA}
ADAPTER = {"goal": "target", "target_dims": [7, 8], "env_goal_dims": [9, 10], "body": "object", "expert": "pusher",
           "shadows": False}
TINY_LEWM = ["model=lewm", "model.encoder.img_size=32", "model.encoder.depth=1", "model.encoder.width=32",
             "model.encoder.num_heads=2", "model.encoder.embed_dim=16", "model.encoder.projector_hidden=32",
             "model.predictor.width=32", "model.predictor.depth=1", "model.predictor.num_heads=2",
             "model.sigreg_projections=16"]


def pusher(**adapter):
    return wrap(gym.make("Pusher-v5", render_mode="rgb_array", **KWARGS), "mujoco", {**ADAPTER, **adapter}, "Pusher-v5")


def pusher_data(out: Path, episodes: int, steps: int, **overrides) -> dict:
    return collect(CollectConfig(**{"env_id": "Pusher-v5", "env_module": None, "env_kwargs": KWARGS,
                                    "env_adapter": "mujoco", "adapter": ADAPTER, "out": str(out), "num_episodes": episodes,
                                    "max_steps": steps, "workers": 1, "state_fn": "envs.mujoco_tasks:pusher_fingertip",
                                    "val_fraction": 0.5, **overrides}), progress=False)


def test_a_target_goal_is_the_object_on_the_env_goal_with_the_arm_at_its_start():
    env = pusher(subgoals=1)
    try:
        assert goal_env.task(env) is env and not goal_env.lacks(env, tuple(goal_env.OPTIONAL))
        obs, _ = env.reset(seed=3)
        data = env.unwrapped.data
        start = data.qpos.copy()
        goal = env.goal_qpos.copy()
        np.testing.assert_array_equal(goal[7:9], start[9:11])  # the object's slides at the env's own goal marker
        np.testing.assert_array_equal(np.delete(goal, [7, 8]), np.delete(start, [7, 8]))  # the arm at its start pose
        np.testing.assert_array_equal(env.goal_qvel, 0.0)
        np.testing.assert_allclose(env.goal_point[:2], data.body("goal").xpos[:2])
        assert env.task_distance() == pytest.approx(np.linalg.norm(obs[17:19] - obs[20:22]))  # Pusher's own distance
        image = env.goal_image()
        assert image.shape == (32, 32, 3) and not np.array_equal(image, env.render())
        subgoal = env.subgoal_images()
        assert len(subgoal) == 1 and not np.array_equal(subgoal[0], image)  # the object half-way
        env.set_state(goal, env.goal_qvel)
        assert env.is_success(env.task_distance()) and np.array_equal(env.render(), image)
        drawn = pusher(target_low=[-0.3, -0.2], target_high=[0.1, 0.2], target_min_distance=0.15)
        try:
            drawn.reset(seed=4)
            q, target = drawn.unwrapped.data.qpos.copy(), drawn.goal_qpos.copy()
            np.testing.assert_array_equal(target[7:9], q[9:11])  # the marker shows the drawn target
            assert np.linalg.norm(q[9:11] - q[7:9]) >= 0.15 and not np.allclose(q[9:11], 0.0)
            drawn.reset(seed=4)
            np.testing.assert_array_equal(drawn.goal_qpos, target)  # seeded
        finally:
            drawn.close()
    finally:
        env.close()


def test_an_expert_goal_is_where_the_experts_push_ends_with_the_hand_in_view():
    """goal=expert: the goal state is the noiseless expert's last state, the object on the env's marker and the
    hand beside it (a target goal leaves the arm at its start pose, out of the top-down view); never met at the
    start (a start the expert fails from is replaced), seeded, sub-goals along the expert's path."""
    env = pusher(goal="expert", goal_steps=200, subgoals=2)
    try:
        obs, _ = env.reset(seed=1001)  # the expert fails from this seed's own start (object near the arm's base)
        data = env.unwrapped.data
        start, goal = data.qpos.copy(), env.goal_qpos.copy()
        np.testing.assert_array_equal(obs[:7], start[:7])  # the observation is of the start actually used
        assert np.linalg.norm(env.goal_point[:2] - data.body("goal").xpos[:2]) < 0.05  # the object on the marker
        assert env.task_distance() > 0.1  # ... which is far from where it starts
        assert np.abs(goal[:7] - start[:7]).max() > 0.3  # the arm moved to push (the target goal keeps its start pose)
        np.testing.assert_array_equal(env.goal_qvel, 0.0)
        image, subgoals = env.goal_image().copy(), env.subgoal_images()
        assert len(subgoals) == 2 and not any(np.array_equal(s, image) for s in subgoals)
        env.reset(seed=1001)
        np.testing.assert_array_equal(env.goal_qpos, goal)
        np.testing.assert_array_equal(env.goal_image(), image)
        env.set_state(goal, env.goal_qvel)
        assert env.is_success(env.task_distance()) and np.array_equal(env.render(), image)
    finally:
        env.close()
    with pytest.raises(UserError, match=r"^adapter.goal=expert needs adapter.expert"):
        pusher(goal="expert", expert=None)
    hopeless = pusher(goal="expert", goal_steps=2)
    try:
        with pytest.raises(UserError, match=r"^adapter.goal=expert: the expert \(pusher\) did not reach its target "
                                            r"within 0.05 in 2 steps from any of 10 starts of seed 5"):
            hopeless.reset(seed=5)
    finally:
        hopeless.close()


def test_target_goals_and_experts_are_checked_in_one_line():
    with pytest.raises(UserError, match=r"^adapter.goal=target needs adapter.target_dims"):
        pusher(target_dims=None)
    with pytest.raises(UserError, match=r"^adapter.goal=target needs adapter.env_goal_dims .* or adapter.target_low"):
        pusher(env_goal_dims=None)
    with pytest.raises(UserError, match=r"adapter.target_low must have one entry per target_dims entry \(2\)"):
        pusher(target_low=[0.0], target_high=[0.1, 0.1])
    with pytest.raises(UserError, match=r"adapter qpos entries \[11\] are outside Pusher-v5's qpos \(size 11\)"):
        pusher(env_goal_dims=[9, 11])
    with pytest.raises(UserError, match=r"^adapter.expert must be one of pusher or module:Class, got 'push'"):
        pusher(expert="push")
    with pytest.raises(UserError, match=r"^adapter.expert=pusher does not fit Reacher-v5"):
        wrap(gym.make("Reacher-v5", render_mode="rgb_array", width=32, height=32), "mujoco",
             {"body": "fingertip", "expert": "pusher"}, "Reacher-v5")
    reacher = wrap(gym.make("Reacher-v5", render_mode="rgb_array", width=32, height=32), "mujoco", {"body": "fingertip"})
    assert goal_env.lacks(reacher, ("expert_action",)) == ["expert_action"]  # no expert unless one is named
    reacher.close()


def test_the_scripted_expert_pushes_the_object_to_its_goal_on_most_seeds():
    env = pusher()
    try:
        successes = []
        for seed in (1, 2, 3, 4):
            env.reset(seed=seed)
            rng = np.random.default_rng(seed)
            for _ in range(200):
                env.step(env.expert_action(rng, 0.1))
                if env.is_success(env.task_distance()):
                    break
            successes.append(env.is_success(env.task_distance()))
        assert sum(successes) >= 3, successes
    finally:
        env.close()


def test_pusher_goes_from_collection_to_training_planning_and_evaluation(tmp_path):
    data = tmp_path / "data"
    summary = pusher_data(data, 4, 12)
    assert summary["collected"] == 4 and summary["policy"] == "mixture"  # auto: the adapter has an expert
    for path in sorted(data.glob("*.h5")):
        assert check_episode(path) == 12
        with EpisodeReader(path) as ep:  # the robot state is Pusher's fingertip, not the observation's first numbers
            np.testing.assert_allclose(ep.read(CARTESIAN)[:, :3], ep.read(ENV_STATE)[:, 14:17])
            np.testing.assert_array_equal(ep.read(CARTESIAN)[:, 3:], 0.0)
            assert ep.read(f"{SIM_STATE}/qpos").shape == (12, 11) and ep.read(f"{SIM_STATE}/qvel").shape == (12, 11)
            np.testing.assert_allclose(ep.read(f"{PRIVILEGED_GROUP}/object_position"), ep.read(ENV_STATE)[:, 17:20])
    planning = ("planning={env_id: Pusher-v5, env_adapter: mujoco, max_steps: 3, fixed_dims: [], "
                "env_kwargs: {width: 32, height: 32, max_episode_steps: 200, default_camera_config: {distance: 1.1, "
                "elevation: -90.0, azimuth: 90.0, lookat: [0.45, -0.2, -0.3]}}, adapter: {goal: target, "
                "target_dims: [7, 8], env_goal_dims: [9, 10], body: object, expert: pusher, shadows: false}, "
                "solver: {name: icem, samples: 8, elites: 2, iterations: 1}, mpc: {horizon: 2, readout_weight: 0.0}}")
    overrides = TINY_LEWM + [f"data.root={data}", "data.image_size=32", "data.action_mode=recorded",
                             "data.recorded_actions=[env]", f"out={tmp_path / 'run'}", "optim.steps=3",
                             "optim.batch_size=4", "progress=false", "val_batches=1", "model.readout_weight=0.5",
                             planning]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        trained = train(train_config(compose("train", overrides=overrides)))
    checkpoint = Path(trained["checkpoint"])
    assert json.loads((checkpoint / "config.json").read_text())["planning"]["adapter"]["body"] == "object"
    result = subprocess.run([sys.executable, str(ROOT / "planners" / "cem_goal.py"), f"checkpoint={checkpoint}",
                             "episodes=1", "threads=1", "progress=false", f"video_dir={tmp_path / 'videos'}"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    line = json.loads(result.stdout.splitlines()[-1])  # the env, adapter and planner came from the checkpoint
    assert line["env_id"] == "Pusher-v5" and line["env_adapter"] == "mujoco" and line["max_steps"] == 3
    assert line["solver"] == "icem" and line["fixed_dims"] == {} and line["mean_final_distance"] > 0.05
    assert (tmp_path / "videos" / "episode_000.mp4").exists()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose("evaluate", overrides=[f"checkpoint={checkpoint}", "seeds=[0,1]", "episodes=1", "threads=1",
                                             "progress=false"])
    from planners.factory import plan_settings

    seeds = evaluate_seeds(plan_settings(EvaluateConfig, cfg, {"checkpoint", "seeds", "episodes", "threads"}))
    assert seeds["seeds"] == [0, 1] and seeds["agent"] == "planner" and seeds["env_id"] == "Pusher-v5"
    for agent in ("random", "oracle"):  # the baselines on the same env settings, taken from the checkpoint
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            cfg = compose("cem_goal", overrides=[f"checkpoint={checkpoint}", f"agent={agent}", "episodes=1",
                                                 "video_dir=null", "progress=false"])
        baseline = evaluate(plan_settings(PlanConfig, cfg, {"checkpoint", "agent"}))
        assert baseline["agent"] == agent and baseline["env_adapter"] == "mujoco" and baseline["max_steps"] == 3


def test_dataset_goals_restart_an_external_env_at_the_recorded_state(tmp_path):
    data = tmp_path / "data"
    pusher_data(data, 2, 10, policy="random")
    goals = dataset_goals(data, "val", 6, None, None)
    assert len(goals) == 1 and set(goals[0].options) == {"qpos", "qvel", "goal_qpos", "goal_qvel"}
    env = make_env(build_config(PlanConfig, {"env_id": "Pusher-v5", "env_module": None, "env_adapter": "mujoco",
                                             "adapter": ADAPTER}), {**KWARGS, "render_mode": "rgb_array"})
    try:
        with EpisodeReader(data / goals[0].file) as ep:
            frames = ep.images(ep.cameras[0], [0, 6])
            qpos = ep.read(f"{SIM_STATE}/qpos")
        obs, _ = env.reset(seed=12345, options=goals[0].options)  # any seed: the recorded state replaces its start
        np.testing.assert_array_equal(env.unwrapped.data.qpos, qpos[0])
        np.testing.assert_array_equal(env.render(), frames[0])
        np.testing.assert_array_equal(env.goal_qpos, qpos[6])
        np.testing.assert_array_equal(goals[0].goal_image, frames[1])
        # the recorded frame after a step shows the kinematics of its last substep (mj_step), the goal image those
        # of the recorded qpos: a substep's motion apart
        assert np.abs(env.goal_image().astype(int) - frames[1]).mean() < 3.0
    finally:
        env.close()
    base = {"env_id": "Pusher-v5", "env_module": None, "env_kwargs": KWARGS, "env_adapter": "mujoco", "agent": "random",
            "goals": "dataset", "goal_data": {"root": str(data), "offset": 6}, "episodes": 2, "max_steps": 2,
            "video_dir": None, "progress": False}
    unmoved = evaluate(build_config(PlanConfig, {**base, "adapter": ADAPTER}))  # random torques: the object stays put
    assert unmoved["goals_reached_at_start_skipped"] == 1 and unmoved["success_rate"] == 1.0
    hand = evaluate(build_config(PlanConfig, {**base, "adapter": {**ADAPTER, "body": "tips_arm", "threshold": 0.001}}))
    assert hand["goals_reached_at_start_skipped"] == 0 and hand["goal_source"].endswith(":val+6")  # the hand moved


def test_the_validator_checks_the_recorded_simulator_state(tmp_path):
    pusher_data(tmp_path, 1, 3, policy="random", index=False)
    path = next(tmp_path.glob("*.h5"))
    with h5py.File(path, "a") as f:
        f[f"{SIM_STATE}/qvel"][1, 0] = np.nan
    with pytest.raises(EpisodeError, match=rf"non-finite value \(NaN/inf\) in '{SIM_STATE}/qvel' at step 1"):
        check_episode(path)
