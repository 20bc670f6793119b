"""Compare the runs of a sweep: `captioning-compare-runs SWEEP_DIR [key=value ...]` (the same as
`sweep_dir=SWEEP_DIR`).

Reads every run's metrics.json and writes comparison.md (a markdown table that docs/results.md can
embed), comparison.csv and comparison.png (a bar chart of one metric per split) into the sweep
directory (or out=DIR), then prints the markdown. A sweep comes from Hydra's multirun, e.g.
`captioning-train -m cell=rnn,lstm,gru`.
"""

import logging
import sys
from typing import Any

from captioning import CONFIG_DIR
from captioning.commands.cli import UserError, command_options, hydra_command, positional_to, reject_flags

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR / "tools"), "compare_runs"
RENAMED = {"--out": "out", "--name": "name", "--splits": "splits", "--metrics": "metrics",
           "--chart-metric": "chart_metric"}


def register() -> None:
    """Store the config schemas in Hydra's ConfigStore."""
    import captioning.config  # noqa: F401


def hydra_argv(argv: list[str]) -> list[str]:
    """A plain path argument is ``sweep_dir=PATH``; an old --flag is an error naming its new spelling."""
    reject_flags(argv, RENAMED, "captioning-compare-runs")
    return positional_to(argv, "sweep_dir", many=False)


def compare_runs(cfg: Any) -> None:
    """Write the comparison files and print the table."""
    from captioning.config import CompareRunsConfig
    from captioning.experiments.compare import compare_sweep

    opts = command_options(CompareRunsConfig, cfg, required=("sweep_dir",))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        out = compare_sweep(opts.sweep_dir, opts.out, opts.name, opts.splits, opts.metrics, opts.chart_metric)
    except ValueError as exc:  # runs that cannot be compared: a metric or split they lack
        raise UserError(str(exc)) from exc
    print(out["markdown"])
    print(f"wrote {out['md']}, {out['csv']} and {out['png']}", file=sys.stderr)


main = hydra_command("captioning-compare-runs", CONFIG_PATH, CONFIG_NAME, register, compare_runs, rewrite=hydra_argv)

if __name__ == "__main__":
    sys.exit(main())
