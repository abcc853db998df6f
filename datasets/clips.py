"""Training clips from a folder of Droid-style episodes.

A clip is a window of frames (`Windows`: `history + future` frames every `frameskip` control steps),
with the state at each frame and the action between consecutive frames (`ClipActions`: delta poses
computed from the states, or recorded commands reduced over the frameskip), its frames passed through a
`FrameTransform` (resize, optional random-resized-crop). A clip of W frames carries W - 1 actions:
action k moves frame k to k + 1. `ClipDataset` only finds, opens and checks the episodes and
assembles the pieces.

Several cameras (`cameras=[exterior_1_left, wrist_left]`): each clip carries every view, `frames` (T, V, 3, H, W),
the views in the order given and each through the transform on its own; one camera (the default, or `camera=`)
keeps `frames` (T, 3, H, W). A requested camera an episode lacks is an error (`MissingCameraError`, one line
naming the file, the key, the cameras expected and those it has), never a skipped episode.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.clip_actions import ClipActions
from datasets.index import load_index, split_episodes
from datasets.reader import EpisodeReader
from datasets.schema import CARTESIAN, ENV_STATE, GRIPPER, EpisodeError, image_key
from datasets.transforms import FrameTransform
from datasets.validate import check_finite, check_structure, require_episodes
from datasets.windows import Windows

__all__ = ["ClipActions", "ClipDataset", "FrameTransform", "MissingCameraError", "Windows"]


class MissingCameraError(EpisodeError):
    """An episode without a camera the clips were asked for (a data/config mismatch, not a corrupt file)."""


@dataclass
class _Episode:
    path: Path
    length: int
    control_hz: float
    camera_view: str | None = None  # the exterior camera's framing it was recorded with (our Franka envs)
    frameskip: int = 1
    num_windows: int = 0


@dataclass
class _Loaded:
    """What one process keeps open for an episode: the reader and its low-dimensional arrays."""

    reader: EpisodeReader
    states: np.ndarray  # (T, STATE_DIM) float32; an env without a robot pose: its own state (T, d)
    cartesian: np.ndarray | None  # (T, 6) float64; None without a robot pose
    gripper: np.ndarray | None  # (T,) float64
    actions: dict[str, np.ndarray] = field(default_factory=dict)  # (T, d) float64 per recorded key
    cameras: list[str] = field(default_factory=list)  # the views read, in order


class ClipDataset(Dataset):
    """Fixed-length clips (frames, states, actions, ids) from the episodes of one dataset folder.

    Args:
        root: dataset folder; its `index.json` is used when present (lengths and the split).
        split: "train", "val" or "all".
        windows: which frames make a clip (default: 2 consecutive control steps).
        actions: how the action between two frames is computed (default: delta poses from the states).
        transform: what is done to the frames (default: nothing, the stored size).
        camera: camera name; default the first camera of each episode (sorted by name).
        cameras: several camera names (views): `frames` is then (T, V, 3, H, W), the views in this order;
            a list of one is the same as `camera`. Not together with `camera`.
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
        windows: Windows | None = None,
        actions: ClipActions | None = None,
        transform: FrameTransform | None = None,
        camera: str | None = None,
        cameras: Sequence[str] | None = None,
        strict: bool = False,
        load_frames: bool = True,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        max_open_episodes: int = 256,
        chunk_cache_bytes: int | None = None,
    ):
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        self.root = Path(root)
        self.split = split
        self.windows = windows or Windows()
        self.actions = actions or ClipActions()
        self.transform = transform or FrameTransform()
        if cameras is not None and not isinstance(cameras, str):
            cameras = [str(c) for c in cameras]
        elif cameras is not None:
            raise ValueError(f"cameras must be a list of camera names, got the string {cameras!r}")
        if cameras is not None and (not cameras or len(set(cameras)) != len(cameras)):
            raise ValueError(f"cameras must name at least one camera, each once, got {cameras}")
        if cameras is not None and camera is not None and cameras != [camera]:
            raise ValueError(f"pass camera or cameras, not both (camera={camera!r}, cameras={cameras})")
        self.cameras: list[str] | None = cameras if cameras and len(cameras) > 1 else None
        self.camera = cameras[0] if cameras and len(cameras) == 1 else camera
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
            ep.frameskip = self.windows.frameskip_for(ep.control_hz)
            ep.num_windows = self.windows.count(ep.length, ep.frameskip)
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
            return [_Episode(self.root / f, int(entries[f]["length"]), float(entries[f]["control_hz"]),
                             entries[f].get("camera_view")) for f in files]
        found: dict[str, _Episode] = {}
        for path in require_episodes(self.root):
            try:
                with EpisodeReader(path) as reader:
                    found[path.relative_to(self.root).as_posix()] = _Episode(path, len(reader), reader.control_hz,
                                                                             reader.camera_view)
            except EpisodeError as err:
                self._corrupt(err)
                self._unreadable.append(path)
        files = sorted(found) if split == "all" else split_episodes(sorted(found), val_fraction, seed)[split]
        return [found[f] for f in files]

    @property
    def camera_view(self) -> str | None:
        """The exterior camera framing every episode was recorded with, or None (not recorded, or mixed)."""
        views = {ep.camera_view for ep in self.episodes}
        return views.pop() if len(views) == 1 else None

    # -- sizes ---------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def episode_path(self, episode: int) -> Path:
        return self.episodes[episode].path

    @property
    def action_dim(self) -> int:
        recorded = self._loaded(0).actions if self.actions.keys else {}
        return self.actions.width(recorded, self.episodes[0].frameskip)

    @property
    def views(self) -> int:
        """Camera views per frame (1: `frames` is (T, 3, H, W); V > 1: (T, V, 3, H, W))."""
        return len(self.cameras) if self.cameras else 1

    @property
    def has_pose(self) -> bool:
        """Whether `states` are robot poses (else an env's own state vector, `observation/env_state`)."""
        return self._loaded(0).cartesian is not None

    def state_statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and std of the states (T, STATE_DIM) over every readable episode of the split."""
        states = []
        for e in range(len(self.episodes)):
            if e in self._bad:
                continue
            try:
                states.append(self._loaded(e).states)
            except MissingCameraError:
                raise
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
            cameras = self.cameras or [self.camera or image_keys[0].rsplit("/", 1)[1]]
            missing = [c for c in cameras if image_key(c) not in image_keys]
            if missing:
                has = [k.rsplit("/", 1)[1] for k in image_keys]
                raise MissingCameraError(ep.path, f"missing key '{image_key(missing[0])}': expected cameras {cameras}, "
                                                  f"the episode has {has}")
            if not reader.has_pose and self.actions.mode == "delta_pose":
                raise ValueError(f"{ep.path}: action_mode=delta_pose computes actions from the robot pose "
                                 f"'{CARTESIAN}', which this episode lacks (its env's state is '{ENV_STATE}'); train on "
                                 f"its recorded actions: data.action_mode=recorded data.recorded_actions=[env]")
            cartesian = reader.read(CARTESIAN).astype(np.float64) if reader.has_pose else None
            gripper = reader.read(GRIPPER).astype(np.float64) if reader.has_pose else None
            actions = {}
            for key in self.actions.keys:
                values = reader.read(key).astype(np.float64)
                actions[key] = values.reshape(len(values), -1)
        except BaseException:
            reader.close()
            raise
        if cartesian is None:
            states = reader.read(ENV_STATE).reshape(length, -1).astype(np.float32)
        else:
            states = np.concatenate([cartesian, gripper[:, None]], axis=1).astype(np.float32)
        loaded = _Loaded(reader, states, cartesian, gripper, actions, cameras)
        self._open[e] = loaded
        while len(self._open) > self.max_open_episodes:
            _, old = self._open.popitem(last=False)
            old.reader.close()
        return loaded

    def _clip(self, e: int, window: int) -> dict[str, torch.Tensor]:
        ep = self.episodes[e]
        loaded = self._loaded(e)
        frames = self.windows.frames(window, ep.frameskip)
        sample = {}
        if self.load_frames:
            views = [self._frames(loaded, camera, frames) for camera in loaded.cameras]
            if self.cameras is None:
                sample["frames"] = views[0]
            else:
                sizes = {tuple(v.shape[-2:]) for v in views}
                if len(sizes) > 1:
                    raise ValueError(f"{ep.path}: cameras {loaded.cameras} give frames of sizes {sorted(sizes)}; "
                                     f"set an image_size (data.image_size) to resize every view to one size")
                sample["frames"] = torch.stack(views, dim=1)  # (T, V, 3, H, W)
        actions = self.actions(loaded.cartesian, loaded.gripper, loaded.actions, frames, ep.frameskip)
        return {
            **sample,
            "states": torch.from_numpy(loaded.states[frames]),
            "actions": torch.from_numpy(actions.astype(np.float32)),
            "episode": torch.tensor(e),
            "frame_ids": torch.from_numpy(frames.astype(np.int64)),
        }

    def _frames(self, loaded: _Loaded, camera: str, frames: np.ndarray) -> torch.Tensor:
        """(T, 3, H, W) uint8 frames of one camera, through the transform (each view its own random crop)."""
        images = loaded.reader.images(camera, frames)  # (T, H, W, 3) uint8
        # numpy's transposing copy is ~5x faster than torch's multithreaded one for clips this small
        return self.transform(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))))

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
                except MissingCameraError:
                    raise  # the data lacks a camera the run asks for: no other episode fixes that
                except EpisodeError as err:
                    self._open.pop(e, None)
                    self._bad.add(e)
                    self._corrupt(err)
            # replace with the first clip of the next episode, deterministically
            i = int(self._ends[e]) % n
        raise RuntimeError(f"every episode in {self.root} ({self.split}) is corrupt; run python -m datasets.validate {self.root}")
