"""Checkpoints: a trained caption model + its vocabulary + the encoder it was trained on.

A checkpoint is one torch file holding everything needed to caption a new image: the model's name and
options (``CaptionModel.hyperparameters``), its weights, the vocabulary, the encoder's config and cache
key and, when the encoder was fine-tuned, the encoder's weights; ``last.pt`` also holds what resuming
needs (optimizer, learning-rate schedule, position, RNG states). It is written atomically and read with
``torch.load(weights_only=True)``, which refuses to run code that a crafted file may carry.

Format 2 (this one) names the model; format 1 (before the model registry) held a ``show_tell`` decoder's
hyperparameters under ``decoder_hparams`` and still loads, converted on reading.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from captioning.models.base import CaptionModel, build_model, model_class
from captioning.text.vocab import Vocabulary
from captioning.utils.io import atomic_save_torch
from captioning.utils.schema import plain

FORMAT_VERSION = 2
REQUIRED_KEYS = {1: ("format_version", "decoder_hparams", "decoder", "vocab", "encoder_cfg"),
                 2: ("format_version", "model", "feature_dim", "vocab_size", "max_len", "weights", "vocab",
                     "encoder_cfg")}
# where a run directory keeps its checkpoints, most useful first
RUN_DIR_CHECKPOINTS = ("best.pt", "checkpoints/best.pt", "last.pt", "checkpoints/last.pt")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupted, truncated, unsafe, newer or mismatched."""


def save_checkpoint(path: str | os.PathLike, model: CaptionModel, vocab: Vocabulary, encoder_cfg: dict,
                    encoder_key: str, **extra: Any) -> None:
    """Write a checkpoint atomically; ``extra`` holds training state (optimizer, epoch, rng...)."""
    payload = {
        "format_version": FORMAT_VERSION,
        "model": model.hyperparameters(),
        "feature_dim": model.feature_dim,
        "vocab_size": model.vocab_size,
        "max_len": model.max_len,
        "weights": model.state_dict(),
        "vocab": vocab.state_dict(),
        "encoder_cfg": plain(encoder_cfg),
        "encoder_key": encoder_key,
        **extra,
    }
    atomic_save_torch(payload, path)


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint file ``path`` names: itself, or a run directory's best (else last) checkpoint."""
    path = Path(path)
    if path.is_dir():
        for name in RUN_DIR_CHECKPOINTS:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} is a directory with no best.pt or last.pt: pass a run directory or a .pt file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: pass checkpoint=<run dir or .pt file>")
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read and validate a checkpoint file; raise CheckpointError naming the problem and the fix."""
    path = find_checkpoint(path)
    try:
        check_zip_crc(path)
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # not a refused class or function: a broken file
            raise CheckpointError(f"checkpoint {path} is corrupted or truncated ({exc}); use another checkpoint "
                                  "(e.g. last.pt instead of best.pt) or retrain") from exc
        # weights_only refuses to import anything but tensors and plain containers; torch's last line names what
        refused = [line.strip() for line in str(exc).splitlines() if "global" in line.lower()][-1]
        raise CheckpointError(f"checkpoint {path} holds objects other than tensors and plain data, which could run "
                              f"code when loaded; refused ({refused}). Only load checkpoints you trust, and retrain "
                              "or re-export this one") from exc
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupted or truncated ({type(exc).__name__}: {exc}); "
                              "use another checkpoint (e.g. last.pt instead of best.pt) or retrain") from exc
    version = ckpt.get("format_version") if isinstance(ckpt, dict) else None
    if type(version) is not int:
        raise CheckpointError(f"{path} is not a captioning checkpoint (format_version {version!r}): corrupted, or "
                              "written by another program")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format {version}, newer than this code's {FORMAT_VERSION}: upgrade the "
                              "captioning package")
    missing = [k for k in REQUIRED_KEYS.get(version, REQUIRED_KEYS[FORMAT_VERSION]) if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not a captioning checkpoint of format {version} (missing {missing})")
    if version == 1:
        ckpt = upgrade_format_1(ckpt)
    ckpt["path"] = str(path)
    return ckpt


def upgrade_format_1(ckpt: dict) -> dict:
    """A format-1 checkpoint (a show_tell decoder's constructor arguments) in format 2."""
    hp = dict(ckpt.pop("decoder_hparams"))
    t_max = hp.pop("t_max", None)
    cell = {"name": hp.pop("cell", "lstm"), "num_layers": hp.pop("num_layers", 1), "backend": hp.pop("backend", "fused")}
    # format 1's constructor defaults, where a checkpoint left them out
    model = {"name": "show_tell", "cell": cell, "embed_dim": 256, "hidden_size": 512, "dropout": 0.0,
             "feature_dropout": None, "feature_norm": True, "init_activation": "tanh", "init_hidden": 0,
             "lstm_init": "torch", "forget_bias": 1.0}
    feature_dim, vocab_size = hp.pop("feature_dim"), hp.pop("vocab_size")
    model.update(hp)
    max_len = ckpt.get("max_len", 16) if t_max is None else t_max - 1
    return {**ckpt, "format_version": 2, "model": model, "feature_dim": feature_dim, "vocab_size": vocab_size,
            "max_len": max_len, "weights": ckpt.pop("decoder")}


def check_zip_crc(path: Path) -> None:
    """Verify the CRC-32 of every record of a (zip-format) torch file: torch.load does not, so a flipped
    bit in the weights would otherwise load silently and caption garbage."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise ValueError(f"record {bad} fails its CRC-32 check")


def model_from_checkpoint(ckpt: dict) -> tuple[CaptionModel, Vocabulary]:
    """Rebuild the model and vocabulary; refuse a vocabulary that doesn't fit the weights."""
    try:
        vocab = Vocabulary.from_state_dict(ckpt["vocab"])
        options, vocab_size = dict(ckpt["model"]), ckpt["vocab_size"]
    except (ValueError, TypeError, KeyError) as exc:  # VocabularyError is a ValueError
        raise CheckpointError(f"{ckpt.get('path')}: malformed vocabulary or model settings ({exc})") from exc
    if type(vocab_size) is not int or vocab_size != len(vocab):
        raise CheckpointError(f"{ckpt.get('path')}: vocabulary has {len(vocab)} words but the model was built for "
                              f"{vocab_size}; the file mixes two runs, retrain or use another")
    try:  # a class that cannot be found is a missing module, not a broken file
        model_class(str(options.get("name")))
    except ValueError as exc:
        raise CheckpointError(f"{ckpt.get('path')}: the model class it names can't be imported ({exc}); "
                              "put its module on PYTHONPATH or install its package") from exc
    try:
        model = build_model(options, feature_dim=int(ckpt["feature_dim"]), vocab_size=len(vocab),
                            max_len=int(ckpt["max_len"]))
        model.load_state_dict(ckpt["weights"])
    except (RuntimeError, ValueError, TypeError, AttributeError, KeyError) as exc:  # a malformed entry
        raise CheckpointError(f"{ckpt.get('path')}: weights don't match the model they claim ({exc})") from exc
    return model.eval(), vocab
