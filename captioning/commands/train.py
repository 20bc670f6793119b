"""Train a caption decoder and evaluate it: `captioning-train [group=choice ...] [key=value ...]`.

With no arguments: generates the synthetic shapes data, extracts EfficientNet-Lite0 features, trains
an LSTM decoder and evaluates it on val (the test splits are sealed: `captioning-make-results` scores
them, for final configurations). See captioning/configs/train.yaml for every option;
`captioning-train --help` lists the config groups and every option; `--config-dir DIR` adds your own.
"""

import os
import sys

from captioning import CONFIG_DIR
from captioning.commands.cli import hydra_command

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR), "train"


def register() -> None:
    """Store the config schemas in Hydra's ConfigStore (importing them imports torch: not for --help)."""
    import captioning.config  # noqa: F401


def train(cfg) -> None:
    """Run the whole job: data, features, training, evaluation (captioning/pipeline.py)."""
    from hydra.core.hydra_config import HydraConfig

    from captioning.loggers import build_logger
    from captioning.pipeline import run, run_options
    from captioning.utils.schema import plain

    opts = run_options(cfg)  # every bad value at once, before any work
    run_dir = HydraConfig.get().runtime.output_dir
    # under torchrun only rank 0 logs (one W&B run per job, not per process)
    logger = None
    if int(os.environ.get("RANK", 0)) == 0:
        logger = build_logger(cfg.logger, run_dir, plain(cfg), opts.evaluate, opts.metrics)
    try:
        run(opts, run_dir, logger)
    finally:
        if logger:
            logger.finish()


main = hydra_command("captioning-train", CONFIG_PATH, CONFIG_NAME, register, train)

if __name__ == "__main__":
    sys.exit(main())
