"""Evaluate a checkpoint, or score a COCO results file: see captioning/configs/evaluate.yaml for the options.

    captioning-evaluate checkpoint=runs/DATE/TIME split=test_novel decoding.beam_size=5
    captioning-evaluate mode=score results=captions.json annotations=captions_val2014.json

(`python scripts/evaluate.py ...` is the same command.)
"""

import json

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from captioning import CONFIG_DIR
from captioning.config import check_evaluate_config  # also registers the config schemas with Hydra
from captioning.evaluation.checkpoint import evaluate_checkpoint, score_results
from captioning.utils.memory import keep_freed_memory

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR), "evaluate"


@hydra.main(config_path=CONFIG_PATH, config_name=CONFIG_NAME, version_base="1.3")
def main(cfg: DictConfig) -> None:
    out_dir = HydraConfig.get().runtime.output_dir
    check_evaluate_config(cfg)  # every bad value at once, before any work
    keep_freed_memory()  # captioning/utils/memory.py
    metrics = evaluate_checkpoint(cfg, out_dir) if cfg.mode == "checkpoint" else score_results(cfg, out_dir)
    print(json.dumps(metrics, indent=2))
    print(f"written to {out_dir}")


if __name__ == "__main__":
    main()
