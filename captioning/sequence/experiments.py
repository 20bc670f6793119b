"""The long-term-dependency experiment: the adding problem as T grows, and how far back gradients reach.

``length_sweep(cfg)`` trains every variant (a cell plus its settings) on the adding problem at every
length, and probes ||d loss_T / d h_{T-k}|| of the models of one length at initialisation and after
training. ``write_report`` turns the result into a markdown page, a json file and a log-scale PNG.
``SweepConfig`` declares the options (configs/sequence/long_term_dependency.yaml).
"""

from __future__ import annotations

import copy
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from captioning.nn.cells import BACKENDS, CELLS, LSTM_INITS
from captioning.utils.io import atomic_save_bytes, atomic_write, save_json
from captioning.utils.schema import option, plain, problems, refuse
from captioning.sequence import tasks
from captioning.sequence.gradients import model_gradient_norms
from captioning.sequence.models import SequenceCellConfig, SequenceModelConfig
from captioning.sequence.problems import AddingOptions, AddingTask, adding, seeded_generator
from captioning.sequence.train import SequenceTrainConfig, loop_fit_problems, train_sequence_model

FIGURE = "long_term_dependency_gradients.png"


@dataclass
class VariantConfig:
    """One entry of `variants`: a named cell and its options (the keys of configs/sequence/cell/*.yaml)."""

    name: str = option("lstm", "the variant's label in the table and the figure (distinct)")
    cell: str = option("lstm", "the recurrent cell", choices=tuple(CELLS))
    lstm_init: str = option("torch", "LSTM gate-bias init: torch | forget_bias | chrono (SequenceCellConfig)",
                            choices=LSTM_INITS)
    forget_bias: float = option(1.0, "the forget-gate bias of lstm_init=forget_bias")
    t_max: int | None = option(None, "chrono's longest dependency; null = the sequence length", ge=2)


@dataclass
class SweepModelConfig:
    """The `model` section of the sweep: the sizes every variant shares, and the training backend."""

    hidden_size: int = option(32, "units per recurrent layer", ge=1)
    num_layers: int = option(1, "stacked recurrent layers", ge=1)
    backend: str = option("fused", "training: fused (torch's kernel) | scratch (our cells); the gradient probe "
                          "unrolls the same weights step by step either way", choices=BACKENDS)


@dataclass
class ProbeConfig:
    """The gradient-norm probe ||dL_T / dh_(T-k)||."""

    train_len: int = option(100, "probe the models trained at this length (one of lengths)", ge=4)
    length: int = option(300, "probe sequences' length: k = 0 .. length", ge=4)
    n: int = option(32, "probe sequences averaged", ge=1)


@dataclass
class SweepConfig:
    """configs/sequence/long_term_dependency.yaml (scripts/long_term_dependency.py)."""

    seed: int = option(0, "seeds the data, the weights and the batch order of every run", ge=0)
    threads: int | None = option(None, "torch CPU threads for the whole process; null = torch's default", ge=1)
    lengths: list[int] = option([10, 50, 100, 200], "sequence lengths T of the adding problem (each >= 4)")
    variants: list[VariantConfig] = option([VariantConfig()], "the cells compared, each trained at every length")
    task: AddingOptions = option(AddingOptions(), "the adding problem (its length comes from lengths)")
    model: SweepModelConfig = option(SweepModelConfig(), "the sizes every variant shares")
    train: SequenceTrainConfig = option(SequenceTrainConfig(), "the training loop of every run")
    solved_fraction: float = option(0.05, "a run counts as solved when its test MSE <= this fraction of the "
                                    "baseline's", gt=0.0, le=1.0)
    probe: ProbeConfig = option(ProbeConfig(), "the gradient-norm probe")
    docs_dir: str | None = option("docs", "where the page and figure also go (relative: to the repository "
                                  "root); null = only the run directory")
    out_dir: str = option("runs/long_term_dependency", "the run directory (the yaml adds a time stamp)")


def sweep_fit_problems(train: Any, lengths: Any, variants: Any, probe: Any) -> list[str]:
    """One line per sweep value that does not fit the others (each variant's own options included), from a
    sweep config's ``train``, ``lengths``, ``variants`` and ``probe`` nodes (plain values, defaults filled in)."""
    found = loop_fit_problems(train if isinstance(train, dict) else {})
    for i, v in enumerate(variants if isinstance(variants, list) else []):
        found += problems(VariantConfig, v, f"variants.{i}") if isinstance(v, dict) else [
            f"variants.{i} must be a mapping like {{name: lstm-chrono, cell: lstm, lstm_init: chrono}}, got {v!r}"]
    names = [v["name"] for v in variants if isinstance(v, dict) and "name" in v]
    if len(set(names)) != len(names):
        found.append(f"variants: names must be distinct, got {names}")
    if isinstance(lengths, list):
        short = [T for T in lengths if not isinstance(T, int) or T < 4]
        if short:
            found.append(f"lengths must all be integers >= 4, got {short}")
        probe = {**plain(ProbeConfig()), **(probe if isinstance(probe, dict) else {})}
        if probe["train_len"] not in lengths:
            found.append(f"probe.train_len {probe['train_len']} must be one of lengths {lengths}")
    return found


