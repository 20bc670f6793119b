"""Training loop for the character model: truncated BPTT over contiguous streams (as char-rnn).

The loop is nanoGPT-shaped: one function you can read top to bottom. A time budget (``max_seconds``)
stops it, and the learning-rate schedule follows whichever of steps or seconds runs out first, so a
short run still ends with a decayed learning rate.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from tqdm.auto import tqdm

from captioning.nn.bptt import detach_state
from captioning.utils.io import atomic_save_torch, save_json
from captioning.utils.precision import training_precision
from captioning.lm.corpus import Corpus, StreamBatches
from captioning.lm.model import CharRNN, load_checkpoint

log = logging.getLogger(__name__)
CHECKPOINT = "ckpt.pt"


@dataclass
class TrainConfig:
    """Schedule and optimisation settings (configs/lm/schedule/*.yaml)."""

    batch_size: int = 32
    seq_len: int = 64
    optimizer: str = "adam"  # "adam" or "adamw"
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup_steps: int = 0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 5.0
    precision: str = "fp32"  # "bf16": autocast matrix products to bfloat16; "auto": bf16 where the CPU has it
    max_steps: int = 10_000
    max_seconds: float | None = None
    eval_every: int = 250
    eval_chars: int | None = 20_000  # fixed prefix of the validation text for periodic checks
    final_eval_chars: int | None = None  # None: the whole validation text
    eval_batch_size: int = 32
    eval_seq_len: int = 256
    log_every: int = 50
    checkpoint_every: int = 1000
    seed: int = 1337
    threads: int | None = None

    def __post_init__(self) -> None:
        self.precision = training_precision(self.precision)  # auto -> bf16 where the CPU has it natively
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive or null, got {self.max_seconds}")
        self.betas = tuple(self.betas)


@dataclass
class TrainResult:
    """What a run reached: final validation loss in nats/char, steps, time, throughput, history."""

    val_loss: float
    steps: int
    seconds: float
    train_chars_per_s: float
    checkpoint: str
    history: list[dict] = field(default_factory=list)


def lr_at(progress: float, step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay from ``lr`` to ``min_lr`` as progress goes 0 -> 1."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * cosine


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> Optimizer:
    """Adam or AdamW; weight decay only on matrices, never on biases (as nanoGPT)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg.lr, betas=cfg.betas)


@torch.no_grad()
def evaluate(model: CharRNN, data: Tensor, batch_size: int, seq_len: int, carry_state: bool = True) -> float:
    """Mean cross-entropy (nats per character) over ``data``, read as ``batch_size`` streams.

    With ``carry_state`` the state runs through each whole stream (char-rnn's validation); without it,
    every chunk of ``seq_len`` starts from zeros, so no prediction sees more than ``seq_len`` characters
    of context (comparable with a transformer's block size, as in nanoGPT's estimate).
    """
    was_training = model.training
    model.eval()
    batch_size = max(1, min(batch_size, (len(data) - 1) // seq_len))
    total, count, state = 0.0, 0, None
    for x, y in StreamBatches(data, batch_size, seq_len, drop_last=False):
        logits, state = model(x, state if carry_state else None)
        total += nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    return total / count


@dataclass
class RunState:
    """Where a run is: saved in checkpoints so that a resumed run continues exactly."""

    step: int = 0
    seconds: float = 0.0  # wall time of the training loop so far (steps and periodic validation)
    state: Any = None  # the recurrent state carried into the next chunk
    history: list[dict] = field(default_factory=list)


def _save(path: Path, model: CharRNN, corpus: Corpus, opt: Optimizer, cfg: TrainConfig, run: RunState) -> None:
    atomic_save_torch({"model": model.state_dict(), "model_config": model.config,
                       "vocab": corpus.vocab.state_dict(), "optimizer": opt.state_dict(),
                       "train_config": asdict(cfg), "run": asdict(run), "rng": torch.get_rng_state()}, path)


def _resume(path: Path, model: CharRNN, opt: Optimizer, cfg: TrainConfig) -> RunState:
    ckpt = load_checkpoint(path)
    old = ckpt["train_config"]
    if (old["batch_size"], old["seq_len"]) != (cfg.batch_size, cfg.seq_len):
        raise ValueError(f"cannot resume {path}: it was trained with batch_size={old['batch_size']}, "
                         f"seq_len={old['seq_len']}; use the same values or start a new out_dir")
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["rng"])
    run = RunState(**ckpt["run"])
    run.history = [h for h in run.history if not h.get("final")]  # the new run ends with its own
    log.info("resumed %s at step %d (%.1f s)", path, run.step, run.seconds)
    return run


def _train_step(model: CharRNN, opt: Optimizer, x: Tensor, y: Tensor, state: Any, cfg: TrainConfig) -> tuple[float, Any]:
    """One truncated-BPTT step on a chunk; returns the loss and the detached state for the next chunk."""
    # parameters and optimizer stay fp32; only the forward's matrix products run in bf16 if asked
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        logits, state = model(x, state)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return loss.item(), detach_state(state)  # keep the state, cut its history


def _set_lr(opt: Optimizer, run: RunState, cfg: TrainConfig) -> float:
    """The learning rate for this step; progress is the larger of the step and time fractions used."""
    progress = max(run.step / cfg.max_steps, run.seconds / cfg.max_seconds if cfg.max_seconds else 0.0)
    lr = lr_at(progress, run.step, cfg)
    for group in opt.param_groups:
        group["lr"] = lr
    return lr


def train(model: CharRNN, corpus: Corpus, cfg: TrainConfig, out_dir: str | Path, resume: bool = False) -> TrainResult:
    """Train ``model`` on ``corpus.train``; checkpoints and history.json go to ``out_dir``.

    Sets torch's thread count to ``cfg.threads`` (if given) for the whole process.
    """
    out_dir, ckpt_path = Path(out_dir), Path(out_dir) / CHECKPOINT
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    batches = StreamBatches(corpus.train, cfg.batch_size, cfg.seq_len)
    val_subset = corpus.val[: cfg.eval_chars + 1] if cfg.eval_chars else corpus.val
    opt = make_optimizer(model, cfg)
    run = _resume(ckpt_path, model, opt, cfg) if resume and ckpt_path.exists() else RunState()
    model.train()
    bar = tqdm(total=cfg.max_steps, initial=run.step, disable=not sys.stderr.isatty(), desc="train", unit="step")
    t0, train_seconds, first_step, losses = time.perf_counter() - run.seconds, 0.0, run.step, []
    while run.step < cfg.max_steps and (cfg.max_seconds is None or run.seconds < cfg.max_seconds):
        chunk = run.step % len(batches)
        if chunk == 0:
            run.state = None  # a new epoch starts every stream from its beginning
        lr = _set_lr(opt, run, cfg)
        t_step = time.perf_counter()
        loss, run.state = _train_step(model, opt, *batches[chunk], run.state, cfg)
        train_seconds += time.perf_counter() - t_step
        run.step, run.seconds = run.step + 1, time.perf_counter() - t0
        losses.append(loss)
        bar.update()
        if run.step % cfg.log_every == 0:
            bar.set_postfix(loss=f"{sum(losses) / len(losses):.3f}", lr=f"{lr:.2e}")
        if run.step % cfg.eval_every == 0:
            val = evaluate(model, val_subset, cfg.eval_batch_size, cfg.eval_seq_len)
            run.history.append({"step": run.step, "seconds": round(run.seconds, 2), "lr": lr,
                                "train_loss": sum(losses) / len(losses), "val_loss": val})
            log.info("step %d  %.1fs  train %.4f  val %.4f  lr %.2e", run.step, run.seconds,
                     run.history[-1]["train_loss"], val, lr)
            save_json(run.history, out_dir / "history.json")
            losses = []
        if run.step % cfg.checkpoint_every == 0:
            _save(ckpt_path, model, corpus, opt, cfg, run)
    bar.close()
    val_data = corpus.val[: cfg.final_eval_chars + 1] if cfg.final_eval_chars else corpus.val
    final = evaluate(model, val_data, cfg.eval_batch_size, cfg.eval_seq_len)
    run.history.append({"step": run.step, "seconds": round(run.seconds, 2), "val_loss": final, "final": True})
    log.info("done: %d steps in %.1fs, validation loss %.4f nats/char", run.step, run.seconds, final)
    _save(ckpt_path, model, corpus, opt, cfg, run)
    save_json(run.history, out_dir / "history.json")
    chars = (run.step - first_step) * cfg.batch_size * cfg.seq_len
    return TrainResult(final, run.step, run.seconds, chars / train_seconds if train_seconds else 0.0,
                       str(ckpt_path), run.history)
