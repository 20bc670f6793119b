"""The optimizer, schedule and training step every app shares (captioning/nn/optim.py, captioning/nn/step.py)."""

import math

import pytest
import torch
from torch import nn

from captioning.nn.optim import decay_groups, learning_rate, make_optimizer, set_learning_rate, step_scheduler
from captioning.nn.step import NonFiniteLoss, autocast, optimizer_step


def test_learning_rate_warms_up_then_follows_its_schedule():
    assert [learning_rate(1.0, s, 0.0, warmup_steps=4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert learning_rate(2.0, 10, 0.0, floor=0.5) == 2.0  # the cosine starts at the peak
    assert learning_rate(2.0, 10, 0.5, floor=0.5) == pytest.approx(1.25)  # half way between peak and floor
    assert learning_rate(2.0, 10, 1.0, floor=0.5) == learning_rate(2.0, 10, 3.0, floor=0.5) == pytest.approx(0.5)
    assert learning_rate(1.0, 7, 0.9, schedule="step", gamma=0.5, step_every=3) == 0.25  # two decays by step 7
    assert learning_rate(1.0, 7, 0.9, schedule="constant") == 1.0
    with pytest.raises(ValueError, match="unknown lr_schedule 'linear'"):
        learning_rate(1.0, 0, 0.0, schedule="linear")


def test_step_scheduler_scales_each_group_by_its_own_peak():
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    opt = make_optimizer([{"params": [a]}, {"params": [b], "lr": 0.1}], "adamw", lr=1.0)
    sched = step_scheduler(opt, total_steps=4, warmup_steps=2)
    seen = []
    for _ in range(4):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert seen[0] == [0.5, 0.05] and seen[1] == [1.0, 0.1]  # warmup
    assert seen[3][0] == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 4)))  # cosine over the 4 steps
    with pytest.raises(ValueError, match="lr_schedule"):
        step_scheduler(opt, 4, schedule="linear")


def test_optimizers_and_decay_groups():
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 2), nn.LayerNorm(2))
    groups = decay_groups(model, 0.1)
    assert [len(g["params"]) for g in groups] == [2, 3] and [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert type(make_optimizer(groups, "adam", 1e-3)) is torch.optim.Adam
    fused = make_optimizer(model.parameters(), "adamw", 1e-3, fused=True)
    assert type(fused) is torch.optim.AdamW and fused.defaults["fused"]  # the CPU has the fused kernel
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        make_optimizer(model.parameters(), "sgd")
    set_learning_rate(fused, 0.5)
    assert fused.param_groups[0]["lr"] == 0.5


def test_optimizer_step_clips_steps_and_schedules():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 ** step)
    before = model.weight.detach().clone()
    loss = (model(torch.full((1, 4), 100.0)) ** 2).sum()
    assert optimizer_step(loss, opt, model.parameters(), clip=1.0, scheduler=sched) == loss.item()
    grads = torch.cat([model.weight.grad.flatten(), model.bias.grad.flatten()])
    assert torch.linalg.vector_norm(grads) == pytest.approx(1.0, rel=1e-5)  # a gradient of norm ~1e3 clipped to 1
    assert torch.allclose(model.weight - before, -model.weight.grad)  # the step took the clipped gradient (lr 1)
    assert opt.param_groups[0]["lr"] == 0.5  # the schedule stepped once


def test_a_non_finite_loss_stops_before_any_change():
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(NonFiniteLoss, match="the loss is nan") as caught:
        optimizer_step(model(torch.ones(1, 2)).sum() * float("nan"), opt, model.parameters(), clip=1.0)
    assert math.isnan(caught.value.value) and isinstance(caught.value, FloatingPointError)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_autocast_runs_the_matrix_products_in_bf16_only_when_asked():
    x, w = torch.randn(2, 3), torch.randn(3, 3)
    with autocast("cpu", "bf16"):
        assert (x @ w).dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert (x @ w).dtype == torch.float32
