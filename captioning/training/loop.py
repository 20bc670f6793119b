"""Training a caption model: the schedule's stages, in order, in one loop.

A schedule is a list of stages (``schedule.stages``, configs/schedule/*.yaml), each a ``StageConfig``:
its loss (teacher-forced cross-entropy, optionally with word dropout, label smoothing and scheduled
sampling; or self-critical REINFORCE with one metric or a weighted mixture as the reward), epochs, learning
rates and whether the encoder is fine-tuned (``encoder_lr``). Every stage starts from freshly seeded RNGs and the best
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
own last.pt when there is one; reading last.pt back: captioning/training/resume.py).

The loop reads top to bottom: ``train`` runs the stages, ``start_stage`` builds one, ``train_epoch`` runs
its steps (``cross_entropy_step`` or ``self_critical_step``, then ``optimize``), ``end_epoch`` validates
and saves. Its options come typed (``TrainOptions``), built by the entry point (captioning/pipeline.py).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from captioning.data.coco import encode_captions
from captioning.evaluation.metrics import score
from captioning.features.prepare import Prepared
from captioning.models.base import CaptionModel, build_model
from captioning.models.checkpoint import save_checkpoint
from captioning.nn.decoding import decode_batched
from captioning.nn.optim import LR_SCHEDULES
from captioning.nn.step import NonFiniteLoss, autocast, optimizer_step
from captioning.text.vocab import END, UNK
from captioning.training.batching import epoch_order
from captioning.training.finetune import encode, encoder_state, pixels, trainable_encoder
from captioning.training.optim import make_optimizer
from captioning.training.resume import (carry_best, check_same_model, check_same_position, copy_file,
                                        load_resume_point, restore_rng, starting_point)
from captioning.training.self_critical import BASELINES, make_reward, reward_problems, self_critical_loss
from captioning.utils import distributed
from captioning.utils.interrupts import GracefulStop, Interrupted
from captioning.utils.io import save_json
from captioning.utils.precision import training_precision
from captioning.utils.progress import progress
from captioning.utils.schema import build, option, plain
from captioning.utils.seeding import rng_state, seed_everything

log = logging.getLogger(__name__)
LOSSES = ("cross_entropy", "self_critical")
KEEP = ("best", "last")


@dataclass
class ScheduledSampling:
    """Scheduled sampling (Bengio et al. 2015) in a cross-entropy stage: each input word after <start> is, with
    probability p, a word sampled from the model's own distribution instead of the true one; p rises linearly
    from ``start`` at the stage's first step to ``end`` after ``ramp`` epochs (counted in steps, so it rises
    every step), then stays."""

    start: float = option(0.0, "p at the stage's first step (start = end = 0: off, the plain teacher forcing)",
                          ge=0, le=1)
    end: float = option(0.0, "p from the end of the ramp on", ge=0, le=1)
    ramp: float = option(1.0, "epochs (fractions allowed) over which p rises linearly, step by step, from "
                         "start to end; 0 = end from the first step", ge=0)


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
    label_smoothing: float = option(0.0, "cross_entropy: the target of each real word is (1 - this) on the true "
                                    "word plus this spread evenly over the vocabulary (Szegedy et al. 2016); "
                                    "padding stays masked; 0 = off", ge=0, lt=1)
    scheduled_sampling: ScheduledSampling = option(ScheduledSampling(), "cross_entropy: each input word after "
                                                   "<start> is, with probability p, a word sampled from the model's "
                                                   "own distribution given the words before it (Bengio et al. 2015); "
                                                   "p goes from start to end over ramp epochs")
    samples: int = option(5, "self_critical: captions sampled per image", ge=1)
    reward: Any = option("Bleu_4", "self_critical: each sampled caption's reward against its image's "
                         "references: Bleu_1..Bleu_4 (sentence BLEU) | CIDEr (CIDEr-D with document "
                         "frequencies from the training references, fixed for the stage), or a weighted mixture "
                         "{metric: weight, ...} (weights >= 0, one > 0; the reward is the weighted sum)")
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
        for key in ("word_dropout", "label_smoothing"):
            if stage.get("loss") == "self_critical" and stage.get(key, 0):
                out.append(f"schedule.stages.{name}.{key} applies to cross_entropy stages (teacher forcing); "
                           "a self_critical stage reads its own sampled words: set it to 0 there")
        sampling = stage.get("scheduled_sampling") or {}
        if stage.get("loss") == "self_critical" and (sampling.get("start", 0) or sampling.get("end", 0)):
            out.append(f"schedule.stages.{name}.scheduled_sampling applies to cross_entropy stages; a self_critical "
                       "stage reads only its own sampled words: set its start and end to 0 there")
        out += [f"schedule.stages.{name}.reward: {p}" for p in reward_problems(stage.get("reward", "Bleu_4"))]
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


@dataclass(frozen=True)
class TrainOptions:
    """What the loop reads of a run config, typed (the entry point builds it: captioning/pipeline.py)."""

    stages: dict[str, StageConfig]  # in training order
    model: dict  # the ``model`` node (its name and options), built afresh for every stage
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"
    max_len: int = 16
    train_split: str = "train"
    val_split: str | None = "val"
    resume: str | None = None
    init_from: str | None = None
    record: dict = field(default_factory=dict)  # the run config as plain data, written into every checkpoint


@dataclass
class Run:
    """The parts of a training run that every stage shares: options, data, process group, history."""

    options: TrainOptions
    prepared: Prepared
    data: TrainData
    run_dir: Path
    dp: distributed.DataParallel
    device: torch.device
    precision: str
    history: dict
    stop: GracefulStop
    logger: Any = None

    @property
    def ckpt_dir(self) -> Path:
        """Where best.pt, last.pt and best_after_<stage>.pt live."""
        return self.run_dir / "checkpoints"


@dataclass
class Stage:
    """One stage being trained: its options, model, encoder, optimizer and where its epochs start."""

    name: str
    options: StageConfig
    model: CaptionModel
    encoder: nn.Module | None  # features from pixels: this stage trains the CNN, or an earlier stage did
    start: dict | None  # the checkpoint it started from (best so far, init_from, or the resumed last.pt)
    by_image: bool  # batches of images (self-critical, or from pixels), else of captions
    steps_per_epoch: int
    opt: torch.optim.Optimizer
    lr_schedule: Any
    net: nn.Module | None = None  # the model, DDP-wrapped when there are several ranks
    reward: Any = None  # self-critical: the reward function
    first_epoch: int = 0
    first_step: int = 0
    index: int = 0  # its place in the schedule (scheduled sampling's draws are seeded with it)
    losses: list[float] = field(default_factory=list)  # this epoch's so far
    rewards: list[float] = field(default_factory=list)

    @property
    def trained(self) -> list[nn.Module]:
        """The modules whose weights this stage updates."""
        return [self.model] + ([self.encoder] if self.options.encoder_lr is not None else [])


def train(options: TrainOptions, prepared: Prepared, run_dir: str | Path, logger=None) -> dict:
    """Train every stage of ``options.stages`` in order; returns the history (also in history.json)."""
    stages = [(name, stage) for name, stage in options.stages.items() if stage.epochs > 0]
    dp, device = distributed.current(), torch.device(options.device)
    refuse_one_process_stages(stages, dp)
    precision = training_precision(options.precision, device)
    data = TrainData.of(prepared, options.train_split, options.max_len)
    resume = load_resume_point(options.resume, Path(run_dir) / "checkpoints", [name for name, _ in stages])
    history = resume["history"] if resume else {"epochs": [], "best_bleu4": -1.0, "best_epoch": -1, "best_stage": None}
    with GracefulStop() as stop:
        run = Run(options, prepared, data, Path(run_dir), dp, device, precision, history, stop, logger)
        for index, (name, stage_options) in enumerate(stages):
            if resume and index < resume["stage"]:
                continue  # finished before the interruption
            resuming = resume is not None and index == resume["stage"]
            stage = start_stage(run, index, name, stage_options, resume if resuming else None)
            for epoch in range(stage.first_epoch, stage_options.epochs):
                if stage_stopped_early(history, name, stage_options):
                    log.info("%s: early stopping, no better val BLEU-4 for %d epochs", name,
                             stage_options.early_stopping)
                    break
                seconds = train_epoch(run, stage, epoch)
                end_epoch(run, stage, epoch, seconds)
            if dp.is_main and index + 1 < len(stages):  # what a schedule ending here would have given
                copy_file(run.ckpt_dir / "best.pt", run.ckpt_dir / f"best_after_{name}.pt")
            resume = None
    return history


def refuse_one_process_stages(stages: list[tuple[str, StageConfig]], dp: distributed.DataParallel) -> None:
    """Self-critical stages and encoder fine-tuning run in one process: a clear error under DDP."""
    one_process = [n for n, s in stages if s.loss == "self_critical" or s.encoder_lr is not None]
    if dp.world_size > 1 and one_process:
        raise ValueError(f"stages {one_process} (self-critical, or fine-tuning the encoder) run in one process: "
                         f"drop trainer=ddp, or set schedule.stages.{one_process[0]}.epochs=0 here and train them "
                         "in a separate run with schedule.init_from=<this run>")


# -- a stage: its model, encoder and optimizer, from the best weights so far ---------------------------------

def start_stage(run: Run, index: int, name: str, options: StageConfig, resume: dict | None) -> Stage:
    """Stage ``index``'s model (from the best weights so far, ``init_from`` or ``resume``), encoder and
    optimizer; a resumed stage continues from the saved position, RNGs included."""
    seed_everything(run.options.seed)  # whatever ran before, a stage's initial weights depend on the seed alone
    prepared = run.prepared
    model = build_model(run.options.model, prepared.feature_dim, len(prepared.vocab), run.options.max_len)
    model = model.to(run.device)
    start = resume if resume is not None else starting_point(run.options.init_from, index, run.ckpt_dir)
    if start is not None:
        check_same_model(start, model, prepared, "resume" if resume is not None else "start from (schedule.init_from)")
        model.load_state_dict(start["weights"])
    if resume is not None:  # a run resumed into a new directory starts with the old run's best checkpoint
        carry_best(Path(resume["path"]).parent / "best.pt", run.ckpt_dir / "best.pt")
    tuned = start.get("encoder_state") if start is not None else None
    encoder = None
    if options.encoder_lr is not None or tuned is not None:
        encoder = trainable_encoder(prepared.encoder_cfg, tuned, prepared.feature_dim, run.device,
                                    trainable=options.encoder_lr is not None)
    by_image = options.loss == "self_critical" or encoder is not None
    steps_per_epoch = math.ceil((len(run.data.paths) if by_image else len(run.data.tokens)) / options.batch_size)
    params = [{"params": list(model.parameters())}]
    if options.encoder_lr is not None:
        params.append({"params": list(encoder.parameters()), "lr": options.encoder_lr})
    opt, lr_schedule = make_optimizer(params, options, steps_per_epoch)
    stage = Stage(name, options, model, encoder, start, by_image, steps_per_epoch, opt, lr_schedule, index=index)
    own_rng = False
    if resume is not None:
        own_rng = continue_position(run, stage, resume)
    elif start is not None and run.history["best_bleu4"] < 0:
        keep_starting_weights(run, stage)
    stage.net = run.dp.wrap(model, fold_rank=not own_rng)  # one process, or this rank of a DDP job
    if options.loss == "self_critical":
        stage.reward = make_reward([r.captions for r in prepared.splits[run.options.train_split]], options.reward)
    return stage


def continue_position(run: Run, stage: Stage, resume: dict) -> bool:
    """Load a resumed stage's optimizer, schedule, RNGs and position; True when this rank got its own RNGs."""
    check_same_position(resume, run.options.seed, stage.name, stage.options.batch_size, stage.steps_per_epoch)
    stage.opt.load_state_dict(resume["optimizer"])
    stage.lr_schedule.load_state_dict(resume["lr_schedule"])
    own_rng = restore_rng(resume, run.dp)
    stage.first_epoch, stage.first_step = resume["epoch"], resume["step"]
    stage.losses = list(resume["epoch_losses"])
    log.info("resumed stage %s at epoch %d step %d", stage.name, stage.first_epoch, stage.first_step)
    return own_rng


