import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import corrupt_copy, make_dataset

from common.rotations import delta_pose_actions
from datasets import EpisodeReader
from datasets.index import build_index, load_index, split_episodes, write_index
from datasets.schema import CARTESIAN, GRIPPER, INDEX_NAME


def test_index_lists_episodes_split_and_stats(tmp_path):
    paths = make_dataset(tmp_path, num_episodes=10, length=30)
    corrupt_copy(paths[0], tmp_path / "broken.h5", "nan_state")
    index = write_index(tmp_path, val_fraction=0.2, seed=3, progress=False)
    assert load_index(tmp_path) == json.loads((tmp_path / INDEX_NAME).read_text())
    assert index["num_episodes"] == 10 and index["num_steps"] == 300
    assert index["skipped"] == [{"file": "broken.h5", "reason": index["skipped"][0]["reason"]}]
    assert "NaN" in index["skipped"][0]["reason"]
    entry = index["episodes"][0]
    assert entry["file"] == "episode_000.h5" and entry["length"] == 30
    assert entry["cameras"] == {"exterior_1_left": [64, 64]} and entry["control_hz"] == 15.0
    split = index["split"]
    assert len(split["val"]) == 2 and len(split["train"]) == 8
    assert set(split["train"]) | set(split["val"]) == {p.name for p in paths}
    assert split == split_episodes([p.name for p in paths], 0.2, 3)
    assert split != split_episodes([p.name for p in paths], 0.2, 4)

    states, actions, deltas = [], [], []
    for p in paths:
        with EpisodeReader(p) as ep:
            states.append(ep.states())
            actions.append(ep.read("action/cartesian_velocity"))
            deltas.append(delta_pose_actions(ep.read(CARTESIAN), ep.read(GRIPPER)))
    for key, rows in [("state", states), ("action/cartesian_velocity", actions), ("delta_pose", deltas)]:
        rows = np.concatenate(rows)
        stats = index["stats"][key]
        assert stats["count"] == len(rows)
        np.testing.assert_allclose(stats["mean"], rows.mean(0), atol=1e-12)
        np.testing.assert_allclose(stats["std"], rows.std(0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(stats["min"], rows.min(0))
        np.testing.assert_allclose(stats["max"], rows.max(0))
    assert index["stats"]["action/gripper_position"]["count"] == 300


def test_split_is_by_episode_and_stable():
    files = [f"ep{i}.h5" for i in range(50)]
    a = split_episodes(files, 0.1, 0)
    assert a == split_episodes(list(reversed(files)), 0.1, 0)
    assert len(a["val"]) == 5 and not set(a["val"]) & set(a["train"])
    assert split_episodes(files[:2], 0.1, 0)["val"] != []  # at least one validation episode
    assert split_episodes(files, 0.0, 0)["val"] == []
    with pytest.raises(ValueError, match="val_fraction"):
        split_episodes(files, 1.0, 0)


def test_damaged_index_is_refused_with_a_fix(tmp_path):
    (tmp_path / INDEX_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="rebuild it with python -m datasets.index"):
        load_index(tmp_path)


def test_index_cli(tmp_path):
    make_dataset(tmp_path, num_episodes=4)
    result = subprocess.run([sys.executable, "-m", "datasets.index", str(tmp_path), "val_fraction=0.25", "seed=1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("indexed 4 episodes (160 steps)")
    assert load_index(tmp_path) == build_index(tmp_path, val_fraction=0.25, seed=1, progress=False) | {
        "created": load_index(tmp_path)["created"]}
