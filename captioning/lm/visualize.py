"""The whole cell-inspection report for a character model: record, search, render (captioning-visualize-cells)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from captioning.utils.io import save_json
from captioning.lm.model import CharRNN
from captioning.lm.signals import rank_cells, text_signals
from captioning.lm.vocab import CharVocab
from captioning.nn.viz import (cells_html, gate_saturation, heatmap_png, record_text, saturation_scatter_png,
                            text_activation_png)


def visualize_lm(model: CharRNN, vocab: CharVocab, text: str, out_dir: str | Path, language: str = "text",
                 top_k: int = 3, cells: list[str] | tuple = (), html_chars: int = 3000,
                 png_chars: int = 800) -> dict:
    """Rank cells against the text's signals and write ranking.json, cells.html and PNGs to ``out_dir``.

    ``cells`` names extra cells to render (labels like 'h0.42', 'c1.7'). Returns the best cell per
    signal ({signal: {"label", "r"}}), also stored in ranking.json.
    """
    out = Path(out_dir)
    rec = record_text(model, vocab, text)
    acts, labels = rec.cells()
    ranking = rank_cells(acts, labels, text_signals(text, language), top_k)
    best = {name: {"label": m[0].label, "r": round(m[0].r, 4)} for name, m in ranking.items()}
    save_json({"best": best, "top": {n: [m.to_dict() for m in ms] for n, ms in ranking.items()},
               "chars": len(text), "language": language}, out / "ranking.json")
    index = {label: j for j, label in enumerate(labels)}
    unknown = [c for c in cells if c not in index]
    if unknown:
        raise ValueError(f"unknown cells {unknown}: labels look like {labels[0]!r} .. {labels[-1]!r}")
    panels = [(f"{name}: cell {m.label}, r = {m.r:+.3f}", acts[:html_chars, m.index])
              for name, ms in ranking.items() for m in ms]
    panels += [(f"chosen cell {c}", acts[:html_chars, index[c]]) for c in cells]
    cells_html(list(text[:html_chars]), panels, out / "cells.html", title="Cells tracking signals of the text")
    for name, ms in ranking.items():
        text_activation_png(text[:png_chars], acts[:png_chars, ms[0].index], out / f"best_{name}.png",
                            title=f"{name}: cell {ms[0].label} (r = {ms[0].r:+.3f})")
    if ranking:
        rows = [ms[0] for ms in ranking.values()]
        heatmap_png(np.stack([acts[:200, m.index] for m in rows]), [f"{m.signal}: {m.label}" for m in rows],
                    list(text[:200]), out / "heatmap.png", title="best cell per signal")
    if rec.gates:
        saturation_scatter_png(gate_saturation(rec.gates), out / "saturation.png",
                               title=f"{model.config['cell'].upper()} gate saturation")
    return best
