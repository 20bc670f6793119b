"""Comparing a sweep's runs: labels from the differing overrides, markdown/CSV/PNG, the script."""

import csv
import io
import json

import pytest

from captioning.evaluation.compare import comparison_table, compare_sweep, load_runs, to_markdown

BASE = ["data=shapes_tiny", "schedule=smoke"]


def fake_run(root, name, overrides, bleu4=None):
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if bleu4 is not None:
        metrics = {split: {"Bleu_1": 0.5 + bleu4, "Bleu_4": bleu4 * k, "acc_colour": 0.9}
                   for split, k in (("test", 1.0), ("test_novel", 0.5))}
        metrics["most_frequent/test"] = {"Bleu_4": 0.01}
        metrics["_run"] = {"best_epoch": 2, "val_bleu4": bleu4, "seconds_total": 90.0}
        (d / "metrics.json").write_text(json.dumps(metrics))
    return d


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    for num, (cell, bleu) in enumerate([("rnn", 0.2), ("lstm", 0.4), ("gru", 0.3)]):
        fake_run(root, f"{num}_cell={cell},data=shapes_tiny,schedule=smoke", [f"cell={cell}", *BASE], bleu)
    fake_run(root, "10_cell=rnn,data=shapes_tiny,schedule=smoke,seed=1", ["cell=rnn", *BASE, "seed=1"])  # unfinished
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def test_runs_are_labelled_by_the_overrides_that_differ_in_job_order(sweep):
    runs = load_runs(sweep)
    assert [r.label for r in runs] == ["cell=rnn,seed=-", "cell=lstm,seed=-", "cell=gru,seed=-", "cell=rnn,seed=1"]
    assert runs[3].metrics is None


def test_table_has_model_splits_only_and_bolds_the_best(sweep):
    header, rows = comparison_table(load_runs(sweep))
    assert header == ["run", "test Bleu_1", "test Bleu_4", "test_novel Bleu_1", "test_novel Bleu_4",
                      "val BLEU-4", "best epoch", "minutes"]
    assert rows[1][2] == pytest.approx(0.4) and rows[1][-1] == pytest.approx(1.5) and rows[3][1:] == [None] * 7
    md = to_markdown(header, rows).splitlines()
    assert md[1].startswith("|---|---:") and "| **0.400** |" in md[3] and "**0.200**" not in md[2]
    assert md[5].endswith("| - | - |")
    assert comparison_table(load_runs(sweep), splits=["test"], metrics=["acc_colour"])[0] == [
        "run", "test acc_colour", "val BLEU-4", "best epoch", "minutes"]


def test_compare_sweep_writes_markdown_csv_and_chart(sweep, tmp_path):
    out = compare_sweep(sweep, tmp_path / "out", name="cells")
    assert out["md"].read_text() == out["markdown"] and "![Bleu_4 by run](cells.png)" in out["markdown"]
    assert "(3 of 4 finished)" in out["markdown"]
    rows = list(csv.reader(io.StringIO(out["csv"].read_text())))
    assert rows[0][0] == "run" and rows[2][:3] == ["cell=lstm,seed=-", "0.9", "0.4"] and rows[4][1] == ""
    assert out["png"].read_bytes()[:4] == b"\x89PNG"


def test_script_prints_the_table_and_refuses_bad_dirs(sweep, tmp_path, capsys):
    from scripts.compare_runs import main

    assert main([str(sweep), "--metrics", "Bleu_4"]) == 0
    assert "| cell=gru,seed=- | 0.300 | 0.150 |" in capsys.readouterr().out
    assert (sweep / "comparison.csv").is_file()
    assert main([str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
