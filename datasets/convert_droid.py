"""Convert DROID raw episodes into our episode files: `python -m datasets.convert_droid SRC DST`.

A DROID raw episode is a folder with `trajectory.h5` (DROID's key tree),
`metadata_<uuid>.json` and `recordings/MP4/<camera serial>.mp4`. For each one
found under SRC this picks one camera by role (`ext1`, `ext2`, `wrist`, or
`left`/`right`: the exterior camera the metadata's `left_mp4_path` /
`right_mp4_path` names), drops idle steps where
`observation/controller_info/movement_enabled` is present and false, resamples
to `fps` and resizes to `height` x `width`, and writes DST/<uuid>.h5.
Below the recording rate each kept step carries the commands of the steps
dropped after it: velocities and deltas summed, absolute targets the last one
(file attribute `action_reduce`). Reruns skip episodes already converted and
remove the temporaries of a killed run; a broken source episode (missing
files, datasets of different lengths, an undecodable video) is reported in
one line and skipped.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import h5py
import imageio.v2 as imageio
import numpy as np
from PIL import Image
from tqdm import tqdm

from datasets.reader import plain_attribute
from datasets.schema import CARTESIAN, GRIPPER, JOINTS, EpisodeError
from datasets.writer import EpisodeWriter, remove_stale_temporaries

DROID_HZ = 15.0
MOVEMENT_ENABLED = "observation/controller_info/movement_enabled"
DROID_ACTIONS = ("cartesian_position", "cartesian_velocity", "gripper_position", "gripper_velocity",
                 "joint_position", "joint_velocity")
ROLES = ("ext1", "ext2", "wrist", "left", "right")
_ROLE_CAMERA = {"ext1": "exterior_1_left", "ext2": "exterior_2_left", "wrist": "wrist_left"}


def find_droid_episodes(src: str | os.PathLike) -> list[Path]:
    """Folders under `src` (or `src` itself) that hold a `trajectory.h5`."""
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"DROID source folder {src} does not exist")
    return sorted(p.parent for p in src.rglob("trajectory.h5"))


def read_metadata(episode_dir: Path) -> dict[str, Any]:
    found = sorted(episode_dir.glob("metadata_*.json"))
    if not found:
        raise EpisodeError(episode_dir, "no metadata_*.json file")
    try:
        return json.loads(found[0].read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise EpisodeError(found[0], f"unreadable metadata JSON ({err})") from err


def select_camera(episode_dir: Path, metadata: dict[str, Any], role: str) -> tuple[Path, str, str]:
    """(MP4 path, our camera name, serial) of the camera with `role`."""
    if role not in ROLES:
        raise ValueError(f"camera role must be one of {ROLES}, got {role!r}")
    path_key = f"{role}_mp4_path"
    if metadata.get(path_key):
        serial = Path(metadata[path_key]).stem
    elif metadata.get(f"{role}_cam_serial"):
        serial = str(metadata[f"{role}_cam_serial"])
    else:
        raise EpisodeError(episode_dir, f"metadata names no camera for role '{role}' (no '{path_key}')")
    if role in _ROLE_CAMERA:
        name = _ROLE_CAMERA[role]
    else:  # left/right is one of the two exterior cameras
        name = "exterior_2_left" if serial == str(metadata.get("ext2_cam_serial", "")) else "exterior_1_left"
    mp4 = episode_dir / "recordings" / "MP4" / f"{serial}.mp4"
    if not mp4.exists():
        raise EpisodeError(episode_dir, f"camera '{role}' video {mp4.relative_to(episode_dir)} is missing")
    return mp4, name, serial


def _active_and_picks(movement_enabled: np.ndarray | None, length: int, source_hz: float,
                      fps: float) -> tuple[np.ndarray, np.ndarray]:
    """(active source steps, positions among them of the steps kept at `fps`)."""
    if fps > source_hz:
        raise ValueError(f"fps {fps} exceeds the source rate {source_hz}; DROID cannot be upsampled")
    active = np.arange(length) if movement_enabled is None else np.flatnonzero(np.asarray(movement_enabled[:length]))
    if len(active) == 0:
        return active, np.zeros(0, np.int64)
    picks = np.round(np.arange(0, len(active), source_hz / fps)).astype(np.int64)
    return active, np.unique(picks[picks < len(active)])


def kept_steps(movement_enabled: np.ndarray | None, length: int, source_hz: float, fps: float) -> np.ndarray:
    """Indices of the source steps to keep: active steps only, then every (source_hz / fps)-th of them."""
    active, picks = _active_and_picks(movement_enabled, length, source_hz, fps)
    return active[picks]


def command_groups(movement_enabled: np.ndarray | None, length: int, source_hz: float, fps: float) -> list[np.ndarray]:
    """For each kept step, the active source steps whose commands it stands for: itself and the dropped ones
    up to the next kept step (idle steps sent nothing; the last kept step takes at most one frameskip)."""
    active, picks = _active_and_picks(movement_enabled, length, source_hz, fps)
    if len(picks) == 0:
        return []
    span = max(int(round(source_hz / fps)), 1)
    ends = np.append(picks[1:], min(int(picks[-1]) + span, len(active)))
    return [active[a:b] for a, b in zip(picks, ends)]


def action_reduction(name: str) -> str:
    """How the commands of dropped steps combine: velocities and deltas add up, absolute targets keep the last."""
    return "sum" if name.endswith(("_velocity", "_delta")) else "last"


def combine_commands(commands: np.ndarray, groups: list[np.ndarray], reduction: str) -> np.ndarray:
    if reduction == "sum":
        return np.stack([commands[g].sum(0) for g in groups])
    return commands[[int(g[-1]) for g in groups]]


def _ffmpeg_reason(err: Exception) -> str:
    """ffmpeg's error without its version banner: imageio's message, then ffmpeg's last line."""
    head, _, stderr = str(err).partition("=== stderr ===")
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith((" ", "ffmpeg version"))]
    last = re.sub(r"^\[[^]]* @ 0x[0-9a-f]+\] ", "", lines[-1]) if lines else ""
    return ": ".join(part for part in (" ".join(head.split()), last) if part) or type(err).__name__


