"""Training the caption decoder on cached features: teacher forcing, masked cross-entropy, BPTT.

One epoch visits every (image, caption) pair of the train split once, in an order drawn from a
generator seeded by (seed, epoch), so a resumed run sees exactly the batches the uninterrupted one
would. Each epoch ends with greedy captions on (part of) val; their BLEU-4 picks the best checkpoint.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captioning.utils import distributed
from captioning.training.batching import epoch_order
from captioning.models.show_tell import CaptionDecoder, caption_loss
from captioning.features.prepare import Prepared, caption_tensors, generate, seed_everything, to_dict
from captioning.utils.interrupts import GracefulStop, Interrupted
from captioning.utils.io import atomic_write, save_json
from captioning.evaluation.metrics import score
from captioning.models.checkpoint import CheckpointError, decoder_from_checkpoint, load_checkpoint, save_checkpoint
from captioning.utils.precision import training_precision
from captioning.utils.progress import progress

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def build_decoder(cfg: Any, prepared: Prepared) -> CaptionDecoder:
    """The decoder described by the config's ``decoder`` and ``cell`` groups."""
    d, c = cfg.decoder, cfg.cell
    # passed only when used, so checkpoints of linear-projection decoders keep the hyperparameters they had
    extra = {"init_hidden": d.init_hidden} if d.get("init_hidden") else {}
    if d.get("feature_dropout") is not None:
        extra["feature_dropout"] = d.feature_dropout
    if c.name == "lstm" and d.get("lstm_init", "torch") != "torch":  # other cells have no forget gate: ignored
        extra.update(lstm_init=d.lstm_init, forget_bias=d.get("forget_bias", 1.0), t_max=cfg.data.max_caption_len + 1)
    return CaptionDecoder.build(
        feature_dim=prepared.feature_dim, vocab_size=len(prepared.vocab), cell=c.name, embed_dim=d.embed_dim,
        hidden_size=d.hidden_size, num_layers=c.num_layers, dropout=d.dropout,
        init_activation=d.init_activation, feature_norm=d.feature_norm, backend=c.backend, **extra)


