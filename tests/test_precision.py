"""precision=bf16: training steps under torch.autocast (bfloat16 matmuls, fp32 weights and optimizer)."""

import json
import pytest
import torch

from captioning.config import config_problems
from captioning.models.checkpoint import load_checkpoint
from captioning.pipeline import run, run_options
from captioning.utils.precision import native_bf16, resolve_precision
from tests.conftest import tiny_cfg

# oneDNN's fused LSTM kernel refuses bf16 on CPUs without AVX512-BF16/AMX
needs_bf16 = pytest.mark.skipif(not native_bf16(), reason="this CPU has no native bfloat16 (AVX512-BF16 or AMX)")


@needs_bf16
def test_bf16_training_runs_and_keeps_fp32_weights(tiny_root):
    runs = {p: tiny_root / f"precision_{p}" for p in ("bf16", "fp32")}
    results = {p: run(run_options(tiny_cfg(tiny_root, f"precision={p}")), d) for p, d in runs.items()}
    ckpt = load_checkpoint(runs["bf16"] / "checkpoints" / "last.pt")
    assert all(v.dtype == torch.float32 for v in ckpt["weights"].values() if v.is_floating_point())
    # same data, seed and schedule: the bf16 run's losses follow the fp32 run's, not exactly
    mixed, full = (json.loads((d / "history.json").read_text())["epochs"] for d in runs.values())
    for a, b in zip(mixed, full):
        assert a["train_loss"] != b["train_loss"] and a["train_loss"] == pytest.approx(b["train_loss"], rel=0.02)
    assert 0.0 <= results["bf16"]["test"]["Bleu_4"] <= 1.0


@needs_bf16
def test_bf16_loss_is_close_to_fp32():
    from captioning.training.loop import caption_loss
    from tests.conftest import show_tell

    torch.manual_seed(0)
    decoder = show_tell(64, 30, embed_dim=16, hidden_size=32, dropout=0.0)
    feats, tokens = torch.randn(8, 64), torch.randint(4, 30, (8, 10))
    full = caption_loss(decoder(feats, tokens[:, :-1]), tokens[:, 1:])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = caption_loss(decoder(feats, tokens[:, :-1]), tokens[:, 1:])
    assert mixed.dtype == torch.float32 and mixed.item() == pytest.approx(full.item(), rel=1e-2)
    assert mixed.item() != full.item()  # the matmuls did run in bfloat16


def test_unknown_precision_is_refused(tiny_root):
    assert any("precision" in p for p in config_problems(tiny_cfg(tiny_root, "precision=fp16")))


def test_auto_precision_is_bf16_only_where_native():
    assert resolve_precision("auto") == ("bf16" if native_bf16() else "fp32")
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16")


@pytest.mark.skipif(native_bf16(), reason="this CPU multiplies bfloat16 natively")
def test_bf16_without_native_support_is_a_clear_error(tiny_root, tmp_path):
    with pytest.raises(ValueError, match="no native bfloat16"):
        run(run_options(tiny_cfg(tiny_root, "precision=bf16")), tmp_path / "run")