def probe_gradients(model: nn.Module, probe: ProbeConfig, seed: int) -> list[float]:
    """Gradient norms for k = 0 .. probe.length on fresh adding sequences, in float64 (no underflow)."""
    x, y = tasks.adding_problem(probe.n, probe.length, torch.Generator().manual_seed(seed + 2))
    model = copy.deepcopy(model).double()
    return model_gradient_norms(model, x.double(), y.double()).tolist()


def variant_cell(variant: VariantConfig, model: SweepModelConfig) -> SequenceCellConfig:
    """The cell options of one variant, on the sweep's backend."""
    return SequenceCellConfig(name=variant.cell, backend=model.backend, lstm_init=variant.lstm_init,
                              forget_bias=variant.forget_bias, t_max=variant.t_max)


def train_one(variant: VariantConfig, seq_len: int, cfg: SweepConfig) -> tuple[dict, nn.Module, nn.Module]:
    """Train one variant at one length: (table row, model at init, trained model)."""
    problem = adding(AddingTask(placement=cfg.task.placement, tolerance=cfg.task.tolerance, n_test=cfg.task.n_test,
                                seq_len=seq_len, seed=cfg.seed))
    generator = seeded_generator(cfg.seed)
    sizes = SequenceModelConfig(hidden_size=cfg.model.hidden_size, num_layers=cfg.model.num_layers)
    model = problem.build_model(variant_cell(variant, cfg.model), sizes)
    at_init = copy.deepcopy(model)
    result = train_sequence_model(problem, model, cfg.train, generator)
    final, base = result["final"], problem.baseline
    row = {"variant": variant.name, "cell": variant.cell, "seq_len": seq_len, "mse": final["mse"],
           "accuracy": final["accuracy"], "baseline_mse": base["mse"], "baseline_accuracy": base["accuracy"],
           "mse_ratio": final["mse"] / base["mse"], "solved": final["mse"] <= cfg.solved_fraction * base["mse"],
           "steps": result["steps"], "seconds": result["seconds"]}
    return row, at_init, model


