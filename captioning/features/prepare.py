"""What a run reads: the data, its vocabulary and the encoder's (cached) features of every split.

``prepare`` turns a ``DataSource`` (the data and encoder nodes, the feature cache, the device) into ready
arrays, the same for training and for evaluating a checkpoint.
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


@dataclass(frozen=True)
class DataSource:
    """What ``prepare`` reads: the ``data`` and ``encoder`` config nodes, the feature cache, the device the
    encoder runs on, what an unreadable image does, and the seed (random-init encoders agree across shards)."""

    data: Any
    encoder: Any
    cache_dir: str
    device: str = "cpu"
    on_bad_image: str = "fail"
    seed: int = 0


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


def prepare(source: DataSource, vocab: Vocabulary | None = None, splits_needed: list[str] | None = None,
            encoder_state: dict | None = None) -> Prepared:
    """Load the data, build (or reuse) the vocabulary and extract (or reuse cached) features.

    ``encoder_state``: fine-tuned encoder weights (a checkpoint's), used instead of the pretrained ones."""
    splits = load_dataset(source.data, splits_needed)
    if vocab is None:
        train = source.data.train_split
        if train not in splits:
            raise ValueError(f"data {source.data.name!r} has no split {train!r} to build a vocabulary from")
        vocab = Vocabulary.build((tokenize(c) for r in splits[train] for c in r.captions),
                                 min_count=source.data.min_word_count)
    encoder_cfg = validate_encoder_config(source.encoder)
    encoder = build_encoder(encoder_cfg, state=encoder_state).to(source.device)
    features, bad = {}, 0
    for name, records in splits.items():
        result = extract_features(encoder, [r.path for r in records], source.cache_dir,
                                  dataset_key=dataset_key(source.data, name),
                                  batch_size=encoder_cfg.batch_size,
                                  num_workers=encoder_cfg.num_workers,
                                  on_bad_image=source.on_bad_image)
        feats, kept = result.features, result.kept
        if len(kept) != len(records):
            bad += len(records) - len(kept)
            splits[name] = [records[i] for i in kept]
        features[name] = feats
    return Prepared(splits, features, vocab, encoder_cfg, encoder.identity, encoder.feature_dim, bad)
