import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from datasets import EpisodeError, EpisodeReader, EpisodeWriter
from datasets.schema import CARTESIAN, FILE_ATTRIBUTES, GRIPPER, JOINTS, image_key
from datasets.writer import remove_stale_temporaries


def _random_episode(rng, length=25):
    return {
        "ext": rng.integers(0, 256, size=(length, 48, 64, 3), dtype=np.uint8),
        "wrist": rng.integers(0, 256, size=(length, 32, 32, 3), dtype=np.uint8),
        "cart": rng.normal(size=(length, 6)),
        "grip": rng.uniform(size=length),
        "joints": rng.normal(size=(length, 7)).astype(np.float32),
        "vel": rng.normal(size=(length, 6)),
    }


def _write(path, data, **kwargs):
    with EpisodeWriter(path, cameras=["exterior_1_left", "wrist_left"], control_hz=15, task="stack", **kwargs) as w:
        for t in range(len(data["cart"])):
            w.add_step(
                images={"exterior_1_left": data["ext"][t], "wrist_left": data["wrist"][t]},
                cartesian_position=data["cart"][t], gripper_position=data["grip"][t],
                joint_positions=data["joints"][t],
                actions={"cartesian_velocity": data["vel"][t], "action/gripper_position": data["grip"][t]},
            )
        w.attrs["success"] = True


def test_round_trip_is_bit_exact(tmp_path):
    data = _random_episode(np.random.default_rng(0))
    path = tmp_path / "ep.h5"
    _write(path, data)
    with EpisodeReader(path) as ep:
        assert len(ep) == 25
        assert ep.cameras == ["exterior_1_left", "wrist_left"]
        assert ep.action_keys == ["action/cartesian_velocity", "action/gripper_position"]
        np.testing.assert_array_equal(ep.read(image_key("exterior_1_left")), data["ext"])
        np.testing.assert_array_equal(ep.read(image_key("wrist_left")), data["wrist"])
        np.testing.assert_array_equal(ep.read(CARTESIAN), data["cart"])
        np.testing.assert_array_equal(ep.read(GRIPPER), data["grip"])
        np.testing.assert_array_equal(ep.read(JOINTS), data["joints"])
        assert ep.read(JOINTS).dtype == np.float32
        np.testing.assert_array_equal(ep.read("action/cartesian_velocity"), data["vel"])
        np.testing.assert_array_equal(ep.read("action/gripper_position"), data["grip"])
        # any frame range, strided or scattered, without loading the episode
        np.testing.assert_array_equal(ep.read(image_key("exterior_1_left"), 3, 20, 4), data["ext"][3:20:4])
        np.testing.assert_array_equal(ep.images("wrist_left", [9, 2, 17]), data["wrist"][[9, 2, 17]])
        np.testing.assert_array_equal(ep.states(), np.concatenate([data["cart"], data["grip"][:, None]], 1))
        attrs = ep.attrs
        assert set(FILE_ATTRIBUTES) <= set(attrs)
        assert attrs["control_hz"] == 15.0 and attrs["success"] is True and attrs["task"] == "stack"
        assert attrs["cameras"] == ["exterior_1_left", "wrist_left"]
    with h5py.File(path) as f:
        ds = f[image_key("exterior_1_left")]
        assert ds.chunks == (1, 48, 64, 3) and ds.compression == "gzip"


def test_exception_inside_writer_leaves_no_file(tmp_path):
    data = _random_episode(np.random.default_rng(1))
    path = tmp_path / "ep.h5"
    with pytest.raises(RuntimeError, match="teleop dropped"):
        with EpisodeWriter(path, cameras=["exterior_1_left"], control_hz=15) as w:
            w.add_step(images={"exterior_1_left": data["ext"][0]}, cartesian_position=data["cart"][0],
                       gripper_position=0.0)
            raise RuntimeError("teleop dropped")
    assert list(tmp_path.iterdir()) == []


