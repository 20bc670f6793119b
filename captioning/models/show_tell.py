"""The caption decoder: image feature -> initial hidden state -> RNN that writes the caption.

One-to-many, as in the lecture (and Vinyals et al. 2015 / Karpathy & Fei-Fei 2015): the image is seen
once, through the initial state h0 = act(W_proj f + b) (and c0 for an LSTM) of every layer; the RNN
then reads <start> w1 w2 ... and predicts w1 w2 ... <end>. With ``init_hidden`` > 0 the projection is a
two-layer perceptron, h0 = act(W_proj relu(W_1 f + b_1) + b), still one image vector into h0.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from captioning.nn.cells import build_rnn, init_lstm_gates

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "none": nn.Identity}


class CaptionDecoder(nn.Module):
    """Feature projection to (h0, c0), word embedding, recurrent stack, linear layer to the vocabulary."""

    def __init__(self, feature_dim: int, vocab_size: int, cell: str = "lstm", embed_dim: int = 256,
                 hidden_size: int = 512, num_layers: int = 1, dropout: float = 0.0,
                 init_activation: str = "tanh", feature_norm: bool = True, backend: str = "fused",
                 init_hidden: int = 0, feature_dropout: float | None = None,
                 lstm_init: str = "torch", forget_bias: float = 1.0, t_max: int | None = None) -> None:
        super().__init__()
        if init_activation not in ACTIVATIONS:
            raise ValueError(f"Unknown init_activation {init_activation!r}: choose one of {sorted(ACTIVATIONS)}")
        if init_hidden < 0:
            raise ValueError(f"init_hidden must be 0 (a linear projection to h0) or a layer width, got {init_hidden}")
        self.cell, self.num_layers, self.hidden_size = cell, num_layers, hidden_size
        # Pooled CNN features have very different scales per channel; normalising them first makes
        # the projection easy to train from a default initialisation.
        self.feature_norm = nn.LayerNorm(feature_dim) if feature_norm else nn.Identity()
        n_states = 2 if cell == "lstm" else 1
        # optional hidden layer: a nonlinear map from the feature to h0 (the feature is read once per caption,
        # so this costs little next to the recurrence)
        self.init_mlp = (nn.Sequential(nn.Linear(feature_dim, init_hidden), nn.ReLU(), nn.Dropout(dropout))
                         if init_hidden else nn.Identity())
        self.init_state_proj = nn.Linear(init_hidden or feature_dim, n_states * num_layers * hidden_size)
        self.init_act = ACTIVATIONS[init_activation]()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.rnn = build_rnn(cell, embed_dim, hidden_size, num_layers=num_layers, batch_first=True,
                             dropout=dropout if num_layers > 1 else 0.0, backend=backend)
        if lstm_init != "torch":  # gate biases (captioning/nn/cells.py): what h0 and c0 hold survives more steps
            init_lstm_gates(self.rnn, lstm_init, forget_bias, t_max)
        self.drop = nn.Dropout(dropout)
        # dropout on the image feature itself (default: the same rate as everywhere else)
        self.feature_drop = nn.Dropout(dropout if feature_dropout is None else feature_dropout)
        self.out = nn.Linear(hidden_size, vocab_size)

    def init_state(self, features: Tensor) -> Any:
        """h0 (and c0) for every layer from the image features [B, D]: shapes [layers, B, H]."""
        proj = self.init_act(self.init_state_proj(self.init_mlp(self.feature_drop(self.feature_norm(features)))))
        states = proj.view(features.size(0), -1, self.num_layers, self.hidden_size).permute(1, 2, 0, 3)
        return (states[0].contiguous(), states[1].contiguous()) if self.cell == "lstm" else states[0].contiguous()

    def forward(self, features: Tensor, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Teacher forcing: logits [B, T, V] for the input tokens [B, T] (which start with <start>)."""
        state = self.init_state(features)
        out, _ = self.rnn(self.drop(self.embed(tokens)), state, lengths=lengths)
        return self.out(self.drop(out))

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One decoding step: previous words [B] -> log-probabilities [B, V] and the new state."""
        out, state = self.rnn(self.embed(tokens).unsqueeze(1), state)
        return torch.log_softmax(self.out(out.squeeze(1)), dim=-1), state

    def hyperparameters(self) -> dict:
        """The constructor arguments, to rebuild this decoder from a checkpoint."""
        return dict(self._hparams)

    @classmethod
    def build(cls, **hparams) -> "CaptionDecoder":
        """Construct and remember the arguments (for checkpoints)."""
        model = cls(**hparams)
        model._hparams = dict(hparams)
        return model


def caption_loss(logits: Tensor, targets: Tensor, pad_id: int = 0) -> Tensor:
    """Cross-entropy over real words only: padding positions are masked out of the mean."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=pad_id)
