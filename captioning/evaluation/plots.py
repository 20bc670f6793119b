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
        raise FileNotFoundError(f"no training history at {path}: pass a run directory written by scripts/train.py")
    history = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(history, dict) or not isinstance(history.get("epochs"), list):
        raise ValueError(f"{path} is not a training history (expected {{'epochs': [...]}})")
    return history


def training_curve_figure(history: Mapping) -> Figure:
    """Two panels over epochs: mean training loss, and greedy val BLEU-4 with the best epoch marked.

    A two-stage history (captioning/training/self_critical.py: stage 1 under ``"cross_entropy"``) is drawn as one run:
    the cross-entropy loss, then the self-critical stage's mean sampled reward on a second axis, and val
    BLEU-4 across both stages, the self-critical epochs numbered after the cross-entropy ones."""
    stage1 = (history.get("cross_entropy") or {}).get("epochs") or []
    xe = stage1 or history["epochs"]
    offset = xe[-1]["epoch"] if stage1 else 0
    sc = [{**e, "epoch": e["epoch"] + offset} for e in history["epochs"]] if stage1 else []
    fig = Figure(figsize=(9, 3.2))
    loss_ax, bleu_ax = fig.subplots(1, 2)
    loss_ax.plot([e["epoch"] for e in xe], [e["train_loss"] for e in xe], marker="o", color="tab:blue")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy per word", title="training loss")
    rewards = history.get("train_reward") or []
    if sc and rewards:
        reward_ax = loss_ax.twinx()
        reward_ax.plot([e["epoch"] for e in sc][: len(rewards)], rewards, marker="s", color="tab:orange")
        reward_ax.set_ylabel("self-critical: mean sampled reward", color="tab:orange")
        loss_ax.set_title("training loss, then reward")
    bleu_ax.plot([e["epoch"] for e in xe], [e["val_bleu4"] for e in xe], marker="o", color="tab:green",
                 label="cross-entropy" if sc else None)
    if sc:
        bleu_ax.plot([e["epoch"] for e in sc], [e["val_bleu4"] for e in sc], marker="s", color="tab:orange",
                     label="self-critical")
    best = history.get("best_epoch", -1)
    if sc:  # stage 2's epoch 0 is stage 1's best decoder
        best = history["cross_entropy"].get("best_epoch", -1) if best == 0 else best + offset
    epochs = [e["epoch"] for e in xe + sc]
    if best in epochs:
        bleu_ax.axvline(best, color="grey", ls="--", lw=1, label=f"best checkpoint (epoch {best})")
    if best in epochs or sc:
        bleu_ax.legend(fontsize=8, loc="lower right")
    bleu_ax.set(xlabel="epoch", ylabel="BLEU-4", title="validation BLEU-4 (greedy)")
    for ax in (loss_ax, bleu_ax):
        ax.grid(alpha=0.3)
        if epochs:
            ax.set_xticks(epochs if len(epochs) <= 20 else epochs[:: max(1, len(epochs) // 10)])
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
