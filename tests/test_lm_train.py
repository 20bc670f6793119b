import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from captioning import CONFIG_DIR
from captioning.lm.config import LMRunConfig, SampleConfig, VizConfig, check, register_schemas
from captioning.lm.corpus import Corpus
from captioning.lm.model import CharCellConfig, CharModelConfig, CharRNN, load_lm
from captioning.lm.run import train_from_config
from captioning.utils.schema import ConfigError
from captioning.lm.sample import sample
from captioning.lm.evaluate import carried_loss, windowed_loss
from captioning.lm.train import TrainConfig, lr_at, schedule_problems, train_char_lm
from captioning.utils.precision import native_bf16, training_precision

CONFIGS = str(CONFIG_DIR / "lm")
register_schemas()  # captioning/configs/lm/*.yaml extend the declared options


def problems_of(schema: type, cfg) -> list[str]:
    """The problems ``check`` names for ``cfg`` ([] when it passes)."""
    try:
        check(schema, cfg)
    except ConfigError as exc:
        return exc.problems
    return []


def tiny_config(**kw) -> TrainConfig:
    base = dict(batch_size=4, seq_len=16, lr=1e-2, min_lr=1e-2, max_steps=150, eval_every=1000,
                eval_batch_size=2, eval_seq_len=16, log_every=1000, checkpoint_every=1000)
    return TrainConfig(**{**base, **kw})


def char_rnn(vocab_size: int, cell: str, hidden_size: int, embedding_dim: int) -> CharRNN:
    return CharRNN(vocab_size, CharCellConfig(cell, hidden_size=hidden_size), CharModelConfig(embedding_dim))


def test_overfits_a_tiny_corpus(tmp_path):
    torch.manual_seed(0)
    corpus = Corpus.from_text("hello world, hello there. " * 12, val_fraction=0.1)
    model = char_rnn(len(corpus.vocab), "lstm", 48, 16)
    before = carried_loss(model, corpus.train, 2, 16)
    result = train_char_lm(model, corpus, tiny_config(), tmp_path)
    assert before > 2.0 and carried_loss(model, corpus.train, 2, 16) < 0.15
    assert result.steps == 150 and (tmp_path / "ckpt.pt").exists() and (tmp_path / "history.json").exists()
    again, vocab = load_lm(tmp_path / "ckpt.pt")
    assert sample(again, vocab, 11, prime="hello ", temperature=0) == "world, hell"


def test_resume_continues_exactly(tmp_path):
    corpus = Corpus.from_text("abcdefghij klmnop, qrstuv. " * 10)

    def fresh() -> CharRNN:
        torch.manual_seed(0)
        return char_rnn(len(corpus.vocab), "gru", 16, 8)

    straight = fresh()
    train_char_lm(straight, corpus, tiny_config(max_steps=12), tmp_path / "a")
    first = fresh()
    train_char_lm(first, corpus, tiny_config(max_steps=5), tmp_path / "b")
    resumed = fresh()  # a new process would start from a new model; the checkpoint restores it
    result = train_char_lm(resumed, corpus, tiny_config(max_steps=12), tmp_path / "b", resume=True)
    assert result.steps == 12 and [h.get("final", False) for h in result.history] == [True]
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    with pytest.raises(ValueError, match="seq_len"):
        train_char_lm(fresh(), corpus, tiny_config(max_steps=14, seq_len=8), tmp_path / "b", resume=True)


@pytest.mark.skipif(not native_bf16(), reason="this CPU has no native bfloat16 (AVX512-BF16 or AMX)")
def test_bf16_autocast_trains_fp32_parameters(tmp_path):
    torch.manual_seed(0)
    corpus = Corpus.from_text("hello world, hello there. " * 12)
    model = char_rnn(len(corpus.vocab), "lstm", 32, 8)
    before = windowed_loss(model, corpus.train, 16, 8)
    train_char_lm(model, corpus, tiny_config(max_steps=40, precision="bf16"), tmp_path)
    assert windowed_loss(model, corpus.train, 16, 8) < before - 1.0
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_lr_schedule_warms_up_and_decays_to_min():
    cfg = tiny_config(lr=1.0, min_lr=0.1, warmup_steps=4)
    assert lr_at(0.0, 0, cfg) == pytest.approx(0.25)
    assert lr_at(0.0, 4, cfg) == pytest.approx(1.0)
    assert lr_at(0.5, 50, cfg) == pytest.approx(0.55)
    assert lr_at(1.0, 100, cfg) == pytest.approx(0.1)
    assert schedule_problems(TrainConfig(optimizer="sgd"))[0].startswith("schedule.optimizer must be one of")
    assert schedule_problems(TrainConfig(precision="fp8"))[0].startswith("schedule.precision must be one of")
    assert training_precision("auto") == ("bf16" if native_bf16() else "fp32")


