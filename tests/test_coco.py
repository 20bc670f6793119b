import json
import logging
from collections import Counter

import pytest
import torch

from captioning.data.coco import (
    AnnotationError,
    DataError,
    ImageRecord,
    MissingImagesError,
    all_captions,
    encode_captions,
    load_coco_captions,
    load_karpathy,
)
from captioning.text.tokenizer import tokenize
from captioning.text.vocab import END, PAD, START, UNK, Vocabulary
from tests.fixtures import COCO_CAPTIONS as COCO


@pytest.fixture(scope="module")
def coco_records():
    return load_coco_captions(COCO, "/images/val2014", check_files=False)


def test_real_coco_captions_load(coco_records):
    raw = json.loads(COCO.read_text(encoding="utf-8"))  # the counts come from the file itself
    assert len(coco_records) == len(raw["images"])
    assert sum(len(r.captions) for r in coco_records) == len(raw["annotations"])
    assert [r.image_id for r in coco_records] == sorted(r.image_id for r in coco_records)
    first = coco_records[0]
    assert first.image_id == 196 and first.scene is None
    assert first.path == "/images/val2014/COCO_val2014_000000000196.jpg"
    assert first.captions[1] == "A variety of food in dishes is displayed on a table."


def test_real_coco_vocabulary_and_encoding(coco_records):
    vocab = Vocabulary.from_captions(all_captions(coco_records), min_count=5)
    tokens, owner = encode_captions(coco_records[:50], vocab, max_len=16)
    n_caps = sum(len(r.captions) for r in coco_records[:50])
    assert tokens.shape == (n_caps, 18) and owner.shape == (n_caps,) and tokens.dtype == torch.long
    assert (tokens[:, 0] == START).all()
    assert owner.tolist() == [i for i, r in enumerate(coco_records[:50]) for _ in r.captions]
    # words seen fewer than 5 times in the excerpt ("variety", "displayed") come back as <unk>
    counts = Counter(w for caption in all_captions(coco_records) for w in tokenize(caption))
    words = "a variety of food in dishes is displayed on a table".split()
    assert vocab.decode(tokens[1].tolist()) == " ".join(w if counts[w] >= 5 else "<unk>" for w in words)


def test_encode_pads_truncates_and_marks_end():
    vocab = Vocabulary.build([["a", "b", "c"]], min_count=1)
    recs = [ImageRecord(1, "x", ["a b", "a b c zzz c b a"]), ImageRecord(2, "y", ["c"])]
    tokens, owner = encode_captions(recs, vocab, max_len=4)
    a, b, c = (vocab.stoi[w] for w in "abc")
    assert tokens.tolist() == [[START, a, b, END, PAD, PAD], [START, a, b, c, UNK, END], [START, c, END, PAD, PAD, PAD]]
    assert owner.tolist() == [0, 0, 1]


