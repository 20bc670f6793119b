import json
from collections import Counter

import pytest

from captioning.text.tokenizer import tokenize
from captioning.text.vocab import END, PAD, START, UNK, Vocabulary, VocabularyError
from tests.fixtures import COCO_CAPTIONS as COCO


def test_specials_come_first_and_frequent_words_next():
    v = Vocabulary.build([["b", "a", "b"], ["c", "b", "a"], ["d"]], min_count=2)
    assert v.itos == ["<pad>", "<start>", "<end>", "<unk>", "b", "a"]
    assert (PAD, START, END, UNK) == (0, 1, 2, 3)
    assert v.stoi["b"] == 4 and len(v) == 6 and "c" not in v


def test_ties_are_alphabetical_whatever_the_caption_order():
    a = Vocabulary.build([["z", "y"], ["y", "z"]], min_count=1)
    b = Vocabulary.build([["y", "z"], ["z", "y"]], min_count=1)
    assert a.itos[4:] == ["y", "z"] and a == b


def test_encode_adds_start_end_truncates_and_maps_unknown():
    v = Vocabulary.build([["a", "cat", "sits"]], min_count=1)
    assert v.encode(["a", "cat"], max_len=16) == [START, v.stoi["a"], v.stoi["cat"], END]
    assert v.encode(["a", "dog", "sits"], max_len=2) == [START, v.stoi["a"], UNK, END]
    assert v.encode([], max_len=5) == [START, END]


def test_decode_stops_at_end_and_skips_start_and_pad():
    v = Vocabulary.build([["a", "cat"]], min_count=1)
    ids = [PAD, START, v.stoi["a"], UNK, v.stoi["cat"], END, v.stoi["a"], PAD]
    assert v.decode(ids) == "a <unk> cat"


def test_literal_special_token_in_captions_does_not_shadow_it():
    v = Vocabulary.build([["<unk>", "<pad>", "x"]] * 3, min_count=1)
    assert v.itos.count("<unk>") == 1 and v.stoi["<unk>"] == UNK and v.itos[4:] == ["x"]


def test_state_dict_is_json_and_round_trips():
    v = Vocabulary.build([["a", "b", "b"]], min_count=1)
    state = json.loads(json.dumps(v.state_dict()))
    w = Vocabulary.from_state_dict(state)
    assert w == v and w.itos == v.itos and w.min_count == 1


@pytest.mark.parametrize(
    "state, match",
    [
        ({"itos": ["a", "b"]}, "must start with"),
        ({"format": 99, "itos": ["<pad>", "<start>", "<end>", "<unk>"]}, "newer|format"),
        ({"words": []}, "itos"),
        ({"itos": ["<pad>", "<start>", "<end>", "<unk>", "x", "x"]}, "duplicate"),
    ],
)
def test_unusable_state_is_refused_clearly(state, match):
    with pytest.raises(VocabularyError, match=match):
        Vocabulary.from_state_dict(state)


def test_min_count_must_be_positive():
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build([["a"]], min_count=0)


def test_real_coco_captions_vocabulary():
    """On real COCO captions: min count 5 keeps exactly the words seen >= 5 times, and only they are known."""
    data = json.loads(COCO.read_text(encoding="utf-8"))
    token_lists = [tokenize(a["caption"]) for a in data["annotations"]]
    counts = Counter(t for toks in token_lists for t in toks)
    v = Vocabulary.from_captions([a["caption"] for a in data["annotations"]], min_count=5)
    frequent = {w for w, n in counts.items() if n >= 5}
    assert set(v.itos[4:]) == frequent and len(v) == 4 + len(frequent)
    assert v.itos[4] == counts.most_common(1)[0][0] == "a"  # "a" is the most frequent COCO word
    assert all(w == w.lower() and w not in {",", ".", "!"} for w in v.itos[4:])
    ids = [i for toks in token_lists for i in v.encode(toks, 16)[1:-1]]
    # <unk> exactly where a rare word sits within the first 16 tokens (encode truncates there)
    assert ids.count(UNK) == sum(counts[t] < 5 for toks in token_lists for t in toks[:16]) > 0
    caption = "A man riding a wave on top of a surfboard."
    assert v.decode(v.encode(tokenize(caption), 16)) == "a man riding a wave on top of a surfboard"
