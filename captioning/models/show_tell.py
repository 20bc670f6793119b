"""Show and Tell: the image seen once, through the initial state of a recurrent decoder.

One-to-many, as in the lecture (Vinyals et al. 2015; Karpathy & Fei-Fei 2015): the pooled CNN feature f
becomes h0 = act(W_proj LayerNorm(f) + b) (and c0 for an LSTM) of every layer; the RNN then reads
<start> w1 w2 ... and predicts w1 w2 ... <end>. With ``init_hidden`` > 0 the projection is a two-layer
perceptron, h0 = act(W_proj relu(W_1 f + b_1) + b), still one image vector into h0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from captioning.models.base import CaptionModel, State, register_model
from captioning.nn.cells import CellConfig, build_rnn, init_lstm_gates
from captioning.utils.schema import build, option

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "none": nn.Identity}
LSTM_INITS = ("torch", "forget_bias", "chrono")


@dataclass
class ShowTellConfig:
    """Options of ``model=show_tell`` (configs/model/show_tell.yaml)."""

    # Any, not CellConfig: configs/model/show_tell.yaml sets it to ${cell}, the `cell` group, which Hydra
    # checks against CellConfig itself; the model checks it again when built
    cell: Any = option({"name": "lstm", "num_layers": 1, "backend": "fused"},
                       "the recurrent cell: the `cell` config group (CellConfig: rnn | lstm | gru)")
    embed_dim: int = option(128, "word embedding width", ge=1)
    hidden_size: int = option(256, "recurrent state width", ge=1)
    dropout: float = option(0.1, "dropout on embeddings, between layers and before the output layer", ge=0, lt=1)
    feature_dropout: float | None = option(None, "dropout on the image feature; null = dropout", ge=0, lt=1)
    feature_norm: bool = option(True, "LayerNorm on the image feature before the projection to h0")
    init_activation: str = option("tanh", "activation of the projection to h0", choices=tuple(ACTIVATIONS))
    init_hidden: int = option(0, "0: a linear projection to h0; > 0: a hidden ReLU layer of this width", ge=0)
    lstm_init: str = option("forget_bias", "LSTM gate biases: torch (uniform) | forget_bias (Gers et al. "
                            "2000) | chrono (Tallec & Ollivier 2018); other cells ignore it", choices=LSTM_INITS)
    forget_bias: float = option(1.0, "the forget-gate bias for lstm_init=forget_bias")


@register_model("show_tell")
class ShowTell(CaptionModel):
    """Feature projection to (h0, c0), word embedding, recurrent stack, linear layer to the vocabulary."""

    Config = ShowTellConfig
    state_batch_dim = 1  # h and c are [layers, B, H], as torch.nn.LSTM keeps them

    def __init__(self, config: ShowTellConfig, feature_dim: int, vocab_size: int, max_len: int) -> None:
        super().__init__(config, feature_dim, vocab_size, max_len)
        c, cell = config, build(CellConfig, config.cell)
        self.cell, self.num_layers, self.hidden_size = cell.name, cell.num_layers, c.hidden_size
        # Pooled CNN features have very different scales per channel; normalising them first makes
        # the projection easy to train from a default initialisation.
        self.feature_norm = nn.LayerNorm(feature_dim) if c.feature_norm else nn.Identity()
        n_states = 2 if cell.name == "lstm" else 1
        # the feature is read once per caption, so a hidden layer here costs little next to the recurrence
        self.init_mlp = (nn.Sequential(nn.Linear(feature_dim, c.init_hidden), nn.ReLU(), nn.Dropout(c.dropout))
                         if c.init_hidden else nn.Identity())
        self.init_state_proj = nn.Linear(c.init_hidden or feature_dim, n_states * cell.num_layers * c.hidden_size)
        self.init_act = ACTIVATIONS[c.init_activation]()
        self.embed = nn.Embedding(vocab_size, c.embed_dim, padding_idx=0)
        self.rnn = build_rnn(cell.name, c.embed_dim, c.hidden_size, num_layers=cell.num_layers, batch_first=True,
                             dropout=c.dropout if cell.num_layers > 1 else 0.0, backend=cell.backend)
        if cell.name == "lstm" and c.lstm_init != "torch":  # what h0 and c0 hold survives more steps
            init_lstm_gates(self.rnn, c.lstm_init, c.forget_bias, max_len + 1)
        self.drop = nn.Dropout(c.dropout)
        self.feature_drop = nn.Dropout(c.dropout if c.feature_dropout is None else c.feature_dropout)
        self.out = nn.Linear(c.hidden_size, vocab_size)

    def init_state(self, features: Tensor) -> State:
        """h0 (and c0) for every layer from the image features [B, D]: shapes [layers, B, H]. Region features
        [B, R, D] are averaged over their regions first (the pooled vector: the image seen once)."""
        features = features.mean(1) if features.dim() == 3 else features
        proj = self.init_act(self.init_state_proj(self.init_mlp(self.feature_drop(self.feature_norm(features)))))
        states = proj.view(features.size(0), -1, self.num_layers, self.hidden_size).permute(1, 2, 0, 3)
        return (states[0].contiguous(), states[1].contiguous()) if self.cell == "lstm" else states[0].contiguous()

    def forward(self, features: Tensor, tokens: Tensor) -> Tensor:
        """Teacher forcing: logits [B, T, V] for the input tokens [B, T] (which start with <start>)."""
        state = self.init_state(features)  # before the embedding's dropout: the RNG draws stay in this order
        out, _ = self.rnn(self.drop(self.embed(tokens)), state)
        return self.out(self.drop(out))

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """One decoding step: previous words [B] -> log-probabilities [B, V] and the new state."""
        out, state = self.rnn(self.embed(tokens).unsqueeze(1), state)
        return torch.log_softmax(self.out(out.squeeze(1)), dim=-1), state
