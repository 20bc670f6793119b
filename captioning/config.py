"""The configs' schemas: every component's declared options, registered with Hydra, and the checks
that run before any work.

Each component declares its options once, as a dataclass beside its code (``captioning.utils.schema``):
the caption models (``CaptionModel.Config``, registered by name), the cell (``CellConfig``), the schedule
(``ScheduleConfig`` of ``StageConfig`` stages), decoding (``DecodingConfig``), evaluation
(``EvaluateConfig``), the data (one schema per kind, ``DATA_SCHEMAS``), the encoder (``EncoderConfig``),
the metrics (``MetricsConfig``), the logger (``NoLoggerConfig``, ``WandbConfig``), the trainer
(``TrainerConfig``) and the runs themselves: ``RunConfig`` below (captioning-train), its extensions for
captioning-probe and captioning-extract, ``EvaluateRunConfig`` (captioning-evaluate), ``CaptionRunConfig``
(captioning-caption), ``GalleryRunConfig`` (captioning-render-examples) and the research tools' (``TOOL_SCHEMAS``;
make_results' and the search's live beside their code, captioning/experiments/results.py and search.py); captioning/commands/
has each command. ``register_schemas`` stores them in Hydra's ConfigStore, where the yaml files in
captioning/configs/ extend them
(``defaults: [/schema/<group>/<name>@_here_]``; the roots: ``/schema/run@_here_: train``), so an unknown
key or a wrong type fails at composition, and a yaml states only what differs from the declared defaults.
``config_problems`` then names every value outside its range or choices at once (``pipeline.run_options``
raises with them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore

from captioning.data.datasets import DATA_SCHEMAS, data_problems
from captioning.data.download import DATASETS
from captioning.evaluation.checkpoint import EvaluateRunConfig
from captioning.evaluation.scoring import EvaluateConfig, MetricsConfig, metrics_problems
from captioning.features.encoder import EncoderConfig, encoder_problems
from captioning.features.shards import parse_shard
from captioning.loggers import NoLoggerConfig, logger_problems
from captioning.wandb_logger import WandbConfig
from captioning.models.base import MODELS, model_class
from captioning.nn.cells import CellConfig
from captioning.nn.decoding import DecodingConfig
from captioning.training.loop import ScheduleConfig, schedule_problems
from captioning.utils.distributed import TrainerConfig
from captioning.utils.precision import PRECISIONS
from captioning.utils.schema import ConfigError, option, plain, problems

BAD_IMAGE_POLICIES = ("fail", "skip")


@dataclass
class RunConfig:
    """The run's own options (the top level of captioning/configs/train.yaml) and its typed sections."""

    seed: int = option(0, "seeds weights, batch order, dropout and sampling", ge=0)
    device: str = option("cpu", "cpu | cuda | auto (cuda when a GPU is visible)")
    num_threads: int | None = option(None, "torch CPU threads; null = torch's default", ge=1)
    precision: str = option("auto", "training steps: auto (bf16 where the device multiplies bfloat16 natively, "
                            "else fp32) | fp32 | bf16 (torch.autocast; weights and optimizer stay fp32)",
                            choices=PRECISIONS)
    cache_dir: str = option("${oc.env:CAPTIONING_CACHE,.cache}/features", "feature cache, shared across runs")
    resume: str | None = option(None, "a run directory (or its last.pt) to continue, in whatever stage it stopped; "
                                "auto: this run directory's own checkpoints/last.pt if it exists, else a fresh start")
    on_bad_image: str = option("fail", "fail | skip: an unreadable image stops the run or is dropped",
                               choices=BAD_IMAGE_POLICIES)
    decoding: DecodingConfig = option(DecodingConfig(), "how captions are generated for evaluation")
    evaluate: EvaluateConfig = option(EvaluateConfig(), "baselines and failure reports at the end of training")
    # the config groups (captioning/configs/<group>/*.yaml), each checked against its own schema
    data: Any = option(None, "the dataset (captioning/configs/data)")
    encoder: Any = option(None, "the image encoder (captioning/configs/encoder)")
    model: Any = option(None, "the caption model (captioning/configs/model; captioning/models)")
    cell: Any = option(None, "the model's recurrent cell (captioning/configs/cell)")
    schedule: Any = option(None, "the training stages (captioning/configs/schedule)")
    logger: Any = option(None, "none | wandb (captioning/configs/logger)")
    metrics: Any = option(None, "the metrics every evaluation reports (captioning/configs/metrics)")
    trainer: Any = option(None, "single | ddp (captioning/configs/trainer)")


