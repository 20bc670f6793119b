"""One table for several caption models' runs: `captioning-model-table LABEL=RUN_DIR ... [--out FILE]`
(or `python scripts/model_table.py ...`).

For each run (a run directory of scripts/train.py, with metrics.json, history.json, eval/results_*.json
and checkpoints/best.pt) and each evaluated split: BLEU-4, CIDEr (training-reference document
frequencies), the strict scene scores (scene, binding, relation_strict), colour, the trainable parameters
of the model, and seconds per cross-entropy and per self-critical epoch (history.json, val decoding
included). Then, per split, the scene, binding and colour scores by number of objects and by whether the
scene's description occurs in train (captioning/data/scene_metrics.py: split_breakdown). Prints
markdown, and writes it to --out when given. Reads only what the runs wrote (and regenerates nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from captioning.data.scene_metrics import split_breakdown
from captioning.evaluation.cost import epoch_seconds, parameter_count
from captioning.evaluation.gallery import run_records
from captioning.evaluation.scoring import load_results
from captioning.utils.io import atomic_write

MAIN = [("Bleu_4", "BLEU-4"), ("CIDEr", "CIDEr"), ("acc_scene", "scene"), ("acc_binding", "binding"),
        ("acc_relation_strict", "relation (strict)"), ("acc_colour", "colour")]
GROUPS = ("objects=1", "objects=2", "objects=3", "seen_in_train", "unseen_in_train")


def seconds_cell(history: dict, stage: str) -> str:
    """Median seconds per epoch of a stage ('-' when it did not run)."""
    secs = epoch_seconds(history, stage)
    return "-" if secs is None else f"{secs:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    runs = dict(r.split("=", 1) for r in args.runs)
    head = "| model | split | " + " | ".join(n for _, n in MAIN) + " | parameters | s / XE epoch | s / SCST epoch |"
    lines = ["## Models side by side", "", head, "|" + "---|" * (len(MAIN) + 5)]
    breakdown_lines = ["", "Strict scene / binding / colour score (images) by scene size and by whether the scene's description occurs in train:",
                       "", "| model | split | " + " | ".join(GROUPS) + " |", "|" + "---|" * (len(GROUPS) + 2)]
    for label, run in runs.items():
        run = Path(run)
        metrics = json.loads((run / "metrics.json").read_text())
        history = json.loads((run / "history.json").read_text())
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
    text = "\n".join(lines + breakdown_lines) + "\n"
    print(text)
    if args.out:
        with atomic_write(args.out) as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
