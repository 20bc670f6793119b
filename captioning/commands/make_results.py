"""Write docs/results.md: RNN vs LSTM vs GRU vs the baselines on the synthetic shapes test splits.

    captioning-make-results [seeds=N] [jobs=J] [key=value ...]   # other key=value go to every training run
    captioning-make-results row=show_attend_tell experiment=show_attend_tell row=transformer experiment=transformer
    captioning-make-results render=true                  # redraw the section from runs/results
    captioning-make-results section=models title="every model" row=...   # another section of the file

(paths are relative to the working directory.)
Trains one model per row and seed (seeds 0..N-1, default 3; features are extracted once and shared
through the cache) with the default config; the rows are the three cells (rnn, lstm, gru), each at the
settings `captioning-search` chose for it on val (configs/experiment/shapes_rnn.yaml, shapes_gru.yaml; the
LSTM's are the defaults), unless `row=LABEL KEY=VALUE ...` names others (each row's training overrides
after the common ones, which go before the first row=). Finished runs (their metrics and overrides saved
in runs/results/<row>/seed<k>) are read, not retrained, and a run stopped by Ctrl-C or a kill resumes from its
last.pt, so an interrupted make_results continues (Ctrl-C starts no queued run);
`jobs=2` trains two runs at a time (one thread each on 2 cores). It then tabulates mean ± sd over seeds of
BLEU-1..4, CIDEr and the scene accuracies for test and test_novel, the headline metrics (BLEU-4, CIDEr,
scene, binding) with 95% bootstrap intervals over images, the baselines, the chance and ceiling lines of
the scene accuracies and the references' own leave-one-out agreement. Run it for final configurations
only: choices are made on val (docs/results.md, protocol). `captioning-paired` compares two models.
"""

import logging
import sys
from typing import Any

from captioning import CONFIG_DIR
from captioning.commands.cli import command_options, hydra_command, runs_argv

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR / "tools"), "make_results"
OWN = {"seeds", "jobs", "overrides", "rows", "render", "run_root", "out", "section", "title"}
RENAMED = {"--seeds": "seeds", "--jobs": "jobs", "--row": "row", "--render": "render=true", "--run-root": "run_root",
           "--out": "out", "--section": "section", "--title": "title"}


def register() -> None:
    """Store the command's schema (captioning/experiments/results.py) in Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    from captioning.experiments.results import MakeResultsConfig

    ConfigStore.instance().store(group="schema/run", name="make_results", node=MakeResultsConfig)


def hydra_argv(argv: list[str]) -> list[str]:
    """The command's own options as they are; the training overrides into ``overrides`` and ``rows``."""
    return runs_argv(argv, OWN, RENAMED, "captioning-make-results")


def command(cfg: Any) -> None:
    """Train (or read) every row's runs and write the section."""
    from captioning.experiments.results import MakeResultsConfig

    opts = command_options(MakeResultsConfig, cfg)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if opts.render:
        write_results(opts.run_root, opts.out)
    else:
        rows = {label: list(keys) for label, keys in opts.rows.items()} if opts.rows else None
        make_results(list(opts.overrides), out=opts.out, run_root=opts.run_root, seeds=opts.seeds, rows=rows,
                     jobs=opts.jobs, section=opts.section, title=opts.title)


def make_results(*args: Any, **kwargs: Any) -> Any:
    """captioning.experiments.results.make_results (imported when called: it is not needed for --help)."""
    from captioning.experiments.results import make_results as run

    return run(*args, **kwargs)


def write_results(*args: Any, **kwargs: Any) -> Any:
    """captioning.experiments.results.write_results (imported when called)."""
    from captioning.experiments.results import write_results as run

    return run(*args, **kwargs)


main = hydra_command("captioning-make-results", CONFIG_PATH, CONFIG_NAME, register, command, rewrite=hydra_argv)

if __name__ == "__main__":
    sys.exit(main())
