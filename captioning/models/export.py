"""Inference exports: a trained caption model as plain files that load without running any pickle, in the
Hugging Face Hub's layout (a folder ``huggingface_hub.upload_folder`` publishes as it is).

    export/
      config.json          the model's hyperparameters (with its registry ``name``), feature_dim,
                           vocab_size, max_len, encoder_cfg, encoder_key, the format version, what
                           training recorded (``training``: data, schedule, metrics, command) and the
                           SHA-256 of every weights and vocabulary file
      model.safetensors    the caption model's weights
      encoder.safetensors  the fine-tuned CNN's weights (only when the encoder was fine-tuned)
      vocab.json           the vocabulary (``Vocabulary.state_dict``)
      README.md            the model card (captioning/models/card.py), rendered from config.json

Safetensors and JSON hold data only, so an export from a stranger cannot run code when loaded (a torch
checkpoint needs ``weights_only=True`` for that, and carries training state an export leaves out).
Every file is written atomically, ``config.json`` last: it names the digests of the files written before
it, so a half-finished re-export, a file from another export or a flipped bit is refused on loading
(``CheckpointError``) instead of captioning with mismatched parts. The model card is not among the
digests: it decides nothing about the captions, and a user may edit it (e.g. on the Hub) freely.

Format 1 is the only one: exports written before the model card and the ``training`` entry (no
README.md) load unchanged.

``Captioner.from_pretrained(<export dir or Hub repo id>)`` loads one, ``Captioner.save_pretrained(dir)``
writes one; ``captioning-export`` exports an older run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import torch

from captioning.models import show_tell  # noqa: F401 (registers the package's models for loading)
from captioning.models.card import model_card, training_record
from captioning.models.checkpoint import CheckpointError, load_checkpoint
from captioning.utils.io import atomic_save_bytes, save_json

EXPORT_FORMAT = 1
MODEL_FILE, ENCODER_FILE, VOCAB_FILE, CONFIG_FILE = "model.safetensors", "encoder.safetensors", "vocab.json", "config.json"
CARD_FILE = "README.md"  # the model card: not among config.json's digests (see above)


def export_checkpoint(checkpoint: dict | str | os.PathLike, out_dir: str | os.PathLike,
                      metrics: dict | None = None) -> Path:
    """Write the export of ``checkpoint`` (a loaded checkpoint, a ``.pt`` file or a run directory, whose
    best checkpoint is taken) to ``out_dir``, its model card included; returns ``out_dir``. The card's
    metrics are ``metrics`` (the pipeline's results), else what the run directory holds
    (captioning/models/card.py ``training_record``)."""
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    return write_export(ckpt, out_dir, training_record(ckpt, metrics))


def write_export(ckpt: dict, out_dir: str | os.PathLike, training: dict | None = None) -> Path:
    """Write the export of the checkpoint fields in ``ckpt`` (``model``, ``weights``, ``vocab``,
    ``encoder_cfg``...; ``encoder_state`` when fine-tuned) with the ``training`` record its card shows."""
    from safetensors.torch import save

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = _tensors(ckpt["weights"], "weights")
    blobs = {MODEL_FILE: save(weights, metadata={"format": "pt"}),
             VOCAB_FILE: (json.dumps(ckpt["vocab"], indent=1) + "\n").encode("utf-8")}
    if ckpt.get("encoder_state") is not None:
        blobs[ENCODER_FILE] = save(_tensors(ckpt["encoder_state"], "encoder_state"), metadata={"format": "pt"})
    for name, data in blobs.items():
        atomic_save_bytes(data, out_dir / name)
    config = {"format": "captioning-export", "format_version": EXPORT_FORMAT, "model": dict(ckpt["model"]),
              "feature_dim": int(ckpt["feature_dim"]), "vocab_size": int(ckpt["vocab_size"]),
              "max_len": int(ckpt["max_len"]), "encoder_cfg": dict(ckpt["encoder_cfg"]),
              "encoder_key": ckpt.get("encoder_key", ""), "encoder_provenance": ckpt.get("encoder_provenance") or {},
              **({"training": dict(training)} if training else {}),
              "files": {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()}}
    n_parameters = sum(t.numel() for t in weights.values())
    # the card before config.json, so a complete config.json means every file is there
    atomic_save_bytes(model_card(config, n_parameters).encode("utf-8"), out_dir / CARD_FILE)
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
    ``vocab``, ``encoder_cfg``, ``encoder_key``, ``encoder_state`` when fine-tuned, ``training``: what
    the card shows, {} for an export without it); no pickle is read.
    Raise CheckpointError naming a missing, altered or mismatched file."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not (path / CONFIG_FILE).is_file():
        what = "does not exist" if not path.exists() else f"has no {CONFIG_FILE}"
        raise CheckpointError(f"export {path} {what}: pass a folder written by the training run (run_dir/export) or "
                              "by captioning-export checkpoint=<run dir or .pt> out=<folder>")
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
    training = config.get("training")
    ckpt.update(format_version=2, weights=weights, vocab=vocab, encoder_key=config.get("encoder_key", ""),
                encoder_provenance=config.get("encoder_provenance", {}),
                training=training if isinstance(training, dict) else {}, path=str(path))
    if encoder_state is not None:
        ckpt["encoder_state"] = encoder_state
    return ckpt
