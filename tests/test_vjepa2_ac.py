"""The released V-JEPA 2-AC against Meta's own outputs (the shared tiny fixture; see its README for the tolerances)."""

import json

import pytest
import torch
from helpers import vjepa2_ac_fixture
from safetensors.torch import load_file

from world_model.checkpoints import CheckpointMismatchError
from world_model.vjepa2_ac import (
    RELEASED,
    VJEPA2ACWorldModel,
    encode_tokens,
    load_released,
    load_released_model,
    preprocess_clip,
    released_config,
    to_droid_frame,
)

#: The fixture's architecture (its README's table): every switch of the released model, tiny sizes.
TINY = {"encoder": {"size": "giant", "img_size": 64, "embed_dim": 96, "depth": 2, "num_heads": 3, "mlp_ratio": 48 / 11},
        "predictor": {"embed_dim": 64, "depth": 2, "num_heads": 4, "num_frames": 8}}
ATOL = 1e-5  # float outputs; 1e-6 for the preprocessed clip and the poses
N, D = 16, 96


@pytest.fixture(scope="module")
def fixture():
    folder = vjepa2_ac_fixture()
    torch.set_num_threads(1)
    ref = load_file(folder / "reference.safetensors")
    model, config = load_released_model(folder / "checkpoint.pt", overrides={**TINY, "state_frame": "droid"})
    return folder, ref, model


def tokens(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1, N, D)


def close(actual: torch.Tensor, expected: torch.Tensor, atol: float = ATOL) -> None:
    torch.testing.assert_close(actual.reshape(expected.shape), expected, atol=atol, rtol=0)


def test_strict_load_reads_only_encoder_and_predictor(fixture):
    folder, _, _ = fixture
    encoder, predictor, config = load_released(folder / "checkpoint.pt", TINY)
    raw = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert len(encoder.state_dict()) == len(raw["encoder"]) == 28
    assert len(predictor.state_dict()) == len(raw["predictor"]) == 36  # extrinsics_encoder included
    torch.testing.assert_close(predictor.action_encoder.weight, raw["predictor"]["module.action_encoder.weight"])
    torch.testing.assert_close(encoder.blocks[1].mlp.fc2.bias, raw["encoder"]["module.blocks.1.mlp.fc2.bias"])
    assert config.predictor.embed_dim == 64 and encoder.blocks[0].mlp.fc1.out_features == 418


def test_preprocessing_and_per_frame_encoder_tokens(fixture):
    _, ref, model = fixture
    frames = ref["frames_uint8"].permute(0, 1, 4, 2, 3)  # (B, T, 3, H, W)
    close(preprocess_clip(frames, 64), ref["clip_preprocessed"], atol=1e-6)
    with torch.no_grad():
        close(encode_tokens(model.encoder, ref["clip_preprocessed"]), ref["enc_tokens_raw"])
    close(model.encode(frames), ref["enc_tokens"])
    one_at_a_time = torch.cat([model.encode(frames[:, t : t + 1]) for t in range(4)], dim=1)
    close(one_at_a_time, ref["enc_tokens"])


def test_teacher_forcing(fixture):
    _, ref, model = fixture
    z = tokens(ref["enc_tokens"])
    with torch.no_grad():
        close(model.predictor(z[:, :3], ref["actions"], ref["states"][:, :3]), ref["tf_pred_raw"])
        close(model.predict(z[:, :3], ref["actions"], ref["states"][:, :3]), ref["tf_pred"])


def test_the_trainers_two_step_rollout(fixture):
    _, ref, model = fixture
    z = tokens(ref["enc_tokens"])
    with torch.no_grad():
        rolled = model.trainer_rollout(z, tokens(ref["tf_pred"]), ref["actions"], ref["states"], steps=2)
    close(rolled, ref["ar_train_autosteps2"])


def test_rollouts_with_true_and_with_composed_poses(fixture):
    _, ref, model = fixture
    z, a, s = tokens(ref["enc_tokens"]), ref["actions"], ref["states"]
    with torch.no_grad():
        true_states = model.rollout(z[:, :2], a[:, 1:3], a[:, :1], s[:, :2], future_states=s[:, 2:3])
        planned = model.rollout(z[:, :2], a[:, 1:3], a[:, :1], s[:, :2])  # poses by compose_pose
    close(true_states, ref["rollout_ctx2_gtstates"])
    close(planned, ref["rollout_ctx2_plan"])
    assert (planned - true_states).abs().max() > 1e-4  # the composed poses made the difference
    candidates = torch.cat([a[:, 1:3], a[:, 1:3] * 0.5, a[:, 1:3]])  # one shared context, three candidates
    with torch.no_grad():
        shared = model.rollout(z[:, :2], candidates, a[:, :1], s[:, :2])
    assert shared.shape == (3, 2, N, D)
    close(shared[2:], ref["rollout_ctx2_plan"])
    close(shared[:1], ref["rollout_ctx2_plan"])


