"""The top-K-per-beam beam search against the dense reference (tests/beam_oracle.py: the algorithm
before the rewrite, float64 over all B x K x V candidates) on a partly trained model: the same captions,
scores and kept beams for 300 images, beams 1-5, length_alpha 0 and 1.

The two searches compute every candidate's score with the same float64 sum, so they can disagree only
where two hypotheses tie (equal ranking scores) and a top-K breaks the tie the other way. The test counts
such places and asserts they are ties; on this model there are none (TIES records 0 for every case)."""

import pytest
import torch

from captioning.nn.decoding import beam_search
from tests.beam_oracle import dense_beam_search
from tests.conftest import show_tell
from tests.test_show_tell import fit, tiny_problem

TIES: dict[tuple[int, float], int] = {}


@pytest.fixture(scope="module")
def trained_many():
    """The `trained` model of tests/test_decoding.py, with its 8 training images and 292 unseen ones."""
    torch.manual_seed(0)
    vocab, feats, tokens, _ = tiny_problem(n=8)
    decoder = show_tell(12, len(vocab), cell="lstm", embed_dim=16, hidden_size=32, dropout=0.0)
    fit(decoder, feats, tokens, steps=40)  # partly trained: distributions are not one-hot yet
    unseen = torch.randn(292, feats.size(1), generator=torch.Generator().manual_seed(7))
    return decoder.eval(), torch.cat([feats, unseen])


def _rank(words: list[int], score: float, alpha: float) -> float:
    """The ranking score of a kept beam: log p / length**alpha, the length counting <end> (or, for a
    caption cut at max_len, the word after it), i.e. len(words) + 1."""
    return score / (len(words) + 1) ** alpha if alpha else score


@pytest.mark.parametrize("length_alpha", [0.0, 1.0])
@pytest.mark.parametrize("beam_size", [1, 2, 3, 4, 5])
def test_beam_search_equals_dense_reference(trained_many, beam_size, length_alpha):
    decoder, feats = trained_many
    kw = dict(beam_size=beam_size, max_len=16, length_alpha=length_alpha, keep_beams=beam_size)
    fast, ref = beam_search(decoder, feats, **kw), dense_beam_search(decoder, feats, **kw)
    assert len(fast.tokens) == len(ref.tokens) == len(feats)
    ties = 0
    for i in range(len(feats)):
        assert fast.scores[i] == pytest.approx(ref.scores[i], abs=1e-5)
        assert len(fast.beams[i]) == len(ref.beams[i]) == beam_size
        for (w1, s1), (w2, s2) in zip(fast.beams[i], ref.beams[i]):
            assert s1 == pytest.approx(s2, abs=1e-5)
            if w1 != w2:  # allowed only as a tie broken the other way: equal ranking scores
                ties += 1
                assert _rank(w1, s1, length_alpha) == pytest.approx(_rank(w2, s2, length_alpha), abs=1e-12)
        if fast.tokens[i] != ref.tokens[i]:
            assert _rank(fast.tokens[i], fast.scores[i], length_alpha) == \
                pytest.approx(_rank(ref.tokens[i], ref.scores[i], length_alpha), abs=1e-12)
    TIES[(beam_size, length_alpha)] = ties
    print(f"\nbeam {beam_size}, length_alpha {length_alpha}: {ties} kept beams of {len(feats)} images differ "
          "(each a tie)")


def test_beam_search_equals_dense_reference_exactly_here(trained_many):
    """On this model no tie is broken differently: identical captions and bit-identical scores."""
    decoder, feats = trained_many
    for beam_size in (1, 3, 5):
        for alpha in (0.0, 1.0):
            kw = dict(beam_size=beam_size, length_alpha=alpha, keep_beams=beam_size)
            fast, ref = beam_search(decoder, feats, **kw), dense_beam_search(decoder, feats, **kw)
            assert fast.tokens == ref.tokens and fast.scores == ref.scores and fast.beams == ref.beams


class PadHeavy(torch.nn.Module):
    """The trained model with <pad> made the most (or a very) probable word: a live beam must skip it,
    so the search must look one word past each beam's top K. Through the decoding contract only."""

    def __init__(self, model, pad_boost: float) -> None:
        super().__init__()
        self.model, self.pad_boost = model, pad_boost

    def init_state(self, features):
        return self.model.init_state(features)

    def select_state(self, state, index):
        return self.model.select_state(state, index)

    def step(self, tokens, state):
        logp, state = self.model.step(tokens, state)
        boost = torch.zeros(logp.size(-1))
        boost[0] = self.pad_boost  # PAD = 0
        return torch.log_softmax(logp + boost, -1), state


@pytest.mark.parametrize("pad_boost", [3.0, 20.0])
def test_beam_search_skips_pad_like_the_reference(trained_many, pad_boost):
    decoder, feats = trained_many
    heavy = PadHeavy(decoder, pad_boost).eval()
    for beam_size in (1, 2, 5):
        for alpha in (0.0, 1.0):
            kw = dict(beam_size=beam_size, length_alpha=alpha, keep_beams=beam_size)
            fast, ref = beam_search(heavy, feats, **kw), dense_beam_search(heavy, feats, **kw)
            assert fast.tokens == ref.tokens and fast.scores == ref.scores and fast.beams == ref.beams


class Counting(PadHeavy):
    """The trained model, recording how many rows each step is given."""

    def __init__(self, model) -> None:
        super().__init__(model, 0.0)
        self.rows: list[int] = []

    def step(self, tokens, state):
        self.rows.append(len(tokens))
        return self.model.step(tokens, state)


def test_finished_images_leave_the_batch_with_the_same_result(trained_many):
    """Once all K beams of an image have finished, the model no longer steps its rows: fewer rows per step
    as images finish, the first step all B*K, and the captions, scores and beams of the dense search."""
    decoder, feats = trained_many
    counting = Counting(decoder).eval()
    kw = dict(beam_size=3, max_len=16, keep_beams=3)
    fast, ref = beam_search(counting, feats, **kw), dense_beam_search(decoder, feats, **kw)
    assert fast.tokens == ref.tokens and fast.scores == ref.scores and fast.beams == ref.beams
    rows = counting.rows
    assert rows[0] == 3 * len(feats) and all(r % 3 == 0 for r in rows)
    assert rows == sorted(rows, reverse=True) and rows[-1] < rows[0]  # images left, none came back
    lengths = [len(t) for t in fast.tokens]
    assert min(lengths) < max(lengths)  # the captions end at different steps, so there was something to drop
