"""Feature cache: computed once, reused, noticed when stale, resumed after a kill, bad images failed or skipped."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import captioning.features.cache as features_mod
from captioning.features.cache import BadImagesError, extract_features
from captioning.data.images import ImageTransform
from captioning.features.backbones import SequentialBackbone
from captioning.features.encoder import Encoder

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (128, 128, 128)]


class MeanColour(SequentialBackbone):
    """Feature = the image's mean colour in [0, 1] (with mean 0 / std 1 normalisation); counts images seen."""

    def __init__(self, fail_after: int | None = None, delay: float = 0.0):
        super().__init__(nn.Identity(), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1)))
        self.seen, self.fail_after, self.delay = 0, fail_after, delay

    def feature_map(self, x):
        if self.fail_after is not None and self.seen >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.seen += len(x)
        time.sleep(self.delay)
        return x


def mean_colour_encoder(size: int = 8, **backbone_kw) -> Encoder:
    enc = Encoder(MeanColour(**backbone_kw), ImageTransform(size, mean=(0, 0, 0), std=(1, 1, 1)),
                  name="mean-colour", source="test", weights_id="none")
    enc.backbone.seen = 0  # forget the construction-time probe
    return enc


def make_images(root, colours=COLOURS):
    root.mkdir(exist_ok=True)
    paths = []
    for i, colour in enumerate(colours):
        paths.append(str(root / f"{i}.png"))
        Image.new("RGB", (12, 10), colour).save(paths[-1])
    return paths


def expected(colours):
    return np.array(colours, dtype=np.float32) / 255


def test_extracts_once_then_reuses_a_read_only_memmap(tmp_path):
    paths = make_images(tmp_path / "img")
    enc = mean_colour_encoder()
    first = extract_features(enc, paths, tmp_path / "cache", "shapes/train", batch_size=3)
    np.testing.assert_allclose(first.features, expected(COLOURS), atol=1e-6)
    assert isinstance(first.features, np.memmap) and not first.features.flags.writeable
    assert first.kept.tolist() == list(range(len(paths))) and first.bad == {}
    assert enc.backbone.seen == len(paths)
    again = extract_features(enc, paths, tmp_path / "cache", "shapes/train", batch_size=3)
    assert enc.backbone.seen == len(paths) and again.cache_dir == first.cache_dir
    meta = json.loads((first.cache_dir / "meta.json").read_text())
    assert meta["encoder"] == enc.cache_key and meta["n"] == len(paths) and meta["dim"] == 3
    assert not list(first.cache_dir.glob("*partial*")) and not (first.cache_dir / "progress.json").exists()


def test_any_change_of_key_gets_its_own_cache(tmp_path):
    paths = make_images(tmp_path / "img")
    run = lambda enc, p=paths, key="shapes/train": extract_features(enc, p, tmp_path / "c", key).cache_dir  # noqa
    base = run(mean_colour_encoder())
    dirs = {base, run(mean_colour_encoder(size=6)), run(mean_colour_encoder(), paths[:-1]),
            run(mean_colour_encoder(), key="shapes/val")}
    assert len(dirs) == 4


def test_workers_give_the_same_features(tmp_path):
    paths = make_images(tmp_path / "img")
    fs = extract_features(mean_colour_encoder(), paths, tmp_path / "c", "k", batch_size=2, num_workers=2)
    np.testing.assert_allclose(fs.features, expected(COLOURS), atol=1e-6)


def test_threaded_batches_equal_the_data_loaders_in_order(tmp_path):
    """num_workers=0 decodes each batch with a thread pool: the same rows, images and reasons, in order, as a
    DataLoader gives, the last batch short; the images stacked in channels-last memory (collate_rows)."""
    import torch
    from torch.utils.data import DataLoader

    from captioning.features.cache import threaded_batches

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return 7

        def __getitem__(self, k):
            return k * 10, torch.full((3, 2, 2), k, dtype=torch.uint8), "bad" if k == 3 else ""

    got, want = list(threaded_batches(Rows(), 3, threads=3)), list(DataLoader(Rows(), batch_size=3))
    assert [len(b[0]) for b in got] == [3, 3, 1]
    for (i, x, r), (j, y, s) in zip(got, want, strict=True):
        assert torch.equal(i, j) and torch.equal(x, y) and list(r) == list(s)
        assert x.is_contiguous(memory_format=torch.channels_last) and x.dtype == torch.uint8


def test_replaced_image_is_noticed(tmp_path):
    paths = make_images(tmp_path / "img")
    extract_features(mean_colour_encoder(), paths, tmp_path / "c", "k")
    Image.new("RGB", (20, 20), (0, 0, 0)).save(paths[2])  # same path, new content
    fs = extract_features(mean_colour_encoder(), paths, tmp_path / "c", "k")
    np.testing.assert_allclose(fs.features[2], [0, 0, 0], atol=1e-6)


