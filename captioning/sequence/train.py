"""Training loop shared by the sequence tasks: Adam, gradient-norm clipping, periodic test metrics (the
optimizer and the step are every app's: captioning/nn/optim.py, captioning/nn/step.py).

``SequenceTrainConfig`` is the loop's declared options (the `train` section of configs/sequence/*.yaml);
``SequenceRunConfig`` the whole of configs/sequence/sequence.yaml (captioning-sequence-tasks).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from captioning.nn.optim import make_optimizer
from captioning.nn.step import NonFiniteLoss, optimizer_step
from captioning.utils.io import atomic_save_torch, save_json
from captioning.utils.schema import option, plain
from captioning.sequence.models import SequenceCellConfig, SequenceModelConfig
from captioning.sequence.problems import Problem, build_problem, seeded_generator

LOWER_IS_BETTER = ("mse", "loss")


@dataclass
class SequenceTrainConfig:
    """The `train` section: how a sequence model is trained and when it stops."""

    batch_size: int = option(64, "examples per step (fresh sequences, or drawn from the training set)", ge=1)
    lr: float = option(0.003, "Adam's learning rate", gt=0.0)
    max_steps: int = option(3000, "training steps at most", ge=1)
    eval_every: int = option(250, "steps between test metrics", ge=1)
    clip: float | None = option(1.0, "max gradient norm; null = no clipping", gt=0.0)
    stop_metric: str | None = option(None, "stop early once this test metric (mse, accuracy, exact_greedy, ...) "
                                     "reaches stop_value; null = never")
    stop_value: float | None = option(None, "the value that stops the run: at or below it for mse, at or above it "
                                      "for accuracies")
    beam_size: int = option(0, "seq2seq: also report beam search of this width at the end; 0 or 1 = greedy only",
                            ge=0)


@dataclass
class SequenceRunConfig:
    """configs/sequence/sequence.yaml: one task, one cell (captioning-sequence-tasks)."""

    seed: int = option(0, "seeds the data, the weights and the batch order", ge=0)
    threads: int | None = option(None, "torch CPU threads for the whole process; null = torch's default", ge=1)
    seq_len: int = option(100, "length T of the adding problem (task=adding reads it as task.seq_len)", ge=4)
    task: Any = option(None, "the task and its options (configs/sequence/task; captioning/sequence/problems.py)")
    cell: SequenceCellConfig = option(SequenceCellConfig(), "the recurrent cell (configs/sequence/cell)")
    model: SequenceModelConfig = option(SequenceModelConfig(), "the sizes around the cell")
    train: SequenceTrainConfig = option(SequenceTrainConfig(), "the training loop")
    examples: int = option(5, "seq2seq: test sentences reported with their decoding", ge=0)
    out_dir: str = option("runs/sequence", "result.json and model.pt (the yaml names a folder per task, cell and "
                          "time)")


def loop_fit_problems(train: Any, prefix: str = "train") -> list[str]:
    """One line per pair of loop options that cannot work together (the ranges are ``problems``')."""
    values = {**plain(SequenceTrainConfig()), **plain(train)}
    metric, value = values["stop_metric"], values["stop_value"]
    if (metric is None) != (value is None):
        return [f"{prefix}.stop_metric and {prefix}.stop_value go together (both set, or both null), "
                f"got {metric!r} and {value!r}"]
    return []


def reached(metrics: Mapping[str, float], metric: str | None, value: float | None) -> bool:
    """True when ``metrics[metric]`` has crossed ``value`` (below for mse/loss, above otherwise)."""
    if metric is None or value is None:
        return False
    if metric not in metrics:
        raise ValueError(f"stop_metric {metric!r} is not one of this task's metrics {sorted(metrics)}")
    return metrics[metric] <= value if metric in LOWER_IS_BETTER else metrics[metric] >= value


def train_sequence_model(problem: Problem, model: nn.Module, cfg: SequenceTrainConfig, generator: torch.Generator,
                         on_eval: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Train ``model`` on ``problem`` for up to ``cfg.max_steps``; returns history and final metrics."""
    opt = make_optimizer(model.parameters(), "adam", cfg.lr)  # torch's default implementation, as the results used
    history, start, step = [], time.perf_counter(), 0
    running = 0.0
    for step in range(1, cfg.max_steps + 1):
        model.train()
        loss = problem.loss(model, problem.train_batch(cfg.batch_size, generator))
        try:
            running += optimizer_step(loss, opt, model.parameters(), cfg.clip)
        except NonFiniteLoss as e:
            raise FloatingPointError(f"training loss became {e.value} at step {step}: lower lr or set clip") from None
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            row = {"step": step, "train_loss": running / (step - (history[-1]["step"] if history else 0)),
                   "seconds": time.perf_counter() - start, **problem.evaluate(model)}
            running = 0.0
            history.append(row)
            if on_eval:
                on_eval(row)
            if reached(row, cfg.stop_metric, cfg.stop_value):
                break
    final = problem.evaluate(model, beam_size=cfg.beam_size)
    return {"task": problem.name, "steps": step, "seconds": time.perf_counter() - start,
            "final": final, "baseline": problem.baseline, "history": history}


def run_task(cfg: SequenceRunConfig, run_dir: str | Path | None = None,
             on_eval: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Build ``cfg.task`` and a ``cfg.cell`` model, train it, and (if ``run_dir``) save result + weights.

    ``cfg`` is the typed configs/sequence/sequence.yaml (``captioning.sequence.config.check`` checks and
    builds it). Returns ``train_sequence_model``'s result with the config and, for seq2seq tasks, a few
    decoded test examples.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    problem = build_problem(cfg.task)
    generator = seeded_generator(cfg.seed)
    model = problem.build_model(cfg.cell, cfg.model)
    result = train_sequence_model(problem, model, cfg.train, generator, on_eval)
    saved = dataclasses.asdict(cfg)
    result["config"] = saved
    if problem.kind == "seq2seq":
        result["examples"] = problem.examples(model, cfg.examples)
    if run_dir is not None:
        save_json(result, Path(run_dir) / "result.json")
        atomic_save_torch({"model": model.state_dict(), "config": saved}, Path(run_dir) / "model.pt")
    return result