def keep_starting_weights(run: Run, stage: Stage) -> None:
    """``schedule.init_from``: its val BLEU-4 is the score to beat, and its weights the best so far."""
    history, opts = run.history, run.options
    history["best_bleu4"] = validate(stage.model, stage.encoder, run.prepared, opts.val_split, stage.options,
                                     opts.max_len)
    history["best_epoch"], history["best_stage"] = 0, stage.name
    history["initial_val_bleu4"] = history["best_bleu4"]
    save(run.ckpt_dir / "best.pt", stage.model, run.prepared, opts.record, encoder_fields(run, stage),
         stage_name=stage.name, epoch=0)


# -- an epoch: its steps, then validation and the checkpoints -------------------------------------------------

def train_epoch(run: Run, stage: Stage, epoch: int) -> float:
    """The epoch's steps (from ``stage.first_step`` in a resumed epoch), in the order drawn from (seed, epoch);
    on a signal, saves last.pt and exits. Returns the seconds the steps took."""
    t0, options = time.time(), stage.options
    stage.rewards = []
    for module in stage.trained:
        module.train()
    order = epoch_batches(run, stage, epoch)
    if epoch > stage.first_epoch:
        stage.first_step, stage.losses = 0, []
    bar = progress(range(stage.first_step, stage.steps_per_epoch), desc=f"{stage.name} {epoch + 1}/{options.epochs}")
    for step in bar:
        batch = order[step * options.batch_size : (step + 1) * options.batch_size]
        if options.loss == "self_critical":
            loss = self_critical_step(run, stage, batch)
        else:
            loss = cross_entropy_step(run, stage, batch, epoch, step)
        stage.losses.append(optimize(loss, stage, epoch, step, run.ckpt_dir))
        if step % options.log_every == 0:
            log_step(run, stage, bar, step)
        stopping = run.dp.mean(float(run.stop.requested)) > 0  # every rank stops after the same step
        every, done = options.checkpoint_every_steps, epoch * stage.steps_per_epoch + step + 1
        if stopping or (every and done % every == 0 and step + 1 < stage.steps_per_epoch):
            save_last(run, stage, epoch, step + 1, stage.losses)  # a kill -9 now loses at most `every` steps
        if stopping:
            raise interrupted(run.stop, run.run_dir, stage.name, epoch, step + 1, stage.steps_per_epoch)
    return time.time() - t0  # the training steps alone


