"""The sequence-tasks app's declared options, registered with Hydra, and the checks that run before any work.

Each part declares its options once, as a dataclass beside its code: the cell and the sizes
(``SequenceCellConfig``, ``SequenceModelConfig``: captioning/sequence/models.py), the four tasks
(``AddingTask``, ``ReverseTask``, ``CaptionColourTask``, ``ParaphraseTask``: problems.py), the training loop
and a whole run of captioning-sequence-tasks (``SequenceTrainConfig``, ``SequenceRunConfig``: train.py) and
the long-term-dependency sweep of scripts/long_term_dependency.py (``SweepConfig``: experiments.py).
``register_schemas`` stores them in Hydra's ConfigStore, where the yaml files in configs/sequence extend
them (``defaults: [/schema/sequence/<group>/<name>@...]``), so an unknown key or a wrong type fails at
composition and a yaml states only what differs from the declared defaults. ``check`` then names every
value outside its range or choices at once (a ConfigError), or returns the typed config.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hydra.core.config_store import ConfigStore

from captioning.sequence.experiments import SweepConfig, sweep_fit_problems
from captioning.sequence.models import SequenceCellConfig
from captioning.sequence.problems import TASKS, task_config, task_schema
from captioning.sequence.train import SequenceRunConfig, loop_fit_problems
from captioning.utils.schema import build, plain, problems, refuse


def register_schemas() -> None:
    """Store the app's schemas in Hydra's ConfigStore (idempotent): ``sequence_schema`` and
    ``long_term_dependency_schema`` for the roots, ``schema/sequence/<group>/<name>`` for the groups."""
    store = ConfigStore.instance()
    store.store(name="sequence_schema", node=SequenceRunConfig)
    store.store(name="long_term_dependency_schema", node=SweepConfig)
    store.store(group="schema/sequence/cell", name="cell", node=SequenceCellConfig)
    for name, schema in TASKS.items():
        store.store(group="schema/sequence/task", name=name, node=schema)


def task_problems(task: Any) -> list[str]:
    """One line per bad value of the ``task`` node, checked against the schema its ``name`` chooses."""
    try:
        found = problems(task_schema(task if isinstance(task, dict) else {}), task, "task")
    except ValueError as exc:  # no task, or an unknown one
        return [f"task: {exc}"]
    lengths = {**plain(TASKS[task["name"]]()), **task}
    if task["name"] == "reverse" and all(isinstance(lengths[k], int) for k in ("min_len", "max_len")) \
            and lengths["min_len"] > lengths["max_len"]:
        found.append(f"task.min_len must be <= task.max_len ({lengths['max_len']}), got {lengths['min_len']}")
    return found


def check(schema: type, cfg: Any) -> SequenceRunConfig | SweepConfig:
    """The typed ``schema`` instance of a composed config (SequenceRunConfig: configs/sequence/sequence.yaml, its
    task typed too; SweepConfig: long_term_dependency.yaml); a ConfigError naming every bad value, before any
    work. The app's one reader of a whole config: each node's own checks get that node."""
    values = plain(cfg)
    found = [p.removeprefix(".") for p in problems(schema, values, "")]
    if schema is SequenceRunConfig:
        found += task_problems(values["task"] if "task" in values else None)
        found += loop_fit_problems(values["train"] if "train" in values else {}, "train")
    else:
        merged = {**plain(SweepConfig()), **values}
        found += sweep_fit_problems(merged["train"], merged["lengths"], merged["variants"], merged["probe"])
    refuse(found)
    typed = build(schema, cfg)
    return dataclasses.replace(typed, task=task_config(typed.task)) if schema is SequenceRunConfig else typed
