"""What a run needs before and after training: data, vocabulary, cached features; decoding and scoring.

``prepare`` turns a config into ready tensors (the same for training and for evaluating a
checkpoint); ``evaluate_split`` decodes one split and writes its captions, metrics and failure report.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captioning.data.coco import ImageRecord, encode_captions
from captioning.data.datasets import dataset_key, load_dataset
from captioning.features.cache import extract_features
from captioning.models.show_tell import CaptionDecoder
from captioning.nn.decoding import decode_batched
from captioning.features.encoder import build_encoder
from captioning.text.tokenizer import tokenize
from captioning.text.vocab import Vocabulary

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Everything training and evaluation read: records, features per split, vocabulary, encoder info."""

    splits: dict[str, list[ImageRecord]]
    features: dict[str, np.ndarray]  # memory-mapped [N, D] float32, rows aligned with splits[...]
    vocab: Vocabulary
    encoder_cfg: dict
    encoder_key: str
    feature_dim: int
    bad_images: int = 0


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_dict(cfg: Any) -> dict:
    """A plain dict from an OmegaConf node (or a dict)."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return dict(cfg)


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
    encoder_cfg = to_dict(cfg.encoder)
    encoder = build_encoder(encoder_cfg, state=encoder_state).to(cfg.get("device", "cpu"))
    features, bad = {}, 0
    for name, records in splits.items():
        result = extract_features(encoder, [r.path for r in records], cfg.cache_dir,
                                  dataset_key=dataset_key(cfg.data, name),
                                  batch_size=encoder_cfg.get("batch_size", 64),
                                  num_workers=encoder_cfg.get("num_workers", 0),
                                  on_bad_image=cfg.on_bad_image)
        feats, kept = result.features, result.kept
        if len(kept) != len(records):
            bad += len(records) - len(kept)
            splits[name] = [records[i] for i in kept]
        features[name] = feats
    return Prepared(splits, features, vocab, encoder_cfg, encoder.cache_key, encoder.feature_dim, bad)


def caption_tensors(records: list[ImageRecord], vocab: Vocabulary, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token matrix [n_captions, max_len + 2] and the image row of each caption."""
    return encode_captions(records, vocab, max_len)


def generate(decoder: CaptionDecoder, vocab: Vocabulary, records: list[ImageRecord], features: np.ndarray,
             decoding: dict, max_len: int) -> dict[int, str]:
    """Decode every image of a split: {image_id: caption}."""
    opts = {k: v for k, v in decoding.items() if k != "batch_size"}
    out = decode_batched(decoder, features, batch_size=decoding.get("batch_size", 500), max_len=max_len, **opts)
    return {r.image_id: vocab.decode(t) for r, t in zip(records, out.tokens)}


def attribute_accuracy(records: list[ImageRecord], hypotheses: dict[int, str]) -> dict[str, float]:
    """Per-attribute accuracy of the captions against the scene descriptions (synthetic data only)."""
    if not records or records[0].scene is None:
        return {}
    from captioning.data.scenes import attribute_accuracy as scene_accuracy

    return scene_accuracy(records, hypotheses)


def evaluate_split(name: str, hypotheses: dict[int, str], records: list[ImageRecord], out_dir: Path,
                   metrics_cfg: dict, eval_cfg: dict) -> dict[str, float]:
    """Score one split's captions, write results/per-image/failure files; returns its metrics."""
    from captioning.evaluation.scoring import evaluate_split as score_split

    scene_fn = None
    if records and records[0].scene is not None:
        from captioning.data.scenes import error_kinds as scene_fn
    metrics = score_split(records, hypotheses, out_dir, name, metrics_cfg=metrics_cfg, scene_fn=scene_fn,
                          worst_k=eval_cfg.get("worst_k", 24), random_k=eval_cfg.get("random_k", 12))
    metrics.update({f"acc_{k}": v for k, v in attribute_accuracy(records, hypotheses).items()})
    return metrics
