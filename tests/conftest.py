"""Shared fixtures: one tiny synthetic dataset and one tiny trained run, each made once per pytest run."""

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import captioning.config  # noqa: F401 (registers the config schemas with Hydra)
from captioning import CONFIG_DIR

CONFIGS = str(CONFIG_DIR)  # the package's configs (captioning/configs)
# the smallest end-to-end run: 64 training images, 2 epochs, a 48-unit decoder, BLEU only. The pooled
# 1280-d feature, not the main job's grid: with 6400 inputs, many LayerNorm weights get near-zero
# gradients that Adam scales up to full steps, so float-order noise (DDP vs one process) shows.
TINY = ["data=shapes_tiny", "schedule=smoke", "metrics=bleu", "model.hidden_size=48", "model.embed_dim=24",
        "encoder=efficientnet_lite0", "encoder.image_size=128", "encoder.precision=fp32", "encoder.batch_size=32",
        "encoder.num_workers=0", "data.eval_splits=[test,test_novel]"]
# (the shapes data's main job evaluates val only; the tests read the test splits, as make_results does)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests use tiny tensors: one thread is as fast, and immune to oversubscribed CPUs."""
    import torch

    torch.set_num_threads(1)


def tiny_cfg(tmp_root: Path, *overrides: str):
    """The tiny training config with its data and feature cache under ``tmp_root``; an override choosing
    another model (``model=transformer``) drops the tiny show_tell options."""
    tiny = [o for o in TINY if not o.startswith("model.")] if any(o.startswith("model=") for o in overrides) else TINY
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=[*tiny, f"cache_dir={tmp_root / 'cache'}", *overrides])


def straight_and_resumed(tmp_root: Path, name: str, *overrides: str, stage: str = "cross_entropy") -> tuple[dict, dict]:
    """The last checkpoints of a tiny run whose last stage ``stage`` trains 2 epochs, done straight and
    stopped after that stage's first epoch (its schedule unchanged otherwise) and resumed: equal weights
    mean resume is exact."""
    from captioning.models.checkpoint import load_checkpoint
    from captioning.pipeline import run, run_options

    two = [*overrides, f"schedule.stages.{stage}.epochs=2"]
    straight, part = tmp_root / f"{name}_straight", tmp_root / f"{name}_part"
    run(run_options(tiny_cfg(tmp_root, *two)), straight)
    cfg = tiny_cfg(tmp_root, *two)
    cfg.schedule.stages[stage].epochs = 1
    run(run_options(cfg), part)
    run(run_options(tiny_cfg(tmp_root, *two, f"resume={part}")), part)
    return tuple(load_checkpoint(d / "checkpoints" / "last.pt") for d in (straight, part))


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A folder made once per pytest run; CAPTIONING_DATA points the data configs' roots into it."""
    root = tmp_path_factory.mktemp("tiny")
    os.environ["CAPTIONING_DATA"] = str(root / "data")
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny_root):
    """(run_dir, results) of one tiny training run shared by the tests that only read it."""
    from captioning.pipeline import run, run_options

    run_dir = tiny_root / "run"
    results = run(run_options(tiny_cfg(tiny_root)), run_dir)
    return run_dir, results


@pytest.fixture(scope="session")
def tiny_prepared(tiny_root):
    """Train and val splits of the tiny set with its vocabulary and features (extracted once, then cached)."""
    from captioning.features.prepare import prepare
    from captioning.pipeline import run_options

    cfg = tiny_cfg(tiny_root)
    return prepare(run_options(cfg).source, splits_needed=[cfg.data.train_split, cfg.data.val_split])


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A captioning checkpoint that loads and runs in milliseconds per image: a random 16-unit LSTM decoder
    over 8 words on timm's tiny random ``test_resnet`` at 32 px (its captions are nonsense)."""
    import torch

    from captioning.features.encoder import build_encoder
    from captioning.models.checkpoint import save_checkpoint
    from captioning.text.vocab import Vocabulary

    torch.manual_seed(0)
    encoder_cfg = {"name": "test_resnet", "source": "timm", "weights": None, "image_size": 32}
    vocab = Vocabulary("a red green blue circle square on left".split())
    model = show_tell(build_encoder(encoder_cfg).feature_dim, len(vocab), max_len=8, embed_dim=8, hidden_size=16)
    path = tmp_path_factory.mktemp("tiny_checkpoint") / "model.pt"
    # a random encoder has no stable cache key, so the checkpoint records none (the check is skipped)
    save_checkpoint(path, model, vocab, encoder_cfg, "")
    return path


def show_tell(feature_dim: int, vocab_size: int, cell: str = "lstm", max_len: int = 16, num_layers: int = 1,
              backend: str = "fused", **options):
    """A ``show_tell`` model with the given options (the rest at their declared defaults)."""
    from captioning.models.base import build_model

    cell_cfg = {"name": cell, "num_layers": num_layers, "backend": backend}
    return build_model({"name": "show_tell", "cell": cell_cfg, **options}, feature_dim, vocab_size, max_len)
