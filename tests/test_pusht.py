"""Push-T (PushT-v0, envs/pusht.py, gym-pusht) through the generic path: the anchors' goals and success test, reset
to recorded states, the scripted expert, and collect -> train -> cem_goal -> evaluate with the pusht_lewm preset."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import envs  # noqa: F401 - registers PushT-v0
from common import goal_env
from common.cli import CONFIG_DIR
from common.config import build_config
from common.errors import UserError
from datasets.reader import EpisodeReader
from datasets.schema import CARTESIAN, ENV_STATE
from datasets.validate import validate_dir

ROOT = Path(__file__).resolve().parents[1]
needs_pusht = pytest.mark.skipif(importlib.util.find_spec("gym_pusht") is None,
                                 reason="gym-pusht is not installed (the pusht extra: pip install -e \".[pusht]\")")
HELD_OUT = 2_100_000_000  # seeds of neither collection (derive_seed) nor evaluation (10^9 + ...)
TINY = ["model.encoder.img_size=32", "model.encoder.depth=1", "model.encoder.width=32", "model.encoder.num_heads=2",
        "model.encoder.embed_dim=16", "model.encoder.projector_hidden=32", "model.encoder.grid=2",
        "model.predictor.width=32", "model.predictor.depth=1", "model.predictor.num_heads=2",
        "model.sigreg_projections=16", "data.image_size=32"]


def _make(**kwargs):
    return gym.make("PushT-v0", **kwargs)


@needs_pusht
def test_the_goal_is_a_demonstration_state_25_steps_ahead_scored_as_stable_worldmodel_scores_it():
    env = _make(image_size=32)
    task = env.unwrapped
    try:
        assert goal_env.task(env) is task and not goal_env.lacks(task, ("goal_image", "task_distance", "is_success",
                                                                        "expert_action"))
        assert (task.goals, task.goal_offset, task.success) == ("expert", 25, "state")
        obs, info = env.reset(seed=HELD_OUT)
        start, goal = obs.copy(), task.goal_state.copy()
        assert obs.shape == (7,) and goal.shape == (7,) and task.goal_image().shape == (32, 32, 3)
        assert info["distance"] == pytest.approx(np.linalg.norm(start[:4] - goal[:4]))
        env.reset(seed=HELD_OUT)  # seeded: the same start and goal
        np.testing.assert_array_equal(task.get_state(), start)
        np.testing.assert_array_equal(task.goal_state, goal)
        task.set_state(goal)  # at the goal: distance 0, success, the goal's image
        assert task.task_distance() == 0.0 and task.is_success(0.0)
        np.testing.assert_array_equal(env.render(), task.goal_image())
        moved = goal.copy()
        moved[4] += np.pi / 8  # within 20 px but turned by more than pi / 9: no success
        task.set_state(moved)
        assert task.task_distance() == 0.0 and not task.is_success(0.0)
        moved[4], moved[0] = goal[4], goal[0] + 21.0  # 21 px off: no success
        task.set_state(moved)
        assert task.task_distance() == pytest.approx(21.0) and not task.is_success(task.task_distance())
    finally:
        env.close()


@needs_pusht
def test_reset_to_recorded_states_round_trips_exactly():
    env = _make(image_size=32)
    task = env.unwrapped
    try:
        env.reset(seed=HELD_OUT + 1)
        start, goal, goal_image = task.get_state(), task.goal_state.copy(), task.goal_image().copy()
        for _ in range(5):
            env.step(np.array([0.3, -0.2]))
        later, frame = task.get_state(), env.render()
        obs, info = env.reset(seed=7, options={"state": start, "goal_state": goal})
        np.testing.assert_array_equal(obs, start)  # exactly, whatever the seed
        np.testing.assert_array_equal(task.goal_state, goal)
        np.testing.assert_array_equal(task.goal_image(), goal_image)
        env.reset(options={"state": later, "goal_state": goal})
        np.testing.assert_array_equal(env.render(), frame)  # the recorded frame, pixel for pixel
        env.reset(options={"state": start[:5]})  # 5 numbers: the agent at rest; no goal: the target T
        np.testing.assert_array_equal(task.get_state()[5:], [0.0, 0.0])
        np.testing.assert_allclose(task.goal_state[2:5], [256.0, 256.0, np.pi / 4])
    finally:
        env.close()


@needs_pusht
def test_the_scripted_expert_reaches_the_target_and_the_anchors_goals_on_held_out_seeds():
    env = _make(goals="task")
    successes = []
    for i in range(4):  # gym-pusht's own task: > 95 % coverage of the target T within its 300 steps
        obs, info = env.reset(seed=HELD_OUT + 10 + i)
        rng = np.random.default_rng(i)
        for _ in range(300):
            obs, _, terminated, truncated, info = env.step(env.unwrapped.expert_action(rng, 0.1))
            if terminated or truncated:
                break
        successes.append(info["is_success"])
    env.close()
    assert sum(successes) >= 3, successes
    from planners.cem_goal import evaluate
    from planners.factory import PlanConfig

    oracle = evaluate(build_config(PlanConfig, {"env_id": "PushT-v0", "agent": "oracle", "episodes": 4, "max_steps": 50,
                                                "seed": 5, "video_dir": None, "progress": False}))
    assert oracle["success_rate"] >= 0.75 and oracle["max_steps"] == 50, oracle


@needs_pusht
@pytest.mark.slow
def test_pusht_goes_from_collection_to_training_planning_and_evaluation(tmp_path):
    from planners.cem_goal import evaluate
    from planners.evaluate import EvaluateConfig, evaluate_seeds
    from planners.factory import PlanConfig
    from recipes.collect import CollectConfig, collect
    from world_model.train import train, train_config

    data = tmp_path / "data"
    summary = collect(CollectConfig(env_id="PushT-v0", env_kwargs={"goals": "task", "image_size": 32}, out=str(data),
                                    num_episodes=3, max_steps=24, workers=1, state_fn="envs.pusht:agent_pose"),
                      progress=False)
    assert summary["collected"] == 3 and summary["policy"] == "mixture"  # auto: PushT-v0 has a scripted expert
    assert validate_dir(data, progress=False) == {}
    with EpisodeReader(data / "episode_000000.h5") as episode:
        pose, state, actions = episode.read(CARTESIAN), episode.read(ENV_STATE), episode.read("action/env")
        frame = episode.images(episode.cameras[0], [10])[0]
    np.testing.assert_allclose(pose[:, :2] * 512.0, state[:, :2])  # the agent's position, arena units
    assert state.shape == (24, 7) and actions.shape == (24, 2) and np.abs(actions).max() <= 1.0
    env = _make(image_size=32)
    env.reset(options={"state": state[10]})
    np.testing.assert_array_equal(env.render(), frame)  # a recorded state renders the recorded frame
    env.close()

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):  # the preset, shrunk
        config = train_config(compose("train", overrides=["experiment=pusht_lewm", *TINY, f"data.root={data}",
                                                          f"out={tmp_path / 'run'}", "optim.steps=2",
                                                          "optim.batch_size=4", "progress=false", "val_batches=1"]))
    checkpoint = Path(train(config)["checkpoint"])
    saved = json.loads((checkpoint / "config.json").read_text())
    assert saved["data"]["frameskip"] == 5 and saved["predictor"]["action_dim"] == 10
    assert saved["planning"]["env_id"] == "PushT-v0" and saved["planning"]["max_steps"] == 50

    tiny_plan = ["solver.samples=8", "solver.elites=2", "solver.iterations=1", "threads=1", "progress=false"]
    result = subprocess.run([sys.executable, str(ROOT / "planners" / "cem_goal.py"), f"checkpoint={checkpoint}",
                             *tiny_plan, "episodes=1", "max_steps=10", f"video_dir={tmp_path / 'videos'}"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    line = json.loads(result.stdout.splitlines()[-1])  # the checkpoint's planning: PushT-v0, frameskip 5, CEM
    assert line["env_id"] == "PushT-v0" and line["frameskip"] == 5 and line["solver"] == "icem"
    assert line["episodes"] == 1 and line["mean_final_distance"] > 0
    assert (tmp_path / "videos" / "episode_000.mp4").exists()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose("evaluate", overrides=[f"checkpoint={checkpoint}", *tiny_plan, "seeds=[0,1]", "episodes=1",
                                             "max_steps=5", "env_id=PushT-v0", "env_module=envs", "fixed_dims=[]",
                                             "mpc.horizon=2", "mpc.execute=1"])
    seeds = evaluate_seeds(build_config(EvaluateConfig, cfg))
    assert seeds["seeds"] == [0, 1] and len(seeds["per_seed"]) == 2 and seeds["per_seed"][0]["frameskip"] == 5
    random = evaluate(build_config(PlanConfig, {"env_id": "PushT-v0", "agent": "random", "episodes": 1,
                                                "max_steps": 5, "video_dir": None, "progress": False}))
    assert random["agent"] == "random" and random["episodes"] == 1


@needs_pusht
def test_bench_pusht_expert_prints_one_json_line():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_pusht_expert.py"), "episodes=2",
                             "task_steps=40", "mixture_steps=20", "eval_steps=10"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    line = json.loads(result.stdout.splitlines()[-1])
    assert line["episodes"] == 2 and line["seeds"] == [2_100_000_000, 2_100_000_001]
    assert 0.0 <= line["task_success"] <= 1.0 and 0.0 < line["contact_share_mixture"] <= 1.0


@needs_pusht
def test_bad_settings_actions_and_options_are_one_line_errors():
    with pytest.raises(UserError, match=r"^PushT-v0: goals must be one of expert, task, got 'dataset'$"):
        _make(goals="dataset")
    with pytest.raises(UserError, match=r"^PushT-v0: success must be one of state, coverage, got 'iou'$"):
        _make(success="iou")
    env = _make(image_size=32)
    try:
        with pytest.raises(RuntimeError, match="step\\(\\) before reset\\(\\)"):
            env.unwrapped.step(np.zeros(2))
        env.reset(seed=1)
        with pytest.raises(ValueError, match=r"^PushT-v0: an action is 2 finite numbers .* got \[0.0, 0.0, 0.0\]$"):
            env.step(np.zeros(3))
        with pytest.raises(ValueError, match=r"got \[nan, 0.0\]$"):
            env.step(np.array([np.nan, 0.0]))
        with pytest.raises(ValueError, match=r"^PushT-v0: unknown reset options \['qpos'\]; it takes state and goal_state$"):
            env.reset(options={"qpos": np.zeros(5)})
        with pytest.raises(ValueError, match=r"^PushT-v0: a state is 5 or 7 finite numbers .* got shape \(4,\)$"):
            env.reset(options={"state": np.zeros(4)})
    finally:
        env.close()


def test_without_gym_pusht_the_commands_say_what_to_install(tmp_path):
    """Runs whether or not gym-pusht is installed: a stand-in package that fails to import shadows it."""
    (tmp_path / "block" / "gym_pusht").mkdir(parents=True)
    (tmp_path / "block" / "gym_pusht" / "__init__.py").write_text("raise ImportError('No module named gym_pusht')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "block"), str(ROOT)])}
    for command in (["-m", "recipes.collect", "env_id=PushT-v0", f"out={tmp_path / 'data'}", "workers=1"],
                    ["planners/cem_goal.py", "env_id=PushT-v0", "agent=random", "video_dir=null"]):
        result = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=120, cwd=ROOT,
                                env=env)
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1] == ("error: PushT-v0 needs the gym-pusht package (No module named "
                                                          "gym_pusht); install it with pip install -e \".[pusht]\""), result.stderr
        assert "Traceback" not in result.stderr


@needs_pusht
def test_episode_results_carry_the_env_distance_unit(tmp_path):
    from envs.policies import make_policy
    from planners.diagnostics import episode_plot
    from planners.episodes import PolicyAgent, run_episode

    with _make() as env:
        assert goal_env.distance_unit(goal_env.task(env)) == "px"
        result = run_episode(env, PolicyAgent(make_policy("random")), max_steps=3, seed=HELD_OUT, record=True)
    assert result.distance_unit == "px" and len(result.distances) == 4
    assert episode_plot(result, tmp_path / "plot.png").stat().st_size > 0
    with _make(goals="task") as env:
        assert goal_env.distance_unit(goal_env.task(env)) == "1 - coverage"
    with gym.make("FrankaReach-v0") as env:
        assert goal_env.distance_unit(goal_env.task(env)) == "m"  # the protocol's default: no attribute
