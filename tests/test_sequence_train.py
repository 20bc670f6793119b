"""Problems and the training loop: every task builds and trains; the adding problem is learned at T=10."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from captioning import CONFIG_DIR
from captioning.sequence.config import check, register_schemas
from captioning.sequence.models import SequenceCellConfig as Cell
from captioning.sequence.models import SequenceModelConfig as Sizes
from captioning.sequence.problems import (AddingTask, CaptionColourTask, ParaphraseTask, ReverseTask, build_problem,
                                          seeded_generator, task_config)
from captioning.sequence.train import SequenceRunConfig, SequenceTrainConfig as Loop
from captioning.sequence.train import reached, run_task, train_sequence_model

CONFIGS = str(CONFIG_DIR / "sequence")
register_schemas()  # captioning/configs/sequence/*.yaml extend the declared options

TINY = {
    "adding": AddingTask(seq_len=10, n_test=300, seed=0, tolerance=0.04, placement="hochreiter"),
    "reverse": ReverseTask(min_len=2, max_len=5, n_test=20, seed=0),
    "caption_colour": CaptionColourTask(n_train=300, n_test=100, seed=0, max_len=16),
    "paraphrase": ParaphraseTask(n_train=60, n_test=20, seed=0, max_len=16),
}
MODEL = Sizes(hidden_size=16, embed_dim=8, num_layers=1)
LOOP = dict(batch_size=32, lr=1e-2, max_steps=2, eval_every=1, clip=1.0)


@pytest.mark.parametrize("name,metric", [("adding", "mse"), ("reverse", "exact_greedy"),
                                         ("caption_colour", "accuracy"), ("paraphrase", "exact_beam2")])
def test_every_task_builds_trains_and_reports_its_metric_and_baseline(name, metric):
    problem = build_problem(TINY[name])
    model = problem.build_model(Cell("lstm", lstm_init="chrono"), MODEL)
    result = train_sequence_model(problem, model, Loop(**LOOP, beam_size=2), seeded_generator(0))
    assert result["steps"] == 2 and len(result["history"]) == 2
    assert metric in result["final"] and result["baseline"]
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in result["history"])


def test_gru_learns_the_adding_problem_at_length_10():
    problem = build_problem(TINY["adding"])
    model = problem.build_model(Cell("gru"), Sizes(hidden_size=24, embed_dim=8))
    cfg = Loop(**{**LOOP, "lr": 5e-3, "batch_size": 64, "max_steps": 600, "eval_every": 50,
                  "stop_metric": "mse", "stop_value": 0.005})
    result = train_sequence_model(problem, model, cfg, seeded_generator(0))
    assert result["final"]["mse"] < 0.01 < problem.baseline["mse"]
    assert result["final"]["accuracy"] > 3 * problem.baseline["accuracy"]


def test_caption_colour_is_learned_from_the_caption_words():
    problem = build_problem(TINY["caption_colour"])
    model = problem.build_model(Cell("gru"), Sizes(hidden_size=32, embed_dim=16))
    cfg = Loop(**{**LOOP, "max_steps": 300, "eval_every": 50, "stop_metric": "accuracy", "stop_value": 0.95})
    result = train_sequence_model(problem, model, cfg, seeded_generator(0))
    assert result["final"]["accuracy"] >= 0.95 > problem.baseline["accuracy"]


def test_stop_rule_and_unknown_names():
    assert reached({"mse": 0.01}, "mse", 0.02) and not reached({"mse": 0.03}, "mse", 0.02)
    assert reached({"accuracy": 0.99}, "accuracy", 0.9) and not reached({"accuracy": 0.5}, "accuracy", 0.9)
    assert not reached({"mse": 0.0}, None, None)
    with pytest.raises(ValueError, match="stop_metric"):
        reached({"mse": 0.0}, "bleu", 1.0)
    with pytest.raises(ValueError, match="unknown sequence task"):
        build_problem({"name": "sorting"})
    assert task_config({"name": "reverse", "max_len": 4}) == ReverseTask(max_len=4)


def test_configs_compose_for_every_task_and_cell_and_run_task_saves_its_outputs(tmp_path):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        for task in ("adding", "reverse", "caption_colour", "paraphrase"):
            for cell in ("rnn", "lstm", "gru"):
                cfg = compose("sequence", overrides=[f"task={task}", f"cell={cell}", "seq_len=12"])
                assert cfg.task.name == task and cfg.cell.name == cell and check(SequenceRunConfig, cfg) is not None
        cfg = compose("sequence", overrides=["task=reverse", "cell=lstm", "task.n_test=8", "model.hidden_size=8",
                                             "train.max_steps=2", "train.eval_every=1", "examples=2",
                                             f"out_dir={tmp_path}"])
    opts = check(SequenceRunConfig, cfg)
    assert isinstance(opts.task, ReverseTask) and opts.task.n_test == 8 and opts.cell.lstm_init == "chrono"
    result = run_task(opts, tmp_path)
    assert result["steps"] == 2 and len(result["examples"]) == 2
    assert set(result["examples"][0]) == {"source", "output", "reference"}
    assert (tmp_path / "result.json").exists() and (tmp_path / "model.pt").exists()


def test_bad_values_fail_before_any_work_each_named_once(tmp_path):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("sequence", overrides=["task=reverse", "task.min_len=12", "train.lr=0", "cell.lstm_init=zz",
                                             f"out_dir={tmp_path / 'run'}"])
        with pytest.raises(Exception, match="no_such_option"):  # unknown keys fail at composition
            compose("sequence", overrides=["task=adding", "task.no_such_option=1"])
    with pytest.raises(ValueError) as err:
        check(SequenceRunConfig, cfg)
    lines = [line.strip() for line in str(err.value).splitlines()[1:]]
    assert sorted(line.split(" ")[0] for line in lines) == ["cell.lstm_init", "task.min_len", "train.lr"], lines
    assert not (tmp_path / "run").exists()