def epoch_batches(run: Run, stage: Stage, epoch: int) -> torch.Tensor:
    """The epoch's order, drawn from (seed, epoch) alone: a permutation of the training images, or of the
    captions (optionally bucketed by length), so a resumed run sees the batches the uninterrupted one would."""
    seed = run.options.seed * 100_003 + epoch
    if stage.by_image:
        return torch.randperm(len(run.data.paths), generator=torch.Generator().manual_seed(seed))
    return epoch_order((run.data.tokens != 0).sum(1), stage.options.batch_size, seed,
                       bucket=stage.options.bucket_by_length)


def cross_entropy_step(run: Run, stage: Stage, batch: torch.Tensor, epoch: int = 0, step: int = 0) -> torch.Tensor:
    """The teacher-forced loss of one batch of captions (or of images, every caption of each)."""
    options = stage.options
    sampling = Sampling(sampling_probability(options.scheduled_sampling, epoch * stage.steps_per_epoch + step,
                                             stage.steps_per_epoch),
                        sampling_seed(run.options.seed, stage.index, epoch, step, run.dp.rank))
    with autocast(run.device.type, run.precision):
        return cross_entropy_loss(stage.net, batch, stage.by_image, run.data, stage.encoder, run.dp, run.device,
                                  options.word_dropout, options.label_smoothing, sampling)