def _write(tmp_path, obj, name="ann.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def _coco(captions=("a cat", "a dog"), **extra):
    images = [{"id": 1, "file_name": "1.jpg"}, {"id": 2, "file_name": "2.jpg"}]
    anns = [{"id": 10 + i, "image_id": 1 + i % 2, "caption": c} for i, c in enumerate(captions)]
    return {"images": images, "annotations": anns, **extra}


@pytest.mark.parametrize(
    "content, where",
    [
        ("{not json", "not valid json"),
        ([1, 2], "top level"),
        ({"images": []}, "annotations: missing or not a list"),
        ({"images": [{"id": 1}], "annotations": []}, r"images\[0\]: missing key 'file_name'"),
        ({"images": [{"id": "1", "file_name": "a"}], "annotations": []}, r"images\[0\]\.id: expected int"),
        (_coco() | {"annotations": [{"id": 1, "image_id": 1}]}, r"annotations\[0\]: missing key 'caption'"),
        (_coco() | {"annotations": [{"id": 1, "image_id": 1, "caption": 5}]}, r"annotations\[0\]\.caption"),
        (_coco() | {"annotations": [{"id": 1, "image_id": 7, "caption": "x"}]}, r"image_id: 7 is not in 'images'"),
        (_coco(scenes=[1]), "scenes"),
    ],
)
def test_structural_errors_name_file_and_path(tmp_path, content, where):
    path = _write(tmp_path, content)
    with pytest.raises(AnnotationError, match=where) as err:
        load_coco_captions(path, tmp_path, check_files=False)
    assert str(path) in str(err.value)


def test_missing_annotation_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not found.*prepare-data"):
        load_coco_captions(tmp_path / "nope.json", tmp_path)


def test_unusable_captions_dropped_with_a_count(tmp_path, caplog):
    caps = ["a cat", "a dog", "", "   ", " .,! ", "…", "Ünïcödé café ☕", "x " * 500]
    path = _write(tmp_path, _coco(caps))
    with caplog.at_level(logging.WARNING):
        recs = load_coco_captions(path, tmp_path, check_files=False)
    assert [r.captions for r in recs] == [["a cat", "Ünïcödé café ☕"], ["a dog", ("x " * 500).strip()]]
    assert "dropped 4 empty or punctuation-only captions" in caplog.text


def test_images_without_usable_captions_are_dropped(tmp_path, caplog):
    path = _write(tmp_path, _coco(["a cat", "..."]))
    with caplog.at_level(logging.WARNING):
        recs = load_coco_captions(path, tmp_path, check_files=False)
    assert [r.image_id for r in recs] == [1] and "1 images that have no usable caption" in caplog.text


def test_missing_image_files_listed_or_skipped(tmp_path):
    images = [{"id": i, "file_name": f"{i}.jpg"} for i in range(1, 9)]
    anns = [{"id": i, "image_id": i, "caption": "a thing"} for i in range(1, 9)]
    path = _write(tmp_path, {"images": images, "annotations": anns})
    (tmp_path / "3.jpg").write_bytes(b"x")
    with pytest.raises(MissingImagesError, match=r"7 of 8 image files are missing") as err:
        load_coco_captions(path, tmp_path)
    assert str(tmp_path / "1.jpg") in str(err.value) and "and 2 more" in str(err.value)
    assert str(tmp_path / "8.jpg") not in str(err.value)  # only a few are listed
    recs = load_coco_captions(path, tmp_path, on_missing="skip")
    assert [r.image_id for r in recs] == [3] and recs[0].path == str(tmp_path / "3.jpg")


def test_scenes_are_attached_by_image_id(tmp_path):
    path = _write(tmp_path, _coco(scenes={"2": {"objects": []}}))
    recs = load_coco_captions(path, tmp_path, check_files=False)
    assert recs[0].scene is None and recs[1].scene == {"objects": []}


def _karpathy():
    sent = lambda raw: {"raw": raw, "tokens": raw.split()}  # noqa: E731
    return {
        "images": [
            {"filepath": "train2014", "filename": "a.jpg", "split": "train", "cocoid": 5, "sentences": [sent("A cat.")]},
            {"filepath": "val2014", "filename": "b.jpg", "split": "restval", "cocoid": 3, "sentences": [sent("A dog"), sent("!")]},
            {"filepath": "val2014", "filename": "c.jpg", "split": "test", "cocoid": 9, "sentences": [sent("A cow")]},
        ],
        "dataset": "coco",
    }


def test_karpathy_splits_restval_and_paths(tmp_path):
    path = _write(tmp_path, _karpathy(), "dataset_coco.json")
    train = load_karpathy(path, "/coco", "train", check_files=False)
    assert [(r.image_id, r.path, r.captions) for r in train] == [
        (3, "/coco/val2014/b.jpg", ["A dog"]),
        (5, "/coco/train2014/a.jpg", ["A cat."]),
    ]
    assert [r.image_id for r in load_karpathy(path, "/coco", "train", False, restval_to_train=False)] == [5]
    assert [r.image_id for r in load_karpathy(path, "/coco", "test", check_files=False)] == [9]
    with pytest.raises(DataError, match=r"no images in split 'val'.*\['restval', 'test', 'train'\]"):
        load_karpathy(path, "/coco", "val", check_files=False)


def test_karpathy_flickr_layout_uses_imgid(tmp_path):
    data = {"images": [{"filename": "x.jpg", "split": "val", "imgid": 42, "sentences": [{"raw": "A boy ."}]}]}
    recs = load_karpathy(_write(tmp_path, data), "/flickr", "val", check_files=False)
    assert recs[0].image_id == 42 and recs[0].path == "/flickr/x.jpg"


def test_karpathy_errors_name_the_path(tmp_path):
    data = _karpathy()
    data["images"][2]["sentences"].append({"tokens": []})
    with pytest.raises(AnnotationError, match=r"images\[2\]\.sentences\[1\]: missing key 'raw'"):
        load_karpathy(_write(tmp_path, data), "/coco", "test", check_files=False)
    del data["images"][0]["cocoid"]
    with pytest.raises(AnnotationError, match=r"images\[0\]: missing integer 'cocoid' or 'imgid'"):
        load_karpathy(_write(tmp_path, data), "/coco", "train", check_files=False)
    with pytest.raises(ValueError, match="Karpathy split"):
        load_karpathy(_write(tmp_path, data), "/coco", "dev")


def _mutations(valid, rng, n):
    """n malformed versions of ``valid``: truncated text, random bytes, keys deleted or retyped."""
    weird = [None, "", "\x00", 0, -1, 2**70, 1.5, True, [], {}, [1], {"a": 1}, "x" * 5000, "ünï ☕", "../.."]
    for i in range(n):
        text = json.dumps(valid)
        if i % 10 == 0:
            yield text[: rng.randint(0, len(text) - 1)].encode()
        elif i % 10 == 1:
            yield bytes(rng.randrange(256) for _ in range(40))
        else:
            data = json.loads(text)
            for _ in range(rng.randint(1, 3)):
                spots = list(_spots(data))
                if not spots:
                    break
                parent, key = rng.choice(spots)
                if rng.random() < 0.4:
                    del parent[key]
                else:
                    parent[key] = rng.choice(weird)
            yield json.dumps(data).encode()


def _spots(obj):
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, value in list(items):
        yield obj, key
        yield from _spots(value)


def test_fuzzed_annotation_files_load_or_raise_a_documented_error(tmp_path):
    """200+ malformed COCO and Karpathy files: each either loads or raises a DataError (issue 8)."""
    import random

    rng = random.Random(0)
    coco = _coco(["a cat", "a dog", "a cow"], scenes={"1": {"objects": []}})
    karpathy = _karpathy()
    loaders = [(coco, lambda f: load_coco_captions(f, tmp_path, on_missing="skip")),
               (karpathy, lambda f: load_karpathy(f, tmp_path, "train", on_missing="skip"))]  # fmt: skip
    outcomes = []
    for valid, load in loaders:
        for blob in _mutations(valid, rng, 150):
            path = tmp_path / "fuzz.json"
            path.write_bytes(blob)
            try:
                outcomes.append(all(isinstance(r, ImageRecord) and r.captions for r in load(path)))
            except DataError as e:
                outcomes.append(str(path) in str(e))
    assert len(outcomes) == 300 and all(outcomes)
