"""Looking inside recurrent networks: record every cell's state, render it over the text, gate statistics.

Recording uses the scratch backend (our cells, step by step), which is the only one that keeps every
layer's state at every step; a model trained on the fused backend loads the very same weights.
Renderings follow Karpathy, Johnson & Fei-Fei 2015: each character's background shows one cell's
activation (tanh(c) for LSTM cell states, so every value lies in [-1, 1]).
"""

from __future__ import annotations

import contextlib
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure  # not pyplot: no display needed, and a notebook's backend is left alone
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from captioning.nn.cells import AllStates
from captioning.utils.io import atomic_write

SATURATION_LOW, SATURATION_HIGH = 0.1, 0.9  # the paper's thresholds for left/right saturated gates


@dataclass
class Recording:
    """Per-step states of one sequence: h, c (LSTM) and gates, each [layers, T, H] as numpy."""

    h: np.ndarray
    c: np.ndarray | None
    gates: dict[str, np.ndarray]

    @classmethod
    def from_all_states(cls, states: AllStates, batch_index: int = 0) -> "Recording":
        """Take one sequence of the batch out of the scratch backend's AllStates [L, T, B, H]."""
        pick = lambda t: t[:, :, batch_index].detach().cpu().numpy()  # noqa: E731
        return cls(pick(states.h), pick(states.c) if states.c is not None else None,
                   {k: pick(v) for k, v in states.gates.items()})

    @classmethod
    def concatenate(cls, parts: Sequence["Recording"]) -> "Recording":
        """Join recordings of consecutive pieces of one sequence along time."""
        cat = lambda arrs: np.concatenate(arrs, axis=1)  # noqa: E731
        return cls(cat([p.h for p in parts]), None if parts[0].c is None else cat([p.c for p in parts]),
                   {k: cat([p.gates[k] for p in parts]) for k in parts[0].gates})

    def cells(self) -> tuple[np.ndarray, list[str]]:
        """Every recorded unit as one column [T, units] with labels like 'h1.42' or 'c0.7' (tanh(c))."""
        blocks, labels = [], []
        for kind, arr in (("h", self.h), ("c", None if self.c is None else np.tanh(self.c))):
            if arr is None:
                continue
            for layer in range(arr.shape[0]):
                blocks.append(arr[layer])
                labels += [f"{kind}{layer}.{u}" for u in range(arr.shape[2])]
        return np.concatenate(blocks, axis=1), labels


@contextlib.contextmanager
def scratch_backend(rnn: nn.Module) -> Iterator[nn.Module]:
    """Run a captioning.nn.cells module on the scratch backend for a while (same weights, per-step states)."""
    previous = rnn.backend
    rnn.backend = "scratch"
    try:
        yield rnn
    finally:
        rnn.backend = previous


@torch.no_grad()
def record(rnn: nn.Module, inputs: Tensor, state=None) -> tuple[Tensor, object, Recording]:
    """Run a captioning.nn.cells RNN/LSTM/GRU on ``inputs`` [T, I] (one sequence) with the scratch backend."""
    batch_dim = 0 if getattr(rnn, "batch_first", False) else 1  # the caption decoder's RNN is batch-first
    with scratch_backend(rnn):
        out, state, all_states = rnn(inputs.unsqueeze(batch_dim), state, return_all_states=True)
    return out.squeeze(batch_dim), state, Recording.from_all_states(all_states)


def record_text(model: nn.Module, vocab, text: str, chunk: int = 2000) -> Recording:
    """Every layer's states while a character model (``model.inputs`` of ``vocab.encode(text)`` feed
    ``model.rnn``, as captioning.lm's CharRNN and CharVocab do) reads ``text`` in chunks, the state carried."""
    parts, state = [], None
    for start in range(0, len(text), chunk):
        with torch.no_grad():
            inputs = model.inputs(vocab.encode(text[start:start + chunk]))
        _, state, rec = record(model.rnn, inputs, state)
        parts.append(rec)
    return Recording.concatenate(parts)


def record_decoder(rnn: nn.Module, embed: Callable[[Tensor], Tensor], token_ids: Sequence[int],
                   init_state=None) -> Recording:
    """States of a caption decoder fed ``token_ids`` (e.g. <start> + generated words) from ``init_state``.

    Step t is the state after reading ``token_ids[t]``: the one that predicts word t+1. ``init_state``
    is shaped as the module expects for a batch of one ([layers, 1, H], a tuple for an LSTM).
    """
    ids = torch.as_tensor(list(token_ids), dtype=torch.long)
    with torch.no_grad():
        inputs = embed(ids)
    return record(rnn, inputs, init_state)[2]


def render_decoder(words: Sequence[str], rec: Recording, out_dir: str | Path, units: Sequence[str] = (),
                   top: int = 12, name: str = "decoder") -> list[str]:
    """Heatmap PNG and HTML of decoder cells per word; by default the ``top`` cells that vary most.

    ``words[t]`` labels step t (e.g. the input token, or the word generated from that state). Returns
    the cell labels shown.
    """
    acts, labels = rec.cells()
    if len(words) != acts.shape[0]:
        raise ValueError(f"{len(words)} words for {acts.shape[0]} recorded steps")
    index = {label: j for j, label in enumerate(labels)}
    missing = [u for u in units if u not in index]
    if missing:
        raise ValueError(f"unknown cells {missing}: labels look like {labels[0]!r} .. {labels[-1]!r}")
    cols = [index[u] for u in units] or list(np.argsort(-acts.std(axis=0))[:top])
    shown = [labels[j] for j in cols]
    out = Path(out_dir)
    heatmap_png(acts[:, cols].T, shown, list(words), out / f"{name}.png", title="decoder cells per word")
    cells_html(list(words), [(f"cell {labels[j]}", acts[:, j]) for j in cols], out / f"{name}.html",
               title="decoder cells per word", sep=" ")
    return shown


