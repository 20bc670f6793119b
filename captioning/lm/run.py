"""From a Hydra config (configs/lm/lm.yaml) to a corpus, a model and a training run."""

from __future__ import annotations


import torch

from captioning.lm.config import LMRunConfig
from captioning.lm.corpus import corpus_from_config
from captioning.lm.model import LM, CharRNN
from captioning.lm.train import TrainResult, train_char_lm
from captioning.lm.transformer import CharTransformer, TransformerConfig


def model_from_config(run: LMRunConfig, vocab_size: int) -> LM:
    """The CharTransformer, or the CharRNN of ``run.cell`` and ``run.model`` on ``run.backend``."""
    if isinstance(run.cell, TransformerConfig):
        return CharTransformer(vocab_size, run.cell)
    return CharRNN(vocab_size, run.cell, run.model, backend=run.backend)


def train_from_config(run: LMRunConfig) -> TrainResult:
    """Seed, read the corpus, build the model and train it as ``run`` (``captioning.lm.config.check(LMRunConfig, cfg)``) says."""
    if run.threads:
        torch.set_num_threads(run.threads)  # for the whole process
    torch.manual_seed(run.seed)
    corpus = corpus_from_config(run.corpus, run.val_fraction)
    model = model_from_config(run, len(corpus.vocab))
    return train_char_lm(model, corpus, run.schedule, run.out_dir, resume=run.resume)
