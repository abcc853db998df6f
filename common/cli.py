"""Hydra entry points that also take plain positional arguments.

`python -m datasets.validate DIR` reads better than `dir=DIR`; `run` turns the
leading positional arguments into quoted hydra overrides (so paths with spaces
or colons, as DROID's folder names have, survive) and starts the hydra app.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf.errors import MissingMandatoryValue

from common.errors import UserError

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


def _program() -> str:
    """How the running command was invoked: `python -m pkg.mod` or `python path/to/script.py`."""
    script = Path(sys.argv[0]).resolve()
    if (script.parent / "__init__.py").exists():
        return f"python -m {script.parent.name}.{script.stem}"
    return f"python {sys.argv[0]}"


def command_line_keys() -> set[str]:
    """The config keys set on this hydra app's command line (`a.b=1`, `+a.b=1`, `~a` give `a.b`, `a.b`, `a`);
    empty outside a hydra app. Lets settings from elsewhere (a checkpoint's) yield to what the user typed."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return set()
    return {item.lstrip("+~").split("=", 1)[0] for item in HydraConfig.get().overrides.task}


def run(task: Callable[[Any], Any], config_name: str, positional: Sequence[str] = ()) -> None:
    """Run `task(cfg)` as a hydra app over `configs/<config_name>.yaml`.

    User errors (a missing folder or argument, a bad value) print one line and exit 2
    instead of a traceback.
    """
    sys.argv = [sys.argv[0], *positional_to_overrides(sys.argv[1:], positional)]

    @functools.wraps(task)
    def guarded(cfg: Any) -> Any:
        try:
            return task(cfg)
        except MissingMandatoryValue as err:
            usage = " ".join(n.upper() for n in positional)
            print(f"error: missing argument '{err.full_key}' (usage: {_program()} {usage} [key=value ...])",
                  file=sys.stderr)
        except (FileNotFoundError, FileExistsError, ValueError, UserError) as err:
            print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2)

    hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base=None)(guarded)()
