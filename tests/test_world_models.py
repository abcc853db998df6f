import pytest
import torch

from world_model.ac_predictor import ACPredictor, ACPredictorConfig
from world_model.encoder import EncoderConfig, VideoViT
from world_model.models import JEPAWorldModel, LeWMEncoder, LeWorldModel


def _jepa(history=3, state_dim=7):
    torch.manual_seed(0)
    encoder = VideoViT(EncoderConfig(size="micro", img_size=32, patch_size=8))
    predictor = ACPredictor(96, ACPredictorConfig(width=48, depth=2, num_heads=4, state_dim=state_dim))
    for block in predictor.blocks:
        torch.nn.init.normal_(block.adaLN_modulation[1].weight, std=0.05)
    return JEPAWorldModel(encoder, predictor, history=history).eval()


def test_contract_shapes_for_both_families():
    frames = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    model = _jepa()
    z = model.encode(frames)
    assert z.shape == (2, 4, 16, 96)
    actions, states = torch.randn(2, 4, 7), torch.randn(2, 4, 7)
    assert model.predict(z, actions, states).shape == z.shape
    assert model.rollout(z[:, :2], torch.randn(2, 5, 7), states=states[:, :2]).shape == (2, 5, 16, 96)
    lewm = LeWorldModel(LeWMEncoder(img_size=32, patch_size=8, width=48, depth=2, num_heads=4, embed_dim=32,
                                    projector_hidden=64),
                        ACPredictor(32, ACPredictorConfig(width=48, depth=2, num_heads=4, state_dim=0)), history=3).eval()
    zl = lewm.encode(frames)
    assert zl.shape == (2, 4, 1, 32)
    assert lewm.rollout(zl[:, :3], torch.randn(2, 5, 7)).shape == (2, 5, 1, 32)


def test_rollout_uses_the_history_window_and_matches_teacher_forced_first_step():
    model = _jepa(history=2)
    z = torch.randn(3, 4, 16, 96)
    past, plan, states = torch.randn(3, 3, 7), torch.randn(3, 2, 7), torch.randn(3, 4, 7)
    out = model.rollout(z, plan, context_actions=past, states=states)
    # first step: predict() on the last `history` frames with the executed and the first planned action
    direct = model.predict(z[:, -2:], torch.cat([past[:, -1:], plan[:, :1]], 1), states[:, -2:])[:, -1]
    torch.testing.assert_close(out[:, 0], direct)
    # frames older than the history window do not matter
    z_old = z.clone()
    z_old[:, :2] += 5.0
    torch.testing.assert_close(model.rollout(z_old, plan, context_actions=past, states=states), out)
    with pytest.raises(ValueError, match="pass states"):
        model.rollout(z, plan)


def test_rollout_composes_delta_pose_actions_with_the_state_pose():
    """A model trained on delta-pose actions carries its states forward as V-JEPA 2-AC does (R(delta) R, gripper
    clipped), not by adding Euler angles; with a 1-frame history step 2 is predict() on step 1's output."""
    from common.rotations import compose_pose

    model = _jepa(history=1)
    model.pose_states = True
    z = torch.randn(2, 1, 16, 96)
    states = torch.tensor([[[0.4, 0.0, 0.3, 3.0, 0.2, -0.5, 0.9]]]).expand(2, 1, 7)
    plan = torch.tensor([0.02, 0.0, -0.01, 0.3, -0.2, 0.25, 0.5]).expand(2, 2, 7).clone()
    out = model.rollout(z, plan, states=states)
    composed = compose_pose(states, plan[:, :1])
    assert composed[0, 0, 6] == 1.0 and abs(float(composed[0, 0, 3] - (3.0 + 0.3))) > 1e-3  # clipped; not added
    torch.testing.assert_close(out[:, 1:], model.predict(out[:, :1], plan[:, 1:], composed)[:, -1:])
    model.pose_states = False
    added = states + plan[:, :1]
    torch.testing.assert_close(model.rollout(z, plan, states=states)[:, 1:], model.predict(out[:, :1], plan[:, 1:], added))