def test_the_loop_refuses_a_bad_schedule_before_any_work(tmp_path):
    corpus = Corpus.from_text("some text to read " * 30)
    with pytest.raises(ValueError, match="schedule.optimizer") as err:
        train_char_lm(char_rnn(len(corpus.vocab), "rnn", 8, 4), corpus,
                      tiny_config(optimizer="sgd", max_steps=0, betas=[0.9]), tmp_path)
    assert "schedule.max_steps must be >= 1" in str(err.value) and "schedule.betas" in str(err.value)
    assert not list(tmp_path.iterdir())  # nothing written


def test_time_budget_stops_training(tmp_path):
    corpus = Corpus.from_text("some text to read " * 30)
    model = char_rnn(len(corpus.vocab), "rnn", 8, 4)
    result = train_char_lm(model, corpus, tiny_config(max_steps=10**9, max_seconds=0.5), tmp_path)
    assert 0 < result.steps < 10**9 and result.seconds >= 0.5


@pytest.mark.parametrize("corpus,cell,schedule", [("shakespeare", "lstm", "default"), ("python_source", "gru", "long"),
                                                  ("c_source", "rnn", "smoke"), ("latex", "lstm", "default")])
def test_configs_compose(corpus, cell, schedule):
    with initialize_config_dir(config_dir=CONFIGS, version_base=None):
        cfg = compose("lm", overrides=[f"corpus={corpus}", f"cell={cell}", f"schedule={schedule}"])
    assert cfg.cell.name == cell and cfg.corpus.name == corpus and cfg.out_dir == f"outputs/lm/{corpus}-{cell}"
    TrainConfig(**{k: v for k, v in cfg.schedule.items()})  # every schedule key is a TrainConfig field
    assert problems_of(LMRunConfig, cfg) == ([] if corpus != "latex" else  # latex has no default path: the command line gives it
                                 ["corpus.paths is empty: set it to files, folders or globs, e.g. 'corpus.paths=[my_text.txt]'"])


def test_bad_values_fail_before_any_work_each_named_once(tmp_path):
    with initialize_config_dir(config_dir=CONFIGS, version_base=None):
        cfg = compose("lm", overrides=["schedule.batch_size=0", "cell.dropout=1.5", "corpus.language=klingon",
                                       f"out_dir={tmp_path / 'run'}"])
        sample_cfg = compose("sample", overrides=["temperature=-0.5", "length=-1", "prime="])
        viz_cfg = compose("viz", overrides=["top_k=0", "chars=0", "corpus.max_chars=1"])
        with pytest.raises(Exception, match="no_such_option"):  # unknown keys fail at composition
            compose("lm", overrides=["schedule.no_such_option=1"])
    with pytest.raises(ValueError) as err:
        train_from_config(check(LMRunConfig, cfg))
    lines = str(err.value).splitlines()[1:]
    assert sorted(line.strip().split(" ")[0] for line in lines) == ["cell.dropout", "corpus.language", "schedule.batch_size"]
    assert not (tmp_path / "run").exists()
    assert len(problems_of(SampleConfig, sample_cfg)) == 3 and len(problems_of(VizConfig, viz_cfg)) == 3


def test_smoke_train_from_hydra_config(tmp_path):
    text_file = tmp_path / "tiny.txt"
    text_file.write_text("To be, or not to be, that is the question.\n" * 40)
    with initialize_config_dir(config_dir=CONFIGS, version_base=None):
        cfg = compose("lm", overrides=["corpus=custom", f"corpus.paths=[{text_file}]", "schedule=smoke",
                                       "cell=gru", "cell.hidden_size=32", f"out_dir={tmp_path / 'run'}", "threads=1"])
    result = train_from_config(check(LMRunConfig, cfg))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert result.steps == cfg.schedule.max_steps and history[-1]["final"]
    assert [h["step"] for h in history[:-1]] == [10, 20, 30]
    assert result.val_loss < history[0]["val_loss"] < 4.0
