"""The gradient-norm probe: exact on linear recurrences, faithful to the modules it unrolls."""

import pytest
import torch

from captioning.nn.cells import RNN, build_rnn
from captioning.sequence.gradients import hidden_gradient_norms, model_gradient_norms, module_stepper
from captioning.sequence.models import ManyToOne


def test_one_unit_linear_recurrence_gives_w_to_the_k():
    # h' = w h + x and loss = h_T: d loss / d h_{T-k} = w^k exactly
    w, T = 0.9, 60
    x = torch.rand(3, T, 1, dtype=torch.float64)
    h0 = torch.zeros(3, 1, dtype=torch.float64, requires_grad=True)
    norms = hidden_gradient_norms(lambda xt, h: w * h + xt, lambda h: [h], lambda h: h.sum(-1), x, h0)
    assert norms.shape == (T + 1,)
    assert torch.allclose(norms, w ** torch.arange(T + 1, dtype=torch.float64), rtol=1e-12)


def test_one_unit_relu_rnn_from_the_cells_gives_w_hh_to_the_k():
    # relu with positive pre-activations is the linear recurrence h' = w_hh h + w_ih x
    w, T = 1.05, 40  # > 1: an exploding gradient is measured exactly too
    rnn = RNN(1, 1, nonlinearity="relu").double()
    with torch.no_grad():
        rnn.weight_hh_l0.fill_(w)
        rnn.weight_ih_l0.fill_(0.5)
        rnn.bias_ih_l0.fill_(0.1)
        rnn.bias_hh_l0.zero_()
    step, hidden, init = module_stepper(rnn)
    x = torch.rand(4, T, 1, dtype=torch.float64)
    norms = hidden_gradient_norms(step, hidden, lambda s: hidden(s)[-1].sum(-1), x, init(4))
    assert torch.allclose(norms, w ** torch.arange(T + 1, dtype=torch.float64), rtol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_module_stepper_reproduces_the_module(cell):
    torch.manual_seed(0)
    rnn = build_rnn(cell, 3, 5, num_layers=2, batch_first=True, backend="fused")
    x = torch.randn(2, 9, 3)
    step, hidden, init = module_stepper(rnn)
    state = init(2)
    for t in range(9):
        state = step(x[:, t], state)
    _, want = rnn(x)
    want_h = want[0] if cell == "lstm" else want
    assert torch.allclose(torch.stack(hidden(state)), want_h, atol=1e-5)


def test_module_stepper_rejects_other_modules():
    with pytest.raises(TypeError, match="RNN/LSTM/GRU"):
        module_stepper(torch.nn.GRU(2, 3))


def test_model_gradient_norms_match_autograd_on_the_models_own_loss():
    torch.manual_seed(0)
    model = ManyToOne("lstm", input_size=2, output_size=1, hidden_size=4)
    x, y = torch.rand(3, 12, 2), torch.rand(3)
    norms = model_gradient_norms(model, x, y)
    # k = T: the gradient w.r.t. the initial state h_0, checked by differentiating the module itself
    h0 = torch.zeros(1, 3, 4, requires_grad=True)
    _, (h_n, _) = model.rnn(x, (h0, torch.zeros(1, 3, 4)))
    loss = (model.head(h_n[-1]).squeeze(-1) - y).pow(2).sum()
    (g,) = torch.autograd.grad(loss, h0)
    assert norms.shape == (13,)
    assert norms[-1].item() == pytest.approx(g[0].norm(dim=1).mean().item(), rel=1e-5)
    assert norms[0].item() == pytest.approx((2 * (model(x) - y).abs()[:, None] * model.head.weight.abs()).norm(dim=1).mean().item(), rel=1e-5)
