"""Parity of our cells with torch.nn (forward and backward), gradcheck, backends, padding."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from captioning.nn import cells

CELL_PAIRS = [(cells.RNNCell, nn.RNNCell), (cells.LSTMCell, nn.LSTMCell), (cells.GRUCell, nn.GRUCell)]
MODULE_PAIRS = [(cells.RNN, nn.RNN), (cells.LSTM, nn.LSTM), (cells.GRU, nn.GRU)]
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def _flat(state):
    return state if isinstance(state, tuple) else (state,)


def _random_state(ours, batch, dtype, layers=None):
    shape = (batch, ours.hidden_size) if layers is None else (layers, batch, ours.hidden_size)
    h = torch.randn(*shape, dtype=dtype)
    return (h, torch.randn(*shape, dtype=dtype)) if isinstance(ours, (cells.LSTMCell, cells.LSTM)) else h


def _grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("ours_cls,ref_cls", CELL_PAIRS)
def test_cell_matches_torch(ours_cls, ref_cls, with_state, dtype):
    torch.manual_seed(0)
    ref = ref_cls(6, 5).to(dtype)
    ours = ours_cls(6, 5).to(dtype)
    ours.load_state_dict(ref.state_dict())  # the same keys, unchanged
    x = torch.randn(4, 6, dtype=dtype)
    hx = _random_state(ours, 4, dtype) if with_state else None
    out_ref, out = _flat(ref(x, hx)), _flat(ours(x, hx))
    for a, b in zip(out_ref, out):
        torch.testing.assert_close(b, a, atol=TOL[dtype], rtol=0)
    weights = [torch.randn_like(a) for a in out_ref]
    sum(w.mul(a).sum() for w, a in zip(weights, out_ref)).backward()
    sum(w.mul(b).sum() for w, b in zip(weights, out)).backward()
    g_ref, g = _grads(ref), _grads(ours)
    assert g.keys() == g_ref.keys()
    for name in g:
        torch.testing.assert_close(g[name], g_ref[name], atol=TOL[dtype], rtol=0)


@pytest.mark.parametrize("ours_cls,ref_cls", CELL_PAIRS)
def test_cell_unbatched_input(ours_cls, ref_cls):
    torch.manual_seed(1)
    ref, ours = ref_cls(3, 4).double(), ours_cls(3, 4).double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, dtype=torch.float64)
    for a, b in zip(_flat(ref(x)), _flat(ours(x))):
        assert b.shape == a.shape == (4,)
        torch.testing.assert_close(b, a, atol=1e-12, rtol=0)


@pytest.mark.parametrize("ours_cls", [c for c, _ in CELL_PAIRS])
def test_cell_gradcheck(ours_cls):
    torch.manual_seed(2)
    cell = ours_cls(3, 4).double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    if ours_cls is cells.LSTMCell:
        c = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
        fn = lambda x, h, c: cell(x, (h, c))  # noqa: E731
        inputs = (x, h, c)
    else:
        fn, inputs = cell, (x, h)
    assert torch.autograd.gradcheck(fn, inputs)
    # and with respect to every parameter
    params = tuple(cell.parameters())
    names = [n for n, _ in cell.named_parameters()]

    def by_params(*ps):
        return torch.func.functional_call(cell, dict(zip(names, ps)), (x.detach(), inputs[1].detach() if ours_cls is not cells.LSTMCell else (h.detach(), c.detach())))

    assert torch.autograd.gradcheck(by_params, tuple(p.detach().requires_grad_() for p in params))


@pytest.mark.parametrize("backend", cells.BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("ours_cls,ref_cls", MODULE_PAIRS)
def test_module_matches_torch(ours_cls, ref_cls, batch_first, with_state, layers, dtype, backend):
    torch.manual_seed(3)
    ref = ref_cls(6, 5, num_layers=layers, batch_first=batch_first).to(dtype)
    ours = ours_cls(6, 5, num_layers=layers, batch_first=batch_first, backend=backend).to(dtype)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 7, 6, dtype=dtype) if batch_first else torch.randn(7, 3, 6, dtype=dtype)
    hx = _random_state(ours, 3, dtype, layers) if with_state else None
    out_ref, state_ref = ref(x, hx)
    out, state = ours(x, hx)
    torch.testing.assert_close(out, out_ref, atol=TOL[dtype], rtol=0)
    for a, b in zip(_flat(state_ref), _flat(state)):
        torch.testing.assert_close(b, a, atol=TOL[dtype], rtol=0)
    loss = lambda o, s: (o * torch.linspace(-1, 1, o.numel(), dtype=dtype).view_as(o)).sum() + sum(t.pow(2).sum() for t in _flat(s))  # noqa: E731
    loss(out_ref, state_ref).backward()
    loss(out, state).backward()
    for name, g in _grads(ours).items():
        torch.testing.assert_close(g, dict(ref.named_parameters())[name].grad, atol=TOL[dtype] * 10, rtol=0)


@pytest.mark.parametrize("ours_cls", [c for c, _ in MODULE_PAIRS])
def test_backends_agree_with_dropout_off_and_in_eval(ours_cls):
    torch.manual_seed(4)
    scratch = ours_cls(4, 8, num_layers=2, dropout=0.3, backend="scratch").eval()
    fused = ours_cls(4, 8, num_layers=2, dropout=0.3, backend="fused").eval()
    fused.load_state_dict(scratch.state_dict())
    x = torch.randn(9, 5, 4)
    (o1, s1), (o2, s2) = scratch(x), fused(x)
    torch.testing.assert_close(o1, o2, atol=1e-5, rtol=0)
    for a, b in zip(_flat(s1), _flat(s2)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_dropout_between_layers_is_active_in_training():
    torch.manual_seed(5)
    m = cells.LSTM(4, 8, num_layers=2, dropout=0.5).train()
    x = torch.randn(5, 3, 4)
    o1, _ = m(x)
    o2, _ = m(x)
    assert not torch.allclose(o1, o2), "dropout between layers should make two training passes differ"
    m.eval()
    torch.testing.assert_close(m(x)[0], m(x)[0])


@pytest.mark.parametrize("backend", cells.BACKENDS)
@pytest.mark.parametrize("ours_cls", [c for c, _ in MODULE_PAIRS])
def test_padding_does_not_leak_into_final_state(ours_cls, backend):
    torch.manual_seed(6)
    m = ours_cls(3, 4, num_layers=2, batch_first=True, backend=backend).double()
    lengths = torch.tensor([5, 2, 3])
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    x_noisy = x.clone()
    for b, n in enumerate(lengths):
        x_noisy[b, n:] = 1e3  # garbage in the padding
    out, state = m(x_noisy, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        out_b, state_b = m(x[b : b + 1, :n])  # the sequence alone, unpadded
        torch.testing.assert_close(out[b : b + 1, :n], out_b, atol=1e-12, rtol=0)
        assert out[b, n:].abs().max() == 0 if n < 5 else True
        for a, s in zip(_flat(state), _flat(state_b)):
            torch.testing.assert_close(a[:, b : b + 1], s, atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", cells.BACKENDS)
def test_packed_sequence_matches_torch(backend):
    torch.manual_seed(7)
    ref = nn.LSTM(3, 4, num_layers=2).double()
    ours = cells.LSTM(3, 4, num_layers=2, backend=backend).double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(6, 3, 3, dtype=torch.float64)
    packed = pack_padded_sequence(x, torch.tensor([2, 6, 4]), enforce_sorted=False)
    (o_ref, (h_ref, c_ref)), (o, (h, c)) = ref(packed), ours(packed)
    torch.testing.assert_close(pad_packed_sequence(o)[0], pad_packed_sequence(o_ref)[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(h, h_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(c, c_ref, atol=1e-12, rtol=0)


@pytest.mark.parametrize("ours_cls", [c for c, _ in MODULE_PAIRS])
def test_scratch_records_every_state(ours_cls):
    torch.manual_seed(8)
    m = ours_cls(3, 4, num_layers=2)
    x = torch.randn(5, 2, 3)
    out, state, rec = m(x, return_all_states=True)
    assert rec.h.shape == (2, 5, 2, 4)
    torch.testing.assert_close(rec.h[-1], out)  # the top layer's states are the outputs
    torch.testing.assert_close(rec.h[:, -1], _flat(state)[0])
    if ours_cls is cells.LSTM:
        torch.testing.assert_close(rec.c[:, -1], state[1])
        assert set(rec.gates) == {"input", "forget", "output"}
    elif ours_cls is cells.GRU:
        assert set(rec.gates) == {"reset", "update"}
    with pytest.raises(ValueError, match="scratch"):
        ours_cls(3, 4, backend="fused")(x, return_all_states=True)


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="backend"):
        cells.LSTM(3, 4, backend="cudnn")
    with pytest.raises(ValueError, match="cell"):
        cells.build_rnn("transformer", 3, 4)
    with pytest.raises(ValueError, match="shape"):
        cells.GRU(3, 4)(torch.randn(2, 5, 3), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="lengths"):
        cells.GRU(3, 4)(torch.randn(2, 5, 3), lengths=torch.tensor([0, 1, 2, 3, 9]))
