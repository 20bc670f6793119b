"""Inference exports: a trained caption model as plain files that load without running any pickle.

    export/
      model.safetensors    the caption model's weights
      encoder.safetensors  the fine-tuned CNN's weights (only when the encoder was fine-tuned)
      vocab.json           the vocabulary (``Vocabulary.state_dict``)
      config.json          the model's hyperparameters (with its registry ``name``), feature_dim,
                           vocab_size, max_len, encoder_cfg, encoder_key, the format version and the
                           SHA-256 of every other file

Safetensors and JSON hold data only, so an export from a stranger cannot run code when loaded (a torch
checkpoint needs ``weights_only=True`` for that, and carries training state an export leaves out).
Every file is written atomically, ``config.json`` last: it names the digests of the files written before
it, so a half-finished re-export, a file from another export or a flipped bit is refused on loading
(``CheckpointError``) instead of captioning with mismatched parts.

``Captioner.from_pretrained(<export dir>)`` loads one; ``scripts/export.py`` exports an older run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import torch

from captioning.models import show_tell  # noqa: F401 (registers the package's models for loading)
from captioning.models.checkpoint import CheckpointError, load_checkpoint
from captioning.utils.io import atomic_save_bytes, save_json

EXPORT_FORMAT = 1
MODEL_FILE, ENCODER_FILE, VOCAB_FILE, CONFIG_FILE = "model.safetensors", "encoder.safetensors", "vocab.json", "config.json"


def export_checkpoint(checkpoint: dict | str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write the export of ``checkpoint`` (a loaded checkpoint, a ``.pt`` file or a run directory, whose
    best checkpoint is taken) to ``out_dir``; returns ``out_dir``."""
    from safetensors.torch import save

    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blobs = {MODEL_FILE: save(_tensors(ckpt["weights"], "weights"), metadata={"format": "pt"}),
             VOCAB_FILE: (json.dumps(ckpt["vocab"], indent=1) + "\n").encode("utf-8")}
    if ckpt.get("encoder_state") is not None:
        blobs[ENCODER_FILE] = save(_tensors(ckpt["encoder_state"], "encoder_state"), metadata={"format": "pt"})
    for name, data in blobs.items():
        atomic_save_bytes(data, out_dir / name)
    config = {"format": "captioning-export", "format_version": EXPORT_FORMAT, "model": dict(ckpt["model"]),
              "feature_dim": int(ckpt["feature_dim"]), "vocab_size": int(ckpt["vocab_size"]),
              "max_len": int(ckpt["max_len"]), "encoder_cfg": dict(ckpt["encoder_cfg"]),
              "encoder_key": ckpt.get("encoder_key", ""), "encoder_provenance": ckpt.get("encoder_provenance", {}),
              "files": {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()}}
    save_json(config, out_dir / CONFIG_FILE)  # last: the export is complete once this names the files
    if ENCODER_FILE not in blobs:  # left by an earlier export of a fine-tuned model
        with contextlib.suppress(FileNotFoundError):
            (out_dir / ENCODER_FILE).unlink()
    return out_dir


def _tensors(state: dict, what: str) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies (safetensors refuses views and tensors sharing memory, e.g. tied weights)."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"the checkpoint's {what} is not a dict of tensors: cannot export it")
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def load_export(path: str | os.PathLike) -> dict:
    """Read an export directory as the checkpoint fields the caption API needs (``model``, ``weights``,
    ``vocab``, ``encoder_cfg``, ``encoder_key``, ``encoder_state`` when fine-tuned...); no pickle is read.
    Raise CheckpointError naming a missing, altered or mismatched file."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not (path / CONFIG_FILE).is_file():
        what = "does not exist" if not path.exists() else f"has no {CONFIG_FILE}"
        raise CheckpointError(f"export {path} {what}: pass a folder written by the training run (run_dir/export) or "
                              "by scripts/export.py checkpoint=<run dir or .pt> out=<folder>")
    try:
        config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path / CONFIG_FILE} is not valid JSON ({exc}): re-export the run") from exc
    if not isinstance(config, dict) or config.get("format") != "captioning-export":
        raise CheckpointError(f"{path / CONFIG_FILE} is not a captioning export's config")
    version = config.get("format_version")
    if type(version) is not int or version > EXPORT_FORMAT:
        raise CheckpointError(f"{path} has export format {version!r}, this code reads <= {EXPORT_FORMAT}: upgrade "
                              "the captioning package")
    missing = [k for k in ("model", "feature_dim", "vocab_size", "max_len", "encoder_cfg", "files") if k not in config]
    files = config.get("files")
    if missing or not isinstance(files, dict) or MODEL_FILE not in files or VOCAB_FILE not in files:
        raise CheckpointError(f"{path / CONFIG_FILE} lacks {missing or 'the files it exports'}: re-export the run")
    data = {}
    for name, digest in files.items():
        if name not in (MODEL_FILE, ENCODER_FILE, VOCAB_FILE):
            raise CheckpointError(f"{path / CONFIG_FILE} names an unknown file {name!r}")
        if not (path / name).is_file():
            raise CheckpointError(f"export {path} lacks {name}, which its {CONFIG_FILE} lists: copy the whole "
                                  "folder, or re-export the run")
        data[name] = (path / name).read_bytes()
        if hashlib.sha256(data[name]).hexdigest() != digest:
            raise CheckpointError(f"{path / name} does not match its {CONFIG_FILE} (another export's file, or "
                                  "altered or corrupted): copy the whole folder again, or re-export the run")
    try:
        vocab = json.loads(data[VOCAB_FILE].decode("utf-8"))
        weights = load(data[MODEL_FILE])
        encoder_state = load(data[ENCODER_FILE]) if ENCODER_FILE in data else None
    except (UnicodeDecodeError, json.JSONDecodeError, SafetensorError) as exc:
        raise CheckpointError(f"export {path}: unreadable file ({exc}); re-export the run") from exc
    ckpt = {k: config[k] for k in ("model", "feature_dim", "vocab_size", "max_len", "encoder_cfg")}
    ckpt.update(format_version=2, weights=weights, vocab=vocab, encoder_key=config.get("encoder_key", ""),
                encoder_provenance=config.get("encoder_provenance", {}), path=str(path))
    if encoder_state is not None:
        ckpt["encoder_state"] = encoder_state
    return ckpt
