"""Training loop for the character models: truncated BPTT over contiguous streams for the recurrent cells
(as char-rnn), random windows of the block size for the transformer (as nanoGPT).

The loop is nanoGPT-shaped: one function you can read top to bottom. A time budget (``max_seconds``)
stops it, and the learning-rate schedule follows whichever of steps or seconds runs out first, so a
short run still ends with a decayed learning rate. Validation is captioning/lm/evaluate.py's, the same
for every model: windows of ``eval_window`` characters, each from an empty context, plus the
carried-state measure of the RNNs at the end.
"""

from __future__ import annotations

import logging
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
from captioning.nn.optim import OPTIMIZERS, decay_groups, learning_rate, make_optimizer, set_learning_rate
from captioning.nn.step import autocast, optimizer_step
from captioning.utils.io import atomic_save_torch, save_json
from captioning.utils.precision import PRECISIONS, training_precision
from captioning.utils.schema import option, plain, problems
from captioning.lm.corpus import Corpus, StreamBatches, random_windows
from captioning.lm.evaluate import evaluate
from captioning.lm.model import LM, load_checkpoint
from captioning.lm.transformer import new_name

log = logging.getLogger(__name__)
CHECKPOINT = "ckpt.pt"


@dataclass
class TrainConfig:
    """The `schedule` group (configs/lm/schedule/*.yaml): batches, optimiser, learning rate, budgets, validation."""

    batch_size: int = option(32, "the rows of a batch: parallel streams of the text for the recurrent cells, "
                             "random windows for a transformer", ge=1)
    seq_len: int = option(64, "truncated-BPTT length of the recurrent cells: gradients flow back this many "
                          "characters (a transformer trains on windows of its cell.block_size)", ge=1)
    optimizer: str = option("adam", "adam | adamw (decoupled weight decay)", choices=OPTIMIZERS)
    lr: float = option(2e-3, "peak learning rate (after warmup)", gt=0.0)
    min_lr: float = option(1e-4, "where the cosine decay ends; at most lr", ge=0.0)
    warmup_steps: int = option(0, "steps of linear warmup to lr", ge=0)
    weight_decay: float = option(0.0, "decay of the weight matrices, never of biases (adamw decouples it)", ge=0.0)
    betas: list[float] = option([0.9, 0.99], "Adam's two moment decay rates, each in [0, 1)")
    grad_clip: float = option(5.0, "global gradient-norm clip, as char-rnn", gt=0.0)
    precision: str = option("fp32", "fp32 | bf16 (autocast the forward's matrix products to bfloat16; weights and "
                            "optimizer stay fp32) | auto (bf16 where the CPU multiplies bfloat16 natively, else fp32)",
                            choices=PRECISIONS)
    max_steps: int = option(10_000, "training steps", ge=1)
    max_seconds: float | None = option(None, "time budget in seconds; null = none. Whichever of steps and seconds "
                                       "ends first stops the run, and the learning rate decays over it", gt=0.0)
    eval_every: int = option(250, "steps between validation checks", ge=1)
    eval_chars: int | None = option(20_000, "a fixed prefix of the validation text for the periodic checks; "
                                    "null = all of it", ge=1)
    final_eval_chars: int | None = option(None, "validation characters read at the end; null = all of them", ge=1)
    eval_window: int = option(64, "validation windows: each scored from an empty context (zero state, no earlier "
                              "text), the measure every model shares; at most a transformer's block_size", ge=1)
    eval_batch_size: int = option(32, "validation windows scored at once; also the streams of the carried measure",
                                  ge=1)
    eval_seq_len: int = option(256, "chunk length of the recurrent cells' carried-state measure at the end (the "
                               "state runs through each stream)", ge=1)
    log_every: int = option(50, "steps between progress-bar updates of the mean loss", ge=1)
    checkpoint_every: int = option(1000, "steps between checkpoints (one is always written at the end)", ge=1)


def schedule_fit_problems(schedule: Any, prefix: str = "schedule") -> list[str]:
    """One line per pair of schedule options that cannot work together (the ranges are ``problems``')."""
    values = {**plain(TrainConfig()), **plain(schedule)}
    found, betas, lr, min_lr = [], values["betas"], values["lr"], values["min_lr"]
    if isinstance(betas, (list, tuple)) and (len(betas) != 2 or not all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
        found.append(f"{prefix}.betas must be two numbers in [0, 1), got {list(betas)!r}")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lr, min_lr))
    if numbers and min_lr > lr:
        found.append(f"{prefix}.min_lr must be <= lr ({lr}), got {min_lr}")
    return found


