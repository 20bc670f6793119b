"""One table for several caption models' runs: `captioning-model-table runs.LABEL=RUN_DIR ... [out=FILE]`.

For each run (a run directory of captioning-train, with metrics.json, history.json, eval/results_*.json
and checkpoints/best.pt) and each evaluated split: BLEU-4, CIDEr (training-reference document
frequencies), the strict scene scores (scene, binding, relation_strict), colour, the trainable parameters
of the model, and seconds per cross-entropy and per self-critical epoch (history.json, val decoding
included). Then, per split, the scene, binding and colour scores by number of objects and by whether the
scene's description occurs in train (captioning/data/scene_metrics.py: split_breakdown). Prints
markdown, and writes it to out=FILE when given. Reads only what the runs wrote (and regenerates nothing).

    captioning-model-table runs.show_tell=runs/a runs.transformer=runs/b out=docs/models.md
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from captioning import CONFIG_DIR
from captioning.commands.cli import UserError, command_options, hydra_command, reject_flags, split_positional

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR / "tools"), "model_table"
OWN_KEYS = ("runs", "out")
MAIN = [("Bleu_4", "BLEU-4"), ("CIDEr", "CIDEr"), ("acc_scene", "scene"), ("acc_binding", "binding"),
        ("acc_relation_strict", "relation (strict)"), ("acc_colour", "colour")]
GROUPS = ("objects=1", "objects=2", "objects=3", "seen_in_train", "unseen_in_train")


def register() -> None:
    """Store the config schemas in Hydra's ConfigStore."""
    import captioning.config  # noqa: F401


def hydra_argv(argv: list[str]) -> list[str]:
    """The command line as it is; the old spellings (LABEL=RUN_DIR, --out) are errors naming the new ones."""
    reject_flags(argv, {"--out": "out"}, "captioning-model-table")
    out, _ = split_positional(argv)
    for arg in out:
        key, eq, value = arg.partition("=")
        if eq and "." not in key and key.lstrip("+~") not in OWN_KEYS and Path(value).is_dir():
            raise UserError(f"LABEL=RUN_DIR is now runs.LABEL=RUN_DIR (e.g. runs.{key}={value}); "
                            "see captioning-model-table --help")
    # ++: the labels are new keys of the runs dict (a plain override may only change existing keys)
    return [f"++{arg}" if arg.startswith("runs.") and "=" in arg else arg for arg in argv]


def seconds_cell(history: dict, stage: str) -> str:
    """Median seconds per epoch of a stage ('-' when it did not run)."""
    from captioning.evaluation.cost import epoch_seconds

    secs = epoch_seconds(history, stage)
    return "-" if secs is None else f"{secs:.0f}"


def model_table(runs: dict[str, str]) -> str:
    """The markdown of the two tables for ``runs`` (label -> run directory)."""
    from captioning.data.scene_metrics import split_breakdown
    from captioning.evaluation.cost import parameter_count
    from captioning.evaluation.gallery import run_records
    from captioning.evaluation.scoring import load_results
    from captioning.utils.files import read_json

    head = "| model | split | " + " | ".join(n for _, n in MAIN) + " | parameters | s / XE epoch | s / SCST epoch |"
    lines = ["## Models side by side", "", head, "|" + "---|" * (len(MAIN) + 5)]
    breakdown_lines = ["", "Strict scene / binding / colour score (images) by scene size and by whether the scene's description occurs in train:",
                       "", "| model | split | " + " | ".join(GROUPS) + " |", "|" + "---|" * (len(GROUPS) + 2)]
    for label, run in runs.items():
        run = Path(run)
        metrics = read_json(run / "metrics.json", f"runs.{label}: metrics file")
        history = read_json(run / "history.json", f"runs.{label}: history file")
        params = parameter_count(run)
        splits = [s for s in metrics if not s.startswith("_") and "/" not in s]
        data = run_records(run / "checkpoints" / "best.pt", ["train", *splits])
        for split in splits:
            m = metrics[split]
            cells = " | ".join(f"{m[k]:.3f}" if k in m else "-" for k, _ in MAIN)
            lines.append(f"| {label} | {split} | {cells} | {params:,} | {seconds_cell(history, 'cross_entropy')} | "
                         f"{seconds_cell(history, 'self_critical')} |")
            hyps = load_results(run / "eval" / f"results_{split}.json")
            groups = split_breakdown(data[split], hyps, data["train"])
            row = [f"{groups[g]['scene']:.3f} / {groups[g]['binding']:.3f} / {groups[g]['colour']:.3f} "
                   f"({groups[g]['images']:.0f})" if g in groups
                   else "-" for g in GROUPS]
            breakdown_lines.append(f"| {label} | {split} | " + " | ".join(row) + " |")
    return "\n".join(lines + breakdown_lines) + "\n"


def command(cfg: Any) -> None:
    """Print the tables (and write them to ``out``)."""
    from captioning.config import ModelTableConfig
    from captioning.utils.io import atomic_write

    opts = command_options(ModelTableConfig, cfg, required=("runs",))
    text = model_table(dict(opts.runs))
    print(text)
    if opts.out:
        with atomic_write(opts.out) as f:
            f.write(text)


main = hydra_command("captioning-model-table", CONFIG_PATH, CONFIG_NAME, register, command, rewrite=hydra_argv)

if __name__ == "__main__":
    sys.exit(main())
