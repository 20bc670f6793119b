"""Choose settings on val: the same grid of overrides for every row (e.g. each cell), one run per point and seed.

    captioning-search [--seeds N] [--jobs J] [key=value ...] --grid KEY=V1,V2 ... --row LABEL KEY=VALUE ...
    captioning-search --jobs 2 schedule.stages.self_critical.epochs=0 \\
        --grid schedule.stages.cross_entropy.lr=1e-3,2e-3,4e-3 model.dropout=0.1,0.2 \\
        --row rnn cell=rnn --row lstm cell=lstm --row gru cell=gru
    captioning-search --seeds 3 --section val_ablation --title "..." [key=value ...] \\
        --row default --row torch_init model.lstm_init=torch    # no grid: each row one setting, vs the first
    captioning-search --render                           # redraw the section from runs/search

(`python scripts/search.py ...` is the same command; paths are relative to the working directory.)
Every run evaluates the val split only (with --split val_novel also val_novel, the shapes data's unseen
colour-shape pairs, which then chooses; the test splits stay sealed for make_results) and lands in
runs/search/<row>_<point>/seed<k>; finished runs are read, not retrained. The common overrides go first,
before --grid and --row. The section "Settings chosen on val" of docs/results.md gets one table row per
(row, point) with val BLEU-4, CIDEr, scene and binding, the chosen point of each row in bold (highest
val BLEU-4, mean over seeds) and the paired bootstrap interval of best minus runner-up; without --grid,
each row is one setting and the section gives every row minus the first (paired intervals): an ablation.
"""

import argparse

from captioning.search import SECTION, TITLE, parse_grid, search, write_search


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=1, help="seeds per grid point, 0..N-1 (default 1)")
    parser.add_argument("--grid", nargs="+", default=[], metavar="KEY=V1,V2",
                        help="the grid: each key with its comma-separated values; every combination is run")
    parser.add_argument("--row", nargs="+", action="append", metavar=("LABEL", "KEY=VALUE"),
                        help="a row searched with the whole grid: its label and its own overrides (repeat for "
                             "more rows; default: one row per cell: rnn, lstm, gru)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process")
    parser.add_argument("--metric", default="Bleu_4", help="the val metric that chooses (default Bleu_4)")
    parser.add_argument("--split", default=None, help="the split --metric is read on (default: the data's val "
                        "split); val_novel chooses on the shapes data's unseen colour-shape pairs; never a test split")
    parser.add_argument("--section", default=SECTION, help=f"the marked section of --out written (default {SECTION})")
    parser.add_argument("--title", default=TITLE, help="that section's heading")
    parser.add_argument("--render", action="store_true", help="redraw the section from runs/search, no training")
    parser.add_argument("--run-root", default="runs/search", help="where the runs go (default runs/search)")
    parser.add_argument("--out", default="docs/results.md", help="the markdown file written (default docs/results.md)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, before --grid and --row")
    args = parser.parse_args(argv)
    if args.render:
        chosen = write_search(args.run_root, args.out)
    else:
        rows = ({label: keys for label, *keys in args.row} if args.row
                else {cell: [f"cell={cell}"] for cell in ("rnn", "lstm", "gru")})
        chosen = search(args.overrides, rows, parse_grid(args.grid), jobs=args.jobs, seeds=args.seeds,
                        run_root=args.run_root, out=args.out, metric=args.metric, section=args.section,
                        title=args.title, split=args.split)
    for row, values in chosen.items():
        print(row, " ".join(f"{k}={v}" for k, v in values.items()))


if __name__ == "__main__":
    main()