def self_critical_step(run: Run, stage: Stage, batch: torch.Tensor) -> torch.Tensor:
    """The REINFORCE loss of one batch of images (captioning/training/self_critical.py); keeps its mean reward."""
    with autocast(run.device.type, run.precision):
        images = batch.tolist()
        feats = features_of(images, run.data, stage.encoder, run.device)
        loss, mean_reward = self_critical_loss(stage.model, feats, images, stage.reward, run.prepared.vocab.itos,
                                               stage.options)
    stage.rewards.append(mean_reward)
    return loss


def optimize(loss: torch.Tensor, stage: Stage, epoch: int, step: int, ckpt_dir: Path) -> float:
    """Backpropagation, clipping, AdamW and the schedule (captioning/nn/step.py); the NaN stop."""
    try:
        return optimizer_step(loss, stage.opt, [p for m in stage.trained for p in m.parameters()],
                              stage.options.clip, stage.lr_schedule)
    except NonFiniteLoss as e:
        raise TrainingDiverged(f"loss is {e.value} in stage {stage.name}, epoch {epoch + 1}, step {step}: lower "
                               f"its lr or set its clip; the last good checkpoint is in {ckpt_dir}") from None


def log_step(run: Run, stage: Stage, bar: Any, step: int) -> None:
    """The latest loss and learning rate on the progress bar and to the logger."""
    lr = stage.lr_schedule.get_last_lr()[0]
    bar.set_postfix(loss=f"{stage.losses[-1]:.3f}", lr=f"{lr:.2e}")
    if run.logger:  # steps count on across stages
        run.logger.log({"train/loss": stage.losses[-1], "lr": lr}, step=steps_done(run.history) + step)


