"""``schedule.stages.<stage>.keep``: best keeps the epoch with the best val BLEU-4, last the stage's final epoch
whatever its val BLEU-4; last with early stopping is refused."""

import pytest
import torch

from captioning.config import config_problems
from tests.conftest import tiny_cfg


@pytest.mark.parametrize("keep, epoch", [("best", 1), ("last", 3)])
def test_the_stage_keeps_the_best_or_the_last_epoch(tiny_root, monkeypatch, keep, epoch):
    from captioning.models.checkpoint import load_checkpoint
    from captioning.pipeline import run, run_options
    from captioning.training import loop

    falling = iter([0.5, 0.4, 0.3])  # val BLEU-4 after epochs 1, 2, 3: the first is the best
    monkeypatch.setattr(loop, "validate", lambda *args, **kwargs: next(falling))
    stage = "schedule.stages.cross_entropy"
    run_dir = tiny_root / f"keep_{keep}"
    run(run_options(tiny_cfg(tiny_root, f"{stage}.epochs=3", f"{stage}.keep={keep}", "data.eval_splits=[]")), run_dir)
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert best["epoch"] == epoch
    same = all(torch.equal(best["weights"][k], last["weights"][k]) for k in best["weights"])
    assert same == (keep == "last")


def test_keep_last_with_early_stopping_is_refused(tiny_root):
    stage = "schedule.stages.cross_entropy"
    problems = config_problems(tiny_cfg(tiny_root, f"{stage}.keep=last", f"{stage}.early_stopping=2"))
    assert any(f"{stage}.keep=last" in p for p in problems)
    assert not config_problems(tiny_cfg(tiny_root, f"{stage}.keep=last"))
    assert any("keep" in p for p in config_problems(tiny_cfg(tiny_root, f"{stage}.keep=first")))
