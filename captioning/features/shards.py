"""Feature extraction split across jobs or DDP ranks, merged into the one cache training reads.

Shard i of n extracts a contiguous block of each split's images into a feature cache of its own
(``extract_features`` under the dataset key ``<key>.shard<i>of<n>``: resumable, memory-mapped, bad
images recorded). ``merge_shards`` then writes the cache that ``extract_features`` would have written
for the whole list, so a later run finds it valid and extracts nothing. Shards may run in any order,
on any machines that share ``cache_dir``; a shard job that finds every shard finished merges them.

    captioning-extract shard=0/4   # ... shard=3/4, e.g. a SLURM array or a -m sweep
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from captioning.data.datasets import dataset_key, load_dataset
from captioning.features.cache import FeatureSet, FeatureCache, cache_layout, file_signature, extract_features
from captioning.features.encoder import build_encoder, validate_encoder_config
from captioning.features.prepare import DataSource
from captioning.utils.seeding import seed_everything

log = logging.getLogger(__name__)
COPY_ROWS = 4096  # rows copied at a time, so a merge never holds a whole shard in memory


class ShardsIncomplete(RuntimeError):
    """Some shards of a split have no finished cache yet; ``missing`` lists their indices."""

    def __init__(self, dataset_key: str, missing: list[int], count: int):
        self.missing = missing
        super().__init__(f"{dataset_key}: shards {missing} of {count} are not extracted (or their images changed "
                         f"since); run them (shard=i/{count}) with the same data, encoder and cache_dir, then merge")


def parse_shard(spec: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in str(spec).split("/"))
    except ValueError:
        raise ValueError(f"shard must look like i/n (e.g. 0/4), got {spec!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"shard {spec!r}: need 0 <= i < n")
    return index, count


def shard_rows(n_items: int, index: int, count: int) -> range:
    """The contiguous block of rows that shard ``index`` of ``count`` owns (sizes differ by at most one)."""
    return range(n_items * index // count, n_items * (index + 1) // count)


def shard_key(dataset_key: str, index: int, count: int) -> str:
    """Dataset key of one shard's own cache."""
    return f"{dataset_key}.shard{index}of{count}"


def extract_shard(encoder: torch.nn.Module, paths: Sequence[str], cache_root: str | os.PathLike, dataset_key: str,
                  index: int, count: int, batch_size: int = 64, num_workers: int = 0) -> FeatureSet:
    """Features of shard ``index`` of ``count`` of ``paths`` (bad images are recorded; the merge judges them)."""
    rows = shard_rows(len(paths), index, count)
    if len(rows) == 0:
        raise ValueError(f"{dataset_key}: {len(paths)} images cannot fill {count} shards; use fewer shards")
    return extract_features(encoder, [str(paths[i]) for i in rows], cache_root, shard_key(dataset_key, index, count),
                            batch_size=batch_size, num_workers=num_workers, on_bad_image="skip")


def merge_shards(encoder: torch.nn.Module, paths: Sequence[str], cache_root: str | os.PathLike, dataset_key: str,
                 count: int, on_bad_image: str = "fail") -> FeatureSet:
    """Write the whole list's cache from ``count`` finished shards and open it as ``extract_features`` does.

    Raises ShardsIncomplete when a shard is missing; does nothing but open the cache when it is valid already.
    """
    paths = [str(p) for p in paths]
    full = FeatureCache(Path(cache_root), dataset_key, encoder.cache_key, paths, *cache_layout(encoder))
    with full.locked():
        signatures = [file_signature(p) for p in paths]
        if full.reuse(signatures) is None:
            _write_merged(full, encoder, paths, signatures, cache_root, dataset_key, count)
    return extract_features(encoder, paths, cache_root, dataset_key, on_bad_image=on_bad_image)


def _shards(encoder: torch.nn.Module, paths: list[str], signatures: list, cache_root, dataset_key: str,
            count: int) -> list[tuple[range, FeatureCache, dict[int, str] | None]]:
    """(rows, cache, bad rows or None when unfinished or out of date) of every shard."""
    out = []
    for index in range(count):
        rows = shard_rows(len(paths), index, count)
        part = FeatureCache(Path(cache_root), shard_key(dataset_key, index, count), encoder.cache_key,
                      [paths[i] for i in rows], *cache_layout(encoder))
        out.append((rows, part, part.reuse([signatures[i] for i in rows])))
    return out


