import subprocess
import sys

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
import pytest

import envs  # noqa: F401
from datasets import ClipDataset, EpisodeReader
from datasets.clips import ClipActions, Windows
from datasets.index import load_index
from datasets.preview import write_preview
from datasets.validate import validate_dir
from envs.policies import CorrelatedNoisePolicy, make_policy
from recipes.collect import CollectConfig, collect


def test_collect_cli_with_two_workers_is_resumable_and_valid(tmp_path):
    out = tmp_path / "reach"
    cmd = [sys.executable, "-m", "recipes.collect", f"out={out}", "num_episodes=4", "max_steps=30", "workers=2"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().splitlines()[-1].startswith("collected 4 episodes (120 steps")
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5")}
    second = subprocess.run(cmd[:-2] + ["num_episodes=5", "workers=1"], capture_output=True, text=True, timeout=300)
    assert "collected 1 episodes" in second.stdout and "4 already there" in second.stdout
    assert all(out.joinpath(n).stat().st_mtime_ns == t for n, t in mtimes.items())  # untouched
    assert validate_dir(out, progress=False) == {}
    assert load_index(out)["num_episodes"] == 5

    ds = ClipDataset(out, split="all", windows=Windows(history=2, future=2, fps=5))
    sample = ds[0]
    assert sample["frames"].shape == (4, 3, 64, 64) and sample["actions"].shape == (3, 7)
    recorded = ClipDataset(out, split="all", windows=Windows(history=1, future=3, frameskip=3),
                           actions=ClipActions(mode="recorded", recorded=["cartesian_delta", "gripper_position"]))
    assert recorded[0]["actions"].shape == (3, 7)
    with EpisodeReader(out / "episode_000000.h5") as ep:
        assert ep.attrs["env_id"] == "FrankaReach-v0" and ep.attrs["control_hz"] == 15.0
        assert len(ep) == 30 and ep.read("action/cartesian_delta").shape == (30, 6)
        states = ep.states()
    assert np.ptp(states[:, :3], axis=0).max() > 0.05  # the arm travelled


def _collect_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "recipes.collect", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_an_unknown_env_id_is_refused_before_any_worker_starts(tmp_path):
    result = _collect_cli("env_id=FrankaReech-v0", f"out={tmp_path / 'x'}", "num_episodes=1", timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: unknown env_id 'FrankaReech-v0': Environment `FrankaReech` doesn't exist. Did you mean: `FrankaReach`?"]
    assert not (tmp_path / "x").exists()


def test_a_failing_worker_stops_the_run_with_its_error(tmp_path):
    """A worker whose env cannot be made used to be restarted forever; now its error ends the run."""
    result = _collect_cli("env_kwargs={image_sise: 32}", f"out={tmp_path}", "num_episodes=4", "workers=2")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and lines[-1].startswith("error: episode ")
    assert "failed in a worker process: TypeError: " in lines[-1] and "image_sise" in lines[-1], lines[-1]
    assert "workers=1 shows the traceback" in lines[-1]
    assert not list(tmp_path.glob("*.h5")) and not list(tmp_path.glob(".*.tmp"))


def test_wrist_camera_is_recorded_too(tmp_path):
    collect(CollectConfig(out=str(tmp_path), num_episodes=1, max_steps=5, workers=1, index=False,
                          env_kwargs={"wrist_camera": True}), progress=False)
    with EpisodeReader(tmp_path / "episode_000000.h5") as ep:
        assert ep.cameras == ["exterior_1_left", "wrist_left"]
        assert ep.read("observation/image/wrist_left").shape == (5, 64, 64, 3)


def test_collection_is_reproducible(tmp_path):
    kwargs = dict(num_episodes=2, max_steps=12, workers=1, index=False)
    collect(CollectConfig(out=str(tmp_path / "a"), **kwargs), progress=False)
    collect(CollectConfig(out=str(tmp_path / "b"), **kwargs), progress=False)
    for name in ("episode_000000.h5", "episode_000001.h5"):
        with EpisodeReader(tmp_path / "a" / name) as a, EpisodeReader(tmp_path / "b" / name) as b:
            for key in a.keys():
                np.testing.assert_array_equal(a.read(key), b.read(key))


def test_any_rgb_env_can_be_collected_and_trained_on(tmp_path):
    """gymnasium's own MuJoCo Reacher: pixels from render(), the env's actions under action/env."""
    summary = collect(CollectConfig(env_id="Reacher-v5", env_module=None, env_kwargs={"width": 48, "height": 48},
                                    out=str(tmp_path), num_episodes=2, max_steps=20, policy="random", workers=1),
                      progress=False)
    assert summary["collected"] == 2 and summary["indexed"] == 2
    assert validate_dir(tmp_path, progress=False) == {}
    with EpisodeReader(tmp_path / "episode_000000.h5") as ep:
        assert ep.read("observation/image/exterior_1_left").shape == (20, 48, 48, 3)
        assert ep.read("action/env").shape == (20, 2) and ep.read("observation/env_state").shape == (20, 10)
    ds = ClipDataset(tmp_path, split="all", windows=Windows(history=1, future=2, frameskip=2),
                     actions=ClipActions(mode="recorded", recorded=["env"], reduce="stack"))
    assert ds[0]["actions"].shape == (2, 4)
    assert summary["policy"] == "random"


def test_an_env_without_a_pose_records_its_own_state_and_auto_picks_random_or_the_mixture(tmp_path):
    """A flat observation never fills the DROID pose keys: without a state_fn only observation/env_state is kept;
    policy=auto is the mixture where the env has a scripted expert, random elsewhere; mixture on an env without
    an expert is refused before anything is written."""
    from common.errors import UserError
    from datasets.schema import CARTESIAN, GRIPPER
    from recipes.collect import resolve_policy

    base = dict(env_id="Reacher-v5", env_module=None, env_kwargs={"width": 32, "height": 32}, num_episodes=2,
                max_steps=6, workers=1)
    summary = collect(CollectConfig(out=str(tmp_path / "flat"), **base), progress=False)
    assert summary["policy"] == "random" and validate_dir(tmp_path / "flat", progress=False) == {}
    with EpisodeReader(tmp_path / "flat" / "episode_000000.h5") as ep:
        assert not ep.has_pose and CARTESIAN not in ep.keys() and GRIPPER not in ep.keys()
        assert ep.read("observation/env_state").shape == (6, 10) and len(ep) == 6 and ep.attrs["policy"] == "random"
    assert "observation/env_state" in load_index(tmp_path / "flat")["stats"]
    with pytest.raises(ValueError, match=r"action_mode=delta_pose computes actions from the robot pose .* "
                                         r"data.action_mode=recorded data.recorded_actions=\[env\]"):
        ClipDataset(tmp_path / "flat", split="all", windows=Windows(history=2, future=0))[0]
    ds = ClipDataset(tmp_path / "flat", split="all", windows=Windows(history=2, future=0),
                     actions=ClipActions(mode="recorded", recorded=["env"]))
    assert ds[0]["states"].shape == (2, 10)  # the env's own state, not a pose
    with pytest.raises(UserError, match="^policy=mixture needs the env's scripted expert"):
        collect(CollectConfig(out=str(tmp_path / "mix"), policy="mixture", **base), progress=False)
    assert not (tmp_path / "mix").exists()
    assert resolve_policy(CollectConfig()) == "mixture"  # FrankaReach-v0 has a scripted expert
    posed = collect(CollectConfig(out=str(tmp_path / "pose"), state_fn="helpers:reacher_fingertip_pose", **base),
                    progress=False)
    assert posed["collected"] == 2 and validate_dir(tmp_path / "pose", progress=False) == {}
    with EpisodeReader(tmp_path / "pose" / "episode_000000.h5") as ep:
        assert ep.has_pose and np.abs(ep.read(CARTESIAN)[:, :2]).max() < 0.25  # the fingertip, in metres
    cli = subprocess.run([sys.executable, "-m", "recipes.collect", "env_id=Reacher-v5", "env_module=null",
                          "env_kwargs={width: 32, height: 32}", f"out={tmp_path / 'cli'}", "num_episodes=1",
                          "max_steps=3", "workers=1"], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "with policy random (auto: the env has no scripted expert)" in cli.stdout.splitlines()[-1]


def test_correlated_noise_travels_and_is_seeded():
    env = gym.make("FrankaReach-v0")
    try:
        policy = CorrelatedNoisePolicy()
        policy.reset(env, 3)
        a = np.stack([policy(None) for _ in range(200)])
        policy.reset(env, 3)
        np.testing.assert_array_equal(a, np.stack([policy(None) for _ in range(200)]))
        assert env.action_space.contains(a[0])
        lag1 = np.mean([np.corrcoef(a[:-1, d], a[1:, d])[0, 1] for d in range(6)])
        assert lag1 > 0.7  # temporally correlated, not white noise
        assert set(np.unique(a[:, 6])) <= {0.0, 1.0}
    finally:
        env.close()


def test_expert_and_mixture_policies_run_and_unknown_names_fail():
    env = gym.make("FrankaPush-v0")
    try:
        obs, _ = env.reset(seed=0)
        for name in ("expert", "mixture"):
            policy = make_policy(name)
            policy.reset(env, 0)
            assert env.action_space.contains(policy(obs))
        with pytest.raises(ValueError, match="policy must be"):
            make_policy("teleop")
    finally:
        env.close()


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_preview_writes_a_playable_video(tmp_path, suffix):
    from datasets.synthetic import make_synthetic_episode

    episode = make_synthetic_episode(tmp_path / "ep.h5", length=12)
    out = write_preview(episode, tmp_path / f"ep{suffix}", scale=2)
    frames = imageio.mimread(out)
    assert len(frames) == 12 and frames[0].shape[:2] == (128, 128)


def test_the_camera_view_travels_from_collection_through_training_to_planning(tmp_path, monkeypatch):
    """Frames of the "reach" framing: collection records the view, training writes it into the checkpoint, and the
    planner makes the env in that view with no env_kwargs (a model fed another framing fails silently); an explicit
    env_kwargs.camera_view still wins."""
    import json

    import planners.cem_goal as cem_goal
    from planners.factory import PlanConfig, SolverConfig
    from planners.mpc import MPCConfig
    from world_model.train import train, train_config

    data = tmp_path / "data"
    collect(CollectConfig(out=str(data), num_episodes=3, max_steps=8, workers=1,
                          env_kwargs={"image_size": 32, "camera_view": "reach"}), progress=False)
    with EpisodeReader(data / "episode_000000.h5") as ep:
        assert ep.attrs["camera_view"] == "reach"
    assert {e["camera_view"] for e in load_index(data)["episodes"]} == {"reach"}
    encoder = {"img_size": 32, "patch_size": 8, "width": 32, "depth": 1, "num_heads": 2, "embed_dim": 16,
               "projector_hidden": 32}
    predictor = {"width": 32, "depth": 1, "num_heads": 2, "mlp_ratio": 2.0, "max_frames": 8}
    train(train_config({"model": {"family": "lewm", "history": 2, "encoder": encoder, "predictor": predictor,
                                  "sigreg_projections": 16},
                        "data": {"root": str(data), "image_size": 32}, "out": str(tmp_path / "run"),
                        "optim": {"steps": 2, "batch_size": 4, "warmup": 1, "decay": 1}, "progress": False,
                        "val_batches": 1, "batchnorm_batches": 1, "seed": 0}))
    checkpoint = tmp_path / "run" / "checkpoints" / "last"
    assert json.loads((checkpoint / "config.json").read_text())["data"]["camera_view"] == "reach"

    made = []
    original = cem_goal.make_env

    def spy(config, kwargs):
        env = original(config, kwargs)
        made.append(env.unwrapped.camera_view)
        return env

    monkeypatch.setattr(cem_goal, "make_env", spy)
    settings = dict(checkpoint=str(checkpoint), env_id="FrankaReach-v0", episodes=1, max_steps=1, video_dir=None,
                    progress=False, threads=1, solver=SolverConfig(name="icem", samples=8, elites=2, iterations=1),
                    mpc=MPCConfig(horizon=1, readout_weight=None))
    cem_goal.evaluate(PlanConfig(**settings))
    cem_goal.evaluate(PlanConfig(**settings, env_kwargs={"camera_view": "wide"}))
    assert made == ["reach", "wide"]