def test_killed_writer_never_leaves_a_file_under_its_final_name(tmp_path):
    """A real process killed mid-episode: nothing appears as ep.h5 (only a hidden temporary file)."""
    path = tmp_path / "ep.h5"
    script = textwrap.dedent(f"""
        import sys, time, numpy as np
        from datasets import EpisodeWriter
        w = EpisodeWriter({str(path)!r}, cameras=["cam"], control_hz=15)
        for t in range(100000):
            w.add_step(images={{"cam": np.zeros((16, 16, 3), np.uint8)}}, cartesian_position=np.zeros(6),
                       gripper_position=0.0)
            if t == 5:
                print("writing", flush=True)
            time.sleep(0.001)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not path.exists()
    leftovers = list(tmp_path.iterdir())
    assert leftovers and all(p.name.startswith(".") for p in leftovers)
    (tmp_path / "other.h5").write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == leftovers  # the writer is dead: its file goes
    assert [p.name for p in tmp_path.iterdir()] == ["other.h5"]


def test_stale_temporaries_of_live_writers_are_kept(tmp_path):
    with EpisodeWriter(tmp_path / "ep.h5", cameras=["cam"], control_hz=15) as w:
        assert remove_stale_temporaries(tmp_path) == []
        w.add_step(images={"cam": np.zeros((4, 4, 3), np.uint8)}, cartesian_position=np.zeros(6), gripper_position=0.0)
    assert [p.name for p in tmp_path.iterdir()] == ["ep.h5"]


def test_writer_rejects_bad_steps_with_clear_errors(tmp_path):
    w = EpisodeWriter(tmp_path / "ep.h5", cameras=["cam"], control_hz=15)
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"cartesian_position' step value has shape \(5,\), expected \(6,\)"):
        w.add_step(images={"cam": img}, cartesian_position=np.zeros(5), gripper_position=0.0)
    with pytest.raises(ValueError, match=r"image must be uint8 \(H, W, 3\), got float32"):
        w.add_step(images={"cam": img.astype(np.float32)}, cartesian_position=np.zeros(6), gripper_position=0.0)
    with pytest.raises(ValueError, match=r"images for \['other'\], expected \['cam'\]"):
        w.add_step(images={"other": img}, cartesian_position=np.zeros(6), gripper_position=0.0)
    w.abort()
    with pytest.raises(ValueError, match="no steps"):
        EpisodeWriter(tmp_path / "empty.h5", cameras=["cam"], control_hz=15).close()
    assert not (tmp_path / "ep.h5").exists() and not (tmp_path / "empty.h5").exists()
    (tmp_path / "exists.h5").write_bytes(b"x")
    with pytest.raises(FileExistsError):
        EpisodeWriter(tmp_path / "exists.h5", cameras=["cam"], control_hz=15)


def test_reader_errors_name_file_and_key(tmp_path):
    path = tmp_path / "ep.h5"
    _write(path, _random_episode(np.random.default_rng(2), length=4))
    with EpisodeReader(path) as ep, pytest.raises(EpisodeError, match=r"ep.h5: missing key 'observation/nope'"):
        ep.read("observation/nope")
    with pytest.raises(EpisodeError, match="missing.h5: unreadable HDF5"):
        len(EpisodeReader(tmp_path / "missing.h5"))


class _FrameDataset(Dataset):
    """Reads through one EpisodeReader created in the parent process."""

    def __init__(self, reader):
        self.reader = reader
        _ = len(reader)  # opens the handle in the parent before workers fork

    def __len__(self):
        return len(self.reader)

    def __getitem__(self, i):
        return torch.from_numpy(self.reader.images("exterior_1_left", [i])[0]), os.getpid()


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_reader_is_safe_in_dataloader_workers(tmp_path, context):
    data = _random_episode(np.random.default_rng(3), length=16)
    path = tmp_path / "ep.h5"
    _write(path, data)
    loader = DataLoader(_FrameDataset(EpisodeReader(path)), batch_size=4, num_workers=2,
                        multiprocessing_context=context)
    frames, pids = zip(*[(b[0], b[1]) for b in loader])
    np.testing.assert_array_equal(torch.cat(frames).numpy(), data["ext"])
    assert os.getpid() not in set(torch.cat(pids).tolist())
