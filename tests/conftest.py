"""Shared fixtures: one tiny synthetic dataset and one tiny trained run per test session."""

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")
# the smallest end-to-end run: 64 training images, 2 epochs, a 48-unit decoder, BLEU only
TINY = ["data=shapes_tiny", "schedule=smoke", "metrics=bleu", "decoder.hidden_size=48", "decoder.embed_dim=24",
        "encoder.batch_size=32", "encoder.num_workers=0"]


def tiny_cfg(tmp_root: Path, *overrides: str):
    """The tiny training config with its data and feature cache under ``tmp_root``."""
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=[*TINY, f"cache_dir={tmp_root / 'cache'}", *overrides])


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A session folder; CAPTIONING_DATA points the data configs' roots into it."""
    root = tmp_path_factory.mktemp("tiny")
    os.environ["CAPTIONING_DATA"] = str(root / "data")
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny_root):
    """(run_dir, results) of one tiny training run shared by the tests that only read it."""
    from captioning.pipeline import run

    run_dir = tiny_root / "run"
    results = run(tiny_cfg(tiny_root), run_dir)
    return run_dir, results
