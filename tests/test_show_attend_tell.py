"""Region features (encoder.pool=regions, a float16 [N, R, D] cache) and model=show_attend_tell."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captioning.features.cache import extract_features
from captioning.features.encoder import build_encoder
from captioning.models.base import build_model
from captioning.models.checkpoint import load_checkpoint, model_from_checkpoint
from captioning.nn.decoding import beam_search, greedy
from captioning.pipeline import run, run_options
from tests.conftest import straight_and_resumed, tiny_cfg

LITE0 = {"image_size": 128, "precision": "fp32", "batch_size": 4, "num_workers": 0}
REGIONS = ["encoder.pool=regions", "encoder.grid_size=2",  # the tiny run's encoder, as 4 region vectors
           "model.hidden_size=48", "model.embed_dim=24", "model.attention_dim=24"]


def sat(cell="lstm", backend="fused", feature_dim=20, vocab=30, **options):
    cfg = {"name": "show_attend_tell", "cell": {"name": cell, "num_layers": 1, "backend": backend},
           "hidden_size": 32, "embed_dim": 16, "attention_dim": 8, **options}
    return build_model(cfg, feature_dim, vocab, max_len=10)


def test_regions_average_to_the_pooled_feature():
    """4 x 4 map at 128 px, 2 x 2 regions: the mean of the regions is exactly the classifier's pooled vector."""
    pooled, regions = build_encoder(LITE0), build_encoder({**LITE0, "pool": "regions", "grid_size": 2})
    assert regions.feature_shape == (4, 1280) and regions.feature_dim == 1280 and regions.cache_dtype == "float16"
    assert regions.cache_key != pooled.cache_key
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        got, want = regions(x), pooled(x)
    assert got.shape == (2, 4, 1280)
    torch.testing.assert_close(got.mean(1), want, rtol=1e-4, atol=1e-5)


def test_region_cache_is_float16_and_reused(tmp_path):
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((40, 40, 3), 40 * i, np.uint8)).save(paths[-1])
    encoder = build_encoder({**LITE0, "pool": "regions", "grid_size": 2})
    first = extract_features(encoder, paths, tmp_path / "cache", "regions", batch_size=2)
    assert first.features.shape == (5, 4, 1280) and first.features.dtype == np.float16
    with torch.inference_mode():
        direct = encoder(encoder.transform.normalize(torch.stack([encoder.transform.to_uint8(
            Image.open(p).convert("RGB")) for p in paths]), encoder.channels_last))
    np.testing.assert_allclose(np.asarray(first.features, np.float32), direct.numpy(), rtol=2e-3, atol=2e-3)
    again = extract_features(encoder, paths, tmp_path / "cache", "regions", batch_size=2)
    assert again.cache_dir == first.cache_dir and np.array_equal(again.features, first.features)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_steps_equal_teacher_forcing_and_attention_is_a_distribution(cell):
    torch.manual_seed(0)
    model = sat(cell).eval()
    feats, tokens = torch.randn(3, 4, 20), torch.randint(1, 30, (3, 6))
    logits = model(feats, tokens)
    state, steps = model.init_state(feats), []
    for t in range(tokens.size(1)):
        logp, state = model.step(tokens[:, t], state)
        steps.append(logp)
    torch.testing.assert_close(torch.stack(steps, 1), torch.log_softmax(logits, -1))
    alphas = model.attention(feats, tokens)
    assert alphas.shape == (3, 6, 4)
    torch.testing.assert_close(alphas.sum(-1), torch.ones(3, 6))
    assert model.auxiliary_loss() is None  # the penalty belongs to training forwards only


def test_penalty_is_doubly_stochastic_and_ignores_padding():
    torch.manual_seed(0)
    model = sat(alpha_c=0.5, dropout=0.0).train()  # no dropout: train and eval forwards are the same function
    feats, tokens = torch.randn(2, 4, 20), torch.randint(1, 30, (2, 5))
    tokens[1, 3:] = 0
    model(feats, tokens)
    penalty = model.auxiliary_loss()
    assert penalty is not None and penalty.requires_grad and model.auxiliary_loss() is None  # used once
    alphas = model.attention(feats, tokens) * (tokens != 0).unsqueeze(-1)
    expected = 0.5 * ((1 - alphas.sum(1)) ** 2).sum(1).mean()  # lambda * sum_i (1 - sum_t alpha_ti)^2
    torch.testing.assert_close(penalty, expected)
    off = sat(alpha_c=0.0).train()
    off(feats, tokens)
    assert off.auxiliary_loss() is None


def test_fused_and_scratch_cells_agree():
    torch.manual_seed(0)
    fused, scratch = sat("lstm", "fused").eval(), sat("lstm", "scratch").eval()
    scratch.load_state_dict(fused.state_dict())
    feats, tokens = torch.randn(2, 9, 20), torch.randint(1, 30, (2, 5))
    torch.testing.assert_close(scratch(feats, tokens), fused(feats, tokens), rtol=1e-5, atol=1e-5)


