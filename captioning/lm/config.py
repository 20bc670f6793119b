"""The character-model app's declared options, registered with Hydra, and the checks that run before any work.

Each part declares its options once, as a dataclass beside its code: the corpus (``CorpusConfig``,
captioning/lm/corpus.py), the cell and the layers around it (``CharCellConfig``, ``CharModelConfig``,
captioning/lm/model.py), the transformer that the `cell` group also offers (``TransformerConfig``,
captioning/lm/transformer.py) and the schedule (``TrainConfig``, captioning/lm/train.py). The three scripts'
own options are below: ``LMRunConfig`` (captioning-train-lm, configs/lm/lm.yaml), ``SampleConfig``
(captioning-sample-lm) and ``VizConfig`` (captioning-visualize-cells). ``register_schemas`` stores them
in Hydra's ConfigStore, where the yaml files in configs/lm extend them
(``defaults: [/schema/lm/<group>/<name>@_here_]``), so an unknown key or a wrong type fails at composition
and a yaml states only what differs from the declared defaults. The ``*_problems`` functions then name
every value outside its range or choices at once; ``check`` raises with all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from hydra.core.config_store import ConfigStore

from captioning.lm.corpus import CorpusConfig
from captioning.lm.model import CharCellConfig, CharModelConfig
from captioning.lm.train import TrainConfig, schedule_fit_problems
from captioning.lm.transformer import NAME as TRANSFORMER, TransformerConfig, transformer_problems
from captioning.nn.cells import BACKENDS, CELLS
from captioning.utils.schema import build, option, plain, problems, refuse


@dataclass
class LMRunConfig:
    """configs/lm/lm.yaml: a training run of the character model (captioning-train-lm)."""

    seed: int = option(1337, "seeds the weights, the dropout and the sampling", ge=0)
    threads: int | None = option(None, "torch CPU threads for the whole process; null = torch's default", ge=1)
    backend: str = option("fused", "fused: torch's kernel on our parameters | scratch: our cells step by step",
                          choices=BACKENDS)
    val_fraction: float = option(0.1, "the last fraction of the text, held out for validation", gt=0.0, lt=1.0)
    out_dir: str = option("outputs/lm/${corpus.name}-${cell.name}", "checkpoint (ckpt.pt) and history.json")
    resume: bool = option(False, "continue from <out_dir>/ckpt.pt if it exists")
    model: CharModelConfig = option(CharModelConfig(), "the layers around the cell")
    corpus: CorpusConfig = option(CorpusConfig(), "the text (configs/lm/corpus)")
    # one schema per choice (CELL_SCHEMAS): the yaml of the chosen cell brings its own typed options
    cell: Any = option(None, "the sequence model: a recurrent cell (rnn, lstm, gru) or the transformer "
                       "(configs/lm/cell); null = CharCellConfig's defaults")
    schedule: TrainConfig = option(TrainConfig(), "batches, optimiser and budgets (configs/lm/schedule)")


@dataclass
class SampleConfig:
    """configs/lm/sample.yaml: sampling text from a trained model (captioning-sample-lm)."""

    checkpoint: str = option("outputs/lm/shakespeare-lstm/ckpt.pt", "a checkpoint written by captioning-train-lm")
    length: int = option(1000, "characters generated after the prime", ge=0)
    prime: str = option("\n", "text the model reads first: at least one character, each one seen in training")
    temperature: float = option(1.0, "divides the logits: below 1 safer and more repetitive, above 1 more varied; "
                                "0 = argmax", ge=0.0)
    top_k: int | None = option(None, "sample only among the k most likely characters; null = all", ge=1)
    seed: int | None = option(None, "the same seed gives the same text; null = different every time", ge=0)


@dataclass
class VizConfig:
    """configs/lm/viz.yaml: rank and render the cells of a trained model (captioning-visualize-cells)."""

    checkpoint: str = option("outputs/lm/${corpus.name}-lstm/ckpt.pt", "a checkpoint written by captioning-train-lm")
    text_file: str | None = option(None, "read this file; null = the start of the corpus's validation text")
    chars: int = option(20_000, "characters recorded (more: steadier correlations, a slower scratch run)", ge=1)
    top_k: int = option(3, "cells shown per signal", ge=1)
    cells: list[str] = option([], "extra cells to render, labelled like c0.17 (layer 0, unit 17) or h0.3")
    html_chars: int = option(3000, "characters shown in cells.html", ge=1)
    png_chars: int = option(800, "characters in each best_<signal>.png", ge=1)
    out_dir: str = option("outputs/lm/viz/${corpus.name}", "ranking.json, cells.html and the PNGs")
    corpus: CorpusConfig = option(CorpusConfig(), "the text and its language (configs/lm/corpus)")


CELL_SCHEMAS: dict[str, type] = {**{name: CharCellConfig for name in CELLS}, TRANSFORMER: TransformerConfig}


def register_schemas() -> None:
    """Store the app's schemas in Hydra's ConfigStore (idempotent): ``lm_schema``, ``lm_sample_schema`` and
    ``lm_viz_schema`` for the roots, ``schema/lm/<group>/<name>`` for the groups' yaml files to extend."""
    store = ConfigStore.instance()
    store.store(name="lm_schema", node=LMRunConfig)
    store.store(name="lm_sample_schema", node=SampleConfig)
    store.store(name="lm_viz_schema", node=VizConfig)
    store.store(group="schema/lm/corpus", name="corpus", node=CorpusConfig)
    store.store(group="schema/lm/cell", name="cell", node=CharCellConfig)
    store.store(group="schema/lm/cell", name=TRANSFORMER, node=TransformerConfig)
    store.store(group="schema/lm/schedule", name="schedule", node=TrainConfig)


