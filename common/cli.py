"""Hydra entry points that also take plain positional arguments, answer `--help` and check overrides first.

`python -m datasets.validate DIR` reads better than `dir=DIR`; `run` turns the
leading positional arguments into quoted hydra overrides (so paths with spaces
or colons, as DROID's folder names have, survive) and starts the hydra app.

Before anything slow, `preflight` composes the config once: `--help` prints the command's usage, its
positional arguments, its config groups and every setting with its current value and its meaning (the
YAML comments); an override hydra cannot apply, an unknown setting or option, and a missing mandatory
value are one line and exit 2. A command whose module imports torch (or mujoco, timm) calls `preflight`
at its top, before those imports, so that these answers take a second, not a minute; `run` calls it too.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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


#: Settings a command-line value replaces instead of merging into: hydra merges a dict into a dict and refuses a
#: dict over a list, so `fixed_dims={}` would keep the default `[3, 4, 5, 6]` or fail. Matched by the key's last part.
REPLACED = ("fixed_dims",)


def replacing_overrides(config_name: str, overrides: Sequence[str]) -> list[str]:
    """`overrides` with each `key=VALUE` of a `REPLACED` setting the config has turned into `~key +key=VALUE`
    (so `fixed_dims={}`, `fixed_dims=[]` and `fixed_dims=null` all hold no dims, and `{6: 1.0}` replaces a list)."""
    def replaced(item: str) -> bool:
        return "=" in item and not item.startswith(("+", "~")) and item.split("=", 1)[0].rsplit(".", 1)[-1] in REPLACED

    if not any(replaced(o) for o in overrides):
        return list(overrides)
    from omegaconf import OmegaConf

    rest = [o for o in overrides if not replaced(o)]
    try:
        cfg, _ = _compose(config_name, rest)
    except Exception:  # noqa: BLE001 - the other overrides' own error is reported when the whole list is composed
        return list(overrides)
    out = []
    for item in overrides:
        key = item.split("=", 1)[0]
        exists = replaced(item) and OmegaConf.select(cfg, key, default="<absent>") != "<absent>"
        out += [f"~{key}", f"+{item}"] if exists else [item]
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


def command_line_keys() -> set[str]:
    """The config keys set on this hydra app's command line (`a.b=1`, `+a.b=1`, `~a` give `a.b`, `a.b`, `a`);
    empty outside a hydra app. Lets settings from elsewhere (a checkpoint's) yield to what the user typed."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return set()
    return {item.lstrip("+~").split("=", 1)[0] for item in HydraConfig.get().overrides.task}


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


# -- help: the YAML files' comments -------------------------------------------------------------------------

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w\-]*)\s*:(?:\s|$)")


