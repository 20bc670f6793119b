"""Prepare datasets for captioning/configs/data/: download the public ones, or generate the synthetic shapes.

    captioning-prepare-data shapes                    # offline, ~20 s: data/shapes (default set)
    captioning-prepare-data shapes --data shapes_tiny
    captioning-prepare-data coco2014 tinyshakespeare  # needs internet and disk space
    captioning-prepare-data flickr8k --root /big/disk # then train with CAPTIONING_DATA=/big/disk

(`python scripts/prepare_data.py ...` is the same command.) Files go to <root>/<dataset>/ with root =
--root, else $CAPTIONING_DATA, else ./data, which is where the data configs look. Downloads resume after
an interruption (finished files are skipped).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from captioning import CONFIG_DIR
from captioning.data.download import DATASETS, describe_all, prepare


def make_shapes(config: str, root: str | None) -> None:
    """Generate the synthetic shapes set of ``captioning/configs/data/<config>.yaml`` and load it once."""
    from hydra import compose, initialize_config_dir

    import captioning.config  # noqa: F401 (registers the schema the data configs extend)
    from captioning.data.datasets import load_dataset

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        overrides = [f"+data={config}"] + ([f"data.root={Path(root).resolve() / config}"] if root else [])
        cfg = compose(overrides=overrides).data
    start = time.perf_counter()
    splits = load_dataset(cfg)
    counts = ", ".join(f"{s} {len(r)}" for s, r in splits.items())
    print(f"shapes ({config}) ready in {time.perf_counter() - start:.1f} s: {counts} images")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog="targets (downloads, sizes, layout):\n" + describe_all()
        + "\n  shapes           generated offline (about 20 s, 62 MB) from captioning/configs/data/<data>.yaml"
        + "\n                   -> <root>/<data>/: images/<split>/*.png annotations/captions_<split>.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("targets", nargs="+", choices=[*DATASETS, "shapes"], metavar="TARGET",
                        help=f"one or more of: shapes, {', '.join(DATASETS)}")  # fmt: skip
    parser.add_argument("--root", help="data root (default: $CAPTIONING_DATA or ./data)")
    parser.add_argument("--data", "--config", dest="data", default="shapes",
                        help="data config for the shapes target, as data=<name> of the training config "
                             "(default: shapes; --config is the old spelling)")
    parser.add_argument("--keep-archives", action="store_true", help="keep downloaded zips after extracting")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    root = Path(args.root) if args.root else None
    for target in args.targets:
        if target == "shapes":
            make_shapes(args.data, args.root)
        else:
            print(f"{target} ready in {prepare(target, root, args.keep_archives)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
