"""What a training run cost, read from what it wrote: the model's trainable parameters (its best
checkpoint) and the seconds per epoch of each stage (history.json, val decoding included). Used by the
model table (captioning/experiments/model_table.py) and the results section (captioning/experiments/results.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from captioning.models.checkpoint import load_checkpoint, model_from_checkpoint


def parameter_count(run_dir: str | Path) -> int:
    """The trainable parameters of the model in ``run_dir``/checkpoints/best.pt."""
    model, _ = model_from_checkpoint(load_checkpoint(Path(run_dir) / "checkpoints" / "best.pt"))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def epoch_seconds(history: dict, stage: str) -> float | None:
    """Median seconds per epoch of ``stage`` in a run's history (None when the stage did not run)."""
    secs = [e["seconds"] for e in history.get("epochs", []) if e.get("stage") == stage and "seconds" in e]
    return float(np.median(secs)) if secs else None


def run_epoch_seconds(run_dir: str | Path, stage: str) -> float | None:
    """``epoch_seconds`` of the run in ``run_dir`` (its history.json; None when it has none)."""
    path = Path(run_dir) / "history.json"
    return epoch_seconds(json.loads(path.read_text()), stage) if path.is_file() else None
