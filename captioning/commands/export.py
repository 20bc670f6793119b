"""Export a run for inference: `captioning-export RUN_DIR_OR_PT [out=FOLDER]` (the same as
`captioning-export checkpoint=RUN_DIR_OR_PT [out=FOLDER]`).

Writes model.safetensors, encoder.safetensors (a fine-tuned encoder only), config.json and vocab.json
(captioning/models/export.py), which `Captioner.from_pretrained(FOLDER)` loads without reading any pickle.
Training runs write this to run_dir/export themselves; this command is for older runs. A run directory
exports its best checkpoint; `out` defaults to RUN_DIR/export for a run directory and is required for a file.
"""

import sys
from pathlib import Path
from typing import Any

from captioning import CONFIG_DIR
from captioning.commands.cli import UserError, command_options, hydra_command, positional_to, reject_flags

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR / "tools"), "export"


def register() -> None:
    """Store the config schemas in Hydra's ConfigStore."""
    import captioning.config  # noqa: F401


def hydra_argv(argv: list[str]) -> list[str]:
    """A plain path argument is ``checkpoint=PATH``."""
    reject_flags(argv, {}, "captioning-export")
    return positional_to(argv, "checkpoint", many=False)


def export(cfg: Any) -> None:
    """Write the export folder and say where."""
    from captioning.config import ExportRunConfig
    from captioning.models.export import export_checkpoint

    opts = command_options(ExportRunConfig, cfg)
    source = Path(opts.checkpoint)
    if not opts.out and source.is_file():
        raise UserError(f"checkpoint={source} is a file: give out=<folder> for the export")
    out = export_checkpoint(source, opts.out or source / "export")
    print(f"exported to {out}")


main = hydra_command("captioning-export", CONFIG_PATH, CONFIG_NAME, register, export, rewrite=hydra_argv)

if __name__ == "__main__":
    sys.exit(main())
