import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from captioning import CONFIG_DIR
from captioning.lm.config import LMRunConfig, check, register_schemas
from captioning.lm.corpus import Corpus, random_windows
from captioning.lm.evaluate import evaluate, windowed_loss
from captioning.lm.model import load_lm
from captioning.lm.run import train_from_config
from captioning.utils.schema import ConfigError
from captioning.lm.sample import sample
from captioning.lm.train import TrainConfig, train_char_lm
from captioning.lm.transformer import CharTransformer, TransformerConfig
from captioning.lm.vocab import CharVocab

CONFIGS = str(CONFIG_DIR / "lm")
register_schemas()  # configs/lm/*.yaml extend the declared options


def problems_of(schema: type, cfg) -> list[str]:
    """The problems ``check`` names for ``cfg`` ([] when it passes)."""
    try:
        check(schema, cfg)
    except ConfigError as exc:
        return exc.problems
    return []


def tiny(vocab_size: int = 11, **kw) -> CharTransformer:
    torch.manual_seed(0)
    return CharTransformer(vocab_size, TransformerConfig(**{"n_layer": 2, "n_head": 2, "n_embd": 16,
                                                             "block_size": 16, **kw}))


def test_shapes_and_limits():
    model = tiny().eval()
    logits, state = model(torch.randint(0, 11, (9, 3)))
    assert logits.shape == (9, 3, 11) and state is None
    with pytest.raises(ValueError, match="block_size 16"):
        model(torch.randint(0, 11, (17, 1)))
    with pytest.raises(ValueError, match="no state"):
        model(torch.randint(0, 11, (4, 1)), state=torch.zeros(1))
    with pytest.raises(ValueError, match="multiple of cell.n_head"):
        CharTransformer(5, TransformerConfig(n_head=3, n_embd=16))
    assert model.head.weight is model.tok.weight  # tied by default
    assert tiny(tie_weights=False).head.weight is not tiny(tie_weights=False).tok.weight


def test_changing_a_future_character_leaves_earlier_logits_alone():
    model = tiny(dropout=0.1).eval()
    x = torch.randint(0, 11, (12, 2))
    changed = x.clone()
    changed[7] = (x[7] + 1) % 11
    before, after = model(x)[0], model(changed)[0]
    assert torch.equal(before[:7], after[:7])  # positions 0..6 cannot see position 7
    assert not torch.allclose(before[7:], after[7:])


def test_random_windows_are_shifted_pairs():
    data = torch.arange(100)
    torch.manual_seed(0)
    x, y = random_windows(data, 5, 8)
    assert x.shape == y.shape == (8, 5) and torch.equal(y, x + 1) and torch.equal(x[1:], x[:-1] + 1)
    with pytest.raises(ValueError, match="too short"):
        random_windows(data[:8], 2, 8)


def test_training_lowers_the_loss_and_greedy_sampling_continues_the_text(tmp_path):
    corpus = Corpus.from_text("hello world, hello there. " * 12, val_fraction=0.1)
    model = tiny(len(corpus.vocab))
    before = windowed_loss(model, corpus.train, 16, 8)
    cfg = TrainConfig(batch_size=8, optimizer="adamw", lr=1e-2, min_lr=1e-3, max_steps=150, eval_every=50,
                      eval_window=16, eval_batch_size=4, log_every=1000, checkpoint_every=1000)
    result = train_char_lm(model, corpus, cfg, tmp_path)
    assert windowed_loss(model, corpus.train, 16, 8) < min(before - 1.5, 0.5)
    assert result.val_loss_carried is None and "val_loss_carried" not in result.history[-1]
    again, vocab = load_lm(tmp_path / "ckpt.pt")
    assert isinstance(again, CharTransformer)
    # a prime longer than block_size: only its last 16 characters are read
    assert sample(again, vocab, 11, prime="hello world, hello there. hello ", temperature=0) == "world, hell"


