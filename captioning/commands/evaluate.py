"""Evaluate a checkpoint, or score a COCO results file: see captioning/configs/evaluate.yaml for the options.

    captioning-evaluate checkpoint=runs/DATE/TIME split=test_novel decoding.beam_size=5
    captioning-evaluate mode=score results=captions.json annotations=captions_val2014.json

(`captioning-evaluate --help` lists every option.)
"""

import json
import sys

from captioning import CONFIG_DIR
from captioning.commands.cli import hydra_command

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR), "evaluate"


def register() -> None:
    """Store the config schemas in Hydra's ConfigStore."""
    import captioning.config  # noqa: F401


def evaluate(cfg) -> None:
    """Check the options, evaluate (or score) and print the metrics."""
    from hydra.core.hydra_config import HydraConfig

    from captioning.evaluation.checkpoint import (EvaluateRunConfig, evaluate_checkpoint, evaluate_problems,
                                                  score_results)
    from captioning.utils.memory import keep_freed_memory
    from captioning.utils.schema import ConfigError, build

    out_dir = HydraConfig.get().runtime.output_dir
    found = evaluate_problems(cfg)  # every bad value at once, before any work
    if found:
        raise ConfigError("invalid config:\n  " + "\n  ".join(found))
    opts = build(EvaluateRunConfig, cfg)
    keep_freed_memory()  # captioning/utils/memory.py
    metrics = evaluate_checkpoint(opts, out_dir) if opts.mode == "checkpoint" else score_results(opts, out_dir)
    print(json.dumps(metrics, indent=2))
    print(f"written to {out_dir}")


main = hydra_command("captioning-evaluate", CONFIG_PATH, CONFIG_NAME, register, evaluate)

if __name__ == "__main__":
    sys.exit(main())
