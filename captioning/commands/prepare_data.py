"""Prepare datasets for captioning/configs/data/: download the public ones, or generate the synthetic shapes.

    captioning-prepare-data shapes                    # offline, ~20 s: data/shapes (default set)
    captioning-prepare-data shapes data=shapes_tiny
    captioning-prepare-data coco2014 tinyshakespeare  # needs internet and disk space
    captioning-prepare-data flickr8k root=/big/disk   # then train with CAPTIONING_DATA=/big/disk

(the targets are the positional arguments, or
targets=[...].) Files go to <root>/<dataset>/ with root = root=DIR, else $CAPTIONING_DATA, else ./data,
which is where the data configs look. Downloads resume after an interruption (finished files are skipped).
The targets (downloads, sizes, layout) are listed below.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from captioning import CONFIG_DIR
from captioning.commands.cli import command_options, hydra_command, positional_to, reject_flags

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR / "tools"), "prepare_data"
RENAMED = {"--root": "root", "--data": "data", "--config": "data", "--keep-archives": "keep_archives=true"}


def register() -> None:
    """Store the config schemas in Hydra's ConfigStore."""
    import captioning.config  # noqa: F401


def hydra_argv(argv: list[str]) -> list[str]:
    """The positional arguments are ``targets=[...]``; an old --flag is an error naming its new spelling."""
    reject_flags(argv, RENAMED, "captioning-prepare-data")
    return positional_to(argv, "targets")


def targets() -> str:
    """The targets with their downloads, sizes and layout, for the help page."""
    from captioning.data.download import describe_all

    return ("targets (downloads, sizes, layout):\n" + describe_all()
            + "\n  shapes           generated offline (about 20 s, 62 MB) from captioning/configs/data/<data>.yaml"
            + "\n                   -> <root>/<data>/: images/<split>/*.png annotations/captions_<split>.json")


def make_shapes(config: str, root: str | None) -> None:
    """Generate the synthetic shapes set of ``captioning/configs/data/<config>.yaml`` and load it once."""
    from hydra import compose, initialize_config_dir

    from captioning.data.datasets import load_dataset

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        overrides = [f"+data={config}"] + ([f"data.root={Path(root).resolve() / config}"] if root else [])
        cfg = compose(overrides=overrides).data
    start = time.perf_counter()
    splits = load_dataset(cfg)
    counts = ", ".join(f"{s} {len(r)}" for s, r in splits.items())
    print(f"shapes ({config}) ready in {time.perf_counter() - start:.1f} s: {counts} images")


def prepare_data(cfg: Any) -> None:
    """Generate or download each target in turn."""
    from captioning.config import PrepareDataConfig
    from captioning.data.download import prepare

    opts = command_options(PrepareDataConfig, cfg, required=("targets",))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    root = Path(opts.root) if opts.root else None
    for target in opts.targets:
        if target == "shapes":
            make_shapes(opts.data, opts.root)
        else:
            print(f"{target} ready in {prepare(target, root, opts.keep_archives)}")


main = hydra_command("captioning-prepare-data", CONFIG_PATH, CONFIG_NAME, register, prepare_data, rewrite=hydra_argv,
                     epilog=targets)

if __name__ == "__main__":
    sys.exit(main())
