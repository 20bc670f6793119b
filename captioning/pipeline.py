"""The main job, start to finish: data -> features -> training -> export/ -> evaluation -> metrics.json + summary."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
import logging
import time
from pathlib import Path
from typing import Any

import torch

from captioning.config import config_problems
from captioning.evaluation import baselines
from captioning.evaluation.attention_maps import failure_attention, has_attention
from captioning.evaluation.metrics import cider_document_frequencies
from captioning.evaluation.plots import training_curve_png
from captioning.evaluation.measures import training_reference
from captioning.evaluation.scoring import EvaluateConfig, MetricsConfig, evaluate_split, generate_sets, pair_recall_beams
from captioning.features.prepare import DataSource, prepare
from captioning.features.shards import extract_dataset_shard
from captioning.models.checkpoint import load_checkpoint, model_from_checkpoint
from captioning.models.export import export_checkpoint
from captioning.training.loop import StageConfig, TrainOptions, train
from captioning.utils import distributed
from captioning.utils.io import save_json
from captioning.utils.memory import keep_freed_memory
from captioning.nn.decoding import DecodingConfig
from captioning.utils.distributed import TrainerConfig
from captioning.utils.schema import ConfigError, build, plain
from captioning.utils.seeding import seed_everything

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ["Bleu_1", "Bleu_4", "CIDEr", "acc_scene", "acc_binding", "acc_count", "acc_colour", "acc_shape", "acc_size",
                   "acc_position", "acc_relation"]


def resolve_device(name: str) -> str:
    """'auto' -> cuda when available, else cpu; a clear error when cuda is asked for but absent."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA GPU is visible: use device=cpu or device=auto")
    return name


@dataclass
class RunOptions:
    """The main job's typed options, each component's from its own node (built by ``run_options``)."""

    source: DataSource  # data, encoder, feature cache and device (as given: ``run`` resolves it)
    training: TrainOptions
    trainer: TrainerConfig
    decoding: DecodingConfig
    evaluate: EvaluateConfig
    metrics: MetricsConfig
    eval_splits: list[str]
    num_threads: int = 0


def run_options(cfg: Any) -> RunOptions:
    """Check a composed run config (captioning/configs/train.yaml; every impossible value at once, as a
    ConfigError) and build each component's typed options from its node: the one function of the main job
    that reads the whole config."""
    found = config_problems(cfg)
    if found:
        raise ConfigError("invalid config:\n  " + "\n  ".join(found))
    d = cfg.data
    training = TrainOptions(stages={name: build(StageConfig, node) for name, node in cfg.schedule.stages.items()},
                            model=plain(cfg.model), seed=cfg.seed, device=str(cfg.device), precision=cfg.precision,
                            max_len=d.max_caption_len, train_split=d.train_split, val_split=d.val_split,
                            resume=cfg.resume, init_from=cfg.schedule.init_from, record=plain(cfg))
    return RunOptions(source=DataSource(d, cfg.encoder, cfg.cache_dir, str(cfg.device), cfg.on_bad_image, cfg.seed),
                      training=training, trainer=build(TrainerConfig, cfg.trainer),
                      decoding=build(DecodingConfig, cfg.decoding), evaluate=build(EvaluateConfig, cfg.evaluate),
                      metrics=build(MetricsConfig, cfg.metrics), eval_splits=list(d.eval_splits),
                      num_threads=cfg.num_threads or 0)


def on_device(opts: RunOptions, device: str) -> RunOptions:
    """``opts`` with the device this process runs on (the checkpoints record it too): new options, these as
    they were."""
    training = dataclasses.replace(opts.training, device=device, record={**opts.training.record, "device": device})
    return dataclasses.replace(opts, source=dataclasses.replace(opts.source, device=device), training=training)


