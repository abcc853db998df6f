import shutil
import warnings

import numpy as np
import pytest
import torch
from helpers import CORRUPTIONS, make_dataset
from torch.utils.data import DataLoader

from common.rotations import delta_pose_actions
from datasets import ClipDataset, EpisodeError, EpisodeReader
from datasets.clips import ClipActions, FrameTransform, Windows
from datasets.index import write_index
from datasets.synthetic import make_synthetic_episode


@pytest.fixture
def data(tmp_path):
    make_dataset(tmp_path, num_episodes=5, length=40)
    return tmp_path


def test_clip_content_matches_the_episode(data):
    ds = ClipDataset(data, split="all", windows=Windows(history=2, future=3, fps=5))
    assert ds.episodes[0].frameskip == 3
    assert len(ds) == 5 * (40 - 12)
    sample = ds[33]
    assert sample["frames"].shape == (5, 3, 64, 64) and sample["frames"].dtype == torch.uint8
    assert sample["states"].shape == (5, 7) and sample["actions"].shape == (4, 7)
    e, ids = int(sample["episode"]), sample["frame_ids"].numpy()
    assert e == 1 and list(ids) == [5, 8, 11, 14, 17]
    with EpisodeReader(ds.episode_path(e)) as ep:
        images = ep.images("exterior_1_left", ids)
        states = ep.states()[ids]
        expected_actions = delta_pose_actions(states[:, :6], states[:, 6])
    np.testing.assert_array_equal(sample["frames"].permute(0, 2, 3, 1).numpy(), images)
    np.testing.assert_allclose(sample["states"].numpy(), states, rtol=1e-6)
    np.testing.assert_allclose(sample["actions"].numpy(), expected_actions, rtol=1e-5, atol=1e-7)


def test_frameskip_follows_each_files_control_rate(tmp_path):
    make_synthetic_episode(tmp_path / "a.h5", length=40, control_hz=15)
    make_synthetic_episode(tmp_path / "b.h5", length=40, control_hz=30)
    ds = ClipDataset(tmp_path, split="all", windows=Windows(history=1, future=1, fps=5))
    assert [ep.frameskip for ep in ds.episodes] == [3, 6]
    assert list(ds[len(ds) - 1]["frame_ids"]) == [33, 39]
    assert [ep.frameskip for ep in ClipDataset(tmp_path, "all", windows=Windows(frameskip=2)).episodes] == [2, 2]


@pytest.mark.parametrize("reduce", ["sum", "stack", "last"])
def test_recorded_actions_are_reduced_over_the_frameskip(data, reduce):
    ds = ClipDataset(data, split="all", windows=Windows(history=1, future=2, frameskip=4),
                     actions=ClipActions("recorded", ["cartesian_velocity", "action/gripper_position"], reduce))
    sample = ds[7]
    ids = sample["frame_ids"].numpy()
    with EpisodeReader(ds.episode_path(int(sample["episode"]))) as ep:
        vel, grip = ep.read("action/cartesian_velocity"), ep.read("action/gripper_position")
    expected = []
    for a, b in zip(ids[:-1], ids[1:]):
        v, g = vel[a:b], grip[a:b, None]
        expected.append({"sum": np.concatenate([v.sum(0), g.sum(0)]),
                         "last": np.concatenate([v[-1], g[-1]]),
                         "stack": np.concatenate([v.reshape(-1), g.reshape(-1)])}[reduce])
    np.testing.assert_allclose(sample["actions"].numpy(), np.stack(expected), rtol=1e-5, atol=1e-7)
    assert ds.action_dim == sample["actions"].shape[1] == {"sum": 7, "last": 7, "stack": 28}[reduce]


def test_summed_velocity_commands_reproduce_the_displacement(data):
    """The synthetic commands are exact per-step displacements, so summing over the skip gives the clip's motion."""
    ds = ClipDataset(data, split="all", windows=Windows(history=1, future=3, frameskip=3),
                     actions=ClipActions("recorded", ["cartesian_velocity"], "sum"))
    sample = ds[10]
    np.testing.assert_allclose(sample["actions"][:, :3].numpy(),
                               np.diff(sample["states"][:, :3].numpy(), axis=0), atol=1e-5)


