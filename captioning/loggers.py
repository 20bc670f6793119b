"""Experiment loggers chosen by the `logger` config group: none (local files only) or wandb."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from captioning.evaluation.scoring import EvaluateConfig, MetricsConfig
from captioning.utils.schema import option, plain, problems
from captioning.wandb_logger import WandbConfig, WandbLogger

LOGGERS = ("none", "wandb")


@dataclass
class NoLoggerConfig:
    """``logger=none`` (captioning/configs/logger/none.yaml): nothing logged beyond the run directory's own files."""

    name: str = option("none", "none | wandb: the experiment logger", choices=LOGGERS)


SCHEMAS: dict[str, type] = {"none": NoLoggerConfig, "wandb": WandbConfig}  # by ``logger.name``


def logger_problems(node: Any) -> list[str]:
    """One line per unknown key or bad value of the ``logger`` config, under its name's schema."""
    values = plain(node)
    name = values["name"] if "name" in values else NoLoggerConfig.name
    if name not in SCHEMAS:
        return [f"logger.name must be one of {LOGGERS}, got {name!r}"]
    return problems(SCHEMAS[name], values, "logger")


def build_logger(options: Any, run_dir: str, config: dict | None = None, evaluate: EvaluateConfig | None = None,
                 metrics: MetricsConfig | None = None):
    """The logger ``options`` (the ``logger`` node) asks for, or None for `logger=none`. ``config``: the run
    config stored with the logged run; ``evaluate`` and ``metrics``: how its failure tables are drawn."""
    name = options.name
    if name == "none":
        return None
    if name == "wandb":
        return WandbLogger(options, run_dir, config or {}, evaluate or EvaluateConfig(), metrics or MetricsConfig())
    raise ValueError(f"Unknown logger {name!r}: choose none or wandb")