def end_epoch(run: Run, stage: Stage, epoch: int, seconds: float) -> None:
    """Validate, record the epoch, keep the best weights, save last.pt and history.json; exit on a signal."""
    opts, dp = run.options, run.dp
    bleu4 = dp.on_main(validate, stage.model, stage.encoder, run.prepared, opts.val_split, stage.options,
                       opts.max_len)
    record_epoch(run, stage, epoch, bleu4, seconds)
    history = run.history
    if bleu4 > history["best_bleu4"] or (stage.options.keep == "last" and epoch + 1 == stage.options.epochs):
        history.update(best_bleu4=bleu4, best_epoch=epoch + 1, best_stage=stage.name)
        if dp.is_main:
            save(run.ckpt_dir / "best.pt", stage.model, run.prepared, opts.record, encoder_fields(run, stage),
                 stage.trained, stage_name=stage.name, epoch=epoch + 1)
    save_last(run, stage, epoch + 1, 0, [])
    if dp.is_main:
        save_json(history, run.run_dir / "history.json")
    if dp.mean(float(run.stop.requested)) > 0:  # the signal came during validation
        raise interrupted(run.stop, run.run_dir, stage.name, epoch + 1, 0, stage.steps_per_epoch)


def record_epoch(run: Run, stage: Stage, epoch: int, bleu4: float, seconds: float) -> None:
    """The epoch's entry in the history, the log line and the logger's epoch metrics."""
    entry = {"stage": stage.name, "epoch": epoch + 1, "train_loss": run.dp.mean(float(np.mean(stage.losses))),
             "val_bleu4": bleu4, "seconds": seconds, "steps": stage.steps_per_epoch}
    if stage.rewards:
        entry["train_reward"] = float(np.mean(stage.rewards))
    history = run.history
    history["epochs"].append(entry)
    log.info("%s epoch %d: loss %.4f  val BLEU-4 %.4f  (%.1fs)%s", stage.name, epoch + 1, entry["train_loss"],
             bleu4, entry["seconds"], f"  mean reward {entry['train_reward']:.4f}" if stage.rewards else "")
    end_step, logger = steps_done(history), run.logger
    if logger:
        logger.log({"val/Bleu_4": bleu4, "train/epoch_loss": entry["train_loss"], "epoch": len(history["epochs"]),
                    **({"train/reward": entry["train_reward"]} if stage.rewards else {})}, step=end_step)
        if hasattr(logger, "log_samples"):  # e.g. W&B: a table of val images and their captions
            logger.log_samples(len(history["epochs"]), end_step, stage.model, run.prepared, run.options.val_split,
                               run.options.max_len)


