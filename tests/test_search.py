"""The val search (captioning/experiments/search.py): the grid, val-only runs, the choice and its table."""

import json
import shutil

import pytest

from captioning.experiments.search import grid_points, parse_grid


def test_grid_points_are_every_combination_in_order_with_short_labels():
    grid = parse_grid(["schedule.stages.cross_entropy.lr=1e-3,2e-3", "model.dropout=0.1,0.2"])
    assert grid == {"schedule.stages.cross_entropy.lr": ["1e-3", "2e-3"], "model.dropout": ["0.1", "0.2"]}
    points = grid_points(grid)
    assert [p for p, _ in points] == ["lr=1e-3_dropout=0.1", "lr=1e-3_dropout=0.2", "lr=2e-3_dropout=0.1",
                                      "lr=2e-3_dropout=0.2"]
    assert points[1][1] == ["schedule.stages.cross_entropy.lr=1e-3", "model.dropout=0.2"]
    assert grid_points({}) == [("", [])]
    for bad in (["lr"], ["=1"], ["lr="], ["a=1", "a=2"]):
        with pytest.raises(ValueError, match="--grid"):
            parse_grid(bad)


def test_search_runs_every_row_and_point_on_val_only_and_bolds_the_best(tiny_run, tmp_path, monkeypatch):
    """Training replaced by copies of the tiny run whose val BLEU-4 depends on the point: each run is
    evaluated on val alone, the best point per row is chosen and bold, the paired line is written, a
    finished search is read back, and test splits cannot be asked for."""
    import captioning.pipeline as pipeline
    from captioning.experiments.search import search, write_search
    from captioning.utils.io import save_json
    from tests.conftest import TINY

    run_dir, metrics = tiny_run
    calls = []
    score = {("rnn", 1e-3): 0.30, ("rnn", 2e-3): 0.20, ("lstm", 1e-3): 0.40, ("lstm", 2e-3): 0.50}

    def fake_run(opts, target):
        lr = opts.training.stages["cross_entropy"].lr
        calls.append((opts.training.model["cell"]["name"], lr, list(opts.eval_splits)))
        (target / "eval").mkdir(parents=True)
        shutil.copy(run_dir / "eval" / "per_image_test.json", target / "eval" / "per_image_val.json")
        out = {"val": {**metrics["test"], "Bleu_4": score.get((opts.training.model["cell"]["name"], lr), 0.30)}}
        save_json(out, target / "metrics.json")
        save_json({"best_epoch": 2, "best_stage": "cross_entropy"}, target / "history.json")
        return out

    monkeypatch.setattr(pipeline, "run", fake_run)
    keys = [k for k in TINY if not k.startswith("data.eval_splits")]
    root, out = tmp_path / "search", tmp_path / "results.md"
    out.write_text("# Results\n\n<!-- begin:shapes_protocol -->\nthe test tables\n<!-- end:shapes_protocol -->\n")
    chosen = search(keys, {"rnn": ["cell=rnn"], "lstm": ["cell=lstm"]},
                    {"schedule.stages.cross_entropy.lr": ["1e-3", "2e-3"]}, run_root=str(root), out=str(out))
    assert [c[:2] for c in calls] == [("rnn", 1e-3), ("rnn", 2e-3), ("lstm", 1e-3), ("lstm", 2e-3)]
    assert all(c[2] == ["val"] for c in calls)  # never a test split
    assert chosen == {"rnn": {"schedule.stages.cross_entropy.lr": "1e-3"},
                      "lstm": {"schedule.stages.cross_entropy.lr": "2e-3"}}
    assert (root / "lstm_lr=2e-3" / "seed0" / "metrics.json").is_file()
    text = out.read_text()
    assert "the test tables" in text and "<!-- begin:val_search -->" in text
    assert "| rnn | 1e-3 | **0.300** |" in text and "| rnn | 2e-3 | 0.200 |" in text
    assert "| lstm | 2e-3 | **0.500** |" in text
    # identical per-image files: the paired difference of the per-image BLEU is zero, said so
    assert "- lstm: lr=2e-3 (Bleu_4 0.500); minus the runner-up lr=1e-3: +0.000 [+0.000, +0.000] (not " in text
    assert "schedule.stages.cross_entropy.lr=1e-3,2e-3 row=rnn cell=rnn row=lstm cell=lstm" in text
    summary = json.loads((root / "summary.json").read_text())
    assert summary["_meta"]["overrides"][0] == "data.eval_splits=[val]"
    calls.clear()  # finished runs are read back, and --render redraws without training
    assert search(keys, {"rnn": ["cell=rnn"], "lstm": ["cell=lstm"]},
                  {"schedule.stages.cross_entropy.lr": ["1e-3", "2e-3"]}, run_root=str(root), out=str(out)) == chosen
    assert calls == [] and write_search(str(root), str(out)) == chosen
    with pytest.raises(ValueError, match="val split only"):
        search([*keys, "data.eval_splits=[test]"], {"rnn": ["cell=rnn"]}, {}, run_root=str(root), out=str(out))
    # no grid, two seeds, its own section: each row one setting, every row against the first
    calls.clear()
    search(keys, {"base": ["cell=rnn"], "faster": ["cell=rnn", "schedule.stages.cross_entropy.lr=2e-3"]}, {}, seeds=2,
           run_root=str(tmp_path / "ablation"), out=str(out), section="val_ablation", title="An ablation")
    assert len(calls) == 4 and (tmp_path / "ablation" / "faster" / "seed1" / "metrics.json").is_file()
    text = out.read_text()
    assert "<!-- begin:val_search -->" in text and "## An ablation" in text  # both sections kept
    assert "| base | 0.300 ± 0.000 |" in text and "| faster | 0.200 ± 0.000 |" in text
    assert "- faster minus base: Bleu_4 +0.000 [+0.000, +0.000]" in text  # per-image files identical
    assert "section=val_ablation title='An ablation'" in text


