"""Fine-tuning the encoder with the caption model (schedule=finetune) on the tiny shapes set: the CNN's weights
move and travel in the checkpoint, evaluation and the captioning API use them, resume is exact."""

import json

import numpy as np
import pytest
import torch

from captioning.features.encoder import build_encoder
from captioning.training.finetune import encode
from captioning.captioner import Captioner
from captioning.models.checkpoint import CheckpointError, load_checkpoint
from captioning.pipeline import run, run_options
from tests.conftest import straight_and_resumed, tiny_cfg

# the finetune schedule, shrunk: 64 images in 4 steps of 16, a visible CNN learning rate
FT = ["schedule=finetune", "schedule.stages.finetune.epochs=1", "schedule.stages.finetune.batch_size=16", "schedule.stages.finetune.encoder_lr=0.0001",
      "schedule.stages.finetune.lr=0.005", "schedule.stages.finetune.warmup_steps=0", "schedule.stages.finetune.val_max_images=16", "schedule.stages.finetune.checkpoint_every_steps=0",
      "schedule.stages.finetune.log_every=1", "schedule.stages.finetune.early_stopping=0"]


@pytest.fixture(scope="module")
def finetuned(tiny_root, tiny_run):
    frozen_dir, _ = tiny_run
    run_dir = tiny_root / "finetuned"
    results = run(run_options(tiny_cfg(tiny_root, *FT, f"schedule.init_from={frozen_dir}")), run_dir)
    return frozen_dir, run_dir, results


def test_finetuning_moves_the_cnn_and_stores_it(finetuned):
    frozen_dir, run_dir, results = finetuned
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    frozen = load_checkpoint(frozen_dir / "checkpoints" / "last.pt")
    assert "encoder_state" not in frozen and "+finetuned:" in ckpt["encoder_key"]
    pretrained = build_encoder({**ckpt["encoder_cfg"], "trainable": True}).backbone.state_dict()
    moved = [k for k, v in ckpt["encoder_state"].items() if v.is_floating_point() and not torch.equal(v, pretrained[k])]
    assert len(moved) > 10
    # BatchNorm kept its pretrained statistics
    stats = [k for k in pretrained if k.endswith("running_mean")]
    assert stats and all(torch.equal(ckpt["encoder_state"][k], pretrained[k]) for k in stats)
    # the decoder started from the frozen run's, not from scratch: its first loss is already low
    history = json.loads((run_dir / "history.json").read_text())
    assert 0.0 <= results["test"]["Bleu_4"] <= 1.0 and len(history["epochs"]) == 1
    assert history["epochs"][0]["train_loss"] < json.loads((frozen_dir / "history.json").read_text())["epochs"][0]["train_loss"]


def test_the_finetuned_encoder_is_what_captioning_and_evaluation_use(finetuned, tiny_root):
    _, run_dir, _ = finetuned
    captioner = Captioner.from_checkpoint(run_dir / "checkpoints" / "best.pt")
    ckpt = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert captioner.encoder.identity.key == ckpt["encoder_key"]
    images = sorted((tiny_root / "data" / "shapes_tiny" / "images" / "test").glob("*.png"))[:4]
    tuned = build_encoder({**ckpt["encoder_cfg"], "trainable": True})
    tuned.backbone.load_state_dict(ckpt["encoder_state"])
    np.testing.assert_allclose(captioner.features(images).numpy(), encode(tuned, [str(p) for p in images]),
                               rtol=0.0001, atol=0.0001)
    assert all(c.text for c in captioner.caption(images, method="greedy"))
    # its features were cached apart from the pretrained ones
    keys = {json.loads(m.read_text())["encoder"] for m in (tiny_root / "cache").rglob("meta.json")}
    assert captioner.encoder.cache_key in keys and any("+finetuned:" not in k for k in keys)


def test_evaluate_script_reproduces_the_finetuned_runs_metrics(finetuned, tmp_path):
    from captioning.evaluation.checkpoint import evaluate_checkpoint
    from tests.test_evaluate_script import eval_cfg

    _, run_dir, results = finetuned
    out = evaluate_checkpoint(eval_cfg(f"checkpoint={run_dir}", "split=test"), tmp_path)
    assert out["test"]["Bleu_4"] == results["test"]["Bleu_4"]


def test_finetuning_resumes_exactly(tiny_root, tiny_run):
    # constant lr: the part run stops at epoch 1 of 2 without changing the schedule it followed
    a, b = straight_and_resumed(tiny_root, "ft", *FT, "schedule.stages.finetune.lr_schedule=constant",
                                f"schedule.init_from={tiny_run[0]}", stage="finetune")
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    assert all(torch.equal(a["encoder_state"][k], b["encoder_state"][k]) for k in a["encoder_state"])


def test_init_from_a_different_decoder_fails_clearly(tiny_root, tiny_run):
    frozen_dir, _ = tiny_run
    with pytest.raises(CheckpointError, match="init_from"):
        run(run_options(tiny_cfg(tiny_root, *FT, f"schedule.init_from={frozen_dir}", "model.hidden_size=32")), tiny_root / "bad")


def test_finetune_needs_an_encoder_learning_rate(tiny_root):
    with pytest.raises(ValueError, match="encoder_lr"):
        run(run_options(tiny_cfg(tiny_root, *FT, "schedule.stages.finetune.encoder_lr=0")), tiny_root / "never")


def test_finetuning_then_self_critical_training_in_one_run(tiny_root, tiny_run):
    """Stages combine: fine-tune the CNN, then train self-critically on features of the fine-tuned CNN."""
    sc = "schedule.stages.self_critical"
    run_dir = tiny_root / "ft_scst"
    run(run_options(tiny_cfg(tiny_root, *FT, f"schedule.init_from={tiny_run[0]}", f"{sc}.epochs=1", f"{sc}.samples=2",
                 f"{sc}.batch_size=16", f"{sc}.val_max_images=16")), run_dir)
    history = json.loads((run_dir / "history.json").read_text())
    assert [e["stage"] for e in history["epochs"]] == ["finetune", "self_critical"]
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert last["stage_name"] == "self_critical" and "+finetuned:" in last["encoder_key"]
    # the self-critical stage started from the best weights so far and kept their fine-tuned CNN as it was
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert all(torch.equal(best["encoder_state"][k], last["encoder_state"][k]) for k in best["encoder_state"])
    assert Captioner.from_checkpoint(run_dir).encoder.identity.key == load_checkpoint(run_dir)["encoder_key"]
