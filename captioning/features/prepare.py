"""What a run reads: the data, its vocabulary and the encoder's (cached) features of every split.

``prepare`` turns a config into ready arrays, the same for training and for evaluating a checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from captioning.data.coco import ImageRecord
from captioning.data.datasets import dataset_key, load_dataset
from captioning.features.cache import extract_features
from captioning.features.encoder import EncoderConfig, build_encoder, validate_encoder_config
from captioning.features.identity import FeatureIdentity
from captioning.text.tokenizer import tokenize
from captioning.text.vocab import Vocabulary

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Everything training and evaluation read: records, features per split, vocabulary, encoder info."""

    splits: dict[str, list[ImageRecord]]
    features: dict[str, np.ndarray]  # memory-mapped [N, D] float32, rows aligned with splits[...]
    vocab: Vocabulary
    encoder_cfg: EncoderConfig
    encoder_identity: FeatureIdentity  # what decides the features; checkpoints record it
    feature_dim: int
    bad_images: int = 0

    @property
    def encoder_key(self) -> str:
        """The features' identity key (captioning/features/identity.py)."""
        return self.encoder_identity.key


def prepare(cfg: Any, vocab: Vocabulary | None = None, splits_needed: list[str] | None = None,
            encoder_state: dict | None = None) -> Prepared:
    """Load the data, build (or reuse) the vocabulary and extract (or reuse cached) features.

    ``encoder_state``: fine-tuned encoder weights (a checkpoint's), used instead of the pretrained ones."""
    splits = load_dataset(cfg.data, splits_needed)
    if vocab is None:
        train = cfg.data.train_split
        if train not in splits:
            raise ValueError(f"data {cfg.data.name!r} has no split {train!r} to build a vocabulary from")
        vocab = Vocabulary.build((tokenize(c) for r in splits[train] for c in r.captions),
                                 min_count=cfg.data.min_word_count)
    encoder_cfg = validate_encoder_config(cfg.encoder)
    encoder = build_encoder(encoder_cfg, state=encoder_state).to(cfg.device)
    features, bad = {}, 0
    for name, records in splits.items():
        result = extract_features(encoder, [r.path for r in records], cfg.cache_dir,
                                  dataset_key=dataset_key(cfg.data, name),
                                  batch_size=encoder_cfg.batch_size,
                                  num_workers=encoder_cfg.num_workers,
                                  on_bad_image=cfg.on_bad_image)
        feats, kept = result.features, result.kept
        if len(kept) != len(records):
            bad += len(records) - len(kept)
            splits[name] = [records[i] for i in kept]
        features[name] = feats
    return Prepared(splits, features, vocab, encoder_cfg, encoder.identity, encoder.feature_dim, bad)
