"""Open a trained character model: which cells track quotes, line position, nesting depth; gate statistics.

    python scripts/visualize_cells.py checkpoint=outputs/lm/shakespeare-lstm/ckpt.pt
    python scripts/visualize_cells.py corpus=python_source checkpoint=outputs/lm/python_source-lstm/ckpt.pt
    python scripts/visualize_cells.py checkpoint=... text_file=some.txt 'cells=[c0.17,h0.3]'

Writes ranking.json, cells.html, best_<signal>.png, heatmap.png and saturation.png to out_dir.
The model is trained on the fused backend; recording runs the scratch backend on the same weights.
"""

from __future__ import annotations

import os
from pathlib import Path

# Must run before torch loads OpenMP. On a shared machine, OpenMP threads that spin-wait for a
# descheduled sibling made each training step 10-20x slower here; sleeping costs little when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from captioning.lm.model import load_lm  # noqa: E402
from captioning.lm.run import corpus_from_config  # noqa: E402
from captioning.lm.visualize import visualize_lm  # noqa: E402


def read_text(cfg: DictConfig) -> str:
    """The text to read: ``text_file`` if given, else the start of the corpus's validation split."""
    if cfg.text_file:
        path = Path(cfg.text_file)
        if not path.is_file():
            raise FileNotFoundError(f"text_file {path} not found")
        return path.read_text(encoding="utf-8", errors="replace")[: cfg.chars]
    corpus = corpus_from_config(cfg.corpus)
    return corpus.text[len(corpus.train): len(corpus.train) + cfg.chars]


@hydra.main(version_base=None, config_path="../configs/lm", config_name="viz")
def main(cfg: DictConfig) -> None:
    """Write the report and print the best cell for each signal."""
    model, vocab = load_lm(cfg.checkpoint, backend="fused")
    best = visualize_lm(model, vocab, read_text(cfg), cfg.out_dir, cfg.corpus.language, cfg.top_k,
                        list(cfg.cells), cfg.html_chars, cfg.png_chars)
    for name, b in best.items():
        print(f"{name:>14}: cell {b['label']:>8}  r = {b['r']:+.3f}")
    print(f"report in {cfg.out_dir}")


if __name__ == "__main__":
    main()
