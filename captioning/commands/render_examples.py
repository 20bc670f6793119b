"""Draw a run's captions on its test images: `captioning-render-examples checkpoint=RUN_DIR [key=value ...]`.

Writes docs/figures/examples.png (or out=...): per_split (6) images of each split in splits
([test,test_novel]) of the run's own data, picked by seed (0) with 1-, 2- and 3-object scenes mixed,
each with the generated caption, one reference caption in grey and, on synthetic scenes, a check or a
cross for whether the whole scene is described right. Other options: columns (0 = per_split), title,
and the decoding.* keys of captioning-caption and captioning-evaluate (decoding.method, decoding.beam_size,
decoding.length_alpha, decoding.temperature, ...: DecodingConfig in captioning/nn/decoding.py; with
decoding.num_captions > 1 the first caption is drawn). Declared by GalleryRunConfig in captioning/config.py.
"""

import dataclasses
import sys
from typing import Any

from captioning import CONFIG_DIR
from captioning.commands.cli import command_options, hydra_command

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR), "render_examples"


def register() -> None:
    """Store the config schemas in Hydra's ConfigStore."""
    import captioning.config  # noqa: F401


def render_examples(cfg: Any) -> None:
    """Caption the picked images and write the figure."""
    import torch

    from captioning.captioner import Captioner
    from captioning.config import GalleryRunConfig
    from captioning.evaluation.gallery import render_gallery, run_records

    opts = command_options(GalleryRunConfig, cfg)
    d = opts.decoding
    decoding = {**{k: v for k, v in dataclasses.asdict(d).items() if k != "batch_size"},
                "generator": torch.Generator().manual_seed(opts.seed)}
    captioner = Captioner.from_checkpoint(opts.checkpoint)
    records = run_records(opts.checkpoint, list(opts.splits))
    gallery = render_gallery(captioner, records, opts.out, per_split=opts.per_split, seed=opts.seed,
                             columns=opts.columns or None, title=opts.title, **decoding)
    for e in gallery.examples:
        mark = {True: "right", False: "wrong", None: "-"}[e.correct]
        print(f"{e.split}\t{e.image_id}\t{mark}\t{e.caption}")
    print(f"wrote {gallery.path} ({gallery.size[0]}x{gallery.size[1]} px)", file=sys.stderr)


main = hydra_command("captioning-render-examples", CONFIG_PATH, CONFIG_NAME, register, render_examples)

if __name__ == "__main__":
    sys.exit(main())
