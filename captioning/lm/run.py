"""From a Hydra config (configs/lm/lm.yaml) to a corpus, a model and a training run."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from captioning.lm.corpus import Corpus, load_corpus
from captioning.lm.model import CharRNN
from captioning.lm.train import TrainConfig, TrainResult, train


def corpus_from_config(corpus_cfg: Any, val_fraction: float = 0.1) -> Corpus:
    """Read the corpus a configs/lm/corpus/*.yaml entry describes."""
    c = corpus_cfg
    return load_corpus(list(c.paths) if not isinstance(c.paths, str) else c.paths, c.pattern, list(c.exclude),
                       c.max_chars, val_fraction, c.get("hint", ""))


def model_from_config(cfg: DictConfig, vocab_size: int) -> CharRNN:
    """The CharRNN of ``cfg.cell`` and ``cfg.model`` on ``cfg.backend``."""
    return CharRNN(vocab_size, cfg.cell.name, cfg.cell.hidden_size, cfg.cell.num_layers,
                   cfg.model.embedding_dim, cfg.cell.dropout, backend=cfg.backend)


def train_config(cfg: DictConfig) -> TrainConfig:
    """The schedule group plus the run-wide seed and thread count."""
    return TrainConfig(**OmegaConf.to_container(cfg.schedule, resolve=True), seed=cfg.seed, threads=cfg.threads)


def train_from_config(cfg: DictConfig) -> TrainResult:
    """Seed, read the corpus, build the model and train it as ``cfg`` says."""
    tc = train_config(cfg)  # validates the schedule before any slow work
    torch.manual_seed(cfg.seed)
    corpus = corpus_from_config(cfg.corpus, cfg.val_fraction)
    model = model_from_config(cfg, len(corpus.vocab))
    return train(model, corpus, tc, cfg.out_dir, resume=cfg.resume)