def run(opts: RunOptions, run_dir: str | Path, logger=None) -> dict:
    """Train with ``opts`` (``run_options``) in ``run_dir`` and evaluate; returns {split: metrics}."""
    t_start = time.time()
    run_dir = Path(run_dir)
    # trainer=ddp under torchrun: join the job (rank 0 writes every file)
    dp, device = distributed.setup(opts.trainer, resolve_device(opts.source.device))
    opts = on_device(opts, device)
    train_opts, source = opts.training, opts.source
    logger = logger if dp.is_main else None
    if opts.num_threads:
        torch.set_num_threads(opts.num_threads)
    keep_freed_memory()  # the CNN's activation maps reused, not mapped anew (captioning/utils/memory.py)
    seed_everything(train_opts.seed)
    vocab = None
    resume = train_opts.resume
    if resume == "auto":  # this run directory's own last.pt, if any (captioning/training/loop.py)
        resume = run_dir / "checkpoints" / "last.pt" if (run_dir / "checkpoints" / "last.pt").is_file() else None
    start = resume or train_opts.init_from
    if start:  # the vocabulary is part of the model: reuse the run's own
        vocab = model_from_checkpoint(load_checkpoint(start))[1]
    train_split, val_split = train_opts.train_split, train_opts.val_split
    needed = list(dict.fromkeys([train_split, *([val_split] if val_split else []), *opts.eval_splits]))
    if dp.world_size > 1:  # every rank extracts its shard of the features, rank 0 merges them
        extract_dataset_shard(source, dp.rank, dp.world_size, splits=needed, barrier=dp.barrier)
    prepared = prepare(source, vocab=vocab, splits_needed=needed)
    log.info("data: %s; vocabulary %d words; features %d-d (%s)",
             {k: len(v) for k, v in prepared.splits.items()}, len(prepared.vocab), prepared.feature_dim,
             prepared.encoder_key)
    t_train = time.time()
    history = train(train_opts, prepared, run_dir, logger)
    if not dp.is_main:  # rank 0 evaluates the checkpoint it wrote
        return {}
    training_curve_png(history, run_dir / "training_curve.png")
    t_eval = time.time()
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    model, vocab = model_from_checkpoint(best)
    export_checkpoint(best, run_dir / "export")  # safetensors + JSON: Captioner.from_pretrained(run_dir / "export")
    if "encoder_state" in best:  # a fine-tuned encoder: the evaluated splits (and train for nearest-neighbour)
        nn = "nearest_neighbour" in opts.evaluate.baselines
        splits = list(dict.fromkeys([*([train_split] if nn else []), *opts.eval_splits]))
        tuned = prepare(source, vocab=vocab, splits_needed=splits, encoder_state=best["encoder_state"])
        prepared = dataclasses.replace(prepared, splits={**prepared.splits, **tuned.splits},
                                       features={**prepared.features, **tuned.features},
                                       encoder_identity=tuned.encoder_identity)
    results = evaluate_all(prepared, model, run_dir, opts.eval_splits, train_split, train_opts.max_len,
                           opts.decoding, opts.evaluate, opts.metrics)
    if logger and hasattr(logger, "log_failures"):  # e.g. W&B: the failure cases as tables with images
        logger.log_failures({s: prepared.splits[s] for s in opts.eval_splits}, run_dir / "eval")
    results["_run"] = {"seed": train_opts.seed, "best_epoch": history["best_epoch"],
                       "val_bleu4": history["best_bleu4"],
                       "bad_images": prepared.bad_images, "seconds_prepare": t_train - t_start,
                       "seconds_train": t_eval - t_train, "seconds_evaluate": time.time() - t_eval,
                       "seconds_total": time.time() - t_start}
    save_json(results, run_dir / "metrics.json")
    export_checkpoint(best, run_dir / "export", metrics=results)  # again, its model card now with these metrics
    print(summary_table(results))
    if logger:
        logger.summary(results)
    return results


def evaluate_all(prepared, model, run_dir: Path, splits: list[str], train_split: str, max_len: int,
                 decoding: DecodingConfig, eval_cfg: EvaluateConfig, metrics_cfg: MetricsConfig) -> dict:
    """Model and baselines on every split of ``splits``: {split: metrics, f"{baseline}/{split}": metrics}.

    ``CIDEr`` is CIDEr-D with the training references' document frequencies, the same scale for every
    split whichever splits are evaluated; ``CIDEr_official`` is pycocoevalcap's per-split CIDEr-D."""
    train_caps = [r.captions for r in prepared.splits[train_split]]
    cider_df = cider_document_frequencies(train_caps) if metrics_cfg.cider else None
    train_ref = training_reference(prepared.splits[train_split])  # copied captions, unseen pairs
    results = {}
    for split in splits:
        records, feats = prepared.splits[split], prepared.features[split]
        sets = generate_sets(model, prepared.vocab, records, feats, decoding, max_len)
        hyps = {i: captions[0] for i, captions in sets.items()}
        beams = pair_recall_beams(model, prepared.vocab, records, feats, decoding, max_len, metrics_cfg, train_ref)
        results[split] = evaluate_split(records, hyps, run_dir / "eval", split, metrics_cfg,
                                        worst_k=eval_cfg.worst_k, random_k=eval_cfg.random_k, cider_df=cider_df,
                                        train=train_ref, beams=beams, caption_sets=sets)
        if has_attention(model):  # the failure report's companion: where the model looked in its worst captions
            per_image = {e["image_id"]: e for e in json.loads((run_dir / "eval" / f"per_image_{split}.json").read_text())}
            failure_attention(model, prepared.vocab, records, feats, per_image,
                              run_dir / "eval" / f"attention_{split}.png", split=split)
        for name in eval_cfg.baselines:
            if name == "nearest_neighbour":
                caps = baselines.nearest_neighbour(prepared.features[train_split], train_caps, feats, k=eval_cfg.nn_k)
            elif name == "most_frequent":
                caps = [baselines.most_frequent(train_caps)] * len(records)
            else:
                raise ValueError(f"Unknown baseline {name!r}: choose nearest_neighbour or most_frequent")
            hyp_b = {r.image_id: c for r, c in zip(records, caps)}
            results[f"{name}/{split}"] = evaluate_split(records, hyp_b, run_dir / "eval" / "baselines",
                                                        f"{name}_{split}", metrics_cfg, worst_k=eval_cfg.worst_k,
                                                        random_k=eval_cfg.random_k, cider_df=cider_df,
                                                        train=train_ref)
    return results


def summary_table(results: dict) -> str:
    """A fixed-width table: one row per (model or baseline, split), the main metrics as columns."""
    rows = [k for k in results if not k.startswith("_")]
    cols = [c for c in SUMMARY_COLUMNS if any(c in results[r] for r in rows)]
    width = max(len(r) for r in rows) if rows else 10
    lines = [f"{'':{width}}  " + "  ".join(f"{c.replace('acc_', ''):>9}" for c in cols)]
    for r in rows:
        vals = [results[r].get(c) for c in cols]
        lines.append(f"{r:{width}}  " + "  ".join(f"{v:9.3f}" if v is not None else f"{'-':>9}" for v in vals))
    return "\n".join(lines)
