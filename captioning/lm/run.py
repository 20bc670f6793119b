"""From a Hydra config (configs/lm/lm.yaml) to a corpus, a model and a training run."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from captioning.lm.config import LMRunConfig, cell_config, check, run_problems
from captioning.lm.corpus import corpus_from_config
from captioning.lm.model import LM, CharRNN
from captioning.lm.train import TrainResult, train_char_lm
from captioning.lm.transformer import CharTransformer, TransformerConfig


def run_config(cfg: Any) -> LMRunConfig:
    """The typed run config of ``cfg`` (a composed configs/lm/lm.yaml, ``cell`` typed by its choice);
    ValueError naming every bad value."""
    run = check(LMRunConfig, cfg, run_problems)
    return replace(run, cell=cell_config(run.cell))


def model_from_config(run: LMRunConfig, vocab_size: int) -> LM:
    """The CharTransformer, or the CharRNN of ``run.cell`` and ``run.model`` on ``run.backend``."""
    if isinstance(run.cell, TransformerConfig):
        return CharTransformer(vocab_size, run.cell)
    return CharRNN(vocab_size, run.cell, run.model, backend=run.backend)


def train_from_config(run: LMRunConfig) -> TrainResult:
    """Seed, read the corpus, build the model and train it as ``run`` (see ``run_config``) says."""
    if run.threads:
        torch.set_num_threads(run.threads)  # for the whole process
    torch.manual_seed(run.seed)
    corpus = corpus_from_config(run.corpus, run.val_fraction)
    model = model_from_config(run, len(corpus.vocab))
    return train_char_lm(model, corpus, run.schedule, run.out_dir, resume=run.resume)
