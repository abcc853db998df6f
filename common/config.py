"""Typed configuration: hydra's config becomes plain dataclasses once, in `main()`; below it, plain arguments.

`build_config(Cls, mapping)` builds a (nested) dataclass from a mapping (an OmegaConf node or a dict):
nested dataclass fields are built recursively, lists become tuples where the field is a tuple, and an
unknown key is a `ConfigError` naming the key and the valid ones (hydra's `+key=value` would otherwise
let a typo through to a `TypeError` deep inside).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting that does not exist or has the wrong shape; the message names it."""


def plain(cfg: Any) -> Any:
    """An OmegaConf node (resolved) or anything else as plain Python containers."""
    if type(cfg).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    return cfg


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass type in `hint` (`X`, `X | None`, `Optional[X]`), if any."""
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg):
                return arg
    return None


def _list_of_dataclass(hint: Any) -> type | None:
    if typing.get_origin(hint) is list and typing.get_args(hint) and dataclasses.is_dataclass(typing.get_args(hint)[0]):
        return typing.get_args(hint)[0]
    return None


def _is_tuple(hint: Any) -> bool:
    if typing.get_origin(hint) is tuple or hint is tuple:
        return True
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and any(
        typing.get_origin(a) is tuple for a in typing.get_args(hint))


def build_config(cls: type[T], values: Any, where: str = "") -> T:
    """`cls(**values)` with nested dataclasses built too; unknown keys raise `ConfigError`."""
    values = plain(values)
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping of settings, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown setting{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(prefix + str(k) for k in unknown)}; valid: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in values.items():
        hint = hints.get(name)
        nested = _dataclass_in(hint)
        key = f"{where}.{name}" if where else name
        if nested is not None and isinstance(value, Mapping):
            value = build_config(nested, value, key)
        elif _list_of_dataclass(hint) is not None and isinstance(value, list):
            value = [build_config(_list_of_dataclass(hint), v, f"{key}[{i}]") if isinstance(v, Mapping) else v
                     for i, v in enumerate(value)]
        elif isinstance(value, list) and _is_tuple(hint):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain, JSON-ready containers."""
    return dataclasses.asdict(config)
