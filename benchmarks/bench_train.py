"""World-model training step throughput for both families on synthetic 64x64 data (CPU here, CUDA when present).

Prints one JSON line: `train_steps_per_s_<family>` and `clips_per_s_<family>` for `vjepa_ac` (tiny
encoder, pixels encoded on the fly, and from the feature cache) and `lewm` (default ViT-Tiny config).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose

from common.device import pick_device
from datasets.index import write_index
from datasets.synthetic import make_synthetic_dataset
from world_model.checkpoints import save_checkpoint
from world_model.encoder import EncoderConfig, VideoViT
from world_model.feature_cache import Preprocessing, build_cache
from world_model.train import train, train_config


def _run(overrides: list[str], steps: int, out: Path) -> tuple[float, float]:
    cfg = compose("train", overrides=[*overrides, f"out={out}"])  # this app's hydra already searches configs/
    start = time.perf_counter()
    summary = train(train_config(cfg))
    return steps / (time.perf_counter() - start), summary["clips_per_s"]


def main(cfg) -> None:
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        root, enc = Path(tmp) / "data", Path(tmp) / "encoder"
        make_synthetic_dataset(root, cfg.num_episodes, 40, seed=cfg.seed, image_size=cfg.image_size)
        write_index(root, val_fraction=0.1, progress=False)
        config = EncoderConfig(size="tiny", img_size=cfg.image_size, patch_size=8)
        save_checkpoint(enc, VideoViT(config), {"encoder": config.to_dict()})
        common = [f"data.root={root}", f"data.image_size={cfg.image_size}", f"optim.steps={cfg.steps}",
                  f"optim.batch_size={cfg.batch_size}", "progress=false", "val_batches=0"]
        ac = ["model=vjepa_ac", f"model.encoder_checkpoint={enc}"]
        figures["train_steps_per_s_vjepa_ac"], figures["clips_per_s_vjepa_ac"] = _run(ac + common, cfg.steps,
                                                                                       Path(tmp) / "ac")
        build_cache(root, enc, Preprocessing(image_size=cfg.image_size), progress=False)
        figures["train_steps_per_s_vjepa_ac_cached"], figures["clips_per_s_vjepa_ac_cached"] = _run(
            ac + common, cfg.steps, Path(tmp) / "ac_cached")
        lewm = ["model=lewm", f"model.encoder.img_size={cfg.image_size}"]
        figures["train_steps_per_s_lewm"], figures["clips_per_s_lewm"] = _run(lewm + common, cfg.steps,
                                                                               Path(tmp) / "lewm")
    print(json.dumps({k: round(v, 3) for k, v in figures.items()} | {
        "batch_size": cfg.batch_size, "image_size": cfg.image_size, "steps": cfg.steps,
        "device": str(pick_device(None)), "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    from common.cli import run

    run(main, "bench_train")