def test_the_loss_is_teacher_forcing_plus_the_rollout_on_normed_tokens(fixture):
    _, ref, model = fixture
    z = tokens(ref["enc_tokens"])
    batch = {"features": z, "actions": ref["actions"], "states": ref["states"]}
    with torch.no_grad():
        loss, parts = model.loss(batch)
    teacher = (tokens(ref["tf_pred"]) - z[:, 1:]).abs().mean()
    rollout = (tokens(ref["ar_train_autosteps2"]) - z[:, 1:3]).abs().mean()
    assert parts["teacher_forcing"] == pytest.approx(teacher.item(), abs=1e-6)
    assert loss.item() == pytest.approx((teacher + rollout).item(), abs=1e-6)
    assert {n for n, p in model.trainable().named_parameters()} == {"0." + n for n, _ in model.predictor.named_parameters()}


def test_a_damaged_copy_lists_every_mismatch(fixture, tmp_path):
    folder, _, _ = fixture
    checkpoint = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=True)
    del checkpoint["predictor"]["module.state_encoder.bias"]
    checkpoint["predictor"]["module.predictor_proj.weight"] = torch.zeros(96, 32)
    checkpoint["encoder"]["module.pos_embed"] = torch.zeros(1, 16, 96)
    torch.save({"encoder": checkpoint["encoder"], "predictor": checkpoint["predictor"]}, tmp_path / "damaged.pt")
    with pytest.raises(CheckpointMismatchError) as err:
        load_released(tmp_path / "damaged.pt", TINY)
    message = str(err.value)
    assert str(tmp_path / "damaged.pt") in message
    assert "missing (1): predictor.state_encoder.bias" in message
    assert "unexpected (1): encoder.pos_embed" in message
    assert "predictor.predictor_proj.weight: checkpoint (96, 32) vs model (96, 64)" in message


def test_the_architecture_comes_from_the_name_then_a_json_beside_the_file(fixture, tmp_path):
    folder, ref, _ = fixture
    released = released_config("/anywhere/vjepa2-ac-vitg.pt")
    assert released == RELEASED["vjepa2-ac-vitg"]
    assert released.encoder.resolved()[:3] == (1408, 40, 22) and released.predictor.depth == 24
    assert released_config("vjepa2-ac-vitg.pt", {"predictor": {"depth": 2}}).predictor.depth == 2
    with pytest.raises(ValueError, match="cannot tell the architecture of checkpoint.pt"):
        released_config(folder / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"unknown predictor settings \['width'\]"):
        released_config(folder / "checkpoint.pt", {"predictor": {"width": 3}})
    (tmp_path / "tiny.pt").symlink_to(folder / "checkpoint.pt")
    (tmp_path / "tiny.json").write_text(json.dumps({**TINY, "history": 2}))
    model, config = load_released_model(tmp_path / "tiny.pt")
    assert model.history == 2 and config["data"]["image_size"] == 64 and config["family"] == "vjepa2_ac"
    assert model.state_frame == "tcp"  # planners feed our envs' and robots' poses unless told otherwise
    close(model.encode(ref["frames_uint8"].permute(0, 1, 4, 2, 3)[:, :1]), ref["enc_tokens"][:, :N])


def released_beside(folder, tmp_path, **settings):
    """tmp_path/tiny.pt (a link to the fixture's checkpoint.pt) with its architecture in tiny.json beside it."""
    (tmp_path / "tiny.pt").symlink_to(folder / "checkpoint.pt")
    (tmp_path / "tiny.json").write_text(json.dumps({**TINY, **settings}))
    return tmp_path / "tiny.pt"


