"""Sharded feature extraction: shards in any order, merged into the cache extract_features reuses."""

import os

import numpy as np
import pytest

from captioning.features.cache import BadImagesError, extract_features
from captioning.features.shards import (ShardsIncomplete, extract_shard, merge_shards, parse_shard, shard_rows,
                                    shards_finished)
from tests.test_features import COLOURS, expected, make_images, mean_colour_encoder


def test_shard_specs_and_rows_cover_every_image_once():
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "-1/3", "1", "a/b"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
    rows = [list(shard_rows(7, i, 3)) for i in range(3)]
    assert sum(rows, []) == list(range(7)) and [len(r) for r in rows] == [2, 2, 3]


def test_shards_merge_into_the_cache_a_whole_extraction_reuses(tmp_path):
    paths = make_images(tmp_path / "img")
    os.remove(paths[4])  # one bad image: recorded by its shard, judged at the merge
    cache = tmp_path / "cache"
    for index in (2, 0):  # shards run in any order
        extract_shard(mean_colour_encoder(), paths, cache, "shapes/train", index, 3, batch_size=2)
    assert not shards_finished(mean_colour_encoder(), paths, cache, "shapes/train", 3)
    with pytest.raises(ShardsIncomplete, match=r"shards \[1\] of 3"):
        merge_shards(mean_colour_encoder(), paths, cache, "shapes/train", 3)
    extract_shard(mean_colour_encoder(), paths, cache, "shapes/train", 1, 3)
    merged = merge_shards(mean_colour_encoder(), paths, cache, "shapes/train", 3, on_bad_image="skip")
    kept = [0, 1, 2, 3, 5, 6]
    assert merged.kept.tolist() == kept and list(merged.bad) == [paths[4]]
    np.testing.assert_allclose(merged.features, expected([COLOURS[i] for i in kept]), atol=1e-6)
    # the merged cache is the one a plain extraction looks for: nothing is computed again
    enc = mean_colour_encoder()
    whole = extract_features(enc, paths, cache, "shapes/train", on_bad_image="skip")
    assert enc.backbone.seen == 0 and whole.cache_dir == merged.cache_dir
    assert isinstance(whole.features, np.memmap) and not whole.features.flags.writeable
    with pytest.raises(BadImagesError):  # and the run's own policy still applies
        extract_features(enc, paths, cache, "shapes/train")
    assert not list(cache.glob("*shard*"))  # merged: the shard caches are gone
