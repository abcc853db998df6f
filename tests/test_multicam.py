"""Several camera views (exterior + wrist) as one latent: data, models, planning, the server (issue 15).

Tiny synthetic two-camera episodes (the second view is the first mirrored) and tiny models: CPU, seeded, seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import PointGoalEnv, make_dataset, tiny_checkpoint

import envs  # noqa: F401 - registers the Franka tasks
from common import goal_env
from common.droid import EXTERIOR_CAMERA, GOAL_KEY, IMAGE_KEY, WRIST_CAMERA, wire_image_key
from common.errors import UserError
from datasets.clips import ClipDataset, MissingCameraError, Windows

CAMERAS = [EXTERIOR_CAMERA, WRIST_CAMERA]
ENCODER = {"img_size": 32, "patch_size": 8, "width": 32, "depth": 1, "num_heads": 2, "embed_dim": 16,
           "projector_hidden": 32}
PREDICTOR = {"width": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "max_frames": 8}


def train_overrides(root: Path, out: Path, **model) -> dict:
    return {"model": {"family": "lewm", "history": 2, "readout_weight": 0.5, "encoder": dict(ENCODER),
                      "predictor": dict(PREDICTOR), "sigreg_projections": 16, **model},
            "data": {"root": str(root), "image_size": 32, "cameras": list(CAMERAS)},
            "optim": {"steps": 3, "batch_size": 4, "warmup": 1, "decay": 1},
            "out": str(out), "progress": False, "val_batches": 1, "batchnorm_batches": 1, "seed": 0}


@pytest.fixture(scope="module")
def two_view_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("two_view") / "data"
    make_dataset(root, num_episodes=4, length=16, image_size=32, cameras=tuple(CAMERAS))
    return root


@pytest.fixture(scope="module")
def two_view_run(two_view_data, tmp_path_factory) -> tuple[dict, Path]:
    """A LeWorldModel trained 3 steps on both views (with the state readout): (summary, checkpoint)."""
    from world_model.train import train, train_config

    out = tmp_path_factory.mktemp("run")
    summary = train(train_config(train_overrides(two_view_data, out)))
    return summary, out / "checkpoints" / "last"


def _two_view_model(seed: int = 0, grid: int = 0, state_dim: int = 0):
    from world_model.models import build_model

    torch.manual_seed(seed)
    config = {"family": "lewm", "history": 3, "encoder": {**ENCODER, "grid": grid},
              "predictor": {**PREDICTOR, "action_dim": 7, "state_dim": state_dim, "time_positions": "rope"},
              "data": {"image_size": 32, "cameras": list(CAMERAS), "action_mode": "delta_pose"}}
    model = build_model(config).eval()
    with torch.no_grad():  # AdaLN-zero starts action-blind (and near the identity): make the actions matter
        for p in model.predictor.parameters():
            if p.ndim > 1:
                p.normal_(0.0, 0.3)
    return model


# -- data --------------------------------------------------------------------------------------------------


def test_clips_carry_every_view_in_the_order_given(two_view_data):
    windows = Windows(history=3, future=0)
    both = ClipDataset(two_view_data, split="all", windows=windows, cameras=CAMERAS)
    clip = both[5]
    assert both.views == 2 and clip["frames"].shape == (3, 2, 3, 32, 32) and clip["frames"].dtype == torch.uint8
    for v, camera in enumerate(CAMERAS):
        alone = ClipDataset(two_view_data, split="all", windows=windows, camera=camera)[5]["frames"]
        assert alone.shape == (3, 3, 32, 32) and torch.equal(clip["frames"][:, v], alone)
    assert not torch.equal(clip["frames"][:, 0], clip["frames"][:, 1])
    swapped = ClipDataset(two_view_data, split="all", windows=windows, cameras=CAMERAS[::-1])[5]["frames"]
    assert torch.equal(swapped, clip["frames"].flip(1))
    # a list of one camera is that camera: frames stay (T, 3, H, W)
    one = ClipDataset(two_view_data, split="all", windows=windows, cameras=[WRIST_CAMERA])
    assert one.views == 1 and one[5]["frames"].shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="not both"):
        ClipDataset(two_view_data, camera=EXTERIOR_CAMERA, cameras=CAMERAS)


def test_a_camera_missing_from_the_data_is_one_line_naming_file_key_expected_and_actual(tmp_path):
    from world_model.train import train, train_config

    make_dataset(tmp_path / "one", num_episodes=2, length=12, image_size=32)
    clips = ClipDataset(tmp_path / "one", split="all", cameras=CAMERAS)
    with pytest.raises(MissingCameraError) as err:
        clips[0]
    message = str(err.value)
    assert "\n" not in message and "episode_000.h5" in message
    assert "missing key 'observation/image/wrist_left'" in message
    assert f"expected cameras {CAMERAS}" in message and f"the episode has {[EXTERIOR_CAMERA]}" in message
    # training stops there too (not "every episode is corrupt" after skipping them all)
    with pytest.raises(MissingCameraError, match="missing key 'observation/image/wrist_left'"):
        train(train_config(train_overrides(tmp_path / "one", tmp_path / "run")))


# -- models ------------------------------------------------------------------------------------------------


def test_two_view_training_records_the_cameras(two_view_run):
    from world_model.models import load_world_model

    summary, checkpoint = two_view_run
    assert summary["steps"] == 3 and np.isfinite(summary["history"]).all()
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["data"]["cameras"] == CAMERAS and config["data"]["camera"] is None
    model, _ = load_world_model(checkpoint)
    assert model.views == 2 and model.cameras == CAMERAS
    assert model.encoder.view_embed.shape == (2, ENCODER["width"])
    assert model.readout.linear.in_features == 2 * ENCODER["embed_dim"]  # one mean per view


@pytest.mark.parametrize("grid", [0, 2])
def test_the_latent_of_two_views_has_twice_the_tokens(two_view_data, grid):
    from world_model.models import build_model

    model = _two_view_model(grid=grid)
    frames = ClipDataset(two_view_data, split="all", windows=Windows(history=3, future=0), cameras=CAMERAS)[0]["frames"]
    z = model.encode(frames[None])
    per_view = max(grid * grid, 1)
    assert z.shape == (1, 3, 2 * per_view, ENCODER["embed_dim"])
    # each view's tokens are that view's (encoded alone, with its own view embedding): swapping the views moves them
    swapped = model.encode(frames.flip(1)[None])
    assert not torch.allclose(swapped[:, :, :per_view], z[:, :, per_view:])
    # the learned view embedding tells the shared encoder which camera it sees
    model.encoder.view_embed.data.zero_()
    z0, s0 = model.encode(frames[None]), model.encode(frames.flip(1)[None])
    torch.testing.assert_close(s0[:, :, :per_view], z0[:, :, per_view:])
    # a one-view model keeps (B, T, 3, H, W) and has no view embedding; a two-view one refuses that shape in one line
    one = build_model({"family": "lewm", "history": 3, "encoder": {**ENCODER, "grid": grid},
                       "predictor": {**PREDICTOR, "action_dim": 7, "state_dim": 0}, "data": {"camera": None}}).eval()
    assert one.views == 1 and one.encoder.view_embed is None
    assert one.encode(frames[None, :, 0]).shape == (1, 3, per_view, ENCODER["embed_dim"])
    with pytest.raises(ValueError, match=r"this model sees 2 camera views .*expected frames \(B, T, 2, 3, H, W\)"):
        model.encode(frames[None, :, 0])


def test_frozen_families_concatenate_the_views_tokens_and_train_on_them():
    from world_model.models import build_model

    encoder = {"size": "micro", "img_size": 32, "patch_size": 16, "depth": 1}
    predictor = {**PREDICTOR, "action_dim": 7, "state_dim": 0}
    one = build_model({"family": "vjepa_ac", "history": 2, "encoder_config": encoder, "pool": False, "predictor": predictor})
    two = build_model({"family": "vjepa_ac", "history": 2, "encoder_config": encoder, "pool": False, "predictor": predictor,
                       "data": {"cameras": CAMERAS}})
    two.encoder.load_state_dict(one.encoder.state_dict())
    frames = torch.randint(0, 256, (1, 2, 2, 3, 32, 32), dtype=torch.uint8)
    z = two.encode(frames)
    assert z.shape == (1, 2, 8, 96)  # 2 views x 4 patch tokens
    torch.testing.assert_close(z[:, :, :4], one.encode(frames[:, :, 0]))
    torch.testing.assert_close(z[:, :, 4:], one.encode(frames[:, :, 1]))
    batch = {"frames": torch.randint(0, 256, (2, 4, 2, 3, 32, 32), dtype=torch.uint8),
             "actions": torch.zeros(2, 3, 7), "states": torch.zeros(2, 4, 7)}
    loss, parts = two.loss(batch)
    assert torch.isfinite(loss) and set(parts) == {"teacher_forcing", "rollout"}
    # C-JEPA: K slots per view (each view's slots reconstruct that view's frozen tokens)
    slots = build_model({"family": "cjepa", "history": 2, "encoder_config": encoder, "predictor": {**predictor, "width": 32},
                         "slots": {"num_slots": 3, "slot_dim": 16, "iters": 1, "decoder_hidden": 16},
                         "data": {"cameras": CAMERAS}})
    assert slots.encode(frames).shape == (1, 2, 6, 16)
    loss, parts = slots.loss(batch)
    assert torch.isfinite(loss) and "reconstruction" in parts
    with pytest.raises(ValueError, match="family vjepa2_ac sees one camera"):
        build_model({"family": "vjepa2_ac", "data": {"cameras": CAMERAS}})


def test_cached_rollout_equals_recomputing_with_two_views():
    """Float64: the cached rollout of 2 views x 4 grid tokens per frame equals re-running every frame so far (window 3,
    5 steps from 3 context frames, so the window slides past the context), with the states composed from the poses."""
    model = _two_view_model(seed=1, grid=2, state_dim=7)
    assert model.predictor.caches and model.predictor.config.window == 3 and model.pose_states
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (1, 3, 2, 3, 32, 32), generator=g, dtype=torch.uint8)
    with torch.no_grad():
        z = model.encode(frames).double()  # the pixels go in as float32; the predictor's algebra runs in float64
    model.double()
    assert z.shape == (1, 3, 8, ENCODER["embed_dim"]) and z.dtype == torch.float64
    a_ctx = 0.02 * torch.randn(1, 2, 7, generator=g, dtype=torch.float64)
    s_ctx = 0.1 * torch.randn(1, 3, 7, generator=g, dtype=torch.float64)
    actions = 0.3 * torch.randn(6, 5, 7, generator=g, dtype=torch.float64)
    with torch.no_grad():
        cached = model.rollout(z, actions, a_ctx, s_ctx)
        z_all, a_all, s_all = z.expand(6, -1, -1, -1), a_ctx.expand(6, -1, -1), s_ctx.expand(6, -1, -1)
        reference = []
        for h in range(5):
            a_all = torch.cat([a_all, actions[:, h : h + 1]], 1)
            z_next = model.predictor(z_all, a_all, s_all)[:, -1:]
            reference.append(z_next)
            z_all = torch.cat([z_all, z_next], 1)
            s_all = torch.cat([s_all, model.next_state(s_all[:, -1:], actions[:, h : h + 1], None, h)], 1)
    assert cached.shape == (6, 5, 8, ENCODER["embed_dim"])
    torch.testing.assert_close(cached, torch.cat(reference, 1), rtol=1e-10, atol=1e-10)
    assert (cached[0] - cached[1]).abs().max() > 1e-3  # the candidates' actions matter


# -- envs and planning --------------------------------------------------------------------------------------


def test_envs_render_the_goal_and_sub_goals_from_every_camera():
    env = gym.make("FrankaPickPlace-v0", image_size=32, wrist_camera=True)
    _, info = env.reset(seed=3)
    task = env.unwrapped
    goals = task.goal_images()
    assert list(goals) == CAMERAS and all(g.shape == (32, 32, 3) and g.dtype == np.uint8 for g in goals.values())
    assert np.array_equal(task.goal_image(), goals[EXTERIOR_CAMERA]) and np.array_equal(info["goal_image"], task.goal_image())
    assert np.array_equal(task.goal_image(camera=WRIST_CAMERA), goals[WRIST_CAMERA])
    assert not np.array_equal(goals[WRIST_CAMERA], goals[EXTERIOR_CAMERA])
    assert list(info["goal_images"]) == CAMERAS
    wrist_subgoals = task.subgoal_images(camera=WRIST_CAMERA)
    assert len(wrist_subgoals) == len(task.subgoal_images()) == 4  # above, around, grasped, carried
    views = goal_env.subgoal_views(task, CAMERAS)
    assert all(list(v) == CAMERAS for v in views) and np.array_equal(views[1][WRIST_CAMERA], wrist_subgoals[1])
    assert list(goal_env.goal_views(task, CAMERAS)) == CAMERAS
    assert np.array_equal(goal_env.goal_views(task, [WRIST_CAMERA]), goals[WRIST_CAMERA])  # one named camera
    env.close()
    # one camera: the protocol as before, and asking for the wrist names the switch
    plain = gym.make("FrankaReach-v0", image_size=32)
    _, info = plain.reset(seed=0)
    assert "goal_images" not in info and plain.unwrapped.cameras == [EXTERIOR_CAMERA]
    with pytest.raises(ValueError, match="renders cameras \\['exterior_1_left'\\], not 'wrist_left' .*wrist_camera=True"):
        plain.unwrapped.goal_image(camera=WRIST_CAMERA)
    plain.close()
    # an env whose goal_image takes no camera serves one-view models only, and says so in one line
    point = PointGoalEnv.make()
    point.reset(seed=0)
    assert goal_env.goal_views(point, None).shape == (32, 32, 3)
    with pytest.raises(UserError, match=r"goal_image\(\) renders one camera; .*needs goal_image\(camera=NAME\)"):
        goal_env.goal_views(point, CAMERAS)


def _plan(checkpoint: Path, env_id: str, **overrides):
    from planners.cem_goal import evaluate
    from planners.factory import PlanConfig, SolverConfig
    from planners.mpc import MPCConfig

    settings = {"checkpoint": str(checkpoint), "env_id": env_id, "episodes": 1, "max_steps": 3, "video_dir": None,
                "progress": False, "threads": 1, "solver": SolverConfig(name="icem", samples=16, elites=4, iterations=2),
                "mpc": MPCConfig(horizon=2, readout_weight=None, subgoal_steps=1)}
    config = PlanConfig(**{**settings, **overrides})
    return evaluate(config)


@pytest.mark.parametrize("env_id,subgoals", [("FrankaReach-v0", False), ("FrankaPickPlace-v0", True)])
def test_a_two_view_model_plans_with_the_wrist_camera(two_view_run, env_id, subgoals, monkeypatch):
    """No env_kwargs: the checkpoint's cameras turn the wrist camera on; every goal, sub-goal and observation the
    planner encodes holds both views."""
    from planners.mpc import MPCPlanner

    encoded = []
    original = MPCPlanner._encode

    def spy(self, frame, what="frame"):
        encoded.append((what, sorted(frame) if isinstance(frame, dict) else None))
        return original(self, frame, what)

    monkeypatch.setattr(MPCPlanner, "_encode", spy)
    summary = _plan(two_view_run[1], env_id, subgoals=subgoals)
    assert summary["episodes"] == 1 and summary["cameras"] == CAMERAS and summary["mean_plan_seconds_per_step"] > 0
    goals = [views for what, views in encoded if what == "goal"]
    frames = [views for what, views in encoded if what == "frame"]
    assert len(goals) == (5 if subgoals else 1) and frames  # pick-and-place: 4 sub-goals and the goal
    assert all(views == sorted(CAMERAS) for views in goals + frames)


def test_evaluate_py_takes_the_cameras_from_the_checkpoint(two_view_run):
    from planners.evaluate import EvaluateConfig, evaluate_seeds
    from planners.factory import SolverConfig

    summary = evaluate_seeds(EvaluateConfig(checkpoint=str(two_view_run[1]), seeds=[0], episodes=1, max_steps=2,
                                            progress=False, threads=1,
                                            solver=SolverConfig(name="icem", samples=8, elites=2, iterations=1)))
    assert summary["per_seed"][0]["cameras"] == CAMERAS and summary["episodes_per_seed"] == 1
    # an env made without the wrist camera against the checkpoint's wish is one line naming the switch
    with pytest.raises(ValueError, match=r"renders cameras \['exterior_1_left'\], not 'wrist_left' .*wrist_camera=True"):
        _plan(two_view_run[1], "FrankaReach-v0", env_kwargs={"wrist_camera": False})
    with pytest.raises(UserError, match=r"no frame of 'wrist_left' \(key 'wrist_pixels'; it has \['pixels'\]\).*"
                                        r"env_kwargs.wrist_camera=true"):
        goal_env.observation_views({"pixels": np.zeros((4, 4, 3), np.uint8)}, CAMERAS, "FrankaReach-v0")


def test_a_one_view_checkpoint_still_loads_and_plans():
    """The shipped checkpoint (config.json with `data.camera: null`, no `cameras`) loads and plans as before."""
    from world_model.models import load_world_model, model_cameras

    folder = Path(__file__).resolve().parents[1] / "checkpoints" / "reach_default"
    model, config = load_world_model(folder)
    assert "cameras" not in config["data"] and model.views == 1 and model_cameras(config) == []
    assert model.readout.views == 1 and model.encoder.view_embed is None
    summary = _plan(folder, "FrankaReach-v0", max_steps=2)
    assert summary["episodes"] == 1 and summary["cameras"] is None


def test_the_planner_names_what_a_frame_lacks(two_view_run):
    from planners.factory import MPCConfig, SolverConfig, build_planner, load_model

    model, config, _ = load_model(two_view_run[1])
    planner = build_planner(model, config, SolverConfig(name="icem", samples=8, elites=2, iterations=1),
                            MPCConfig(horizon=1), {}, torch.device("cpu"), 0)
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=r"goal: this model sees cameras .*pass a dict camera -> image"):
        planner.reset(image)
    with pytest.raises(ValueError, match=r"goal: this model sees cameras .*; missing \['wrist_left'\]"):
        planner.reset({EXTERIOR_CAMERA: image})
    planner.reset([{EXTERIOR_CAMERA: image, WRIST_CAMERA: image}] * 2)  # sub-goals then the goal, each both views
    assert len(planner.goals) == 2 and planner.goals[0].shape == (2, ENCODER["embed_dim"])
    assert planner.act({EXTERIOR_CAMERA: image, WRIST_CAMERA: image}, np.zeros(7, np.float32)).shape == (1, 7)


# -- the planning server -------------------------------------------------------------------------------------


def test_the_server_takes_one_image_per_camera(two_view_run, tmp_path):
    from planners.factory import MPCConfig, SolverConfig
    from planners.protocol import RequestError
    from planners.serve import PlanningService, ServeConfig, Session

    service = PlanningService(ServeConfig(checkpoint=str(two_view_run[1]), threads=1, mpc=MPCConfig(horizon=1),
                                          solver=SolverConfig(name="icem", samples=8, elites=2, iterations=1)))
    wrist_key, wrist_goal = wire_image_key(WRIST_CAMERA), wire_image_key(WRIST_CAMERA, "goal")
    assert wrist_key == "observation/wrist_image_left" and wrist_goal == "goal/wrist_image_left"
    assert wire_image_key(EXTERIOR_CAMERA) == IMAGE_KEY and wire_image_key(EXTERIOR_CAMERA, "goal") == GOAL_KEY
    assert service.metadata["cameras"] == CAMERAS and service.metadata["goal_keys"] == [GOAL_KEY, wrist_goal]
    assert service.metadata["observation_keys"][:2] == [IMAGE_KEY, wrist_key]
    rng = np.random.default_rng(0)

    def image() -> np.ndarray:
        return rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)

    pose = {"observation/cartesian_position": np.array([0.5, 0.0, 0.3, 0.0, 0.0, 0.0]),
            "observation/gripper_position": np.array([0.0])}
    session = Session(service, seed=0)
    reply = session.handle(session.parse({GOAL_KEY: image(), wrist_goal: image(), IMAGE_KEY: image(), wrist_key: image(),
                                          **pose}))
    assert reply["goal_set"] and reply["actions"].shape == (1, 7)
    stacked = session.parse({GOAL_KEY: np.stack([image(), image()]), wrist_goal: np.stack([image(), image()])})
    assert len(stacked.goals) == 2 and list(stacked.goals[0]) == CAMERAS
    for request, expected in [
        ({GOAL_KEY: image()}, "missing key 'goal/wrist_image_left': this model sees cameras ['exterior_1_left', "
                              "'wrist_left']; send one goal image per camera: ['goal/exterior_image_1_left', "
                              "'goal/wrist_image_left']"),
        ({IMAGE_KEY: image(), **pose}, "missing key 'observation/wrist_image_left'"),
        ({GOAL_KEY: np.stack([image(), image()]), wrist_goal: image()}, "the same number of (sub-)goal images"),
    ]:
        with pytest.raises(RequestError) as err:
            session.parse(request)
        assert expected in str(err.value) and "\n" not in str(err.value)
    # a one-view model: as before; the wrist image of openpi's DROID client is ignored, a wrist goal refused in one line
    one = PlanningService(ServeConfig(checkpoint=str(tiny_checkpoint(tmp_path / "one")), threads=1, mpc=MPCConfig(horizon=1),
                                      solver=SolverConfig(name="icem", samples=8, elites=2, iterations=1)))
    assert one.metadata["goal_keys"] == [GOAL_KEY] and one.metadata["cameras"] is None
    single = Session(one, seed=0)
    assert single.handle(single.parse({GOAL_KEY: image(), IMAGE_KEY: image(), wrist_key: image(), **pose}))["actions"].shape[1] == 7
    with pytest.raises(RequestError, match=r"^goal/wrist_image_left: this model sees one camera \(exterior_1_left\); "
                                           r"send goal images only as \['goal/exterior_image_1_left'\]$"):
        single.parse({GOAL_KEY: image(), wrist_goal: image()})


def test_dataset_goals_carry_every_view(two_view_data, tmp_path):
    """goals=dataset: each held-out goal frame from every camera the model sees; a camera the episode lacks is one line."""
    import shutil

    from datasets.index import write_index
    from planners.cem_goal import dataset_goals

    root = tmp_path / "data"
    shutil.copytree(two_view_data, root)
    write_index(root, val_fraction=0.5)
    goals = dataset_goals(root, "val", 5, None, 3, CAMERAS)
    assert len(goals) == 3 and all(list(g.goal_image) == CAMERAS for g in goals)
    assert np.array_equal(goals[0].goal_image[WRIST_CAMERA], goals[0].goal_image[EXTERIOR_CAMERA][::-1])  # the synthetic wrist view: flipped
    assert dataset_goals(root, "val", 5, None, 1)[0].goal_image.shape == (32, 32, 3)  # one view: as before
    with pytest.raises(ValueError, match=r"episode_\d+\.h5: missing key 'observation/image/left_cam': expected cameras "):
        dataset_goals(root, "val", 5, None, 1, [EXTERIOR_CAMERA, "left_cam"])
