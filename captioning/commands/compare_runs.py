"""Compare the runs of a sweep: `captioning-compare-runs runs/multirun/<date>/<time>`
(or `python scripts/compare_runs.py ...`).

Reads every run's metrics.json and writes comparison.md (a markdown table that docs/results.md can
embed), comparison.csv and comparison.png (a bar chart of one metric per split) into the sweep
directory (or --out), then prints the markdown. A sweep comes from Hydra's multirun, e.g.
`captioning-train -m cell=rnn,lstm,gru`.
"""

import argparse
import logging
import sys

from captioning.evaluation.compare import compare_sweep


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, write the comparison files and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="folder holding the run directories (e.g. runs/multirun/<date>/<time>)")
    parser.add_argument("--out", default=None, help="where to write the files (default: the sweep directory)")
    parser.add_argument("--name", default="comparison", help="file name stem (default: comparison)")
    parser.add_argument("--splits", nargs="+", default=None, help="splits to show (default: every evaluated split)")
    parser.add_argument("--metrics", nargs="+", default=None,
                        help="metrics to show, e.g. Bleu_4 CIDEr acc_colour (default: the BLEU/METEOR/ROUGE/CIDEr present)")
    parser.add_argument("--chart-metric", default="Bleu_4", help="metric drawn in the bar chart (default: Bleu_4)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        out = compare_sweep(args.sweep_dir, args.out, args.name, args.splits, args.metrics, args.chart_metric)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out["markdown"])
    print(f"wrote {out['md']}, {out['csv']} and {out['png']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
