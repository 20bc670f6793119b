"""Evaluating a checkpoint on any split of its data, and scoring results files from anywhere."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from captioning.data.datasets import load_dataset
from captioning.evaluation.measures import training_reference
from captioning.evaluation.metrics import cider_document_frequencies
from captioning.evaluation.scoring import (EvaluateConfig, MetricsConfig, evaluate_split, extra_metrics, generate_sets,
                                          metrics_problems, pair_recall_beams, score_files)
from captioning.features.prepare import DataSource, prepare
from captioning.models.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from captioning.nn.decoding import DecodingConfig
from captioning.utils.io import save_json
from captioning.utils.precision import PRECISIONS
from captioning.utils.schema import build, option, plain, problems

log = logging.getLogger(__name__)
MODES = ("checkpoint", "score")


@dataclass
class EvaluateRunConfig:
    """configs/evaluate.yaml (captioning-evaluate): a checkpoint on a split, or a COCO results file scored."""

    mode: str = option("checkpoint", "checkpoint: decode a split with a trained checkpoint | score: score a COCO "
                       "results file against COCO annotations", choices=MODES)
    checkpoint: str | None = option(None, "mode=checkpoint: the run directory or .pt file")
    split: str = option("test", "mode=checkpoint: a split of the checkpoint's data config")
    data: Any = option(None, "mode=checkpoint: a data config (+data=<name>); null = the one it was trained with")
    cache_dir: str | None = option(None, "mode=checkpoint: the feature cache; null = the checkpoint's")
    precision: str | None = option(None, "mode=checkpoint: the precision the image features are computed in (auto "
                                   "| fp32 | bf16); null = the checkpoint's encoder config. A model trained on "
                                   "bf16 features reads fp32 ones and the reverse (captioning/features/identity.py)",
                                   choices=(None, *PRECISIONS))
    results: str | None = option(None, 'mode=score: a COCO results json [{"image_id", "caption"}]')
    annotations: str | None = option(None, "mode=score: a COCO caption annotation json")
    decoding: DecodingConfig = option(DecodingConfig(), "how captions are generated (mode=checkpoint)")
    evaluate: EvaluateConfig = option(EvaluateConfig(), "failure report sizes (worst_k, random_k)")
    metrics: Any = option(None, "the metrics reported (configs/metrics)")


def evaluate_problems(cfg: Any) -> list[str]:
    """One line per bad value of an evaluate config, and per file a mode needs but was not given."""
    found = [p.removeprefix(".") for p in problems(EvaluateRunConfig, cfg, "")]
    found += metrics_problems(cfg.metrics)
    if cfg.mode == "checkpoint" and not cfg.checkpoint:
        found.append("checkpoint=<run dir or .pt file> is required for mode=checkpoint")
    if cfg.mode == "score" and not (cfg.results and cfg.annotations):
        found.append("mode=score needs results=<COCO results json> and annotations=<COCO annotation json>")
    return found


def evaluate_checkpoint(opts: EvaluateRunConfig, out_dir: str | Path) -> dict:
    """Decode ``opts.split`` with the checkpoint's decoder and write captions, metrics and failures."""
    if not opts.checkpoint:
        raise ValueError("checkpoint=<run dir or .pt file> is required for mode=checkpoint")
    ckpt = load_checkpoint(opts.checkpoint)
    if "config" not in ckpt:
        raise CheckpointError(f"{ckpt['path']} holds no training config; evaluate it through the Python API instead")
    model, vocab = model_from_checkpoint(ckpt)
    run = ckpt["config"]  # the training run's config; this command's data, cache_dir and precision override it
    data = OmegaConf.create(plain(opts.data) if opts.data is not None else run["data"])
    encoder = {**run["encoder"], **({"precision": opts.precision} if opts.precision is not None else {})}
    source = DataSource(data, encoder, opts.cache_dir if opts.cache_dir is not None else run["cache_dir"],
                        run.get("device", "cpu"), run.get("on_bad_image", "fail"), run.get("seed", 0))
    tuned = ckpt["encoder_state"] if "encoder_state" in ckpt else None
    prepared = prepare(source, vocab=vocab, splits_needed=[opts.split], encoder_state=tuned)
    prepared.encoder_identity.check(ckpt.get("encoder_key", ""), ckpt.get("encoder_provenance"), ckpt["path"])
    records = prepared.splits[opts.split]
    sets = generate_sets(model, vocab, records, prepared.features[opts.split], opts.decoding, data.max_caption_len)
    hyps = {i: captions[0] for i, captions in sets.items()}
    report, metrics_cfg = build(EvaluateConfig, opts.evaluate), build(MetricsConfig, opts.metrics)
    train = data.train_split
    train_records = load_dataset(data, [train])[train]  # copied captions, unseen pairs, CIDEr's scale
    # CIDEr on the main job's scale: the training references' document frequencies
    cider_df = cider_document_frequencies([r.captions for r in train_records]) if metrics_cfg.cider else None
    train_ref = training_reference(train_records)
    beams = pair_recall_beams(model, vocab, records, prepared.features[opts.split], opts.decoding,
                              data.max_caption_len, metrics_cfg, train_ref)
    metrics = {opts.split: evaluate_split(records, hyps, Path(out_dir), opts.split, metrics_cfg,
                                         worst_k=report.worst_k, random_k=report.random_k, cider_df=cider_df,
                                         train=train_ref, beams=beams, caption_sets=sets)}
    # which training run this was (captioning-paired pairs runs by seed)
    metrics["_run"] = {"seed": run.get("seed"), "checkpoint": ckpt["path"]}
    save_json(metrics, Path(out_dir) / "metrics.json")
    return metrics


def score_results(opts: EvaluateRunConfig, out_dir: str | Path) -> dict:
    """Score a COCO results file against a COCO annotation file on the same footing as our models."""
    if not opts.results or not opts.annotations:
        raise ValueError("mode=score needs results=<COCO results json> and annotations=<COCO annotation json>")
    metrics_cfg = build(MetricsConfig, opts.metrics)
    metrics = score_files(opts.results, opts.annotations, extra=extra_metrics(metrics_cfg),
                          on_missing=metrics_cfg.on_missing, instances=metrics_cfg.instances)
    save_json(metrics, Path(out_dir) / "metrics.json")
    return metrics