def test_pooled_features_are_one_region_and_layers_are_checked():
    model = sat().eval()
    assert model(torch.randn(2, 20), torch.randint(1, 30, (2, 4))).shape == (2, 4, 30)
    with pytest.raises(ValueError, match="num_layers=1"):
        build_model({"name": "show_attend_tell", "cell": {"name": "lstm", "num_layers": 2, "backend": "fused"}},
                    20, 30, 10)


def test_beam_batched_equals_one_at_a_time_and_beam_one_is_greedy():
    torch.manual_seed(0)
    model = sat().eval()
    feats = torch.randn(4, 4, 20)
    batched = beam_search(model, feats, beam_size=3, max_len=8)
    for i in range(4):
        one = beam_search(model, feats[i : i + 1], beam_size=3, max_len=8)
        assert one.tokens[0] == batched.tokens[i]
    assert beam_search(model, feats, beam_size=1, max_len=8).tokens == greedy(model, feats, max_len=8).tokens


def test_model_yaml_selects_region_features(tiny_root):
    cfg = tiny_cfg(tiny_root, "model=show_attend_tell")  # the tiny run names its encoder: pooled, 1 region
    assert cfg.encoder.pool == "avg" and cfg.model.name == "show_attend_tell"
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONFIGS

    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        default = compose("train", overrides=["model=show_attend_tell"])
    assert default.encoder.pool == "regions" and default.encoder.grid_size == 4


def test_tiny_run_trains_checkpoints_and_resumes_exactly(tiny_root):
    run_dir = tiny_root / "sat_run"
    results = run(run_options(tiny_cfg(tiny_root, "model=show_attend_tell", *REGIONS)), run_dir)
    assert "Bleu_4" in results["test"]
    model, vocab = model_from_checkpoint(load_checkpoint(run_dir / "checkpoints" / "best.pt"))
    assert type(model).__name__ == "ShowAttendTell"
    straight, resumed = straight_and_resumed(tiny_root, "sat", "model=show_attend_tell", *REGIONS)
    assert straight["weights"].keys() == resumed["weights"].keys()
    for k, v in straight["weights"].items():
        assert torch.equal(v, resumed["weights"][k]), k


def test_self_critical_stage_runs(tiny_root):
    results = run(run_options(tiny_cfg(tiny_root, "model=show_attend_tell", *REGIONS, "schedule.stages.self_critical.epochs=1",
                           "schedule.stages.self_critical.samples=2", "schedule.stages.cross_entropy.epochs=1")),
                  tiny_root / "sat_scst")
    assert np.isfinite(results["test"]["Bleu_4"])


def test_attention_maps_of_a_run(tiny_root, tmp_path):
    """The pipeline writes the worst captions' attention strips; the Captioner and the script draw them."""
    import subprocess
    import sys

    from captioning.captioner import Captioner

    run_dir = tiny_root / "sat_run"
    if not (run_dir / "checkpoints" / "best.pt").exists():
        run(run_options(tiny_cfg(tiny_root, "model=show_attend_tell", *REGIONS)), run_dir)
    assert (run_dir / "eval" / "attention_test.png").stat().st_size > 0
    captioner = Captioner.from_checkpoint(run_dir)
    records = [p for p in sorted((tiny_root / "data").rglob("*.png"))][:2]
    (caption, words, weights), _ = captioner.attend(records, method="greedy")
    assert words == caption.text.split() + ["<end>"] and weights.shape == (len(words), 4)
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-5)
    out = tmp_path / "attention.png"
    done = subprocess.run([sys.executable, "-m", "captioning.commands.render_attention", f"checkpoint={run_dir}", f"out={out}",
                           "per_split=1"], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert Image.open(out).size[0] > 100


def test_show_tell_has_no_attention_maps(tiny_run):
    from captioning.captioner import Captioner
    from captioning.models.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="no attention maps"):
        Captioner.from_checkpoint(tiny_run[0]).attend([])


def test_caption_command_draws_attention(tiny_root, tmp_path, capsys):
    from captioning.commands.caption import main

    run_dir = tiny_root / "sat_run"
    if not (run_dir / "checkpoints" / "best.pt").exists():
        run(run_options(tiny_cfg(tiny_root, "model=show_attend_tell", *REGIONS)), run_dir)
    images = sorted((tiny_root / "data").rglob("*.png"))[:2]
    out = tmp_path / "att.png"
    assert main([*map(str, images), f"checkpoint={run_dir}", "decoding.method=greedy", f"attention={out}"]) == 0
    printed = capsys.readouterr().out
    assert all(f"{p}\t" in printed for p in images) and Image.open(out).size[0] > 100


def test_caption_command_refuses_attention_for_show_tell(tiny_run, tmp_path, capsys):
    from captioning.commands.caption import main

    images = sorted(tiny_run[0].parent.rglob("*.png"))[:1]
    assert main([str(images[0]), f"checkpoint={tiny_run[0]}", f"attention={tmp_path / 'a.png'}"]) == 2
    assert "no attention maps" in capsys.readouterr().err
