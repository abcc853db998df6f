"""LeWorldModel's details from the seed (000_57dac4a534ebac6b.txt): 10 % predictor dropout."""


import pytest
import torch
from helpers import make_dataset

from world_model.ac_predictor import ACPredictor, ACPredictorConfig
from world_model.models import LeWMSettings, build_model

torch.set_num_threads(1)
TINY_LEWM = ["model=lewm", "model.encoder.img_size=32", "model.encoder.depth=1", "model.encoder.width=32",
             "model.encoder.num_heads=2", "model.encoder.embed_dim=16", "model.encoder.projector_hidden=32",
             "model.predictor.width=32", "model.predictor.depth=1", "model.predictor.num_heads=2",
             "model.sigreg_projections=16"]


def test_lewm_predictor_has_ten_percent_dropout_in_training_and_none_in_eval():
    settings = LeWMSettings()
    assert settings.predictor.dropout == 0.1 and settings.to_config(7)["predictor"]["dropout"] == 0.1
    assert ACPredictorConfig.from_checkpoint({}).dropout == 0.0  # older checkpoints and V-JEPA 2-AC: none
    predictor = ACPredictor(16, ACPredictorConfig(width=32, depth=2, num_heads=2, action_dim=3, state_dim=0, dropout=0.5))
    for block in predictor.blocks:  # let the actions reach the blocks (zero-initialised modulation is the identity)
        torch.nn.init.normal_(block.adaLN_modulation[1].weight, std=0.1)
    z, actions = torch.randn(2, 3, 4, 16), torch.randn(2, 3, 3)
    predictor.train()
    assert not torch.equal(predictor(z, actions), predictor(z, actions))  # dropout draws differ
    predictor.eval()
    assert torch.equal(predictor(z, actions), predictor(z, actions))  # eval mode: deterministic
    config = LeWMSettings(history=2).to_config(7)
    config["encoder"].update(img_size=32, depth=1, width=32, num_heads=2, embed_dim=16, projector_hidden=32)
    config["predictor"].update(width=32, depth=1, num_heads=2, state_dim=0)
    model = build_model(config).eval()  # what load_world_model returns to planners
    frames = torch.randint(0, 256, (1, 2, 3, 32, 32), dtype=torch.uint8)
    plans = torch.randn(4, 3, 7)
    first = model.rollout(model.encode(frames), plans)
    assert torch.equal(first, model.rollout(model.encode(frames), plans))


def test_training_with_dropout_resumes_exactly(tmp_path):
    from hydra import compose, initialize_config_dir

    from common.cli import CONFIG_DIR
    from world_model.train import train, train_config

    make_dataset(tmp_path / "data", num_episodes=4, length=16, image_size=32)

    def run(out, *extra):
        overrides = TINY_LEWM + [f"data.root={tmp_path / 'data'}", "data.image_size=32", "data.val_fraction=0.25",
                                 f"out={tmp_path / out}", "optim.steps=6", "optim.batch_size=4", "optim.warmup=1",
                                 "optim.decay=2", "progress=false", *extra]
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            config = train_config(compose("train", overrides=overrides))
        assert config.model.predictor.dropout == 0.1  # the LeWM default
        return train(config)

    straight = run("a")
    run("b", "stop_at=3")
    # the dropout masks continue as in one run (the RNG state is in the checkpoint): equal to float rounding (~1e-7;
    # bit-identical without dropout, see test_train.py)
    assert run("b", "resume=true")["history"] == pytest.approx(straight["history"], rel=1e-5)
