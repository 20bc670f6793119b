"""What bf16 encoder features change against fp32 ones under one trained model, on a split chosen for
choices (val by default): `python scripts/benchmark.py precision --runs LABEL=RUN_DIR [LABEL=RUN_DIR ...]`.

For each run, captioning-evaluate decodes the split twice with the run's best checkpoint, once with the
image features computed in bf16 and once in fp32 (`precision=bf16|fp32`; each extracted once, then
cached), with the run's own decoding settings. It reports how many captions are word for word the same,
and the bf16 - fp32 difference of BLEU-4 and of the strict scene score with its paired bootstrap interval
over images (captioning/experiments/compare.py). A model's features carry their precision as provenance,
not identity (captioning/features/identity.py): this is the figure behind that choice. Writes the
`precision` section of docs/results.md with the machine and this command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks import DRIVER, PROG
from benchmarks.common import ROOT, code_line, evaluate_run
from captioning.experiments.compare import paired_comparison
from captioning.utils.report import machine_line, update_section

PRECISIONS = ("bf16", "fp32")
METRICS = ("Bleu_4", "acc_scene")


def evaluate(run_dir: Path, split: str, precision: str, out_dir: Path) -> dict:
    """captioning-evaluate checkpoint=<run_dir> split=<split> precision=<precision>, written to ``out_dir``."""
    return evaluate_run(run_dir, [f"split={split}", f"precision={precision}"], out_dir)[split]


def agreement(a: Path, b: Path, split: str) -> tuple[int, int]:
    """(captions word for word the same, images) of two evaluations of one split."""
    load = lambda d: {e["image_id"]: e["caption"] for e in json.loads((d / f"results_{split}.json").read_text())}  # noqa: E731
    ca, cb = load(a), load(b)
    return sum(ca[i] == cb[i] for i in ca), len(ca)


def main(argv: list[str]) -> None:
    """Evaluate each run in both precisions, print the table and write it to docs/results.md."""
    parser = argparse.ArgumentParser(prog=f"{PROG} precision", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="LABEL=RUN_DIR of trained runs")
    parser.add_argument("--split", default="val", help="the split decoded (default val)")
    parser.add_argument("--out", default=".cache/bench/precision", help="where the evaluations are written")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/results.md alone")
    args = parser.parse_args(argv)
    rows = ["| run | captions the same | BLEU-4 bf16 | BLEU-4 fp32 | bf16 - fp32 [95% paired] | scene bf16 - fp32 "
            "[95% paired] |", "|---|---:|---:|---:|---|---|"]
    for spec in args.runs:
        label, run_dir = spec.split("=", 1)
        dirs = {p: Path(args.out) / label / p for p in PRECISIONS}
        for p in PRECISIONS:
            evaluate(Path(run_dir), args.split, p, dirs[p])
        same, n = agreement(dirs["bf16"], dirs["fp32"], args.split)
        diff = {r["metric"]: r for r in paired_comparison([dirs["bf16"]], [dirs["fp32"]], [args.split], METRICS)}
        bleu, scene = diff["Bleu_4"], diff["acc_scene"]
        rows.append(f"| {label} | {same}/{n} ({same / n:.1%}) | {bleu['A']:.4f} | {bleu['B']:.4f} | "
                    f"{bleu['difference']:+.4f} [{bleu['low']:+.4f}, {bleu['high']:+.4f}] | "
                    f"{scene['difference']:+.4f} [{scene['low']:+.4f}, {scene['high']:+.4f}] |")
    command = f"{DRIVER} precision " + " ".join(argv)
    text = (f"Split `{args.split}`, each run's best checkpoint and decoding settings. {machine_line()}; {code_line()}.\n"
            f"Command: `{command}`\n\n" + "\n".join(rows))
    print(text)
    if not args.no_write:
        update_section(ROOT / "docs" / "results.md", "precision", text, title="Results")