def test_cem_goal_plans_with_the_released_file_and_its_planning_settings(fixture, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    folder, _, _ = fixture
    checkpoint = released_beside(folder, tmp_path, planning={"max_steps": 2})
    script = Path(__file__).resolve().parents[1] / "planners" / "cem_goal.py"
    cmd = [sys.executable, str(script), f"checkpoint={checkpoint}", "episodes=1", "solver.samples=16", "solver.elites=4",
           "solver.iterations=2", "video_dir=null", "threads=1", "progress=false"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["checkpoint"] == str(checkpoint) and summary["episodes"] == 1
    assert summary["max_steps"] == 2  # from tiny.json's planning settings
    assert summary["mean_plan_seconds_per_step"] > 0


def test_the_planning_server_serves_the_released_file(fixture, tmp_path):
    import numpy as np

    from common.droid import CARTESIAN_KEY, GOAL_KEY, GRIPPER_KEY, IMAGE_KEY
    from planners.client import PlanningClient
    from planners.serve import spawn

    folder, _, _ = fixture
    proc, port = spawn(released_beside(folder, tmp_path), "device=cpu", "solver.samples=16", "solver.elites=4",
                       "solver.iterations=2", "mpc.horizon=2", "mpc.execute=1", "threads=1")
    try:
        rng = np.random.default_rng(0)
        observation = {IMAGE_KEY: rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
                       CARTESIAN_KEY: np.array([0.5, 0.0, 0.3, 3.1, 0.0, 0.0]), GRIPPER_KEY: np.array([0.2])}
        with PlanningClient(f"ws://127.0.0.1:{port}") as client:
            meta = client.metadata
            assert meta["model"] == "vjepa2_ac" and meta["checkpoint"] == "tiny.pt" and meta["image_size"] == 64
            goal = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            for _ in range(2):  # the second plan has a context of one real frame, its action and state
                actions = client.infer({**observation, GOAL_KEY: goal})["actions"]
                assert actions.shape == (1, 7) and np.all(np.abs(actions[:, :3]) <= 0.075 + 1e-6)
                assert np.all(np.abs(actions[:, 3:6]) <= 0.15 + 1e-6) and 0 <= actions[0, 6] <= 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_fine_tuning_the_released_predictor_lowers_the_loss_and_writes_our_checkpoint(fixture, tmp_path):
    from hydra import compose, initialize_config_dir

    from common.cli import CONFIG_DIR
    from recipes.collect import CollectConfig, collect
    from world_model.models import load_world_model
    from world_model.train import train, train_config

    folder, ref, released = fixture
    checkpoint = released_beside(folder, tmp_path)
    data = tmp_path / "data"
    collect(CollectConfig(out=str(data), num_episodes=4, max_steps=12, workers=1, val_fraction=0.25,
                          env_kwargs={"image_size": 64}), progress=False)
    overrides = ["model=vjepa2_ac", f"model.checkpoint={checkpoint}", f"data.root={data}", "data.image_size=64",
                 f"out={tmp_path / 'run'}", "optim.steps=8", "optim.batch_size=4", "optim.warmup=1", "optim.decay=2",
                 "optim.lr=1e-3", "progress=false", "log_every=2", "val_batches=1"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        summary = train(train_config(compose("train", overrides=overrides)))
    assert summary["loss_end"] < summary["loss_start"] and summary["val_loss"] is not None
    model, config = load_world_model(summary["checkpoint"])  # our folder: no need for the .pt any more
    assert config["family"] == "vjepa2_ac" and config["data"]["image_size"] == 64
    for name, value in released.encoder.state_dict().items():  # the encoder stayed frozen
        torch.testing.assert_close(model.encoder.state_dict()[name], value, rtol=0, atol=0)
    moved = model.predictor.predictor_proj.weight - released.predictor.predictor_proj.weight
    assert moved.abs().max() > 0


def test_states_in_our_tcp_convention_are_turned_to_droids(fixture):
    _, ref, model = fixture
    tcp_model = VJEPA2ACWorldModel(model.encoder, model.predictor, state_frame="tcp")
    states = ref["states"][:, :3].clone()
    states[..., 3] = torch.remainder(states[..., 3], 2 * torch.pi) - torch.pi  # R @ Rx(pi): roll - pi, wrapped
    with torch.no_grad():
        close(tcp_model.predict(tokens(ref["enc_tokens"])[:, :3], ref["actions"], states), ref["tf_pred"])
    assert torch.allclose(to_droid_frame(states), ref["states"][:, :3], atol=1e-6)


def test_compiling_the_predictor_keeps_the_state_dict(fixture):
    _, _, model = fixture
    tcp_model = VJEPA2ACWorldModel(model.encoder, model.predictor)
    keys = list(tcp_model.state_dict())
    tcp_model.compile_predictor()  # lazy: nothing is compiled until a call (CUDA only in practice)
    assert list(tcp_model.state_dict()) == keys and tcp_model._compiled is not None
