"""Many-to-one and seq2seq models: padding handled, teacher forcing = stepping, seq2seq overfits pairs."""

import pytest
import torch

from captioning.nn import decoding
from captioning.nn.cells import GRU, LSTM
from captioning.sequence.models import ManyToOne, Seq2Seq, init_lstm_gates
from captioning.sequence.problems import pad_ids
from captioning.text.vocab import END, START


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_many_to_one_ignores_padding(cell):
    torch.manual_seed(0)
    model = ManyToOne(cell, input_size=8, output_size=3, hidden_size=6, num_layers=2, vocab_size=12)
    rows = [[5, 6, 7, 8, 9], [4, 11]]
    batch = model(pad_ids(rows))
    alone = torch.cat([model(torch.tensor([r])) for r in rows])
    assert batch.shape == (2, 3)
    assert torch.allclose(batch, alone, atol=1e-6)


def test_many_to_one_regressor_outputs_one_value_per_sequence():
    model = ManyToOne("gru", input_size=2, output_size=1, hidden_size=4)
    assert model(torch.rand(5, 7, 2)).shape == (5,)


def test_forget_bias_init_sets_the_lstm_forget_slice_only():
    lstm = LSTM(3, 4, num_layers=2)
    before = lstm.bias_ih_l1.detach().clone()
    init_lstm_gates(lstm, "forget_bias", 1.0)
    for layer in range(2):
        total = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        assert torch.all(total[4:8] == 1.0)
    assert torch.equal(lstm.bias_ih_l1[:4], before[:4]) and torch.equal(lstm.bias_ih_l1[8:], before[8:])


def test_chrono_init_spreads_forget_time_scales_up_to_t_max_and_closes_input_gates():
    lstm = LSTM(3, 500)
    init_lstm_gates(lstm, "chrono", t_max=100)
    total = lstm.bias_ih_l0 + lstm.bias_hh_l0
    b_f = total[500:1000]
    assert torch.all(b_f >= 0) and torch.all(b_f <= torch.log(torch.tensor(99.0)))
    assert b_f.max() > 4.0  # forget gate sigmoid(b_f) up to ~0.99: memory over ~100 steps
    assert torch.equal(total[:500], -b_f)


def test_lstm_init_rejects_bad_use():
    init_lstm_gates(GRU(3, 4), "torch")  # no-op for any cell
    with pytest.raises(ValueError, match="LSTM cells only"):
        init_lstm_gates(GRU(3, 4), "forget_bias")
    with pytest.raises(ValueError, match="t_max"):
        init_lstm_gates(LSTM(3, 4), "chrono")
    with pytest.raises(ValueError, match="unknown lstm_init"):
        init_lstm_gates(LSTM(3, 4), "orthogonal")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_teacher_forcing_matches_step_by_step_decoding(cell):
    torch.manual_seed(0)
    model = Seq2Seq(cell, vocab_size=10, embed_dim=5, hidden_size=7, num_layers=2).eval()
    src = pad_ids([[4, 5, 6], [7, 8]])
    tgt_in = torch.tensor([[START, 4, 9], [START, 6, 6]])
    logits = model(src, tgt_in)
    state = model.init_state(src)
    for t in range(tgt_in.size(1)):
        logp, state = model.step(tgt_in[:, t], state)
        assert torch.allclose(logp, torch.log_softmax(logits[:, t], -1), atol=1e-5)


def test_seq2seq_overfits_a_handful_of_reversals_and_decodes_them_greedy_and_beam():
    torch.manual_seed(0)
    srcs = [[4, 5, 6], [7, 8, 9, 10], [11, 4], [6, 6, 12, 5]]
    src = pad_ids(srcs)
    tgt = pad_ids([[START, *s[::-1], END] for s in srcs])
    model = Seq2Seq("gru", vocab_size=13, embed_dim=16, hidden_size=32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        logits = model(src, tgt[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 13), tgt[:, 1:].reshape(-1), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    want = [s[::-1] for s in srcs]
    assert decoding.greedy(model, src, max_len=6).tokens == want
    assert decoding.beam_search(model, src, beam_size=3, max_len=6).tokens == want
