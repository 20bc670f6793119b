"""The docs/results.md table lists every model per split, then the baselines once per split."""

from captioning.utils.report import update_section
from captioning.results import results_table


def test_results_table_rows_and_values(tmp_path):
    m = {"test": {"Bleu_4": 0.5, "acc_colour": 0.9}, "test_novel": {"Bleu_4": 0.25},
         "nearest_neighbour/test": {"Bleu_4": 0.4}, "nearest_neighbour/test_novel": {"Bleu_4": 0.1}, "_run": {}}
    table = results_table({"rnn": m, "lstm": {**m, "test": {"Bleu_4": 0.75}}})
    rows = [line for line in table.splitlines()[2:]]
    assert [r.split(" | ")[:2] for r in rows] == [["| rnn", "test"], ["| lstm", "test"], ["| rnn", "test_novel"],
                                                  ["| lstm", "test_novel"], ["| nearest-neighbour", "test"],
                                                  ["| nearest-neighbour", "test_novel"]]
    assert "| 0.750 |" in rows[1] and "| 0.900 |" in rows[0] and "| 0.400 |" in rows[4]
    # sections of a shared report are replaced in place, others kept
    out = tmp_path / "r.md"
    update_section(out, "a", "first")
    update_section(out, "b", "second")
    update_section(out, "a", "third")
    text = out.read_text()
    assert "third" in text and "second" in text and "first" not in text
    assert text.index("third") < text.index("second")


def test_results_table_adds_the_human_rows_last():
    m = {"test": {"Bleu_4": 0.5}, "nearest_neighbour/test": {"Bleu_4": 0.4}, "_run": {}}
    rows = results_table({"lstm": m}, human={"test": {"Bleu_1": 0.9, "Bleu_4": 0.6}}).splitlines()[2:]
    assert rows[-1].startswith("| human (leave-one-out) | test | 0.900 | - | - | 0.600 | - |")


def test_by_count_table_lists_each_object_count():
    from captioning.results import by_count_table

    acc = {"colour": 0.5, "colour@1": 1.0, "colour@2": 0.25, "relation@2": 0.75, "position@1": 0.9}
    rows = by_count_table({"lstm": {"test": acc}}).splitlines()
    assert rows[0] == "| model | split | objects | count | colour | shape | size | position | relation |"
    assert rows[2] == "| lstm | test | 1 | - | 1.000 | - | - | 0.900 | - |"
    assert rows[3] == "| lstm | test | 2 | - | 0.250 | - | - | - | 0.750 |"


def test_write_results_renders_saved_runs(tiny_run, tmp_path):
    # the section is redrawn from summary.json and each run's saved captions, without training
    import json
    import shutil

    from captioning.results import write_results
    from tests.conftest import TINY

    run_dir, metrics = tiny_run
    root = tmp_path / "results"
    shutil.copytree(run_dir / "eval", root / "lstm" / "eval")
    meta = {"overrides": TINY, "seconds": {"lstm": 60.0}, "machine": "test machine"}
    (root / "summary.json").write_text(json.dumps({"lstm": metrics, "_meta": meta}))
    out = tmp_path / "results.md"
    write_results(str(root), str(out))
    text = out.read_text()
    assert "Machine: test machine" in text and "lstm 1.0 min" in text
    assert "| human (leave-one-out) | test |" in text
    assert f"| lstm | test | {metrics['test']['Bleu_1']:.3f} |" in text
    assert "| lstm | test | 1 |" in text  # the by-object-count table


def test_render_without_saved_runs_says_what_to_run(tmp_path):
    import pytest

    from captioning.results import write_results

    with pytest.raises(FileNotFoundError, match="make_results.py"):
        write_results(str(tmp_path / "none"), str(tmp_path / "r.md"))
    assert not (tmp_path / "r.md").exists()
