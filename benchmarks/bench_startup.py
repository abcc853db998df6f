"""Speed of the front door: seconds from typing a command to its first output.

Prints one JSON line: `help_s` (`python planners/cem_goal.py --help`), `bad_override_s`
(`python planners/cem_goal.py solver.sampels=10`, which must be a one-line error) and
`validate_first_line_s` (`python -m datasets.validate DIR` on a temporary synthetic dataset: its first
line or progress bar), each the median of `repeats` runs, with `validate_total_s`, the 1-minute load
average before and after and the CPU count (figures hold only on a quiet machine). Target: < 3 s each.
"""

from __future__ import annotations

import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def first_output(cmd: list[str], expect_status: int) -> tuple[float, float, str]:
    """(seconds to the first byte on stdout or stderr, seconds to the exit, everything it printed)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    select.select([proc.stdout, proc.stderr], [], [], 600)
    first = time.perf_counter() - start
    out, err = proc.communicate(timeout=600)
    total = time.perf_counter() - start
    text = out.decode() + err.decode()
    if proc.returncode != expect_status:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}, expected {expect_status}:\n{text[-3000:]}")
    return first, total, text


def main(cfg) -> None:
    from datasets.synthetic import make_synthetic_episode

    py = sys.executable
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(cfg.episodes):
            make_synthetic_episode(Path(tmp) / f"episode_{i:03d}.h5", length=cfg.episode_length, seed=i)
        runs: dict[str, list[float]] = {"help_s": [], "bad_override_s": [], "validate_first_line_s": [],
                                        "validate_total_s": []}
        for _ in range(cfg.repeats):
            seconds, _, text = first_output([py, "planners/cem_goal.py", "--help"], 0)
            assert text.startswith("usage: "), text[:500]
            runs["help_s"].append(seconds)
            seconds, _, text = first_output([py, "planners/cem_goal.py", "solver.sampels=10"], 2)
            assert text.startswith("error: ") and len(text.strip().splitlines()) == 1, text[-2000:]
            runs["bad_override_s"].append(seconds)
            seconds, total, _ = first_output([py, "-m", "datasets.validate", tmp], 0)
            runs["validate_first_line_s"].append(seconds)
            runs["validate_total_s"].append(total)
    figures = {k: round(statistics.median(v), 2) for k, v in runs.items()}
    print(json.dumps({**figures, "repeats": cfg.repeats, "episodes": cfg.episodes, "cpu_count": os.cpu_count(),
                      "load_1min_before": round(load_before, 2), "load_1min_after": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    from common.cli import run

    run(main, "bench_startup")