# -- gate statistics -------------------------------------------------------------------------------


def gate_saturation(gates: dict[str, np.ndarray], low: float = SATURATION_LOW,
                    high: float = SATURATION_HIGH) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per gate: (fraction of steps each unit is left-saturated (< low), right-saturated (> high)), [L, H]."""
    return {name: ((g < low).mean(axis=1), (g > high).mean(axis=1)) for name, g in gates.items()}


def saturation_scatter_png(saturation: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path,
                           title: str = "") -> None:
    """The paper's figure 3: one panel per gate, one dot per unit, coloured by layer."""
    if not saturation:
        raise ValueError("no gates to plot: a vanilla RNN has none (use an LSTM or GRU)")
    fig = Figure(figsize=(3.2 * len(saturation), 3.4))
    axes = fig.subplots(1, len(saturation), squeeze=False)
    for ax, (name, (left, right)) in zip(axes[0], saturation.items()):
        for layer in range(left.shape[0]):
            ax.scatter(left[layer], right[layer], s=6, alpha=0.6, label=f"layer {layer + 1}")
        ax.plot([0, 1], [1, 0], color="grey", lw=0.5)
        ax.set(xlim=(0, 1), ylim=(0, 1), title=f"{name} gate", xlabel=f"fraction < {SATURATION_LOW}")
    axes[0][0].set_ylabel(f"fraction > {SATURATION_HIGH}")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.suptitle(title, y=1.03)
    save_figure(fig, path)


# -- renderings ------------------------------------------------------------------------------------


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> None:
    """Write a matplotlib figure as PNG atomically."""
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")


def activation_colour(value: float) -> str:
    """Paper-style colour for a value in [-1, 1]: blue for negative, white at 0, red for positive."""
    v = float(np.clip(value, -1.0, 1.0))
    fade = int(round(255 * (1 - abs(v))))
    return f"rgb(255,{fade},{fade})" if v > 0 else f"rgb({fade},{fade},255)"


def tokens_html(tokens: Sequence[str], values: np.ndarray, sep: str = "") -> str:
    """Each token in a span whose background shows its value; newlines shown as ↵ then broken."""
    out = []
    for tok, v in zip(tokens, values):
        shown = "↵" if tok == "\n" else html.escape(tok)
        out.append(f'<span style="background:{activation_colour(v)}" title="{v:+.3f}">{shown}</span>')
        out.append("<br>" if tok == "\n" else html.escape(sep))
    return "".join(out)


def cells_html(tokens: Sequence[str], panels: Sequence[tuple[str, np.ndarray]], path: str | Path,
               title: str = "", sep: str = "") -> None:
    """An HTML page with one block per (caption, values [T]) panel over the same tokens (characters or words)."""
    blocks = [f"<h3>{html.escape(caption)}</h3><div class='t'>{tokens_html(tokens, values, sep)}</div>"
              for caption, values in panels]
    page = (f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif} .t{font-family:monospace;white-space:pre-wrap;"
            "line-height:1.5;border:1px solid #ccc;padding:6px}</style>"
            f"<h2>{html.escape(title)}</h2><p>Background: <span style='background:{activation_colour(-1)}'>"
            f"&nbsp;-1&nbsp;</span> &hellip; <span style='background:{activation_colour(1)}'>&nbsp;+1&nbsp;</span>"
            " (hover for the value).</p>" + "\n".join(blocks))
    with atomic_write(path, "w") as f:
        f.write(page)


def text_activation_png(text: str, values: np.ndarray, path: str | Path, width: int = 80,
                        title: str = "") -> None:
    """The paper's figure 2 as a PNG: the text in rows of ``width`` characters, backgrounds coloured."""
    rows = [[]]
    for ch, v in zip(text, values):
        if len(rows[-1]) == width:
            rows.append([])
        rows[-1].append((ch, v))
        if ch == "\n":
            rows.append([])
    fig = Figure(figsize=(width * 0.11, len(rows) * 0.22 + 0.4))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["bwr"]
    for y, row in enumerate(rows):
        for x, (ch, v) in enumerate(row):
            ax.add_patch(Rectangle((x, -y - 1), 1, 1, color=cmap((np.clip(v, -1, 1) + 1) / 2), lw=0))
            ax.text(x + 0.5, -y - 0.5, "↵" if ch == "\n" else ch, ha="center", va="center",
                    fontsize=7, family="monospace")
    ax.set(xlim=(0, width), ylim=(-len(rows), 0), title=title)
    ax.axis("off")
    save_figure(fig, path)


def heatmap_png(values: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], path: str | Path,
                title: str = "", max_col_labels: int = 120) -> None:
    """Cells (rows) against steps (columns) as a heatmap in [-1, 1]; steps labelled by their tokens."""
    fig = Figure(figsize=(min(24, 1 + 0.12 * values.shape[1] + 2), 0.8 + 0.25 * values.shape[0]))
    ax = fig.subplots()
    im = ax.imshow(values, aspect="auto", cmap="bwr", vmin=-1, vmax=1, interpolation="nearest")
    stride = max(1, len(col_labels) // max_col_labels)
    ax.set_xticks(range(0, len(col_labels), stride))
    ax.set_xticklabels([repr(c)[1:-1] if len(c) == 1 else c for c in col_labels[::stride]],
                       rotation=90, fontsize=7, family="monospace")
    ax.set_yticks(range(len(row_labels)))
    ax.set_yticklabels(row_labels, fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.02)
    ax.set_title(title)
    save_figure(fig, path)
