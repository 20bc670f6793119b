"""The two sequence forms captioning does not cover, on the project's recurrent core.

* many-to-one (``ManyToOne``): read a sequence, predict from the top layer's final state;
* sequence-to-sequence (``Seq2Seq``, Sutskever et al. 2014): an encoder RNN reads the source into its
  final state, a decoder RNN starts from that state and writes the target one token at a time.

``Seq2Seq`` has the caption models' ``init_state`` / ``step`` / ``select_state`` interface, so greedy decoding and beam
search are ``captioning.nn.decoding``'s, unchanged: the "features" it is given are the padded source ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from captioning.nn.decoding import map_tensors
from captioning.nn.cells import BACKENDS, CELLS, LSTM_INITS, build_rnn, init_lstm_gates  # noqa: F401 (re-exported)
from captioning.text.vocab import PAD
from captioning.utils.schema import option


@dataclass
class SequenceCellConfig:
    """The `cell` group of the sequence tasks (configs/sequence/cell/*.yaml)."""

    name: str = option("lstm", "the recurrent cell (captioning/nn/cells.py)", choices=tuple(CELLS))
    backend: str = option("fused", "fused: torch's kernel on our parameters | scratch: our cells step by step",
                          choices=BACKENDS)
    lstm_init: str = option("torch", "LSTM gate-bias init: torch (forget gate ~0.5) | forget_bias (b_f = forget_bias) "
                            "| chrono (Tallec & Ollivier 2018: b_f ~ log U(1, t_max - 1), b_i = -b_f); other cells: "
                            "torch", choices=LSTM_INITS)
    forget_bias: float = option(1.0, "the forget-gate bias of lstm_init=forget_bias")
    t_max: int | None = option(None, "chrono's longest dependency in steps; null = the task's longest sequence", ge=2)


@dataclass
class SequenceModelConfig:
    """The `model` section of configs/sequence/sequence.yaml: the sizes around the cell."""

    hidden_size: int = option(64, "units per recurrent layer", ge=1)
    embed_dim: int = option(32, "token tasks: width of the word embedding", ge=1)
    num_layers: int = option(1, "stacked recurrent layers", ge=1)


def token_lengths(tokens: Tensor) -> Tensor:
    """Lengths of right-padded id sequences [B, T] (everything before the first PAD)."""
    return (tokens != PAD).sum(dim=1).clamp(min=1).cpu()


class ManyToOne(nn.Module):
    """Sequence -> one prediction: RNN over the inputs, a linear layer on the top layer's final state.

    Inputs are float vectors [B, T, input_size], or token ids [B, T] when ``vocab_size`` > 0 (then
    an embedding of width ``input_size`` comes first and padding is found from PAD ids).
    ``lstm_init`` / ``forget_bias`` / ``t_max``: see ``init_lstm_gates``.
    """

    def __init__(self, cell: str, input_size: int, output_size: int, hidden_size: int, num_layers: int = 1,
                 vocab_size: int = 0, backend: str = "fused", lstm_init: str = "torch", forget_bias: float = 1.0,
                 t_max: int | None = None) -> None:
        super().__init__()
        self.cell, self.output_size = cell, output_size
        self.embed = nn.Embedding(vocab_size, input_size, padding_idx=PAD) if vocab_size > 0 else None
        self.rnn = build_rnn(cell, input_size, hidden_size, num_layers=num_layers, batch_first=True, backend=backend)
        init_lstm_gates(self.rnn, lstm_init, forget_bias, t_max)
        self.head = nn.Linear(hidden_size, output_size)

    def final_hidden(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The top layer's hidden state after each sequence's last real step: [B, H]."""
        if self.embed is not None:
            lengths = token_lengths(x) if lengths is None else lengths
            x = self.embed(x)
        _, state = self.rnn(x, lengths=lengths)
        h_n = state[0] if isinstance(state, tuple) else state
        return h_n[-1]

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Predictions [B, output_size] ([B] when output_size is 1: a regressor)."""
        out = self.head(self.final_hidden(x, lengths))
        return out.squeeze(-1) if self.output_size == 1 else out


class Seq2Seq(nn.Module):
    """Encoder RNN -> final state -> decoder RNN of the same cell and size; separate embeddings."""

    def __init__(self, cell: str, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int = 1,
                 backend: str = "fused", lstm_init: str = "torch", forget_bias: float = 1.0, t_max: int | None = None,
                 target_vocab_size: int | None = None) -> None:
        super().__init__()
        target_vocab_size = target_vocab_size or vocab_size
        self.cell = cell
        self.src_embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(target_vocab_size, embed_dim, padding_idx=PAD)
        kw = {"num_layers": num_layers, "batch_first": True, "backend": backend}
        self.encoder = build_rnn(cell, embed_dim, hidden_size, **kw)
        self.decoder = build_rnn(cell, embed_dim, hidden_size, **kw)
        for rnn in (self.encoder, self.decoder):
            init_lstm_gates(rnn, lstm_init, forget_bias, t_max)
        self.out = nn.Linear(hidden_size, target_vocab_size)

    def init_state(self, src: Tensor) -> Any:
        """Encode right-padded source ids [B, S]: the encoder's final state is the decoder's first."""
        _, state = self.encoder(self.src_embed(src), lengths=token_lengths(src))
        return state

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: logits [B, L, V] for decoder inputs [B, L] (<start> w1 ... w_{L-1})."""
        out, _ = self.decoder(self.tgt_embed(tgt_in), self.init_state(src))
        return self.out(out)

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One decoding step: previous tokens [B] -> log-probabilities [B, V] and the new state."""
        out, state = self.decoder(self.tgt_embed(tokens).unsqueeze(1), state)
        return torch.log_softmax(self.out(out.squeeze(1)), dim=-1), state

    def select_state(self, state: Any, index: Tensor) -> Any:
        """Batch rows ``index`` of a state: h (and c) are [layers, B, H]."""
        return map_tensors(state, lambda t: t.index_select(1, index))