def test_search_can_choose_on_val_novel_but_never_on_a_test_split(tiny_run, tmp_path, monkeypatch):
    """split=val_novel: the runs evaluate val and val_novel, and val_novel's metric chooses (here against val's)."""
    import captioning.pipeline as pipeline
    from captioning.experiments.search import search
    from captioning.utils.io import save_json
    from tests.conftest import TINY

    run_dir, metrics = tiny_run
    calls = []
    val = {"1e-3": 0.50, "2e-3": 0.40}
    novel = {"1e-3": 0.10, "2e-3": 0.20}

    def fake_run(opts, target):
        lr = f"{opts.training.stages['cross_entropy'].lr:.0e}".replace("e-0", "e-")
        calls.append(list(opts.eval_splits))
        (target / "eval").mkdir(parents=True)
        for split in ("val", "val_novel"):
            shutil.copy(run_dir / "eval" / "per_image_test.json", target / "eval" / f"per_image_{split}.json")
        out = {"val": {**metrics["test"], "Bleu_4": val[lr]}, "val_novel": {**metrics["test"], "Bleu_4": novel[lr]}}
        save_json(out, target / "metrics.json")
        save_json({"best_epoch": 2, "best_stage": "cross_entropy"}, target / "history.json")
        return out

    monkeypatch.setattr(pipeline, "run", fake_run)
    keys = [k for k in TINY if not k.startswith("data.eval_splits")]
    out = tmp_path / "results.md"
    chosen = search(keys, {"lstm": ["cell=lstm"]}, {"schedule.stages.cross_entropy.lr": ["1e-3", "2e-3"]},
                    run_root=str(tmp_path / "s"), out=str(out), split="val_novel")
    assert chosen == {"lstm": {"schedule.stages.cross_entropy.lr": "2e-3"}}  # val would have chosen 1e-3
    assert calls == [["val", "val_novel"]] * 2
    text = out.read_text()
    assert "| val_novel Bleu_4 |" in text and "| lstm | 2e-3 | **0.200** |" in text and "split=val_novel" in text
    for sealed in ("test", "test_novel"):
        with pytest.raises(ValueError, match="not a test split|test splits are for make_results"):
            search(keys, {"lstm": ["cell=lstm"]}, {}, run_root=str(tmp_path / "t"), out=str(out), split=sealed)


def test_search_command_reads_grid_rows_and_common_overrides(monkeypatch, capsys):
    import captioning.commands.search as command

    got = {}

    def fake_search(overrides, rows, grid, **kw):
        got.update(overrides=overrides, rows=rows, grid=grid, **kw)
        return {"rnn": {"model.dropout": "0.1"}}

    monkeypatch.setattr(command, "search", fake_search)
    command.main(["jobs=2", "schedule=smoke", "model.dropout=0.1,0.2", "row=rnn", "cell=rnn"])
    assert got["overrides"] == ["schedule=smoke"] and got["jobs"] == 2 and got["seeds"] == 1
    assert got["section"] == "val_search"
    assert got["grid"] == {"model.dropout": ["0.1", "0.2"]} and got["rows"] == {"rnn": ["cell=rnn"]}
    assert "rnn model.dropout=0.1" in capsys.readouterr().out
    command.main([])
    assert got["rows"] == {c: [f"cell={c}"] for c in ("rnn", "lstm", "gru")} and got["grid"] == {}


def test_the_shapes_main_job_evaluates_val_and_make_results_adds_the_test_splits():
    """The protocol's seal: the default config scores val only; make_results (final configurations) asks
    for test and test_novel, unless its overrides name the splits."""
    from captioning.experiments.results import compose_run, sealed_splits

    assert list(compose_run([]).data.eval_splits) == ["val"]
    assert sealed_splits(["cell=gru"]) == ["data.eval_splits=[test,test_novel]", "cell=gru"]
    assert sealed_splits(["data.eval_splits=[test]"]) == ["data.eval_splits=[test]"]
    assert sealed_splits(["data=flickr8k"]) == ["data=flickr8k"]  # other datasets: their own eval_splits
