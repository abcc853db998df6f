"""The sim recipe end to end, shrunk: collect -> train -> evaluate (model, random, oracle) -> results.json."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from common.seeding import EVAL_SEED_BASE, derive_seed, evaluation_seed
from recipes.collect import CollectConfig

ROOT = Path(__file__).resolve().parents[1]


def test_evaluation_goals_never_reuse_collection_seeds():
    collection_seeds = {derive_seed(CollectConfig().seed, i) for i in range(100_000)}
    largest_collection_seed = 998 * 1_000_003 + 100_000
    assert evaluation_seed(0, 0) == EVAL_SEED_BASE > largest_collection_seed
    assert not collection_seeds & {evaluation_seed(s, e) for s in range(3) for e in range(50)}


@pytest.mark.slow
def test_recipe_smoke(tmp_path):
    cmd = [sys.executable, str(ROOT / "recipes" / "franka.py"), "family=lewm", f"data_root={tmp_path / 'data'}",
           f"out={tmp_path / 'run'}", "workers=1", "collect.episodes=4", "collect.max_steps=12", "seeds=[0]", "goals=1",
           "max_steps=2",
           'train_overrides=["optim.steps=3","optim.batch_size=4","optim.warmup=1","optim.decay=1","data.image_size=32",'
           '"model.encoder.img_size=32","model.encoder.depth=1","model.predictor.depth=1","model.sigreg_projections=32",'
           '"progress=false"]',
           'planner_overrides=["solver.samples=8","solver.elites=2","solver.iterations=1"]']
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert summary["model"]["episodes_per_seed"] == 1 and summary["oracle"]["agent"] == "oracle"
    assert saved["model"]["checkpoint"].endswith("last") and saved["train_seconds"] > 0
    assert [s["stage"] for s in saved["stages"]] == ["collect", "train", "evaluate model", "evaluate random",
                                                     "evaluate oracle"]
    assert (tmp_path / "run" / "model" / "checkpoints" / "last" / "model.safetensors").exists()


def test_recipe_refuses_an_unknown_pretraining_preset_before_any_work(tmp_path):
    cmd = [sys.executable, str(ROOT / "recipes" / "franka.py"), "family=vjepa_ac", "pretrain=franka_vjepa3",
           f"data_root={tmp_path / 'data'}", f"out={tmp_path / 'run'}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode != 0
    assert "pretrain='franka_vjepa3': expected a pretraining preset in configs/experiment/" in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()  # nothing collected or written
