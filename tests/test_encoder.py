import pytest
import torch

from world_model.checkpoints import (
    CheckpointMismatchError,
    load_encoder,
    load_official_encoder,
    load_state_strict,
    save_checkpoint,
)
from world_model.encoder import EncoderConfig, VideoViT, encode_frames, pool_grid, rope_rotate, sincos_3d

SMALL = dict(size="micro", img_size=32, patch_size=8)


@pytest.mark.parametrize("use_rope", [False, True])
def test_token_shapes_masking_and_single_images(use_rope):
    model = VideoViT(EncoderConfig(**SMALL, use_rope=use_rope)).eval()
    video = torch.randn(2, 3, 4, 32, 32)
    tokens = model(video)
    assert tokens.shape == (2, 2 * 4 * 4, 96)  # (4 frames / tubelet 2) x (32 / 8)^2 tokens
    keep = torch.stack([torch.arange(0, 32, 2), torch.arange(1, 32, 2)])
    kept = model(video, keep=keep)
    assert kept.shape == (2, 16, 96)
    # a single image is repeated to fill the tubelet
    image = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(model(image), model(image[:, :, None].expand(-1, -1, 2, -1, -1)))


def test_rope_encodes_relative_positions():
    """q.k after rotation depends only on the position difference (not so in V-JEPA 2's layout)."""
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def dot(a, b, vjepa2=False):
        return (rope_rotate(q, torch.tensor([a]), vjepa2) * rope_rotate(k, torch.tensor([b]), vjepa2)).sum()

    torch.testing.assert_close(dot(3.0, 1.0), dot(7.0, 5.0))
    assert not torch.allclose(dot(3.0, 1.0), dot(3.0, 2.0))
    assert not torch.allclose(dot(3.0, 1.0, True), dot(7.0, 5.0, True))
    # V-JEPA 2's layout: channel j < D/2 uses f_j, channel D/2 + j uses f_j again
    x = torch.randn(1, 1, 1, 8)
    omega = 1.0 / 10000 ** (torch.arange(4) / 4.0)
    ang = 2.0 * torch.cat([omega, omega])
    pairs = x.view(4, 2)
    swapped = torch.stack([-pairs[:, 1], pairs[:, 0]], -1).flatten()
    torch.testing.assert_close(rope_rotate(x, torch.tensor([2.0]), True).flatten(),
                               x.flatten() * ang.cos() + swapped * ang.sin())


def test_sincos_is_unique_per_position():
    emb = sincos_3d(96, (2, 4, 4))
    assert emb.shape == (32, 96)
    assert torch.cdist(emb, emb).add(torch.eye(32) * 10).min() > 0.1


def test_encode_frames_is_per_frame_and_layer_normed():
    model = VideoViT(EncoderConfig(**SMALL)).eval()
    frames = torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8)
    z = encode_frames(model, frames)
    assert z.shape == (2, 3, 16, 96)
    torch.testing.assert_close(z.mean(-1), torch.zeros(2, 3, 16), atol=1e-5, rtol=0)
    torch.testing.assert_close(encode_frames(model, frames[:, 1:2])[:, 0], z[:, 1])  # frames are independent
    assert encode_frames(model, frames, pool=True).shape == (2, 3, 1, 96)
    grid = encode_frames(model, frames, pool=2)  # the 4 x 4 patch map averaged to 2 x 2 cells, row-major
    assert grid.shape == (2, 3, 4, 96)
    cells = z.unflatten(2, (4, 4))
    torch.testing.assert_close(grid[:, :, 1], cells[:, :, :2, 2:].mean((2, 3)))  # top-right cell
    torch.testing.assert_close(grid.mean(2, keepdim=True), encode_frames(model, frames, pool=1), atol=1e-6, rtol=0)


def test_pool_grid_keeps_where_things_are_and_refuses_impossible_grids():
    tokens = torch.zeros(1, 16, 2)
    tokens[0, 15] = 1.0  # the bottom-right patch alone is lit
    pooled = pool_grid(tokens, 2)
    assert pooled[0, :, 0].tolist() == [0.0, 0.0, 0.0, 0.25]  # seen in the bottom-right cell only
    with pytest.raises(ValueError, match="square patch map"):
        pool_grid(torch.zeros(1, 12, 2), 2)
    with pytest.raises(ValueError, match="at least 8 x 8"):
        pool_grid(tokens, 8)


