"""Is A better than B? `captioning-paired a=RUNS_OF_A b=RUNS_OF_B [key=value ...]`.

Each side is one or more run directories (or folders of them, e.g. `runs/results/lstm` holding one run
per seed; `a=[DIR1,DIR2]` for several), all scored on the same images: the same seeds on both sides,
ideally. For each split and metric (default: Bleu_4, CIDEr, acc_scene, acc_binding, those the runs have
per image) it prints A and B averaged over their runs, the difference A - B, and its paired bootstrap
interval: images are resampled (the same draw for A and B and for every seed;
captioning/evaluation/stats.py), each side averaged over its seeds. A claim "A beats B" needs an interval
that excludes 0.

    captioning-paired a=runs/results/lstm b=runs/results/gru splits=[test] metrics=[Bleu_4]
"""

import json
import logging
import sys
from typing import Any

from captioning import CONFIG_DIR
from captioning.commands.cli import UserError, command_options, hydra_command, quoted, reject_flags

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR / "tools"), "paired"
RENAMED = {"--a": "a", "--b": "b", "--labels": "labels", "--splits": "splits", "--metrics": "metrics",
           "--resamples": "resamples", "--level": "level", "--seed": "seed", "--json": "json=true"}


def register() -> None:
    """Store the config schemas in Hydra's ConfigStore."""
    import captioning.config  # noqa: F401


def hydra_argv(argv: list[str]) -> list[str]:
    """``a=DIR`` (or ``b=DIR``) is ``a=[DIR]``; an old --flag is an error naming its new spelling."""
    reject_flags(argv, RENAMED, "captioning-paired")
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        side_with_one_run = key in ("a", "b") and eq and value and not value.startswith("[")
        out.append(f"{key}=[{quoted(value)}]" if side_with_one_run else arg)
    return out


def paired(cfg: Any) -> None:
    """Compute the paired intervals and print them (as markdown, or json=true)."""
    from captioning.config import PairedConfig
    from captioning.experiments.compare import paired_comparison, paired_markdown

    opts = command_options(PairedConfig, cfg, required=("a", "b"))
    if len(opts.labels) != 2:
        raise UserError(f"labels takes two names, e.g. labels=[lstm,gru]; got {list(opts.labels)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        rows = paired_comparison(list(opts.a), list(opts.b), opts.splits, opts.metrics, opts.resamples, opts.level,
                                 opts.seed)
    except (ValueError, KeyError) as exc:  # runs that cannot be paired: other images, a metric they lack
        raise UserError(str(exc).strip("'\"")) from exc
    print(json.dumps(rows, indent=1) if opts.json else paired_markdown(rows, *opts.labels))


main = hydra_command("captioning-paired", CONFIG_PATH, CONFIG_NAME, register, paired, rewrite=hydra_argv)

if __name__ == "__main__":
    sys.exit(main())
