"""Model cards: what an export says about itself, as the ``README.md`` a Hugging Face Hub repository shows.

``training_record`` gathers, from a checkpoint and the run directory around it, what the card needs and
``config.json`` keeps (its ``training`` entry): the data, the schedule, the epoch the weights come from,
the evaluation metrics and the command that trained them. ``model_card`` renders the card from an
export's config alone, so an export saved again (``Captioner.save_pretrained``) writes the same card.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import yaml

# the metrics a card shows, in this order, where the run computed them
CARD_METRICS = ("Bleu_4", "CIDEr", "METEOR", "ROUGE_L", "SPICE", "acc_scene")
# the encoder options that decide its features (the rest, e.g. batch_size, only decide speed)
ENCODER_KEYS = ("name", "source", "weights", "image_size", "resize", "interpolation", "pool", "grid_size",
                "hypercolumn", "last_map", "precision")
LIBRARY_NAME = "captioning"


def run_dir_of(checkpoint_path: str | os.PathLike | None) -> Path | None:
    """The run directory a checkpoint file sits in (``run/checkpoints/best.pt`` or ``run/best.pt``)."""
    if not checkpoint_path:
        return None
    parent = Path(checkpoint_path).parent
    return parent.parent if parent.name == "checkpoints" else parent


def training_record(ckpt: dict, metrics: dict | None = None) -> dict:
    """The ``training`` entry of an export's config for checkpoint ``ckpt``: data, schedule, stage and
    epoch, the command (the run's ``.hydra/overrides.yaml``) and model metrics per split, from ``metrics``
    (the pipeline's results), else the run's ``metrics.json`` when it is newer than the checkpoint, else
    the training's own validation BLEU-4 (``history.json``). What the run did not record is left out."""
    config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    record: dict[str, Any] = {}
    data = config.get("data") or {}
    if data:
        record["data"] = {k: data[k] for k in ("name", "kind", "train_split", "val_split", "min_word_count",
                                              "max_caption_len") if k in data}
    stages = (config.get("schedule") or {}).get("stages") or {}
    if stages:
        record["schedule"] = {name: {k: s[k] for k in ("loss", "epochs") if k in s}
                              for name, s in stages.items() if isinstance(s, dict) and s.get("epochs", 1)}
    for key, name in (("stage_name", "stage"), ("epoch", "epoch")):
        if key in ckpt:
            record[name] = ckpt[key]
    if "seed" in config:
        record["seed"] = config["seed"]
    run_dir = run_dir_of(ckpt.get("path"))
    command = recorded_command(run_dir)
    if command:
        record["command"] = command
    found = model_metrics(metrics) if metrics else fresh_run_metrics(run_dir, ckpt.get("path"))
    if found:
        decoding = config.get("decoding") or {}
        how = f"{decoding.get('method', 'beam')} decoding" + (f", beam size {decoding['beam_size']}"
                                                               if decoding.get("method", "beam") == "beam"
                                                               and "beam_size" in decoding else "")
        record.update(metrics=found, metrics_source=f"the run's evaluation (metrics.json; {how})")
    else:
        bleu4 = validation_bleu4(run_dir, ckpt)
        if bleu4 is not None:
            record.update(metrics={data.get("val_split") or "val": {"Bleu_4": bleu4}},
                          metrics_source="the training's validation (greedy decoding, BLEU-4 only): the run's "
                                         "evaluation had not run when this was exported")
    return record


def recorded_command(run_dir: Path | None) -> str | None:
    """``captioning-train <overrides>`` from the run's ``.hydra/overrides.yaml`` (None when absent)."""
    path = run_dir / ".hydra" / "overrides.yaml" if run_dir else None
    if not path or not path.is_file():
        return None
    try:
        overrides = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(overrides, list):
        return None
    return " ".join(["captioning-train", *(shlex.quote(str(o)) for o in overrides)])


def model_metrics(results: dict) -> dict:
    """{split: {metric: value}} of the model's own splits (not baselines, not ``_run``), card metrics only."""
    out = {}
    for split, values in results.items():
        if split.startswith("_") or "/" in split or not isinstance(values, dict):
            continue
        picked = {m: values[m] for m in CARD_METRICS if isinstance(values.get(m), (int, float))}
        if picked:
            out[split] = picked
    return out


def fresh_run_metrics(run_dir: Path | None, checkpoint_path: str | os.PathLike | None) -> dict:
    """The run's ``metrics.json`` as ``model_metrics``, if it was written after the checkpoint (else {})."""
    path = run_dir / "metrics.json" if run_dir else None
    if not path or not path.is_file() or not checkpoint_path or not Path(checkpoint_path).is_file():
        return {}
    if path.stat().st_mtime < Path(checkpoint_path).stat().st_mtime:  # an earlier run's evaluation
        return {}
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return model_metrics(results) if isinstance(results, dict) else {}


def validation_bleu4(run_dir: Path | None, ckpt: dict) -> float | None:
    """The best val BLEU-4 of ``history.json`` when it belongs to this checkpoint's stage and epoch."""
    path = run_dir / "history.json" if run_dir else None
    if not path or not path.is_file():
        return None
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(history, dict) or (history.get("best_stage"), history.get("best_epoch")) != \
            (ckpt.get("stage_name"), ckpt.get("epoch")):
        return None
    bleu4 = history.get("best_bleu4")
    return float(bleu4) if isinstance(bleu4, (int, float)) and bleu4 >= 0 else None


def flat(options: dict, prefix: str = "") -> list[str]:
    """``key=value`` of a nested dict, nested keys joined by dots."""
    out = []
    for key, value in options.items():
        if isinstance(value, dict):
            out += flat(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={value}")
    return out


def feature_lines(config: dict) -> list[str]:
    """The features' identity and provenance (captioning/features/identity.py) as card lines."""
    lines = [f"- feature identity: `{config['encoder_key']}`"] if config.get("encoder_key") else []
    provenance = config.get("encoder_provenance") or {}
    if provenance.get("precision"):
        packages = ", ".join(f"{k} {v}" for k, v in sorted((provenance.get("packages") or {}).items()))
        lines.append(f"- trained on features computed in {provenance['precision']}" + (f" ({packages})" if packages
                     else "") + "; another precision or package version is reported when loading, not refused")
    return lines


def model_card(config: dict, n_parameters: int, load_name: str = "path/to/this/folder") -> str:
    """The README.md of an export whose ``config.json`` is ``config`` (YAML front matter + Markdown)."""
    model = dict(config.get("model") or {})
    name = model.pop("name", "?")
    training = config.get("training") or {}
    encoder = config.get("encoder_cfg") or {}
    data = training.get("data") or {}
    tags = ["image-captioning", f"model:{name}"] + ([f"dataset:{data['name']}"] if data.get("name") else [])
    front = {"library_name": LIBRARY_NAME, "pipeline_tag": "image-to-text", "tags": tags}
    cell = model.get("cell") if isinstance(model.get("cell"), dict) else None
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {name} image captioner", "",
             "A caption model trained with the `captioning` package: an image encoder's features in, an English "
             "caption out.", "",
             "## Model", "",
             f"- registry name: `{name}`"
             + (f", cell `{cell.get('name')}` ({plural(cell.get('num_layers', 1), 'layer')})" if cell else ""),
             f"- options: `{' '.join(flat(model))}`",
             f"- {n_parameters:,} parameters; vocabulary {config.get('vocab_size')} words; features "
             f"{config.get('feature_dim')}-d; captions up to {config.get('max_len')} words", "",
             "## Encoder", "",
             f"- `{' '.join(f'{k}={encoder[k]}' for k in ENCODER_KEYS if encoder.get(k) is not None)}`",
             "- " + ("fine-tuned with the caption model: its weights are `encoder.safetensors`"
                     if "encoder.safetensors" in (config.get("files") or {}) else
                     "frozen: its pretrained weights are those the encoder's `weights` names"),
             *feature_lines(config), "",
             "## Data", ""]
    if data:
        lines.append(f"- `{data.get('name', '?')}` (kind `{data.get('kind', '?')}`): trained on split "
                     f"`{data.get('train_split', '?')}`, validated on `{data.get('val_split') or 'none'}`")
    else:
        lines.append("- not recorded (the checkpoint holds no run config)")
    schedule = training.get("schedule") or {}
    if schedule:
        lines.append("- schedule: " + ", then ".join(
            f"{n} ({'' if s.get('loss', n) == n else s['loss'] + ', '}{plural(s.get('epochs', '?'), 'epoch')})"
            for n, s in schedule.items()))
    if "stage" in training:
        lines.append(f"- these weights: stage `{training['stage']}`, epoch {training.get('epoch', '?')} (the best "
                     "on validation)")
    lines += ["", "## Metrics", ""] + metrics_table(training) + ["", "## Training command", ""]
    command = training.get("command")
    lines += ["```bash", command, "```"] if command else \
        ["Not recorded: the run directory had no `.hydra/overrides.yaml` (a run started from Python)."]
    lines += ["", "## Use", "", "```python", "from captioning import Captioner", "",
              f'captioner = Captioner.from_pretrained("{load_name}")  # this folder, or the Hub repo id it was '
              "uploaded to", 'print(captioner("image.png"))  # one caption; a list of images gives a list', "```",
              "", "The folder is in the Hugging Face Hub's layout: `huggingface_hub.upload_folder(repo_id=..., "
              "folder_path=...)` publishes it, and `Captioner.from_pretrained(\"user/repo\")` loads it back. "
              "`config.json` lists the SHA-256 of every weights file; an altered file is refused on loading. "
              "This card is not among them: edit it freely.", ""]
    return "\n".join(lines)


def plural(n: Any, word: str) -> str:
    """``1 layer``, ``2 layers``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def metrics_table(training: dict) -> list[str]:
    """A Markdown table of the record's metrics per split, with where they come from."""
    metrics = training.get("metrics") or {}
    if not metrics:
        return ["Not recorded: the export was written without the run's evaluation (`captioning-evaluate "
                "checkpoint=<run dir>` computes it)."]
    columns = [m for m in CARD_METRICS if any(m in v for v in metrics.values())]
    rows = ["| split | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for split, values in metrics.items():
        rows.append(f"| {split} | " + " | ".join(f"{values[m]:.4f}" if m in values else "" for m in columns) + " |")
    return rows + ["", f"From {training.get('metrics_source', 'the run')}."]
