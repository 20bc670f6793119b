"""Greedy, sampling and beam search: beam 1 is greedy, beams never lose to greedy, batching changes nothing."""

import pytest
import torch

from captioning.nn.decoding import beam_search, decode, decode_batched, greedy, sample
from tests.conftest import show_tell
from tests.test_show_tell import fit, tiny_problem


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    vocab, feats, tokens, _ = tiny_problem(n=8)
    decoder = show_tell(12, len(vocab), cell="lstm", embed_dim=16,
                                   hidden_size=32, dropout=0.0)
    fit(decoder, feats, tokens, steps=40)  # partly trained: distributions are not one-hot yet
    return decoder.eval(), feats


def _sequence_logprob(decoder, feats, tokens):
    """Score a caption independently: sum of log p(word) along it, <end> included."""
    from captioning.text.vocab import END, START

    ids = torch.tensor([[START, *tokens, END]])
    logp = torch.log_softmax(decoder(feats[None], ids[:, :-1]), -1)
    return logp[0].gather(1, ids[0, 1:, None]).sum().item()


def test_beam_one_equals_greedy(trained):
    decoder, feats = trained
    g, b = greedy(decoder, feats), beam_search(decoder, feats, beam_size=1)
    assert g.tokens == b.tokens
    assert g.scores == pytest.approx(b.scores, abs=1e-6)


@pytest.mark.parametrize("beam_size", [2, 3, 5])
def test_beam_never_scores_below_greedy(trained, beam_size):
    decoder, feats = trained
    feats = torch.cat([feats, torch.randn(24, feats.size(1), generator=torch.Generator().manual_seed(1))])
    g, b = greedy(decoder, feats), beam_search(decoder, feats, beam_size=beam_size)
    for gs, bs in zip(g.scores, b.scores):  # float32 steps: a row's log-probabilities move by ~1e-7 with the
        assert bs >= gs - 1e-6                # batch it is computed in (greedy drops finished rows, beam has B*K)


def test_scores_are_the_captions_log_probabilities(trained):
    decoder, feats = trained
    out = beam_search(decoder, feats[:4], beam_size=3, keep_beams=3)
    for i in range(4):
        assert out.scores[i] == pytest.approx(_sequence_logprob(decoder, feats[i], out.tokens[i]), abs=1e-4)
        scores = [s for _, s in out.beams[i]]
        assert scores == sorted(scores, reverse=True) and len(out.beams[i]) == 3


def test_batched_beam_search_equals_one_image_at_a_time(trained):
    decoder, feats = trained
    batched = beam_search(decoder, feats, beam_size=4)
    for i in range(len(feats)):
        single = beam_search(decoder, feats[i : i + 1], beam_size=4)
        assert single.tokens[0] == batched.tokens[i]
        assert single.scores[0] == pytest.approx(batched.scores[i], abs=1e-6)
    chunked = decode_batched(decoder, feats.numpy(), batch_size=3, method="beam", beam_size=4)
    assert chunked.tokens == batched.tokens


def test_sampling_is_seeded_and_max_len_holds(trained):
    decoder, feats = trained
    a = sample(decoder, feats, temperature=1.5, generator=torch.Generator().manual_seed(3), max_len=4)
    b = sample(decoder, feats, temperature=1.5, generator=torch.Generator().manual_seed(3), max_len=4)
    assert a.tokens == b.tokens and all(len(t) <= 4 for t in a.tokens)
    with pytest.raises(ValueError, match="method"):
        decode(decoder, feats, method="nucleus")
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(decoder, feats, beam_size=0)
