"""Hydra entry points that also take plain positional arguments.

`python -m datasets.validate DIR` reads better than `dir=DIR`; `run` turns the
leading positional arguments into quoted hydra overrides (so paths with spaces
or colons, as DROID's folder names have, survive) and starts the hydra app.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def positional_to_overrides(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """['DIR', 'seed=1'] with names ('dir',) -> ["dir='DIR'", 'seed=1']."""
    free = list(names)
    out = []
    for arg in argv:
        if free and "=" not in arg and not arg.startswith("-"):
            out.append(f"{free.pop(0)}={_quote(arg)}")
        else:
            out.append(arg)
    return out


def run(task: Callable[[Any], Any], config_name: str, positional: Sequence[str] = ()) -> None:
    """Run `task(cfg)` as a hydra app over `configs/<config_name>.yaml`."""
    sys.argv = [sys.argv[0], *positional_to_overrides(sys.argv[1:], positional)]
    hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base=None)(task)()
