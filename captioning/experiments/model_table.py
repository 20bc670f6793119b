"""The model table of captioning-model-table: several caption models' runs side by side, read from what the
runs wrote (metrics.json, history.json, eval/results_*.json, checkpoints/best.pt; nothing regenerated)."""

from __future__ import annotations

from pathlib import Path

MAIN = [("Bleu_4", "BLEU-4"), ("CIDEr", "CIDEr"), ("acc_scene", "scene"), ("acc_binding", "binding"),
        ("acc_relation_strict", "relation (strict)"), ("acc_colour", "colour")]
GROUPS = ("objects=1", "objects=2", "objects=3", "seen_in_train", "unseen_in_train")


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
