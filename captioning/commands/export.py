"""Export a run for inference: `captioning-export checkpoint=RUN_DIR_OR_PT [out=FOLDER]`
(or `python scripts/export.py ...`).

Writes model.safetensors, encoder.safetensors (a fine-tuned encoder only), config.json and vocab.json
(captioning/models/export.py), which `Captioner.from_pretrained(FOLDER)` loads without reading any pickle.
Training runs write this to run_dir/export themselves; this command is for older runs. A run directory
exports its best checkpoint; `out` defaults to RUN_DIR/export for a run directory and is required for a file.
"""

import sys
from pathlib import Path

from captioning.models.checkpoint import CheckpointError
from captioning.models.export import export_checkpoint


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    opts = dict(arg.split("=", 1) for arg in argv if "=" in arg)
    unknown = [a for a in argv if "=" not in a or a.split("=", 1)[0] not in ("checkpoint", "out")]
    if unknown or not opts.get("checkpoint"):
        raise SystemExit(f"usage: captioning-export checkpoint=<run dir or .pt> [out=<folder>] (got {unknown or argv})")
    source = Path(opts["checkpoint"])
    if "out" not in opts and not source.is_dir():
        raise SystemExit("out=<folder> is required when checkpoint= is a file")
    try:
        out = export_checkpoint(source, opts.get("out") or source / "export")
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
