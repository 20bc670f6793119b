"""Every kind of bad and odd image, end to end: feature extraction (on_bad_image fail lists all bad files,
skip drops them), the main job (the count lands in metrics.json `_run.bad_images`) and the caption CLI.
Single-function behaviour of load_rgb is in test_images.py; the cache mechanics in test_features.py."""

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captioning.commands.caption import main as caption_main
from captioning.features.cache import BadImagesError, extract_features
from tests.test_features import mean_colour_encoder

# name -> why it is bad (the words load_rgb's reason contains)
BAD = {"missing.png": "not found", "empty.jpg": "empty", "truncated.jpg": "truncated",
       "text.png": "not an image", "bomb.png": "decompression"}
ODD = ["rgb.png", "gray.png", "rgba.png", "palette.png", "palette_transparent.gif", "sixteen_bit.png",
       "cmyk.jpg", "one_pixel.png"]



def _bomb(path: Path, side: int = 30_000) -> None:
    """A 1x1 PNG whose header claims side x side pixels (with a valid CRC, so only the size is wrong)."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", side, side)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def image_zoo(folder: Path) -> tuple[list[str], list[str]]:
    """(odd-but-valid image paths, bad image paths), all in ``folder``; the missing one is not created."""
    folder.mkdir(parents=True, exist_ok=True)
    size, rng = (20, 14), np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (14, 20, 3), dtype=np.uint8)).save(folder / "rgb.png")
    Image.new("L", size, 90).save(folder / "gray.png")
    Image.new("RGBA", size, (255, 0, 0, 100)).save(folder / "rgba.png")
    Image.new("RGB", size, (0, 0, 255)).convert("P").save(folder / "palette.png")
    Image.new("P", size, 3).save(folder / "palette_transparent.gif", transparency=3)
    Image.fromarray(np.full((14, 20), 40_000, dtype=np.uint16)).save(folder / "sixteen_bit.png")
    Image.new("CMYK", size, (0, 255, 255, 0)).save(folder / "cmyk.jpg")
    Image.new("RGB", (1, 1), (0, 200, 0)).save(folder / "one_pixel.png")
    (folder / "empty.jpg").write_bytes(b"")
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    noise.save(folder / "whole.jpg")
    whole = (folder / "whole.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "whole.jpg").unlink()
    (folder / "text.png").write_text("not a picture, a shopping list: eggs, milk")
    _bomb(folder / "bomb.png")
    assert all((folder / name).is_file() for name in ODD)
    return [str(folder / n) for n in ODD], [str(folder / n) for n in BAD]


def test_extraction_lists_every_bad_image_or_skips_them_all(tmp_path):
    odd, bad = image_zoo(tmp_path / "img")
    paths = [p for pair in zip(odd, bad + [None] * len(odd)) for p in pair if p]  # good and bad interleaved
    with pytest.raises(BadImagesError) as info:
        extract_features(mean_colour_encoder(), paths, tmp_path / "cache", "zoo")
    assert set(info.value.bad) == set(bad)
    for path in bad:
        assert BAD[Path(path).name] in info.value.bad[path] and path in str(info.value)

    fs = extract_features(mean_colour_encoder(), paths, tmp_path / "cache", "zoo", on_bad_image="skip")
    assert [paths[i] for i in fs.kept] == odd and set(fs.bad) == set(bad)
    assert fs.features.shape == (len(odd), 3) and np.isfinite(fs.features).all()
    # converted, not garbage: gray stays gray, RGBA red on white is pink, 16-bit 40000 is 40000/65535
    by_name = dict(zip(ODD, np.asarray(fs.features)))
    np.testing.assert_allclose(by_name["gray.png"], [90 / 255] * 3, atol=1e-6)
    np.testing.assert_allclose(by_name["sixteen_bit.png"], [round(40_000 / 257) / 255] * 3, atol=1e-6)
    assert by_name["rgba.png"][0] == 1.0 and 0.5 < by_name["rgba.png"][1] < 0.7


def _coco(records: list[tuple[str, str]]) -> dict:
    """A COCO captions json over (absolute image path, caption) pairs."""
    return {"images": [{"id": i, "file_name": p} for i, (p, _) in enumerate(records)],
            "annotations": [{"id": i, "image_id": i, "caption": c} for i, (_, c) in enumerate(records)]}


@pytest.fixture(scope="module")
def zoo_data(tiny_root, tiny_prepared, tmp_path_factory):
    """Overrides for a `data=custom` run: 12 shapes images + the image zoo in train, 4 shapes images in val/test."""
    root = tmp_path_factory.mktemp("zoo_data")
    odd, bad = image_zoo(root / "zoo")
    train, val = tiny_prepared.splits["train"], tiny_prepared.splits["val"]
    splits = {"train": [(r.path, r.captions[0]) for r in train[:12]] + [(p, "a red circle") for p in odd + bad],
              "val": [(r.path, r.captions[0]) for r in val[:4]], "test": [(r.path, r.captions[0]) for r in val[4:8]]}
    overrides = ["data=custom", f"data.root={root}", "data.min_word_count=1", "data.check_files=false",
                 "encoder=timm", "encoder.name=test_resnet", "encoder.weights=null", "encoder.image_size=32",
                 "encoder.num_workers=0", "schedule.stages.cross_entropy.epochs=1", "evaluate.baselines=[]", "num_threads=1",
                 "data.eval_splits=[test]"]
    for name, records in splits.items():
        (root / f"{name}.json").write_text(json.dumps(_coco(records)))
        overrides += [f"data.splits.{name}.annotations={name}.json", f"data.splits.{name}.images=/"]
    return overrides, bad


def test_main_job_fails_listing_bad_images_or_skips_and_counts_them(tiny_root, zoo_data):
    from captioning.pipeline import run, run_options
    from tests.conftest import tiny_cfg

    overrides, bad = zoo_data
    with pytest.raises(BadImagesError) as info:
        run(run_options(tiny_cfg(tiny_root, *overrides)), tiny_root / "zoo_fail")
    assert set(info.value.bad) == set(bad)
    assert not (tiny_root / "zoo_fail" / "checkpoints").exists()  # stopped before training

    run(run_options(tiny_cfg(tiny_root, *overrides, "on_bad_image=skip")), tiny_root / "zoo_skip")
    metrics = json.loads((tiny_root / "zoo_skip" / "metrics.json").read_text())
    assert metrics["_run"]["bad_images"] == len(bad) and "Bleu_4" in metrics["test"]


def test_caption_cli_captions_odd_images_and_names_each_bad_one(tmp_path, tiny_checkpoint, capsys):
    import torch

    # the checkpoint's random encoder (weights=null) is drawn anew when loaded: seed it, so that what the
    # random decoder says does not depend on the tests that ran before
    torch.manual_seed(0)
    odd, bad = image_zoo(tmp_path / "img")
    assert caption_main([*odd, *bad, f"checkpoint={tiny_checkpoint}", "decoding.method=greedy"]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == odd and all(line.split("\t")[1] for line in lines)
    errors = err.splitlines()
    assert len(errors) == len(bad)
    for path, line in zip(bad, errors):
        assert line.startswith(f"error: bad image {path}: ") and BAD[Path(path).name] in line
    # a folder argument finds the images in it; only good ones: exit status 0
    for path in bad:
        Path(path).unlink(missing_ok=True)
    assert caption_main([str(tmp_path / "img"), f"checkpoint={tiny_checkpoint}", "decoding.method=beam"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(odd)
