"""Where an attention model looked, word by word: `captioning-render-attention checkpoint=RUN_DIR [key=value ...]`.

Writes docs/figures/attention.png (or out=...): for per_split (3) images of each of splits
([test,test_novel]) of the run's own data, picked by seed (0) as captioning-render-examples picks them,
the image and one panel per word of its whole caption with the attention weights over the image's regions
as a heat map, under a title naming the model, the regions it reads and the splits
(captioning/evaluation/attention_maps.py). Needs an attention model (model=show_attend_tell or
model=transformer); decoding: decoding.method (greedy | beam) and decoding.beam_size (3).
"""

import sys
from typing import Any

from captioning import CONFIG_DIR
from captioning.commands.cli import command_options, hydra_command, reject_flags

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR / "tools"), "render_attention"
RENAMED = {"--checkpoint": "checkpoint", "--out": "out", "--splits": "splits", "--per_split": "per_split",
           "--seed": "seed", "--method": "decoding.method", "--beam_size": "decoding.beam_size"}


def register() -> None:
    """Store the config schemas in Hydra's ConfigStore."""
    import captioning.config  # noqa: F401


def hydra_argv(argv: list[str]) -> list[str]:
    """The command line as it is (key=value); an old --flag is an error naming its new spelling."""
    reject_flags(argv, RENAMED, "captioning-render-attention")
    return argv


def render(cfg: Any) -> None:
    """Caption the picked images with their attention weights and draw them."""
    from captioning.captioner import Captioner
    from captioning.config import AttentionRunConfig
    from captioning.data.images import load_rgb
    from captioning.evaluation.attention_maps import model_description, render_attention
    from captioning.evaluation.gallery import pick_examples, run_records
    from captioning.models.checkpoint import load_checkpoint

    opts = command_options(AttentionRunConfig, cfg)
    captioner = Captioner.from_checkpoint(opts.checkpoint)
    records = run_records(opts.checkpoint, list(opts.splits))
    strips, labels = [], []
    for split, recs in records.items():
        picked = pick_examples(recs, opts.per_split, opts.seed)
        attended = captioner.attend([r.path for r in picked], method=opts.decoding.method,
                                    beam_size=opts.decoding.beam_size)
        for record, (caption, words, weights) in zip(picked, attended):
            strips.append((load_rgb(record.path), words, weights))
            labels.append(split)
    decoding = "greedy" if opts.decoding.method == "greedy" else f"{opts.decoding.method} {opts.decoding.beam_size}"
    model = model_description(load_checkpoint(opts.checkpoint)["config"], strips[0][2].shape[1] if strips else None)
    title = f"Where {model} looked for each word\n{' and '.join(records)} images, {decoding} captions"
    path = render_attention(strips, opts.out, title=title, labels=labels)
    print(f"wrote {path}")


main = hydra_command("captioning-render-attention", CONFIG_PATH, CONFIG_NAME, register, render, rewrite=hydra_argv)

if __name__ == "__main__":
    sys.exit(main())
