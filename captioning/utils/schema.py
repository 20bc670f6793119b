"""Declared options: each component states its options once, as a dataclass whose fields carry the
default, a one-line doc and the allowed values or range. Hydra's ConfigStore holds the same dataclasses
(captioning/config.py), so a yaml file or a command line naming an unknown key or a wrong type fails
at composition; ``problems`` names every value outside its range or choices at once, before any work,
and the combinations a schema's ``cross_problems(values, prefix)`` static method rejects.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Sequence

from omegaconf import OmegaConf


class ConfigError(ValueError):
    """A config value that cannot work: the message names every such value and what it may be (``problems``:
    one line each, when the error is a whole config's check)."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


def refuse(found: Sequence[str]) -> None:
    """Raise a ConfigError naming every problem of ``found`` at once (none: nothing happens)."""
    if found:
        raise ConfigError("invalid config:\n  " + "\n  ".join(found), found)


def option(default: Any, doc: str, *, choices: Sequence[Any] | None = None, ge: float | None = None,
           gt: float | None = None, lt: float | None = None, le: float | None = None) -> Any:
    """A dataclass field with its doc and checks (``choices``, or a range ``ge``/``gt``/``le``/``lt``)."""
    meta = {"doc": doc, "choices": tuple(choices) if choices is not None else None,
            "ge": ge, "gt": gt, "lt": lt, "le": le}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    if dataclasses.is_dataclass(default):  # a nested component's options
        return dataclasses.field(default_factory=lambda: dataclasses.replace(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def plain(node: Any) -> dict:
    """A resolved plain dict from an OmegaConf node, a dataclass instance or a mapping."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    if dataclasses.is_dataclass(node):
        return dataclasses.asdict(node)
    return dict(node or {})


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the annotation ``hint`` (int, float, bool, str, Optional, lists, dicts)."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    return True


def problems(schema: type, node: Any, prefix: str) -> list[str]:
    """One line per unknown key, wrong type, or value outside the declared range or choices of ``node``
    (a mapping or OmegaConf node) under ``schema``; nested dataclass fields are checked too."""
    values = plain(node)
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    out = [f"{prefix}.{k}: unknown option (known: {', '.join(fields)})" for k in values if k not in fields]
    for name, f in fields.items():
        if name not in values:
            continue
        value, hint, meta, key = values[name], hints[name], f.metadata, f"{prefix}.{name}"
        if not _type_ok(value, hint):
            out.append(f"{key} must be {_type_name(hint)}, got {value!r}")
            continue
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            out += problems(hint, value, key)
        elif typing.get_origin(hint) is dict and isinstance(value, dict):
            inner = typing.get_args(hint)[1] if typing.get_args(hint) else Any
            if dataclasses.is_dataclass(inner):
                for sub, v in value.items():
                    out += problems(inner, v, f"{key}.{sub}")
        if value is None or not meta:
            continue
        if meta.get("choices") is not None and isinstance(value, (list, tuple)):  # each item is a choice
            unknown = [v for v in value if v not in meta["choices"]]
            if unknown:
                out.append(f"{key}: unknown {unknown}; choose from {meta['choices']}")
        elif meta.get("choices") is not None and value not in meta["choices"]:
            out.append(f"{key} must be one of {meta['choices']}, got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out += _range(key, value, meta)
    # options that are fine one by one but not together: a schema may name them (``cross_problems``)
    cross = getattr(schema, "cross_problems", None)
    if cross is not None and not out:
        out += cross({**{name: default for name, default, _ in docs(schema)}, **values}, prefix)
    return out


def _range(key: str, value: float, meta: dict) -> list[str]:
    bounds = [("ge", ">=", lambda v, b: v >= b), ("gt", ">", lambda v, b: v > b),
              ("le", "<=", lambda v, b: v <= b), ("lt", "<", lambda v, b: v < b)]
    if not math.isfinite(value):
        return [f"{key} must be a finite number, got {value!r}"]
    wanted = [f"{sign} {meta[name]}" for name, sign, ok in bounds if meta.get(name) is not None]
    if all(ok(value, meta[name]) for name, _, ok in bounds if meta.get(name) is not None):
        return []
    return [f"{key} must be {' and '.join(wanted)}, got {value!r}"]


def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def build(schema: type, node: Any) -> Any:
    """The dataclass instance of ``node`` (defaults filled in); unknown keys and wrong types raise."""
    merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(plain(node)))
    return OmegaConf.to_object(merged)


def docs(schema: type) -> list[tuple[str, Any, str]]:
    """(name, default, doc) of each option, for help texts and the architecture docs."""
    out = []
    for f in dataclasses.fields(schema):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append((f.name, default, f.metadata.get("doc", "")))
    return out
