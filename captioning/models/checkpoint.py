"""Checkpoints and the captioning API: a trained decoder + its vocabulary + the encoder it was trained on.

A checkpoint is one torch file holding everything needed to caption a new image: the decoder's
hyperparameters and weights, the vocabulary, the encoder's config and cache key, and (for resuming)
the optimizer, schedule, counters and RNG states. It is written atomically.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from captioning.models.show_tell import CaptionDecoder
from captioning.nn.decoding import decode_batched
from captioning.utils.io import atomic_save_torch
from captioning.text.vocab import Vocabulary

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "decoder_hparams", "decoder", "vocab", "encoder_cfg")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupted, truncated, newer or mismatched."""


def save_checkpoint(path: str | os.PathLike, decoder: CaptionDecoder, vocab: Vocabulary,
                    encoder_cfg: dict, encoder_key: str, **extra: Any) -> None:
    """Write a checkpoint atomically; ``extra`` holds training state (optimizer, epoch, rng...)."""
    payload = {
        "format_version": FORMAT_VERSION,
        "decoder_hparams": decoder.hyperparameters(),
        "decoder": decoder.state_dict(),
        "vocab": vocab.state_dict(),
        "encoder_cfg": dict(encoder_cfg),
        "encoder_key": encoder_key,
        **extra,
    }
    atomic_save_torch(payload, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read and validate a checkpoint file; raise CheckpointError naming the problem and the fix."""
    path = Path(path)
    if path.is_dir():
        # the last two: a two-stage run (captioning/training/self_critical.py) before its second stage has saved anything
        for name in ("best.pt", "checkpoints/best.pt", "last.pt", "checkpoints/last.pt",
                     "cross_entropy/checkpoints/best.pt", "cross_entropy/checkpoints/last.pt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise CheckpointError(f"{path} is a directory with no best.pt or last.pt: pass a run directory or a .pt file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: pass checkpoint=<run dir or .pt file>")
    try:
        _check_zip_crc(path)
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupted or truncated ({type(exc).__name__}: {exc}); "
                              "use another checkpoint (e.g. last.pt instead of best.pt) or retrain") from exc
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
        raise CheckpointError(f"{path} is not a captioning checkpoint (missing {missing})")
    if type(ckpt["format_version"]) is not int:
        raise CheckpointError(f"{path} has format_version {ckpt['format_version']!r}, not a number: corrupted or "
                              "not a captioning checkpoint")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format {ckpt['format_version']}, newer than this code's "
                              f"{FORMAT_VERSION}: upgrade the captioning package")
    ckpt["path"] = str(path)
    return ckpt


def _check_zip_crc(path: Path) -> None:
    """Verify the CRC-32 of every record of a (zip-format) torch file: torch.load does not, so a flipped
    bit in the weights would otherwise load silently and caption garbage."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise ValueError(f"record {bad} fails its CRC-32 check")


def decoder_from_checkpoint(ckpt: dict) -> tuple[CaptionDecoder, Vocabulary]:
    """Rebuild the decoder and vocabulary; refuse a vocabulary that doesn't fit the weights."""
    try:
        vocab = Vocabulary.from_state_dict(ckpt["vocab"])
        hp = dict(ckpt["decoder_hparams"])
    except (ValueError, TypeError, KeyError) as exc:  # VocabularyError is a ValueError
        raise CheckpointError(f"{ckpt.get('path')}: malformed vocabulary or decoder settings ({exc})") from exc
    if hp.get("vocab_size") != len(vocab):
        raise CheckpointError(f"{ckpt.get('path')}: vocabulary has {len(vocab)} words but the decoder was "
                              f"built for {hp.get('vocab_size')}; the file mixes two runs, retrain or use another")
    try:
        decoder = CaptionDecoder.build(**hp)
        decoder.load_state_dict(ckpt["decoder"])
    except (RuntimeError, ValueError, TypeError, AttributeError) as exc:  # whatever a malformed entry makes torch raise
        raise CheckpointError(f"{ckpt.get('path')}: weights don't match the decoder they claim ({exc})") from exc
    return decoder.eval(), vocab


@dataclass
class Caption:
    """A generated caption with its log-probability, and the top beams when asked."""

    text: str
    score: float
    beams: list[tuple[str, float]] = field(default_factory=list)


class Captioner:
    """Load a checkpoint once, then caption PIL images, paths or precomputed features."""

    def __init__(self, decoder: CaptionDecoder, vocab: Vocabulary, encoder_cfg: dict, encoder_key: str,
                 max_len: int = 16, encoder_state: dict | None = None) -> None:
        self.decoder, self.vocab, self.encoder_cfg, self.encoder_key = decoder.eval(), vocab, encoder_cfg, encoder_key
        self.max_len, self.encoder_state = max_len, encoder_state  # encoder_state: fine-tuned CNN weights
        self._encoder = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> "Captioner":
        """Build from a checkpoint file or a run directory."""
        ckpt = load_checkpoint(path)
        decoder, vocab = decoder_from_checkpoint(ckpt)
        return cls(decoder, vocab, ckpt["encoder_cfg"], ckpt.get("encoder_key", ""), ckpt.get("max_len", 16),
                   ckpt.get("encoder_state"))

    @property
    def encoder(self):
        """The image encoder the decoder was trained on (built on first use)."""
        if self._encoder is None:
            from captioning.features.encoder import build_encoder

            try:
                encoder = build_encoder(self.encoder_cfg, state=self.encoder_state)
            except (ValueError, TypeError, KeyError) as exc:
                raise CheckpointError(f"the checkpoint's encoder config cannot build an encoder ({exc})") from exc
            if self.encoder_key and encoder.cache_key != self.encoder_key:
                raise CheckpointError(f"the checkpoint was trained on encoder features {self.encoder_key!r} but "
                                      f"its config now builds {encoder.cache_key!r}; use the matching encoder")
            wanted = self.decoder.hyperparameters().get("feature_dim")
            if encoder.feature_dim != wanted:
                raise CheckpointError(f"the checkpoint's decoder reads {wanted}-d features but its encoder config "
                                      f"builds a {encoder.feature_dim}-d encoder; the file mixes two runs")
            self._encoder = encoder.eval()
        return self._encoder

    @torch.no_grad()
    def features(self, images: Sequence) -> torch.Tensor:
        """Encoder features [N, D] for PIL images or image paths (any mode: converted to RGB)."""
        from PIL import Image

        from captioning.data.images import load_rgb, to_rgb

        pics = [to_rgb(im) if isinstance(im, Image.Image) else load_rgb(im) for im in images]
        batch = torch.stack([self.encoder.transform(p) for p in pics])
        return self.encoder(batch)

    def caption_features(self, features, method: str = "beam", beam_size: int = 3, keep_beams: int = 0,
                         **kwargs) -> list[Caption]:
        """Captions for precomputed features [N, D]."""
        out = decode_batched(self.decoder, features, method=method, beam_size=beam_size,
                             keep_beams=keep_beams, max_len=self.max_len, **kwargs)
        beams = out.beams or [[] for _ in out.tokens]
        return [Caption(self.vocab.decode(t), s, [(self.vocab.decode(bt), bs) for bt, bs in bm])
                for t, s, bm in zip(out.tokens, out.scores, beams)]

    def caption(self, images: Iterable, **kwargs) -> list[Caption]:
        """Captions for PIL images or paths; keyword arguments go to the decoder (method, beam_size...)."""
        return self.caption_features(self.features(list(images)), **kwargs)
