"""Training loop shared by the sequence tasks: Adam, gradient-norm clipping, periodic test metrics."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from captioning.utils.io import atomic_save_torch, save_json
from captioning.sequence.problems import Problem, build_problem, seeded_generator

LOWER_IS_BETTER = ("mse", "loss")


def reached(metrics: Mapping[str, float], metric: str | None, value: float | None) -> bool:
    """True when ``metrics[metric]`` has crossed ``value`` (below for mse/loss, above otherwise)."""
    if metric is None or value is None:
        return False
    if metric not in metrics:
        raise ValueError(f"stop_metric {metric!r} is not one of this task's metrics {sorted(metrics)}")
    return metrics[metric] <= value if metric in LOWER_IS_BETTER else metrics[metric] >= value


def train(problem: Problem, model: nn.Module, cfg: Mapping[str, Any], generator: torch.Generator,
          on_eval: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Train ``model`` on ``problem`` for up to ``cfg.max_steps``; returns history and final metrics.

    ``cfg`` keys: batch_size, lr, max_steps, eval_every, clip (max gradient norm; null = none),
    stop_metric / stop_value (stop early once the test metric crosses the value; null = never),
    beam_size (seq2seq only: also report beam search at the end).
    """
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    history, start, step = [], time.perf_counter(), 0
    running = 0.0
    for step in range(1, cfg["max_steps"] + 1):
        model.train()
        loss = problem.loss(model, problem.train_batch(cfg["batch_size"], generator))
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"training loss became {loss.item()} at step {step}: lower lr or set clip")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.get("clip"):
            nn.utils.clip_grad_norm_(model.parameters(), cfg["clip"])
        opt.step()
        running += loss.item()
        if step % cfg["eval_every"] == 0 or step == cfg["max_steps"]:
            row = {"step": step, "train_loss": running / (step - (history[-1]["step"] if history else 0)),
                   "seconds": time.perf_counter() - start, **problem.evaluate(model)}
            running = 0.0
            history.append(row)
            if on_eval:
                on_eval(row)
            if reached(row, cfg.get("stop_metric"), cfg.get("stop_value")):
                break
    final = problem.evaluate(model, beam_size=cfg.get("beam_size", 0))
    return {"task": problem.name, "steps": step, "seconds": time.perf_counter() - start,
            "final": final, "baseline": problem.baseline, "history": history}


def run_task(cfg: Mapping[str, Any], run_dir: str | Path | None = None,
             on_eval: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Build ``cfg.task`` and a ``cfg.cell`` model, train it, and (if ``run_dir``) save result + weights.

    ``cfg`` is the plain-dict form of configs/sequence/sequence.yaml. Returns ``train``'s result with
    the task's config and, for seq2seq tasks, a few decoded test examples.
    """
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    problem = build_problem(cfg["task"]["name"], cfg["task"])
    generator = seeded_generator(cfg["seed"])
    cell = dict(cfg["cell"])
    model = problem.build_model(cell.pop("name"), {**cfg["model"], **cell})
    result = train(problem, model, cfg["train"], generator, on_eval)
    result["config"] = dict(cfg)
    if problem.kind == "seq2seq":
        result["examples"] = problem.examples(model, cfg.get("examples", 5))
    if run_dir is not None:
        save_json(result, Path(run_dir) / "result.json")
        atomic_save_torch({"model": model.state_dict(), "config": dict(cfg)}, Path(run_dir) / "model.pt")
    return result
