"""Extract (a shard of) the encoder features of a dataset: `captioning-extract [shard=i/n]`.

Takes the same options as captioning-train (data, encoder, cache_dir, ...). Examples:
    captioning-extract data=coco2014                                  # everything, one process
    captioning-extract -m data=coco2014 shard=0/4,1/4,2/4,3/4         # 4 jobs (any launcher)
The job that finds every shard of a split finished merges them; training then reuses the cache.
"""

import sys

from captioning import CONFIG_DIR
from captioning.commands.cli import hydra_command

CONFIG_PATH, CONFIG_NAME = str(CONFIG_DIR), "extract"


def register() -> None:
    """Store the config schemas in Hydra's ConfigStore."""
    import captioning.config  # noqa: F401


def extract(cfg) -> None:
    """Check the options and extract this job's shard of every split."""
    import dataclasses

    import torch

    from captioning.features.shards import extract_dataset_shard, parse_shard
    from captioning.pipeline import resolve_device, run_options
    from captioning.utils.memory import keep_freed_memory

    opts = run_options(cfg)  # every bad value at once, before any work
    index, count = parse_shard(cfg.shard)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    keep_freed_memory()
    source = dataclasses.replace(opts.source, device=resolve_device(cfg.device))
    for split, state in extract_dataset_shard(source, index, count, merge=cfg.merge).items():
        print(f"{split}: {state}")


main = hydra_command("captioning-extract", CONFIG_PATH, CONFIG_NAME, register, extract)

if __name__ == "__main__":
    sys.exit(main())