def decode_frames(mp4: Path, steps: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """uint8 (len(steps), H, W, 3) frames at `steps` (sorted), decoded in one pass and resized."""
    wanted = {int(s): i for i, s in enumerate(steps)}
    out: list[np.ndarray | None] = [None] * len(steps)
    last = int(steps[-1]) if len(steps) else -1
    try:
        with imageio.get_reader(mp4, format="ffmpeg") as reader:
            for t, frame in enumerate(reader):
                if t in wanted:
                    img = Image.fromarray(np.asarray(frame)[..., :3])
                    if size is not None and img.size != (size[1], size[0]):
                        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                    out[wanted[t]] = np.asarray(img, dtype=np.uint8)
                if t >= last:
                    break
    except (OSError, RuntimeError, ValueError) as err:
        raise EpisodeError(mp4, f"undecodable video ({_ffmpeg_reason(err)})") from err
    missing = sum(frame is None for frame in out)
    if missing:
        raise EpisodeError(mp4, f"video ends before step {last}: {missing} of {len(steps)} frames missing")
    return np.stack(out)


def output_name(episode_dir: Path, src: Path, metadata: dict[str, Any]) -> str:
    stem = metadata.get("uuid") or episode_dir.relative_to(src).as_posix().replace("/", "__") or episode_dir.name
    return re.sub(r"[^A-Za-z0-9._+-]", "_", str(stem)) + ".h5"


def convert_episode(
    episode_dir: Path, dst_file: Path, camera: str = "ext1", fps: float = DROID_HZ, size: tuple[int, int] | None = None,
    drop_idle: bool = True, source_hz: float = DROID_HZ, metadata: dict[str, Any] | None = None,
) -> int:
    """Convert one DROID raw episode folder into `dst_file`; returns the number of steps written."""
    metadata = read_metadata(episode_dir) if metadata is None else metadata
    mp4, camera_name, serial = select_camera(episode_dir, metadata, camera)
    traj_path = episode_dir / "trajectory.h5"
    try:
        with h5py.File(traj_path, "r") as f:
            for key in (CARTESIAN, GRIPPER):
                if key not in f:
                    raise EpisodeError(traj_path, f"missing key '{key}'")
            length = len(f[CARTESIAN])
            action_keys = [f"action/{k}" for k in DROID_ACTIONS if f"action/{k}" in f]
            for key in [GRIPPER, *([JOINTS] if JOINTS in f else []), *action_keys]:
                if len(f[key]) != length:  # a DROID write interrupted mid-step
                    raise EpisodeError(traj_path, f"key '{key}' has {len(f[key])} rows, expected {length} like "
                                                  f"'{CARTESIAN}'")
            movement = f[MOVEMENT_ENABLED][()] if drop_idle and MOVEMENT_ENABLED in f else None
            if movement is not None and len(movement) < length:
                raise EpisodeError(traj_path, f"key '{MOVEMENT_ENABLED}' has {len(movement)} rows, expected {length} "
                                              f"like '{CARTESIAN}'")
            groups = command_groups(movement, length, source_hz, fps)
            if not groups:
                raise EpisodeError(traj_path, "no active steps (movement_enabled is false throughout)")
            steps = np.array([int(g[0]) for g in groups])
            cartesian = f[CARTESIAN][()][steps]
            gripper = f[GRIPPER][()].reshape(length, -1)[steps, 0]
            joints = f[JOINTS][()][steps] if JOINTS in f else None
            reduce = {key.removeprefix("action/"): action_reduction(key) for key in action_keys}
            actions = {k: combine_commands(f[f"action/{k}"][()], groups, r) for k, r in reduce.items()}
            task = metadata.get("current_task") or plain_attribute(f.attrs.get("current_task", ""))
            success = metadata.get("success", plain_attribute(f.attrs.get("success", False)))
    except OSError as err:
        raise EpisodeError(traj_path, f"unreadable HDF5 file ({err})") from err
    except (ValueError, IndexError, KeyError, TypeError) as err:  # a damaged file whose shapes do not fit
        raise EpisodeError(traj_path, f"damaged trajectory ({type(err).__name__}: {err})") from err
    frames = decode_frames(mp4, steps, size)
    with EpisodeWriter(
        dst_file, cameras=[camera_name], control_hz=fps, robot_type="franka_panda", action_space="cartesian_velocity",
        task=str(task), overwrite=True,
        attrs={"source": "droid_raw", "source_episode": str(episode_dir), "droid_uuid": str(metadata.get("uuid", "")),
               "camera_serial": serial, "source_steps": steps, "source_hz": float(source_hz),
               "action_reduce": json.dumps(reduce, sort_keys=True)},
    ) as writer:
        for i in range(len(steps)):
            writer.add_step(
                images={camera_name: frames[i]}, cartesian_position=cartesian[i], gripper_position=gripper[i],
                joint_positions=None if joints is None else joints[i],
                actions={k: v[i] for k, v in actions.items()},
            )
        writer.attrs["success"] = bool(success)
    return len(steps)


def convert_tree(
    src: str | os.PathLike, dst: str | os.PathLike, camera: str = "ext1", fps: float = DROID_HZ,
    size: tuple[int, int] | None = None, drop_idle: bool = True, overwrite: bool = False, progress: bool = True,
) -> dict[str, Any]:
    """Convert every DROID episode under `src` into `dst`; returns counts and the failures."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"converted": 0, "skipped_existing": 0, "failed": [], "steps": 0,
                               "removed_stale": len(remove_stale_temporaries(dst))}  # left by a killed run
    episodes = find_droid_episodes(src)
    for episode_dir in tqdm(episodes, desc="convert", unit="ep", disable=not progress):
        try:
            metadata = read_metadata(episode_dir)
            target = dst / output_name(episode_dir, src, metadata)
            if target.exists() and not overwrite:
                summary["skipped_existing"] += 1
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # imageio's ffmpeg notes on frame sizes
                summary["steps"] += convert_episode(episode_dir, target, camera, fps, size, drop_idle, metadata=metadata)
            summary["converted"] += 1
        except EpisodeError as err:
            summary["failed"].append(str(err))
    summary["episodes"] = len(episodes)
    return summary


def main(cfg) -> None:
    size = (int(cfg.height), int(cfg.width)) if cfg.height and cfg.width else None
    summary = convert_tree(cfg.src, cfg.dst, camera=cfg.camera, fps=cfg.fps, size=size, drop_idle=cfg.drop_idle,
                           overwrite=cfg.overwrite, progress=cfg.progress)
    for failure in summary["failed"]:
        print(f"FAILED {failure}")
    stale = summary["removed_stale"]
    print(f"converted {summary['converted']} of {summary['episodes']} DROID episodes into {cfg.dst} "
          f"({summary['steps']} steps at {cfg.fps:g} fps): {summary['skipped_existing']} already there, "
          f"{len(summary['failed'])} failed" + (f", removed {stale} stale temporary file{'s' * (stale > 1)}" if stale else ""))
    raise SystemExit(1 if summary["failed"] else 0)


if __name__ == "__main__":
    from common.cli import run

    run(main, "convert_droid", positional=("src", "dst"))