def make_optimizer(params, sched: Any, steps_per_epoch: int):
    """AdamW over ``params`` (parameters or param groups) with linear warmup then a cosine, constant or
    step learning-rate schedule (per step, scaling every group's own lr)."""
    opt = torch.optim.AdamW(params, lr=sched.lr, weight_decay=sched.weight_decay)
    total = max(1, sched.epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < sched.warmup_steps:
            return (step + 1) / sched.warmup_steps
        if sched.lr_schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, step / total)))
        if sched.lr_schedule == "step":
            return sched.lr_gamma ** (step // max(1, sched.lr_step_epochs * steps_per_epoch))
        if sched.lr_schedule == "constant":
            return 1.0
        raise ValueError(f"Unknown lr_schedule {sched.lr_schedule!r}: choose cosine, constant or step")

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def rng_state() -> dict:
    """Every RNG a training step touches."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` saved."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def validate(decoder: CaptionDecoder, prepared: Prepared, split: str | None, sched: Any, max_len: int) -> float:
    """Greedy BLEU-4 on the first ``val_max_images`` images of the val split (0.0 when there is none)."""
    if not split or split not in prepared.splits:
        return 0.0
    n = sched.val_max_images or len(prepared.splits[split])
    records = prepared.splits[split][:n]
    hyps = generate(decoder, prepared.vocab, records, prepared.features[split][:n], {"method": "greedy"}, max_len)
    return score({r.image_id: r.captions for r in records}, hyps)["Bleu_4"]


def train(cfg: Any, prepared: Prepared, run_dir: Path, logger=None, step_offset: int = 0) -> dict:
    """Train, checkpoint (last + best, atomically) and return the training history.

    SIGINT/SIGTERM finish the current step, save ``last`` with the exact position and raise
    ``Interrupted`` (a SystemExit with status 128 + signal); ``resume=`` continues from that step.
    A schedule with a ``self_critical`` stage (epochs > 0) trains in two stages (captioning/training/self_critical.py).
    ``step_offset`` is added to the steps the logger sees (a second stage continues the first's curve).
    """
    stage2 = cfg.schedule.get("self_critical")
    if stage2 is not None and stage2.get("epochs"):
        from captioning.training.self_critical import train_two_stages

        return train_two_stages(cfg, prepared, Path(run_dir), logger)
    with GracefulStop() as stop:
        return _train(cfg, prepared, Path(run_dir), logger, stop, step_offset)


def _train(cfg: Any, prepared: Prepared, run_dir: Path, logger, stop: GracefulStop, step_offset: int = 0) -> dict:
    if cfg.schedule.get("finetune_encoder"):
        from captioning.training.finetune import FinetuneLoop

        loop = FinetuneLoop(cfg, prepared, run_dir, logger, stop)
    elif cfg.schedule.get("scst"):
        from captioning.training.self_critical import ScstLoop

        loop = ScstLoop(cfg, prepared, run_dir, logger, stop)
    else:
        loop = _Loop(cfg, prepared, run_dir, logger, stop)
    loop.step_offset = step_offset
    for epoch in range(loop.start_epoch, cfg.schedule.epochs):
        t0 = time.time()
        losses = loop.run_epoch(epoch)
        if loop.end_epoch(epoch, losses, time.time() - t0):
            break
    return loop.history


class _Loop:
    """One training run's state (data, decoder, optimizer, position, history) and its steps, on cached
    features. captioning/training/finetune.py overrides the hooks (items, order, loss, validation, checkpoint
    contents) to train the encoder with it from pixels."""

    def __init__(self, cfg: Any, prepared: Prepared, run_dir: Path, logger, stop: GracefulStop):
        self.cfg, self.sched, self.prepared, self.run_dir, self.logger, self.stop = (
            cfg, cfg.schedule, prepared, run_dir, logger, stop)
        self.max_len, self.device = cfg.data.max_caption_len, torch.device(cfg.device)
        self.tokens, self.image_rows = caption_tensors(prepared.splits[cfg.data.train_split], prepared.vocab,
                                                       self.max_len)
        self.train_feats = prepared.features[cfg.data.train_split]
        self.lengths = (self.tokens != 0).sum(1)
        self.steps_per_epoch = math.ceil(self.num_items() / self.sched.batch_size)
        # seed here, not only at start-up: whether features came from the cache or were extracted (a
        # DataLoader draws from the global RNG) must not change the decoder's initial weights
        seed_everything(cfg.seed)
        self.decoder = build_decoder(cfg, prepared).to(self.device)
        self.build_modules()
        self.opt, self.lr_sched = make_optimizer(self.param_groups(), self.sched, self.steps_per_epoch)
        self.ckpt_dir = run_dir / "checkpoints"
        self.history: dict = {"epochs": [], "best_bleu4": -1.0, "best_epoch": -1}
        # position: epochs done, then steps done in the next (and their losses)
        self.start_epoch, self.start_step, self.start_losses = 0, 0, []
        if cfg.get("resume"):
            self.start_epoch, self.start_step, self.start_losses, self.history = _resume(
                cfg, self.decoder, self.opt, self.lr_sched, self.steps_per_epoch, self.ckpt_dir, self.restore)
            log.info("resumed from %s at epoch %d step %d", cfg.resume, self.start_epoch, self.start_step)
        elif self.sched.get("init_from"):
            self.initialise_from(load_checkpoint(self.sched.init_from))
        self.every = self.sched.get("checkpoint_every_steps") or 0
        # mixed precision: matmuls in bfloat16 where torch.autocast deems it safe, weights and optimizer in fp32
        self.autocast = dict(device_type=self.device.type, dtype=torch.bfloat16,
                             enabled=training_precision(cfg.get("precision", "fp32"), cfg.device) == "bf16")
        self.step_offset = 0  # added to the steps the logger sees
        self.dp = distributed.current()  # one process, or this rank of a DDP job (captioning/utils/distributed.py)
        self.model = self.dp.wrap(self.decoder)

    # -- hooks (captioning/training/finetune.py overrides them) --------------------------------------------

    def num_items(self) -> int:
        """What an epoch visits once: captions (each with its image's cached feature)."""
        return len(self.tokens)

    def build_modules(self) -> None:
        """Modules trained besides the decoder: none on cached features."""

    def param_groups(self) -> list:
        """What the optimizer updates."""
        return list(self.decoder.parameters())

    def trained_modules(self) -> list[torch.nn.Module]:
        return [self.decoder]

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The epoch's caption order, a function of the seed and the epoch (so resume is exact)."""
        return epoch_order(self.lengths, self.sched.batch_size, self.cfg.seed * 100_003 + epoch,
                           bucket=bool(self.sched.get("bucket_by_length", False)))

    def loss(self, order: torch.Tensor, step: int) -> torch.Tensor:
        """Masked cross-entropy of one teacher-forced batch (scaled for data parallelism)."""
        feats, tokens, scale = self.batch(order, step)
        return caption_loss(self.model(feats, tokens[:, :-1]), tokens[:, 1:]) * scale

    def validate(self) -> float:
        """Val BLEU-4 for model selection."""
        return validate(self.decoder, self.prepared, self.cfg.data.val_split, self.sched, self.max_len)

    def checkpoint_contents(self) -> dict:
        """The encoder the checkpoint's decoder reads: its config and cache key."""
        return {"encoder_cfg": self.prepared.encoder_cfg, "encoder_key": self.prepared.encoder_key}

    def restore(self, ckpt: dict) -> None:
        """Restore what ``checkpoint_contents`` added beyond the decoder (nothing here)."""

    def initialise_from(self, ckpt: dict) -> None:
        """Start from another run's decoder weights (schedule.init_from), with fresh optimizer and schedule."""
        restored, vocab = decoder_from_checkpoint(ckpt)
        if restored.hyperparameters() != self.decoder.hyperparameters() or vocab != self.prepared.vocab:
            raise CheckpointError(f"schedule.init_from={ckpt['path']} holds decoder {restored.hyperparameters()} "
                                  f"but this config builds {self.decoder.hyperparameters()} (or the vocabularies "
                                  "differ); start from a run with the same decoder, cell and data settings")
        if ckpt.get("encoder_key") and ckpt["encoder_key"] != self.prepared.encoder_key:
            raise CheckpointError(f"schedule.init_from={ckpt['path']} was trained on {ckpt['encoder_key']!r} "
                                  f"features, this run reads {self.prepared.encoder_key!r}: use the same encoder")
        self.decoder.load_state_dict(ckpt["decoder"])
        log.info("decoder initialised from %s", ckpt["path"])

    # -- the loop -----------------------------------------------------------------------------------

    def save(self, name: str, epoch: int, step: int = 0, losses: list | None = None) -> None:
        """Checkpoint ``name`` (rank 0 only) at position (epoch, step) with everything resume needs."""
        if not self.dp.is_main:
            return
        for module in self.trained_modules():  # never replace a good checkpoint by a diverged one
            _check_finite(module, self.ckpt_dir)
        p, extra = self.prepared, self.checkpoint_contents()
        save_checkpoint(self.ckpt_dir / f"{name}.pt", self.decoder, p.vocab, extra.pop("encoder_cfg"),
                        extra.pop("encoder_key"), max_len=self.max_len, optimizer=self.opt.state_dict(),
                        lr_schedule=self.lr_sched.state_dict(), epoch=epoch, step=step,
                        epoch_losses=list(losses or []), steps_per_epoch=self.steps_per_epoch,
                        history=self.history, rng=rng_state(), config=to_dict(self.cfg), **extra)

    def batch(self, order: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Features [B, D], tokens [B, T] (padding shared by the whole batch trimmed) and the loss scale."""
        bs = self.sched.batch_size
        idx, scale = self.dp.shard(order[step * bs : (step + 1) * bs], self.tokens)  # scale 1.0 for one process
        tokens = self.tokens[idx]
        tokens = tokens[:, : int((tokens != 0).sum(1).max())]
        rows = self.image_rows[idx].numpy()
        feats = torch.from_numpy(np.ascontiguousarray(self.train_feats[rows])).float()
        return feats.to(self.device), tokens.to(self.device), scale

    def train_step(self, epoch: int, step: int, order: torch.Tensor) -> float:
        """Teacher-forced forward, masked cross-entropy, backward through time, clip, update."""
        with torch.autocast(**self.autocast):
            loss = self.loss(order, step)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss is {loss.item()} at epoch {epoch + 1} step {step}: lower schedule.lr "
                                   f"or set schedule.clip; the last good checkpoint is in {self.ckpt_dir}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.sched.clip:
            torch.nn.utils.clip_grad_norm_([p for m in self.trained_modules() for p in m.parameters()],
                                           self.sched.clip)
        self.opt.step()
        self.lr_sched.step()
        return loss.item()

    def run_epoch(self, epoch: int) -> list[float]:
        """The epoch's steps (from the resume position in the first epoch); returns their losses."""
        sched, spe = self.sched, self.steps_per_epoch
        order = self.epoch_order(epoch)
        for module in self.trained_modules():
            module.train()
        first, losses = (self.start_step, list(self.start_losses)) if epoch == self.start_epoch else (0, [])
        bar = progress(range(first, spe), desc=f"epoch {epoch + 1}/{sched.epochs}")
        for step in bar:
            losses.append(self.train_step(epoch, step, order))
            if step % sched.log_every == 0:
                lr = self.lr_sched.get_last_lr()[0]
                bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr:.2e}")
                if self.logger:
                    self.logger.log({"train/loss": losses[-1], "lr": lr}, step=self.step_offset + epoch * spe + step)
            stopping = self.dp.mean(float(self.stop.requested)) > 0  # every rank stops after the same step
            if stopping or (self.every and (epoch * spe + step + 1) % self.every == 0 and step + 1 < spe):
                self.save("last", epoch, step + 1, losses)  # a kill -9 now loses at most `every` steps
            if stopping:
                raise _interrupted(self.stop, self.run_dir, epoch, step + 1, spe)
        return losses

    def end_epoch(self, epoch: int, losses: list[float], seconds: float) -> bool:
        """Validate, log, checkpoint last (and best); True when early stopping ends the run."""
        cfg, history, spe = self.cfg, self.history, self.steps_per_epoch
        bleu4 = self.dp.on_main(self.validate)
        entry = {"epoch": epoch + 1, "train_loss": self.dp.mean(float(np.mean(losses))), "val_bleu4": bleu4,
                 "seconds": seconds}
        history["epochs"].append(entry)
        log.info("epoch %d: loss %.4f  val BLEU-4 %.4f  (%.1fs)", epoch + 1, entry["train_loss"], bleu4, seconds)
        if self.logger:
            self.logger.log({"val/Bleu_4": bleu4, "train/epoch_loss": entry["train_loss"], "epoch": epoch + 1},
                            step=self.step_offset + (epoch + 1) * spe)
            if hasattr(self.logger, "log_samples"):  # e.g. W&B: a table of val images and their captions
                self.logger.log_samples(epoch + 1, self.step_offset + (epoch + 1) * spe, self.decoder, self.prepared,
                                        cfg.data.val_split, self.max_len)
        if bleu4 > history["best_bleu4"]:
            history["best_bleu4"], history["best_epoch"] = bleu4, epoch + 1
            self.save("best", epoch + 1)
        self.save("last", epoch + 1)
        if self.dp.is_main:
            save_json(history, self.run_dir / "history.json")
        if self.dp.mean(float(self.stop.requested)) > 0:  # the signal came during validation
            raise _interrupted(self.stop, self.run_dir, epoch + 1, 0, spe)
        early = self.sched.early_stopping
        if early and epoch + 1 - history["best_epoch"] >= early:
            log.info("early stopping: no better val BLEU-4 for %d epochs", early)
            return True
        return False


def _resume(cfg: Any, decoder: CaptionDecoder, opt, lr_sched, steps_per_epoch: int,
            ckpt_dir: Path, restore=None) -> tuple[int, int, list[float], dict]:
    """Restore model, optimizer, schedule, position (epoch, step) and RNGs from a run dir's last checkpoint."""
    p = Path(cfg.resume)
    ckpt = load_checkpoint(p / "checkpoints" / "last.pt" if (p / "checkpoints" / "last.pt").is_file() else p)
    if "optimizer" not in ckpt:
        raise CheckpointError(f"{ckpt['path']} holds no training state (optimizer, epoch): resume from a last.pt")
    restored, _ = decoder_from_checkpoint(ckpt)
    if restored.hyperparameters() != decoder.hyperparameters():
        raise CheckpointError(f"cannot resume {ckpt['path']}: it was trained with decoder "
                              f"{restored.hyperparameters()} but this config builds {decoder.hyperparameters()}; "
                              "resume with the run's own decoder and cell settings")
    step = int(ckpt.get("step", 0))
    old = ckpt.get("config") or {}
    was = (old.get("seed"), (old.get("schedule") or {}).get("batch_size"), ckpt.get("steps_per_epoch"))
    if step and was != (cfg.seed, cfg.schedule.batch_size, steps_per_epoch):
        raise CheckpointError(f"{ckpt['path']} stopped mid-epoch (step {step}); continuing it exactly needs the same "
                              f"seed, schedule.batch_size and training data: (seed, batch_size, steps per epoch) "
                              f"was {was}, this config gives {(cfg.seed, cfg.schedule.batch_size, steps_per_epoch)}")
    decoder.load_state_dict(ckpt["decoder"])
    if restore is not None:
        restore(ckpt)
    opt.load_state_dict(ckpt["optimizer"])
    lr_sched.load_state_dict(ckpt["lr_schedule"])
    set_rng_state(ckpt["rng"])
    _carry_best(Path(ckpt["path"]).parent / "best.pt", ckpt_dir / "best.pt")
    return ckpt["epoch"], step, list(ckpt.get("epoch_losses", [])), ckpt["history"]


def _carry_best(source: Path, target: Path) -> None:
    """A run resumed into a new directory starts with the old run's best checkpoint (evaluation reads it)."""
    if source.is_file() and not target.exists() and source.resolve() != target.resolve():
        with open(source, "rb") as src, atomic_write(target, "wb") as dst:
            shutil.copyfileobj(src, dst)


def _check_finite(decoder: CaptionDecoder, ckpt_dir: Path) -> None:
    """Refuse to checkpoint NaN or infinite weights (a finite loss can still give an infinite update)."""
    if not all(bool(torch.isfinite(p).all()) for p in decoder.parameters()):
        raise TrainingDiverged(f"the weights became NaN or infinite: lower schedule.lr or set schedule.clip; "
                               f"the last good checkpoint is kept in {ckpt_dir}")


def _interrupted(stop: GracefulStop, run_dir: Path, epoch: int, step: int, steps_per_epoch: int) -> Interrupted:
    """The exception that ends a run stopped by a signal, telling the user how to continue."""
    return stop.exit(f"stopped after {epoch} epoch(s) and {step} of the next epoch's {steps_per_epoch} steps; "
                     f"saved {run_dir / 'checkpoints' / 'last.pt'}; continue with resume={run_dir}")