def length_sweep(cfg: SweepConfig, progress: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Rows for every (variant, length) and gradient curves {variant: {init, trained}} at probe.train_len.

    Every bad value is named (ValueError) before the first run.
    """
    values = plain(cfg)
    found = [p.removeprefix(".") for p in problems(SweepConfig, values, "")]
    refuse(found + sweep_fit_problems(values["train"], values["lengths"], values["variants"], values["probe"]))
    rows, curves = [], {}
    for variant in cfg.variants:
        for seq_len in cfg.lengths:
            row, at_init, trained = train_one(variant, seq_len, cfg)
            rows.append(row)
            if progress:
                progress(row)
            if seq_len == cfg.probe.train_len:
                curves[variant.name] = {stage: probe_gradients(m, cfg.probe, cfg.seed)
                                        for stage, m in (("init", at_init), ("trained", trained))}
    return {"rows": rows, "curves": curves, "baseline": tasks.adding_baseline(cfg.task.tolerance)}


# --- outputs -----------------------------------------------------------------------------------------


def plot_gradient_norms(curves: Mapping[str, Mapping[str, list[float]]], path: str | Path, train_len: int) -> None:
    """Two log-scale panels (at init, after training): gradient norm against k, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, stage in zip(axes, ("init", "trained")):
        for name, c in curves.items():
            ys = [v if v > 0 else float("nan") for v in c[stage]]  # log scale: exact zeros are not drawn
            ax.semilogy(range(len(ys)), ys, label=name)
        title = "at initialisation" if stage == "init" else f"after training on the adding problem, T={train_len}"
        ax.set(title=title, xlabel="k (steps before the last)")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel(r"$\|\partial L_T / \partial h_{T-k}\|$ (batch mean)")
    axes[0].legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_save_bytes(buf.getvalue(), path)


def _pivot(rows: list[dict], lengths: list[int], baseline: Mapping[str, float]) -> list[str]:
    """Table: one row per length, one column per variant: 'MSE (accuracy)'."""
    names = list(dict.fromkeys(r["variant"] for r in rows))
    cell = {(r["variant"], r["seq_len"]): r for r in rows}
    lines = ["| T | baseline | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for T in lengths:
        entries = []
        for n in names:
            r = cell[(n, T)]
            mark = "**" if r["solved"] else ""
            entries.append(f"{mark}{r['mse']:.4f}{mark} ({100 * r['accuracy']:.0f}%)")
        lines.append(f"| {T} | {baseline['mse']:.4f} ({100 * baseline['accuracy']:.0f}%) | " + " | ".join(entries) + " |")
    return lines


def _findings(rows: list[dict]) -> list[str]:
    """One bullet per variant: the lengths it solved, and how close to the baseline the others stayed."""
    out = []
    for name in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == name]
        solved = [r["seq_len"] for r in mine if r["solved"]]
        failed = [r for r in mine if not r["solved"]]
        text = f"- {name}: solved T = {', '.join(map(str, solved))}" if solved else f"- {name}: solved no length"
        if failed:
            lo, hi = min(r["mse_ratio"] for r in failed), max(r["mse_ratio"] for r in failed)
            text += (f"; at T = {', '.join(str(r['seq_len']) for r in failed)} the test MSE ended at "
                     f"{lo:.2f}-{hi:.2f} x the baseline's")
        out.append(text + ".")
    return out


def _at(curve: list[float], k: int) -> str:
    return f"{curve[k]:.1e}" if k < len(curve) else "-"


def _variant_text(v: VariantConfig) -> str:
    """'name: cell=..., option=...' with the options that differ from the declared defaults."""
    default = plain(VariantConfig())
    opts = [f"cell={v.cell}"] + [f"{k}={x}" for k, x in plain(v).items() if k not in ("name", "cell") and (
        x != default[k] or (k == "forget_bias" and v.lstm_init == "forget_bias"))]
    return f"{v.name}: " + ", ".join(opts)


def markdown_report(result: Mapping[str, Any], cfg: SweepConfig, figure: str, command: str) -> str:
    """The page: setup, MSE/accuracy table, per-run details, gradient figure and figures at a few k."""
    rows, curves, base = result["rows"], result["curves"], result["baseline"]
    t, m, task = cfg.train, cfg.model, cfg.task
    variants = "; ".join(_variant_text(v) for v in cfg.variants)
    out = [
        "# The long-term-dependency problem, measured",
        "",
        f"Generated by `{command}`. One seed ({cfg.seed}); CPU.",
        "",
        "**Task.** The adding problem (Hochreiter & Schmidhuber 1997): a sequence of T (value, marker) pairs,",
        "values uniform in [0, 1], exactly two markers; the target, read from the last hidden state, is the",
        f"sum of the two marked values. Marker placement `{task.placement}`"
        + (" (both in the first half, the first within the first 10 steps, so both values must be held for at "
           "least T/2 steps)." if task.placement == "hochreiter" else "."),
        f"Accuracy = share of test sequences with |error| < {task.tolerance}; test set of {task.n_test}",
        "sequences. Baseline: always predict the mean, 1: MSE = Var(U1 + U2) = 1/6 ~ 0.1667, accuracy",
        f"{100 * base['accuracy']:.1f}%.",
        "",
        f"**Models.** Variants: {variants}. One layer, hidden size {m.hidden_size}, linear read-out of the",
        f"final hidden state; Adam lr {t.lr}, batch {t.batch_size} fresh sequences per step, gradient-norm",
        f"clip {t.clip}, at most {t.max_steps} steps, stopping early once test {t.stop_metric} <= "
        f"{t.stop_value}. **Bold** = solved (test MSE <= {cfg.solved_fraction} x baseline).",
        "",
        "## Test MSE (accuracy) against sequence length",
        "",
        *_pivot(rows, list(cfg.lengths), base),
        "",
        *_findings(rows),
        "",
        "| variant | T | MSE | MSE / baseline | accuracy | steps | seconds |",
        "|---|---|---|---|---|---|---|",
        *[f"| {r['variant']} | {r['seq_len']} | {r['mse']:.4f} | {r['mse_ratio']:.3f} | {100 * r['accuracy']:.1f}% | "
          f"{r['steps']} | {r['seconds']:.0f} |" for r in rows],
        "",
        "## How far back the gradient reaches",
        "",
        f"Norm of d L_T / d h_(T-k) (mean over {cfg.probe.n} adding sequences of length "
        f"{cfg.probe.length}, float64), for the models of the T={cfg.probe.train_len} runs, before and",
        "after training. For the LSTM, h is the hidden output with the cell state c held apart.",
        "",
        f"![gradient norm against k, before and after training](figures/{Path(figure).name})",
        "",
        f"Drawn by `{command}` with the tables of this page.",
        "",
        "| variant | stage | k=0 | k=10 | k=50 | k=100 | k=200 | k=300 |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {n} | {s} | " + " | ".join(_at(c[s], k) for k in (0, 10, 50, 100, 200, 300)) + " |"
          for n, c in curves.items() for s in ("init", "trained")],
        "",
    ]
    return "\n".join(out)


def write_report(result: Mapping[str, Any], cfg: SweepConfig, run_dir: str | Path,
                 docs_dir: str | Path | None, command: str) -> list[Path]:
    """long_term_dependency.md + figures/<png> into run_dir and docs_dir (if any); the json into run_dir."""
    written = []
    for d in [Path(run_dir)] + ([Path(docs_dir)] if docs_dir else []):
        fig = d / "figures" / FIGURE
        plot_gradient_norms(result["curves"], fig, cfg.probe.train_len)
        with atomic_write(d / "long_term_dependency.md") as f:
            f.write(markdown_report(result, cfg, str(fig), command))
        written += [d / "long_term_dependency.md", fig]
    save_json(_finite(result), Path(run_dir) / "long_term_dependency.json")
    return written + [Path(run_dir) / "long_term_dependency.json"]


def _finite(obj: Any) -> Any:
    """Json-safe copy: non-finite floats become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
