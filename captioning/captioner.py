"""The captioning API: a trained model + its vocabulary + the encoder it was trained on, loaded once,
then captions for PIL images, image paths or precomputed features."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from captioning.data.images import load_rgb, to_rgb
from captioning.evaluation.attention_maps import caption_attention, has_attention
from captioning.features.encoder import Encoder, build_encoder
from captioning.features.identity import FeatureMismatch
from captioning.models.base import CaptionModel
from captioning.models.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from captioning.models.export import load_export
from captioning.nn.decoding import decode_batched
from captioning.text.vocab import UNK, Vocabulary

@dataclass
class Caption:
    """A generated caption with its log-probability, and the top beams when asked."""

    text: str
    score: float
    beams: list[tuple[str, float]] = field(default_factory=list)


class Captioner:
    """Load a checkpoint once, then caption PIL images, paths or precomputed features."""

    def __init__(self, model: CaptionModel, vocab: Vocabulary, encoder_cfg: dict, encoder_key: str,
                 max_len: int = 16, encoder_state: dict | None = None, encoder_provenance: dict | None = None) -> None:
        self.model, self.vocab, self.encoder_cfg, self.encoder_key = model.eval(), vocab, encoder_cfg, encoder_key
        self.max_len, self.encoder_state = max_len, encoder_state  # encoder_state: fine-tuned CNN weights
        self.encoder_provenance = encoder_provenance  # precision and package versions of the training features
        self._encoder = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> "Captioner":
        """Build from a checkpoint file or a run directory."""
        ckpt = load_checkpoint(path)
        model, vocab = model_from_checkpoint(ckpt)
        return cls(model, vocab, ckpt["encoder_cfg"], ckpt.get("encoder_key", ""), ckpt.get("max_len", 16),
                   ckpt.get("encoder_state"), ckpt.get("encoder_provenance"))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "Captioner":
        """Build from an export folder (``run_dir/export``, or ``scripts/export.py``'s): safetensors and
        JSON only, so no pickle is read (captioning/models/export.py)."""
        ckpt = load_export(path)
        model, vocab = model_from_checkpoint(ckpt)
        return cls(model, vocab, ckpt["encoder_cfg"], ckpt["encoder_key"], ckpt["max_len"], ckpt.get("encoder_state"),
                   ckpt.get("encoder_provenance"))

    @property
    def encoder(self) -> Encoder:
        """The image encoder the model was trained on (built on first use)."""
        if self._encoder is None:
            try:
                encoder = build_encoder(self.encoder_cfg, state=self.encoder_state)
            except (ValueError, TypeError, KeyError) as exc:
                raise CheckpointError(f"the checkpoint's encoder config cannot build an encoder ({exc})") from exc
            try:  # refuses other features; only warns where precision or package versions differ
                encoder.identity.check(self.encoder_key, self.encoder_provenance, "the model")
            except FeatureMismatch as exc:
                raise CheckpointError(str(exc)) from None
            wanted = self.model.feature_dim
            if encoder.feature_dim != wanted:
                raise CheckpointError(f"the checkpoint's model reads {wanted}-d features but its encoder config "
                                      f"builds a {encoder.feature_dim}-d encoder; the file mixes two runs")
            self._encoder = encoder.eval()
        return self._encoder

    @torch.no_grad()
    def features(self, images: Sequence) -> torch.Tensor:
        """Encoder features [N, D] for PIL images or image paths (any mode: converted to RGB)."""
        pics = [to_rgb(im) if isinstance(im, Image.Image) else load_rgb(im) for im in images]
        batch = torch.stack([self.encoder.transform(p) for p in pics])
        return self.encoder(batch)

    def caption_features(self, features, method: str = "beam", beam_size: int = 3, keep_beams: int = 0,
                         **kwargs) -> list[Caption]:
        """Captions for precomputed features [N, D]."""
        out = decode_batched(self.model, features, method=method, beam_size=beam_size,
                             keep_beams=keep_beams, max_len=self.max_len, **kwargs)
        beams = out.beams or [[] for _ in out.tokens]
        return [Caption(self.vocab.decode(t), s, [(self.vocab.decode(bt), bs) for bt, bs in bm])
                for t, s, bm in zip(out.tokens, out.scores, beams)]

    def caption(self, images: Iterable, **kwargs) -> list[Caption]:
        """Captions for PIL images or paths; keyword arguments go to decoding (method, beam_size...)."""
        return self.caption_features(self.features(list(images)), **kwargs)

    def attend(self, images: Iterable, **kwargs) -> list[tuple[Caption, list[str], np.ndarray]]:
        """(caption, its words + "<end>", attention weights [words + 1, R]) per PIL image or path, for
        attention models (``has_attention``); keyword arguments go to decoding."""
        if not has_attention(self.model):
            raise CheckpointError(f"this checkpoint's model ({self.model.name or type(self.model).__name__}) has "
                                  "no attention maps: it reads the image once, through its initial state")
        features = self.features(list(images))
        captions = self.caption_features(features, **kwargs)
        ids = [[self.vocab.stoi.get(w, UNK) for w in c.text.split()] for c in captions]
        weights = caption_attention(self.model, features, ids)
        return [(c, c.text.split() + ["<end>"], w) for c, w in zip(captions, weights)]
