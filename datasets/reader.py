"""Lazy, fork-safe access to one episode file.

Nothing is read until asked for, and only the frames asked for are decoded.
The HDF5 handle is opened on first use *in the current process*: an
`EpisodeReader` created in the parent and pickled or forked into DataLoader
workers reopens its own handle there instead of sharing the parent's, which
HDF5 does not support.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from datasets.schema import ACTION_GROUP, CARTESIAN, ENV_STATE, GRIPPER, IMAGE_GROUP, EpisodeError, image_key


class EpisodeReader:
    """Read any frame range of any key of one episode without loading the episode.

    `chunk_cache_bytes` sets HDF5's per-dataset cache of decompressed chunks
    (None: h5py's default of 1 MiB; 0 decompresses every read afresh).
    """

    def __init__(self, path: str | os.PathLike, chunk_cache_bytes: int | None = None):
        self.path = Path(path)
        self.chunk_cache_bytes = chunk_cache_bytes
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._datasets: dict[str, h5py.Dataset] = {}

    # -- handle management -------------------------------------------------
    @property
    def file(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = None  # a handle inherited from another process is never used
            self._datasets = {}
            try:
                cache = {} if self.chunk_cache_bytes is None else {"rdcc_nbytes": int(self.chunk_cache_bytes)}
                self._file = h5py.File(self.path, "r", **cache)
            except (OSError, ValueError) as err:
                raise EpisodeError(self.path, f"unreadable HDF5 file ({err})") from err
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._datasets = {}

    def __enter__(self) -> EpisodeReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None, "_pid": None, "_datasets": {}}

    # -- metadata ------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        return {k: plain_attribute(v) for k, v in self.file.attrs.items()}

    @property
    def camera_view(self) -> str | None:
        """The exterior camera framing the episode was recorded with (our Franka envs' `camera_view`), or None."""
        return str(self.file.attrs.get("camera_view", "")) or None

    @property
    def control_hz(self) -> float:
        hz = self.file.attrs.get("control_hz")
        if hz is None:
            raise EpisodeError(self.path, "missing file attribute 'control_hz'")
        return float(hz)

    @property
    def cameras(self) -> list[str]:
        group = self.file.get(IMAGE_GROUP)
        return sorted(group.keys()) if isinstance(group, h5py.Group) else []

    @property
    def action_keys(self) -> list[str]:
        group = self.file.get(ACTION_GROUP)
        return sorted(f"{ACTION_GROUP}/{k}" for k in group.keys()) if isinstance(group, h5py.Group) else []

    def keys(self) -> list[str]:
        """Every dataset key in the file, as slash-separated paths."""
        found: list[str] = []
        self.file.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
        return sorted(found)

    @property
    def has_pose(self) -> bool:
        """Whether the episode holds the robot pose (else only its env's state, `observation/env_state`)."""
        return isinstance(self.file.get(CARTESIAN), h5py.Dataset)

    def __len__(self) -> int:
        return int(self.dataset(CARTESIAN if self.has_pose or ENV_STATE not in self.file else ENV_STATE).shape[0])

    def dataset(self, key: str) -> h5py.Dataset:
        file = self.file  # (re)opens first, which also clears the cache in a new process
        obj = self._datasets.get(key)
        if obj is None:
            obj = file.get(key)
            if not isinstance(obj, h5py.Dataset):
                raise EpisodeError(self.path, f"missing key '{key}'")
            self._datasets[key] = obj  # group lookups cost ~30 us, a fifth of a clip
        return obj

    # -- data ----------------------------------------------------------------
    def read(self, key: str, start: int = 0, stop: int | None = None, step: int = 1) -> np.ndarray:
        """Frames `start:stop:step` of `key` (numpy slice semantics, non-negative bounds)."""
        ds = self.dataset(key)
        stop = ds.shape[0] if stop is None else stop
        try:
            if step == 1:
                return ds[start:stop]
            # h5py's strided hyperslabs are ~100x slower than single-frame reads of chunked data
            return self.read_frames(key, range(start, min(stop, ds.shape[0]), step))
        except (OSError, ValueError, RuntimeError) as err:
            raise EpisodeError(self.path, f"cannot decode '{key}' frames {start}:{stop}:{step} ({err})") from err

    def read_frames(self, key: str, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The frames at `indices` (any order), one chunk read each."""
        ds = self.dataset(key)
        indices = [int(i) for i in indices]
        out = np.empty((len(indices), *ds.shape[1:]), dtype=ds.dtype)
        try:
            for j, i in enumerate(indices):
                if not 0 <= i < ds.shape[0]:
                    raise IndexError(f"frame {i} out of range for '{key}' of length {ds.shape[0]}")
                out[j] = ds[i]
        except (OSError, ValueError, RuntimeError) as err:
            raise EpisodeError(self.path, f"cannot decode '{key}' frame {i} ({err})") from err
        return out

    def images(self, camera: str, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """uint8 (len(indices), H, W, 3) frames of one camera."""
        return self.read_frames(image_key(camera), indices)

    def states(self) -> np.ndarray:
        """The DROID state vector (T, 7) = cartesian_position (6) + gripper_position (1), float64."""
        if not self.has_pose:
            raise EpisodeError(self.path, f"no robot pose ('{CARTESIAN}'), only its env's state '{ENV_STATE}'")
        cart = self.read(CARTESIAN)
        grip = self.read(GRIPPER)
        return np.concatenate([cart.astype(np.float64), grip.reshape(len(grip), -1).astype(np.float64)], axis=1)


def plain_attribute(value: Any) -> Any:
    """HDF5 attribute values as plain Python (str, bool, float, int, list)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [plain_attribute(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value
