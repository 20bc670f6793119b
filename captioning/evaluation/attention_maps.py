"""Where an attention model looked: per generated word, its attention weights over the image's regions.

A model that attends (``model=show_attend_tell``, ``model=transformer``) has ``attention(features, tokens)``
-> weights [B, T, R] while reading ``tokens`` (which start with <start>): row t is where it looked to
predict word t+1. ``caption_attention`` runs it over generated captions; ``attention_figure`` draws one
strip per image: the image, then one panel per word of the whole caption (wrapped after WORDS_PER_ROW
words) with the g x g weights upsampled over the image as a heat map (one scale for the whole figure);
``render_attention`` writes it atomically; ``model_description`` names the model and the regions it reads
for a figure's title. Show and Tell has no such maps: it reads the image once, through h0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from captioning.text.vocab import PAD, START, UNK
from captioning.utils.io import atomic_write

PANEL = 1.3           # inches per panel: 7 columns fill a README's width at 100 dpi without scaling
WORDS_PER_ROW = 6     # word panels beside the image; a longer caption wraps onto more rows, none is cut
HEAT_MAP = "jet"      # weights as colour over the image (blue: little, red: most)
HEAT_ALPHA = 0.45     # enough colour to read at README width, enough image to see the shapes under it


def has_attention(model: Any) -> bool:
    """Whether ``model`` can say where it looked (it has an ``attention(features, tokens)`` method)."""
    return callable(getattr(model, "attention", None))


@torch.no_grad()
def caption_attention(model: Any, features: torch.Tensor, captions: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Per caption (word ids without <start>/<end>), the weights [len(caption) + 1, R]: one row per word and
    one for <end>, each summing to 1 over the regions."""
    if not has_attention(model):
        raise ValueError(f"model {type(model).__name__} has no attention maps: it reads the image once (its "
                         "pooled feature), e.g. show_tell; use model=show_attend_tell or model=transformer")
    longest = max((len(c) for c in captions), default=0) + 1
    tokens = torch.full((len(captions), longest), PAD, dtype=torch.long, device=features.device)
    tokens[:, 0] = START
    for i, caption in enumerate(captions):
        tokens[i, 1 : len(caption) + 1] = torch.as_tensor(list(caption), dtype=torch.long)
    was_training = model.training
    model.eval()
    try:
        weights = model.attention(features, tokens).float().cpu().numpy()
    finally:
        model.train(was_training)
    return [weights[i, : len(c) + 1] for i, c in enumerate(captions)]


