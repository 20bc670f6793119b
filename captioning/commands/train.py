"""Train a caption decoder and evaluate it: `captioning-train [group=choice ...] [key=value ...]`
(or `python scripts/train.py ...`).

With no arguments: generates the synthetic shapes data, extracts EfficientNet-Lite0 features, trains
an LSTM decoder and evaluates it on val (the test splits are sealed: `captioning-make-results` scores
them, for final configurations). See captioning/configs/train.yaml for every option;
`captioning-train --help` lists the config groups and their choices; `--config-dir DIR` adds your own.
"""

import os

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import captioning.config  # noqa: F401 (registers the config schemas with Hydra)
from captioning import CONFIG_DIR
from captioning.loggers import build_logger
from captioning.pipeline import run

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR), "train"


@hydra.main(config_path=CONFIG_PATH, config_name=CONFIG_NAME, version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_dir = HydraConfig.get().runtime.output_dir
    # under torchrun only rank 0 logs (one W&B run per job, not per process)
    logger = build_logger(cfg, run_dir) if int(os.environ.get("RANK", 0)) == 0 else None
    try:
        run(cfg, run_dir, logger)
    finally:
        if logger:
            logger.finish()


if __name__ == "__main__":
    main()
