"""Training clips from a folder of Droid-style episodes.

A clip is `history + future` frames sampled every `frameskip` control steps
(frameskip = round(control_hz / fps) per episode, or given directly), with the
state at each frame and the action between consecutive frames:

- `action_mode="delta_pose"`: the V-JEPA 2-AC actions computed from the states
  at the sampled frames (dxyz, relative rotation as xyz Euler, dgripper);
- `action_mode="recorded"`: the commands stored under `action/<name>`, reduced
  over the `frameskip` control steps of each transition (`sum`, `stack` or `last`).

A clip of W frames therefore carries W - 1 actions: action k moves frame k to k + 1.

A corrupt episode is skipped with a warning that names the file, and the
sample is replaced by the first clip of the next episode; `strict=True` raises
instead. Each process checks an episode when it first opens it, with the
validator's checks of keys, shapes, dtypes, lengths and finite values; an
undecodable image chunk is found when a clip first reads that frame.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from common.rotations import delta_pose_actions
from datasets.index import load_index, split_episodes
from datasets.reader import EpisodeReader
from datasets.schema import CARTESIAN, GRIPPER, EpisodeError, action_key, image_key
from datasets.transforms import random_resized_crop, resize_uint8
from datasets.validate import check_finite, check_structure, find_episodes

ACTION_MODES = ("delta_pose", "recorded")
REDUCTIONS = ("sum", "stack", "last")


@dataclass
class _Episode:
    path: Path
    length: int
    control_hz: float
    frameskip: int = 1
    num_windows: int = 0


@dataclass
class _Loaded:
    """What one process keeps open for an episode: the reader and its low-dimensional arrays."""

    reader: EpisodeReader
    states: np.ndarray  # (T, 7) float32
    cartesian: np.ndarray  # (T, 6) float64
    gripper: np.ndarray  # (T,) float64
    actions: dict[str, np.ndarray] = field(default_factory=dict)  # (T, d) float64 per recorded key
    camera: str = ""


class ClipDataset(Dataset):
    """Fixed-length clips (frames, states, actions, ids) from the episodes of one dataset folder.

    Args:
        root: dataset folder; its `index.json` is used when present (lengths and the split).
        split: "train", "val" or "all".
        history, future: frames of context and of prediction; a clip has history + future frames.
        fps / frameskip: target frame rate (frameskip derived per episode from `control_hz`) or
            a fixed frameskip; give at most one. Default: every control step.
        camera: camera name; default the first camera of each episode (sorted by name).
        action_mode: "delta_pose" or "recorded" (see module docstring).
        recorded_actions: keys under `action/` used in recorded mode, concatenated in this order.
        recorded_reduce: how the commands of one transition's control steps are combined.
        image_size: (H, W) or an int to resize frames to; None keeps the stored size.
        crop_scale, crop_ratio: enable a random-resized-crop (one box per clip) before resizing.
        window_stride: control steps between the starts of consecutive clips of an episode.
        strict: raise on a corrupt episode instead of skipping it.
        load_frames: False skips the images (for training on cached features).
        val_fraction, split_seed: split used when the folder has no index.
        max_open_episodes: readers kept open per process (least recently used are closed).
        chunk_cache_bytes: HDF5 cache of decompressed chunks per open image dataset
            (None: h5py's 1 MiB default; memory grows up to max_open_episodes times this).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        history: int = 1,
        future: int = 1,
        fps: float | None = None,
        frameskip: int | None = None,
        camera: str | None = None,
        action_mode: str = "delta_pose",
        recorded_actions: tuple[str, ...] | list[str] = ("cartesian_velocity", "gripper_position"),
        recorded_reduce: str = "sum",
        image_size: int | tuple[int, int] | list[int] | None = None,
        crop_scale: tuple[float, float] | list[float] | None = None,
        crop_ratio: tuple[float, float] | list[float] = (0.75, 1.3333333),
        window_stride: int = 1,
        strict: bool = False,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        max_open_episodes: int = 256,
        chunk_cache_bytes: int | None = None,
        load_frames: bool = True,
    ):
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        if history < 1 or future < 0:
            raise ValueError(f"need history >= 1 and future >= 0, got history={history} future={future}")
        if fps is not None and frameskip is not None:
            raise ValueError("give fps or frameskip, not both")
        if (fps is not None and fps <= 0) or (frameskip is not None and frameskip < 1):
            raise ValueError(f"fps must be > 0 and frameskip >= 1, got fps={fps} frameskip={frameskip}")
        if action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")
        if recorded_reduce not in REDUCTIONS:
            raise ValueError(f"recorded_reduce must be one of {REDUCTIONS}, got {recorded_reduce!r}")
        if crop_scale is not None and image_size is None:
            raise ValueError("crop_scale needs image_size (the size crops are resized to)")
        self.root = Path(root)
        self.split = split
        self.num_frames = history + future
        self.history, self.future = history, future
        self.camera = camera
        self.action_mode = action_mode
        self.recorded_keys = [action_key(k) for k in recorded_actions]
        self.recorded_reduce = recorded_reduce
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else (
            tuple(image_size) if image_size is not None else None)
        self.crop_scale = tuple(crop_scale) if crop_scale is not None else None
        self.crop_ratio = tuple(crop_ratio)
        self.window_stride = int(window_stride)
        self.strict = strict
        self.max_open_episodes = max_open_episodes
        self.chunk_cache_bytes = chunk_cache_bytes
        self.load_frames = load_frames

        self._unreadable: list[Path] = []
        self.index = load_index(self.root)
        self.stats: dict[str, Any] = self.index["stats"] if self.index else {}
        episodes = self._list_episodes(split, val_fraction, split_seed)
        self.num_short = 0
        self.episodes: list[_Episode] = []
        for ep in episodes:
            ep.frameskip = frameskip if frameskip is not None else (
                max(1, int(round(ep.control_hz / fps))) if fps is not None else 1)
            span = (self.num_frames - 1) * ep.frameskip + 1
            ep.num_windows = 0 if ep.length < span else (ep.length - span) // self.window_stride + 1
            if ep.num_windows == 0:
                self.num_short += 1
            else:
                self.episodes.append(ep)
        self._ends = np.cumsum([ep.num_windows for ep in self.episodes], dtype=np.int64)
        self._bad: set[int] = set()
        self._open: OrderedDict[int, _Loaded] = OrderedDict()

    # -- episode list ----------------------------------------------------------
    def _list_episodes(self, split: str, val_fraction: float, seed: int) -> list[_Episode]:
        if self.index is not None:
            entries = {e["file"]: e for e in self.index["episodes"]}
            files = sorted(entries) if split == "all" else self.index["split"][split]
            return [_Episode(self.root / f, int(entries[f]["length"]), float(entries[f]["control_hz"])) for f in files]
        found: dict[str, _Episode] = {}
        for path in find_episodes(self.root):
            try:
                with EpisodeReader(path) as reader:
                    found[path.relative_to(self.root).as_posix()] = _Episode(path, len(reader), reader.control_hz)
            except EpisodeError as err:
                self._corrupt(err)
                self._unreadable.append(path)
        files = sorted(found) if split == "all" else split_episodes(sorted(found), val_fraction, seed)[split]
        return [found[f] for f in files]

    # -- sizes ---------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    @property
    def num_corrupt(self) -> int:
        """Episodes found corrupt so far in this process (skipped): unreadable at the scan or on first use."""
        return len(self._bad) + len(self._unreadable)

    def episode_path(self, episode: int) -> Path:
        return self.episodes[episode].path

    @property
    def action_dim(self) -> int:
        if self.action_mode == "delta_pose":
            return 7
        width = sum(int(np.prod(self._loaded(0).actions[k].shape[1:])) for k in self.recorded_keys)
        return width * (self.episodes[0].frameskip if self.recorded_reduce == "stack" else 1)

    def state_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and std of the states (T, 7) over every readable episode of the split."""
        states = []
        for e in range(len(self.episodes)):
            if e in self._bad:
                continue
            try:
                states.append(self._loaded(e).states)
            except EpisodeError as err:
                self._open.pop(e, None)
                self._bad.add(e)
                self._corrupt(err)
        if not states:
            raise RuntimeError(f"no readable episodes in {self.root} ({self.split}) to compute state statistics from")
        stacked = np.concatenate(states)
        return stacked.mean(0), stacked.std(0)

    # -- loading ---------------------------------------------------------------
    def _corrupt(self, err: EpisodeError) -> None:
        if self.strict:
            raise err
        warnings.warn(f"skipping corrupt episode {err}", RuntimeWarning, stacklevel=3)

    def _loaded(self, e: int) -> _Loaded:
        hit = self._open.get(e)
        if hit is not None:
            self._open.move_to_end(e)
            return hit
        ep = self.episodes[e]
        reader = EpisodeReader(ep.path, self.chunk_cache_bytes)
        try:
            try:  # the validator's checks (keys, shapes, dtypes, lengths, finite values), low-dim data only
                length, image_keys = check_structure(ep.path, reader.file)
                check_finite(ep.path, reader.file)
            except (OSError, ValueError, RuntimeError, KeyError) as err:
                raise EpisodeError(ep.path, f"damaged HDF5 structure ({err})") from err
            if length != ep.length:
                raise EpisodeError(ep.path, f"episode has {length} steps, the index says {ep.length}; rebuild the index")
            camera = self.camera or image_keys[0].rsplit("/", 1)[1]
            if image_key(camera) not in image_keys:
                raise EpisodeError(ep.path, f"missing key '{image_key(camera)}'")
            cartesian = reader.read(CARTESIAN).astype(np.float64)
            gripper = reader.read(GRIPPER).astype(np.float64)
            actions = {}
            if self.action_mode == "recorded":
                for key in self.recorded_keys:
                    values = reader.read(key).astype(np.float64)
                    actions[key] = values.reshape(len(values), -1)
        except BaseException:
            reader.close()
            raise
        states = np.concatenate([cartesian, gripper[:, None]], axis=1).astype(np.float32)
        loaded = _Loaded(reader, states, cartesian, gripper, actions, camera)
        self._open[e] = loaded
        while len(self._open) > self.max_open_episodes:
            _, old = self._open.popitem(last=False)
            old.reader.close()
        return loaded

    def _actions(self, loaded: _Loaded, frames: np.ndarray, skip: int) -> np.ndarray:
        if len(frames) == 1:  # single-frame clips (image pretraining) carry no action
            width = 7 if self.action_mode == "delta_pose" else sum(loaded.actions[k].shape[1] for k in self.recorded_keys)
            return np.zeros((0, width * (skip if self.recorded_reduce == "stack" and self.action_mode == "recorded" else 1)))
        if self.action_mode == "delta_pose":
            return delta_pose_actions(loaded.cartesian[frames], loaded.gripper[frames])
        parts = []
        for key in self.recorded_keys:
            steps = loaded.actions[key][frames[0] : frames[-1]]  # commands between the first and last frame
            steps = steps.reshape(len(frames) - 1, skip, -1)  # (transitions, control steps, d)
            if self.recorded_reduce == "sum":
                parts.append(steps.sum(1))
            elif self.recorded_reduce == "last":
                parts.append(steps[:, -1])
            else:
                parts.append(steps.reshape(len(frames) - 1, -1))
        return np.concatenate(parts, axis=1)

    def _clip(self, e: int, window: int) -> dict[str, torch.Tensor]:
        ep = self.episodes[e]
        loaded = self._loaded(e)
        start = window * self.window_stride
        frames = start + ep.frameskip * np.arange(self.num_frames)
        sample = {}
        if self.load_frames:
            images = loaded.reader.images(loaded.camera, frames)  # (T, H, W, 3) uint8
            # numpy's transposing copy is ~5x faster than torch's multithreaded one for clips this small
            video = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
            if self.crop_scale is not None:
                video = random_resized_crop(video, self.image_size, self.crop_scale, self.crop_ratio)
            elif self.image_size is not None:
                video = resize_uint8(video, self.image_size)
            sample["frames"] = video
        return {
            **sample,
            "states": torch.from_numpy(loaded.states[frames]),
            "actions": torch.from_numpy(self._actions(loaded, frames, ep.frameskip).astype(np.float32)),
            "episode": torch.tensor(e),
            "frame_ids": torch.from_numpy(frames.astype(np.int64)),
        }

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"clip {i} out of range for {n} clips")
        i %= n
        for _ in range(len(self.episodes)):
            e = int(np.searchsorted(self._ends, i, side="right"))
            if e not in self._bad:
                window = i - (int(self._ends[e - 1]) if e else 0)
                try:
                    return self._clip(e, window)
                except EpisodeError as err:
                    self._open.pop(e, None)
                    self._bad.add(e)
                    self._corrupt(err)
            # replace with the first clip of the next episode, deterministically
            i = int(self._ends[e]) % n
        raise RuntimeError(f"every episode in {self.root} ({self.split}) is corrupt; run python -m datasets.validate {self.root}")
