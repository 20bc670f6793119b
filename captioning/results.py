"""The results table of docs/results.md: every cell and baseline on every evaluation split."""

from __future__ import annotations

import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from captioning.io import save_json
from captioning.report import machine_line, update_section

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
COLUMNS = ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "CIDEr", "acc_count", "acc_colour", "acc_shape", "acc_size",
           "acc_position", "acc_relation"]


def results_table(runs: dict[str, dict], human: dict[str, dict] | None = None) -> str:
    """Markdown table: one row per (model, split) and per (baseline, split); baselines listed once.

    ``human`` maps a split to the references' own leave-one-out scores (``metrics.human_agreement``).
    """
    header = "| model | split | " + " | ".join(c.replace("acc_", "") for c in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    first = next(iter(runs.values()))
    splits = [k for k in first if not k.startswith("_") and "/" not in k]
    rows = [(name, s, m[s]) for s in splits for name, m in runs.items()]
    rows += [(k.split("/")[0].replace("_", "-"), s, first[k]) for s in splits for k in first if k.endswith(f"/{s}")]
    rows += [("human (leave-one-out)", s, human[s]) for s in splits if human and s in human]
    for name, split, metrics in rows:
        vals = " | ".join(f"{metrics[c]:.3f}" if c in metrics else "-" for c in COLUMNS)
        lines.append(f"| {name} | {split} | {vals} |")
    return "\n".join(lines)


def make_results(overrides: list[str], cells=("rnn", "lstm", "gru"), out: str = "docs/results.md",
                 run_root: str = "runs/results") -> dict:
    """Train and evaluate one model per cell, then write the results section."""
    from captioning.data.datasets import load_dataset
    from captioning.metrics import human_agreement
    from captioning.pipeline import run

    runs, seconds = {}, {}
    for cell in cells:
        with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
            cfg = compose("train", overrides=[f"cell={cell}", *overrides])
        t0 = time.time()
        runs[cell] = run(cfg, Path(run_root) / cell)
        seconds[cell] = time.time() - t0
    splits = list(cfg.data.eval_splits)
    human = {s: human_agreement({r.image_id: r.captions for r in recs}) for s, recs in load_dataset(cfg.data, splits).items()}
    cmd = "python scripts/make_results.py " + " ".join(overrides)
    body = (f"## Synthetic shapes: cells vs baselines\n\nMachine: {machine_line()}\n\nCommand: `{cmd.strip()}` "
            f"(run time per model: {', '.join(f'{c} {s / 60:.1f} min' for c, s in seconds.items())})\n\n"
            "Captions by beam search (beam 3). `test_novel` holds colour-shape pairs never seen in training. "
            "Attribute columns: the fraction of captions that get that attribute of the scene right "
            "(see captioning/data/scenes.py). The human row scores each reference against the others "
            "(leave-one-out BLEU): how far the phrasings themselves agree; models are scored against all of them.\n\n"
            + results_table(runs, human))
    update_section(out, "shapes", body, title="Results")
    save_json(runs, Path(run_root) / "summary.json")  # atomic, like every output
    return runs
