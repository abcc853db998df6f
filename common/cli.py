"""Hydra entry points that also take plain positional arguments.

`python -m datasets.validate DIR` reads better than `dir=DIR`; `run` turns the
leading positional arguments into quoted hydra overrides (so paths with spaces
or colons, as DROID's folder names have, survive) and starts the hydra app.
"""

from __future__ import annotations

import functools
import os
import shlex
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
    orig = getattr(sys, "orig_argv", [])
    if "-m" in orig[1:-1]:
        return f"python -m {orig[orig.index('-m') + 1]}"
    script = Path(sys.argv[0])
    if not orig and (script.resolve().parent / "__init__.py").exists():
        return f"python -m {script.resolve().parent.name}.{script.stem}"
    return f"python {sys.argv[0]}"


def command_line(add: Sequence[str] = ()) -> str:
    """The command that started this process, with the overrides in `add` appended (replacing the same keys):
    what to type to run it again, e.g. with `resume=true`."""
    key = lambda arg: arg.split("=", 1)[0].lstrip("+~")  # noqa: E731
    replaced = {key(a) for a in add}
    args = [a for a in sys.argv[1:] if key(a) not in replaced] + list(add)
    program = _program()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # a torchrun worker: the user typed torchrun
        program = f"torchrun --nproc_per_node={os.environ.get('LOCAL_WORLD_SIZE', os.environ['WORLD_SIZE'])} {sys.argv[0]}"
    return " ".join([program, shlex.join(args)]).strip()


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
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        raise SystemExit(2)

    hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base=None)(guarded)()
