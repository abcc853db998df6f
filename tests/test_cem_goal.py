import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from helpers import tiny_checkpoint
from hydra import compose, initialize_config_dir

import envs  # noqa: F401
from common.cli import CONFIG_DIR
from planners.actions import franka_delta_pose_adapter
from planners.costs import LatentGoalCost
from planners.diagnostics import BANNER
from planners.episodes import PlannerAgent, run_episode
from planners.mpc import MPCConfig, MPCPlanner
from planners.protocols import Bounds
from planners.sim_greedy import SimGreedyAgent
from planners.solvers import make_solver
from recipes.collect import CollectConfig, collect
from world_model.models import load_world_model
from world_model.train import train, train_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_lewm(tmp_path_factory):
    base = tmp_path_factory.mktemp("lewm")
    collect(CollectConfig(out=str(base / "data"), num_episodes=6, max_steps=20, workers=1,
                          env_kwargs={"image_size": 32}), progress=False)
    overrides = ["model=lewm", f"data.root={base / 'data'}", "data.image_size=32", f"out={base / 'run'}",
                 "optim.steps=6", "optim.batch_size=8", "progress=false", "model.encoder.img_size=32",
                 "model.encoder.depth=2", "model.encoder.width=48", "model.encoder.num_heads=4",
                 "model.encoder.embed_dim=32", "model.encoder.projector_hidden=64", "model.predictor.width=48",
                 "model.predictor.depth=2", "model.predictor.num_heads=4", "model.sigreg_projections=64"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        train(train_config(compose("train", overrides=overrides)))
    return base / "run" / "checkpoints" / "last"


def _reach_planner(model, execute: int, samples: int) -> MPCPlanner:
    """A CEM planner over delta-pose actions, rotations held at zero (the reach envs' convention)."""
    bounds = Bounds.droid(gripper=(-1.0, 1.0), fixed={3: 0.0, 4: 0.0, 5: 0.0, 6: 0.0})
    return MPCPlanner(model, make_solver("cem", samples=samples, elites=4, iterations=2), bounds,
                      MPCConfig(horizon=3, execute=execute))


def test_mpc_uses_the_history_and_stays_in_bounds(tiny_lewm):
    model, _ = load_world_model(tiny_lewm)
    env = gym.make("FrankaReach-v0", image_size=32)
    try:
        planner = _reach_planner(model, execute=1, samples=32)
        result = run_episode(env, PlannerAgent(planner, franka_delta_pose_adapter), max_steps=5, seed=0)
        assert result.steps == 5 or result.success
        assert len(planner.latents) == model.history  # the context holds the model's full history
        assert len(planner.executed) == model.history
        assert all(torch.all(a[3:] == 0) and torch.all(a[:3].abs() <= 0.075) for a in planner.executed)
        assert planner.plan.shape == (3, 7)
        assert len(result.frames) == result.steps + 1 and result.goal_image.shape == (32, 32, 3)
    finally:
        env.close()


def test_cem_goal_cli_prints_episodes_summary_and_json_and_writes_videos(tiny_lewm, tmp_path):
    cmd = [sys.executable, str(ROOT / "planners" / "cem_goal.py"), f"checkpoint={tiny_lewm}", "episodes=2",
           "max_steps=3", "solver.samples=16", "solver.elites=4", "solver.iterations=2", f"video_dir={tmp_path}",
           "threads=1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("episode 0: ") and lines[1].startswith("episode 1: ")
    summary = json.loads(lines[-1])
    assert {"success_rate", "mean_final_distance", "mean_plan_seconds_per_step"} <= set(summary)
    assert 0.0 <= summary["success_rate"] <= 1.0 and summary["episodes"] == 2
    assert summary["torch_threads"] == 1  # the planner sets and reports its thread count
    video = imageio.mimread(tmp_path / "episode_000.mp4")
    assert video[0].shape == (128 + BANNER, 256, 3)  # labelled observation | goal, 4x upscaled
    assert (tmp_path / "episode_000.png").stat().st_size > 10_000  # the diagnostics plots
    missing = subprocess.run([sys.executable, str(ROOT / "planners" / "cem_goal.py"), f"checkpoint={tmp_path / 'none'}"],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "no world-model checkpoint" in missing.stderr
    assert len(video) >= 2


def test_evaluate_reports_mean_and_stderr_over_seeds(tiny_lewm):
    cmd = [sys.executable, str(ROOT / "planners" / "evaluate.py"), f"checkpoint={tiny_lewm}", "seeds=[0,1]",
           "episodes=2", "max_steps=2", "solver.samples=8", "solver.elites=2", "solver.iterations=1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["seeds"] == [0, 1] and len(summary["per_seed"]) == 2
    rates = [r["success_rate"] for r in summary["per_seed"]]
    assert summary["success_rate"] == pytest.approx(sum(rates) / 2)
    assert summary["success_rate_stderr"] == pytest.approx(abs(rates[0] - rates[1]) / 2)
    assert summary["goal_source"] == "env"


def test_pick_and_place_plans_through_its_subgoals_and_writes_diagnostics(tmp_path):
    from common.config import build_config
    from planners.cem_goal import evaluate
    from planners.factory import PlanConfig

    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    config = build_config(PlanConfig, {
        "checkpoint": str(checkpoint), "env_id": "FrankaPickPlace-v0", "episodes": 1, "max_steps": 6, "subgoals": True,
        "video_dir": str(tmp_path / "videos"), "fixed_dims": {3: 0.0, 4: 0.0, 5: 0.0},
        "solver": {"samples": 8, "elites": 2, "iterations": 2}, "mpc": {"horizon": 2, "subgoal_steps": 2}})
    summary = evaluate(config)
    assert summary["episodes"] == 1 and summary["subgoals"] and summary["env_id"] == "FrankaPickPlace-v0"
    video = imageio.mimread(tmp_path / "videos" / "episode_000.mp4")
    assert video[0].shape == (32 * 4 + BANNER, 3 * 32 * 4, 3)  # observation | sub-goal | goal
    assert (tmp_path / "videos" / "episode_000.png").exists()


def test_the_planner_moves_through_subgoals_by_step_budget_and_by_distance(tmp_path):
    from planners.factory import SolverConfig, build_planner, load_model
    from planners.mpc import MPCConfig

    model, config, _ = load_model(tiny_checkpoint(tmp_path / "ckpt"))
    goals = [np.full((32, 32, 3), v, np.uint8) for v in (0, 100, 200)]
    planner = build_planner(model, config, SolverConfig(samples=8, elites=2, iterations=1),
                            MPCConfig(horizon=1, subgoal_steps=2), {}, torch.device("cpu"), 0)
    planner.reset(goals)
    visited = []
    for _ in range(6):
        planner.act(goals[1])
        visited.append(planner.goal_index)
    assert visited == [0, 0, 1, 1, 2, 2]  # two steps each, and the last goal is never left
    goals.insert(2, np.full((32, 32, 3), 150, np.uint8))  # three sub-goals, then the goal
    planner = build_planner(model, config, SolverConfig(samples=8, elites=2, iterations=1),
                            MPCConfig(horizon=1, subgoal_steps=2, subgoal_budget=3), {}, torch.device("cpu"), 0)
    planner.reset(goals)
    visited = []
    for _ in range(6):
        planner.act(goals[1])
        visited.append(planner.goal_index)
    assert visited == [0, 0, 1, 3, 3, 3]  # the sub-goals' 3 steps spent: on to the goal, the third sub-goal skipped
    planner = build_planner(model, config, SolverConfig(samples=8, elites=2, iterations=1),
                            MPCConfig(horizon=1, subgoal_latent=1e-6), {}, torch.device("cpu"), 0)
    planner.reset(goals)
    planner.act(goals[0])  # observing the first sub-goal itself: reached at once
    assert planner.goal_index == 1 and planner.trace[0].goal_index == 1


def test_a_subgoal_whose_readout_stalls_near_it_counts_as_reached(tmp_path):
    from planners.factory import SolverConfig, build_planner, load_model
    from planners.mpc import MPCConfig

    model, config, _ = load_model(tiny_checkpoint(tmp_path / "ckpt", readout_dims=[0, 1, 2]))
    goals = [np.full((32, 32, 3), v, np.uint8) for v in (0, 100, 200)]
    with torch.no_grad():
        gap = float((model.readout(_encode(model, goals[1])) - model.readout(_encode(model, goals[0]))).norm())

    def visits(**stall):
        planner = build_planner(model, config, SolverConfig(samples=8, elites=2, iterations=1),
                                MPCConfig(horizon=1, readout_weight=0.0, **stall), {}, torch.device("cpu"), 0)
        planner.reset(goals)
        visited = []
        for _ in range(6):
            planner.act(goals[1])  # the same frame: the gap to each sub-goal never improves
            visited.append(planner.goal_index)
        return visited

    assert gap > 0
    assert visits(subgoal_stall=2, subgoal_near=gap * 1.01) == [0, 0, 1, 1, 2, 2]  # 2 steps without progress each
    assert visits(subgoal_stall=2, subgoal_near=gap * 0.99) == [0] * 6  # stalled, but not near: keep going
    with pytest.raises(ValueError, match="subgoal_stall.*readout"):
        build_planner(load_model(tiny_checkpoint(tmp_path / "plain"))[0], config, SolverConfig(),
                      MPCConfig(horizon=1, subgoal_stall=2), {}, torch.device("cpu"), 0)


def test_the_gripper_is_held_as_each_subgoal_image_shows_it_and_planned_on_the_goal(tmp_path):
    from planners.factory import SolverConfig, build_planner, load_model
    from planners.mpc import MPCConfig

    model, config, _ = load_model(tiny_checkpoint(tmp_path / "ckpt", readout_dims=[0, 1, 2, 6]))
    goals = [np.full((32, 32, 3), v, np.uint8) for v in (0, 100, 200)]
    with torch.no_grad():
        read = [float(model.readout(_encode(model, g))[3]) for g in goals]  # the gripper each image shows, per the model
    assert read[0] != read[1]
    mpc = MPCConfig(horizon=1, readout_weight=0.0, subgoal_steps=1, subgoal_gripper=6,
                    gripper_closed=(read[0] + read[1]) / 2)  # one sub-goal reads closed, the other open
    planner = build_planner(model, config, SolverConfig(samples=8, elites=2, iterations=1), mpc, {3: 0.0, 4: 0.0},
                            torch.device("cpu"), 0)
    planner.reset(goals)
    held = [float(planner.act(goals[0])[0, 6]) for _ in range(2)]
    assert held == [float(read[0] > read[1]), float(read[1] > read[0])]  # closed = 1, open = 0
    assert 6 not in planner.goal_bounds[2].fixed  # the final goal: the gripper is planned
    mpc.goal_gripper = True  # ... or held as the goal image shows it too
    planner = build_planner(model, config, SolverConfig(samples=8, elites=2, iterations=1), mpc, {3: 0.0, 4: 0.0},
                            torch.device("cpu"), 0)
    planner.reset(goals)
    assert [b.fixed[6] for b in planner.goal_bounds] == [float(r > mpc.gripper_closed) for r in read]
    with pytest.raises(ValueError, match="goal_gripper.*set mpc.subgoal_gripper"):
        build_planner(model, config, SolverConfig(), MPCConfig(horizon=1, goal_gripper=True), {}, torch.device("cpu"), 0)
    plain, plain_config, _ = load_model(tiny_checkpoint(tmp_path / "plain", readout_dims=[0, 1, 2]))
    with pytest.raises(ValueError, match="subgoal_gripper=6.*reads \\[0, 1, 2\\]"):
        build_planner(plain, plain_config, SolverConfig(), MPCConfig(horizon=1, subgoal_gripper=6), {},
                      torch.device("cpu"), 0)


def test_the_hand_holds_still_on_a_release_until_the_fingers_open(tmp_path):
    """mpc.release_hold: on the goal where the held gripper goes from closed to open, the named action dims are
    held at zero until the measured gripper reading falls below release_open; then they are planned again."""
    from planners.factory import SolverConfig, build_planner, load_model
    from planners.mpc import MPCConfig

    model, config, _ = load_model(tiny_checkpoint(tmp_path / "ckpt", readout_dims=[0, 1, 2, 6]))
    images = [np.full((32, 32, 3), v, np.uint8) for v in range(0, 256, 51)]
    with torch.no_grad():
        read = [float(model.readout(_encode(model, g))[3]) for g in images]
    shut, open_ = images[int(np.argmax(read))], images[int(np.argmin(read))]
    goals = [open_, shut, open_]  # approach (open), carry (closed), goal (open): the goal is a release

    def translation_after_each_plan(grippers, **hold):
        mpc = MPCConfig(horizon=1, readout_weight=0.0, subgoal_steps=1, subgoal_gripper=6, goal_gripper=True,
                        gripper_closed=(max(read) + min(read)) / 2, **hold)
        planner = build_planner(model, config, SolverConfig(samples=8, elites=2, iterations=1), mpc,
                                {3: 0.0, 4: 0.0}, torch.device("cpu"), 0)
        planner.reset(goals)
        moved = []
        for gripper in grippers:
            state = np.array([0.4, 0.0, 0.3, 0.0, 0.0, 0.0, gripper], np.float32)
            moved.append(float(planner.act(open_, state)[0, :3].abs().sum()))
        assert planner.releases == [False, False, True]
        return moved

    grippers = [0.0, 0.4, 0.4, 0.3, 0.05, 0.4]  # closed on the carry, opening on the release, open, closed again
    held = translation_after_each_plan(grippers, release_hold=[0, 1, 2], release_open=0.1)
    assert held[2] == held[3] == 0.0  # the release: the hand stays while the fingers read 0.4 and 0.3
    assert all(m > 0 for m in held[:2] + held[4:])  # before it, and once the fingers read open (for good)
    assert all(m > 0 for m in translation_after_each_plan(grippers))  # without release_hold: always planned
    with pytest.raises(ValueError, match=r"release_hold=\[0, 6\]: \[6\] not an arm action dim"):
        translation_after_each_plan(grippers, release_hold=[0, 6])
    with pytest.raises(ValueError, match="release_hold act on the gripper.*set mpc.subgoal_gripper"):
        build_planner(model, config, SolverConfig(), MPCConfig(horizon=1, release_hold=[0]), {},
                      torch.device("cpu"), 0)


def test_the_readout_switch_waits_for_the_gripper_to_settle(tmp_path):
    """mpc.gripper_settle: a sub-goal is left by the readout switch only once the gripper's reading of the observed
    frames has held still for that many frames (the fingers done closing); frames whose reading keeps changing hold
    the planner on the sub-goal."""
    from planners.factory import SolverConfig, build_planner, load_model
    from planners.mpc import MPCConfig

    model, config, _ = load_model(tiny_checkpoint(tmp_path / "ckpt", readout_dims=[0, 1, 2, 6]))
    goals = [np.full((32, 32, 3), v, np.uint8) for v in (0, 100, 200)]

    def goal_index_after_each_plan(frames, grippers=None, **settle):
        mpc = MPCConfig(horizon=1, readout_weight=0.0, subgoal_readout=100.0, subgoal_gripper=6, **settle)
        planner = build_planner(model, config, SolverConfig(samples=8, elites=2, iterations=1), mpc, {3: 0.0, 4: 0.0},
                                torch.device("cpu"), 0)
        planner.reset(goals)
        indices = []
        for i, frame in enumerate(frames):
            state = None if grippers is None else np.array([0.4, 0.0, 0.3, 0.0, 0.0, 0.0, grippers[i]], np.float32)
            planner.act(frame, state)
            indices.append(planner.goal_index)
        return indices

    still = [goals[0]] * 3  # the same frame: the same gripper reading each time
    assert goal_index_after_each_plan(still) == [2, 2, 2]  # every sub-goal within 100 m: both passed at once
    assert goal_index_after_each_plan(still, gripper_settle=3) == [0, 0, 2]
    moving = [goals[0], goals[1], goals[0], goals[1]]  # readings that differ frame to frame
    assert goal_index_after_each_plan(moving, gripper_settle=2, gripper_still=1e-6) == [0, 0, 0, 0]
    # with the robot's state, its measured gripper decides: closing fingers hold the switch, still ones release it
    assert goal_index_after_each_plan(still, [0.0, 0.1, 0.2], gripper_settle=2) == [0, 0, 0]
    assert goal_index_after_each_plan(moving, [0.5, 0.5, 0.5, 0.5], gripper_settle=2, gripper_still=1e-6) == [0, 2, 2, 2]
    with pytest.raises(ValueError, match="gripper_settle=1: expected at least 2"):
        goal_index_after_each_plan(still, gripper_settle=1)


def _encode(model, image: np.ndarray) -> torch.Tensor:
    return model.encode(torch.from_numpy(image).permute(2, 0, 1)[None, None])[0, 0]


def test_a_checkpoint_carries_its_task_and_planner_and_the_command_line_wins(tmp_path):
    import json as json_

    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    config = json_.loads((checkpoint / "config.json").read_text())
    config["planning"] = {"env_id": "FrankaPush-v0", "max_steps": 3, "fixed_dims": {"3": 0.0, "4": 0.0, "5": 0.0},
                          "solver": {"samples": 8, "elites": 2, "iterations": 1}, "mpc": {"horizon": 2}}
    (checkpoint / "config.json").write_text(json_.dumps(config))
    cmd = [sys.executable, str(ROOT / "planners" / "cem_goal.py"), f"checkpoint={checkpoint}", "episodes=1",
           "video_dir=null"]
    carried = json.loads(subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout.splitlines()[-1])
    assert carried["env_id"] == "FrankaPush-v0" and carried["max_steps"] == 3
    overridden = subprocess.run(cmd + ["max_steps=2", "solver.iterations=2"], capture_output=True, text=True, timeout=300)
    summary = json.loads(overridden.stdout.splitlines()[-1])
    assert summary["env_id"] == "FrankaPush-v0" and summary["max_steps"] == 2
    config["planning"]["solvr"] = {}
    (checkpoint / "config.json").write_text(json_.dumps(config))
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "unknown planning settings ['solvr']" in bad.stderr


def test_any_env_with_the_goal_env_protocol_runs_the_random_baseline_and_others_are_told_what_they_lack(tmp_path):
    from helpers import PointGoalEnv

    from common.config import build_config
    from planners.cem_goal import evaluate
    from planners.factory import PlanConfig

    if "PointGoal-v0" not in gym.registry:
        gym.register("PointGoal-v0", entry_point=PointGoalEnv.make, max_episode_steps=50)
    summary = evaluate(build_config(PlanConfig, {"env_id": "PointGoal-v0", "env_module": None, "agent": "random",
                                                 "episodes": 2, "max_steps": 5, "video_dir": str(tmp_path)}))
    assert summary["episodes"] == 2 and 0.0 <= summary["mean_final_distance"] < 1.5
    assert (tmp_path / "episode_000.mp4").exists() and (tmp_path / "episode_000.png").exists()
    cmd = [sys.executable, str(ROOT / "planners" / "cem_goal.py"), "env_id=Pendulum-v1", "env_module=null",
           "agent=random", "episodes=1", "video_dir=null"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Pendulum-v1 (PendulumEnv) cannot be used for goal-image planning: it lacks goal_image()" in result.stderr
    oracle = subprocess.run(cmd[:-3] + ["agent=oracle", "episodes=1", "video_dir=null"], capture_output=True, text=True,
                            timeout=300)
    assert oracle.returncode == 2 and "lacks goal_image()" in oracle.stderr


def test_pick_and_place_reports_how_far_each_episode_got():
    """The evaluation counts the env's milestones (grasped, lifted, over the goal) per episode: the scripted expert
    passes all three on its way to success; the random policy, which never picks the cube up, none."""
    from common.config import build_config
    from planners.evaluate import EvaluateConfig, evaluate_seeds

    def run(agent: str) -> dict:
        return evaluate_seeds(build_config(EvaluateConfig, {
            # the task's setting (a Franka Hand's finger speed); with the servo's own speed the noiseless expert
            # loses seed 0's cube in the carry (96 / 100 with noise 0.1 over seeds 100-199: test_envs)
            "env_id": "FrankaPickPlace-v0", "env_kwargs": {"image_size": 32, "finger_speed": 0.05}, "agent": agent,
            "episodes": 1,
            "max_steps": 60, "seeds": [0, 1], "progress": False}))

    oracle, random = run("oracle"), run("random")
    assert oracle["success_rate"] == 1.0
    assert oracle["milestones"] == {name: (1.0, 0.0) for name in ("grasped", "lifted", "over_goal")}
    assert random["milestones"] == {name: (0.0, 0.0) for name in ("grasped", "lifted", "over_goal")}
    assert "milestones" in random["per_seed"][0] and random["per_seed"][0]["milestones"]["grasped"] == 0.0


def test_a_damaged_checkpoint_is_named_in_one_line(tmp_path):
    import json as json_

    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    cmd = [sys.executable, str(ROOT / "planners" / "cem_goal.py"), f"checkpoint={checkpoint}", "episodes=1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{weights}: unreadable" in result.stderr
    fresh = tiny_checkpoint(tmp_path / "fresh")
    config = json_.loads((fresh / "config.json").read_text())
    del config["history"]
    (fresh / "config.json").write_text(json_.dumps(config))
    result = subprocess.run(cmd[:2] + [f"checkpoint={fresh}", "episodes=1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and f"{fresh / 'config.json'}: missing key 'history'" in result.stderr


def test_the_planner_checks_frames_at_its_edge_and_resizes_them(tmp_path):
    from planners.factory import SolverConfig, build_planner, load_model

    model, config, _ = load_model(tiny_checkpoint(tmp_path / "ckpt"))  # a 32 px model
    planner = build_planner(model, config, SolverConfig(samples=8, elites=2, iterations=1), MPCConfig(), {},
                            torch.device("cpu"), 0)
    with pytest.raises(ValueError, match=r"expected dtype uint8 \(0\.\.255\), got float32 \(a float image"):
        planner.reset(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected shape \(H, W, 3\) RGB, got \(32, 32, 4\)"):
        planner.reset(np.zeros((32, 32, 4), np.uint8))
    with pytest.raises(ValueError, match=r"expected shape \(H, W, 3\) RGB, got \(32, 32\)"):
        planner.reset(np.zeros((32, 32), np.uint8))
    planner.reset(np.zeros((96, 96, 3), np.uint8))  # another size: resized to the model's 32 px
    assert planner.act(np.zeros((48, 64, 3), np.uint8)).shape == (1, 7)


def test_fixed_dims_typed_as_an_empty_dict_clears_the_default_and_the_checkpoints(tmp_path):
    import json as json_

    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    config = json_.loads((checkpoint / "config.json").read_text())
    config["planning"] = {"fixed_dims": {"3": 0.0, "4": 0.0}}
    (checkpoint / "config.json").write_text(json_.dumps(config))
    cmd = [sys.executable, str(ROOT / "planners" / "cem_goal.py"), f"checkpoint={checkpoint}", "episodes=1",
           "max_steps=1", "solver.samples=4", "solver.elites=2", "solver.iterations=1", "video_dir=null",
           "progress=false", "threads=1"]
    carried = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert json.loads(carried.stdout.splitlines()[-1])["fixed_dims"] == {"3": 0.0, "4": 0.0}, carried.stderr[-2000:]
    for value, expected in (("{}", {}), ("{6: 1.0}", {"6": 1.0})):
        result = subprocess.run(cmd + [f"fixed_dims={value}"], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads(result.stdout.splitlines()[-1])["fixed_dims"] == expected


def test_executing_several_actions_keeps_one_context_frame_per_action(tiny_lewm):
    """execute=3: the frames between plans join the context (as in training), not one frame per plan."""
    model, _ = load_world_model(tiny_lewm)
    assert model.history == 3
    env = gym.make("FrankaReach-v0", image_size=32)
    try:
        planner = _reach_planner(model, execute=3, samples=16)
        result = run_episode(env, PlannerAgent(planner, franka_delta_pose_adapter), max_steps=7, seed=0)
        assert result.steps == 7 and len(planner.plan_seconds) == 3  # plans at steps 0, 3 and 6
        with torch.no_grad():  # the last plan's context: the frames of steps 4, 5 (observed between plans) and 6
            expected = model.encode(torch.from_numpy(np.stack(result.frames[4:7])).permute(0, 3, 1, 2)[None])[0]
        torch.testing.assert_close(torch.stack(planner.latents), expected)
    finally:
        env.close()


def test_an_episode_records_only_the_subgoals_its_planner_aims_through(tiny_lewm):
    """Push renders sub-goal images; a planner without `subgoals` aims at the goal, and its video must say so."""
    model, _ = load_world_model(tiny_lewm)
    env = gym.make("FrankaPush-v0", image_size=32)
    try:
        for subgoals, expected in ((False, 0), (True, 2)):
            agent = PlannerAgent(_reach_planner(model, execute=1, samples=8), franka_delta_pose_adapter, subgoals)
            result = run_episode(env, agent, max_steps=1, seed=0)
            assert len(result.subgoal_images) == expected
            assert result.trace[0].goal_index == 0  # the goal itself, or the first of the sub-goals
    finally:
        env.close()


def test_frames_nobody_observed_between_plans_are_the_models_prediction(tiny_lewm):
    """A client sending one frame per executed chunk: the skipped frames are predicted along the executed actions."""
    model, _ = load_world_model(tiny_lewm)
    planner = _reach_planner(model, execute=3, samples=16)
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    planner.reset(frames[2])
    chosen = planner.act(frames[0])
    planner.act(frames[1])
    with torch.no_grad():
        z = model.encode(torch.from_numpy(frames[:2]).permute(0, 3, 1, 2)[None])[0]
        between = model.rollout(z[:1][None], chosen[:2][None])[0]
    torch.testing.assert_close(torch.stack(planner.latents), torch.cat([between, z[1:]]))
    planner.observe(frames[0])
    planner.observe(frames[1])
    with pytest.raises(RuntimeError, match="2 frames already observed since the last plan"):
        planner.observe(frames[2])


def test_the_sim_greedy_ablation_executes_its_cheapest_simulated_move_and_restores_the_simulation(tiny_lewm):
    """agent=sim_greedy scores moves on copies of the simulation: the real episode must go on from where it was,
    and the move executed must be the one whose simulated outcome had the lowest cost (physics is deterministic,
    so the real outcome's cost is that minimum)."""
    model, _ = load_world_model(tiny_lewm)
    env = gym.make("FrankaReach-v0", image_size=32)
    try:
        agent = SimGreedyAgent(_reach_planner(model, execute=1, samples=8), levels=(-1.0, 0.0, 1.0))
        obs, info = env.reset(seed=3)
        agent.reset(env, info["goal_image"], info, 3)
        sim = env.unwrapped
        qpos, qvel = sim.data.qpos.copy(), sim.data.qvel.copy()
        (move,) = agent.act(env, obs)
        np.testing.assert_array_equal(sim.data.qpos, qpos)  # the simulation is back where it was
        np.testing.assert_array_equal(sim.data.qvel, qvel)
        assert agent.costs.shape == (27,) and float(agent.costs.max()) > float(agent.costs.min())
        assert len(agent.planner.trace) == 1 and agent.planner.trace[0].cost == pytest.approx(float(agent.costs.min()))
        obs, *_ = env.step(move(obs))
        with torch.no_grad():
            z = model.encode(torch.from_numpy(obs["pixels"]).permute(2, 0, 1)[None, None])
            real = sum(term(z, torch.zeros(1, 1, 7)) for term in agent.planner.cost_terms(None))
        assert float(real) == pytest.approx(float(agent.costs.min()), abs=1e-5)
    finally:
        env.close()


def test_an_ensemble_scores_candidates_with_every_member(tiny_lewm, tmp_path):
    """Two copies of one model plan as that model does (the mean of equal costs); members that disagree on the
    frames they were trained with are refused, naming the setting."""
    from planners.factory import with_ensemble

    model, config = load_world_model(tiny_lewm)
    pair = with_ensemble(model, config, [str(tiny_lewm)], torch.device("cpu"))
    frames = torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8)
    actions = torch.rand(5, 2, 7) * 0.1
    with torch.no_grad():
        z, z2 = model.encode(frames), pair.encode(frames)
        assert z2.shape[-1] == 2 * z.shape[-1]
        goal = z[1, -1]
        single = LatentGoalCost(goal)(model.rollout(z[:1], actions), actions)
        both = LatentGoalCost(torch.cat([goal, goal], -1))(pair.rollout(z2[:1], actions), actions)
        torch.testing.assert_close(both, single)
    other = tmp_path / "other"
    tiny_checkpoint(other, image_size=48)
    with pytest.raises(ValueError, match="data.image_size=48"):
        with_ensemble(model, config, [str(other)], torch.device("cpu"))


def _plan_shipped(monkeypatch, name: str, **settings) -> tuple[list, dict]:
    """Plan with checkpoints/<name> and only its own planning settings (plus `settings`): (the envs cem_goal made,
    each as (config, unwrapped env), the summary)."""
    import planners.cem_goal as cem_goal
    from planners.factory import PlanConfig, SolverConfig, checkpoint_planning, merge_planning

    made = []
    original = cem_goal.make_env

    def spy(config, kwargs):
        env = original(config, kwargs)
        made.append((config, env.unwrapped))
        return env

    monkeypatch.setattr(cem_goal, "make_env", spy)
    checkpoint = str(ROOT / "checkpoints" / name)
    raw = merge_planning({"checkpoint": checkpoint}, checkpoint_planning(checkpoint))
    raw.update(video_dir=None, progress=False, threads=1, solver=SolverConfig(**raw["solver"]),
               mpc=MPCConfig(**raw["mpc"]), **settings)
    return made, cem_goal.evaluate(PlanConfig(**raw))


def test_the_shipped_precise_reach_model_plans_its_own_task_with_no_arguments(monkeypatch):
    """checkpoints/reach_precise carries its task: FrankaReachPrecise-v0 at 96 px in the "reach" view with the gripper
    starting down, iCEM at horizon 5; with nothing else given it plans there and heads for the goal (a random policy
    ends ~0.43 m away)."""
    made, summary = _plan_shipped(monkeypatch, "reach_precise", episodes=1, max_steps=12)
    assert [(c.env_id, u.camera_view, u.start_down, u.image_size, c.mpc.horizon) for c, u in made] == \
        [("FrankaReachPrecise-v0", "reach", True, (96, 96), 5)]
    assert summary["mean_final_distance"] < 0.1


def test_the_shipped_push_model_pushes_the_cube_with_no_arguments(monkeypatch):
    """checkpoints/push_default carries its task: FrankaPush-v0 at 96 px with the wrist camera beside the exterior one,
    the gripper starting down, the push sub-goals at three heights and the fingers held closed; with nothing else given it plans there and pushes the cube toward its goal
    (a random policy leaves it where it lies: 0.154 m from the goal at the end, about where it starts; README)."""
    from common.seeding import evaluation_seed

    made, summary = _plan_shipped(monkeypatch, "push_default", episodes=3, max_steps=30)
    assert [(c.env_id, u.start_down, u.approach_heights, u.image_size, u.cameras, c.subgoals, c.fixed())
            for c, u in made] == [("FrankaPush-v0", True, [0.1, 0.05, 0.02], (96, 96), ["exterior_1_left", "wrist_left"],
                                   True, {3: 0.0, 4: 0.0, 5: 0.0, 6: 1.0})]
    env = gym.make("FrankaPush-v0", image_size=48)
    starts = []
    try:
        for episode in range(3):  # the cube's distance to its goal at the start of each evaluated episode
            env.reset(seed=evaluation_seed(0, episode))
            starts.append(env.unwrapped.task_distance())
    finally:
        env.close()
    assert summary["mean_final_distance"] < np.mean(starts) - 0.02, (starts, summary)


def test_the_shipped_pick_and_place_model_goes_for_the_cube_with_open_fingers_with_no_arguments(monkeypatch):
    """checkpoints/pickplace_default carries its task: FrankaPickPlace-v0 at 96 px with the wrist camera beside the
    exterior one, slow fingers, the gripper starting down, the sub-goal images with the cube held 2 cm above its
    goal last, the gripper held as each (sub-)goal image shows it and the hand held still while the fingers let go;
    with nothing else given its first steps bring the open hand over the cube (the first sub-goal)."""
    from common.seeding import evaluation_seed
    from envs.franka_model import FIRM_GRIP

    made, _ = _plan_shipped(monkeypatch, "pickplace_default", episodes=1, max_steps=10)
    (config, u), = made
    assert (config.env_id, u.start_down, u.finger_speed, u.image_size, u.cameras, config.subgoals, u.place_subgoal,
            u.place_height, config.mpc.subgoal_gripper, config.mpc.goal_gripper, list(config.mpc.release_hold),
            u.finger_servo) == \
        ("FrankaPickPlace-v0", True, 0.05, (96, 96), ["exterior_1_left", "wrist_left"], True, True, 0.02, 6, True,
         [0, 1, 2, 5], FIRM_GRIP)  # the finger servo it was trained with (the task's default)
    end = np.linalg.norm(u.tcp_pose()[0][:2] - u.cube_pos()[:2])
    env = gym.make("FrankaPickPlace-v0", image_size=32, start_down=True)
    try:
        env.reset(seed=evaluation_seed(0, 0))
        start = np.linalg.norm(env.unwrapped.tcp_pose()[0][:2] - env.unwrapped.cube_pos()[:2])
    finally:
        env.close()
    assert end < start - 0.05 and end < 0.05, (start, end)  # over the cube ...
    assert float(u.state()[6]) < u.RELEASED, (start, end, u.state()[6])  # ... with the fingers open


def test_a_tilted_gripper_keeps_the_goal_image_out_of_reach():
    """Why precise reach needs `start_down` (README): with the rotations held, as the reach planners hold them, the
    arm brought exactly onto the goal position from the default tilted start still looks far from the goal image to
    the shipped precise-reach model; with the gripper also turned down the latent distance all but vanishes."""
    from common.seeding import evaluation_seed
    from world_model.models import load_world_model

    model, _ = load_world_model(ROOT / "checkpoints" / "reach_precise")
    env = gym.make("FrankaReachPrecise-v0", image_size=96, camera_view="reach")
    u = env.unwrapped
    try:
        for episode in range(3):
            frames, distances = [], []
            for turn in (False, True):
                obs, _ = env.reset(seed=evaluation_seed(0, episode))
                for _ in range(40):  # the scripted expert, its rotation zeroed or not
                    action = u.expert_action()
                    action[3:6] *= turn
                    obs, *_ = env.step(action)
                frames.append(obs["pixels"])
                distances.append(u.task_distance())
            assert max(distances) < 0.003  # both on the goal position
            pixels = torch.from_numpy(np.stack([u.goal_image(), *frames])).permute(0, 3, 1, 2)[:, None]
            with torch.no_grad():
                z = model.encode(pixels)
            held, turned = (z[1:] - z[:1]).abs().flatten(1).mean(1).tolist()
            assert held > 0.03 and held > 10 * turned, (episode, held, turned)
    finally:
        env.close()


def test_each_plan_records_what_the_readout_makes_of_the_goal_it_aims_at(tiny_lewm, tmp_path):
    """The diagnostics show the readout of the (sub-)goal image beside the measured state: where a readout-driven
    planner goes and what the readout switch measures (pick-and-place: the gripper read closed on open sub-goals)."""
    from planners.diagnostics import episode_plot
    from world_model.models import StateReadout

    model, _ = load_world_model(tiny_lewm)
    torch.manual_seed(0)
    model.readout = StateReadout(model.encoder.embed_dim, [0, 1, 2, 6]).eval()  # xyz and the gripper
    env = gym.make("FrankaPush-v0", image_size=32)
    try:
        agent = PlannerAgent(_reach_planner(model, execute=1, samples=8), franka_delta_pose_adapter, subgoals=True)
        result = run_episode(env, agent, max_steps=2, seed=0)
    finally:
        env.close()
    assert result.readout_dims == (0, 1, 2, 6)
    with torch.no_grad():
        first_subgoal = model.encode(torch.from_numpy(result.subgoal_images[0]).permute(2, 0, 1)[None, None])[0, 0]
        expected = model.readout(first_subgoal).numpy()
    np.testing.assert_allclose(result.trace[0].goal_readout, expected, rtol=1e-5, atol=1e-6)
    with_gripper = imageio.imread(episode_plot(result, tmp_path / "gripper.png"))
    result.readout_dims = (0, 1, 2)  # xyz only: no panel for the other readout outputs
    without = imageio.imread(episode_plot(result, tmp_path / "xyz.png"))
    assert with_gripper.shape[1] > without.shape[1]  # the fourth panel
