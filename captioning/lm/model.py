"""The character model: embedding (or one-hot) -> multi-layer RNN/LSTM/GRU -> linear to logits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from captioning.nn.cells import build_rnn
from captioning.lm.vocab import CharVocab

State = Any  # h, or (h, c) for an LSTM: [layers, B, H] each


class CharRNN(nn.Module):
    """char-rnn: p(x_{t+1} | x_<=t) from the top layer's hidden state. Inputs are time-first [T, B]."""

    def __init__(self, vocab_size: int, cell: str = "lstm", hidden_size: int = 512, num_layers: int = 1,
                 embedding_dim: int = 64, dropout: float = 0.0, backend: str = "fused") -> None:
        super().__init__()
        self.config = dict(vocab_size=vocab_size, cell=cell, hidden_size=hidden_size, num_layers=num_layers,
                           embedding_dim=embedding_dim, dropout=dropout)
        # embedding_dim 0 means one-hot inputs, as in the original char-rnn
        self.embed = nn.Embedding(vocab_size, embedding_dim) if embedding_dim > 0 else None
        in_size = embedding_dim if embedding_dim > 0 else vocab_size
        self.rnn = build_rnn(cell, in_size, hidden_size, num_layers=num_layers, dropout=dropout, backend=backend)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def inputs(self, x: Tensor) -> Tensor:
        """Vectors fed to the first layer: embeddings or one-hot rows."""
        if self.embed is not None:
            return self.embed(x)
        return nn.functional.one_hot(x, self.config["vocab_size"]).to(self.head.weight.dtype)

    def forward(self, x: Tensor, state: State = None) -> tuple[Tensor, State]:
        """Logits [T, B, V] and the final state."""
        out, state = self.rnn(self.inputs(x), state)
        return self.head(self.drop(out)), state


def build_char_rnn(config: dict, backend: str = "fused") -> CharRNN:
    """A CharRNN from its saved ``config`` dict (as stored in checkpoints)."""
    return CharRNN(**config, backend=backend)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by captioning.lm.train (clear error if it is missing)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: train first (scripts/train_lm.py) or fix the path")
    return torch.load(path, map_location="cpu", weights_only=False)


def load_lm(path: str | Path, backend: str = "fused") -> tuple[CharRNN, CharVocab]:
    """The trained model (in eval mode) and its vocabulary from a checkpoint."""
    ckpt = load_checkpoint(path)
    model = build_char_rnn(ckpt["model_config"], backend)
    model.load_state_dict(ckpt["model"])
    return model.eval(), CharVocab.from_state_dict(ckpt["vocab"])