def heat(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """A g x g grid of weights upsampled (bilinear) to ``height`` x ``width``, values kept."""
    return np.asarray(Image.fromarray(grid.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))


def attention_figure(strips: Sequence[tuple[Image.Image, Sequence[str], np.ndarray]], title: str = "",
                     labels: Sequence[str] | None = None) -> Figure:
    """One strip per (image, words, weights [>= len(words), R]): the image (titled by ``labels[i]``, e.g. its
    split), then a panel per word, WORDS_PER_ROW to a row, with the weights of a square grid of R regions as
    a heat map over the image, on one colour scale for every panel (0 to the largest weight drawn, which the
    title states beside the uniform weight 1/R): a word that looks everywhere stays blue."""
    rows = [max(1, math.ceil(len(words) / WORDS_PER_ROW)) for _, words, _ in strips]
    columns = 1 + min(WORDS_PER_ROW, max((len(w) for _, w, _ in strips), default=0))
    drawn = [w[: len(words)] for _, words, w in strips if len(words)]
    top = max((float(w.max()) for w in drawn), default=1.0)
    if drawn:
        scale = (f"colour: attention weight, 0 (blue) to {top:.2f} (red) in every panel; "
                 f"looking everywhere alike would be 1/{drawn[0].shape[1]} = {1 / drawn[0].shape[1]:.2f}")
        title = f"{title}\n{scale}" if title else scale
    head = 0.22 * (title.count("\n") + 1) + 0.1 if title else 0.1  # inches for the title
    fig = Figure(figsize=(PANEL * columns, PANEL * sum(rows) + head), dpi=100)
    if title:
        fig.suptitle(title, fontsize=11)
    grid = fig.add_gridspec(max(sum(rows), 1), columns)
    first = 0
    for i, ((image, words, weights), n) in enumerate(zip(strips, rows)):
        side = math.isqrt(weights.shape[1])
        if side * side != weights.shape[1]:
            raise ValueError(f"{weights.shape[1]} regions are not a square grid")
        pixels = np.asarray(image.convert("RGB"))
        ax = fig.add_subplot(grid[first, 0])
        ax.imshow(pixels)
        if labels:
            ax.set_title(labels[i], fontsize=10, fontweight="bold")
        ax.set_axis_off()
        for k, word in enumerate(words):
            ax = fig.add_subplot(grid[first + k // WORDS_PER_ROW, 1 + k % WORDS_PER_ROW])
            ax.imshow(pixels)
            ax.imshow(heat(weights[k].reshape(side, side), *pixels.shape[:2]), cmap=HEAT_MAP, alpha=HEAT_ALPHA,
                      vmin=0.0, vmax=top)
            ax.set_title(word, fontsize=10)
            ax.set_axis_off()
        first += n
    fig.tight_layout()  # makes room for the suptitle too
    return fig


def model_description(config: Mapping[str, Any], regions: int | None = None) -> str:
    """The model and what it reads, for a figure's title, from a run's config: e.g. "show_attend_tell (LSTM)
    on efficientnet_lite0's blocks.3 regions (4 x 4)"."""
    model, encoder = config.get("model") or {}, config.get("encoder") or {}
    name = model.get("name", "model")
    cell = (config.get("cell") or {}).get("name") if name != "transformer" else None
    layers = list(encoder.get("hypercolumn") or [])
    maps = (["last map"] if encoder.get("last_map", True) else []) + layers
    grid = f" ({math.isqrt(regions)} x {math.isqrt(regions)})" if regions else ""
    what = f"{' + '.join(maps)} regions{grid}" if maps else f"regions{grid}"
    return f"{name}{f' ({cell.upper()})' if cell else ''} on {encoder.get('name', 'its encoder')}'s {what}"


def render_attention(strips: Sequence[tuple[Image.Image, Sequence[str], np.ndarray]], path: str | Path,
                     title: str = "", labels: Sequence[str] | None = None) -> Path:
    """Write ``attention_figure`` as a PNG, atomically; returns the path."""
    path = Path(path)
    fig = attention_figure(strips, title, labels)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def failure_attention(model: Any, vocab: Any, records: Sequence[Any], features: Any, per_image: dict,
                      path: str | Path, k: int = 6, split: str = "") -> Path | None:
    """The attention strips of the ``k`` worst images of a split (wrong scenes first, then by sentence
    BLEU-4 from ``per_image`` {image_id: scores with "caption"}): the failure report's "where it looked".
    None (nothing written) for models without attention."""
    if not has_attention(model) or not records:
        return None
    row_of = {r.image_id: i for i, r in enumerate(records)}
    worst = sorted(per_image, key=lambda i: (per_image[i].get("acc_scene", 1), per_image[i].get("Bleu_4", 0.0), i))[:k]
    rows = [row_of[i] for i in worst]
    feats = torch.as_tensor(np.asarray(features[rows], dtype=np.float32), device=next(model.parameters()).device)
    words = [str(per_image[i]["caption"]).split() for i in worst]
    weights = caption_attention(model, feats, [[vocab.stoi.get(w, UNK) for w in ws] for ws in words])
    strips = [(Image.open(records[r].path), ws + ["<end>"], w) for r, ws, w in zip(rows, words, weights)]
    return render_attention(strips, path, title=f"{split}: where the model looked in its {len(rows)} worst captions")
