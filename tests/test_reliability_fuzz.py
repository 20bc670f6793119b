"""Fuzz: 240 generated malformed images through load_rgb, feature extraction and the caption CLI, and 200
caption files with hostile captions through the COCO loader. Every outcome is success or a documented
error (BadImageError / BadImagesError, DataError), and the feature cache left behind is whole.
(Structurally malformed annotation files are fuzzed in test_coco.py.)"""

import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captioning.commands.caption import main as caption_main
from captioning.data.coco import DataError, encode_captions, load_coco_captions
from captioning.features.cache import extract_features
from captioning.data.images import BadImageError, load_rgb
from captioning.text.tokenizer import tokenize
from captioning.text.vocab import Vocabulary
from tests.test_features import mean_colour_encoder

FORMATS = [("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"), ("PNG", "P"), ("PNG", "I;16"), ("JPEG", "RGB"),
           ("JPEG", "L"), ("JPEG", "CMYK"), ("GIF", "P"), ("BMP", "RGB"), ("TIFF", "RGB"), ("TIFF", "I;16"),
           ("WEBP", "RGBA")]
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}
# malformed TIFFs make PIL warn about corrupt EXIF before it raises; the warnings are expected here
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")



def _valid(fmt: str, mode: str, rng: np.random.Generator) -> bytes:
    h, w = (int(v) for v in rng.integers(1, 24, 2))
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _mutate(data: bytes, rng: random.Random) -> bytes:
    """One of: truncated, bits flipped (in the header or anywhere), a span overwritten or repeated, junk."""
    kind, b = rng.randrange(7), bytearray(data)
    if kind == 0:
        return bytes(b[: rng.randrange(len(b))])
    if kind in (1, 2):
        span = min(len(b), 64) if kind == 1 else len(b)  # headers hold the sizes and modes decoders trust
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(span)] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 3:
        start = rng.randrange(len(b))
        b[start : start + rng.randint(1, 16)] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        return bytes(b)
    if kind == 4:
        start = rng.randrange(len(b))
        return bytes(b[:start] + b[start : start + 32] * rng.randint(2, 5) + b[start:])
    if kind == 5:
        return bytes(b[:16]) + bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))


@pytest.fixture(scope="module")
def fuzzed_images(tmp_path_factory) -> list[str]:
    folder, rng, nrng = tmp_path_factory.mktemp("fuzz_images"), random.Random(0), np.random.default_rng(0)
    paths = []
    for i in range(240):
        fmt, mode = FORMATS[i % len(FORMATS)]
        data = _valid(fmt, mode, nrng)
        if i % 8:  # one in eight stays valid (some of the mutations are harmless too)
            data = _mutate(data, rng)
        path = folder / f"{i:03d}{SUFFIX[fmt]}"
        path.write_bytes(data)
        paths.append(str(path))
    return paths


def _outcome(path: str) -> str:
    """"ok" or the BadImageError reason; anything else escapes and fails the test."""
    try:
        image = load_rgb(path)
    except BadImageError as e:
        assert e.path == path and e.reason
        return e.reason
    assert image.mode == "RGB" and image.width >= 1 and image.height >= 1
    return "ok"


def test_fuzzed_images_load_or_raise_bad_image_error(fuzzed_images):
    outcomes = [_outcome(p) for p in fuzzed_images]
    assert 30 <= outcomes.count("ok") <= 200  # both outcomes are exercised


def test_fuzzed_images_through_extraction_leave_a_whole_cache(fuzzed_images, tmp_path):
    ok = [i for i, p in enumerate(fuzzed_images) if _outcome(p) == "ok"]
    fs = extract_features(mean_colour_encoder(), fuzzed_images, tmp_path, "fuzz", batch_size=32,
                          on_bad_image="skip")
    assert fs.kept.tolist() == ok and len(fs.bad) == len(fuzzed_images) - len(ok)
    assert np.isfinite(fs.features).all()
    cache = fs.cache_dir
    meta = json.loads((cache / "meta.json").read_text())
    assert len(meta["bad"]) == len(fs.bad)
    assert np.load(cache / "features.npy", mmap_mode="r").shape == (len(fuzzed_images), 3)
    leftovers = [*cache.glob("*partial*"), *cache.glob("progress.json"), *cache.glob(".*.tmp")]
    assert not leftovers


def test_fuzzed_images_through_the_caption_cli(fuzzed_images, tiny_checkpoint, capsys):
    ok = [p for p in fuzzed_images if _outcome(p) == "ok"]
    status = caption_main([*fuzzed_images, f"checkpoint={tiny_checkpoint}", "decoding.method=greedy", "decoding.batch_size=64"])
    out, err = capsys.readouterr()
    assert status == 1
    assert [line.split("\t")[0] for line in out.splitlines()] == ok
    errors = err.splitlines()
    assert len(errors) == len(fuzzed_images) - len(ok) and all(e.startswith("error: bad image ") for e in errors)


HOSTILE = ["", " ", "\t\n", ".", "...", "?!", "--", "\u00a0", "\u200b", "\x00", "é", "a\x00b",
           "日本語のキャプション", "🙂 a dog 🐶", "A DOG.", "a  dog", "a dog " * 300, "x" * 5000,
           "<script>alert(1)</script>", "\u202eevil", "a\u0301",
           "ﬁne", "\\N{SNOWMAN}", "'s", "&amp;", "-lrb- -rrb-", "a\r\nb", "١٢٣", "\ud800"]


def test_hostile_captions_load_and_encode_or_raise_a_data_error(tmp_path):
    """200 COCO files whose captions come from a hostile list: every kept caption tokenises and encodes."""
    rng = random.Random(0)
    (tmp_path / "img.png").write_bytes(b"")  # check_files only needs the file to exist
    outcomes = {"ok": 0, "error": 0}
    for i in range(200):
        caps = [rng.choice(HOSTILE) + rng.choice(["", " a red circle"]) * rng.randint(0, 1) for _ in range(5)]
        data = {"images": [{"id": 1, "file_name": "img.png"}, {"id": 2, "file_name": "img.png"}],
                "annotations": [{"id": k, "image_id": 1 + k % 2, "caption": c} for k, c in enumerate(caps)]}
        path = tmp_path / f"fuzz{i}.json"
        path.write_text(json.dumps(data))  # lone surrogates survive as \\ud800 escapes
        try:
            records = load_coco_captions(path, tmp_path)
        except DataError as e:
            assert str(path) in str(e)
            outcomes["error"] += 1
            continue
        outcomes["ok"] += 1
        assert all(tokenize(c) for r in records for c in r.captions)
        vocab = Vocabulary.build((tokenize(c) for r in records for c in r.captions), min_count=1)
        tokens, owners = encode_captions(records, vocab, max_len=16)
        assert tokens.shape == (sum(len(r.captions) for r in records), 18) and len(owners) == len(tokens)
    assert outcomes["ok"] > 100
