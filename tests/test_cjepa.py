"""The C-JEPA-style object-centric family (seed 000_57dac4a534ebac6b.txt, "C-JEPA"): trains a few steps, plans."""

import numpy as np
import torch
from helpers import make_dataset
from hydra import compose, initialize_config_dir

from common.cli import CONFIG_DIR
from planners.mpc import MPCConfig, MPCPlanner
from planners.protocols import Bounds
from planners.solvers import make_solver
from world_model.checkpoints import load_encoder, save_checkpoint
from world_model.cjepa import ObjectMask
from world_model.encoder import EncoderConfig, VideoViT
from world_model.models import load_world_model
from world_model.slots import SlotAttention, SlotDecoder
from world_model.train import train, train_config

torch.set_num_threads(1)


def test_object_masking_hides_whole_slots_after_the_first_frame_reproducibly():
    masking = ObjectMask(8)
    masking.mask_token.data.fill_(7.0)
    z = torch.randn(3, 4, 4, 8)
    out = masking(z, 0.5, seed=1)
    hidden = (out == 7.0).all(-1)  # (B, T, K)
    assert not hidden[:, 0].any()  # the first frame shows every object
    assert (hidden[:, 1:].sum(-1) == 2).all() and (hidden[:, 1:] == hidden[:, 1:2]).all()  # same 2 slots per clip
    assert torch.equal(out, masking(z, 0.5, seed=1)) and torch.equal(masking(z, 0.0, seed=1), z)


def test_slots_and_decoder_shapes():
    slots, attn = SlotAttention(96, 3, 16, iters=2)(torch.randn(2, 16, 96))
    assert slots.shape == (2, 3, 16) and attn.shape == (2, 3, 16)
    torch.testing.assert_close(attn.sum(1), torch.ones(2, 16))  # each token shared among the slots
    recon, alpha = SlotDecoder(16, 96, 16, hidden=32)(slots)
    assert recon.shape == (2, 16, 96) and alpha.shape == (2, 3, 16)


def test_cjepa_trains_only_slots_and_predictor_and_plans_on_slots(tmp_path):
    make_dataset(tmp_path / "data", num_episodes=4, length=12, image_size=32)
    config = EncoderConfig(size="micro", img_size=32, patch_size=8, depth=1)
    save_checkpoint(tmp_path / "enc", VideoViT(config), {"encoder": config.to_dict()})
    overrides = ["model=cjepa", f"model.encoder_checkpoint={tmp_path / 'enc'}", "model.num_slots=3",
                 "model.slot_dim=16", "model.decoder_hidden=32", "model.mask_slots=0.34", "model.predictor.width=32",
                 "model.predictor.depth=1", "model.predictor.num_heads=2", f"data.root={tmp_path / 'data'}",
                 "data.image_size=32", "data.val_fraction=0.25", f"out={tmp_path / 'run'}", "optim.steps=4",
                 "optim.batch_size=4", "optim.warmup=1", "optim.decay=1", "progress=false"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        summary = train(train_config(compose("train", overrides=overrides)))
    assert summary["steps"] == 4 and np.isfinite(summary["loss_end"])
    model, saved = load_world_model(tmp_path / "run" / "checkpoints" / "last")
    assert saved["family"] == "cjepa"
    frozen = load_encoder(tmp_path / "enc").state_dict()
    assert all(torch.equal(v, frozen[k]) for k, v in model.encoder.state_dict().items())  # the encoder never trains
    z = model.encode(torch.randint(0, 256, (1, 3, 3, 32, 32), dtype=torch.uint8))
    assert z.shape == (1, 3, 3, 16)  # 3 slots of width 16 per frame
    rng = np.random.default_rng(0)
    planner = MPCPlanner(model, make_solver("cem", samples=16, elites=4, iterations=2),
                         Bounds.droid(gripper=(-1.0, 1.0), fixed={3: 0.0, 4: 0.0, 5: 0.0, 6: 0.0}),
                         MPCConfig(horizon=2, execute=1))
    planner.reset(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    actions = planner.act(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), np.zeros(7, dtype=np.float32))
    assert actions.shape == (1, 7) and torch.isfinite(actions).all()