def save_last(run: Run, stage: Stage, epoch: int, step: int, epoch_losses: list[float]) -> None:
    """last.pt: the weights, and everything that continues the run from (stage, epoch, step)."""
    dp = run.dp
    rngs = dp.gather(rng_state())  # every rank's generators (every rank calls this)
    if dp.is_main:
        save(run.ckpt_dir / "last.pt", stage.model, run.prepared, run.options.record, encoder_fields(run, stage),
             stage.trained, stage_name=stage.name, epoch=epoch, step=step, epoch_losses=list(epoch_losses),
             steps_per_epoch=stage.steps_per_epoch, optimizer=stage.opt.state_dict(),
             lr_schedule=stage.lr_schedule.state_dict(), rng=rngs[0],
             **({"rank_rng": rngs} if dp.world_size > 1 else {}), history=run.history)


def encoder_fields(run: Run, stage: Stage) -> dict:
    """What a checkpoint records of the encoder: its features' identity and provenance
    (captioning/features/identity.py), and its weights once fine-tuned."""
    start = stage.start
    if stage.options.encoder_lr is not None:
        ident = stage.encoder.finetuned_identity()
        return {"encoder_key": ident.key, "encoder_provenance": ident.provenance,
                "encoder_state": encoder_state(stage.encoder)}
    if start is not None and start.get("encoder_state") is not None:
        return {"encoder_key": start["encoder_key"], "encoder_state": start["encoder_state"],
                "encoder_provenance": start.get("encoder_provenance", {})}
    prepared = run.prepared
    return {"encoder_key": prepared.encoder_key, "encoder_provenance": prepared.encoder_identity.provenance}


# -- the two losses -------------------------------------------------------------------------------------

def cross_entropy_loss(net: nn.Module, batch: torch.Tensor, by_image: bool, data: TrainData, encoder, dp,
                       device: torch.device, word_dropout: float = 0.0, label_smoothing: float = 0.0,
                       sampling: Sampling | None = None) -> torch.Tensor:
    """Masked cross-entropy of a teacher-forced batch: ``batch`` holds caption rows (on cached features) or
    image rows (every caption of each image, its features computed once from pixels). With ``word_dropout``
    each input word is <unk> with that probability (the targets stay the true words); with ``sampling`` (a
    probability > 0) input words are the model's own (scheduled sampling, ``scheduled_inputs``); with
    ``label_smoothing`` the targets are smoothed over the vocabulary."""
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
    inputs = drop_words(tokens[:, :-1], word_dropout)
    if sampling is not None and sampling.p > 0:  # p == 0: the inputs (and every RNG draw) as without the option
        inputs = scheduled_inputs(getattr(net, "module", net), feats, inputs, sampling.p, sampling.seed)
    logits = net(feats, inputs)
    loss = caption_loss(logits, tokens[:, 1:], label_smoothing=label_smoothing)
    extra = getattr(net, "module", net).auxiliary_loss()  # e.g. the attention penalty (DDP wraps the model)
    return (loss if extra is None else loss + extra) * scale


def drop_words(inputs: torch.Tensor, p: float) -> torch.Tensor:
    """Word dropout: each word of the input rows [B, T] (not <start>, <end> or <pad>) becomes <unk> with
    probability ``p``, drawn from torch's global generator (a checkpoint saves its state, so resume is exact)."""
    if p == 0:
        return inputs
    hit = (torch.rand(inputs.shape, device=inputs.device) < p) & (inputs > END)
    return inputs.masked_fill(hit, UNK)


