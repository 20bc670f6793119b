"""Write every command's help page from its declared options: `python -m captioning.commands.write_help`.

A page (captioning/commands/help/<command>.txt) is the command's docstring, its config groups with their
choices, and every option of its composed config with its default and the doc string its schema declares
(``option(default, doc, ...)``, captioning/utils/schema.py). ``--help`` prints the page without importing
the schemas (they live beside torch code); tests/test_commands.py fails when a page is out of date, and
this module rewrites them.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import sys
import textwrap
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write

import captioning.commands
from captioning.commands.cli import HELP_DIR, HydraCommand
from captioning.utils.io import atomic_write

WIDTH = 110  # characters per line of a page
KEY_COLUMN = 40  # where the docs start when key=value is short enough
FLAGS = """Hydra's flags: --cfg job (print the composed config and exit), -m key=a,b (one run per value),
--config-dir DIR (a folder of your own configs, searched first), --info, --hydra-help."""


def hydra_commands() -> list[HydraCommand]:
    """Every command in captioning/commands whose ``main`` is a Hydra command, by name."""
    found = []
    for info in pkgutil.iter_modules(captioning.commands.__path__):
        main = getattr(importlib.import_module(f"captioning.commands.{info.name}"), "main", None)
        if isinstance(main, HydraCommand):
            found.append(main)
    return sorted(found, key=lambda c: c.name)


def value_text(value: Any) -> str:
    """A default as it is written on the command line (null, true, [a,b], raw ${interpolations})."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{value_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str) and (not value or value != value.strip() or not value.isprintable()):
        return repr(value)  # '' or a newline, shown as such
    return str(value)


def field_docs(schema: Any) -> dict[str, str]:
    """{option: doc} of a declared schema (empty for a plain dict node)."""
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        return {}
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(schema)}


def entry(key: str, doc: str, indent: str) -> list[str]:
    """``key=default`` with its doc beside it (or below it, when the key is long), wrapped."""
    head = indent + key
    if not doc:
        return [head]
    if len(head) + 2 <= KEY_COLUMN:
        first, rest_indent = head.ljust(KEY_COLUMN), " " * KEY_COLUMN
        return textwrap.wrap(doc, WIDTH, initial_indent=first, subsequent_indent=rest_indent,
                             break_on_hyphens=False)  # "log-probability" stays one word, searchable
    return [head] + textwrap.wrap(doc, WIDTH, initial_indent=indent + "    ", subsequent_indent=indent + "    ",
                                  break_on_hyphens=False)


def is_section(node: Any) -> bool:
    """Whether ``node`` is a non-empty mapping of options (not null, not an interpolation)."""
    return isinstance(node, DictConfig) and not node._is_none() and not node._is_interpolation() and len(node) > 0


def option_lines(node: DictConfig, prefix: str, indent: str = "  ", shown: set | None = None) -> list[str]:
    """One entry per option of ``node`` (nested sections after the plain options), docs from its schema;
    a doc already in ``shown`` (an earlier section of the same dict) is not repeated."""
    docs = field_docs(OmegaConf.get_type(node))
    leaves, sections = [], []
    for key in node.keys():
        child, name, doc = node._get_node(key), f"{prefix}{key}", docs.get(key, "")
        if shown is not None:
            doc, _ = ("" if doc in shown else doc), shown.add(doc)
        if not is_section(child):
            leaves += entry(f"{name}={value_text(child._value())}", doc, indent)
            continue
        sections += ["", *entry(f"{name}.*", doc, indent)]
        if field_docs(OmegaConf.get_type(child)):
            sections += option_lines(child, f"{name}.", indent)
        else:  # a dict of sections by name (schedule.stages) or of plain values
            seen: set = set()
            for sub in child.keys():
                item = child._get_node(sub)
                sections += (option_lines(item, f"{name}.{sub}.", indent, seen) if is_section(item)
                             else entry(f"{name}.{sub}={value_text(item._value())}", "", indent))
    return leaves + sections


def group_lines(command: HydraCommand, choices: dict) -> list[str]:
    """The command's own config groups (not Hydra's or the internal schema/*): each choice, the default marked."""
    lines = []
    for group, default in reversed(choices.items()):  # Hydra lists them last first
        if "/" in group or "@" in group or group == "hydra":
            continue
        folder = Path(command.config_path) / group
        names = sorted(p.stem for p in folder.glob("*.yaml"))
        marked = [f"{n}*" if n == default else n for n in names]
        head = f"  {group}{'' if default else ' (optional)'}: "
        lines += textwrap.wrap(", ".join(marked), WIDTH, initial_indent=head, subsequent_indent="      ")
    return lines


def help_text(command: HydraCommand) -> str:
    """The help page of ``command``: its docstring, groups and every option of its default config."""
    command.register()
    with initialize_config_dir(config_dir=command.config_path, version_base="1.3"):
        cfg = compose(command.config_name, return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    with read_write(cfg), open_dict(cfg):  # keep the schema types; drop only Hydra's own node
        del cfg["hydra"]
    doc = (sys.modules[command.task.__module__].__doc__ or command.name).strip()
    lines = [doc, ""] + ([command.epilog().rstrip(), ""] if command.epilog else [])
    groups = group_lines(command, choices)
    if groups:
        lines += ["Config groups (group=choice; * marks the default):", *groups, ""]
    lines += ["Options (key=default, then what it does); give any as key=value:", *option_lines(cfg, ""), "",
              *FLAGS.splitlines()]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def write_pages(folder: Path = HELP_DIR) -> list[Path]:
    """Write every Hydra command's help page into ``folder``; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for command in hydra_commands():
        path = folder / f"{command.name}.txt"
        with atomic_write(path) as f:
            f.write(help_text(command))
        written.append(path)
    return written


if __name__ == "__main__":
    for page in write_pages():
        print(f"wrote {page}")
