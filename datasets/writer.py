"""Append a Droid-style episode step by step and publish it atomically.

The file is written under a hidden temporary name in the destination folder and
renamed onto its final name only by `close()`; a crash (or an exception inside a
`with` block) removes the temporary file, so a half-written episode never
appears under a name that readers, indexers or training runs would pick up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from datasets.schema import (
    CARTESIAN,
    ENV_STATE,
    FORMAT_VERSION,
    GRIPPER,
    JOINTS,
    action_key,
    image_key,
)

_IMAGE_GROW = 64  # frames added to an image dataset at a time (resizing per step is slow)


def temporary_path(final: Path) -> Path:
    """Hidden sibling of `final`, unique per process, ignored by `*.h5` globs."""
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def remove_stale_temporaries(root: str | os.PathLike) -> list[Path]:
    """Delete temporary episode files under `root` left by writers that are no longer running."""
    removed = []
    for tmp in Path(root).rglob(".*.h5.*.tmp"):
        try:
            pid = int(tmp.name.rsplit(".", 2)[-2])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)  # still running: not ours to delete
            continue
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


class EpisodeWriter:
    """Write one episode: images, robot state and actions, one `add_step` per control step.

    Images are stored one frame per HDF5 chunk (so any frame decodes alone) and
    compressed; low-dimensional arrays are buffered and written on `close`.

    >>> with EpisodeWriter("ep.h5", cameras=["exterior_1_left"], control_hz=15) as w:
    ...     w.add_step(images={"exterior_1_left": img}, cartesian_position=pose6, gripper_position=0.0,
    ...                actions={"cartesian_velocity": a6, "gripper_position": 0.0})
    """

    def __init__(
        self,
        path: str | os.PathLike,
        cameras: list[str] | tuple[str, ...],
        control_hz: float,
        robot_type: str = "franka_panda",
        action_space: str = "cartesian_velocity",
        task: str = "",
        compression: str | None = "gzip",
        compression_opts: int | None = 4,
        overwrite: bool = False,
        attrs: Mapping[str, Any] | None = None,
    ):
        if not cameras:
            raise ValueError("EpisodeWriter needs at least one camera name")
        if control_hz <= 0:
            raise ValueError(f"control_hz must be positive, got {control_hz}")
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; pass overwrite=True to replace it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.cameras = list(cameras)
        self._tmp = temporary_path(self.path)
        self._file: h5py.File | None = h5py.File(self._tmp, "w")
        self._compression = dict(compression=compression, compression_opts=compression_opts if compression == "gzip" else None)
        self._images: dict[str, h5py.Dataset] = {}
        self._lowdim: dict[str, list[np.ndarray]] = {}
        self._length = 0
        self.attrs: dict[str, Any] = dict(
            control_hz=float(control_hz),
            robot_type=robot_type,
            action_space=action_space,
            cameras=list(self.cameras),
            success=False,
            task=task,
            format_version=FORMAT_VERSION,
        )
        self.attrs.update(attrs or {})

    def __len__(self) -> int:
        return self._length

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def add_step(
        self,
        images: Mapping[str, np.ndarray],
        cartesian_position: np.ndarray | None,
        gripper_position: float | np.ndarray | None,
        joint_positions: np.ndarray | None = None,
        actions: Mapping[str, np.ndarray | float] | None = None,
        extras: Mapping[str, np.ndarray | float] | None = None,
    ) -> None:
        """Append one control step.

        `actions` maps names (`cartesian_velocity` or `action/...`) to arrays; `extras` maps other
        full keys (such as `observation/env_state`) to per-step arrays stored alongside. An env without a robot
        pose passes None for both pose arguments and its state vector as `extras["observation/env_state"]`.
        """
        if self._file is None:
            raise RuntimeError(f"{self.path}: add_step after close/abort")
        if set(images) != set(self.cameras):
            raise ValueError(f"{self.path}: step {self._length} has images for {sorted(images)}, expected {sorted(self.cameras)}")
        for camera in self.cameras:
            self._append_image(camera, np.asarray(images[camera]))
        if (cartesian_position is None) != (gripper_position is None):
            raise ValueError(f"{self.path}: step {self._length} gives only one of cartesian_position and gripper_position")
        if cartesian_position is None and ENV_STATE not in (extras or {}):
            raise ValueError(f"{self.path}: step {self._length} has no robot pose and no extras['{ENV_STATE}']")
        if cartesian_position is not None:
            self._append(CARTESIAN, cartesian_position, (6,))
            self._append(GRIPPER, gripper_position, ())
        if joint_positions is not None or JOINTS in self._lowdim:
            if joint_positions is None:
                raise ValueError(f"{self.path}: step {self._length} lacks joint_positions given at earlier steps")
            self._append(JOINTS, joint_positions, (7,))
        for name, value in (actions or {}).items():
            self._append(action_key(name), value, None)
        for key, value in (extras or {}).items():
            self._append(key, value, None)
        self._length += 1
        for key, values in self._lowdim.items():
            if len(values) != self._length:
                raise ValueError(f"{self.path}: key '{key}' missing at step {self._length - 1}")

    def _append_image(self, camera: str, image: np.ndarray) -> None:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"{self.path}: camera '{camera}' image must be uint8 (H, W, 3), got {image.dtype} {image.shape}"
            )
        ds = self._images.get(camera)
        if ds is None:
            h, w, _ = image.shape
            ds = self._file.create_dataset(
                image_key(camera), shape=(0, h, w, 3), maxshape=(None, h, w, 3), dtype=np.uint8,
                chunks=(1, h, w, 3), **self._compression,
            )
            self._images[camera] = ds
        elif image.shape != ds.shape[1:]:
            raise ValueError(f"{self.path}: camera '{camera}' image shape {image.shape} != first frame {ds.shape[1:]}")
        if ds.shape[0] <= self._length:
            ds.resize(self._length + _IMAGE_GROW, axis=0)
        ds[self._length] = image

    def _append(self, key: str, value: Any, shape: tuple[int, ...] | None) -> None:
        arr = np.asarray(value)
        if shape is not None and arr.shape != shape:
            raise ValueError(f"{self.path}: key '{key}' step value has shape {arr.shape}, expected {shape}")
        buf = self._lowdim.setdefault(key, [])
        if buf and arr.shape != buf[0].shape:
            raise ValueError(f"{self.path}: key '{key}' step value has shape {arr.shape}, earlier steps {buf[0].shape}")
        if len(buf) != self._length:
            raise ValueError(f"{self.path}: key '{key}' first given at step {self._length}, not at step 0")
        buf.append(arr)

    def close(self, success: bool | None = None, **attrs: Any) -> Path:
        """Finish the file and rename it onto its final name; returns the final path."""
        if self._file is None:
            return self.path
        if self._length == 0:
            self.abort()
            raise ValueError(f"{self.path}: refusing to write an episode with no steps")
        try:
            if success is not None:
                self.attrs["success"] = bool(success)
            self.attrs.update(attrs)
            for ds in self._images.values():
                ds.resize(self._length, axis=0)
            for key, values in self._lowdim.items():
                self._file.create_dataset(key, data=np.stack(values))
            for name, value in self.attrs.items():
                self._file.attrs[name] = value
            self._file.close()
            self._file = None
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Drop the episode: close and delete the temporary file."""
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None
        self._tmp.unlink(missing_ok=True)


def write_episode(
    path: str | os.PathLike,
    images: Mapping[str, np.ndarray],
    cartesian_position: np.ndarray,
    gripper_position: np.ndarray,
    control_hz: float,
    joint_positions: np.ndarray | None = None,
    actions: Mapping[str, np.ndarray] | None = None,
    success: bool = False,
    **writer_kwargs: Any,
) -> Path:
    """Write a whole episode from (T, ...) arrays; the step-by-step writer underneath."""
    length = len(cartesian_position)
    with EpisodeWriter(path, cameras=list(images), control_hz=control_hz, **writer_kwargs) as writer:
        for t in range(length):
            writer.add_step(
                images={cam: frames[t] for cam, frames in images.items()},
                cartesian_position=cartesian_position[t],
                gripper_position=gripper_position[t],
                joint_positions=None if joint_positions is None else joint_positions[t],
                actions={k: v[t] for k, v in (actions or {}).items()},
            )
        writer.attrs["success"] = bool(success)
    return Path(path)