@dataclass
class ProbeConfig:
    """Probes of the frozen features (captioning-probe, captioning/evaluation/probes.py)."""

    hidden: int = option(0, "0 = a linear probe; > 0 = a perceptron with one hidden layer of this width", ge=0)
    split: str = option("test", "where the probes are scored (they train on data.train_split)")
    epochs: int = option(60, "training epochs of each probe", ge=1)
    target: str = option("pair", "pair: each object's colour-shape pair as one class | attributes: colour and "
                         "shape probed apart, also scored on the objects whose pair training never shows",
                         choices=("pair", "attributes"))
    channels: list[int] | None = option(None, "[start, stop]: probe only these channels of each feature vector "
                                        "(e.g. [1280, 1320]: the layer encoder.hypercolumn appended to "
                                        "EfficientNet-Lite0's 1280) | null: all of them")


@dataclass
class ProbeRunConfig(RunConfig):
    """captioning/configs/probe.yaml (captioning-probe): the training config (same data, encoder and cache)
    plus the probes' options."""

    probe: ProbeConfig = option(ProbeConfig(), "the probes' options")


@dataclass
class ExtractRunConfig(RunConfig):
    """captioning/configs/extract.yaml (captioning-extract): the training config plus which shard to extract."""

    shard: str = option("0/1", "i/n: extract block i of n of every split (0/1 = everything)")
    merge: bool = option(True, "merge a split's shards as soon as all of them are finished")


@dataclass
class CaptionRunConfig:
    """captioning/configs/caption.yaml (captioning-caption): images in, one caption per image out, decoded
    with the same ``decoding`` options as evaluation; ``keep_beams`` as in ``Captioner.caption``."""

    checkpoint: str | None = option(None, "a run directory or a .pt file (required)")
    images: list[str] = option([], "image files and folders (searched for image files); the command's "
                               "positional arguments are appended here")
    decoding: DecodingConfig = option(DecodingConfig(batch_size=32), "how captions are generated (as for evaluation); "
                                      "batch_size: images read and captioned at once")
    keep_beams: int = option(0, "top beams printed under each caption with their log-probabilities "
                             "(decoding.method=beam)", ge=0)
    seed: int = option(0, "seeds decoding.method=sample", ge=0)
    attention: str | None = option(None, "a PNG to write: for attention models (show_attend_tell, transformer), "
                                   "each image and, per generated word, where the model looked")


@dataclass
class GalleryRunConfig:
    """captioning/configs/render_examples.yaml (captioning-render-examples): a run's captions drawn on its
    test images (captioning/evaluation/gallery.py)."""

    checkpoint: str | None = option(None, "the run directory (or its .pt file) whose data and model are drawn "
                                    "(required)")
    out: str = option("docs/figures/examples.png", "the PNG written")
    splits: list[str] = option(["test", "test_novel"], "splits of the run's own data to draw from")
    per_split: int = option(6, "images of each split, 1-, 2- and 3-object scenes mixed", ge=1)
    columns: int = option(0, "images per row; 0 = per_split", ge=0)
    seed: int = option(0, "picks the images and seeds decoding.method=sample", ge=0)
    title: str = option("", "a title above the grid")
    decoding: DecodingConfig = option(DecodingConfig(), "how captions are generated (as for evaluation)")


@dataclass
class ExportRunConfig:
    """captioning/configs/export.yaml (captioning-export): a run's checkpoint written for inference."""

    checkpoint: str | None = option(None, "a run directory (its best checkpoint) or a .pt file (required; a plain "
                                    "path argument is taken as checkpoint)")
    out: str | None = option(None, "the folder written; null = RUN_DIR/export (required when checkpoint is a file)")


@dataclass
class AttentionRunConfig:
    """captioning/configs/render_attention.yaml (captioning-render-attention): where an attention model looked."""

    checkpoint: str | None = option(None, "the run directory (or its .pt file) of an attention model "
                                    "(model=show_attend_tell or model=transformer) (required)")
    out: str = option("docs/figures/attention.png", "the PNG written")
    splits: list[str] = option(["test", "test_novel"], "splits of the run's own data to draw from")
    per_split: int = option(3, "images of each split", ge=1)
    seed: int = option(0, "picks the images, as captioning-render-examples picks them", ge=0)
    decoding: DecodingConfig = option(DecodingConfig(method="greedy"), "how captions are generated (as for "
                                      "evaluation; method greedy or beam)")


@dataclass
class CompareRunsConfig:
    """captioning/configs/compare_runs.yaml (captioning-compare-runs): the runs of a sweep side by side."""

    sweep_dir: str | None = option(None, "folder holding the run directories, e.g. runs/multirun/<date>/<time> "
                                   "(required; a plain path argument is taken as sweep_dir)")
    out: str | None = option(None, "where to write the files; null = sweep_dir")
    name: str = option("comparison", "file name stem")
    splits: list[str] | None = option(None, "splits to show; null = every evaluated split")
    metrics: list[str] | None = option(None, "metrics to show, e.g. [Bleu_4,CIDEr,acc_colour]; null = the BLEU, "
                                       "METEOR, ROUGE and CIDEr present")
    chart_metric: str = option("Bleu_4", "metric drawn in the bar chart")


