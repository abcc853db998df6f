"""Encode a dataset once with a frozen encoder: `python world_model/cache_features.py data_root=DIR checkpoint=CKPT`."""

from __future__ import annotations

from typing import Any


def main(cfg: Any) -> None:
    from world_model.feature_cache import Preprocessing, build_cache  # noqa: I001 - torch, once the arguments are checked

    summary = build_cache(cfg.data_root, cfg.checkpoint, Preprocessing(cfg.camera, cfg.image_size, cfg.pool),
                          cache_dir=cfg.cache_dir, batch_size=cfg.batch_size, device=cfg.device,
                          overwrite=cfg.overwrite, progress=cfg.progress)
    for failure in summary["failed"]:
        print(f"FAILED {failure}")
    print(f"encoded {summary['encoded']} episodes into {summary['cache_dir']} (key {summary['key']}): "
          f"{summary['skipped_existing']} already there, {len(summary['failed'])} failed")


if __name__ == "__main__":
    from common.cli import run

    run(main, "cache_features", positional=("data_root", "checkpoint"))
