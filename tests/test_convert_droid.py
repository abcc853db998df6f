import json
import subprocess
import sys
import warnings

import h5py
import imageio.v2 as imageio
import numpy as np
import pytest

from datasets import EpisodeReader
from datasets.convert_droid import convert_tree, kept_steps
from datasets.schema import CARTESIAN, GRIPPER
from datasets.validate import validate_dir

SERIALS = {"ext1": "11111111", "ext2": "22222222", "wrist": "33333333"}
LEVELS = {"ext1": 0, "ext2": 1, "wrist": 2}


def _frame(role: str, t: int) -> np.ndarray:
    """A frame whose grey level encodes the step, and whose colour channel encodes the camera."""
    img = np.full((64, 96, 3), 40, np.uint8)
    img[..., LEVELS[role]] = 8 * t + 10
    return img


def make_droid_episode(root, name, length=24, idle=(), uuid=None):
    ep = root / "success" / "2023-07-07" / name
    (ep / "recordings" / "MP4").mkdir(parents=True)
    rng = np.random.default_rng(len(name))
    moving = np.ones(length, bool)
    moving[list(idle)] = False
    with h5py.File(ep / "trajectory.h5", "w") as f:
        f.attrs["current_task"] = "put the marker in the cup"
        f.attrs["success"] = True
        f["observation/robot_state/cartesian_position"] = rng.normal(size=(length, 6))
        f["observation/robot_state/gripper_position"] = rng.uniform(size=length)
        f["observation/robot_state/joint_positions"] = rng.normal(size=(length, 7))
        f["observation/controller_info/movement_enabled"] = moving
        f["observation/timestamp/control/step_start"] = np.arange(length) * 66
        for key, dim in [("cartesian_position", 6), ("cartesian_velocity", 6), ("joint_position", 7)]:
            f[f"action/{key}"] = rng.normal(size=(length, dim))
        f["action/gripper_position"] = rng.uniform(size=length)
    uuid = uuid or f"LAB+abcd1234+{name}"
    meta = {"uuid": uuid, "current_task": "put the marker in the cup", "success": True,
            "trajectory_length": length, **{f"{r}_cam_serial": s for r, s in SERIALS.items()}}
    for role, serial in SERIALS.items():
        meta[f"{role}_mp4_path"] = f"success/2023-07-07/{name}/recordings/MP4/{serial}.mp4"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imageio.mimwrite(ep / "recordings" / "MP4" / f"{serial}.mp4", [_frame(role, t) for t in range(length)],
                             fps=15, format="ffmpeg", quality=10)
    meta["left_mp4_path"], meta["right_mp4_path"] = meta["ext2_mp4_path"], meta["ext1_mp4_path"]
    (ep / f"metadata_{uuid}.json").write_text(json.dumps(meta))
    return ep


def _levels(frames, role):
    return frames[..., LEVELS[role]].reshape(len(frames), -1).mean(1)


@pytest.mark.parametrize("role,camera", [("ext1", "exterior_1_left"), ("wrist", "wrist_left"),
                                         ("left", "exterior_2_left")])
def test_conversion_picks_camera_drops_idle_and_resamples(tmp_path, role, camera):
    src = tmp_path / "droid"
    make_droid_episode(src, "Fri_Jul__7_09:50:13_2023", idle=(3, 4, 5, 6))
    summary = convert_tree(src, tmp_path / "out", camera=role, fps=7.5, size=(32, 48), progress=False)
    assert summary["converted"] == 1 and summary["failed"] == []
    out = tmp_path / "out" / "LAB+abcd1234+Fri_Jul__7_09_50_13_2023.h5"
    expected_steps = [0, 2, 8, 10, 12, 14, 16, 18, 20, 22]  # active steps 0-2, 7-23, every second one
    with h5py.File(tmp_path / "droid/success/2023-07-07/Fri_Jul__7_09:50:13_2023/trajectory.h5") as f:
        cart, grip = f[CARTESIAN][()], f[GRIPPER][()]
        vel = f["action/cartesian_velocity"][()]
    with EpisodeReader(out) as ep:
        assert ep.cameras == [camera] and len(ep) == len(expected_steps)
        attrs = ep.attrs
        assert attrs["control_hz"] == 7.5 and attrs["task"] == "put the marker in the cup" and attrs["success"] is True
        assert attrs["source_steps"] == expected_steps
        np.testing.assert_array_equal(ep.read(CARTESIAN), cart[expected_steps])
        np.testing.assert_array_equal(ep.read(GRIPPER), grip[expected_steps])
        # each kept step carries the commands of the active steps dropped after it (3-6 are idle: never sent)
        groups = [[0, 1], [2, 7], [8, 9], [10, 11], [12, 13], [14, 15], [16, 17], [18, 19], [20, 21], [22, 23]]
        np.testing.assert_allclose(ep.read("action/cartesian_velocity"), [vel[g].sum(0) for g in groups])
        frames = ep.images(camera, range(len(ep)))
    assert frames.shape == (10, 32, 48, 3)
    source_role = {"left": "ext2"}.get(role, role)
    np.testing.assert_allclose(_levels(frames, source_role), [8 * t + 10 for t in expected_steps], atol=4)
    assert validate_dir(tmp_path / "out", progress=False) == {}


