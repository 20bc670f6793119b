"""Open a trained character model: which cells track quotes, line position, nesting depth; gate statistics.

    captioning-visualize-cells checkpoint=outputs/lm/shakespeare-lstm/ckpt.pt
    captioning-visualize-cells corpus=python_source checkpoint=outputs/lm/python_source-lstm/ckpt.pt
    captioning-visualize-cells checkpoint=... text_file=some.txt 'cells=[c0.17,h0.3]'

Writes ranking.json, cells.html, best_<signal>.png, heatmap.png and saturation.png to out_dir.
The model is trained on the fused backend; recording runs the scratch backend on the same weights.
(options: captioning/configs/lm/viz.yaml.)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# Must run before torch loads OpenMP. On a shared machine, OpenMP threads that spin-wait for a
# descheduled sibling made each training step 10-20x slower here; sleeping costs little when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from captioning import CONFIG_DIR  # noqa: E402
from captioning.commands.cli import UserError, hydra_command  # noqa: E402

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR / "lm"), "viz"


def register() -> None:
    """captioning/configs/lm/viz.yaml extends the declared options: store them before Hydra composes."""
    from captioning.lm.config import register_schemas

    register_schemas()


def read_text(opts: Any) -> str:
    """The text to read: ``text_file`` if given, else the start of the corpus's validation split."""
    if opts.text_file:
        path = Path(opts.text_file)
        if not path.is_file():
            raise UserError(f"text_file={path} not found: give an existing text file")
        return path.read_text(encoding="utf-8", errors="replace")[: opts.chars]
    from captioning.lm.corpus import corpus_from_config

    corpus = corpus_from_config(opts.corpus)
    return corpus.text[len(corpus.train): len(corpus.train) + opts.chars]


def visualize_cells(cfg: Any) -> None:
    """Write the report and print the best cell for each signal."""
    from captioning.lm.config import VizConfig, check
    from captioning.lm.model import load_lm
    from captioning.lm.visualize import visualize_lm

    opts: VizConfig = check(VizConfig, cfg)  # every bad value named before loading
    model, vocab = load_lm(opts.checkpoint, backend="fused")
    best = visualize_lm(model, vocab, read_text(opts), opts.out_dir, opts.corpus.language, opts.top_k,
                        list(opts.cells), opts.html_chars, opts.png_chars)
    for name, b in best.items():
        print(f"{name:>14}: cell {b['label']:>8}  r = {b['r']:+.3f}")
    print(f"report in {opts.out_dir}")



main = hydra_command("captioning-visualize-cells", CONFIG_PATH, CONFIG_NAME, register, visualize_cells)

if __name__ == "__main__":
    sys.exit(main())
