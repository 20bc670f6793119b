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

from captioning import distributed
from captioning.decoder import CaptionDecoder, caption_loss
from captioning.experiment import Prepared, caption_tensors, generate, seed_everything, to_dict
from captioning.interrupts import GracefulStop, Interrupted
from captioning.io import atomic_write, save_json
from captioning.metrics import score
from captioning.model import CheckpointError, decoder_from_checkpoint, load_checkpoint, save_checkpoint
from captioning.progress import progress

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def build_decoder(cfg: Any, prepared: Prepared) -> CaptionDecoder:
    """The decoder described by the config's ``decoder`` and ``cell`` groups."""
    d, c = cfg.decoder, cfg.cell
    return CaptionDecoder.build(
        feature_dim=prepared.feature_dim, vocab_size=len(prepared.vocab), cell=c.name, embed_dim=d.embed_dim,
        hidden_size=d.hidden_size, num_layers=c.num_layers, dropout=d.dropout,
        init_activation=d.init_activation, feature_norm=d.feature_norm, backend=c.backend)


def make_optimizer(decoder: CaptionDecoder, sched: Any, steps_per_epoch: int):
    """AdamW with linear warmup then a cosine, constant or step learning-rate schedule (per step)."""
    opt = torch.optim.AdamW(decoder.parameters(), lr=sched.lr, weight_decay=sched.weight_decay)
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


def train(cfg: Any, prepared: Prepared, run_dir: Path, logger=None) -> dict:
    """Train, checkpoint (last + best, atomically) and return the training history.

    SIGINT/SIGTERM finish the current step, save ``last`` with the exact position and raise
    ``Interrupted`` (a SystemExit with status 128 + signal); ``resume=`` continues from that step.
    """
    with GracefulStop() as stop:
        return _train(cfg, prepared, Path(run_dir), logger, stop)


