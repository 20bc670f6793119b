"""The character models: CharRNN (embedding or one-hot -> multi-layer RNN/LSTM/GRU -> linear to logits) here,
CharTransformer in captioning/lm/transformer.py. Both read time-first ids [T, B] and return (logits [T, B, V],
state); ``context`` is None for a model that carries its state (the RNNs) and the block size for one that
reads a bounded window (the transformer). ``build_lm`` and ``load_lm`` give back either from a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from captioning.nn.cells import CELLS, build_rnn
from captioning.lm.transformer import NAME as TRANSFORMER, CharTransformer, TransformerConfig
from captioning.lm.vocab import CharVocab
from captioning.utils.schema import option

State = Any  # h, or (h, c) for an LSTM: [layers, B, H] each; None for the transformer


@dataclass
class CharCellConfig:
    """The `cell` group of the character model (configs/lm/cell/*.yaml)."""

    name: str = option("lstm", "the recurrent cell (captioning/nn/cells.py)", choices=tuple(CELLS))
    hidden_size: int = option(512, "units per layer", ge=1)
    num_layers: int = option(1, "stacked recurrent layers", ge=1)
    dropout: float = option(0.0, "dropout between layers and on the top layer's output, in [0, 1)", ge=0.0, lt=1.0)


@dataclass
class CharModelConfig:
    """The `model` section of configs/lm/lm.yaml: the layers around the cell."""

    embedding_dim: int = option(64, "width of the character embedding of the recurrent cells; 0 = one-hot "
                                "inputs, as the original char-rnn (the transformer's width is cell.n_embd)", ge=0)


class CharRNN(nn.Module):
    """char-rnn: p(x_{t+1} | x_<=t) from the top layer's hidden state. Inputs are time-first [T, B]."""

    def __init__(self, vocab_size: int, cell: CharCellConfig, model: CharModelConfig | None = None,
                 backend: str = "fused") -> None:
        super().__init__()
        model = model or CharModelConfig()
        embedding_dim = model.embedding_dim
        # the flat form checkpoints store (build_char_rnn reads it back)
        self.config = dict(vocab_size=vocab_size, cell=cell.name, hidden_size=cell.hidden_size,
                           num_layers=cell.num_layers, embedding_dim=embedding_dim, dropout=cell.dropout)
        # embedding_dim 0 means one-hot inputs, as in the original char-rnn
        self.context = None  # unbounded: the state carries everything read so far
        self.embed = nn.Embedding(vocab_size, embedding_dim) if embedding_dim > 0 else None
        in_size = embedding_dim if embedding_dim > 0 else vocab_size
        self.rnn = build_rnn(cell.name, in_size, cell.hidden_size, num_layers=cell.num_layers, dropout=cell.dropout,
                             backend=backend)
        self.drop = nn.Dropout(cell.dropout)
        self.head = nn.Linear(cell.hidden_size, vocab_size)

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
    """A CharRNN from its saved ``config`` dict (``CharRNN.config``, as stored in checkpoints)."""
    cell = CharCellConfig(name=config["cell"], hidden_size=config["hidden_size"], num_layers=config["num_layers"],
                          dropout=config["dropout"])
    return CharRNN(config["vocab_size"], cell, CharModelConfig(embedding_dim=config["embedding_dim"]), backend)


LM = CharRNN | CharTransformer


def build_lm(config: dict, backend: str = "fused") -> LM:
    """The character model of a saved ``config`` dict (a CharRNN's or a CharTransformer's ``config``)."""
    if config["cell"] == TRANSFORMER:
        return CharTransformer(config["vocab_size"], TransformerConfig(**{k: v for k, v in config.items()
                                                                           if k not in ("vocab_size", "cell")}))
    return build_char_rnn(config, backend)


class LMCheckpointError(ValueError):
    """A character-model checkpoint that cannot be read."""


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by captioning.lm.train.train_char_lm (clear error if it is missing)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: train first (captioning-train-lm) or fix the path")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # plain data and tensors: no code runs
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise LMCheckpointError(f"checkpoint {path} is corrupted or truncated ({type(exc).__name__}: {exc}); "
                                "retrain (captioning-train-lm) or use another checkpoint") from exc


def load_lm(path: str | Path, backend: str = "fused") -> tuple[LM, CharVocab]:
    """The trained model (in eval mode) and its vocabulary from a checkpoint; ``backend`` is the RNNs'."""
    ckpt = load_checkpoint(path)
    model = build_lm(ckpt["model_config"], backend)
    model.load_state_dict(ckpt["model"])
    return model.eval(), CharVocab.from_state_dict(ckpt["vocab"])
