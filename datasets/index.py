"""The dataset index: `python -m datasets.index DIR` writes DIR/index.json.

The index lists the good episodes (file, length, cameras, rate), a seeded
train/validation split by episode, and per-dimension normalisation statistics
for the state vector, every recorded action key and the delta-pose actions.
Training reads lengths from it instead of opening every file; bad episodes are
listed with their reasons and left out.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from common.rotations import delta_pose_actions
from datasets.reader import EpisodeReader
from datasets.schema import CARTESIAN, ENV_STATE, FORMAT_VERSION, GRIPPER, INDEX_NAME, EpisodeError
from datasets.validate import check_episode, find_episodes

STATE_STATS = "state"
DELTA_POSE_STATS = "delta_pose"


class RunningStats:
    """Per-dimension count, mean, std, min and max over rows, accumulated in float64."""

    def __init__(self) -> None:
        self.count = 0
        self.sum: np.ndarray | None = None
        self.sumsq: np.ndarray | None = None
        self.min: np.ndarray | None = None
        self.max: np.ndarray | None = None

    def update(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
        if len(rows) == 0:
            return
        if self.sum is None:
            dim = rows.shape[1]
            self.sum, self.sumsq = np.zeros(dim), np.zeros(dim)
            self.min, self.max = np.full(dim, np.inf), np.full(dim, -np.inf)
        if rows.shape[1] != len(self.sum):
            raise ValueError(f"rows of width {rows.shape[1]}, earlier rows had {len(self.sum)}")
        self.count += len(rows)
        self.sum += rows.sum(0)
        self.sumsq += (rows**2).sum(0)
        self.min = np.minimum(self.min, rows.min(0))
        self.max = np.maximum(self.max, rows.max(0))

    def to_dict(self) -> dict[str, Any]:
        mean = self.sum / self.count
        std = np.sqrt(np.maximum(self.sumsq / self.count - mean**2, 0.0))
        return {"count": self.count, "mean": mean.tolist(), "std": std.tolist(),
                "min": self.min.tolist(), "max": self.max.tolist()}


def split_episodes(files: list[str], val_fraction: float, seed: int) -> dict[str, list[str]]:
    """Seeded split by episode: the same files, fraction and seed always give the same split."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    files = sorted(files)
    n_val = int(round(len(files) * val_fraction))
    if val_fraction > 0 and len(files) >= 2:
        n_val = max(n_val, 1)
    order = np.random.default_rng(seed).permutation(len(files))
    val = sorted(files[i] for i in order[:n_val])
    train = sorted(files[i] for i in order[n_val:])
    return {"train": train, "val": val}


def build_index(
    root: str | os.PathLike, val_fraction: float = 0.1, seed: int = 0, decode_images: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Scan `root` and return the index as a dict (see `write_index`)."""
    root = Path(root)
    episodes, skipped = [], []
    stats: dict[str, RunningStats] = {}
    for path in tqdm(find_episodes(root), desc="index", unit="ep", disable=not progress):
        rel = path.relative_to(root).as_posix()
        try:
            length = check_episode(path, decode_images=decode_images)
            with EpisodeReader(path) as ep:
                attrs = ep.attrs
                entry = {
                    "file": rel,
                    "length": length,
                    "cameras": {c: list(ep.dataset(f"observation/image/{c}").shape[1:3]) for c in ep.cameras},
                    "control_hz": float(attrs["control_hz"]),
                    "action_keys": ep.action_keys,
                    "success": bool(attrs.get("success", False)),
                    "task": str(attrs.get("task", "")),
                    "camera_view": ep.camera_view,
                    "bytes": path.stat().st_size,
                }
                if not ep.has_pose:  # an env without a robot pose: statistics of its own state vector
                    stats.setdefault(ENV_STATE, RunningStats()).update(ep.read(ENV_STATE))
                else:
                    stats.setdefault(STATE_STATS, RunningStats()).update(ep.states())
                if length > 1 and ep.has_pose:
                    stats.setdefault(DELTA_POSE_STATS, RunningStats()).update(
                        delta_pose_actions(ep.read(CARTESIAN), ep.read(GRIPPER)))
                for key in ep.action_keys:
                    stats.setdefault(key, RunningStats()).update(ep.read(key))
        except EpisodeError as err:
            skipped.append({"file": rel, "reason": err.reason})
            continue
        except ValueError as err:  # an action key whose width changes between episodes
            skipped.append({"file": rel, "reason": str(err)})
            continue
        episodes.append(entry)
    return {
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "num_episodes": len(episodes),
        "num_steps": int(sum(e["length"] for e in episodes)),
        "split_seed": seed,
        "val_fraction": val_fraction,
        "episodes": episodes,
        "split": split_episodes([e["file"] for e in episodes], val_fraction, seed),
        "stats": {k: s.to_dict() for k, s in sorted(stats.items())},
        "skipped": skipped,
    }


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON to a temporary sibling, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_index(root: str | os.PathLike, **kwargs: Any) -> dict[str, Any]:
    index = build_index(root, **kwargs)
    write_json_atomic(Path(root) / INDEX_NAME, index)
    return index


def load_index(root: str | os.PathLike) -> dict[str, Any] | None:
    """The index of `root`, or None when there is none. Raises ValueError on a foreign or damaged index."""
    path = Path(root) / INDEX_NAME
    if not path.exists():
        return None
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); rebuild it with python -m datasets.index {root}") from err
    if not isinstance(index, dict) or index.get("format_version") != FORMAT_VERSION or "episodes" not in index:
        raise ValueError(f"{path}: not an index of format_version {FORMAT_VERSION}; rebuild it with "
                         f"python -m datasets.index {root}")
    return index


def main(cfg) -> None:
    root = Path(cfg.dir)
    index = write_index(root, val_fraction=cfg.val_fraction, seed=cfg.seed, decode_images=cfg.decode_images,
                        progress=cfg.progress)
    for item in index["skipped"]:
        print(f"skipped {item['file']}: {item['reason']}")
    split = index["split"]
    print(f"indexed {index['num_episodes']} episodes ({index['num_steps']} steps) in {root / INDEX_NAME}: "
          f"{len(split['train'])} train, {len(split['val'])} val, {len(index['skipped'])} skipped")


if __name__ == "__main__":
    from common.cli import run

    run(main, "index", positional=("dir",))
