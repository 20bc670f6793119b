"""The sequence-tasks app's declared options, registered with Hydra, and the checks that run before any work.

Each part declares its options once, as a dataclass beside its code: the cell and the sizes
(``SequenceCellConfig``, ``SequenceModelConfig``: captioning/sequence/models.py), the four tasks
(``AddingTask``, ``ReverseTask``, ``CaptionColourTask``, ``ParaphraseTask``: problems.py), the training loop
and a whole run of scripts/sequence_tasks.py (``SequenceTrainConfig``, ``SequenceRunConfig``: train.py) and
the long-term-dependency sweep of scripts/long_term_dependency.py (``SweepConfig``: experiments.py).
``register_schemas`` stores them in Hydra's ConfigStore, where the yaml files in configs/sequence extend
them (``defaults: [/schema/sequence/<group>/<name>@...]``), so an unknown key or a wrong type fails at
composition and a yaml states only what differs from the declared defaults. ``run_problems`` and
``sweep_problems`` then name every value outside its range or choices at once; ``run_config`` and
``sweep_config`` raise with all of them, or return the typed config.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hydra.core.config_store import ConfigStore

from captioning.sequence.experiments import SweepConfig, sweep_fit_problems
from captioning.sequence.models import SequenceCellConfig
from captioning.sequence.problems import TASKS, task_config, task_schema
from captioning.sequence.train import SequenceRunConfig, loop_fit_problems
from captioning.utils.schema import ConfigError, build, plain, problems


def register_schemas() -> None:
    """Store the app's schemas in Hydra's ConfigStore (idempotent): ``sequence_schema`` and
    ``long_term_dependency_schema`` for the roots, ``schema/sequence/<group>/<name>`` for the groups."""
    store = ConfigStore.instance()
    store.store(name="sequence_schema", node=SequenceRunConfig)
    store.store(name="long_term_dependency_schema", node=SweepConfig)
    store.store(group="schema/sequence/cell", name="cell", node=SequenceCellConfig)
    for name, schema in TASKS.items():
        store.store(group="schema/sequence/task", name=name, node=schema)


def run_problems(cfg: Any) -> list[str]:
    """One line per bad value of configs/sequence/sequence.yaml (the task's own options included)."""
    values = plain(cfg)
    found = [p.removeprefix(".") for p in problems(SequenceRunConfig, values, "")]
    task = values["task"] if "task" in values else None
    try:
        found += problems(task_schema(task if isinstance(task, dict) else {}), task, "task")
    except ValueError as exc:  # no task, or an unknown one
        found.append(f"task: {exc}")
    else:
        lengths = {**plain(TASKS[task["name"]]()), **task}
        if task["name"] == "reverse" and all(isinstance(lengths[k], int) for k in ("min_len", "max_len")) \
                and lengths["min_len"] > lengths["max_len"]:
            found.append(f"task.min_len must be <= task.max_len ({lengths['max_len']}), got {lengths['min_len']}")
    return found + loop_fit_problems(values["train"] if "train" in values else {}, "train")


def sweep_problems(cfg: Any) -> list[str]:
    """One line per bad value of configs/sequence/long_term_dependency.yaml."""
    values = plain(cfg)
    return [p.removeprefix(".") for p in problems(SweepConfig, values, "")] + sweep_fit_problems(values)


def _raise(found: list[str]) -> None:
    if found:
        raise ConfigError("invalid config:\n  " + "\n  ".join(found))  # a ValueError


def run_config(cfg: Any) -> SequenceRunConfig:
    """The typed run config (its task typed too); ValueError naming every bad value, before any work."""
    _raise(run_problems(cfg))
    run = build(SequenceRunConfig, cfg)
    return dataclasses.replace(run, task=task_config(run.task))


def sweep_config(cfg: Any) -> SweepConfig:
    """The typed sweep config; ValueError naming every bad value, before any work."""
    _raise(sweep_problems(cfg))
    return build(SweepConfig, cfg)
