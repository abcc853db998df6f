"""V-JEPA pretraining step throughput on synthetic 64x64 clips (CPU here, CUDA when present).

Prints one JSON line: `pretrain_steps_per_s`, `clips_per_s` (training clips per second, data loading
included), and the configuration measured.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from common.device import pick_device
from datasets.index import write_index
from datasets.synthetic import make_synthetic_dataset
from world_model.encoder import EncoderConfig
from world_model.pretrain import DataConfig, OptimConfig, PretrainConfig, pretrain


def main(cfg) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        make_synthetic_dataset(root, cfg.num_episodes, 40, seed=cfg.seed, image_size=cfg.image_size)
        write_index(root, val_fraction=0.0, progress=False)
        config = PretrainConfig(
            data=DataConfig(root=str(root), split="all", image_size=cfg.image_size),
            encoder=EncoderConfig(size=cfg.encoder_size, img_size=cfg.image_size, patch_size=cfg.patch_size),
            optim=OptimConfig(steps=cfg.steps, batch_size=cfg.batch_size, warmup=5), num_frames=cfg.num_frames,
            out=str(Path(tmp) / "run"), progress=False, checkpoint_every=10**9, seed=cfg.seed)
        start = time.perf_counter()
        summary = pretrain(config)
        seconds = time.perf_counter() - start
    print(json.dumps({
        "pretrain_steps_per_s": round(cfg.steps / seconds, 3),
        "clips_per_s": round(summary["clips_per_s"], 1),
        "encoder_size": cfg.encoder_size, "batch_size": cfg.batch_size, "num_frames": cfg.num_frames,
        "image_size": cfg.image_size, "patch_size": cfg.patch_size, "steps": cfg.steps,
        "device": str(pick_device(None)), "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    from common.cli import run

    run(main, "bench_pretrain")