def schedule_problems(schedule: Any, prefix: str = "schedule") -> list[str]:
    """One line per bad value of a schedule: declared ranges and choices, and how the options fit together."""
    return problems(TrainConfig, schedule, prefix) + schedule_fit_problems(schedule, prefix)


def check_schedule(cfg: TrainConfig) -> None:
    """Raise ValueError naming every bad value of ``cfg`` at once."""
    found = schedule_problems(cfg)
    if found:
        raise ValueError("invalid schedule:\n  " + "\n  ".join(found))


@dataclass
class TrainResult:
    """What a run reached: final validation losses in nats/char, steps, time, throughput, history."""

    val_loss: float  # windows of eval_window characters, each from an empty context (every model)
    steps: int
    seconds: float
    train_chars_per_s: float
    checkpoint: str
    history: list[dict] = field(default_factory=list)
    precision: str = "fp32"  # what the steps ran in (``auto`` resolved)
    val_loss_carried: float | None = None  # the state carried through each stream (recurrent cells only)


def lr_at(progress: float, step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay from ``lr`` to ``min_lr`` as progress goes 0 -> 1."""
    return learning_rate(cfg.lr, step, progress, cfg.warmup_steps, "cosine", floor=cfg.min_lr)


def char_lm_optimizer(model: nn.Module, cfg: TrainConfig) -> Optimizer:
    """Adam or AdamW; weight decay only on matrices, never on biases (as nanoGPT)."""
    # torch's default (for-loop) implementation, not the fused kernel: the results in docs/ used it
    return make_optimizer(decay_groups(model, cfg.weight_decay), cfg.optimizer, cfg.lr, betas=tuple(cfg.betas))


@dataclass
class RunState:
    """Where a run is: saved in checkpoints so that a resumed run continues exactly."""

    step: int = 0
    seconds: float = 0.0  # wall time of the training loop so far (steps and periodic validation)
    state: Any = None  # the recurrent state carried into the next chunk (always None for a transformer)
    history: list[dict] = field(default_factory=list)


def _save(path: Path, model: LM, corpus: Corpus, opt: Optimizer, cfg: TrainConfig, run: RunState) -> None:
    atomic_save_torch({"model": model.state_dict(), "model_config": model.config,
                       "vocab": corpus.vocab.state_dict(), "optimizer": opt.state_dict(),
                       "train_config": asdict(cfg), "run": asdict(run), "rng": torch.get_rng_state()}, path)


def _resume(path: Path, model: LM, opt: Optimizer, cfg: TrainConfig) -> RunState:
    ckpt = load_checkpoint(path)
    old = ckpt["train_config"]
    if (old["batch_size"], old["seq_len"]) != (cfg.batch_size, cfg.seq_len):
        raise ValueError(f"cannot resume {path}: it was trained with batch_size={old['batch_size']}, "
                         f"seq_len={old['seq_len']}; use the same values or start a new out_dir")
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(optimizer_state_in_order(ckpt["optimizer"], list(ckpt["model"]), model))
    torch.set_rng_state(ckpt["rng"])
    run = RunState(**ckpt["run"])
    run.history = [h for h in run.history if not h.get("final")]  # the new run ends with its own
    log.info("resumed %s at step %d (%.1f s)", path, run.step, run.seconds)
    return run


def optimizer_state_in_order(state: dict, saved_names: list[str], model: LM) -> dict:
    """``char_lm_optimizer``'s ``state`` as saved by a model whose parameters came in the order of
    ``saved_names`` (a checkpoint's state-dict keys), its entries reordered to ``model``'s parameter order.
    A CharTransformer saved before its block was shared (2026-12-06) held each block's layer norms between
    its attention and its MLP; the shared block holds them first."""
    names = [n for n, _ in model.named_parameters()]  # a tied output weight is listed once, under its first name
    params = dict(model.named_parameters())
    saved = [k for k in (new_name(k) for k in saved_names) if k in params]
    if saved == names:
        return state
    # the two groups of decay_groups: the matrices, then the vectors, each in the parameters' order
    flat = [[n for n in order if params[n].dim() >= 2] + [n for n in order if params[n].dim() < 2]
            for order in (saved, names)]
    where = {n: i for i, n in enumerate(flat[0])}
    entries = {i: state["state"][where[n]] for i, n in enumerate(flat[1]) if where[n] in state["state"]}
    return {**state, "state": entries}


def _batch(model: LM, batches: StreamBatches | None, corpus: Corpus, run: RunState,
           cfg: TrainConfig) -> tuple[Tensor, Tensor]:
    """The next chunk of the streams for a recurrent model (a new epoch restarts them from zero state);
    random windows of the block size for a transformer, which has nothing to carry."""
    if model.context is not None:
        return random_windows(corpus.train, cfg.batch_size, model.context)
    chunk = run.step % len(batches)
    if chunk == 0:
        run.state = None  # a new epoch starts every stream from its beginning
    return batches[chunk]


def _train_step(model: LM, opt: Optimizer, x: Tensor, y: Tensor, state: Any, cfg: TrainConfig,
                precision: str) -> tuple[float, Any]:
    """One step on a chunk (or windows); returns the loss and the detached state for the next chunk."""
    with autocast(x.device.type, precision):
        logits, state = model(x, state)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
    return optimizer_step(loss, opt, model.parameters(), cfg.grad_clip), detach_state(state)  # keep the state, cut its history


def _set_lr(opt: Optimizer, run: RunState, cfg: TrainConfig) -> float:
    """The learning rate for this step; progress is the larger of the step and time fractions used."""
    progress = max(run.step / cfg.max_steps, run.seconds / cfg.max_seconds if cfg.max_seconds else 0.0)
    lr = lr_at(progress, run.step, cfg)
    set_learning_rate(opt, lr)
    return lr


def train_char_lm(model: LM, corpus: Corpus, cfg: TrainConfig, out_dir: str | Path,
                  resume: bool = False) -> TrainResult:
    """Train the character model ``model`` on ``corpus.train``; checkpoints and history.json go to ``out_dir``.

    Every bad value of ``cfg`` is named (ValueError) before any work; precision ``auto`` is resolved here.
    """
    check_schedule(cfg)
    out_dir, ckpt_path = Path(out_dir), Path(out_dir) / CHECKPOINT
    precision = training_precision(cfg.precision)  # auto -> bf16 where the CPU has it natively
    recurrent = model.context is None
    if not recurrent and cfg.eval_window > model.context:
        raise ValueError(f"schedule.eval_window ({cfg.eval_window}) exceeds the transformer's block_size "
                         f"({model.context}): lower the one or raise the other")
    batches = StreamBatches(corpus.train, cfg.batch_size, cfg.seq_len) if recurrent else None
    val_subset = corpus.val[: cfg.eval_chars + 1] if cfg.eval_chars else corpus.val
    opt = char_lm_optimizer(model, cfg)
    run = _resume(ckpt_path, model, opt, cfg) if resume and ckpt_path.exists() else RunState()
    model.train()
    bar = tqdm(total=cfg.max_steps, initial=run.step, disable=not sys.stderr.isatty(), desc="train", unit="step")
    t0, train_seconds, chars, losses = time.perf_counter() - run.seconds, 0.0, 0, []
    while run.step < cfg.max_steps and (cfg.max_seconds is None or run.seconds < cfg.max_seconds):
        lr = _set_lr(opt, run, cfg)
        t_step = time.perf_counter()
        x, y = _batch(model, batches, corpus, run, cfg)
        loss, run.state = _train_step(model, opt, x, y, run.state, cfg, precision)
        train_seconds, chars = train_seconds + time.perf_counter() - t_step, chars + y.numel()
        run.step, run.seconds = run.step + 1, time.perf_counter() - t0
        losses.append(loss)
        bar.update()
        if run.step % cfg.log_every == 0:
            bar.set_postfix(loss=f"{sum(losses) / len(losses):.3f}", lr=f"{lr:.2e}")
        if run.step % cfg.eval_every == 0:
            val = evaluate(model, val_subset, cfg.eval_window, cfg.eval_batch_size)["val_loss"]
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
    final = evaluate(model, val_data, cfg.eval_window, cfg.eval_batch_size, cfg.eval_seq_len)
    run.history.append({"step": run.step, "seconds": round(run.seconds, 2), **final, "final": True})
    log.info("done: %d steps in %.1fs, validation loss %s nats/char", run.step, run.seconds,
             ", ".join(f"{k} {v:.4f}" for k, v in final.items()))
    _save(ckpt_path, model, corpus, opt, cfg, run)
    save_json(run.history, out_dir / "history.json")
    return TrainResult(final["val_loss"], run.step, run.seconds, chars / train_seconds if train_seconds else 0.0,
                       str(ckpt_path), run.history, precision, final.get("val_loss_carried"))
