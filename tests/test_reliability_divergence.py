"""A NaN or infinite loss (or weights) stops training with a message and keeps the last good checkpoint."""

import pytest
import torch

import captioning.training.loop as train_mod
from captioning.models.checkpoint import load_checkpoint
from captioning.pipeline import run_options
from captioning.training.loop import TrainingDiverged, train
from tests.conftest import tiny_cfg



def _poison_at(monkeypatch, at: int, how: str) -> None:
    """At training step ``at``: a NaN loss, or a finite loss whose gradient is infinite."""
    real, calls = train_mod.caption_loss, [0]

    def loss(*args, **kwargs):
        value = real(*args, **kwargs)
        calls[0] += 1
        if calls[0] != at:
            return value
        if how == "nan_loss":
            return value * float("nan")
        value.register_hook(lambda g: g * float("inf"))
        return value

    monkeypatch.setattr(train_mod, "caption_loss", loss)


def _finite(state: dict) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())


def test_huge_learning_rate_stops_with_a_message(tiny_root, tiny_prepared):
    run_dir = tiny_root / "reliability_lr1e30"
    with pytest.raises(TrainingDiverged, match=r"lower its lr"):
        train(run_options(tiny_cfg(tiny_root, "schedule.stages.cross_entropy.lr=1e30")).training, tiny_prepared, run_dir)
    assert not (run_dir / "checkpoints" / "last.pt").exists()  # nothing diverged was ever saved


def test_nan_loss_keeps_the_last_good_checkpoint_which_resumes_exactly(tiny_root, tiny_prepared, monkeypatch):
    straight = tiny_root / "reliability_nan_straight"
    train(run_options(tiny_cfg(tiny_root)).training, tiny_prepared, straight)
    run_dir = tiny_root / "reliability_nan"
    _poison_at(monkeypatch, 8, "nan_loss")
    with pytest.raises(TrainingDiverged, match="loss is nan in stage cross_entropy, epoch 1, step 7"):
        train(run_options(tiny_cfg(tiny_root, "schedule.stages.cross_entropy.checkpoint_every_steps=3")).training,
              tiny_prepared, run_dir)
    kept = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert (kept["epoch"], kept["step"]) == (0, 6) and _finite(kept["weights"])
    # the kept checkpoint is a real training state: resuming it ends exactly where the straight run did
    monkeypatch.undo()
    train(run_options(tiny_cfg(tiny_root, f"resume={run_dir}")).training, tiny_prepared, run_dir)
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt")["weights"] for d in (straight, run_dir))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_infinite_gradient_with_a_finite_loss_is_never_checkpointed(tiny_root, tiny_prepared, monkeypatch):
    run_dir = tiny_root / "reliability_inf_grad"
    _poison_at(monkeypatch, 5, "inf_grad")
    with pytest.raises(TrainingDiverged, match="NaN or infinite"):
        train(run_options(tiny_cfg(tiny_root, "schedule.stages.cross_entropy.checkpoint_every_steps=1")).training,
              tiny_prepared, run_dir)
    kept = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert (kept["epoch"], kept["step"]) == (0, 4) and _finite(kept["weights"])
