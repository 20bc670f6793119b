"""Open a trained character model: which cells track quotes, line position, nesting depth; gate statistics.

    captioning-visualize-cells checkpoint=outputs/lm/shakespeare-lstm/ckpt.pt
    captioning-visualize-cells corpus=python_source checkpoint=outputs/lm/python_source-lstm/ckpt.pt
    captioning-visualize-cells checkpoint=... text_file=some.txt 'cells=[c0.17,h0.3]'

Writes ranking.json, cells.html, best_<signal>.png, heatmap.png and saturation.png to out_dir.
The model is trained on the fused backend; recording runs the scratch backend on the same weights.
(`python scripts/visualize_cells.py ...` is the same command; options: captioning/configs/lm/viz.yaml.)
"""

from __future__ import annotations

import os
from pathlib import Path

# Must run before torch loads OpenMP. On a shared machine, OpenMP threads that spin-wait for a
# descheduled sibling made each training step 10-20x slower here; sleeping costs little when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from captioning import CONFIG_DIR  # noqa: E402
from captioning.lm.config import VizConfig, check, register_schemas, viz_problems  # noqa: E402
from captioning.lm.corpus import corpus_from_config  # noqa: E402
from captioning.lm.model import load_lm  # noqa: E402
from captioning.lm.visualize import visualize_lm  # noqa: E402

register_schemas()  # captioning/configs/lm/viz.yaml extends the declared options: store them before Hydra composes
CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR / "lm"), "viz"


def read_text(opts: VizConfig) -> str:
    """The text to read: ``text_file`` if given, else the start of the corpus's validation split."""
    if opts.text_file:
        path = Path(opts.text_file)
        if not path.is_file():
            raise FileNotFoundError(f"text_file {path} not found")
        return path.read_text(encoding="utf-8", errors="replace")[: opts.chars]
    corpus = corpus_from_config(opts.corpus)
    return corpus.text[len(corpus.train): len(corpus.train) + opts.chars]


@hydra.main(version_base=None, config_path=CONFIG_PATH, config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> None:
    """Write the report and print the best cell for each signal."""
    opts: VizConfig = check(VizConfig, cfg, viz_problems)  # every bad value named before loading
    model, vocab = load_lm(opts.checkpoint, backend="fused")
    best = visualize_lm(model, vocab, read_text(opts), opts.out_dir, opts.corpus.language, opts.top_k,
                        list(opts.cells), opts.html_chars, opts.png_chars)
    for name, b in best.items():
        print(f"{name:>14}: cell {b['label']:>8}  r = {b['r']:+.3f}")
    print(f"report in {opts.out_dir}")


if __name__ == "__main__":
    main()
