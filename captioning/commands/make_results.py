"""Write docs/results.md: RNN vs LSTM vs GRU vs the baselines on the synthetic shapes test splits.

    captioning-make-results [--seeds N] [--jobs J] [key=value ...]   # extra overrides go to every run
    captioning-make-results --row show_attend_tell experiment=show_attend_tell --row transformer experiment=transformer
    captioning-make-results --render                     # redraw the section from runs/results
    captioning-make-results --section models --title "every model" --row ...   # another section of the file

(`python scripts/make_results.py ...` is the same command; paths are relative to the working directory.)
Trains one model per row and seed (seeds 0..N-1, default 3; features are extracted once and shared
through the cache) with the default config; the rows are the three cells (rnn, lstm, gru), each at the settings
`captioning-search` chose for it on val (configs/experiment/shapes_rnn.yaml, shapes_gru.yaml; the LSTM's are
the defaults), unless
``--row LABEL KEY=VALUE ...`` names others (each row's overrides after the common ones). Finished runs
(their metrics and overrides saved in runs/results/<row>/seed<k>) are read, not retrained, so an
interrupted make_results continues; ``--jobs 2`` trains two runs at a time (one thread each on 2 cores).
It then tabulates mean ± sd over seeds of BLEU-1..4, CIDEr and the scene accuracies for test and test_novel, the headline metrics (BLEU-4, CIDEr, scene, binding)
with 95% bootstrap intervals over images, the baselines, the chance and ceiling lines of the scene
accuracies and the references' own leave-one-out agreement. Run it for final configurations only:
choices are made on val (docs/results.md, protocol). `captioning-paired` compares two models.
"""

import argparse

from captioning import CONFIG_DIR
from captioning.results import SECTION, TITLE, make_results, write_results

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR), "train"  # the config every run's overrides apply to


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per model, 0..N-1 (default 3)")
    parser.add_argument("--row", nargs="+", action="append", metavar=("LABEL", "KEY=VALUE"),
                        help="a table row: its label and its own overrides, up to the next option (repeat for "
                             "more rows; the common overrides go before the first --row; default: one row per "
                             "cell: rnn, lstm, gru)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process")
    parser.add_argument("--render", action="store_true", help="redraw docs/results.md from runs/results, no training")
    parser.add_argument("--run-root", default="runs/results", help="where the runs go (default runs/results)")
    parser.add_argument("--out", default="docs/results.md", help="the markdown file written (default docs/results.md)")
    parser.add_argument("--section", default=SECTION,
                        help=f"the marked section of --out written (default {SECTION}; --render reads it from the runs)")
    parser.add_argument("--title", default=TITLE, help="that section's heading, after the data's name")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. schedule=smoke")
    args = parser.parse_args(argv)
    if args.render:
        write_results(args.run_root, args.out)
    else:
        rows = {label: keys for label, *keys in args.row} if args.row else None
        make_results(args.overrides, out=args.out, run_root=args.run_root, seeds=args.seeds, rows=rows,
                     jobs=args.jobs, section=args.section, title=args.title)


if __name__ == "__main__":
    main()
