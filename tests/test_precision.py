"""precision=bf16: training steps under torch.autocast (bfloat16 matmuls, fp32 weights and optimizer)."""

import json
import pytest
import torch

from captioning.config_check import config_problems
from captioning.model import load_checkpoint
from captioning.pipeline import run
from tests.conftest import tiny_cfg


def test_bf16_training_runs_and_keeps_fp32_weights(tiny_root):
    runs = {p: tiny_root / f"precision_{p}" for p in ("bf16", "fp32")}
    results = {p: run(tiny_cfg(tiny_root, f"precision={p}"), d) for p, d in runs.items()}
    ckpt = load_checkpoint(runs["bf16"] / "checkpoints" / "last.pt")
    assert all(v.dtype == torch.float32 for v in ckpt["decoder"].values() if v.is_floating_point())
    # same data, seed and schedule: the bf16 run's losses follow the fp32 run's, not exactly
    mixed, full = (json.loads((d / "history.json").read_text())["epochs"] for d in runs.values())
    for a, b in zip(mixed, full):
        assert a["train_loss"] != b["train_loss"] and a["train_loss"] == pytest.approx(b["train_loss"], rel=0.02)
    assert 0.0 <= results["bf16"]["test"]["Bleu_4"] <= 1.0


def test_bf16_loss_is_close_to_fp32():
    from captioning.decoder import CaptionDecoder, caption_loss

    torch.manual_seed(0)
    decoder = CaptionDecoder(feature_dim=64, vocab_size=30, embed_dim=16, hidden_size=32)
    feats, tokens = torch.randn(8, 64), torch.randint(4, 30, (8, 10))
    full = caption_loss(decoder(feats, tokens[:, :-1]), tokens[:, 1:])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = caption_loss(decoder(feats, tokens[:, :-1]), tokens[:, 1:])
    assert mixed.dtype == torch.float32 and mixed.item() == pytest.approx(full.item(), rel=1e-2)
    assert mixed.item() != full.item()  # the matmuls did run in bfloat16


def test_unknown_precision_is_refused(tiny_root):
    assert any("precision" in p for p in config_problems(tiny_cfg(tiny_root, "precision=fp16")))
