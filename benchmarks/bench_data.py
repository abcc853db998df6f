"""Data-loading throughput: clips per second from 100 episodes, in one process and with 2 workers.

Prints one JSON line with `clips_per_s_1proc` and `clips_per_s_2workers` (steady state,
after the first batch; worker start-up is reported separately as `worker_startup_s`).
100 short 64x64 episodes fit HDF5's default chunk cache, so the default figures are
cache-warm; the `_nocache` figures decompress every frame on every read, which is
what a dataset much larger than the cache sees.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from datasets.clips import ClipDataset, Windows
from datasets.index import write_index
from datasets.synthetic import make_synthetic_dataset


def clips_per_second(dataset: ClipDataset, num_workers: int, batch_size: int, num_clips: int, seed: int) -> tuple[float, float]:
    """(steady-state clips/s, seconds to the first batch) for shuffled batches until `num_clips` clips."""
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers, generator=generator,
                        drop_last=True)
    start = time.perf_counter()
    it = iter(loader)
    next(it)
    first = time.perf_counter()
    seen = 0
    while seen < num_clips:
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        seen += len(batch["frames"])
    return seen / (time.perf_counter() - first), first - start


def main(cfg) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(cfg.dir) if cfg.dir else Path(tmp)
        if not cfg.dir:
            make_synthetic_dataset(root, cfg.num_episodes, cfg.episode_length, seed=cfg.seed, image_size=cfg.image_size)
            write_index(root, val_fraction=0.0, progress=False)
        torch.manual_seed(cfg.seed)
        figures = {}
        for suffix, cache in (("", None), ("_nocache", 0)):
            dataset = ClipDataset(root, split="all", windows=Windows(history=cfg.history, future=cfg.future, fps=cfg.fps),
                                  chunk_cache_bytes=cache)
            one, _ = clips_per_second(dataset, 0, cfg.batch_size, cfg.num_clips, cfg.seed)
            two, startup = clips_per_second(dataset, 2, cfg.batch_size, cfg.num_clips, cfg.seed)
            figures[f"clips_per_s_1proc{suffix}"] = round(one, 1)
            figures[f"clips_per_s_2workers{suffix}"] = round(two, 1)
        print(json.dumps({
            **figures,
            "worker_startup_s": round(startup, 3),
            "episodes": len(dataset.episodes),
            "clip_frames": dataset.windows.num_frames,
            "image_size": cfg.image_size,
            "batch_size": cfg.batch_size,
            "clips_timed": cfg.num_clips,
            "torch_threads": torch.get_num_threads(),
        }))


if __name__ == "__main__":
    from common.cli import run

    run(main, "bench_data")