def corpus_problems(corpus: Any, prefix: str = "corpus") -> list[str]:
    """A corpus with no path to read (custom and latex state none: the command line gives them)."""
    values = {**plain(CorpusConfig()), **plain(corpus)}
    if values["paths"] == []:
        return [f"{prefix}.paths is empty: set it to files, folders or globs, e.g. '{prefix}.paths=[my_text.txt]'"]
    return []


def cell_problems(cell: Any, prefix: str = "cell") -> list[str]:
    """One line per bad value of the `cell` group, checked against the schema its ``name`` chooses."""
    values = plain(cell)
    name = values.get("name", CharCellConfig.name)
    if name not in CELL_SCHEMAS:
        return [f"{prefix}.name must be one of {tuple(CELL_SCHEMAS)}, got {name!r}"]
    found = problems(CELL_SCHEMAS[name], values, prefix)
    return found + (transformer_problems(values, prefix) if name == TRANSFORMER else [])


def cell_config(cell: Any) -> CharCellConfig | TransformerConfig:
    """The typed options of the `cell` group (CharCellConfig's defaults when none are given)."""
    values = plain(cell)
    return build(CELL_SCHEMAS[values.get("name", CharCellConfig.name)], values)


def window_problems(schedule: dict, cell: Any) -> list[str]:
    """The transformer's evaluation window must fit in its block (checked once both nodes are valid)."""
    if (plain(cell) or {}).get("name") != TRANSFORMER:
        return []
    window, block = {**plain(TrainConfig()), **schedule}["eval_window"], cell_config(cell).block_size
    return [f"schedule.eval_window ({window}) must be <= cell.block_size ({block}): the transformer "
            "reads no more than its block"] if window > block else []


def prime_problems(prime: Any) -> list[str]:
    """A sample's prime starts the text: it needs a character."""
    return ["prime must hold at least one character (e.g. a newline) to start from"] if prime == "" else []


def check(schema: type, cfg: Any) -> Any:
    """The typed ``schema`` instance of a composed char-LM config (LMRunConfig: configs/lm/lm.yaml, its ``cell``
    typed by its choice; SampleConfig: sample.yaml; VizConfig: viz.yaml); a ConfigError naming every bad value,
    before any work. The app's one reader of a whole config: each node's own checks get that node."""
    values = plain(cfg)
    found = [p.removeprefix(".") for p in problems(schema, values, "")]
    if schema is LMRunConfig:
        schedule = values["schedule"] if "schedule" in values else {}
        found += cell_problems(values.get("cell"))
        found += corpus_problems(values["corpus"] if "corpus" in values else {})
        found += schedule_fit_problems(schedule, "schedule")
        found += window_problems(schedule, values.get("cell")) if not found else []
    elif schema is SampleConfig:
        found += prime_problems(values.get("prime"))
    elif schema is VizConfig:
        merged = {**plain(VizConfig()), **values}
        found += [] if merged["text_file"] else corpus_problems(merged["corpus"])
    refuse(found)
    typed = build(schema, cfg)
    return replace(typed, cell=cell_config(typed.cell)) if schema is LMRunConfig else typed