@dataclass
class ModelTableConfig:
    """captioning/configs/model_table.yaml (captioning-model-table): several models' runs in one table."""

    runs: dict[str, str] = option({}, "label -> run directory, one per model: runs.LABEL=RUN_DIR (required)")
    out: str | None = option(None, "a markdown file written as well; null = print only")


@dataclass
class PairedConfig:
    """captioning/configs/paired.yaml (captioning-paired): is A better than B, with paired bootstrap intervals."""

    a: list[str] = option([], "run directories of A (one per seed) or folders of them; a=DIR is a=[DIR] (required)")
    b: list[str] = option([], "run directories of B, scored on the same images (required)")
    labels: list[str] = option(["A", "B"], "the names of A and B in the table")
    splits: list[str] | None = option(None, "splits; null = every evaluated split")
    metrics: list[str] | None = option(None, "metrics with per-image values; null = Bleu_4, CIDEr, acc_scene, "
                                       "acc_binding")
    resamples: int = option(10_000, "bootstrap draws", ge=1)
    level: float = option(0.95, "interval level", gt=0, lt=1)
    seed: int = option(0, "seeds the bootstrap draws", ge=0)
    json: bool = option(False, "print the rows as JSON instead of markdown")


@dataclass
class PrepareDataConfig:
    """captioning/configs/prepare_data.yaml (captioning-prepare-data): download or generate datasets."""

    targets: list[str] = option([], "what to prepare (required; plain arguments are taken as targets)",
                                choices=("shapes", *DATASETS))
    root: str | None = option(None, "data root; null = $CAPTIONING_DATA, else ./data")
    data: str = option("shapes", "the data config the shapes target generates, as data=<name> of captioning-train")
    keep_archives: bool = option(False, "keep downloaded zips after extracting")


# the commands whose options are one schema, stored as schema/run/<name>
TOOL_SCHEMAS = {"export": ExportRunConfig, "render_attention": AttentionRunConfig, "compare_runs": CompareRunsConfig,
                "model_table": ModelTableConfig, "paired": PairedConfig, "prepare_data": PrepareDataConfig}


def model_schema(name: str) -> type:
    """The Hydra schema of a registered model: its Config plus the ``name`` that selects it."""
    cls = model_class(name)
    return dataclasses.make_dataclass(f"{cls.__name__}Options", [("name", str, dataclasses.field(default=name))],
                                      bases=(cls.Config,))


def register_schemas() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent): ``schema/run/<app>`` for the roots (train,
    probe, extract, evaluate, caption, render_examples) and ``schema/<group>/<name>`` for the groups' yaml
    files to extend."""
    store = ConfigStore.instance()
    for name, node in (("train", RunConfig), ("probe", ProbeRunConfig), ("extract", ExtractRunConfig),
                       ("evaluate", EvaluateRunConfig), ("caption", CaptionRunConfig),
                       ("render_examples", GalleryRunConfig), *TOOL_SCHEMAS.items()):
        store.store(group="schema/run", name=name, node=node)
    store.store(group="schema/cell", name="cell", node=CellConfig)
    store.store(group="schema/schedule", name="schedule", node=ScheduleConfig)
    for kind, schema in DATA_SCHEMAS.items():
        store.store(group="schema/data", name=kind, node=schema)
    store.store(group="schema/encoder", name="encoder", node=EncoderConfig)
    store.store(group="schema/metrics", name="metrics", node=MetricsConfig)
    store.store(group="schema/logger", name="none", node=NoLoggerConfig)
    store.store(group="schema/logger", name="wandb", node=WandbConfig)
    store.store(group="schema/trainer", name="trainer", node=TrainerConfig)
    for name in MODELS:
        store.store(group="schema/model", name=name, node=model_schema(name))


def config_problems(cfg: Any) -> list[str]:
    """One line per impossible value: the run, model, cell, schedule, decoding, evaluation, data, encoder,
    metrics, logger, trainer (and a probe's or an extraction's own options)."""
    schema = ExtractRunConfig if "shard" in cfg else ProbeRunConfig if "probe" in cfg else RunConfig
    found = [p.removeprefix(".") for p in problems(schema, plain(cfg), "")]
    try:
        options = {k: v for k, v in plain(cfg.model).items() if k != "name"}
        found += problems(model_class(cfg.model.name).Config, options, "model")
    except ValueError as exc:  # an unknown model name or import path
        found.append(str(exc))
    found += problems(CellConfig, cfg.cell, "cell")  # the model's copy (model.cell = ${cell}) is the same node
    found += problems(ScheduleConfig, cfg.schedule, "schedule") + schedule_problems(cfg.schedule)
    found += data_problems(cfg.data) + encoder_problems(cfg.encoder) + metrics_problems(cfg.metrics)
    found += logger_problems(cfg.logger) + problems(TrainerConfig, cfg.trainer, "trainer")
    if "shard" in cfg:
        try:
            parse_shard(cfg.shard)
        except ValueError as exc:
            found.append(str(exc))
    return found


register_schemas()
