"""Is A better than B? `captioning-paired --a <runs of A> --b <runs of B>` (or `python scripts/paired.py ...`).

Each side is one or more run directories (or folders of them, e.g. `runs/results/lstm` holding one run
per seed), all scored on the same images: the same seeds on both sides, ideally. For each split and
metric (default: Bleu_4, CIDEr, acc_scene, acc_binding, those the runs have per image) it prints A and
B averaged over their runs, the difference A - B, and its paired bootstrap interval: images are
resampled (the same draw for A and B and for every seed; captioning/evaluation/stats.py), each side
averaged over its seeds. A claim "A beats B" needs an interval that excludes 0.

    captioning-paired --a runs/results/lstm --b runs/results/gru --splits test --metrics Bleu_4
"""

import argparse
import json
import logging
import sys

from captioning.evaluation.compare import paired_comparison, paired_markdown


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, compute the paired intervals and print them (as markdown, or --json)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", nargs="+", required=True, help="run directories of A (one per seed)")
    parser.add_argument("--b", nargs="+", required=True, help="run directories of B (one per seed)")
    parser.add_argument("--labels", nargs=2, default=("A", "B"), metavar=("A", "B"), help="names in the table")
    parser.add_argument("--splits", nargs="+", default=None, help="splits (default: every evaluated split)")
    parser.add_argument("--metrics", nargs="+", default=None,
                        help="metrics with per-image values (default: Bleu_4 CIDEr acc_scene acc_binding)")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap draws (default 10000)")
    parser.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws (default 0)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of markdown")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        rows = paired_comparison(args.a, args.b, args.splits, args.metrics, args.resamples, args.level, args.seed)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(rows, indent=1) if args.json else paired_markdown(rows, *args.labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