def test_kept_steps():
    assert list(kept_steps(None, 10, 15, 5)) == [0, 3, 6, 9]
    assert list(kept_steps(np.array([1, 1, 0, 0, 1, 1, 1, 1], bool), 8, 15, 7.5)) == [0, 4, 6]
    assert list(kept_steps(np.zeros(5, bool), 5, 15, 15)) == []
    with pytest.raises(ValueError, match="upsampled"):
        kept_steps(None, 10, 15, 30)


def test_cli_is_resumable_and_reports_broken_episodes(tmp_path):
    src = tmp_path / "droid"
    make_droid_episode(src, "Mon_Jul_10_10:00:00_2023", length=12)
    broken = make_droid_episode(src, "Tue_Jul_11_10:00:00_2023", length=12)
    (broken / "recordings" / "MP4" / f"{SERIALS['ext1']}.mp4").unlink()
    cmd = [sys.executable, "-m", "datasets.convert_droid", str(src), str(tmp_path / "out"), "height=32", "width=32",
           "progress=false"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 1, first.stderr
    assert "FAILED" in first.stdout and "recordings/MP4/11111111.mp4 is missing" in first.stdout
    assert "converted 1 of 2 DROID episodes" in first.stdout
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert "converted 0 of 2" in second.stdout and "1 already there" in second.stdout
    assert len(list((tmp_path / "out").glob("*.h5"))) == 1


def test_dropped_steps_commands_are_summed_or_last_and_the_file_says_which(tmp_path):
    """At a third of the recording rate the kept actions must add up to what the robot was sent."""
    src = tmp_path / "droid"
    episode = make_droid_episode(src, "Wed_Jul_12_10:00:00_2023", length=12)
    summary = convert_tree(src, tmp_path / "out", fps=5, size=(32, 32), progress=False)
    assert summary["converted"] == 1, summary
    with h5py.File(episode / "trajectory.h5") as f:
        raw = {k: f[f"action/{k}"][()] for k in ("cartesian_velocity", "cartesian_position", "gripper_position")}
    groups = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    with EpisodeReader(next((tmp_path / "out").glob("*.h5"))) as ep:
        assert ep.attrs["source_steps"] == [0, 3, 6, 9]
        np.testing.assert_allclose(ep.read("action/cartesian_velocity"), [raw["cartesian_velocity"][g].sum(0) for g in groups])
        np.testing.assert_array_equal(ep.read("action/cartesian_position"), raw["cartesian_position"][[2, 5, 8, 11]])
        np.testing.assert_array_equal(ep.read("action/gripper_position"), raw["gripper_position"][[2, 5, 8, 11]])
        assert json.loads(ep.attrs["action_reduce"]) == {
            "cartesian_position": "last", "cartesian_velocity": "sum", "gripper_position": "last", "joint_position": "last"}
        assert ep.attrs["source_hz"] == 15.0


def _cli(src, dst):
    return subprocess.run([sys.executable, "-m", "datasets.convert_droid", str(src), str(dst), "height=32", "width=32",
                           "progress=false"], capture_output=True, text=True, timeout=300)


def test_a_damaged_episode_is_named_skipped_and_the_run_goes_on(tmp_path):
    """One row short (a write interrupted mid-step), a garbage MP4: one line each, the other episodes convert."""
    src, dst = tmp_path / "droid", tmp_path / "out"
    short = make_droid_episode(src, "Mon_Jul_10_10:00:00_2023", length=30)
    with h5py.File(short / "trajectory.h5", "r+") as f:
        velocity = f["action/cartesian_velocity"][:-1]
        del f["action/cartesian_velocity"]
        f["action/cartesian_velocity"] = velocity
    garbage = make_droid_episode(src, "Tue_Jul_11_10:00:00_2023", length=12)
    (garbage / "recordings" / "MP4" / f"{SERIALS['ext1']}.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    make_droid_episode(src, "Wed_Jul_12_10:00:00_2023", length=12)
    dst.mkdir()
    stale = dst / ".LAB+old.h5.999999999.tmp"  # left by a killed run (no such process)
    stale.write_bytes(b"half an episode")
    result = _cli(src, dst)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3, result.stdout
    failed = sorted(line for line in lines if line.startswith("FAILED "))
    assert failed[0] == (f"FAILED {short / 'trajectory.h5'}: key 'action/cartesian_velocity' has 29 rows, "
                         f"expected 30 like 'observation/robot_state/cartesian_position'")
    assert failed[1].startswith(f"FAILED {garbage / 'recordings' / 'MP4' / SERIALS['ext1']}.mp4: undecodable video")
    assert "Invalid data found when processing input" in failed[1]
    assert "ffmpeg version" not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert lines[-1].startswith("converted 1 of 3 DROID episodes") and "removed 1 stale temporary file" in lines[-1]
    assert not stale.exists() and len(list(dst.glob("*.h5"))) == 1
