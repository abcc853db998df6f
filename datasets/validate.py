"""Check every episode of a dataset folder: `python -m datasets.validate DIR`.

Prints one line per bad file with its reasons and exits 1 when any file is bad,
0 otherwise; a folder without episodes is an error (exit 2). The same checks back the index builder and the clip dataset.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from common.errors import UserError
from datasets.schema import (
    ACTION_GROUP,
    ENV_STATE,
    EPISODE_SUFFIX,
    IMAGE_GROUP,
    KNOWN_ACTION_SHAPES,
    LOWDIM_SHAPES,
    REQUIRED_ATTRIBUTES,
    REQUIRED_LOWDIM,
    SIM_STATE,
    EpisodeError,
    check_shape,
    is_float_dtype,
)

_DECODE_BLOCK = 64  # frames decoded per read while checking images


def find_episodes(root: str | os.PathLike) -> list[Path]:
    """Episode files under `root` (recursive, sorted, hidden temporary files excluded)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    return sorted(p for p in root.rglob(f"*{EPISODE_SUFFIX}") if not p.name.startswith("."))


def require_episodes(root: str | os.PathLike) -> list[Path]:
    """`find_episodes`, refusing a folder that holds none: every command reading a dataset says so in one line."""
    episodes = find_episodes(root)
    if not episodes:
        raise UserError(f"no {EPISODE_SUFFIX} episodes found in {root}")
    return episodes


def _lowdim_keys(f: h5py.File) -> list[str]:
    keys = [k for k in (*LOWDIM_SHAPES, ENV_STATE) if k in f]
    for name in (ACTION_GROUP, SIM_STATE):
        group = f.get(name)
        if isinstance(group, h5py.Group):
            keys += [f"{name}/{k}" for k in sorted(group.keys())]
    return keys


def check_structure(path: Path, f: h5py.File) -> tuple[int, list[str]]:
    """Keys, shapes, dtypes and lengths; returns (T, image keys). Raises EpisodeError."""
    for name in REQUIRED_ATTRIBUTES:
        if name not in f.attrs:
            raise EpisodeError(path, f"missing file attribute '{name}'")
    hz = f.attrs["control_hz"]
    if not np.isscalar(hz) or not np.isfinite(hz) or float(hz) <= 0:
        raise EpisodeError(path, f"file attribute 'control_hz' must be a positive number, got {hz!r}")
    pose = [key for key in REQUIRED_LOWDIM if isinstance(f.get(key), h5py.Dataset)]
    if len(pose) == 1 or not (pose or isinstance(f.get(ENV_STATE), h5py.Dataset)):
        key = next(k for k in REQUIRED_LOWDIM if k not in pose)
        raise EpisodeError(path, f"missing key '{key}'" + ("" if pose else f" (or '{ENV_STATE}' for an env without a robot pose)"))
    images = f.get(IMAGE_GROUP)
    image_keys = [f"{IMAGE_GROUP}/{c}" for c in sorted(images.keys())] if isinstance(images, h5py.Group) else []
    if not image_keys:
        raise EpisodeError(path, f"no camera under '{IMAGE_GROUP}/'")

    lengths: dict[str, int] = {}
    for key in _lowdim_keys(f):
        ds = f[key]
        if not isinstance(ds, h5py.Dataset):
            raise EpisodeError(path, f"key '{key}' is a group, expected a dataset")
        if not (is_float_dtype(ds.dtype) or np.issubdtype(ds.dtype, np.integer) or ds.dtype == bool):
            raise EpisodeError(path, f"key '{key}' has dtype {ds.dtype}, expected a float array")
        if key in LOWDIM_SHAPES or key in KNOWN_ACTION_SHAPES:
            if not is_float_dtype(ds.dtype):
                raise EpisodeError(path, f"key '{key}' has dtype {ds.dtype}, expected float")
            check_shape(path, key, ds.shape, LOWDIM_SHAPES.get(key, KNOWN_ACTION_SHAPES.get(key)))
        elif ds.ndim < 1:
            raise EpisodeError(path, f"key '{key}' is a scalar, expected a (T, ...) array")
        lengths[key] = ds.shape[0]
    for key in image_keys:
        ds = f[key]
        if not isinstance(ds, h5py.Dataset) or ds.dtype != np.uint8 or ds.ndim != 4 or ds.shape[3] != 3:
            shape = getattr(ds, "shape", None)
            dtype = getattr(ds, "dtype", None)
            raise EpisodeError(path, f"key '{key}' has shape {shape} dtype {dtype}, expected (T, H, W, 3) uint8")
        lengths[key] = ds.shape[0]
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise EpisodeError(path, f"length mismatch between keys: {detail}")
    length = next(iter(lengths.values()))
    if length < 1:
        raise EpisodeError(path, "episode has no steps")
    return length, image_keys


def check_finite(path: Path, f: h5py.File) -> None:
    for key in _lowdim_keys(f):
        try:
            values = f[key][()]
        except (OSError, ValueError, RuntimeError) as err:
            raise EpisodeError(path, f"cannot read '{key}' ({err})") from err
        if is_float_dtype(values.dtype) and not np.isfinite(values).all():
            bad = np.argwhere(~np.isfinite(values.reshape(len(values), -1)))[0, 0]
            raise EpisodeError(path, f"non-finite value (NaN/inf) in '{key}' at step {bad}")


def _check_images_decode(path: Path, f: h5py.File, image_keys: list[str]) -> None:
    for key in image_keys:
        ds = f[key]
        for start in range(0, ds.shape[0], _DECODE_BLOCK):
            stop = min(start + _DECODE_BLOCK, ds.shape[0])
            try:
                ds[start:stop]
            except (OSError, ValueError, RuntimeError) as err:
                raise EpisodeError(path, f"undecodable image in '{key}' frames {start}:{stop} ({err})") from err


def check_episode(path: str | os.PathLike, decode_images: bool = True) -> int:
    """Raise EpisodeError naming the first problem of one episode; return its length when it is good."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as err:
        raise EpisodeError(path, f"unreadable or truncated HDF5 file ({err})") from err
    try:
        with f:
            length, image_keys = check_structure(path, f)
            check_finite(path, f)
            if decode_images:
                _check_images_decode(path, f, image_keys)
    except EpisodeError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as err:  # h5py errors on damaged internals
        raise EpisodeError(path, f"damaged HDF5 structure ({err})") from err
    return length


def validate_dir(root: str | os.PathLike, decode_images: bool = True, progress: bool = True) -> dict[Path, str]:
    """Map each bad episode under `root` to its reason; good episodes are absent."""
    bad: dict[Path, str] = {}
    for path in tqdm(find_episodes(root), desc="validate", unit="ep", disable=not progress):
        try:
            check_episode(path, decode_images=decode_images)
        except EpisodeError as err:
            bad[path] = err.reason
    return bad


def main(cfg) -> None:
    root = Path(cfg.dir)
    episodes = require_episodes(root)
    bad = validate_dir(root, decode_images=cfg.decode_images, progress=cfg.progress)
    for path, reason in bad.items():
        print(f"BAD {path}: {reason}")
    print(f"validated {len(episodes)} episodes in {root}: {len(episodes) - len(bad)} good, {len(bad)} bad")
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    from common.cli import run

    run(main, "validate", positional=("dir",))
