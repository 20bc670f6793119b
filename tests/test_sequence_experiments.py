"""The long-term-dependency sweep end to end at toy size: rows, curves, markdown, PNG, json."""

import json

import pytest

from captioning.sequence.experiments import FIGURE, SweepConfig, length_sweep, markdown_report, write_report
from captioning.utils.schema import build

PLAIN = {
    "seed": 0,
    "lengths": [6, 8],
    "variants": [{"name": "rnn", "cell": "rnn"}, {"name": "lstm", "cell": "lstm", "lstm_init": "chrono"}],
    "task": {"placement": "hochreiter", "tolerance": 0.04, "n_test": 50},
    "model": {"hidden_size": 4, "num_layers": 1, "backend": "fused"},
    "train": {"batch_size": 8, "lr": 0.01, "max_steps": 3, "eval_every": 3, "clip": 1.0,
              "stop_metric": "mse", "stop_value": 0.001},
    "solved_fraction": 0.05,
    "probe": {"train_len": 8, "length": 12, "n": 4},
}
CFG = build(SweepConfig, PLAIN)


def test_sweep_writes_table_figure_and_json(tmp_path):
    seen = []
    result = length_sweep(CFG, progress=seen.append)
    assert [(r["variant"], r["seq_len"]) for r in result["rows"]] == [("rnn", 6), ("rnn", 8), ("lstm", 6), ("lstm", 8)]
    assert seen == result["rows"]
    for curves in result["curves"].values():
        assert len(curves["init"]) == len(curves["trained"]) == 13  # k = 0 .. 12
        assert curves["init"] != curves["trained"]
    written = write_report(result, CFG, tmp_path / "run", tmp_path / "docs", "python scripts/long_term_dependency.py")
    md = (tmp_path / "docs" / "long_term_dependency.md").read_text()
    assert f"figures/{FIGURE}" in md and "| 8 | 0.1667 (8%) |" in md and "| lstm | init |" in md
    for d in ("run", "docs"):
        assert (tmp_path / d / "figures" / FIGURE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "run" / "long_term_dependency.json").read_text())
    assert saved["rows"][0]["variant"] == "rnn" and len(written) == 5
    assert not list(tmp_path.rglob("*.tmp"))


def test_bold_marks_only_solved_runs():
    row = {"variant": "gru", "seq_len": 10, "mse": 0.001, "accuracy": 0.9, "solved": True, "mse_ratio": 0.006,
           "steps": 5, "seconds": 1.0}
    result = {"rows": [row, {**row, "variant": "rnn", "mse": 0.16, "solved": False, "mse_ratio": 0.96}], "curves": {},
              "baseline": {"mse": 1 / 6, "accuracy": 0.0784}}
    md = markdown_report(result, build(SweepConfig, {**PLAIN, "lengths": [10]}), "x.png", "cmd")
    assert "| 10 | 0.1667 (8%) | **0.0010** (90%) | 0.1600 (90%) |" in md
    assert "- gru: solved T = 10." in md
    assert "- rnn: solved no length; at T = 10 the test MSE ended at 0.96-0.96 x the baseline's." in md


def test_bad_sweep_configs_are_refused():
    with pytest.raises(ValueError, match="probe.train_len"):
        length_sweep(build(SweepConfig, {**PLAIN, "probe": {**PLAIN["probe"], "train_len": 7}}))
    with pytest.raises(ValueError, match="distinct"):
        length_sweep(build(SweepConfig, {**PLAIN, "variants": [{"name": "a", "cell": "rnn"}, {"name": "a", "cell": "gru"}]}))
    # every bad value at once, before the first run
    with pytest.raises(ValueError) as err:
        length_sweep(build(SweepConfig, {**PLAIN, "lengths": [2, 8], "solved_fraction": 0.0,
                                         "train": {**PLAIN["train"], "lr": -1.0}}))
    assert len(str(err.value).splitlines()[1:]) == 3, str(err.value)
