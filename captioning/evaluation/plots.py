"""Pictures instead of walls of numbers: a run's training curve and a sweep's metrics as bars.

Drawn on matplotlib ``Figure`` objects (not pyplot), so importing this module never changes a
notebook's backend, and written atomically like every other output file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from captioning.utils.io import atomic_write


def save_png(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write a figure as PNG atomically; returns the path."""
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)


def load_history(path: str | Path) -> dict:
    """A run's history.json (a run directory or the file itself), with a clear error when it is absent."""
    path = Path(path)
    if path.is_dir():
        path = path / "history.json"
    if not path.is_file():
        raise FileNotFoundError(f"no training history at {path}: pass a run directory written by captioning-train")
    history = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(history, dict) or not isinstance(history.get("epochs"), list):
        raise ValueError(f"{path} is not a training history (expected {{'epochs': [...]}})")
    return history


def training_curve_figure(history: Mapping) -> Figure:
    """Two panels over the run's epochs (all stages, numbered on): the cross-entropy stages' training loss
    (and the self-critical stages' mean sampled reward on a second axis), and greedy val BLEU-4 per stage
    with the best checkpoint's epoch marked (the checkpoint a stage started from counts as its epoch 0)."""
    epochs = [{**e, "n": n + 1} for n, e in enumerate(history["epochs"])]
    stages = list(dict.fromkeys(e.get("stage", "cross_entropy") for e in epochs))
    fig = Figure(figsize=(9, 3.2))
    loss_ax, bleu_ax = fig.subplots(1, 2)
    xe = [e for e in epochs if "train_reward" not in e]
    loss_ax.plot([e["n"] for e in xe], [e["train_loss"] for e in xe], marker="o", color="tab:blue")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy per word", title="training loss")
    sc = [e for e in epochs if "train_reward" in e]
    if sc:
        reward_ax = loss_ax.twinx()
        reward_ax.plot([e["n"] for e in sc], [e["train_reward"] for e in sc], marker="s", color="tab:orange")
        reward_ax.set_ylabel("self-critical: mean sampled reward", color="tab:orange")
        loss_ax.set_title("training loss, then reward")
    for k, stage in enumerate(stages):
        mine = [e for e in epochs if e.get("stage", "cross_entropy") == stage]
        bleu_ax.plot([e["n"] for e in mine], [e["val_bleu4"] for e in mine], marker="os^"[k % 3],
                     label=stage if len(stages) > 1 else None)
    best = [e["n"] for e in epochs if e.get("stage", "cross_entropy") == history.get("best_stage", stages[0] if stages else None)
            and e["epoch"] == history.get("best_epoch")]
    if best:
        bleu_ax.axvline(best[0], color="grey", ls="--", lw=1, label=f"best checkpoint (epoch {best[0]})")
    if best or len(stages) > 1:
        bleu_ax.legend(fontsize=8, loc="lower right")
    bleu_ax.set(xlabel="epoch", ylabel="BLEU-4", title="validation BLEU-4 (greedy)")
    ticks = [e["n"] for e in epochs]
    for ax in (loss_ax, bleu_ax):
        ax.grid(alpha=0.3)
        if ticks:
            ax.set_xticks(ticks if len(ticks) <= 20 else ticks[:: max(1, len(ticks) // 10)])
    fig.tight_layout()
    return fig


def training_curve_png(history: Mapping | str | Path, path: str | Path) -> Path:
    """Write the training curve of a history (dict, history.json or run directory) as a PNG."""
    if not isinstance(history, Mapping):
        history = load_history(history)
    return save_png(training_curve_figure(history), path)


def bar_chart_figure(labels: Sequence[str], series: Mapping[str, Sequence[float | None]], title: str = "",
                     ylabel: str = "") -> Figure:
    """Grouped bars: one group per label (e.g. a run), one bar per series (e.g. a split); None = no bar."""
    if not labels or not series:
        raise ValueError("nothing to plot: no runs or no metrics")
    x = np.arange(len(labels))
    width = 0.8 / len(series)
    fig = Figure(figsize=(max(4.0, 1.2 + 0.9 * len(labels) * max(1, len(series)) ** 0.5), 3.6))
    ax = fig.subplots()
    for k, (name, values) in enumerate(series.items()):
        heights = [np.nan if v is None else v for v in values]
        bars = ax.bar(x + (k - (len(series) - 1) / 2) * width, heights, width, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=1)
    ax.set_xticks(x)
    tilt = max(len(s) for s in labels) > 10
    ax.set_xticklabels(labels, rotation=20 if tilt else 0, ha="right" if tilt else "center", fontsize=8)
    ax.set(title=title, ylabel=ylabel)
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def bar_chart_png(labels: Sequence[str], series: Mapping[str, Sequence[float | None]], path: str | Path,
                  title: str = "", ylabel: str = "") -> Path:
    """Write ``bar_chart_figure`` as a PNG."""
    return save_png(bar_chart_figure(labels, series, title, ylabel), path)
