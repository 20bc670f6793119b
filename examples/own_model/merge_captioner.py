"""Merge: a recurrent language model that never sees the image; the image joins its output instead.

Tanti, Gatt & Camilleri (2018, "Where to put the image in an image caption generator") sort caption
generators by where the image enters:

    init-inject  the image is the RNN's initial state            (the package's model=show_tell)
    par-inject   the image enters the RNN beside every word
    merge        the RNN reads the words only; the image is combined with the RNN's output
                 just before the output layer                   (this file)

    v   = tanh(W_v LayerNorm(f) + b_v)              the image, once per caption (regions: their mean)
    h_t = GRU(E y_{t-1}, h_{t-1}),  h_0 = 0         the words only: the RNN is a plain language model
    m_t = [h_t; v]  |  h_t + v  |  h_t * v          (merge = concat | add | multiply)
    p(y_t) = softmax(W_o m_t + b_o)

A caption model of your own, outside the package: the training loop, beam search, self-critical
training, checkpoints, exports, evaluation and the caption command reach it only through the
``CaptionModel`` contract (captioning/models/base.py): ``init_state``, ``step``, ``forward`` and, because
every tensor of its state keeps the batch on dim 0, the default ``select_state``. It is selected by its
import path (configs/model/merge.yaml: ``name: merge_captioner.MergeCaptioner``), so this folder must be
on PYTHONPATH wherever a run of it is trained, evaluated or loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from captioning.models.base import CaptionModel, State
from captioning.utils.schema import option

MERGES = ("concat", "add", "multiply")


@dataclass
class MergeConfig:
    """Options of ``model=merge`` (configs/model/merge.yaml); checked like the package's models' options."""

    embed_dim: int = option(64, "word embedding width", ge=1)
    hidden_size: int = option(128, "GRU state width (also the width of the projected image v)", ge=1)
    merge: str = option("concat", "how the image meets the GRU's output: concat [h; v] | add h + v | "
                        "multiply h * v", choices=MERGES)
    dropout: float = option(0.2, "dropout on the word embeddings and on the merged vector", ge=0, lt=1)
    feature_norm: bool = option(True, "LayerNorm on the image feature before its projection")


class MergeCaptioner(CaptionModel):
    """Word embedding -> GRU (no image) -> merged with the projected image -> linear layer to the vocabulary."""

    Config = MergeConfig  # state: {"h": [B, H], "image": [B, H]}, batch on dim 0 (the default select_state)

    def __init__(self, config: MergeConfig, feature_dim: int, vocab_size: int, max_len: int) -> None:
        super().__init__(config, feature_dim, vocab_size, max_len)
        c = config
        self.feature_norm = nn.LayerNorm(feature_dim) if c.feature_norm else nn.Identity()
        self.image = nn.Linear(feature_dim, c.hidden_size)
        self.embed = nn.Embedding(vocab_size, c.embed_dim, padding_idx=0)
        self.rnn = nn.GRU(c.embed_dim, c.hidden_size, batch_first=True)
        self.drop = nn.Dropout(c.dropout)
        self.out = nn.Linear(2 * c.hidden_size if c.merge == "concat" else c.hidden_size, vocab_size)

    def init_state(self, features: Tensor) -> State:
        """The projected image v and a zero h_0 (the GRU starts knowing nothing of the image): [B, H] each.
        Region features [B, R, D] are averaged over their regions first."""
        features = features.mean(1) if features.dim() == 3 else features
        image = torch.tanh(self.image(self.feature_norm(features)))
        return {"h": image.new_zeros(image.shape), "image": image}

    def forward(self, features: Tensor, tokens: Tensor) -> Tensor:
        """Teacher forcing: logits [B, T, V] for the input tokens [B, T] (which start with <start>); the GRU
        runs over all the words at once, since the image never enters it."""
        state = self.init_state(features)
        hs, _ = self.rnn(self.drop(self.embed(tokens)), state["h"].unsqueeze(0))
        return self.out(self.drop(self.combine(hs, state["image"].unsqueeze(1))))

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """One decoding step: previous words [B] -> log-probabilities [B, V] and the next state."""
        out, h = self.rnn(self.embed(tokens).unsqueeze(1), state["h"].unsqueeze(0))
        logits = self.out(self.combine(out.squeeze(1), state["image"]))
        return torch.log_softmax(logits, dim=-1), {"h": h.squeeze(0), "image": state["image"]}

    def combine(self, h: Tensor, image: Tensor) -> Tensor:
        """The merge layer: the GRU's output h [..., H] with the image v (broadcast over the words)."""
        if self.config.merge == "concat":
            return torch.cat([h, image.expand_as(h)], dim=-1)
        return h + image if self.config.merge == "add" else h * image
