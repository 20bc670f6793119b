"""A caption model defined outside the package (here, in this test file) goes through every entry point:
selected from a config of the user's own (Hydra's search path, as `--config-dir` does), trained, beam
decoded, trained self-critically, checkpointed, reloaded and evaluated, with no edit to the package.

Its state is a dict whose tensors keep the batch on dim 0 (not show_tell's [layers, B, H] tuple), so
beam search must go through the model's own ``select_state``."""

import json
from dataclasses import dataclass

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import Tensor, nn

from captioning.captioner import Captioner
from captioning.evaluation.checkpoint import evaluate_checkpoint
from captioning.models.base import CaptionModel, State
from captioning.models.checkpoint import load_checkpoint, model_from_checkpoint
from captioning.nn.decoding import beam_search, greedy
from captioning.pipeline import run, run_options
from captioning.utils.schema import option
from tests.conftest import CONFIGS, TINY

NOT_MODEL = [o for o in TINY if not o.startswith("model.")]  # the tiny run's data, schedule and encoder


@dataclass
class ToyConfig:
    """A GRU cell whose input is the previous word and the image feature at every step."""

    width: int = option(16, "hidden width", ge=1)


class ToyCaptioner(CaptionModel):
    """The image feature enters every step (concatenated with the word), not only h0."""

    Config = ToyConfig

    def __init__(self, config: ToyConfig, feature_dim: int, vocab_size: int, max_len: int) -> None:
        super().__init__(config, feature_dim, vocab_size, max_len)
        self.image = nn.Linear(feature_dim, config.width)
        self.embed = nn.Embedding(vocab_size, config.width)
        self.cell = nn.GRUCell(2 * config.width, config.width)
        self.out = nn.Linear(config.width, vocab_size)

    def init_state(self, features: Tensor) -> State:
        image = torch.tanh(self.image(features))
        return {"image": image, "h": torch.zeros_like(image)}

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        h = self.cell(torch.cat([self.embed(tokens), state["image"]], -1), state["h"])
        return torch.log_softmax(self.out(h), -1), {"image": state["image"], "h": h}

    def forward(self, features: Tensor, tokens: Tensor) -> Tensor:
        state, logits = self.init_state(features), []
        for t in range(tokens.size(1)):
            h = self.cell(torch.cat([self.embed(tokens[:, t]), state["image"]], -1), state["h"])
            state = {"image": state["image"], "h": h}
            logits.append(self.out(h))
        return torch.stack(logits, 1)


@pytest.fixture
def user_configs(tmp_path):
    """A config folder of the user's own, with one model yaml in it."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "toy.yaml").write_text(f"name: {__name__}.ToyCaptioner\nwidth: 12\n")
    return tmp_path


def test_a_model_outside_the_package_goes_through_every_entry_point(tiny_root, user_configs, tmp_path):
    stage = "schedule.stages.self_critical"
    overrides = [*NOT_MODEL, f"cache_dir={tiny_root / 'cache'}", f"hydra.searchpath=[file://{user_configs}]", "model=toy",
                 f"{stage}.epochs=1", f"{stage}.samples=2", f"{stage}.baseline=greedy"]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    run_dir = tmp_path / "run"
    results = run(run_options(cfg), run_dir)  # cross-entropy (smoke), then a self-critical epoch, then evaluation
    history = json.loads((run_dir / "history.json").read_text())
    assert [e["stage"] for e in history["epochs"]] == ["cross_entropy", "cross_entropy", "self_critical"]
    # the best weights when the cross-entropy stage ended are kept (a schedule without the second stage)
    after_xe = load_checkpoint(run_dir / "checkpoints" / "best_after_cross_entropy.pt")
    assert after_xe["stage_name"] == "cross_entropy" and not (run_dir / "checkpoints" / "best_after_self_critical.pt").exists()
    assert 0.0 <= results["test"]["Bleu_4"] <= 1.0 and (run_dir / "eval" / "failures_test.html").is_file()

    ckpt = load_checkpoint(run_dir)
    assert ckpt["model"] == {"name": f"{__name__}.ToyCaptioner", "width": 12}
    model, vocab = model_from_checkpoint(ckpt)
    assert isinstance(model, ToyCaptioner) and model.config.width == 12
    feats = torch.randn(5, model.feature_dim)
    beams = beam_search(model, feats, beam_size=3, keep_beams=3)
    one = beam_search(model, feats[:1], beam_size=3)
    assert beams.tokens[0] == one.tokens[0] and all(len(b) == 3 for b in beams.beams)
    assert beam_search(model, feats, beam_size=1).tokens == greedy(model, feats).tokens

    images = sorted((tiny_root / "data" / "shapes_tiny" / "images" / "test").glob("*.png"))[:2]
    assert all(c.text is not None for c in Captioner.from_checkpoint(run_dir).caption(images))
    from tests.test_evaluate_script import eval_cfg

    again = evaluate_checkpoint(eval_cfg(f"checkpoint={run_dir}", "split=test"), tmp_path / "eval")
    assert again["test"]["Bleu_4"] == results["test"]["Bleu_4"]


def test_a_user_models_options_are_checked(tiny_root, user_configs):
    from captioning.config import config_problems

    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=[*NOT_MODEL, f"hydra.searchpath=[file://{user_configs}]", "model=toy",
                                          "+model.depth=2", "model.width=0"])
    found = config_problems(cfg)
    assert "model.width must be >= 1, got 0" in found and any("model.depth: unknown option" in p for p in found)
