"""Comparing a sweep's runs: labels from the differing overrides, markdown/CSV/PNG, the script."""

import csv
import io
import json

import pytest

from captioning.experiments.compare import comparison_table, compare_sweep, load_runs, to_markdown

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
    from captioning.commands.compare_runs import main

    assert main([str(sweep), "metrics=[Bleu_4]"]) == 0
    assert "| cell=gru,seed=- | 0.300 | 0.150 |" in capsys.readouterr().out
    assert (sweep / "comparison.csv").is_file()
    assert main([str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2


# --- paired comparison over images (captioning-paired) -------------------------------------------------


@pytest.fixture(scope="module")
def tiny_gru_run(tiny_root):
    """A second tiny run, the GRU cell, on the same images as tiny_run."""
    from captioning.pipeline import run, run_options
    from tests.conftest import tiny_cfg

    run_dir = tiny_root / "run_gru"
    return run_dir, run(run_options(tiny_cfg(tiny_root, "cell=gru")), run_dir)


def test_paired_comparison_of_two_tiny_runs(tiny_run, tiny_gru_run, tmp_path):
    import shutil

    from captioning.experiments.compare import paired_comparison, paired_markdown

    (lstm, m_lstm), (gru, m_gru) = tiny_run, tiny_gru_run
    rows = paired_comparison([lstm], [gru], resamples=2000)
    assert {(r["split"], r["metric"]) for r in rows} == {(s, m) for s in ("test", "test_novel")
                                                         for m in ("Bleu_4", "acc_scene", "acc_binding")}
    for r in rows:  # each side is the run's own metric; the interval holds the difference
        assert r["A"] == pytest.approx(m_lstm[r["split"]][r["metric"]], abs=1e-9)
        assert r["B"] == pytest.approx(m_gru[r["split"]][r["metric"]], abs=1e-9)
        assert r["low"] <= r["difference"] + 1e-12 and r["difference"] <= r["high"] + 1e-12
        assert r["images"] == 16 and r["seeds"] == (1, 1)
    assert m_lstm["_run"]["seed"] == m_gru["_run"]["seed"] == 0
    # a folder of runs (one per seed) is read as its runs; two identical seeds average to the same
    for k in (0, 1):
        shutil.copytree(lstm / "eval", tmp_path / "lstm" / f"seed{k}" / "eval")
    twice = paired_comparison([tmp_path / "lstm"], [gru], splits=["test"], metrics=["Bleu_4"], resamples=2000)
    assert twice[0]["seeds"] == (2, 1) and twice[0]["difference"] == pytest.approx(rows[0]["difference"])
    assert (twice[0]["low"], twice[0]["high"]) == pytest.approx((rows[0]["low"], rows[0]["high"]))
    # a run against itself: nothing to tell apart
    same = paired_comparison([lstm], [lstm], splits=["test"], resamples=500)
    assert all(r["difference"] == r["low"] == r["high"] == 0 and not r["excludes_zero"] for r in same)
    assert "| test | Bleu_4 |" in paired_markdown(same) and "no: not distinguishable" in paired_markdown(same)


def test_paired_script_prints_the_verdict_and_refuses_bad_input(tiny_run, tiny_gru_run, tmp_path, capsys):
    from captioning.commands.paired import main

    assert main([f"a={tiny_run[0]}", f"b={tiny_gru_run[0]}", "labels=[lstm,gru]", "splits=[test]",
                 "resamples=500"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| split | metric | lstm | gru | lstm - gru | 95% paired interval | excludes 0 |")
    assert "| test | acc_binding |" in out and "16 images per split; 1 vs 1 runs" in out
    assert main([f"a={tmp_path / 'nope'}", f"b={tiny_run[0]}"]) == 2
    assert main([f"a={tiny_run[0]}", f"b={tiny_run[0]}", "metrics=[CIDEr]"]) == 2  # metrics=bleu
    assert "CIDEr" in capsys.readouterr().err
    assert main(["--a", str(tiny_run[0]), "--b", str(tiny_run[0])]) == 2  # the old spelling: named
    assert "--a is now a=" in capsys.readouterr().err


def _per_image_run(root, name, scene, ids):
    d = root / name
    (d / "eval").mkdir(parents=True)
    (d / "eval" / "per_image_test.json").write_text(json.dumps([{"image_id": i, "acc_scene": s} for i, s in zip(ids, scene)]))
    return d


def test_paired_verdict_when_the_interval_excludes_zero(tmp_path):
    from captioning.experiments.compare import paired_comparison, paired_markdown

    a = _per_image_run(tmp_path, "a", [1.0] * 8, range(8))
    b = _per_image_run(tmp_path, "b", [1.0, 0.0] * 4, range(8))
    (row,) = paired_comparison([a], [b], splits=["test"], metrics=["acc_scene"], resamples=2000)
    # per image A - B is 0 or 1, half each: the 95% interval of the mean is well above 0
    assert row["difference"] == 0.5 and 0 < row["low"] < 0.5 < row["high"] <= 1 and row["excludes_zero"]
    assert "yes: A higher" in paired_markdown([row])
    other = _per_image_run(tmp_path, "c", [1.0] * 8, range(1, 9))
    with pytest.raises(ValueError, match="same images"):
        paired_comparison([a], [other], splits=["test"], metrics=["acc_scene"], resamples=10)


def test_paired_markdown_names_each_splits_own_number_of_images():
    from captioning.experiments.compare import paired_markdown

    row = {"metric": "Bleu_4", "A": 0.5, "B": 0.4, "difference": 0.1, "low": 0.05, "high": 0.15, "level": 0.95,
           "excludes_zero": True, "seeds": (2, 2)}
    out = paired_markdown([{**row, "split": "val", "images": 2000}, {**row, "split": "val_novel", "images": 1000}])
    assert "images: 2000 in val, 1000 in val_novel; 2 vs 2 runs" in out
    out = paired_markdown([{**row, "split": "val", "images": 2000}, {**row, "split": "test", "images": 2000}])
    assert "2000 images per split; 2 vs 2 runs" in out
