"""One table for several caption models' runs: `captioning-model-table runs.LABEL=RUN_DIR ... [out=FILE]`.

For each run (a run directory of captioning-train, with metrics.json, history.json, eval/results_*.json
and checkpoints/best.pt) and each evaluated split: BLEU-4, CIDEr (training-reference document
frequencies), the strict scene scores (scene, binding, relation_strict), colour, the trainable parameters
of the model, and seconds per cross-entropy and per self-critical epoch (history.json, val decoding
included). Then, per split, the scene, binding and colour scores by number of objects and by whether the
scene's description occurs in train (captioning/data/scene_metrics.py: split_breakdown). Prints
markdown, and writes it to out=FILE when given. Reads only what the runs wrote (and regenerates nothing).

    captioning-model-table runs.show_tell=runs/a runs.transformer=runs/b out=docs/models.md
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from captioning import CONFIG_DIR
from captioning.commands.cli import UserError, command_options, hydra_command, reject_flags, split_positional

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR / "tools"), "model_table"
OWN_KEYS = ("runs", "out")


def register() -> None:
    """Store the config schemas in Hydra's ConfigStore."""
    import captioning.config  # noqa: F401


def hydra_argv(argv: list[str]) -> list[str]:
    """The command line as it is; the old spellings (LABEL=RUN_DIR, --out) are errors naming the new ones."""
    reject_flags(argv, {"--out": "out"}, "captioning-model-table")
    out, _ = split_positional(argv)
    for arg in out:
        key, eq, value = arg.partition("=")
        if eq and "." not in key and key.lstrip("+~") not in OWN_KEYS and Path(value).is_dir():
            raise UserError(f"LABEL=RUN_DIR is now runs.LABEL=RUN_DIR (e.g. runs.{key}={value}); "
                            "see captioning-model-table --help")
    # ++: the labels are new keys of the runs dict (a plain override may only change existing keys)
    return [f"++{arg}" if arg.startswith("runs.") and "=" in arg else arg for arg in argv]


def command(cfg: Any) -> None:
    """Print the tables (and write them to ``out``)."""
    from captioning.config import ModelTableConfig
    from captioning.experiments.model_table import model_table
    from captioning.utils.io import atomic_write

    opts = command_options(ModelTableConfig, cfg, required=("runs",))
    text = model_table(dict(opts.runs))
    print(text)
    if opts.out:
        with atomic_write(opts.out) as f:
            f.write(text)


main = hydra_command("captioning-model-table", CONFIG_PATH, CONFIG_NAME, register, command, rewrite=hydra_argv)

if __name__ == "__main__":
    sys.exit(main())
