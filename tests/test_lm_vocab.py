import pytest
import torch

from captioning.lm.vocab import CharVocab


def test_roundtrip_any_unicode():
    text = "Héllo, wörld ☃\n\t日本"
    vocab = CharVocab.build(text)
    assert len(vocab) == len(set(text))
    ids = vocab.encode(text)
    assert ids.dtype == torch.long and vocab.decode(ids) == text
    assert vocab.itos == sorted(set(text))  # ids in sorted order, as char-rnn and nanoGPT


def test_state_dict_roundtrip():
    vocab = CharVocab.build("abcabc xyz")
    again = CharVocab.from_state_dict(vocab.state_dict())
    assert again.itos == vocab.itos and again.encode("zax").tolist() == vocab.encode("zax").tolist()


def test_unknown_character_is_a_clear_error():
    vocab = CharVocab.build("abc")
    with pytest.raises(ValueError, match="'z'.*not in the vocabulary"):
        vocab.encode("abz")
    with pytest.raises(ValueError, match="empty"):
        CharVocab.build("")
