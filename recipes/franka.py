"""The reproducible sim recipe: collect -> train -> evaluate, one command per task and model family.

    python recipes/franka.py family=lewm                       # FrankaReach-v0, LeWorldModel (the shipped default)
    python recipes/franka.py family=vjepa_ac                   # frozen V-JEPA encoder + AdaLN AC predictor
    python recipes/franka.py env_id=FrankaPush-v0 family=lewm  # the push task
    python recipes/franka.py env_id=FrankaPickPlace-v0 cameras=[exterior_1_left,wrist_left] ...  # + the wrist view

Each stage runs the repository's own command-line tool in a child process (so its progress shows)
and is skipped when its output already exists, so an interrupted recipe continues where it stopped.
Evaluation covers the trained model with its planner over `seeds` x `goals` held-out goals, a random
policy and the scripted oracle. Results (with each stage's wall time and the commands) go to
`<out>/results.json`; the last line printed is that JSON.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], log: list[dict[str, Any]], stage: str, capture_json: bool = False) -> Any:
    """Run one stage; on failure raise with the command so it can be re-run by hand."""
    print(f"[{stage}] {shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE if capture_json else None, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"stage {stage} failed (exit {proc.returncode}): {shlex.join(cmd)}")
    log.append({"stage": stage, "seconds": round(seconds, 1), "command": shlex.join(cmd)})
    if capture_json:
        lines = proc.stdout.strip().splitlines()
        print("\n".join(lines[-3:-1]), flush=True)
        return json.loads(lines[-1])
    return None


def main(cfg: Any) -> None:
    from common.droid import WRIST_CAMERA
    from common.errors import UserError

    py = sys.executable
    presets = sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*_pretrain.yaml"))
    if cfg.family == "vjepa_ac" and cfg.pretrain not in presets:
        raise UserError(f"pretrain={cfg.pretrain!r}: expected a pretraining preset in configs/experiment/ "
                        f"({', '.join(presets)})")
    data, out = Path(cfg.data_root), Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log: list[dict[str, Any]] = []
    # the checkpoint carries the task it is evaluated on (config.json `planning`)
    cameras = [str(c) for c in cfg.cameras or []]  # several views: the wrist camera recorded, data.cameras trained on
    overrides = [f"++planning.env_id={cfg.env_id}", f"++planning.max_steps={cfg.max_steps}",
                 *([f"data.cameras=[{','.join(cameras)}]"] if cameras else []), *[str(o) for o in cfg.train_overrides]]
    if not (data / "index.json").exists():
        _run([py, "-m", "recipes.collect", f"env_id={cfg.env_id}", f"out={data}", f"num_episodes={cfg.collect.episodes}",
              f"max_steps={cfg.collect.max_steps}", f"policy={cfg.collect.policy}", f"seed={cfg.seed}",
              f"workers={cfg.workers}", *(["env_kwargs={wrist_camera: true}"] if WRIST_CAMERA in cameras else [])],
             log, "collect")
    checkpoint = out / "model" / "checkpoints" / "last"
    if not (checkpoint / "config.json").exists() or cfg.retrain:
        start_over = ["overwrite=true"] if checkpoint.exists() else []  # retrain: replace the earlier model
        if cfg.family == "lewm":
            _run([py, "world_model/train.py", "experiment=franka_lewm", f"data.root={data}", f"out={out / 'model'}",
                  f"seed={cfg.seed}", *start_over, *overrides], log, "train")
        elif cfg.family == "vjepa_ac":
            encoder = out / "encoder" / "checkpoints" / "last"
            if not (encoder / "config.json").exists():
                _run([py, "world_model/pretrain.py", f"experiment={cfg.pretrain}", f"data.root={data}",
                      f"out={out / 'encoder'}", f"seed={cfg.seed}", *[str(o) for o in cfg.pretrain_overrides]],
                     log, "pretrain")
            _run([py, "world_model/cache_features.py", f"data_root={data}", f"checkpoint={encoder}", "pool=true",
                  "overwrite=true"], log, "cache_features")
            _run([py, "world_model/train.py", "experiment=franka_vjepa", f"data.root={data}", f"out={out / 'model'}",
                  f"model.encoder_checkpoint={encoder}", f"seed={cfg.seed}", *start_over, *overrides], log, "train")
        else:
            raise ValueError(f"family must be lewm or vjepa_ac, got {cfg.family!r}")
    train_seconds = sum(s["seconds"] for s in log)
    evaluate = [py, "planners/evaluate.py", f"env_id={cfg.env_id}", f"seeds=[{','.join(map(str, cfg.seeds))}]",
                f"episodes={cfg.goals}", f"max_steps={cfg.max_steps}", *[str(o) for o in cfg.eval_overrides]]
    results: dict[str, Any] = {"env_id": cfg.env_id, "family": cfg.family, "checkpoint": str(checkpoint),
                               "train_seconds": round(train_seconds, 1), "max_steps": cfg.max_steps}
    results["model"] = _run([*evaluate, f"checkpoint={checkpoint}", *[str(o) for o in cfg.planner_overrides]],
                            log, "evaluate model", capture_json=True)
    for agent in cfg.baselines:
        results[agent] = _run([*evaluate, f"agent={agent}"], log, f"evaluate {agent}", capture_json=True)
    results["stages"] = log
    (out / "results.json").write_text(json.dumps(results, indent=1))
    line = ", ".join(f"{name} {r['success_rate']:.0%} ± {r['success_rate_stderr']:.0%}"
                     for name, r in results.items() if isinstance(r, dict) and "success_rate" in r)
    print(f"{cfg.env_id} {cfg.family}: {line} (success over {len(cfg.seeds)} seeds x {cfg.goals} goals, "
          f"{cfg.max_steps}-step budget); data+training {train_seconds / 60:.1f} min; results in {out / 'results.json'}")
    print(json.dumps({k: v for k, v in results.items() if k != "stages"}, default=str)[:100000])


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from common.cli import run

    run(main, "recipe")