def caption_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int = 0,
                 label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over real words only: padding positions are masked out of the mean. With
    ``label_smoothing`` = e each real word's target is (1 - e) on the word plus e / V on every word."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=pad_id,
                                       label_smoothing=label_smoothing)


@dataclass(frozen=True)
class Sampling:
    """Scheduled sampling at one step: the probability of feeding the model's own word, and the seed of the
    generator that draws which words and which of the model's words (derived from the position alone, so a
    resumed run draws what the uninterrupted one would)."""

    p: float
    seed: int


def sampling_probability(options: ScheduledSampling, done: int, steps_per_epoch: int) -> float:
    """p after ``done`` steps of the stage: from ``start`` linearly to ``end`` over ``ramp`` epochs, then ``end``."""
    ramp = options.ramp * steps_per_epoch
    if ramp <= 0 or done >= ramp:
        return float(options.end)
    return float(options.start + (options.end - options.start) * done / ramp)


def sampling_seed(seed: int, stage: int, epoch: int, step: int, rank: int = 0) -> int:
    """The scheduled-sampling generator's seed at one step of one rank: a function of the position alone, in
    [0, 2**63) so that torch.Generator.manual_seed takes it for any run seed (seed 0's values are below the bound
    unreduced, so runs at seed 0 draw what they drew before the reduction)."""
    return ((((seed * 1_000_003 + stage) * 100_003 + epoch) * 1_000_003 + step) * 1_009 + rank) % (1 << 63)


def scheduled_inputs(model: CaptionModel, features: torch.Tensor, inputs: torch.Tensor, p: float,
                     seed: int) -> torch.Tensor:
    """Scheduled sampling (Bengio et al. 2015): the input rows [B, T] where each word after <start> (not
    padding) is, with probability ``p``, replaced by a word sampled from the model's own distribution given the
    (mixed) words before it, as self-critical.pytorch does. The words are chosen step by step through the model
    contract (init_state, step) without gradient, since none flows through a chosen word; the loss is then the
    model's ordinary teacher-forced forward on the mixed inputs, so every model (and its auxiliary loss) trains
    as with plain teacher forcing. Draws come from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    replace = (torch.rand(inputs.shape, generator=gen) < p).to(inputs.device) & (inputs != 0)
    replace[:, 0] = False  # <start> stays
    uniform = 1 - torch.rand(inputs.shape, generator=gen, dtype=torch.float64).to(inputs.device)  # in (0, 1]
    mixed = inputs.clone()
    with torch.no_grad():
        state = model.init_state(features)
        for t in range(1, inputs.size(1)):
            if not replace[:, t:].any():
                break  # the rest stay the true words
            log_prob, state = model.step(mixed[:, t - 1], state)
            mixed[:, t] = torch.where(replace[:, t], sample_word(log_prob, uniform[:, t]), inputs[:, t])
    return mixed


def sample_word(log_prob: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """One word per row of log-probabilities [B, V], drawn by inverting the cumulative distribution at
    ``uniform`` [B] (the same on every device, given the uniforms)."""
    cdf = log_prob.double().exp().cumsum(-1)
    index = torch.searchsorted(cdf, (uniform * cdf[:, -1]).unsqueeze(-1)).squeeze(-1)
    return index.clamp_max(log_prob.size(-1) - 1)


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


def save(path: Path, model: CaptionModel, prepared: Prepared, record: dict, encoder: dict,
         trained: list[nn.Module] = (), **state: Any) -> None:
    """Write a checkpoint: the model, vocabulary, encoder (``encoder``: its cache key, and its weights once
    fine-tuned), the run config ``record`` and ``state``; never replace a good checkpoint by one with NaN or
    infinite weights."""
    for module in trained:
        if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
            raise TrainingDiverged(f"the weights became NaN or infinite: lower the stage's lr or set its clip; "
                                   f"the last good checkpoint is kept in {path.parent}")
    fields = dict(encoder)
    save_checkpoint(path, model, prepared.vocab, prepared.encoder_cfg, fields.pop("encoder_key"),
                    config=record, **fields, **state)


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