def test_interrupted_extraction_resumes_from_the_recorded_row(tmp_path, monkeypatch):
    monkeypatch.setattr(features_mod, "FLUSH_SECONDS", 0.0)  # a progress record after every batch
    paths = make_images(tmp_path / "img")
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract_features(mean_colour_encoder(fail_after=4), paths, tmp_path / "c", "k", batch_size=2)
    cache_dir = next((tmp_path / "c" / "k").iterdir())
    assert not (cache_dir / "meta.json").exists() and not (cache_dir / "features.npy").exists()
    assert json.loads((cache_dir / "progress.json").read_text())["rows_done"] == 4
    enc = mean_colour_encoder()
    fs = extract_features(enc, paths, tmp_path / "c", "k", batch_size=2)
    assert enc.backbone.seen == len(paths) - 4
    np.testing.assert_allclose(fs.features, expected(COLOURS), atol=1e-6)


@pytest.mark.parametrize("damage", ["no_progress", "bad_progress", "short_partial"])
def test_a_partial_cache_is_never_trusted_without_its_record(tmp_path, monkeypatch, damage):
    monkeypatch.setattr(features_mod, "FLUSH_SECONDS", 0.0)
    paths = make_images(tmp_path / "img")
    with pytest.raises(RuntimeError):
        extract_features(mean_colour_encoder(fail_after=4), paths, tmp_path / "c", "k", batch_size=2)
    cache_dir = next((tmp_path / "c" / "k").iterdir())
    partial, progress = cache_dir / "features.partial.npy", cache_dir / "progress.json"
    if damage == "no_progress":
        progress.unlink()
    elif damage == "bad_progress":
        progress.write_text('{"rows_done": ')
    else:
        partial.write_bytes(partial.read_bytes()[:100])
    enc = mean_colour_encoder()
    fs = extract_features(enc, paths, tmp_path / "c", "k", batch_size=2)
    assert enc.backbone.seen == len(paths)  # started over
    np.testing.assert_allclose(fs.features, expected(COLOURS), atol=1e-6)


KILLED_CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
import captioning.features.cache as f
from test_features import mean_colour_encoder
f.FLUSH_SECONDS = 0.0
f.extract_features(mean_colour_encoder(delay=0.2), {paths!r}, {cache!r}, "k", batch_size=1)
"""


def test_survives_kill_9_mid_extraction(tmp_path):
    paths = make_images(tmp_path / "img", COLOURS * 6)
    code = KILLED_CHILD.format(tests=os.path.dirname(__file__), paths=paths, cache=str(tmp_path / "c"))
    child = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while not list((tmp_path / "c").glob("k/*/progress.json")) and time.monotonic() < deadline:
        assert child.poll() is None, "the extraction process died on its own"
        time.sleep(0.05)
    time.sleep(0.3)
    child.send_signal(signal.SIGKILL)
    child.wait()
    cache_dir = next((tmp_path / "c" / "k").iterdir())
    done = json.loads((cache_dir / "progress.json").read_text())["rows_done"]
    assert 0 < done < len(paths) and not (cache_dir / "meta.json").exists()
    enc = mean_colour_encoder()
    fs = extract_features(enc, paths, tmp_path / "c", "k", batch_size=4)
    assert enc.backbone.seen <= len(paths) - done
    np.testing.assert_allclose(fs.features, expected(COLOURS * 6), atol=1e-6)


def _break(paths):
    """Make image 1 missing and image 4 a truncated file."""
    os.remove(paths[1])
    with open(paths[4], "r+b") as f:
        f.truncate(30)


def test_fail_lists_every_bad_image_then_recomputes_only_them_when_fixed(tmp_path):
    paths = make_images(tmp_path / "img")
    _break(paths)
    with pytest.raises(BadImagesError) as info:
        extract_features(mean_colour_encoder(), paths, tmp_path / "c", "k")
    assert set(info.value.bad) == {paths[1], paths[4]}
    assert paths[1] in str(info.value) and paths[4] in str(info.value) and "on_bad_image=skip" in str(info.value)
    for i in (1, 4):  # the user replaces the bad files
        Image.new("RGB", (12, 10), COLOURS[i]).save(paths[i])
    enc = mean_colour_encoder()
    fs = extract_features(enc, paths, tmp_path / "c", "k")
    assert enc.backbone.seen == 2
    np.testing.assert_allclose(fs.features, expected(COLOURS), atol=1e-6)


def test_skip_drops_bad_images_and_says_which(tmp_path):
    paths = make_images(tmp_path / "img")
    _break(paths)
    fs = extract_features(mean_colour_encoder(), paths, tmp_path / "c", "k", on_bad_image="skip")
    kept = [0, 2, 3, 5, 6]
    assert fs.kept.tolist() == kept
    assert set(fs.bad) == {paths[1], paths[4]} and "not found" in fs.bad[paths[1]]
    assert isinstance(fs.features, np.memmap) and fs.features.shape == (5, 3)
    np.testing.assert_allclose(fs.features, expected([COLOURS[i] for i in kept]), atol=1e-6)
    # The failure is remembered: fail mode reports it from the cache without recomputing anything.
    enc = mean_colour_encoder()
    with pytest.raises(BadImagesError):
        extract_features(enc, paths, tmp_path / "c", "k")
    assert enc.backbone.seen == 0


def test_argument_mistakes_are_named(tmp_path):
    enc = mean_colour_encoder()
    with pytest.raises(ValueError, match="on_bad_image"):
        extract_features(enc, ["x.png"], tmp_path, "k", on_bad_image="ignore")
    with pytest.raises(ValueError, match="no images"):
        extract_features(enc, [], tmp_path, "k")
