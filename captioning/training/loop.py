"""Training a caption model: the schedule's stages, in order, in one loop.

A schedule is a list of stages (``schedule.stages``, configs/schedule/*.yaml), each a ``StageConfig``:
its loss (teacher-forced cross-entropy, or self-critical REINFORCE), epochs, learning rates and whether
the encoder is fine-tuned (``encoder_lr``). Every stage starts from freshly seeded RNGs and the best
weights so far (the first from ``schedule.init_from``, if given), and keeps them as ``best`` until one
of its epochs beats them on val (or, with ``keep: last``, until its final epoch, whose weights it keeps). One epoch visits every training caption (cross-entropy on cached
features) or every training image (self-critical, or with the encoder from pixels) once, in an order
drawn from (seed, epoch), so a resumed run sees exactly the batches the uninterrupted one would.

Checkpoints (written atomically): ``checkpoints/best.pt`` (the best val BLEU-4 so far: what evaluation,
the caption API and the next stage read), ``checkpoints/last.pt`` (plus the optimizer, schedule, RNGs
and position: stage, epoch, step) and, at the end of every stage but the last,
``checkpoints/best_after_<stage>.pt`` (best.pt then: what a schedule ending with that stage would have
given, e.g. to evaluate and compare with and without the self-critical stage). SIGINT/SIGTERM/SIGUSR1 finish the current step, save ``last`` and exit;
``resume=<run dir>`` continues from that step, in any stage (``resume=auto``: from this run directory's
own last.pt when there is one).
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from captioning.data.coco import encode_captions
from captioning.evaluation.metrics import score
from captioning.features.prepare import Prepared
from captioning.models.base import CaptionModel, build_model
from captioning.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from captioning.nn.decoding import decode_batched
from captioning.nn.optim import LR_SCHEDULES
from captioning.nn.step import NonFiniteLoss, autocast, optimizer_step
from captioning.text.vocab import END, UNK
from captioning.training.batching import epoch_order
from captioning.training.finetune import encode, encoder_state, pixels, trainable_encoder
from captioning.training.optim import make_optimizer
from captioning.training.self_critical import BASELINES, REWARDS, make_reward, self_critical_loss
from captioning.utils import distributed
from captioning.utils.interrupts import GracefulStop, Interrupted
from captioning.utils.io import atomic_write, save_json
from captioning.utils.precision import training_precision
from captioning.utils.progress import progress
from captioning.utils.schema import build, option, plain
from captioning.utils.seeding import rng_state, seed_everything, set_rng_state

log = logging.getLogger(__name__)
LOSSES = ("cross_entropy", "self_critical")
KEEP = ("best", "last")


@dataclass
class StageConfig:
    """One training stage (an entry of ``schedule.stages``)."""

    loss: str = option("cross_entropy", "cross_entropy (teacher forcing) | self_critical (REINFORCE with a "
                       "per-caption metric as the reward, Rennie et al. 2017)", choices=LOSSES)
    epochs: int = option(12, "epochs of this stage; 0 skips it", ge=0)
    batch_size: int = option(128, "captions per step (cross-entropy on cached features), else images", ge=1)
    lr: float = option(2.0e-3, "the caption model's peak learning rate (AdamW)", gt=0)
    encoder_lr: float | None = option(None, "null: the encoder stays frozen (cached features); a number: the "
                                      "CNN is fine-tuned end to end from pixels at this learning rate", gt=0)
    weight_decay: float = option(0.0, "AdamW weight decay", ge=0)
    lr_schedule: str = option("cosine", "after warmup: cosine | constant | step", choices=LR_SCHEDULES)
    lr_step_epochs: int = option(3, "lr_schedule=step: epochs between decays", ge=1)
    lr_gamma: float = option(0.5, "lr_schedule=step: factor per decay", gt=0)
    warmup_steps: int = option(100, "steps of linear learning-rate warmup", ge=0)
    clip: float = option(5.0, "gradient-norm clipping; 0 = off", ge=0)
    early_stopping: int = option(0, "epochs without a better val BLEU-4 before the stage stops; 0 = off", ge=0)
    keep: str = option("best", "the weights the stage ends with (best.pt: what evaluation and the next stage "
                       "read): best (the epoch with the best val BLEU-4 so far) | last (its final epoch's, whatever "
                       "their val BLEU-4: the end of the annealed learning rate, not an epoch picked by a noisy "
                       "val subset)", choices=KEEP)
    checkpoint_every_steps: int = option(0, "also save last.pt every N steps (a kill -9 loses at most N); "
                                         "0 = each epoch only", ge=0)
    val_max_images: int = option(500, "val images decoded (greedy) after each epoch; 0 = all", ge=0)
    log_every: int = option(50, "steps between logged losses", ge=1)
    bucket_by_length: bool = option(False, "cross-entropy batches of similar caption length "
                                    "(captioning/training/batching.py)")
    word_dropout: float = option(0.0, "cross_entropy: each input word (after <start>) is replaced by <unk> with "
                                 "this probability, so the next word must be read off the image more and off the "
                                 "words before it less (word dropout, Bowman et al. 2016); 0 = off", ge=0, lt=1)
    samples: int = option(5, "self_critical: captions sampled per image", ge=1)
    reward: str = option("Bleu_4", "self_critical: each sampled caption's reward against its image's "
                         "references: Bleu_1..Bleu_4 (sentence BLEU) | CIDEr (CIDEr-D with document "
                         "frequencies from the training references, fixed for the stage)", choices=REWARDS)
    baseline: str = option("mean", "self_critical: mean (the image's other samples, Luo 2020) | greedy "
                           "(its greedy caption, Rennie et al.)", choices=BASELINES)
    temperature: float = option(1.0, "self_critical: sampling temperature", gt=0)


@dataclass
class ScheduleConfig:
    """The training schedule (configs/schedule/*.yaml)."""

    init_from: str | None = option(None, "a run directory or checkpoint whose weights start the first stage")
    stages: dict[str, StageConfig] = option({}, "the stages by name, trained in this order")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def schedule_problems(schedule: Any) -> list[str]:
    """What a schema cannot say about a schedule: combinations of stage options that cannot work."""
    out = []
    for name, stage in plain(schedule.stages).items():
        if stage.get("loss") == "self_critical" and stage.get("baseline", "mean") == "mean" and stage.get("samples", 5) < 2:
            out.append(f"schedule.stages.{name}.samples must be >= 2 with baseline=mean (the other samples' mean)")
        if stage.get("keep") == "last" and stage.get("early_stopping", 0):
            out.append(f"schedule.stages.{name}.keep=last keeps the final epoch's weights, but early_stopping="
                       f"{stage.get('early_stopping')} may end the stage before it: set one of them back "
                       "(keep=best or early_stopping=0)")
        if stage.get("loss") == "self_critical" and stage.get("word_dropout", 0):
            out.append(f"schedule.stages.{name}.word_dropout applies to cross_entropy stages (teacher forcing); "
                       "a self_critical stage reads its own sampled words: set it to 0 there")
    if not any(s.get("epochs", 1) for s in plain(schedule.stages).values()):
        out.append("schedule.stages: no stage has epochs > 0, so nothing would be trained")
    return out


@dataclass
class TrainData:
    """The training split as tensors: caption tokens, the image of each caption, each image's captions."""

    tokens: torch.Tensor  # [captions, max_len + 2]
    image_of: torch.Tensor  # [captions]: row of the caption's image
    captions_of: list[np.ndarray]  # per image: its caption rows
    features: np.ndarray  # cached features [images, D] (memory-mapped)
    paths: list[str]

    @classmethod
    def of(cls, prepared: Prepared, split: str, max_len: int) -> "TrainData":
        records = prepared.splits[split]
        tokens, image_of = encode_captions(records, prepared.vocab, max_len)
        owners = image_of.numpy()
        by_image = np.argsort(owners, kind="stable")
        captions_of = np.split(by_image, np.cumsum(np.bincount(owners, minlength=len(records)))[:-1])
        return cls(tokens, image_of, captions_of, prepared.features[split], [r.path for r in records])


def train(cfg: Any, prepared: Prepared, run_dir: str | Path, logger=None) -> dict:
    """Train every stage of ``cfg.schedule`` in order; returns the history (also in history.json)."""
    run_dir, device, max_len = Path(run_dir), torch.device(cfg.device), cfg.data.max_caption_len
    ckpt_dir, dp = run_dir / "checkpoints", distributed.current()
    stages = [(name, build(StageConfig, node)) for name, node in cfg.schedule.stages.items()]
    stages = [(name, stage) for name, stage in stages if stage.epochs > 0]
    one_process = [n for n, s in stages if s.loss == "self_critical" or s.encoder_lr is not None]
    if dp.world_size > 1 and one_process:
        raise ValueError(f"stages {one_process} (self-critical, or fine-tuning the encoder) run in one process: "
                         f"drop trainer=ddp, or set schedule.stages.{one_process[0]}.epochs=0 here and train them "
                         "in a separate run with schedule.init_from=<this run>")
    precision = training_precision(cfg.precision, device)
    data = TrainData.of(prepared, cfg.data.train_split, max_len)
    resume = load_resume_point(cfg, ckpt_dir, [name for name, _ in stages])
    history = resume["history"] if resume else {"epochs": [], "best_bleu4": -1.0, "best_epoch": -1, "best_stage": None}

    with GracefulStop() as stop:
        for index, (name, stage) in enumerate(stages):
            if resume and index < resume["stage"]:
                continue  # finished before the interruption
            resuming = resume is not None and index == resume["stage"]
            # -- the stage's model, encoder and optimizer, from the best weights so far -------------------
            seed_everything(cfg.seed)  # whatever ran before, a stage's initial weights depend on the seed alone
            model = build_model(cfg.model, prepared.feature_dim, len(prepared.vocab), max_len).to(device)
            start = resume if resuming else starting_point(cfg, index, ckpt_dir)
            if start is not None:
                check_same_model(start, model, prepared, "resume" if resuming else "start from (schedule.init_from)")
                model.load_state_dict(start["weights"])
            if resuming:  # a run resumed into a new directory starts with the old run's best checkpoint
                carry_best(Path(resume["path"]).parent / "best.pt", ckpt_dir / "best.pt")
            tuned = start.get("encoder_state") if start is not None else None
            encoder = None  # features from pixels: when this stage trains the CNN, or an earlier stage did
            if stage.encoder_lr is not None or tuned is not None:
                encoder = trainable_encoder(prepared.encoder_cfg, tuned, prepared.feature_dim, device,
                                            trainable=stage.encoder_lr is not None)

            def encoder_fields() -> dict:
                """What a checkpoint records of the encoder: its features' identity and provenance
                (captioning/features/identity.py), and its weights once fine-tuned."""
                if stage.encoder_lr is not None:
                    ident = encoder.finetuned_identity()
                    return {"encoder_key": ident.key, "encoder_provenance": ident.provenance,
                            "encoder_state": encoder_state(encoder)}
                if tuned is not None:
                    return {"encoder_key": start["encoder_key"], "encoder_state": tuned,
                            "encoder_provenance": start.get("encoder_provenance", {})}
                return {"encoder_key": prepared.encoder_key, "encoder_provenance": prepared.encoder_identity.provenance}
            by_image = stage.loss == "self_critical" or encoder is not None
            steps_per_epoch = math.ceil((len(data.paths) if by_image else len(data.tokens)) / stage.batch_size)
            params = [{"params": list(model.parameters())}]
            if stage.encoder_lr is not None:
                params.append({"params": list(encoder.parameters()), "lr": stage.encoder_lr})
            opt, lr_sched = make_optimizer(params, stage, steps_per_epoch)
            first_epoch, first_step, losses, own_rng = 0, 0, [], False
            if resuming:
                check_same_position(resume, cfg, name, stage, steps_per_epoch)
                opt.load_state_dict(resume["optimizer"])
                lr_sched.load_state_dict(resume["lr_schedule"])
                own_rng = restore_rng(resume, dp)
                first_epoch, first_step, losses = resume["epoch"], resume["step"], list(resume["epoch_losses"])
                log.info("resumed stage %s at epoch %d step %d", name, first_epoch, first_step)
            elif start is not None and history["best_bleu4"] < 0:  # schedule.init_from: the weights to beat
                history["best_bleu4"] = validate(model, encoder, prepared, cfg.data.val_split, stage, max_len)
                history["best_epoch"], history["best_stage"] = 0, name
                history["initial_val_bleu4"] = history["best_bleu4"]
                save(ckpt_dir / "best.pt", model, prepared, cfg, encoder_fields(), stage_name=name, epoch=0)
            net = dp.wrap(model, fold_rank=not own_rng)  # one process, or this rank of a DDP job (utils/distributed.py)
            reward = make_reward([r.captions for r in prepared.splits[cfg.data.train_split]], stage.reward) \
                if stage.loss == "self_critical" else None
            trained = [model] + ([encoder] if stage.encoder_lr is not None else [])

            def save_last(epoch: int, step: int, epoch_losses: list[float]) -> None:
                """last.pt: the weights, and everything that continues the run from (stage, epoch, step)."""
                rngs = dp.gather(rng_state())  # every rank's generators (every rank calls this)
                if dp.is_main:
                    save(ckpt_dir / "last.pt", model, prepared, cfg, encoder_fields(), trained, stage_name=name,
                         epoch=epoch, step=step, epoch_losses=list(epoch_losses), steps_per_epoch=steps_per_epoch,
                         optimizer=opt.state_dict(), lr_schedule=lr_sched.state_dict(), rng=rngs[0],
                         **({"rank_rng": rngs} if dp.world_size > 1 else {}), history=history)

            # -- the epochs --------------------------------------------------------------------------------
            for epoch in range(first_epoch, stage.epochs):
                if stage_stopped_early(history, name, stage):
                    log.info("%s: early stopping, no better val BLEU-4 for %d epochs", name, stage.early_stopping)
                    break
                t0, rewards = time.time(), []
                for module in trained:
                    module.train()
                if by_image:  # a permutation of the training images
                    order = torch.randperm(len(data.paths), generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
                else:  # of the training captions, optionally bucketed by length
                    order = epoch_order((data.tokens != 0).sum(1), stage.batch_size, cfg.seed * 100_003 + epoch,
                                        bucket=stage.bucket_by_length)
                if epoch > first_epoch:
                    first_step, losses = 0, []
                bar = progress(range(first_step, steps_per_epoch), desc=f"{name} {epoch + 1}/{stage.epochs}")
                for step in bar:
                    batch = order[step * stage.batch_size : (step + 1) * stage.batch_size]
                    with autocast(device.type, precision):
                        if stage.loss == "self_critical":
                            images = batch.tolist()
                            feats = features_of(images, data, encoder, device)
                            loss, mean_reward = self_critical_loss(model, feats, images, reward, prepared.vocab.itos, stage)
                            rewards.append(mean_reward)
                        else:
                            loss = cross_entropy_loss(net, batch, by_image, data, encoder, dp, device,
                                                      stage.word_dropout)
                    try:  # backpropagation through time, clipping, AdamW and the schedule (captioning/nn/step.py)
                        losses.append(optimizer_step(loss, opt, [p for m in trained for p in m.parameters()],
                                                     stage.clip, lr_sched))
                    except NonFiniteLoss as e:
                        raise TrainingDiverged(f"loss is {e.value} in stage {name}, epoch {epoch + 1}, step {step}: lower "
                                               f"its lr or set its clip; the last good checkpoint is in {ckpt_dir}") from None
                    if step % stage.log_every == 0:
                        lr = lr_sched.get_last_lr()[0]
                        bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr:.2e}")
                        if logger:  # steps count on across stages
                            logger.log({"train/loss": losses[-1], "lr": lr}, step=steps_done(history) + step)
                    stopping = dp.mean(float(stop.requested)) > 0  # every rank stops after the same step
                    every = stage.checkpoint_every_steps
                    if stopping or (every and (epoch * steps_per_epoch + step + 1) % every == 0 and step + 1 < steps_per_epoch):
                        save_last(epoch, step + 1, losses)  # a kill -9 now loses at most `every` steps
                    if stopping:
                        raise interrupted(stop, run_dir, name, epoch, step + 1, steps_per_epoch)

                # -- end of epoch: validate, keep the best, save last ----------------------------------------
                seconds = time.time() - t0  # the training steps alone, as before the stage schedules
                bleu4 = dp.on_main(validate, model, encoder, prepared, cfg.data.val_split, stage, max_len)
                entry = {"stage": name, "epoch": epoch + 1, "train_loss": dp.mean(float(np.mean(losses))),
                         "val_bleu4": bleu4, "seconds": seconds, "steps": steps_per_epoch}
                if rewards:
                    entry["train_reward"] = float(np.mean(rewards))
                history["epochs"].append(entry)
                log.info("%s epoch %d: loss %.4f  val BLEU-4 %.4f  (%.1fs)%s", name, epoch + 1, entry["train_loss"],
                         bleu4, entry["seconds"], f"  mean reward {entry['train_reward']:.4f}" if rewards else "")
                end_step = steps_done(history)
                if logger:
                    logger.log({"val/Bleu_4": bleu4, "train/epoch_loss": entry["train_loss"], "epoch": len(history["epochs"]),
                                **({"train/reward": entry["train_reward"]} if rewards else {})}, step=end_step)
                    if hasattr(logger, "log_samples"):  # e.g. W&B: a table of val images and their captions
                        logger.log_samples(len(history["epochs"]), end_step, model, prepared, cfg.data.val_split, max_len)
                if bleu4 > history["best_bleu4"] or (stage.keep == "last" and epoch + 1 == stage.epochs):
                    history.update(best_bleu4=bleu4, best_epoch=epoch + 1, best_stage=name)
                    if dp.is_main:
                        save(ckpt_dir / "best.pt", model, prepared, cfg, encoder_fields(), trained, stage_name=name,
                             epoch=epoch + 1)
                save_last(epoch + 1, 0, [])
                if dp.is_main:
                    save_json(history, run_dir / "history.json")
                if dp.mean(float(stop.requested)) > 0:  # the signal came during validation
                    raise interrupted(stop, run_dir, name, epoch + 1, 0, steps_per_epoch)
            if dp.is_main and index + 1 < len(stages):  # what a schedule ending here would have given
                copy_file(ckpt_dir / "best.pt", ckpt_dir / f"best_after_{name}.pt")
            resume = None
    return history


# -- the two losses -------------------------------------------------------------------------------------

def cross_entropy_loss(net: nn.Module, batch: torch.Tensor, by_image: bool, data: TrainData, encoder, dp,
                       device: torch.device, word_dropout: float = 0.0) -> torch.Tensor:
    """Masked cross-entropy of a teacher-forced batch: ``batch`` holds caption rows (on cached features) or
    image rows (every caption of each image, its features computed once from pixels). With ``word_dropout``
    each input word is <unk> with that probability (the targets stay the true words)."""
    if by_image:
        images = batch.tolist()
        rows = [data.captions_of[i] for i in images]
        tokens = data.tokens[torch.from_numpy(np.concatenate(rows))]
        owner = torch.repeat_interleave(torch.arange(len(images)), torch.tensor([len(r) for r in rows]))
        feats, scale = features_of(images, data, encoder, device)[owner.to(device)], 1.0
    else:
        idx, scale = dp.shard(batch, data.tokens)  # this rank's rows; the loss scale (1.0 for one process)
        tokens = data.tokens[idx]
        feats = features_of(data.image_of[idx].tolist(), data, None, device)
    tokens = tokens[:, : int((tokens != 0).sum(1).max())].to(device)  # padding shared by the whole batch trimmed
    logits = net(feats, drop_words(tokens[:, :-1], word_dropout))
    loss = caption_loss(logits, tokens[:, 1:])
    extra = getattr(net, "module", net).auxiliary_loss()  # e.g. the attention penalty (DDP wraps the model)
    return (loss if extra is None else loss + extra) * scale


def drop_words(inputs: torch.Tensor, p: float) -> torch.Tensor:
    """Word dropout: each word of the input rows [B, T] (not <start>, <end> or <pad>) becomes <unk> with
    probability ``p``, drawn from torch's global generator (a checkpoint saves its state, so resume is exact)."""
    if p == 0:
        return inputs
    hit = (torch.rand(inputs.shape, device=inputs.device) < p) & (inputs > END)
    return inputs.masked_fill(hit, UNK)


def caption_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Cross-entropy over real words only: padding positions are masked out of the mean."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=pad_id)


def features_of(images: list[int], data: TrainData, encoder, device: torch.device) -> torch.Tensor:
    """Features [len(images), D]: the cached ones, or the encoder's from pixels (one CNN pass per image)."""
    if encoder is None:
        return torch.from_numpy(np.ascontiguousarray(data.features[images])).float().to(device)
    return encoder(pixels(encoder, [data.paths[i] for i in images]))


# -- validation and checkpoints ---------------------------------------------------------------------------

def validate(model: CaptionModel, encoder, prepared: Prepared, split: str | None, stage: StageConfig,
             max_len: int) -> float:
    """Greedy BLEU-4 on the first ``val_max_images`` images of the val split (0.0 when there is none); with a
    fine-tuned encoder, the images are encoded as the CNN is now."""
    if not split or split not in prepared.splits:
        return 0.0
    records = prepared.splits[split][: stage.val_max_images or None]
    if encoder is None:
        feats = prepared.features[split][: len(records)]
    else:
        feats = encode(encoder, [r.path for r in records], prepared.encoder_cfg.batch_size)
    was_training = model.training
    out = decode_batched(model, feats, batch_size=500, method="greedy", max_len=max_len)  # sets eval mode
    model.train(was_training)
    hyps = {r.image_id: prepared.vocab.decode(t) for r, t in zip(records, out.tokens)}
    return score({r.image_id: r.captions for r in records}, hyps)["Bleu_4"]


def save(path: Path, model: CaptionModel, prepared: Prepared, cfg: Any, encoder: dict,
         trained: list[nn.Module] = (), **state: Any) -> None:
    """Write a checkpoint: the model, vocabulary, encoder (``encoder``: its cache key, and its weights once
    fine-tuned) and ``state``; never replace a good checkpoint by one with NaN or infinite weights."""
    for module in trained:
        if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
            raise TrainingDiverged(f"the weights became NaN or infinite: lower the stage's lr or set its clip; "
                                   f"the last good checkpoint is kept in {path.parent}")
    fields = dict(encoder)
    save_checkpoint(path, model, prepared.vocab, prepared.encoder_cfg, fields.pop("encoder_key"),
                    config=plain(cfg), **fields, **state)


def starting_point(cfg: Any, index: int, ckpt_dir: Path) -> dict | None:
    """The checkpoint a stage starts from: the best so far, or for the first stage ``schedule.init_from``."""
    if index > 0 and (ckpt_dir / "best.pt").is_file():
        return load_checkpoint(ckpt_dir / "best.pt")
    if cfg.schedule.init_from:
        return load_checkpoint(cfg.schedule.init_from)
    return None


def check_same_model(ckpt: dict, model: CaptionModel, prepared: Prepared, action: str) -> None:
    """Refuse weights of another model, vocabulary or encoder than this config builds (``action``: what
    the run was asked to do with them: 'resume' or 'start from')."""
    if ckpt["model"] != model.hyperparameters() or ckpt["vocab"] != prepared.vocab.state_dict():
        raise CheckpointError(f"cannot {action} {ckpt['path']}: it holds model {ckpt['model']} but this config "
                              f"builds {model.hyperparameters()} (or the vocabularies differ); {action} it with the "
                              "run's own model, cell and data settings")
    if "encoder_state" not in ckpt and not prepared.encoder_identity.matches(ckpt.get("encoder_key", "")):
        raise CheckpointError(f"{ckpt['path']} was trained on {ckpt['encoder_key']!r} features, this run reads "
                              f"{prepared.encoder_key!r}: use the same encoder")


def load_resume_point(cfg: Any, ckpt_dir: Path, stages: list[str]) -> dict | None:
    """``resume=<run dir or last.pt>`` (or ``auto``: this run's own, if any): the last checkpoint, with its
    position (``stage`` as an index of ``stages``, epoch, step); None for a fresh start."""
    if not cfg.resume:
        return None
    p = Path(cfg.resume)
    if cfg.resume == "auto":  # this run directory's own last.pt (e.g. a requeued SLURM job), else a fresh start
        if not (ckpt_dir / "last.pt").is_file():
            return None
        p = ckpt_dir / "last.pt"
    ckpt = load_checkpoint(p / "checkpoints" / "last.pt" if (p / "checkpoints" / "last.pt").is_file() else p)
    if "optimizer" not in ckpt or "stage_name" not in ckpt:
        raise CheckpointError(f"{ckpt['path']} holds no training state (optimizer, position): resume from a "
                              "run directory or its checkpoints/last.pt")
    if ckpt["stage_name"] not in stages:
        raise CheckpointError(f"{ckpt['path']} stopped in stage {ckpt['stage_name']!r}, which this schedule does not "
                              f"train (its stages: {stages}); resume with the run's own schedule")
    return {**ckpt, "stage": stages.index(ckpt["stage_name"])}


def restore_rng(ckpt: dict, dp) -> bool:
    """Restore this rank's own RNG states from a last.pt saved by as many ranks (True), else rank 0's (False:
    the ranks' streams are then told apart again by ``DataParallel.wrap``)."""
    ranks = ckpt.get("rank_rng") or []
    own = len(ranks) == dp.world_size > 1 and (dp.device.type != "cuda" or "cuda" in ranks[dp.rank])
    set_rng_state(ranks[dp.rank] if own else ckpt["rng"])
    return own


def check_same_position(ckpt: dict, cfg: Any, name: str, stage: StageConfig, steps_per_epoch: int) -> None:
    """A run stopped mid-epoch continues exactly only with the same seed, batch size and data."""
    old = ckpt.get("config") or {}
    old_stage = ((old.get("schedule") or {}).get("stages") or {}).get(name) or {}
    was = (old.get("seed"), old_stage.get("batch_size"), ckpt.get("steps_per_epoch"))
    now = (cfg.seed, stage.batch_size, steps_per_epoch)
    if ckpt["step"] and was != now:
        raise CheckpointError(f"{ckpt['path']} stopped mid-epoch (step {ckpt['step']}); continuing it exactly needs "
                              f"the same seed, batch size and training data: (seed, batch_size, steps per epoch) "
                              f"was {was}, this config gives {now}")


def carry_best(source: Path, target: Path) -> None:
    """A run resumed into a new directory starts with the old run's best checkpoint."""
    if source.is_file() and not target.exists() and source.resolve() != target.resolve():
        copy_file(source, target)


def copy_file(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` atomically (a reader never sees half a checkpoint)."""
    if source.is_file():
        with open(source, "rb") as src, atomic_write(target, "wb") as dst:
            shutil.copyfileobj(src, dst)


def steps_done(history: dict) -> int:
    """Optimizer steps of the finished epochs, over all stages (the logger's step)."""
    return sum(e["steps"] for e in history["epochs"])


def stage_stopped_early(history: dict, name: str, stage: StageConfig) -> bool:
    """Whether ``stage.early_stopping`` epochs of this stage passed without a better val BLEU-4."""
    if not stage.early_stopping:
        return False
    mine = [e for e in history["epochs"] if e["stage"] == name]
    best = max((i for i, e in enumerate(mine) if e["val_bleu4"] >= history["best_bleu4"]), default=-1)
    return len(mine) - 1 - best >= stage.early_stopping


def interrupted(stop: GracefulStop, run_dir: Path, stage: str, epoch: int, step: int, steps_per_epoch: int) -> Interrupted:
    """The exception that ends a run stopped by a signal, telling the user how to continue."""
    return stop.exit(f"stopped in stage {stage} after {epoch} epoch(s) and {step} of the next epoch's "
                     f"{steps_per_epoch} steps; saved {run_dir / 'checkpoints' / 'last.pt'}; continue with "
                     f"resume={run_dir}")