def test_short_episodes_are_skipped_and_counted(tmp_path):
    make_synthetic_episode(tmp_path / "long.h5", length=30)
    make_synthetic_episode(tmp_path / "short.h5", length=8)
    ds = ClipDataset(tmp_path, split="all", windows=Windows(history=2, future=2, frameskip=3))  # needs 10 steps
    assert ds.num_short == 1 and len(ds.episodes) == 1 and len(ds) == 21


def test_resize_and_random_resized_crop_are_seeded(data):
    resized = ClipDataset(data, split="all", transform=FrameTransform(image_size=32))[0]["frames"]
    assert resized.shape == (2, 3, 32, 32)
    ds = ClipDataset(data, split="all", transform=FrameTransform(image_size=(24, 32), crop_scale=(0.3, 1.0)))
    torch.manual_seed(5)
    a = torch.stack([ds[i]["frames"] for i in range(8)])
    torch.manual_seed(5)
    b = torch.stack([ds[i]["frames"] for i in range(8)])
    assert a.shape == (8, 2, 3, 24, 32)
    assert torch.equal(a, b)
    plain = ClipDataset(data, split="all", transform=FrameTransform(image_size=(24, 32)))
    assert not torch.equal(a[:, 0], torch.stack([plain[i]["frames"][0] for i in range(8)]))


def test_train_and_val_use_disjoint_episodes(data):
    write_index(data, val_fraction=0.4, seed=0, progress=False)
    train = ClipDataset(data, split="train", windows=Windows(future=1))
    val = ClipDataset(data, split="val", windows=Windows(future=1))
    assert len(train.episodes) == 3 and len(val.episodes) == 2
    assert not {e.path for e in train.episodes} & {e.path for e in val.episodes}
    no_index = data / "copy"
    no_index.mkdir()
    for p in data.glob("*.h5"):
        shutil.copy(p, no_index / p.name)
    assert len(ClipDataset(no_index, split="val", val_fraction=0.4).episodes) == 2


@pytest.mark.parametrize("indexed", [True, False])
@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_episode_is_skipped_or_raised_in_strict_mode(tmp_path, kind, indexed):
    good = make_dataset(tmp_path, num_episodes=3, length=20)
    bad = tmp_path / "episode_bad.h5"
    shutil.copy(good[0], bad)
    if indexed:  # the index was built while the file was good: the damage is found while training
        write_index(tmp_path, val_fraction=0.0, progress=False)
    CORRUPTIONS[kind][0](bad)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ClipDataset(tmp_path, split="train", val_fraction=0.0, windows=Windows(history=2, future=2, frameskip=2))
        clips = [ds[i] for i in range(len(ds))]
    good_paths = {str(p) for p in good}
    assert all(str(ds.episode_path(int(c["episode"]))) in good_paths for c in clips)
    messages = [str(w.message) for w in caught]
    assert any("skipping corrupt episode" in m and "episode_bad.h5" in m for m in messages), messages
    with pytest.raises(EpisodeError, match="episode_bad.h5"):
        strict = ClipDataset(tmp_path, split="train", windows=Windows(history=2, future=2, frameskip=2), strict=True,
                             val_fraction=0.0)
        for i in range(len(strict)):
            strict[i]


def test_two_workers_return_the_same_clips_as_one_process(data):
    ds = ClipDataset(data, split="all", windows=Windows(history=2, future=2, fps=5))
    single = list(DataLoader(ds, batch_size=16, num_workers=0))
    multi = list(DataLoader(ds, batch_size=16, num_workers=2))
    assert len(single) == len(multi)
    for a, b in zip(single, multi):
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_bad_arguments_are_refused(data):
    with pytest.raises(ValueError, match="fps or frameskip"):
        ClipDataset(data, windows=Windows(fps=5, frameskip=2))
    with pytest.raises(ValueError, match="action_mode"):
        ClipDataset(data, actions=ClipActions(mode="joint"))
    with pytest.raises(ValueError, match="crop_scale needs image_size"):
        ClipDataset(data, transform=FrameTransform(crop_scale=(0.5, 1.0)))
    with pytest.raises(IndexError):
        ClipDataset(data, split="all")[10_000]