def _official_layout(model: VideoViT, tmp_path, name="vitl.pt"):
    state = {f"module.backbone.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / name
    torch.save({"encoder": state, "target_encoder": state, "epoch": 3}, path)
    return path


def test_official_checkpoint_layout_loads_strictly_and_reproduces_outputs(tmp_path):
    config = EncoderConfig(**SMALL, use_rope=True, rope_vjepa2_layout=True)
    source = VideoViT(config).eval()
    path = _official_layout(source, tmp_path, "tiny_vjepa2.pt")
    loaded = load_official_encoder(path, config).eval()
    video = torch.randn(1, 3, 2, 32, 32)
    torch.testing.assert_close(loaded(video), source(video), rtol=0, atol=0)
    assert not any(k.startswith("pos_embed") for k in source.state_dict())  # RoPE: no position table


def test_official_checkpoint_mismatch_lists_every_problem(tmp_path):
    source = VideoViT(EncoderConfig(**SMALL, use_rope=True))
    state = {f"module.backbone.{k}": v for k, v in source.state_dict().items()}
    del state["module.backbone.norm.weight"]
    state["module.backbone.extra.bias"] = torch.zeros(3)
    state["module.backbone.blocks.0.attn.qkv.weight"] = torch.zeros(5, 5)
    path = tmp_path / "bad.pt"
    torch.save({"encoder": state}, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_official_encoder(path, EncoderConfig(**SMALL, use_rope=True))
    message = str(err.value)
    assert "missing (1): norm.weight" in message and "unexpected (1): extra.bias" in message
    assert "blocks.0.attn.qkv.weight: checkpoint (5, 5) vs model (288, 96)" in message
    with pytest.raises(ValueError, match="cannot tell the architecture"):
        load_official_encoder(path)
    with pytest.raises(FileNotFoundError, match="nothing is fetched"):
        load_official_encoder(tmp_path / "vitl.pt")


def test_our_checkpoint_folder_round_trip(tmp_path):
    config = EncoderConfig(**SMALL)
    model = VideoViT(config).eval()
    save_checkpoint(tmp_path / "ckpt", model, {"encoder": config.to_dict()})
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    video = torch.randn(1, 3, 2, 32, 32)
    torch.testing.assert_close(load_encoder(tmp_path / "ckpt").eval()(video), model(video), rtol=0, atol=0)
    save_checkpoint(tmp_path / "ckpt", model, {"encoder": config.to_dict()})  # overwrite in place
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_checkpoint_files_share_one_mode_readable_by_colleagues(tmp_path):
    """safetensors writes 0600; a shared checkpoint's files must all get the mode config.json gets (0644)."""
    config = EncoderConfig(**SMALL)
    folder = save_checkpoint(tmp_path / "ckpt", VideoViT(config), {"encoder": config.to_dict()}, {"step": 1})
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert set(modes) == {"config.json", "model.safetensors", "training_state.pt"}
    assert set(modes.values()) == {modes["config.json"]} and modes["config.json"] & 0o044 == 0o044, modes


def test_a_mismatch_lists_every_key_however_many(tmp_path):
    """The README promises every missing, unexpected and mis-shaped key, not the first 20."""
    source = VideoViT(EncoderConfig(**SMALL))
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("blocks.")}
    missing = sorted(k for k in source.state_dict() if k.startswith("blocks."))
    assert len(missing) > 20
    state.update({f"junk.{i}": torch.zeros(1) for i in range(25)})
    with pytest.raises(CheckpointMismatchError) as err:
        load_state_strict(VideoViT(EncoderConfig(**SMALL)), state, "x.pt")
    message = str(err.value)
    assert f"missing ({len(missing)}): " + ", ".join(missing) in message
    assert "unexpected (25): " in message and all(f"junk.{i}" in message for i in range(25))
    assert "more" not in message


@pytest.mark.parametrize("name,millions", [("vitl", 303.9), ("vith", 631.6), ("vitg", 1012.2)])
def test_official_architectures_have_the_released_sizes(name, millions):
    """Built on the meta device (no memory): ViT-L 300M, ViT-H 600M, ViT-g 1B parameters as released."""
    from world_model.checkpoints import OFFICIAL_ENCODERS

    with torch.device("meta"):
        model = VideoViT(OFFICIAL_ENCODERS[name])
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, abs=0.1)
