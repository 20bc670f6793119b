"""Choose settings on val: the same grid of overrides for every row (e.g. each cell), one run per point and seed.

    captioning-search [seeds=N] [jobs=J] [key=value ...] [key=v1,v2 ...] [row=LABEL key=value ...]
    captioning-search jobs=2 schedule.stages.self_critical.epochs=0 \\
        schedule.stages.cross_entropy.lr=1e-3,2e-3,4e-3 model.dropout=0.1,0.2 \\
        row=rnn cell=rnn row=lstm cell=lstm row=gru cell=gru
    captioning-search seeds=3 section=val_ablation title="..." [key=value ...] \\
        row=default row=torch_init model.lstm_init=torch    # no grid: each row one setting, vs the first
    captioning-search render=true                        # redraw the section from runs/search

(paths are relative to the working directory.)
Every key=value that is not an option of this command is a training override: before the first row=
it goes to every run, and one with several values (key=v1,v2, as in Hydra's sweeps) is an axis of the
grid; after row=LABEL it belongs to that row. Every run evaluates the val split only (with
split=val_novel also val_novel, the shapes data's unseen colour-shape pairs, which then chooses; the test
splits stay sealed for make_results) and lands in runs/search/<row>_<point>/seed<k>; finished runs are
read, not retrained. The section "Settings chosen on val" of docs/results.md gets one table row per
(row, point) with val BLEU-4, CIDEr, scene and binding, the chosen point of each row in bold (highest
val BLEU-4, mean over seeds) and the paired bootstrap interval of best minus runner-up; without a grid,
each row is one setting and the section gives every row minus the first (paired intervals): an ablation.
"""

import logging
import sys
from typing import Any

from captioning import CONFIG_DIR
from captioning.commands.cli import command_options, hydra_command, runs_argv

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR / "tools"), "search"
OWN = {"seeds", "jobs", "overrides", "grid", "rows", "metric", "split", "render", "run_root", "out", "section",
       "title"}
RENAMED = {"--seeds": "seeds", "--jobs": "jobs", "--row": "row", "--grid": "KEY=V1,V2 (a training override with "
           "several values is an axis of the grid)", "--metric": "metric", "--split": "split",
           "--render": "render=true", "--run-root": "run_root", "--out": "out", "--section": "section",
           "--title": "title"}


def register() -> None:
    """Store the command's schema (captioning/experiments/search.py) in Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    from captioning.experiments.search import SearchConfig

    ConfigStore.instance().store(group="schema/run", name="search", node=SearchConfig)


def hydra_argv(argv: list[str]) -> list[str]:
    """The command's own options as they are; the training overrides into ``overrides``, ``grid`` and ``rows``."""
    return runs_argv(argv, OWN, RENAMED, "captioning-search", grid=True)


def command(cfg: Any) -> None:
    """Train (or read) every row's grid and print the chosen point of each row."""
    from captioning.experiments.search import SearchConfig

    opts = command_options(SearchConfig, cfg)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if opts.render:
        chosen = write_search(opts.run_root, opts.out)
    else:
        rows = ({label: list(keys) for label, keys in opts.rows.items()} if opts.rows
                else {cell: [f"cell={cell}"] for cell in ("rnn", "lstm", "gru")})
        grid = {key: [str(v) for v in values] for key, values in opts.grid.items()}
        chosen = search(list(opts.overrides), rows, grid, jobs=opts.jobs, seeds=opts.seeds, run_root=opts.run_root,
                        out=opts.out, metric=opts.metric, section=opts.section, title=opts.title, split=opts.split)
    for row, values in chosen.items():
        print(row, " ".join(f"{k}={v}" for k, v in values.items()))


def search(*args: Any, **kwargs: Any) -> Any:
    """captioning.experiments.search.search (imported when called: it is not needed for --help)."""
    from captioning.experiments.search import search as run

    return run(*args, **kwargs)


def write_search(*args: Any, **kwargs: Any) -> Any:
    """captioning.experiments.search.write_search (imported when called)."""
    from captioning.experiments.search import write_search as run

    return run(*args, **kwargs)


main = hydra_command("captioning-search", CONFIG_PATH, CONFIG_NAME, register, command, rewrite=hydra_argv)

if __name__ == "__main__":
    sys.exit(main())
