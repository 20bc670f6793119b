"""Where an attention model looked, word by word: `captioning-render-attention --checkpoint RUN_DIR`
(or `python scripts/render_attention.py ...`).

Writes docs/figures/attention.png (or --out): for --per_split (3) images of each of --splits
(test,test_novel) of the run's own data, picked by --seed (0) as scripts/render_examples.py picks them,
the image and one panel per generated word with the attention weights over the image's regions
(captioning/evaluation/attention_maps.py). Needs an attention model (model=show_attend_tell or
model=transformer); decoding: --method (greedy) and --beam_size (3).
"""

import argparse
import sys

from captioning.captioner import Captioner
from captioning.data.images import load_rgb
from captioning.evaluation.attention_maps import render_attention
from captioning.evaluation.gallery import pick_examples, run_records


def main(argv: list[str] | None = None) -> int:
    """Caption the picked images with their attention weights and draw them."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a run directory or a checkpoint file")
    parser.add_argument("--out", default="docs/figures/attention.png")
    parser.add_argument("--splits", default="test,test_novel")
    parser.add_argument("--per_split", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", default="greedy", choices=("greedy", "beam"))
    parser.add_argument("--beam_size", type=int, default=3)
    args = parser.parse_args(argv)
    captioner = Captioner.from_checkpoint(args.checkpoint)
    records = run_records(args.checkpoint, args.splits.split(","))
    strips = []
    for split, recs in records.items():
        picked = pick_examples(recs, args.per_split, args.seed)
        for record, (caption, words, weights) in zip(picked, captioner.attend([r.path for r in picked],
                                                                                method=args.method,
                                                                                beam_size=args.beam_size)):
            strips.append((load_rgb(record.path), words, weights))
    path = render_attention(strips, args.out, title=f"where the model looked, word by word ({', '.join(records)})")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