def _train(cfg: Any, prepared: Prepared, run_dir: Path, logger, stop: GracefulStop) -> dict:
    sched, max_len = cfg.schedule, cfg.data.max_caption_len
    device = torch.device(cfg.device)
    train_split = cfg.data.train_split
    tokens, image_rows = caption_tensors(prepared.splits[train_split], prepared.vocab, max_len)
    train_feats = prepared.features[train_split]
    steps_per_epoch = math.ceil(len(tokens) / sched.batch_size)
    # seed here, not only at start-up: whether features came from the cache or were extracted (a
    # DataLoader draws from the global RNG) must not change the decoder's initial weights
    seed_everything(cfg.seed)
    decoder = build_decoder(cfg, prepared).to(device)
    opt, lr_sched = make_optimizer(decoder, sched, steps_per_epoch)
    ckpt_dir = run_dir / "checkpoints"
    history: dict = {"epochs": [], "best_bleu4": -1.0, "best_epoch": -1}
    start_epoch, start_step, start_losses = 0, 0, []  # position: epochs done, then steps done in the next
    if cfg.get("resume"):
        start_epoch, start_step, start_losses, history = _resume(cfg, decoder, opt, lr_sched, steps_per_epoch,
                                                                 ckpt_dir)
        log.info("resumed from %s at epoch %d step %d", cfg.resume, start_epoch, start_step)
    every = sched.get("checkpoint_every_steps") or 0

    def save(name: str, epoch: int, step: int = 0, losses: list | None = None) -> None:
        if not dp.is_main:
            return
        _check_finite(decoder, ckpt_dir)  # never replace a good checkpoint by a diverged one
        save_checkpoint(ckpt_dir / f"{name}.pt", decoder, prepared.vocab, prepared.encoder_cfg, prepared.encoder_key,
                        max_len=max_len, optimizer=opt.state_dict(), lr_schedule=lr_sched.state_dict(),
                        epoch=epoch, step=step, epoch_losses=list(losses or []), steps_per_epoch=steps_per_epoch,
                        history=history, rng=rng_state(), config=to_dict(cfg))

    dp = distributed.current()  # one process, or this rank of a DDP job (captioning/distributed.py)
    model = dp.wrap(decoder)
    for epoch in range(start_epoch, sched.epochs):
        t0 = time.time()
        order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
        decoder.train()
        first, losses = (start_step, start_losses) if epoch == start_epoch else (0, [])
        bar = progress(range(first, steps_per_epoch), desc=f"epoch {epoch + 1}/{sched.epochs}")
        for step in bar:
            idx = order[step * sched.batch_size : (step + 1) * sched.batch_size]
            idx, scale = dp.shard(idx, tokens)  # this rank's captions; scale 1.0 for one process
            batch = tokens[idx]
            batch = batch[:, : int((batch != 0).sum(1).max())]  # trim padding shared by the whole batch
            rows = image_rows[idx].numpy()
            feats = torch.from_numpy(np.ascontiguousarray(train_feats[rows])).float()
            feats, batch = feats.to(device), batch.to(device)
            logits = model(feats, batch[:, :-1])
            loss = caption_loss(logits, batch[:, 1:]) * scale
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss is {loss.item()} at epoch {epoch + 1} step {step}: lower schedule.lr "
                                       f"or set schedule.clip; the last good checkpoint is in {ckpt_dir}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if sched.clip:
                torch.nn.utils.clip_grad_norm_(decoder.parameters(), sched.clip)
            opt.step()
            lr_sched.step()
            losses.append(loss.item())
            if step % sched.log_every == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr_sched.get_last_lr()[0]:.2e}")
                if logger:
                    logger.log({"train/loss": loss.item(), "lr": lr_sched.get_last_lr()[0]},
                               step=epoch * steps_per_epoch + step)
            stopping = dp.mean(float(stop.requested)) > 0  # every rank stops after the same step
            if stopping or (every and (epoch * steps_per_epoch + step + 1) % every == 0 and step + 1 < steps_per_epoch):
                save("last", epoch, step + 1, losses)  # a kill -9 now loses at most `every` steps
            if stopping:
                raise _interrupted(stop, run_dir, epoch, step + 1, steps_per_epoch)
        bleu4 = dp.on_main(validate, decoder, prepared, cfg.data.val_split, sched, max_len)
        entry = {"epoch": epoch + 1, "train_loss": dp.mean(float(np.mean(losses))), "val_bleu4": bleu4,
                 "seconds": time.time() - t0}
        history["epochs"].append(entry)
        log.info("epoch %d: loss %.4f  val BLEU-4 %.4f  (%.1fs)", epoch + 1, entry["train_loss"], bleu4, entry["seconds"])
        if logger:
            logger.log({"val/Bleu_4": bleu4, "train/epoch_loss": entry["train_loss"], "epoch": epoch + 1},
                       step=(epoch + 1) * steps_per_epoch)
            if hasattr(logger, "log_samples"):  # e.g. W&B: a table of val images and their captions
                logger.log_samples(epoch + 1, (epoch + 1) * steps_per_epoch, decoder, prepared, cfg.data.val_split,
                                   max_len)
        improved = bleu4 > history["best_bleu4"]
        if improved:
            history["best_bleu4"], history["best_epoch"] = bleu4, epoch + 1
            save("best", epoch + 1)
        save("last", epoch + 1)
        if dp.is_main:
            save_json(history, run_dir / "history.json")
        if dp.mean(float(stop.requested)) > 0:  # the signal came during validation
            raise _interrupted(stop, run_dir, epoch + 1, 0, steps_per_epoch)
        if sched.early_stopping and epoch + 1 - history["best_epoch"] >= sched.early_stopping:
            log.info("early stopping: no better val BLEU-4 for %d epochs", sched.early_stopping)
            break
    return history


def _resume(cfg: Any, decoder: CaptionDecoder, opt, lr_sched, steps_per_epoch: int,
            ckpt_dir: Path) -> tuple[int, int, list[float], dict]:
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
