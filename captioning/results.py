"""The results table of docs/results.md: every cell and baseline on every evaluation split."""

from __future__ import annotations

import json
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from captioning.utils.io import save_json
from captioning.utils.report import machine_line, update_section

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


ATTRIBUTES = ("count", "colour", "shape", "size", "position", "relation")


def by_count_table(runs: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown: per model and split, each attribute's accuracy in scenes of 1, 2 and 3 objects.

    ``runs[model][split]`` is ``scenes.attribute_accuracy(..., per_count=True)`` (keys like ``colour@2``).
    """
    counts = sorted({int(k.split("@")[1]) for m in runs.values() for acc in m.values() for k in acc if "@" in k})
    lines = ["| model | split | objects | " + " | ".join(ATTRIBUTES) + " |", "|" + "---|" * (len(ATTRIBUTES) + 3)]
    for model, splits in runs.items():
        for split, acc in splits.items():
            for n in counts:
                vals = " | ".join(f"{acc[f'{a}@{n}']:.3f}" if f"{a}@{n}" in acc else "-" for a in ATTRIBUTES)
                lines.append(f"| {model} | {split} | {n} | {vals} |")
    return "\n".join(lines)


def make_results(overrides: list[str], cells=("rnn", "lstm", "gru"), out: str = "docs/results.md",
                 run_root: str = "runs/results") -> dict:
    """Train and evaluate one model per cell, save ``summary.json``, then write the results section."""
    from captioning.pipeline import run

    runs, seconds = {}, {}
    for cell in cells:
        t0 = time.time()
        runs[cell] = run(_compose([f"cell={cell}", *overrides]), Path(run_root) / cell)
        seconds[cell] = time.time() - t0
    meta = {"overrides": list(overrides), "seconds": seconds, "machine": machine_line()}
    save_json({**runs, "_meta": meta}, Path(run_root) / "summary.json")  # atomic, like every output
    write_results(run_root, out)
    return runs


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=overrides)


def write_results(run_root: str = "runs/results", out: str = "docs/results.md") -> str:
    """Render the results section from the runs ``make_results`` saved (no training): the main table,
    the references' leave-one-out agreement, and attribute accuracy by number of objects."""
    from captioning.data.datasets import load_dataset
    from captioning.data.scenes import attribute_accuracy
    from captioning.evaluation.scoring import load_results
    from captioning.evaluation.metrics import human_agreement

    path = Path(run_root) / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"no saved runs to render: {path} is missing; run `python scripts/make_results.py` "
                                "first (it trains each cell and writes it)")
    summary = json.loads(path.read_text())
    meta = summary.pop("_meta", {})
    overrides = meta.get("overrides", [])
    seconds = meta.get("seconds") or {c: m.get("_run", {}).get("seconds_total", 0.0) for c, m in summary.items()}
    cfg = _compose(overrides)
    data = load_dataset(cfg.data, list(cfg.data.eval_splits))
    human = {s: human_agreement({r.image_id: r.captions for r in recs}) for s, recs in data.items()}
    by_count = {}
    if all(recs and recs[0].scene is not None for recs in data.values()):
        by_count = {cell: {s: attribute_accuracy(recs, load_results(Path(run_root) / cell / "eval" / f"results_{s}.json"),
                                                 per_count=True) for s, recs in data.items()} for cell in summary}
    cmd = "python scripts/make_results.py " + " ".join(overrides)
    decoding = cfg.decoding
    beam = f"beam search (beam {decoding.beam_size})" if decoding.method == "beam" else f"{decoding.method} decoding"
    title = "Synthetic shapes" if cfg.data.name == "shapes" else f"Data `{cfg.data.name}`"
    body = (f"## {title}: cells vs baselines\n\nMachine: {meta.get('machine') or machine_line()}\n\n"
            f"Command: `{cmd.strip()}` (run time per model, evaluation included: "
            f"{', '.join(f'{c} {s / 60:.1f} min' for c, s in seconds.items())}; the first run also extracts "
            "the features unless they are cached; the others read them from the cache)\n\n"
            f"Captions by {beam}. `test_novel` holds colour-shape pairs never seen in training. "
            "Attribute columns: the fraction of captions that get that attribute of the scene right "
            "(see captioning/data/scenes.py). The human row scores each reference against the others "
            "(leave-one-out BLEU): how far the phrasings themselves agree; models are scored against all of them.\n\n"
            + results_table(summary, human))
    if by_count:
        body += ("\n\nBy number of objects in the scene (`python scripts/make_results.py --render` redraws this "
                 "section from the saved runs):\n\n" + by_count_table(by_count))
    update_section(out, "shapes", body, title="Results")
    return body
