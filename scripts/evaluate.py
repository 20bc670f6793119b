"""Evaluate a checkpoint, or score a COCO results file: see configs/evaluate.yaml for the options.

    python scripts/evaluate.py checkpoint=runs/DATE/TIME split=test_novel decoding.beam_size=5
    python scripts/evaluate.py mode=score results=captions.json annotations=captions_val2014.json
"""

import json

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from captioning.config import check_evaluate_config  # also registers the config schemas with Hydra
from captioning.evaluation.checkpoint import evaluate_checkpoint, score_results


@hydra.main(config_path="../configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out_dir = HydraConfig.get().runtime.output_dir
    check_evaluate_config(cfg)  # every bad value at once, before any work
    metrics = evaluate_checkpoint(cfg, out_dir) if cfg.mode == "checkpoint" else score_results(cfg, out_dir)
    print(json.dumps(metrics, indent=2))
    print(f"written to {out_dir}")


if __name__ == "__main__":
    main()
