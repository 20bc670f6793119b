import pytest
import torch

from captioning.lm.model import CharCellConfig, CharModelConfig, CharRNN
from captioning.lm.sample import next_id, sample
from captioning.lm.vocab import CharVocab

VOCAB = CharVocab.build("abcdefgh \n")


def make_model() -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(len(VOCAB), CharCellConfig("lstm", hidden_size=16), CharModelConfig(embedding_dim=8)).eval()


def test_same_seed_same_text():
    model = make_model()
    a = sample(model, VOCAB, 60, prime="ab", temperature=1.0, seed=3)
    b = sample(model, VOCAB, 60, prime="ab", temperature=1.0, seed=3)
    c = sample(model, VOCAB, 60, prime="ab", temperature=1.0, seed=4)
    assert a == b and len(a) == 60 and a != c


def test_temperature_zero_is_argmax():
    model = make_model()
    greedy, (logits, state) = [], model(VOCAB.encode("ab").unsqueeze(1))
    for _ in range(30):
        greedy.append(int(logits[-1, 0].argmax()))
        logits, state = model(torch.tensor([[greedy[-1]]]), state)
    expected = VOCAB.decode(greedy)
    assert sample(model, VOCAB, 30, prime="ab", temperature=0.0, seed=1) == expected
    assert sample(model, VOCAB, 30, prime="ab", temperature=1e-9, seed=2) == expected  # -> 0 is argmax
    assert sample(model, VOCAB, 30, prime="ab", temperature=1.5, top_k=1, seed=5) == expected


def test_low_temperature_concentrates():
    logits = torch.tensor([2.0, 1.0, 0.0])
    gen = torch.Generator().manual_seed(0)
    draws = [next_id(logits, 0.05, gen) for _ in range(200)]
    assert draws.count(0) == 200


def test_bad_arguments():
    model = make_model()
    with pytest.raises(ValueError, match="prime"):
        sample(model, VOCAB, 5, prime="")
    with pytest.raises(ValueError, match="temperature"):
        sample(model, VOCAB, 5, prime="a", temperature=-1)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        sample(model, VOCAB, 5, prime="xyz")
