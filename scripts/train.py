"""Train a caption decoder and evaluate it: `python scripts/train.py [group=choice ...] [key=value ...]`.

With no arguments: generates the synthetic shapes data, extracts EfficientNet-Lite0 features, trains
an LSTM decoder and evaluates on test and test_novel. See configs/train.yaml for every option;
`python scripts/train.py --help` lists the config groups and their choices.
"""

import os

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import captioning.config  # noqa: F401 (registers the config schemas with Hydra)
from captioning.loggers import build_logger
from captioning.pipeline import run


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
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
