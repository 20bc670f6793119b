"""Experiment loggers chosen by the `logger` config group: none (local files only) or wandb."""

from __future__ import annotations

from typing import Any


def build_logger(cfg: Any, run_dir: str):
    """The logger the config asks for, or None for `logger=none`."""
    name = cfg.logger.name
    if name == "none":
        return None
    if name == "wandb":
        from captioning.wandb_logger import WandbLogger

        return WandbLogger(cfg, run_dir)
    raise ValueError(f"Unknown logger {name!r}: choose none or wandb")
