"""Evaluating a checkpoint on any split of its data, and scoring results files from anywhere."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from captioning.evaluation.scoring import evaluate_split, generate
from captioning.features.prepare import prepare
from captioning.utils.schema import plain
from captioning.utils.io import save_json
from captioning.models.checkpoint import load_checkpoint, model_from_checkpoint

log = logging.getLogger(__name__)

def evaluate_checkpoint(cfg: Any, out_dir: str | Path) -> dict:
    """Decode ``cfg.split`` with the checkpoint's decoder and write captions, metrics and failures."""
    if not cfg.checkpoint:
        raise ValueError("checkpoint=<run dir or .pt file> is required for mode=checkpoint")
    ckpt = load_checkpoint(cfg.checkpoint)
    if "config" not in ckpt:
        raise ValueError(f"{ckpt['path']} holds no training config; evaluate it through the Python API instead")
    model, vocab = model_from_checkpoint(ckpt)
    run_cfg = OmegaConf.create(ckpt["config"])
    if cfg.data is not None:
        run_cfg.data = cfg.data
    if cfg.cache_dir is not None:
        run_cfg.cache_dir = cfg.cache_dir
    prepared = prepare(run_cfg, vocab=vocab, splits_needed=[cfg.split], encoder_state=ckpt.get("encoder_state"))
    if prepared.encoder_key != ckpt.get("encoder_key", prepared.encoder_key):
        raise ValueError(f"the checkpoint was trained on {ckpt['encoder_key']!r} features but its encoder config "
                         f"now gives {prepared.encoder_key!r}")
    records = prepared.splits[cfg.split]
    hyps = generate(model, vocab, records, prepared.features[cfg.split], plain(cfg.decoding),
                    run_cfg.data.max_caption_len)
    eval_cfg, metrics_cfg = plain(cfg.evaluate), plain(cfg.metrics)
    cider_df = None
    if metrics_cfg.get("cider", False):  # CIDEr on the main job's scale: the training references' df
        from captioning.data.datasets import load_dataset
        from captioning.evaluation.metrics import cider_document_frequencies

        train = run_cfg.data.train_split
        cider_df = cider_document_frequencies([r.captions for r in load_dataset(run_cfg.data, [train])[train]])
    metrics = {cfg.split: evaluate_split(records, hyps, Path(out_dir), cfg.split, metrics_cfg,
                                         worst_k=eval_cfg["worst_k"], random_k=eval_cfg["random_k"],
                                         cider_df=cider_df)}
    save_json(metrics, Path(out_dir) / "metrics.json")
    return metrics


def score_results(cfg: Any, out_dir: str | Path) -> dict:
    """Score a COCO results file against a COCO annotation file on the same footing as our models."""
    from captioning.evaluation.scoring import extra_metrics, score_files

    if not cfg.results or not cfg.annotations:
        raise ValueError("mode=score needs results=<COCO results json> and annotations=<COCO annotation json>")
    metrics = score_files(cfg.results, cfg.annotations, extra=extra_metrics(plain(cfg.metrics)),
                          on_missing=cfg.metrics.get("on_missing", "warn"))
    save_json(metrics, Path(out_dir) / "metrics.json")
    return metrics