# a CharTransformer's state-dict keys (n_layer=1) as saved before its block was shared, in their order then
OLD_KEYS = ["tok.weight", "pos.weight", "blocks.0.ln1.weight", "blocks.0.ln1.bias", "blocks.0.attn.qkv.weight",
            "blocks.0.attn.qkv.bias", "blocks.0.attn.out.weight", "blocks.0.attn.out.bias", "blocks.0.ln2.weight",
            "blocks.0.ln2.bias", "blocks.0.ffn.0.weight", "blocks.0.ffn.0.bias", "blocks.0.ffn.2.weight",
            "blocks.0.ffn.2.bias", "ln_f.weight", "ln_f.bias", "head.weight"]
RENAMED = {"ln1": "ln_self", "attn.qkv": "self_attn.qkv", "attn.out": "self_attn.w_o", "ln2": "ln_mlp",
           "ffn.": "mlp."}


def as_old_checkpoint(ckpt: dict) -> dict:
    """``ckpt`` (ckpt.pt of a 1-layer CharTransformer) as the code before the shared block wrote it: the old
    parameter names in their order, and the optimizer's entries in that order (matrices, then vectors)."""
    def now(key: str) -> str:
        for old, new in RENAMED.items():
            key = key.replace(old, new)
        return key

    def flat(names: list[str], weights: dict) -> list[str]:
        return [k for k in names if weights[k].dim() >= 2] + [k for k in names if weights[k].dim() < 2]

    weights = {k: ckpt["model"][now(k)] for k in OLD_KEYS}
    # the tied output weight is tok.weight: one parameter, listed once
    old_flat = flat([k for k in OLD_KEYS if k != "head.weight"], weights)
    new_flat = flat([k for k in ckpt["model"] if k != "head.weight"], ckpt["model"])
    assert [now(k) for k in old_flat] != new_flat  # the orders differ: there is something to reorder
    state = ckpt["optimizer"]["state"]
    old_state = {i: state[new_flat.index(now(k))] for i, k in enumerate(old_flat)}
    return {**ckpt, "model": weights, "optimizer": {**ckpt["optimizer"], "state": old_state}}


def test_a_checkpoint_with_the_old_block_names_loads_and_resumes_exactly(tmp_path):
    corpus = Corpus.from_text("hello world, hello there. " * 12, val_fraction=0.1)
    cfg = TrainConfig(batch_size=4, optimizer="adamw", weight_decay=0.1, lr=1e-2, min_lr=1e-3, max_steps=4,
                      eval_every=1000, eval_window=8, eval_batch_size=4, log_every=1000, checkpoint_every=1000)
    train_char_lm(tiny(len(corpus.vocab), n_layer=1, block_size=8), corpus, cfg, tmp_path / "new")
    ckpt = torch.load(tmp_path / "new" / "ckpt.pt", weights_only=False)
    (tmp_path / "old").mkdir()
    torch.save(as_old_checkpoint(ckpt), tmp_path / "old" / "ckpt.pt")
    # the weights load under their old names
    new, _ = load_lm(tmp_path / "new" / "ckpt.pt")
    old, _ = load_lm(tmp_path / "old" / "ckpt.pt")
    x = torch.randint(0, len(corpus.vocab), (8, 2))
    assert torch.equal(new.eval()(x)[0], old.eval()(x)[0])
    # and a run resumed from the old layout continues as one resumed from the new (optimizer state included)
    longer = dataclasses.replace(cfg, max_steps=8)
    for run in ("new", "old"):
        torch.manual_seed(1)
        train_char_lm(tiny(len(corpus.vocab), n_layer=1, block_size=8), corpus, longer, tmp_path / run, resume=True)
    a, b = (torch.load(tmp_path / r / "ckpt.pt", weights_only=False)["model"] for r in ("new", "old"))
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_sampling_with_temperature_reads_the_last_block_size_characters():
    vocab = CharVocab.build("abcdefghij ")
    model = tiny(len(vocab), block_size=4)
    text = sample(model, vocab, 40, prime="abcdefg", temperature=0.8, seed=3)
    assert len(text) == 40 and set(text) <= set(vocab.itos)
    assert text == sample(model, vocab, 40, prime="abcdefg", temperature=0.8, seed=3)
    # greedy sampling, done by hand: argmax of the last window of 4 characters each time
    ids = vocab.encode("abcdefg").tolist()
    for _ in range(10):
        ids.append(int(model(torch.tensor(ids[-4:]).unsqueeze(1))[0][-1, 0].argmax()))
    assert sample(model, vocab, 10, prime="abcdefg", temperature=0) == vocab.decode(ids[7:])