def _write_merged(full: FeatureCache, encoder: torch.nn.Module, paths: list[str], signatures: list, cache_root,
                  dataset_key: str, count: int) -> None:
    """Copy every shard's rows into the full cache's partial file, then let the cache finish itself."""
    started = time.perf_counter()
    shards = _shards(encoder, paths, signatures, cache_root, dataset_key, count)
    missing = [i for i, (_, _, bad) in enumerate(shards) if bad is None]
    if missing:
        raise ShardsIncomplete(dataset_key, missing, count)
    out = np.lib.format.open_memmap(full.partial, mode="w+", dtype=full.dtype, shape=full.shape)
    merged_bad: dict[int, str] = {}
    for rows, part, bad in shards:
        source = np.load(part.final, mmap_mode="r")
        for start in range(0, len(rows), COPY_ROWS):
            block = source[start : start + COPY_ROWS]
            out[rows.start + start : rows.start + start + len(block)] = block
        merged_bad.update({rows.start + i: reason for i, reason in bad.items()})
    out.flush()
    del out
    full.finish(merged_bad, signatures, time.perf_counter() - started)
    for _, part, _ in shards:  # the merged cache holds every row: the shards would only double the disk use
        shutil.rmtree(part.dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # its dataset-key folder, unless another encoder's cache is there
            part.dir.parent.rmdir()
    log.info("merged %d shards of %s (%d images, %d bad)", count, dataset_key, len(paths), len(merged_bad))


def shards_finished(encoder: torch.nn.Module, paths: Sequence[str], cache_root: str | os.PathLike, dataset_key: str,
                    count: int) -> bool:
    """Whether every shard of ``paths`` has a finished, current cache (so a merge would succeed)."""
    paths = [str(p) for p in paths]
    shards = _shards(encoder, paths, [file_signature(p) for p in paths], cache_root, dataset_key, count)
    return all(bad is not None for _, _, bad in shards)


def extract_dataset_shard(source: DataSource, index: int, count: int, merge: bool = True,
                          splits: list[str] | None = None, barrier: Callable[[], None] | None = None) -> dict[str, str]:
    """Shard ``index``/``count`` of the features of ``splits`` (default all) of ``source``; merge finished ones.

    ``barrier`` (DDP: every rank calls this with its rank) makes rank 0 generate the data before the
    others read it, and every rank finish its shard before rank 0 merges. Returns {split: state}.
    """
    wait = barrier or (lambda: None)
    if index != 0:
        wait()  # rank 0 generates (synthetic) data first; the others then find it finished, not locked
    records = load_dataset(source.data, splits)
    if index == 0:
        wait()
    seed_everything(source.seed)  # random-init encoders (tests) must agree across shards
    enc_cfg = validate_encoder_config(source.encoder)
    encoder = build_encoder(enc_cfg)
    if str(source.device).startswith("cuda"):
        encoder = encoder.to(source.device)
    # a split smaller than the world gets one image per shard, and the ranks beyond it idle
    lists = {name: ([r.path for r in split], dataset_key(source.data, name), min(count, len(split)))
             for name, split in records.items()}
    states = {}
    for name, (paths, key, n) in lists.items():
        full = FeatureCache(Path(source.cache_dir), key, encoder.cache_key, paths, *cache_layout(encoder))
        if full.reuse([file_signature(p) for p in paths]) is not None:
            states[name] = "cached"
        elif index < n:
            extract_shard(encoder, paths, source.cache_dir, key, index, n, enc_cfg.batch_size,
                          enc_cfg.num_workers)
            states[name] = f"shard {index}/{n} done"
        else:
            states[name] = "nothing to extract"
    wait()
    if merge and (barrier is None or index == 0):
        for name, (paths, key, n) in lists.items():
            if states[name] != "cached" and shards_finished(encoder, paths, source.cache_dir, key, n):
                merge_shards(encoder, paths, source.cache_dir, key, n, on_bad_image="skip")
                states[name] = "merged"
    wait()
    return states
