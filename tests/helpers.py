"""Shared test helpers: small datasets and every kind of corrupt episode the validator must catch."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np

from datasets.schema import CARTESIAN, GRIPPER, image_key
from datasets.synthetic import make_synthetic_episode

CAMERA = "exterior_1_left"


def _edit(path: Path, fn) -> None:
    with h5py.File(path, "r+") as f:
        fn(f)


def _replace(f: h5py.File, key: str, data: np.ndarray) -> None:
    del f[key]
    f.create_dataset(key, data=data)


def _corrupt_image_chunk(path: Path, frame: int = 0) -> None:
    with h5py.File(path, "r") as f:
        info = f[image_key(CAMERA)].id.get_chunk_info(frame)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * min(info.size, 64))


def _set_value(key: str, index, value: float):
    def fn(f: h5py.File) -> None:
        data = f[key][()]
        data[index] = value
        f[key][...] = data
    return fn


#: kind -> (function that corrupts a good episode in place, words the validator's reason must contain)
CORRUPTIONS = {
    "missing_key": (lambda p: _edit(p, lambda f: f.__delitem__(CARTESIAN)), f"missing key '{CARTESIAN}'"),
    "wrong_shape": (lambda p: _edit(p, lambda f: _replace(f, CARTESIAN, np.zeros((len(f[GRIPPER]), 5)))),
                    "shape (40, 5), expected (T, 6)"),
    "wrong_dtype": (lambda p: _edit(p, lambda f: _replace(f, image_key(CAMERA), f[image_key(CAMERA)][()].astype(np.float32))),
                    "expected (T, H, W, 3) uint8"),
    "wrong_state_dtype": (lambda p: _edit(p, lambda f: _replace(f, GRIPPER, f[GRIPPER][()].astype(np.int64))),
                          f"key '{GRIPPER}' has dtype int64, expected float"),
    "length_mismatch": (lambda p: _edit(p, lambda f: _replace(f, GRIPPER, f[GRIPPER][:-3])), "length mismatch"),
    "nan_state": (lambda p: _edit(p, _set_value(CARTESIAN, (7, 2), np.nan)), f"NaN/inf) in '{CARTESIAN}' at step 7"),
    "inf_action": (lambda p: _edit(p, _set_value("action/cartesian_velocity", (11, 0), np.inf)),
                   "NaN/inf) in 'action/cartesian_velocity' at step 11"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "unreadable or truncated HDF5"),
    "garbage": (lambda p: p.write_bytes(b"this is not an HDF5 file" * 100), "unreadable or truncated HDF5"),
    "undecodable_image": (_corrupt_image_chunk, f"undecodable image in '{image_key(CAMERA)}'"),
}


def make_dataset(root: Path, num_episodes: int = 6, length: int = 40, **kwargs) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    return [make_synthetic_episode(root / f"episode_{i:03d}.h5", length=length, seed=i, **kwargs)
            for i in range(num_episodes)]


def corrupt_copy(good: Path, dst: Path, kind: str) -> Path:
    shutil.copy(good, dst)
    CORRUPTIONS[kind][0](dst)
    return dst


def tiny_checkpoint(folder: Path, image_size: int = 32, seed: int = 0, action_dim: int = 7,
                    data: dict | None = None, readout_dims: list[int] | None = None) -> Path:
    """A randomly initialised, very small LeWorldModel checkpoint (no training): for plumbing tests (`data`
    updates its data settings, e.g. a frameskip and recorded actions; `readout_dims` adds a state readout)."""
    import torch

    from world_model.checkpoints import save_checkpoint
    from world_model.models import build_model

    torch.manual_seed(seed)
    config = {"family": "lewm", "history": 2,
              "encoder": {"img_size": image_size, "patch_size": 8, "width": 32, "depth": 1, "num_heads": 2,
                          "embed_dim": 16, "projector_hidden": 32},
              "predictor": {"width": 32, "depth": 1, "num_heads": 2, "mlp_ratio": 2.0, "action_dim": action_dim, "state_dim": 0,
                            "max_frames": 8},
              "data": {"image_size": image_size, "camera": None, "fps": None, "frameskip": None,
                       "action_mode": "delta_pose", "recorded_actions": [], "recorded_reduce": "sum", **(data or {})}}
    if readout_dims:
        config["readout"] = {"dims": list(readout_dims)}
    model = build_model(config).eval()
    with torch.no_grad():  # AdaLN-zero starts action-blind: give every all-zero weight a random value
        for param in model.parameters():
            if param.ndim > 1 and not param.any():
                param.normal_(0.0, 0.2)
    return save_checkpoint(folder, model, config)


class PointGoalEnv:
    """A minimal non-Franka env implementing the goal-env protocol: a dot moved by 2-D velocity actions toward a
    goal dot, rendered at 32 px (Box actions, Dict observation with pixels)."""

    @staticmethod
    def make(**kwargs):
        import gymnasium as gym

        class _PointGoal(gym.Env):
            metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

            def __init__(self, image_size: int = 32, render_mode: str | None = None):
                self.size, self.render_mode = image_size, render_mode
                self.action_space = gym.spaces.Box(-0.1, 0.1, (2,), np.float32)
                self.observation_space = gym.spaces.Dict(
                    {"pixels": gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)})

            def _draw(self, pos):
                image = np.zeros((self.size, self.size, 3), np.uint8)
                r, c = (np.clip(pos, 0, 0.999) * self.size).astype(int)
                image[max(r - 1, 0): r + 2, max(c - 1, 0): c + 2] = 255
                return image

            def reset(self, *, seed=None, options=None):
                super().reset(seed=seed)
                self.pos, self.goal = self.np_random.uniform(0.1, 0.9, (2, 2))
                return {"pixels": self._draw(self.pos)}, {}

            def step(self, action):
                self.pos = np.clip(self.pos + np.asarray(action), 0.0, 1.0)
                return {"pixels": self._draw(self.pos)}, 0.0, False, False, {}

            def render(self):
                return self._draw(self.pos)

            def goal_image(self):
                return self._draw(self.goal)

            def task_distance(self):
                return float(np.linalg.norm(self.pos - self.goal))

            def is_success(self, distance):
                return distance < 0.05

        return _PointGoal(**kwargs)


def signal_after_steps(cmd: list[str], sig: int, steps: int = 2, timeout: float = 240.0) -> tuple[int, str, str, float]:
    """Run a training command, send `sig` once its progress bar shows `steps` steps done; returns
    (exit status, stdout, stderr, seconds from the signal to the exit)."""
    import os
    import re
    import subprocess
    import threading
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = bytearray()

    def drain() -> None:
        while chunk := os.read(proc.stderr.fileno(), 65536):
            err.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    try:
        while not any(int(n) >= steps for n in re.findall(rb"\| *(\d+)/\d+ \[", bytes(err))):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no progress to signal after (exit {proc.poll()}):\n{err.decode()[-3000:]}")
            time.sleep(0.05)
        start = time.monotonic()
        proc.send_signal(sig)
        out = proc.stdout.read()
        proc.wait(timeout=timeout)
        seconds = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    return proc.returncode, out.decode(), err.decode(), seconds


#: Meta's tiny V-JEPA 2-AC reference (checkpoint.pt + reference.safetensors): data beside the repository, never in it.
VJEPA2_AC_FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "vjepa2_ac_tiny"


def vjepa2_ac_fixture() -> Path:
    """The fixture folder, or skip the test saying where it was looked for."""
    import pytest

    if not (VJEPA2_AC_FIXTURE / "checkpoint.pt").exists() or not (VJEPA2_AC_FIXTURE / "reference.safetensors").exists():
        pytest.skip(f"V-JEPA 2-AC reference fixture not found at {VJEPA2_AC_FIXTURE} (shared data beside the repository)")
    return VJEPA2_AC_FIXTURE


def reacher_fingertip_pose(env, obs):
    """A `state_fn` for gymnasium's Reacher (collect.yaml's hook): the fingertip body's world position in metres,
    no rotation, no gripper."""
    xyz = np.asarray(env.data.body("fingertip").xpos, dtype=np.float64)
    return np.concatenate([xyz, np.zeros(3)]), 0.0, None


def assert_resumed_like_straight(straight: dict, resumed: dict, straight_run: Path, resumed_run: Path) -> None:
    """A resumed pretraining run ends exactly where the straight one did: loss history and encoder weights."""
    import torch

    from world_model.checkpoints import load_encoder

    assert resumed["history"] == straight["history"]
    a = load_encoder(straight_run / "checkpoints" / "last").state_dict()
    b = load_encoder(resumed_run / "checkpoints" / "last").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