class PositionModel(nn.Module):
    """A toy LM: the logit of character 0 is the position within the call (0, 1, 2, ...), the others 0."""

    def __init__(self, vocab_size: int, context: int | None) -> None:
        super().__init__()
        self.vocab_size, self.context = vocab_size, context

    def forward(self, x, state=None):
        logits = torch.zeros(*x.shape, self.vocab_size)
        logits[..., 0] = torch.arange(x.shape[0], dtype=torch.float)[:, None]
        return logits, None


@pytest.mark.parametrize("context", [None, 4])
def test_windowed_loss_is_the_mean_over_windows_from_an_empty_context(context):
    vocab_size, data = 5, torch.zeros(11, dtype=torch.long)  # 10 targets: windows of 4, 4 and 2
    loss_at = [math.log(math.exp(t) + vocab_size - 1) - t for t in range(4)]  # -log p(0) at position t
    by_hand = (2 * sum(loss_at) + loss_at[0] + loss_at[1]) / 10
    model = PositionModel(vocab_size, context)
    for batch_size in (1, 2, 5):
        assert windowed_loss(model, data, 4, batch_size) == pytest.approx(by_hand, rel=1e-6)
    scores = evaluate(model, data, 4, 2, carried_seq_len=4)
    assert ("val_loss_carried" in scores) == (context is None)
    with pytest.raises(ValueError, match="exceed the model's context"):
        windowed_loss(PositionModel(vocab_size, 3), data, 4, 2)


def test_transformer_config_composes_and_trains_from_hydra(tmp_path):
    text_file = tmp_path / "tiny.txt"
    text_file.write_text("To be, or not to be, that is the question.\n" * 40)
    with initialize_config_dir(config_dir=CONFIGS, version_base=None):
        default = compose("lm", overrides=["cell=transformer", "schedule=transformer"])
        bad = compose("lm", overrides=["cell=transformer", "cell.n_embd=30", "cell.dropout=1.0"])
        small_block = compose("lm", overrides=["cell=transformer", "cell.block_size=32"])
        with pytest.raises(Exception, match="hidden_size"):  # the RNN's options are not the transformer's
            compose("lm", overrides=["cell=transformer", "cell.hidden_size=64"])
        cfg = compose("lm", overrides=["corpus=custom", f"corpus.paths=[{text_file}]", "schedule=smoke",
                                       "cell=transformer", "cell.n_embd=32", "cell.block_size=64",
                                       f"out_dir={tmp_path / 'run'}", "threads=1"])
    assert default.out_dir == "outputs/lm/shakespeare-transformer" and problems_of(LMRunConfig, default) == []
    opts = check(LMRunConfig, default)
    assert isinstance(opts.cell, TransformerConfig) and opts.cell.block_size == 64 == opts.schedule.eval_window
    assert opts.schedule.optimizer == "adamw"
    assert sorted(p.split(" ")[0] for p in problems_of(LMRunConfig, bad)) == ["cell.dropout", "cell.n_embd"]
    assert problems_of(LMRunConfig, small_block) == ["schedule.eval_window (64) must be <= cell.block_size (32): the "
                                         "transformer reads no more than its block"]
    result = train_from_config(check(LMRunConfig, cfg))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert result.steps == cfg.schedule.max_steps and history[-1]["final"]
    assert result.val_loss < history[0]["val_loss"] < 4.0
