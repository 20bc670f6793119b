import numpy as np
import pytest
import torch

from captioning.lm.model import CharCellConfig, CharModelConfig, CharRNN
from captioning.lm.signals import code_regions, correlations, rank_cells, text_signals
from captioning.lm.vocab import CharVocab
from captioning.nn.viz import record_text


def digits(a) -> str:
    return "".join(str(int(v)) for v in a)


def test_text_signals_on_a_hand_made_string():
    text = 'ab "c(d)"\n  f[(g)]\n\tx'
    s = text_signals(text)
    # values after reading each character: an opening quote is inside, a closing one outside
    assert digits(s["in_quote"]) == "000111110" + "0" * 12
    assert s["line_position"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2]
    assert digits(s["bracket_depth"]) == "000001100000012210000"
    assert digits(s["indent_depth"]) == "0" * 10 + "12222222" + "0" + "44"
    assert digits(s["word_position"]) == "120010100" + "0" * 3 + "1001000" + "01"
    assert set(s) == {"in_quote", "line_position", "word_position", "bracket_depth", "indent_depth"}


def test_code_regions_know_strings_comments_and_escapes():
    text = 'x = "a#\\"b"  # it\'s\ny'
    comment, string = code_regions(text, "python")
    assert digits(string) == "0000111111" + "0" * 11  # the escaped quote does not close the string
    assert digits(comment) == "0" * 13 + "111111" + "00"  # '#' in the string starts no comment
    c_text = 'a = "/*"; /* "x" */ b; // c\nd'
    comment, string = code_regions(c_text, "c")
    assert digits(string) == "0000111" + "0" * 22
    assert digits(comment) == "0" * 10 + "1" * 8 + "0" * 5 + "1" * 4 + "00"
    assert set(text_signals(c_text, "c")) >= {"in_comment", "in_string", "bracket_depth"}
    with pytest.raises(ValueError, match="unknown language"):
        text_signals("x", "cobol")


def test_correlation_matches_numpy_and_handles_constant_columns():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(50, 3))
    acts[:, 2] = 1.0
    signal = acts[:, 0] * 2 + rng.normal(size=50) * 0.1
    r = correlations(acts, signal)
    assert r[0] == pytest.approx(np.corrcoef(acts[:, 0], signal)[0, 1])
    assert r[2] == 0.0


def plant_quote_cell(vocab: CharVocab, hidden: int = 6, k: float = 30.0) -> CharRNN:
    """An LSTM whose unit 0 flips its cell between -1 and +1 at every quote: it tracks in_quote."""
    torch.manual_seed(0)
    model = CharRNN(len(vocab), CharCellConfig("lstm", hidden_size=hidden), CharModelConfig(embedding_dim=0)).eval()
    q, h = vocab.stoi['"'], hidden
    with torch.no_grad():
        for p in model.rnn.parameters():
            p.mul_(0.3)  # the other units stay small and random
        w_ih, w_hh, b = model.rnn.weight_ih_l0, model.rnn.weight_hh_l0, model.rnn.bias_ih_l0
        model.rnn.bias_hh_l0.zero_()
        i, f, g, o = 0, h, 2 * h, 3 * h  # rows of unit 0 in torch's gate order i, f, g, o
        for row in (i, f, g, o):
            w_ih[row].zero_()
            w_hh[row].zero_()
        w_ih[i, q], b[i] = k, -k / 2  # write only at a quote
        w_ih[f, q], b[f] = -k, k / 2  # ... and forget only then
        w_hh[g, 0], b[g] = -k, 0.3 * k  # the new value is the opposite of the old one (+1 from zero)
        b[o] = k  # output gate open: h = tanh(c)
    return model


def test_planted_quote_cell_is_found_top_ranked():
    text = ('He said "go now" and left. "Yes," she said, "we go." Then nothing. '
            'A "word" here, and "another one" there; no quote at all in this part of it.\n') * 4
    vocab = CharVocab.build(text)
    model = plant_quote_cell(vocab)
    rec = record_text(model, vocab, text, chunk=50)  # several chunks: the state must carry over
    acts, labels = rec.cells()
    ranking = rank_cells(acts, labels, text_signals(text), top_k=3)
    best = ranking["in_quote"][0]
    assert best.label in ("c0.0", "h0.0") and best.r > 0.95
    assert ranking["in_quote"][1].label in ("c0.0", "h0.0")  # its h and c are the two best
    assert all(m.label not in ("c0.0", "h0.0") for m in ranking["line_position"][:1])
