"""The long-term-dependency experiment: the adding problem as T grows, and how far back gradients reach.

``length_sweep(cfg)`` trains every variant (a cell plus its settings) on the adding problem at every
length, and probes ||d loss_T / d h_{T-k}|| of the models of one length at initialisation and after
training. ``write_report`` turns the result into a markdown page, a json file and a log-scale PNG.
"""

from __future__ import annotations

import copy
import io
import math
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from captioning.utils.io import atomic_save_bytes, atomic_write, save_json
from captioning.sequence import tasks
from captioning.sequence.gradients import model_gradient_norms
from captioning.sequence.problems import adding, seeded_generator
from captioning.sequence.train import train

FIGURE = "long_term_dependency_gradients.png"


def probe_gradients(model: nn.Module, probe: Mapping[str, Any], seed: int) -> list[float]:
    """Gradient norms for k = 0 .. probe.length on fresh adding sequences, in float64 (no underflow)."""
    x, y = tasks.adding_problem(probe["n"], probe["length"], torch.Generator().manual_seed(seed + 2))
    model = copy.deepcopy(model).double()
    return model_gradient_norms(model, x.double(), y.double()).tolist()


def train_one(name: str, variant: Mapping[str, Any], seq_len: int, cfg: Mapping[str, Any]) -> tuple[dict, nn.Module, nn.Module]:
    """Train one variant at one length: (table row, model at init, trained model)."""
    problem = adding({**cfg["task"], "seq_len": seq_len, "seed": cfg["seed"]})
    generator = seeded_generator(cfg["seed"])
    model_cfg = {**cfg["model"], **{k: v for k, v in variant.items() if k not in ("name", "cell")}}
    model = problem.build_model(variant["cell"], model_cfg)
    at_init = copy.deepcopy(model)
    result = train(problem, model, cfg["train"], generator)
    final, base = result["final"], problem.baseline
    row = {"variant": name, "cell": variant["cell"], "seq_len": seq_len, "mse": final["mse"],
           "accuracy": final["accuracy"], "baseline_mse": base["mse"], "baseline_accuracy": base["accuracy"],
           "mse_ratio": final["mse"] / base["mse"], "solved": final["mse"] <= cfg["solved_fraction"] * base["mse"],
           "steps": result["steps"], "seconds": result["seconds"]}
    return row, at_init, model


def length_sweep(cfg: Mapping[str, Any], progress: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Rows for every (variant, length) and gradient curves {variant: {init, trained}} at probe.train_len."""
    if cfg["probe"]["train_len"] not in cfg["lengths"]:
        raise ValueError(f"probe.train_len {cfg['probe']['train_len']} must be one of lengths {list(cfg['lengths'])}")
    rows, curves = [], {}
    names = [v["name"] for v in cfg["variants"]]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must be distinct, got {names}")
    for variant in cfg["variants"]:
        name = variant["name"]
        for seq_len in cfg["lengths"]:
            row, at_init, trained = train_one(name, variant, seq_len, cfg)
            rows.append(row)
            if progress:
                progress(row)
            if seq_len == cfg["probe"]["train_len"]:
                curves[name] = {stage: probe_gradients(m, cfg["probe"], cfg["seed"])
                                for stage, m in (("init", at_init), ("trained", trained))}
    return {"rows": rows, "curves": curves, "baseline": tasks.adding_baseline(cfg["task"]["tolerance"])}


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


def markdown_report(result: Mapping[str, Any], cfg: Mapping[str, Any], figure: str, command: str) -> str:
    """The page: setup, MSE/accuracy table, per-run details, gradient figure and figures at a few k."""
    rows, curves, base = result["rows"], result["curves"], result["baseline"]
    t, m, task = cfg["train"], cfg["model"], cfg["task"]
    variants = "; ".join(f"{v['name']}: " + ", ".join(f"{k}={x}" for k, x in v.items() if k != "name")
                         for v in cfg["variants"])
    out = [
        "# The long-term-dependency problem, measured",
        "",
        f"Generated by `{command}`. One seed ({cfg['seed']}); CPU.",
        "",
        "**Task.** The adding problem (Hochreiter & Schmidhuber 1997): a sequence of T (value, marker) pairs,",
        "values uniform in [0, 1], exactly two markers; the target, read from the last hidden state, is the",
        f"sum of the two marked values. Marker placement `{task['placement']}`"
        + (" (both in the first half, the first within the first 10 steps, so both values must be held for at "
           "least T/2 steps)." if task["placement"] == "hochreiter" else "."),
        f"Accuracy = share of test sequences with |error| < {task['tolerance']}; test set of {task['n_test']}",
        "sequences. Baseline: always predict the mean, 1: MSE = Var(U1 + U2) = 1/6 ~ 0.1667, accuracy",
        f"{100 * base['accuracy']:.1f}%.",
        "",
        f"**Models.** Variants: {variants}. One layer, hidden size {m['hidden_size']}, linear read-out of the",
        f"final hidden state; Adam lr {t['lr']}, batch {t['batch_size']} fresh sequences per step, gradient-norm",
        f"clip {t['clip']}, at most {t['max_steps']} steps, stopping early once test {t['stop_metric']} <= "
        f"{t['stop_value']}. **Bold** = solved (test MSE <= {cfg['solved_fraction']} x baseline).",
        "",
        "## Test MSE (accuracy) against sequence length",
        "",
        *_pivot(rows, list(cfg["lengths"]), base),
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
        f"Norm of d L_T / d h_(T-k) (mean over {cfg['probe']['n']} adding sequences of length "
        f"{cfg['probe']['length']}, float64), for the models of the T={cfg['probe']['train_len']} runs, before and",
        "after training. For the LSTM, h is the hidden output with the cell state c held apart.",
        "",
        f"![gradient norm against k](figures/{Path(figure).name})",
        "",
        "| variant | stage | k=0 | k=10 | k=50 | k=100 | k=200 | k=300 |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {n} | {s} | " + " | ".join(_at(c[s], k) for k in (0, 10, 50, 100, 200, 300)) + " |"
          for n, c in curves.items() for s in ("init", "trained")],
        "",
    ]
    return "\n".join(out)


def write_report(result: Mapping[str, Any], cfg: Mapping[str, Any], run_dir: str | Path,
                 docs_dir: str | Path | None, command: str) -> list[Path]:
    """long_term_dependency.md + figures/<png> into run_dir and docs_dir (if any); the json into run_dir."""
    written = []
    for d in [Path(run_dir)] + ([Path(docs_dir)] if docs_dir else []):
        fig = d / "figures" / FIGURE
        plot_gradient_norms(result["curves"], fig, cfg["probe"]["train_len"])
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