def _split_comment(line: str) -> tuple[str, str]:
    """(code, comment) of one YAML line: the first `#` outside quotes that follows a blank."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


@functools.cache
def _yaml_file(path: Path) -> tuple[list[str], dict[str, str], list[str], bool]:
    """(header comment lines, dotted key -> comment, configs it includes by name, whether it is `_global_`)."""
    header: list[str] = []
    comments: dict[str, str] = {}
    includes: list[str] = []
    stack: list[tuple[int, str]] = []
    global_package, in_header = False, True
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if text.startswith("@package"):
                global_package = text.split()[-1] == "_global_"
            elif in_header:
                header.append(text)
            continue
        if not stripped:
            continue
        in_header = False
        code, comment = _split_comment(line)
        if stripped.startswith("-"):  # a defaults-list entry naming another config: `- cem_goal`
            name = code.strip().lstrip("-").strip()
            if stack and stack[-1][1] == "defaults" and re.fullmatch(r"[\w]+", name) and name != "_self_":
                includes.append(name)
            continue
        match = _KEY.match(code)
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if comment:
            comments[".".join(k for _, k in stack)] = comment
    return header, comments, includes, global_package


def _config_comments(config_name: str, choices: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """(the primary config's header lines, dotted key -> comment over every file the config is made of)."""
    header, comments, _, _ = _yaml_file(CONFIG_DIR / f"{config_name}.yaml")
    merged: dict[str, str] = {}
    pending, seen = [config_name], set()
    while pending:  # the config and the ones its defaults list names (serve.yaml includes cem_goal.yaml)
        name = pending.pop(0)
        if name in seen or not (CONFIG_DIR / f"{name}.yaml").exists():
            continue
        seen.add(name)
        _, found, includes, _ = _yaml_file(CONFIG_DIR / f"{name}.yaml")
        merged = {**found, **merged}
        pending += includes
    for group, option in choices.items():  # the chosen option of each group (model: lewm, experiment: ...)
        path = CONFIG_DIR / group / f"{option}.yaml"
        if option and path.exists():
            _, found, _, global_package = _yaml_file(path)
            prefix = "" if global_package else f"{group}."
            merged = {**{prefix + k: v for k, v in found.items()}, **merged}
    return header, merged


def _option_description(header: list[str]) -> str:
    return next((line for line in header if not re.match(r"(python|torchrun)\b", line)), "")


def _group_options(group: str, program: str) -> list[tuple[str, str]]:
    """(option, description) of a config group; presets that name another command in their comments are left out."""
    name = program.split()[-1]  # python -m pkg.mod | python path/to/script.py
    script = re.escape(name.rsplit(".", 1)[-1] if " -m " in program else Path(name).stem)
    options = []
    for path in sorted((CONFIG_DIR / group).glob("*.yaml")):
        header = _yaml_file(path)[0]
        commands = [line for line in header if re.match(r"(python|torchrun)\b", line)]
        if commands and not any(re.search(rf"(^|[\s/.]){script}(\.py)?(\s|$)", c) for c in commands):
            continue
        options.append((path.stem, _option_description(header)))
    return options


def _value(v: Any) -> str:
    """A value as one writes it in an override."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list | tuple):
        return "[" + ",".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def _settings(node: Any, prefix: str = "") -> list[tuple[str, Any, bool]]:
    """(dotted key, value, is a section) in file order; mappings of identifiers are sections."""
    out = []
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and all(isinstance(k, str) and k.isidentifier() for k in value):
            out.append((dotted, None, True))
            out += _settings(value, dotted + ".")
        else:
            out.append((dotted, value, False))
    return out


def _row(left: str, text: str, width: int = 30) -> str:
    left = f"  {left}"
    if not text:
        return left
    return f"{left:<{width}} {text}" if len(left) < width else f"{left}  {text}"


def help_text(config_name: str, positional: Sequence[str] = (), overrides: Sequence[str] = (),
              description: str | None = None) -> str:
    """The `--help` page of a command: usage, what it does, positional arguments, groups, settings, examples."""
    cfg, choices = _compose(config_name, list(overrides))
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(cfg, resolve=False)
    header, comments = _config_comments(config_name, choices)
    program = _program()
    groups = "".join(f" [{g}=NAME]" for g in sorted(choices))
    lines = [f"usage: {program}{''.join(' ' + n.upper() for n in positional)}{groups} [key=value ...]"]
    if description:
        lines += ["", description.strip().split("\n\n")[0].strip()]
    if positional:
        lines += ["", "positional arguments (or NAME=value):"]
        lines += [_row(n.upper(), comments.get(n, "") + ("" if values.get(n) == "???" else
                                                        f" [default {_value(values.get(n))}]")) for n in positional]
    if choices:
        lines += ["", "config groups (group=NAME; NAME a file in configs/<group>/):"]
        for group, option in sorted(choices.items()):
            lines.append(_row(f"{group}=NAME", f"now: {_value(option)}"))
            lines += [_row(f"  {name}", text) for name, text in _group_options(group, program)]
    lines += ["", "settings (key=value, shown with the value they take now; ??? = required):"]
    for key, value, section in _settings(values):
        if key in positional:
            continue
        if section:
            if comments.get(key):
                lines.append(_row(f"{key}.*", comments[key]))
            continue
        lines.append(_row(f"{key}={_value(value)}", comments.get(key, "")))
    examples = [line for line in header if re.match(r"(python|torchrun)\b", line)]
    if examples:
        lines += ["", "examples:"] + [f"  {e}" for e in examples]
    lines += ["", ("Settings of a group option change with it: put group=NAME before --help to see them. "
                   if choices else "") + "Hydra's own options: --hydra-help."]
    return "\n".join(lines)


# -- checks before anything slow ------------------------------------------------------------------------------

def _compose(config_name: str, overrides: list[str]) -> tuple[Any, dict[str, Any]]:
    """The composed config (without hydra's node) and the chosen option of each of its groups."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra/") and k != "hydra"}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def _composition_error(err: Exception, config_name: str, overrides: list[str]) -> str:
    """Hydra's composition errors as one line: an unknown setting with the valid ones, an unknown option."""
    from hydra.errors import MissingConfigException

    message = str(err)
    unknown = re.match(r"Could not override '([^']+)'", message)
    if unknown:
        key = unknown.group(1)
        parent, _, name = key.rpartition(".")
        groups = [o for o in overrides if "." not in o.split("=")[0] and not o.startswith(("+", "~"))]
        try:
            node, _ = _compose(config_name, [o for o in groups if not o.startswith(f"{key}=")])
            for part in filter(None, parent.split(".")):
                node = node[part]
            valid = ", ".join(sorted(str(k) for k in node))
        except Exception:  # noqa: BLE001 - the plain message is still better than a traceback
            valid = "see --help"
        value = next((o.split("=", 1)[1] for o in overrides if o.startswith(f"{key}=")), "VALUE")
        return (f"unknown setting {key} ({parent or 'the config'} has: {valid}); to add a setting the config "
                f"does not list, write +{key}={value}")
    multiple = re.match(r"Multiple values for (\S+)\.", message)
    added = next((o for o in overrides if multiple and o.startswith(f"+{multiple.group(1)}=")), None)
    if added:  # `+experiment=NAME`, as older instructions wrote it
        return f"{multiple.group(1)} is a config group: write {added[1:]} (without the +)"
    if isinstance(err, MissingConfigException) and getattr(err, "options", None) is not None:
        group = Path(str(err.missing_cfg_file)).parent.as_posix()
        option = Path(str(err.missing_cfg_file)).name
        return f"unknown {group} {option!r}; options: {', '.join(err.options)}"
    return " ".join(message.split("\n")[0].split())


_checked: dict[str, Any] = {}


def preflight(config_name: str, positional: Sequence[str] = (), description: str | None = None) -> Any:
    """Answer `--help` and refuse bad overrides before the caller's heavy imports; returns the composed config.

    Exits 0 after the help page, 2 after a one-line error. Called again (by `run`), it does nothing."""
    if config_name in _checked:
        return _checked[config_name]
    argv = sys.argv[1:]
    overrides = positional_to_overrides([a for a in argv if a not in ("--help", "-h")], positional)
    if not any(a.startswith("-") and a not in ("--help", "-h") for a in argv):
        overrides = replacing_overrides(config_name, overrides)
    if description is None:
        description = getattr(sys.modules.get("__main__"), "__doc__", None)
    from hydra.errors import HydraException, OverrideParseException

    try:
        if "--help" in argv or "-h" in argv:
            _print_page(help_text(config_name, positional, overrides, description))
            raise SystemExit(0)
        if any(a.startswith("-") for a in argv):  # hydra's own flags (--cfg job, --hydra-help, -m): hydra's business
            _checked[config_name] = None
            return None
        cfg, _ = _compose(config_name, overrides)
    except OverrideParseException as err:
        _fail(f"cannot read the override: {' '.join(str(err).split())}")
    except HydraException as err:
        _fail(_composition_error(err, config_name, overrides))
    from omegaconf import OmegaConf

    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        key = next((k for k in missing if k in positional), missing[0])
        usage = " ".join(n.upper() for n in positional)
        _fail(f"missing argument '{key}' (usage: {_program()} {usage + ' ' if usage else ''}"
              f"{'' if key in positional else key + '=... '}[key=value ...]; --help lists the settings)")
    _checked[config_name] = cfg
    return cfg


def _print_page(text: str) -> None:
    """Print to stdout; a reader that stops early (`| head`) is no error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run(task: Callable[[Any], Any], config_name: str, positional: Sequence[str] = ()) -> None:
    """Run `task(cfg)` as a hydra app over `configs/<config_name>.yaml`.

    `--help` and bad overrides are answered first (`preflight`). User errors (a missing folder or argument,
    a bad value) print one line and exit 2 instead of a traceback; Ctrl-C prints one line and exits 130.
    """
    preflight(config_name, positional)
    overrides = positional_to_overrides(sys.argv[1:], positional)
    if not any(a.startswith("-") for a in overrides):
        overrides = replacing_overrides(config_name, overrides)
    sys.argv = [sys.argv[0], *overrides]

    @functools.wraps(task)
    def guarded(cfg: Any) -> Any:
        from omegaconf.errors import MissingMandatoryValue

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

    import hydra

    hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base=None)(guarded)()
